"""`fogline deploy` of a provisioned node config: a real board refuses placeholder Wi-Fi and a loopback broker."""

from __future__ import annotations

import json
from pathlib import Path

from fogline.tools import cli
from fogline.tools import deploy


def _drive(tmp_path: Path) -> Path:
    d = tmp_path / "CIRCUITPY"
    d.mkdir()
    (d / "boot_out.txt").write_text("Adafruit CircuitPython 9.2.1 on 2024-11-20; Adafruit Feather ESP32-S3\n")
    return d


def test_real_board_refuses_placeholders_unless_allowed(tmp_path, capsys):
    assert cli.main(["provision", "--site", "s1", "--out", str(tmp_path / "p"), "n1"]) == 0
    capsys.readouterr()
    site = tmp_path / "p" / "nodes" / "n1.json"
    d = _drive(tmp_path)
    argv = ["deploy", "--runtime", "circuitpython", "--drive", str(d), "--board", "adafruit_feather_esp32s3",
            "--site-config", str(site)]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "not ready for a real board" in err and "wifi.ssid is 'CHANGE-ME'" in err and "mqtt.host is" in err
    assert not (d / "code.py").exists() and not (d / "config.json").exists()  # nothing was written
    assert cli.main(argv + ["--allow-placeholders"]) == 0
    cap = capsys.readouterr()
    rep = json.loads(cap.out.strip().splitlines()[-1])
    assert any(n.startswith("WARNING wifi.ssid") for n in rep["notes"]) and "WARNING deploy:" in cap.err
    # a filled-in config deploys without a word
    cfg = json.loads(site.read_text())
    cfg["wifi"] = {"ssid": "home", "password": "pw"}
    cfg["mqtt"]["host"] = "192.168.1.10"
    site.write_text(json.dumps(cfg))
    assert cli.main(argv) == 0
    assert "WARNING" not in capsys.readouterr().err


def test_virtual_board_takes_placeholders_with_a_note():
    notes: list[str] = []
    cfg = {"wifi": {"ssid": "CHANGE-ME", "password": "CHANGE-ME"}, "mqtt": {"host": "127.0.0.1"}}
    deploy.check_real_board_config(cfg, False, False, notes)
    assert len(notes) == 3 and all(n.startswith("virtual board, fine here: ") for n in notes)
    try:
        deploy.check_real_board_config(cfg, True, False, [])
    except deploy.DeployError as e:
        assert "--allow-placeholders" in str(e)
    else:
        raise AssertionError("a real board took placeholder Wi-Fi")
