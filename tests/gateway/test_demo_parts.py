"""The demo's parts that tell the user what happened: sparkline scales, alert lines, the ground-truth
verdict, the window check against the model's manifest."""

from __future__ import annotations

import json
import time

import pytest

from fogline.tools.demo.core import Demo, model_window_s
from fogline.tools.demo.dashboard import BARS, SPAN_FLOOR, metric_scale, sparkline
from fogline.tools.demo.events import describe_alert
from fogline.tools.demo.fleet import RULES, node_config, scenario_spec
from fogline.tools.demo.truth import DRIFT, SPIKE, NodeTruth, Read, evaluate
from fogline.gateway.inference.registry import BUNDLED_DIR, window_mismatch

RULE_MAP = {r["name"]: r for r in RULES}


def test_pressure_noise_stays_flat_on_the_metric_scale():
    noise = [1013.25 + 0.05 * ((i * 7) % 5 - 2) for i in range(16)]  # +-0.1 hPa
    line = sparkline(noise, 16, metric_scale([noise], SPAN_FLOOR["pressure"]))
    assert len(set(line)) == 1, line
    # the old per-row min-max scale drew the same noise across the whole bar range
    assert len(set(sparkline(noise, 16, (min(noise), max(noise))))) >= 4


def test_a_real_spike_stands_out_and_rows_share_the_scale():
    calm = [21.0 + 0.05 * (i % 3) for i in range(16)]
    spiky = list(calm)
    spiky[9] = 36.0
    scale = metric_scale([calm, spiky], SPAN_FLOOR["temperature"])
    s_line, c_line = sparkline(spiky, 16, scale), sparkline(calm, 16, scale)
    assert s_line[9] == BARS[-1]
    assert set(s_line[:9] + s_line[10:]) == {BARS[0]}
    assert set(c_line) == {BARS[0]}  # same scale: the calm node sits where the spiky one's baseline is


def test_alert_lines_say_metric_value_and_threshold():
    line = describe_alert("node1", "temp_high", 38.93000030517578, "Cel", RULE_MAP)
    assert line == "ALERT node1 temp_high: temperature 38.93 Cel > 30 (relay on)"
    clear = describe_alert("node1", "temp_high.clear", 23.98, "Cel", RULE_MAP)
    assert clear == "CLEAR node1 temp_high: temperature 23.98 Cel <= 29 (relay off)"
    assert describe_alert("node3", "temp_stale", 1.0, "Cel", RULE_MAP) == \
        "ALERT node3 temp_stale: no temperature reading for 3 s"
    assert describe_alert("n", "mystery", 2.5, None, RULE_MAP) == "ALERT n mystery mystery=2.50"


def _truth(node, scenario, flags_at, signals=None, t0=1000.0, n=240, metric="temperature"):
    """4 reads/s for n reads from t0; flags_at(i) -> flags of read i."""
    nt = NodeTruth(node, scenario, signals=signals or {})
    for i in range(n):
        nt.reads.append(Read(t0 + i / 4, i / 4, metric, flags_at(i)))
    return nt


def test_truth_verdict_counts_false_positives_and_found_faults():
    normal = _truth("ble5", "normal", lambda i: 0)
    spikes = _truth("node1", "spikes", lambda i: SPIKE if i == 130 else 0)
    decisions = [
        {"node": "ble5", "start": 960.0, "end": 1020.0, "label": "normal"},
        {"node": "ble5", "start": 1020.0, "end": 1080.0, "label": "anomaly"},   # a false positive
        {"node": "node1", "start": 960.0, "end": 1020.0, "label": "normal"},    # clean window: right
        {"node": "node1", "start": 1020.0, "end": 1080.0, "label": "anomaly"},  # holds the spike at 1032.5
    ]
    out = evaluate([normal, spikes], decisions, {"node1": [("temp_high", 1032.5), ("temp_high.clear", 1033.0)]})
    assert out["per_node"]["ble5"]["false_positives"] == 1 and out["per_node"]["ble5"]["fp_rate"] == 0.5
    assert out["per_node"]["node1"]["false_positives"] == 0
    assert out["per_node"]["node1"]["true_positives"] == 1 and out["per_node"]["node1"]["window_recall"] == 1.0
    assert out["normal_nodes"] == ["ble5"] and out["false_positives_on_normal_nodes"] == 1
    (inj,) = out["injected"]
    assert inj["node"] == "node1" and inj["found_by"] == ["model", "alert temp_high"]
    assert out["recall"] == 1.0 and out["missed"] == []


def test_drift_counts_as_a_fault_only_once_it_is_two_scale_units_off():
    sig = {"temperature": {"drift_per_h": 360.0, "drift_start_s": 5}}  # 0.1 degC/s
    nt = _truth("node2", "drift", lambda i: DRIFT if i / 4 > 5 else 0, signals=sig, n=400)
    assert nt.onset() == pytest.approx(1000.0 + 25.0)  # 2 degC after 20 s of drift
    assert nt.window(1000.0, 1005.0)[0] is False
    assert nt.window(1000.0, 1020.0)[0] == "onset"  # drifting, under 2 degC: neither normal nor a fault yet
    assert nt.window(1020.0, 1080.0) == (True, ["drift"])
    out = evaluate([nt], [{"node": "node2", "start": 960.0, "end": 1020.0, "label": "anomaly"},
                          {"node": "node2", "start": 1020.0, "end": 1080.0, "label": "normal"}], {})
    assert out["missed"] == ["node2"] and out["recall"] == 0.0
    v = out["per_node"]["node2"]
    assert v["fault_onset_windows"] == 1 and v["false_positives"] == 0 and v["truth_anomalous"] == 1


def test_demo_runs_the_models_window_and_refuses_another():
    man = json.loads((BUNDLED_DIR / "manifest.json").read_text())
    assert model_window_s() == float(man["features"]["window_s"])
    d = Demo(nodes=2)
    try:
        cfg = d.gateway_config("127.0.0.1", 1883, ("127.0.0.1", 1884))
        assert cfg["inference"]["window_s"] == man["features"]["window_s"]
        assert man["features"]["window_s"] in cfg["aggregate"]["windows_s"]
        assert window_mismatch(man, cfg["inference"]["window_s"], cfg["aggregate"]["windows_s"]) is None
    finally:
        d.workdir.rmdir()
    with pytest.raises(ValueError, match="differs from the model's window"):
        Demo(nodes=2, window_s=5.0)


def test_window_mismatch_names_the_problem():
    man = json.loads((BUNDLED_DIR / "manifest.json").read_text())
    assert "trained on 60 s windows" in window_mismatch(man, 5.0, [5.0, 60.0])
    assert "not one of aggregate.windows_s" in window_mismatch(man, 60.0, [10.0, 900.0])


def test_demo_nodes_send_every_scored_metric_at_a_steady_rate():
    """A deadband (delta) or throttle on a metric the model scores varies its count per window, which the
    model reads as a sensor losing samples (count_ratio): the demo's node config must not have one."""
    man = json.loads((BUNDLED_DIR / "manifest.json").read_text())
    cfg = node_config("n", "demo", "127.0.0.1", 1883, 250, False)
    for s in cfg["sensors"]:
        if s["name"] in man["features"]["metrics"]:
            kinds = {f["type"] for f in s.get("filters", [])}
            assert not kinds & {"delta", "throttle", "throttle_average", "heartbeat", "debounce", "median"}, s
    assert scenario_spec("normal", 1)["signals"]["temperature"].get("spike_rate") is None


def test_a_window_short_of_readings_is_reported_apart_not_judged_normal():
    """A node that started inside a window, or a host too busy to run it on time, delivers fewer readings
    than a whole window holds: missing data by the training rule, neither a false positive nor normal."""
    nt = _truth("ble5", "normal", lambda i: 0, n=720)  # 3 minutes of reads from t0=1000
    nt.period_s = 1.0
    decisions = [
        {"node": "ble5", "start": 960.0, "end": 1020.0, "label": "anomaly", "counts": {"temperature": 20}},
        {"node": "ble5", "start": 1020.0, "end": 1080.0, "label": "anomaly", "counts": {"temperature": 47}},
        {"node": "ble5", "start": 1080.0, "end": 1140.0, "label": "normal", "counts": {"temperature": 59}},
        {"node": "ble5", "start": 1140.0, "end": 1200.0, "label": "anomaly", "counts": {"temperature": 48}},
    ]
    v = evaluate([nt], decisions, {})["per_node"]["ble5"]
    assert v["short_windows"] == 2 and v["short_flagged"] == 2
    assert v["truth_normal"] == 2 and v["false_positives"] == 1 and v["fp_rate"] == 0.5


def test_fogline_demo_refuses_a_window_the_model_was_not_trained_on():
    import subprocess
    import sys

    from fogline.tools import hostemu
    proc = subprocess.run([sys.executable, "-m", "fogline.tools.cli", "demo", "--headless", "--window-s", "5",
                           "--duration", "1"], capture_output=True, text=True, timeout=120, cwd=str(hostemu.REPO))
    assert proc.returncode == 2
    assert "--window-s 5 differs from the model's window (60 s" in proc.stderr
    assert proc.stdout == ""


def test_dashboard_rows_share_a_scale_and_the_ble_row_shows_no_backlog(tmp_path):
    from collections import deque

    from rich.console import Console

    from fogline.tools.demo.dashboard import render
    from fogline.tools.demo.fleet import Fleet
    from fogline.tools.demo.observe import SiteMonitor

    d = Demo(nodes=2, workdir=tmp_path / "w")
    d.fleet = Fleet(d.workdir, d.site, "127.0.0.1", 1, 2)  # node1 (MQTT, spikes) and ble2, not started
    d.monitor = SiteMonitor("127.0.0.1", 1, d.site)        # fed below as its subscription would
    d.sink = type("Cloud", (), {"events": [], "counters": {"bytes": 0}, "lanes": {}})()
    v = d.monitor.view("node1")
    v.last_seen = time.time()
    v.values["temperature"] = deque([21.0] * 8 + [36.0] + [21.0] * 7)
    v.values["pressure"] = deque([1013.2, 1013.3] * 8)
    d.fleet.nodes[1].stat = {"backlog": {"up": 224, "alert": 0}}
    con = Console(width=160, record=True)
    con.print(render(d, 160))
    text = con.export_text()
    row1 = next(ln for ln in text.splitlines() if ln.strip("│ ").startswith("node1"))
    assert BARS[0] * 8 + BARS[-1] + BARS[0] * 7 in row1  # the spike stands out on the shared scale
    assert (BARS[3] * 16) in row1                           # 0.1 hPa of noise: one flat line
    ble = next(ln for ln in text.splitlines() if ln.strip("│ ").startswith("ble2"))
    assert "adverts" in ble and "224" not in ble
    assert "one scale per metric across nodes" in text


def test_gateway_rows_reconcile_with_the_node_ledgers():
    from fogline.tools.demo.summary import reconcile
    tot = {"stored_at_gateway": 901, "alerts_stored_at_gateway": 4}
    r = reconcile(tot, 291, 2, 1198)  # 2 rows committed, their ack still on its way to node2
    assert r["matches"] is True and r["sum"] == 1198
    assert reconcile(tot, 291, 0, 1198)["matches"] is False
