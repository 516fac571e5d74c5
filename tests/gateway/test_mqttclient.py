"""One MQTT client factory: the gateway's connections get TLS, client certificates and passwords from their config."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from fogline.gateway import config as config_mod
from fogline.gateway import mqttclient
from fogline.gateway.app import Gateway
from fogline.gateway.cluster.link import ClusterLink
from fogline.gateway.federation.bus import MqttBus
from harness.cloudkit import tls_cloud_broker

REPO = Path(__file__).resolve().parents[2]
USERS = {"gw1": "gw-secret"}


def _site_mqtt(port: int, pki, cert: bool = True) -> dict:
    m = {"host": "127.0.0.1", "port": port, "tls": True, "ca_file": str(pki.ca), "username": "gw1",
         "password": "gw-secret"}
    if cert:
        m.update(cert_file=str(pki.client_cert), key_file=str(pki.client_key))
    return m


@pytest.fixture
def mtls(tmp_path, pki):
    """A mosquitto speaking only TLS, requiring a client certificate from the test CA and a password."""
    b = tls_cloud_broker(tmp_path / "mtls", pki, USERS, require_cert=True).start()
    yield b
    b.stop()


@pytest.mark.parametrize("worker", [False, True], ids=["in-process", "worker"])
def test_site_ingest_connects_over_mutual_tls_with_the_mqtt_sections_files(tmp_path, pki, mtls, worker):
    cfg = config_mod.from_dict({"site": {"data_dir": str(tmp_path / "data")},
                                "mqtt": {**_site_mqtt(mtls.port, pki), "worker_process": worker}})

    async def main():
        gw = Gateway(cfg)
        await gw.start()
        try:
            return await gw.wait_connected(30)
        finally:
            await gw.stop()

    assert asyncio.run(main()) is True


def test_without_its_client_certificate_the_site_connection_is_refused(tmp_path, pki, mtls):
    cfg = config_mod.from_dict({"site": {"data_dir": str(tmp_path / "data")},
                                "mqtt": _site_mqtt(mtls.port, pki, cert=False)})

    async def main():
        gw = Gateway(cfg)
        await gw.start()
        try:
            return await gw.wait_connected(2), gw.metrics.get("mqtt_connects")
        finally:
            await gw.stop()

    connected, connects = asyncio.run(main())
    assert connected is False and not connects


def test_cluster_link_connects_over_mutual_tls_and_leaves_its_will(tmp_path, pki, mtls):
    mcfg = config_mod.from_dict({"mqtt": _site_mqtt(mtls.port, pki)}).mqtt

    async def main():
        up = asyncio.Event()
        link = ClusterLink(asyncio.get_running_loop(), mcfg, "cl-1", 5, ("fogline/s/_gw/cl-1/health", b"gone"),
                           ["fogline/s/_gw/+/health"], lambda *a: None, up.set, lambda: None)
        link.start()
        try:
            await asyncio.wait_for(up.wait(), 120)
            return link.client._will_topic
        finally:
            await link.stop([], connected=True)

    assert asyncio.run(main()) == b"fogline/s/_gw/cl-1/health"


def test_federation_bus_connects_over_tls_with_a_password(pki, cloud):
    bus = MqttBus("127.0.0.1", cloud.port, "fed-1", username="gw1", password="gw-secret", tls=True,
                  ca_file=str(pki.ca))
    try:
        got = threading.Event()
        bus.subscribe("fed/t", lambda t, p: got.set())
        bus.publish("fed/t", b"x")
        deadline = time.monotonic() + 120
        while not got.is_set() and time.monotonic() < deadline:
            bus.pump_once()
            time.sleep(0.02)
        assert got.is_set()
    finally:
        bus.close()
    with pytest.raises(ConnectionError):
        MqttBus("127.0.0.1", cloud.port, "fed-2", username="gw1", password="wrong", tls=True, ca_file=str(pki.ca),
                timeout=10)


def test_site_and_cloud_sections_give_the_factory_the_same_tls_settings(pki):
    from fogline.gateway.relay.cloud import CloudConfig

    site = config_mod.from_dict({"mqtt": _site_mqtt(1883, pki)}).mqtt
    cloud = CloudConfig(tls=True, ca_file=str(pki.ca), cert_file=str(pki.client_cert), key_file=str(pki.client_key),
                        username="gw1", password="gw-secret")
    keys = ("username", "password", "tls", "ca_file", "cert_file", "key_file")
    assert [mqttclient.settings(site)[k] for k in keys] == [mqttclient.settings(cloud)[k] for k in keys] == \
        ["gw1", "gw-secret", True, str(pki.ca), str(pki.client_cert), str(pki.client_key)]
