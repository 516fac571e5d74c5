"""The demo's scenarios, nodes and gateway settings fit the shipped model: the same signals
(tools/sim/scenario.py), node filters (fogline.shared.filters), reading times (whole seconds as a board
stamps them), windows (fogline.gateway.aggregate.core) and inference (fogline.gateway.inference.core) as `fogline demo`, on a
virtual clock: normal sensors score no anomaly over 30 windows, every injected fault is found.
Deterministic (seeded, no wall clock), so it judges the configuration, not this machine's speed."""

from __future__ import annotations

import importlib.util

import pytest

from fogline.gateway.aggregate.core import Aggregator
from fogline.tools.demo.core import Demo
from fogline.tools.demo.fleet import BLE_INTERVAL_MS, node_config, scenario_spec
from fogline.tools.demo.truth import NodeTruth, Read, evaluate
from fogline.gateway.inference.core import InferenceConfig, InferenceEngine
from fogline.shared import filters
from fogline.tools import hostemu

# tools/sim/scenario.py is pure Python and runs on CPython too; loaded by path so tools/sim (the simulated
# MicroPython modules) never goes on this process's import path
_spec = importlib.util.spec_from_file_location("demo_sim_scenario", hostemu.SIM_DIR / "scenario.py")
sim = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sim)

T0 = 1_796_291_623.0  # 23 s into a minute: the first window is partial, as in a real run
MINUTES = 30


def _run_node(tmp_path, name: str, seed: int, ble: bool = False):
    """(decisions, truth) of one demo node's scenario through the demo's node and gateway settings."""
    d = Demo(nodes=2)
    gcfg = d.gateway_config("127.0.0.1", 1, ("127.0.0.1", 2))
    d.workdir.rmdir()
    agg_cfg, inf_cfg = gcfg["aggregate"], gcfg["inference"]
    spec = scenario_spec(name, seed)
    sc = sim.Scenario.from_spec(spec)
    ncfg = node_config("n", "demo", "127.0.0.1", 1, d.sample_ms, ble)
    chains = {s["name"]: filters.build_chain(s.get("filters", [])) for s in ncfg["sensors"]}
    closed = []
    agg = Aggregator(agg_cfg["windows_s"], agg_cfg["watermark_s"], closed.append, agg_cfg["idle_close_s"])
    decisions = []
    eng = InferenceEngine(InferenceConfig(window_s=inf_cfg["window_s"]), sink=decisions.extend,
                          data_dir=tmp_path / name)
    eng.start()
    truth = NodeTruth("n", name, signals=spec["signals"])
    latest: dict[str, float] = {}
    period = ncfg["sample_ms"] / 1000.0
    for i in range(int(MINUTES * 60 / period)):
        t_s = i * period
        epoch = T0 + t_s
        for s in ncfg["sensors"]:
            v, _truth, flags = sc.series[s["name"]].sample(t_s)
            truth.reads.append(Read(epoch, t_s, s["name"], flags))
            out = None if v is None else chains[s["name"]].update(v, int(t_s * 1000))
            if out is None:
                continue
            latest[s["name"]] = out
            if not ble:
                agg.add("n", s["name"], s["unit"], out, float(int(epoch)), epoch)
        if ble and (i * ncfg["sample_ms"]) % BLE_INTERVAL_MS == 0:  # an advert: the latest values, stamped on arrival
            for metric, v in latest.items():
                agg.add("n", metric, None, v, epoch, epoch)
        eng.submit_many(closed)
        closed.clear()
    return decisions, truth


@pytest.mark.parametrize("name,ble", [("normal", False), ("normal", True), ("wifi_loss", False)])
def test_normal_sensors_score_no_anomaly(tmp_path, name, ble):
    decisions, truth = _run_node(tmp_path, name, 104, ble)
    v = evaluate([truth], [d.__dict__ for d in decisions], {})["per_node"]["n"]
    assert v["windows_scored"] >= MINUTES - 2
    assert v["truth_anomalous"] == 0
    assert v["false_positives"] == 0, [(d.start, d.score, d.reasons) for d in decisions if d.label == "anomaly"]


# share of a faulty node's windows the model flags; a step that persists ("hot") fades as the
# node's baseline learns the new level (fogline.gateway.inference.features: ~20 windows), by design
MIN_WINDOW_RECALL = {"spikes": 0.9, "drift": 0.9, "stuck": 0.9, "hot": 0.7}


@pytest.mark.parametrize("name", sorted(MIN_WINDOW_RECALL))
def test_injected_faults_are_found_by_the_model(tmp_path, name):
    decisions, truth = _run_node(tmp_path, name, 100)
    out = evaluate([truth], [d.__dict__ for d in decisions], {})
    (inj,) = out["injected"]
    assert inj["found_by"] == ["model"], out
    v = out["per_node"]["n"]
    assert v["false_positives"] == 0, v
    assert v["window_recall"] >= MIN_WINDOW_RECALL[name], v
