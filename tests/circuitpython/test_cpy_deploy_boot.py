"""`fogline deploy --runtime circuitpython` to a CIRCUITPY drive directory, the deployed tree booting on the
simulated CircuitPython modules, and boot.py's choice of who writes the filesystem."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

from tests.circuitpython.conftest import REPO, SIM_CPY, SIM_MP

pytestmark = pytest.mark.timeout(90)


def _drive(tmp_path: Path) -> Path:
    d = tmp_path / "CIRCUITPY"
    (d / "firmware").mkdir(parents=True)
    (d / "boot_out.txt").write_text("Adafruit CircuitPython 9.2.1 on 2024-11-20; Adafruit Feather ESP32-S3 4MB Flash "
                                    "2MB PSRAM with ESP32S3\nBoard ID:adafruit_feather_esp32s3_4mbflash_2mbpsram\n")
    (d / "firmware" / "stale_old_module.py").write_text("x = 1\n")
    (d / "lib").mkdir()
    (d / "lib" / "keep.py").write_text("# user library\n")
    (d / "usb_edit").write_text("")
    return d


def test_deploy_copies_py_tree_and_verifies(tmp_path, capsys):
    from fogline.tools.cli import main
    d = _drive(tmp_path)
    site = tmp_path / "site.json"
    site.write_text(json.dumps({"node": {"id": "cp1", "site": "s1"}, "wifi": {"ssid": "lab", "password": "pw"},
                                "mqtt": {"host": "192.168.1.2"}, "ntp": {"enabled": False}}))
    rc = main(["deploy", "--runtime", "circuitpython", "--drive", str(d), "--board", "adafruit_feather_esp32s3",
               "--site-config", str(site)])
    out = capsys.readouterr().out
    assert rc == 0, out
    rep = json.loads(out.strip().splitlines()[-1])
    assert rep["runtime"] == "circuitpython" and rep["verified"] == rep["files"] > 30
    assert any("circup install asyncio" in n for n in rep["notes"])  # the bundle library is not on this drive
    for f in ("code.py", "boot.py", "firmware/cpy/machine.py", "firmware/node.py", "firmware/flashlog.py",
              "shared/cbor.py", "boards/adafruit_feather_esp32s3.json", "config.json"):
        assert (d / f).is_file(), f
    assert (d / "code.py").read_text() == (REPO / "firmware/cpy/code.py").read_text()
    assert not list(d.rglob("*.mpy")) and not (d / "main.py").exists()
    assert not (d / "firmware" / "stale_old_module.py").exists()  # old package tree replaced
    assert (d / "lib" / "keep.py").exists()  # user files untouched
    assert not (d / "usb_edit").exists()  # the node owns the drive after the next reset
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["node"]["board"] == "adafruit_feather_esp32s3" and cfg["mqtt"]["host"] == "192.168.1.2"


def test_deploy_refuses_bad_site_config_and_readonly_drive(tmp_path, capsys, monkeypatch):
    from fogline.tools import deploy
    d = _drive(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"node": {"id": "cp1", "site": "s1"}, "sample_ms": 1}))
    rc = deploy.main(["--runtime", "circuitpython", "--drive", str(d), "--board", "adafruit_feather_esp32s3",
                      "--site-config", str(bad)])
    assert rc == 1 and "sample_ms" in capsys.readouterr().err
    assert (d / "firmware" / "stale_old_module.py").exists()  # nothing touched
    assert deploy.main(["--runtime", "circuitpython", "--board", "adafruit_feather_rp2040"]) == 2

    def ro(self, data):
        raise OSError(errno.EROFS, "Read-only file system")
    monkeypatch.setattr(Path, "write_bytes", ro)
    rc = deploy.main(["--runtime", "circuitpython", "--drive", str(d), "--board", "adafruit_feather_rp2040"])
    err = capsys.readouterr().err
    assert rc == 1 and "read-only" in err and "usb_edit" in err


def test_micropython_deploy_excludes_cpy_adapter():
    from fogline.tools import deploy
    files = [str(p) for p in deploy.source_files()]
    assert "firmware/node.py" in files and not any(f.startswith("firmware/cpy") for f in files)


_BOOT_AND_RUN = r"""
import sys, json, importlib.util
spec = importlib.util.spec_from_file_location("sim_sensors", sys.argv[1])
ss = importlib.util.module_from_spec(spec); spec.loader.exec_module(ss)
import simctl, board, storage
simctl.install_runtime()
exec(open("boot.py").read())                       # /boot.py: the node gets the filesystem
assert storage.getmount("/").readonly is False
storage.in_boot = False
simctl.attach_i2c(board.SCL, board.SDA, ss.BME280Sim(lambda: 24.0, lambda: 100000.0, lambda: 40.0, addr=0x77))
from firmware.cpy import compat
compat.install()
from firmware import app as A
cfg = A.load_config("config.json", "boards")       # /config.json + /boards/<board>.json, as board_main does
a = A.App(cfg, A.make_store(cfg, "log"))
for _ in range(3):
    a.sample_once()
a.store.flush(0)
print(json.dumps({"board": cfg["node"]["board"], "kept": a.node.stats["kept"], "depth": a.store.depth("up"),
                  "t": round(a.node.latest["temperature"], 2), "mod": A.__file__}))
"""


def test_deployed_tree_boots_on_simulated_circuitpython(tmp_path, capsys):
    """Only what deploy copied is on the path: boot.py remounts, the app loads config and samples into /log."""
    from fogline.tools import deploy
    d = _drive(tmp_path)
    assert deploy.main(["--runtime", "circuitpython", "--drive", str(d), "--board", "adafruit_feather_esp32s3"]) == 0
    env = {"PYTHONPATH": f"{SIM_CPY}:{d}", "PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"}
    p = subprocess.run([sys.executable, "-S", "-c", _BOOT_AND_RUN, str(SIM_MP / "sim_sensors.py")],
                       cwd=d, env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    rep = json.loads(p.stdout.strip().splitlines()[-1])
    assert rep["board"] == "adafruit_feather_esp32s3" and rep["kept"] >= 3 and rep["depth"] == rep["kept"]
    assert rep["t"] == pytest.approx(24.0, abs=0.01)
    assert rep["mod"].startswith(str(d))  # the drive's copy ran, not the repo's
    assert (d / "log").is_dir()


def test_boot_mode_pin_and_marker(cpy, tmp_path):
    from firmware.cpy import bootmode
    import digitalio
    storage = cpy.storage
    marker = str(tmp_path / "usb_edit")
    assert bootmode.boot(marker) is True
    assert storage.remounts == [("/", False)] and storage.getmount("/").readonly is False
    cpy.simctl.reset()
    cpy.simctl.drive_input(cpy.board.BUTTON, lambda: 0)  # BOOT held at reset
    assert bootmode.boot(marker) is False and storage.remounts == [] and storage.getmount("/").readonly is True
    assert not cpy.board.BUTTON._claimed  # released for the application
    cpy.simctl.reset()
    Path(marker).write_text("")
    assert bootmode.boot(marker) is False and storage.remounts == []
    # a board without BUTTON (Feather RP2040): the D12 jumper decides
    d12 = cpy.microcontroller.pin.GPIO12
    fake = types.SimpleNamespace(D12=d12)
    cpy.simctl.drive_input(d12, lambda: 0)
    assert bootmode.escape_held(fake, digitalio) is True
    cpy.simctl.drive_input(d12, lambda: 1)
    assert bootmode.escape_held(fake, digitalio) is False
    # after boot, CircuitPython refuses a remount while USB shows the drive
    storage.in_boot = False
    with pytest.raises(RuntimeError):
        storage.remount("/", readonly=False)
