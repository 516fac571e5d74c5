"""`fogline deploy` to a virtual board with the real mpremote and mpy-cross: copied, verified by sha256 on
the device, reset; main.py boots the firmware from flash and the node publishes to mosquitto."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import cbor2
import paho.mqtt.client as mqtt
import pytest

from fogline.shared import senml
from fogline.tools import deploy, hostemu
from fogline.tools.vboard import VirtualBoard

pytestmark = pytest.mark.timeout(150)


def _fogline() -> list[str]:
    exe = Path(sys.executable).parent / "fogline"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "fogline.tools.cli"]


@pytest.fixture
def board(tmp_path):
    try:
        hostemu.find_micropython()
    except hostemu.NoMicroPython as e:
        pytest.skip(str(e))
    vb = VirtualBoard(tmp_path / "node.img", board="pico_w", run_main_first=False)
    vb.start()
    yield vb
    vb.stop()


class Listener:
    """paho subscriber collecting (topic, payload) on fogline/#."""

    def __init__(self, port: int):
        self.msgs: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.c.on_message = self._on
        self.c.connect("127.0.0.1", port)
        self.c.subscribe("fogline/#", qos=1)
        self.c.loop_start()

    def _on(self, _c, _u, m) -> None:
        with self.lock:
            self.msgs.append((m.topic, m.payload))

    def wait(self, pred, timeout: float) -> list[tuple[str, bytes]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                got = [m for m in self.msgs if pred(m)]
            if got:
                return got
            time.sleep(0.1)
        return []

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def _image_files(vb: VirtualBoard) -> dict[str, bytes]:
    from littlefs import LittleFS

    fs = LittleFS(block_size=vb.info["block_size"], block_count=vb.info["blocks"], mount=False,
                  prog_size=vb.info["progsize"], read_size=32)
    fs.context.buffer = bytearray(vb.flash.read_bytes())
    fs.mount()
    out = {}
    for root, _dirs, files in fs.walk("/"):
        for f in files:
            p = (root.rstrip("/") + "/" + f).lstrip("/")
            with fs.open(p, "rb") as fh:
                out[p] = fh.read()
    return out


def test_deploy_boots_node_that_publishes(board, mosquitto, tmp_path):
    site = tmp_path / "site.toml"
    site.write_text(f'sample_ms = 250\n[node]\nid = "vb1"\nsite = "lab"\n'
                    f'[mqtt]\nhost = "127.0.0.1"\nport = {mosquitto.port}\nkeepalive = 10\n')
    listener = Listener(mosquitto.port)
    try:
        proc = subprocess.run([*_fogline(), "deploy", "--board", "pico_w", "--port", board.port,
                               "--site-config", str(site)], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        report = json.loads(proc.stdout.strip().splitlines()[-1])
        assert report["arch"] == "x64"  # asked from the board: sys.implementation._mpy
        assert report["verified"] == report["files"] > 10
        assert report["reset"] is True
        # after the reset main.py runs the firmware from the flash: readings arrive on the site broker
        ups = listener.wait(lambda m: m[0] == "fogline/lab/vb1/up", 30)
        assert ups, f"no up message; board resets={board.resets}"
        first_seq, pack = cbor2.loads(ups[0][1])[:2]
        recs = senml.resolve(pack)
        assert first_seq >= 1
        assert {r[0] for r in recs} & {"vb1/temperature", "vb1/humidity", "vb1/pressure"}
        states = listener.wait(lambda m: m[0] == "fogline/lab/vb1/state", 15)
        assert states and cbor2.loads(states[-1][1]).get("board") == "pico_w"
        # mpremote interrupts the running firmware (Ctrl-C) and gets a REPL, as on a real board
        out = subprocess.run([*deploy.mpremote_cmd(), "connect", board.port, "exec",
                              "import firmware.app as a; print('app', a.__file__)"],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and "app firmware/app.mpy" in out.stdout, out.stdout + out.stderr
    finally:
        listener.close()
    assert board.resets["hard"] >= 1
    # the image holds what deploy wrote (littlefs-python, an independent reader): .mpy modules, config
    board.stop()
    files = _image_files(board)
    assert "main.py" in files and "firmware/app.mpy" in files and "shared/cbor.mpy" in files
    assert not any(p.startswith(("firmware/", "shared/")) and p.endswith(".py") for p in files)
    cfg = json.loads(files["config.json"])
    assert cfg["node"] == {"id": "vb1", "site": "lab", "board": "pico_w"}
    assert "boards/pico_w.json" in files


def test_verify_detects_a_corrupt_file(board, tmp_path):
    d = deploy.Deployer(board.port, "pico_w")
    good = tmp_path / "f.txt"
    good.write_bytes(b"fogline " * 64)
    subprocess.run([*deploy.mpremote_cmd(), "connect", board.port, "fs", "cp", str(good), ":f.txt"],
                   check=True, capture_output=True, timeout=120)
    assert d.verify({"f.txt": good})["f.txt"]
    bad = tmp_path / "g.txt"
    bad.write_bytes(b"fogline " * 63 + b"Fogline ")
    with pytest.raises(deploy.DeployError, match="hash mismatch"):
        d.verify({"f.txt": bad})
    with pytest.raises(deploy.DeployError, match="hash mismatch"):
        d.verify({"missing.txt": good})


def test_bad_site_config_is_refused_before_touching_the_board(board, tmp_path):
    site = tmp_path / "site.toml"
    site.write_text('sample_ms = "fast"\n[node]\nid = "vb1"\n')
    proc = subprocess.run([*_fogline(), "deploy", "--port", board.port, "--site-config", str(site)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "sample_ms" in proc.stderr
    assert "firmware" not in subprocess.run([*deploy.mpremote_cmd(), "connect", board.port, "fs", "ls"],
                                            capture_output=True, text=True, timeout=120).stdout


def test_mip_package_installs_on_the_board(board, tmp_path):
    # a copy of the tree with a freshly generated package.json: `mpremote mip install` from a local path
    repo = tmp_path / "repo"
    for pkg in ("firmware", "shared"):
        shutil.copytree(hostemu.REPO / pkg, repo / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.json"))
    (repo / "firmware" / "package.json").write_text(json.dumps(deploy.package_json(repo)))
    proc = subprocess.run([*deploy.mpremote_cmd(), "connect", board.port, "mip", "install", "--target", "/",
                           str(repo / "firmware" / "package.json")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    code = "import os, shared.cbor as c; print(sorted(os.listdir('/firmware'))[:3], c.loads(c.dumps([1])))"
    out = subprocess.run([*deploy.mpremote_cmd(), "connect", board.port, "exec", code],
                         capture_output=True, text=True, timeout=120).stdout
    assert "[1]" in out and "__init__.py" in out
