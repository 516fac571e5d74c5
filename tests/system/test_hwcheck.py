"""`fogline hwcheck` against a virtual board on each MicroPython runtime (the board-like one is 32-bit with
single-precision floats): deploy with the real mpremote, the on-board self-test, the pass/fail table; a
broker that does not answer fails the MQTT row and the exit status, the other checks still pass."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from fogline.tools import hostemu
from fogline.tools.vboard import VirtualBoard

pytestmark = pytest.mark.timeout(400)

CHECKS = ["config", "sensors", "flashlog append", "flashlog reopen", "crc", "bthome advert", "mqtt pack"]


def _hwcheck(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fogline.tools.cli", "hwcheck", "--board", "pico_w", *args],
                          capture_output=True, text=True, timeout=360, cwd=str(hostemu.REPO))


def _rows(out: str) -> dict[str, str]:
    got = {}
    for line in out.splitlines():
        for name in CHECKS:
            if line.startswith(name + " ") and line[len(name):].split()[0] in ("PASS", "FAIL"):
                got[name] = line[len(name):].split()[0]
    return got


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_hwcheck_on_a_virtual_board(tmp_path, mosquitto, runtime):
    try:
        hostemu.find_micropython("board-repl" if runtime == "board" else runtime)
    except hostemu.NoMicroPython as e:
        pytest.fail(str(e))
    vb = VirtualBoard(tmp_path / "node.img", board="pico_w", run_main_first=False, runtime=runtime)
    port = vb.start()
    try:
        p = _hwcheck("--port", port, "--broker", f"127.0.0.1:{mosquitto.port}")
        assert p.returncode == 0, p.stdout + p.stderr
        assert _rows(p.stdout) == {n: "PASS" for n in CHECKS}, p.stdout
        rep = json.loads(p.stdout.strip().splitlines()[-1])
        assert rep["ok"] and rep["deployed"] and rep["passed"] == len(CHECKS) and rep["failed"] == []
        assert rep["word_bits"] == (32 if runtime == "board" else 64) and rep["float32"] == (runtime == "board")
        assert 0 < rep["heap_free"] and 0 < rep["flash_free"] < rep["flash_total"] == 212 * 4096, rep
        assert "heap:" in p.stdout and "flash:" in p.stdout
        # the firmware is on the board now; a broker that is not there fails exactly the MQTT check
        bad = _hwcheck("--port", port, "--no-deploy", "--broker", f"127.0.0.1:{_closed_port()}")
        assert bad.returncode == 1, bad.stdout + bad.stderr
        rows = _rows(bad.stdout)
        assert rows.pop("mqtt pack") == "FAIL" and set(rows.values()) == {"PASS"}, bad.stdout
        assert json.loads(bad.stdout.strip().splitlines()[-1])["failed"] == ["mqtt pack"]
    finally:
        vb.stop()


def test_hwcheck_refuses_a_malformed_broker_address():
    p = _hwcheck("--port", "/dev/null", "--broker", "localhost")
    assert p.returncode == 2 and "host:port" in p.stderr
