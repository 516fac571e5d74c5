"""The node in host emulation (firmware/main.py on the MicroPython unix port, sim HAL, virtual clock)
checked from CPython with independent tools: the flash image is read with littlefs-python, the
records with cbor2, and every stored reading is compared with the scenario's ground-truth log.
"""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import cbor2
from littlefs import LittleFS

from fogline.shared import frame
from fogline.tools import hostemu

BLOCKS = 128  # --flash-kib 512


def _records(img: Path, prefix: str) -> list[tuple[int, list]]:
    fs = LittleFS(block_size=4096, block_count=BLOCKS, prog_size=256, mount=False)
    fs.context.buffer = bytearray(img.read_bytes())
    fs.mount()
    out = []
    for n in sorted(x for x in fs.listdir("/log") if x.startswith(prefix)):
        with fs.open("/log/" + n, "rb") as f:
            bodies, _, _ = frame.decode_all(f.read())
        out += [tuple(cbor2.loads(b)) for b in bodies]
    return out


def test_flash_records_match_scenario_ground_truth(tmp_path):
    site = {"node": {"id": "n1", "site": "s1", "board": "pico_w"}, "sample_ms": 1000, "watchdog_ms": 0,
            "log": {"capacity_bytes": 262144, "segment_bytes": 8192, "sync_every": 10, "sync_ms": 5000},
            "sensors": [{"name": "temperature", "driver": "bme280", "field": "temperature", "unit": "Cel"},
                        {"name": "humidity", "driver": "bme280", "field": "humidity", "unit": "%RH",
                         "filters": [{"type": "median", "window_size": 5, "send_every": 5, "send_first_at": 5}]}],
            "rules": [{"name": "hot", "sensor": "temperature", "type": "above", "threshold": 33.0,
                       "hysteresis": 1.0, "actuator": "relay"}]}
    (tmp_path / "site.json").write_text(json.dumps(site))
    truth = tmp_path / "truth.csv"
    cmd = hostemu.mp_command(hostemu.REPO / "firmware" / "main.py", "--config", str(tmp_path / "site.json"),
                             "--flash", str(tmp_path / "node.img"), "--flash-kib", "512", "--samples", "300",
                             "--virtual-clock", "--scenario", "hot:3", "--truth", str(truth), "--no-mqtt", "--no-ble")
    p = subprocess.run(cmd, env=hostemu.mp_env(), cwd=str(hostemu.REPO), capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    stats = json.loads([ln for ln in p.stdout.splitlines() if ln.startswith("STATS ")][-1][6:])
    s = stats["sensing"]
    assert s["samples"] == 300 and s["readings"] == 600 and s["read_errors"] == 0
    ups = _records(tmp_path / "node.img", "u")
    alerts = _records(tmp_path / "node.img", "a")
    assert [q for q, _ in ups] == list(range(1, len(ups) + 1))  # seqs dense from 1
    assert len(ups) == s["kept"] == 300 + 60  # every temperature reading, one humidity median per 5
    # ground truth: what the simulated sensor measured at each read (t relative to boot)
    seen: dict[tuple[str, float], float] = {}
    with truth.open() as f:
        for t_s, name, measured, _truth, _flags in csv.reader(f):
            seen[(name, float(t_s))] = float(measured)
    epoch0 = min(rec[0] for _, rec in ups)
    temps = [rec for _, rec in ups if rec[1] == "temperature"]
    for t, name, unit, value in temps:
        want = seen[("temperature", float(t - epoch0))]
        assert unit == "Cel" and abs(value - want) <= 0.006, (t, value, want)  # chip resolution 0.01 degC
    hums = [rec for _, rec in ups if rec[1] == "humidity"]
    for t, name, unit, value in hums:
        window = sorted(seen[("humidity", float(t - epoch0 - k))] for k in range(5))
        assert abs(value - window[2]) <= 0.02, (t, value, window)  # median of the last five readings
    # the 'hot' preset steps +15 degC at 40 s: one alert at the first sample above 33 degC, relay on
    first_hot = min(t for t, _, _, v in temps if v > 33.0)
    assert [(rec[0], rec[1]) for _, rec in alerts] == [(first_hot, "hot")]
    assert stats["actuators"] == {"relay": 1} and stats["active_rules"] == ["hot"]
