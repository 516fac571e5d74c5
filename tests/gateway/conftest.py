"""Fixtures of the gateway tests: a test CA and a TLS + password cloud mosquitto."""

import pytest

from harness.cloudkit import make_pki, tls_cloud_broker

CLOUD_USERS = {"gw1": "gw-secret", "cloud": "cloud-secret"}  # gateway gw1 publishes, "cloud" consumes


@pytest.fixture
def pki(tmp_path):
    return make_pki(tmp_path / "pki")


@pytest.fixture
def cloud(tmp_path, pki):
    """A started TLS cloud broker with CLOUD_USERS; stopped after the test."""
    b = tls_cloud_broker(tmp_path / "cloud", pki, CLOUD_USERS).start()
    yield b
    b.stop()
