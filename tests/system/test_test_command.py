"""`bash tools/test.sh` without mosquitto runs the broker-free suites and names the files it skipped."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _collect(env_extra: dict[str, str], *paths: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "FOGLINE_RUNTIMES": "micropython", **env_extra}
    return subprocess.run(["bash", "tools/test.sh", "--co", "-q", "-p", "no:cacheprovider", "-n", "0", *paths],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_without_mosquitto_broker_suites_are_skipped_by_name_and_the_rest_collected():
    p = _collect({"FOGLINE_MOSQUITTO": ""}, "tests/gateway")  # a directory: files given by name always run
    assert "mosquitto not found" in p.stderr and "skipped: tests/gateway/test_provision.py" in p.stderr, p.stderr
    assert "skipped: tests/gateway/test_health.py" not in p.stderr
    assert "test_health.py::" in p.stdout and "test_provision.py::" not in p.stdout, p.stdout[-2000:]


def test_with_mosquitto_nothing_is_skipped():
    from harness.broker import mosquitto_binary

    p = _collect({"FOGLINE_MOSQUITTO": mosquitto_binary()}, "tests/gateway/test_provision.py")
    assert "skipped:" not in p.stderr and "test_provision.py::" in p.stdout, (p.stdout[-2000:], p.stderr[-2000:])
