"""Workload placement: scoring with capability sets, limits, battery re-placement with
hysteresis, the twin overlay (versioned pushes), the gateway runner's CPU cap and `fogline placement`."""

from __future__ import annotations

import asyncio
import json
import time
from types import SimpleNamespace

import cbor2
import pytest

from fogline.shared import filters as fw_filters
from fogline.gateway import config as config_mod
from fogline.tools.cli import main as cli_main
from fogline.gateway.ingest.devices import DeviceRegistry
from fogline.gateway.placement.core import Placement, node_fragment
from fogline.gateway.placement.run import GatewayRunner
from fogline.gateway.placement.score import (PlacementConfig, Workload, decide, gateway_candidate, node_candidate,
                                     score)
from fogline.gateway.twin.core import Twin, TwinConfig
from fogline.gateway.ingest.validate import Reading

MEDIAN = [{"type": "median", "window_size": 3, "send_every": 3}]
W_FILTER = {"name": "smooth", "kind": "filter", "node": "n1", "sensor": "temperature", "filters": MEDIAN,
            "heap_bytes": 2048, "flash_bytes": 0, "cpu_us": 40}
GW_HEALTH = {"mem_total": 4 << 30, "mem_avail": 2 << 30, "rss": 80 << 20, "cpu_pct": 20.0}


def _health() -> dict:
    """The gateway host's health as placement sees it: fixed, never this machine's load."""
    return dict(GW_HEALTH)


def _dev(reg: DeviceRegistry, node="n1", now=1000.0, **st):
    base = {"heap_free": 60000, "flash_free": 200000, "power": "usb", "battery": None, "board": "esp32_devkitc",
            "version": 1, "link": {"loss": 0.0, "rtt_ms": 12, "reconnects": 0}}
    base.update(st)
    return reg.update_state(node, base, now)


def _cands(**st):
    reg = DeviceRegistry()
    dev = _dev(reg, **st)
    return [node_candidate(dev, 1001.0), gateway_candidate("gw1", GW_HEALTH)]


def _cfg(**kw) -> PlacementConfig:
    c = PlacementConfig(**kw)
    c.validate()
    return c


def test_healthy_node_keeps_its_filter_and_scores_are_explained():
    w = Workload.from_dict(W_FILTER)
    d = decide(w, _cands(), _cfg())
    assert d.placed == "node:n1", d.reason
    by = {s.candidate: s for s in d.scores}
    assert by["node:n1"].feasible and by["gateway:gw1"].feasible
    assert by["node:n1"].total > by["gateway:gw1"].total
    assert by["node:n1"].parts["proximity"] == 1.0 and by["gateway:gw1"].parts["proximity"] == 0.5
    assert "node:n1 scores" in d.reason and "gateway:gw1" in d.reason


def test_weights_decide_where_it_lands():
    w = Workload.from_dict(W_FILTER)
    # proximity only: the source node; resources only: the gateway (4 GiB host vs 60 KB heap)
    assert decide(w, _cands(), _cfg(weights={"proximity": 1, "resources": 0, "link": 0, "power": 0})).placed == "node:n1"
    assert decide(w, _cands(), _cfg(weights={"proximity": 0, "resources": 1, "link": 0, "power": 0})).placed == "gateway:gw1"
    # a bad uplink lowers the gateway's link part: with link weighted, the node wins even more clearly
    good = score(w, _cands()[1], _cfg(), None, _cands()[0]).parts["link"]
    c = _cands(link={"loss": 0.4, "rtt_ms": 300})
    bad = score(w, c[1], _cfg(), None, c[0]).parts["link"]
    assert bad < 0.2 < 0.8 < good


def test_hard_limits_heap_flash_cpu_power_model_actuator():
    cfg = _cfg()
    big = Workload.from_dict({**W_FILTER, "heap_bytes": 50000})
    d = decide(big, _cands(), cfg)
    assert d.placed == "gateway:gw1" and "heap: 60000 free - 50000 needed < reserve 16384" in d.reason
    fl = Workload.from_dict({**W_FILTER, "flash_bytes": 190000})
    assert decide(fl, _cands(), cfg).placed == "gateway:gw1"
    cpu = Workload.from_dict({**W_FILTER, "cpu_us": 5000})
    assert "cpu: 5000 us/sample" in decide(cpu, _cands(), cfg).reason
    mains = Workload.from_dict({**W_FILTER, "power": "mains"})
    assert decide(mains, _cands(), cfg).placed == "gateway:gw1"
    assert decide(mains, _cands(power="mains"), cfg).placed == "node:n1"
    model = Workload.from_dict({"name": "ae", "kind": "model", "node": "n1", "model": "autoencoder", "heap_bytes": 1 << 20})
    d = decide(model, _cands(), cfg)
    assert d.placed == "gateway:gw1" and "no model runtime" in d.reason
    act = Workload.from_dict({"name": "cool", "kind": "rules", "node": "n1", "heap_bytes": 512, "rules": [
        {"name": "hot", "sensor": "temperature", "type": "above", "threshold": 30.0, "actuator": "relay"}]})
    d = decide(act, _cands(battery=5, power="battery"), cfg)
    assert d.placed is None and "drives actuator 'relay'" in d.reason  # optional + low battery: nowhere fits
    act.optional = False
    assert decide(act, _cands(battery=5, power="battery"), cfg).placed == "node:n1"
    # gateway memory cap: too little MemAvailable, or over the RSS cap, or over the workload budget
    low = [_cands()[0], gateway_candidate("gw1", {**GW_HEALTH, "mem_avail": (64 << 20) + 10000})]
    assert decide(Workload.from_dict({**W_FILTER, "heap_bytes": 50000, "name": "x"}), low, cfg).placed is None
    d = decide(big, [_cands()[0], gateway_candidate("gw1", GW_HEALTH)], _cfg(gw_rss_max=80 << 20))
    assert d.placed is None and "gw_rss_max" in d.reason
    d = decide(big, [_cands()[0], gateway_candidate("gw1", GW_HEALTH, declared_heap=(64 << 20) - 100)], cfg)
    assert d.placed is None and "gw_workload_mem_max" in d.reason


def test_battery_drop_moves_off_node_with_hysteresis():
    w = Workload.from_dict(W_FILTER)
    cfg = _cfg()  # min 20 %, resume 35 %
    cur = None
    path = []
    for pct in (90, 50, 22, 19, 25, 34, 60, 25, 19):
        d = decide(w, _cands(power="battery", battery=pct), cfg, cur)
        cur = d.placed
        path.append((pct, cur.split(":")[0]))
    assert path == [(90, "node"), (50, "node"), (22, "node"), (19, "gateway"), (25, "gateway"), (34, "gateway"),
                    (60, "node"), (25, "node"), (19, "gateway")], path
    # between the thresholds the score decides (power part = battery share), with the stickiness bonus
    assert decide(w, _cands(power="battery", battery=36), cfg, "gateway:gw1").placed == "gateway:gw1"
    d = decide(w, _cands(power="battery", battery=25), cfg, "gateway:gw1")
    assert "battery 25% not yet back to 35%" in d.reason
    # a stale or offline node is not a candidate
    assert decide(w, _cands(), _cfg(state_max_age_s=0.5)).placed == "gateway:gw1"
    reg = DeviceRegistry()
    assert "no state" in decide(w, [node_candidate(reg.devices.get("n1"), 0), _cands()[1]], cfg).reason


def test_config_section_registered_with_documented_defaults(tmp_path):
    p = tmp_path / "gw.toml"
    p.write_text("""
[placement]
enabled = true
weights = { link = 0.5 }
[[placement.workloads]]
name = "smooth"
kind = "filter"
node = "n1"
sensor = "temperature"
filters = [{ type = "median", window_size = 3, send_every = 3 }]
heap_bytes = 2048
""")
    pc = config_mod.load(p).placement
    assert isinstance(pc, PlacementConfig) and pc.enabled
    assert pc.weights == {"proximity": 0.35, "resources": 0.25, "link": 0.5, "power": 0.2}
    assert pc.parsed_workloads()[0].heap_bytes == 2048
    assert "[placement]" in config_mod.example_toml()
    for bad, word in (("weights = { speed = 1 }", "placement.weights.speed"),
                      ("battery_resume_pct = 5.0", "battery_resume_pct"),
                      ('workloads = [{ name = "a", kind = "filter", node = "n1", sensor = "t", filters = [{ type = "nope" }] }]',
                       "placement.workloads[0].filters[0].type"),
                      ('workloads = [{ name = "a", kind = "job", node = "n1" }]', "placement.workloads[0].kind")):
        p.write_text(f"[placement]\n{bad}\n")
        with pytest.raises(ValueError, match=word.replace("[", r"\[").replace("]", r"\]")):
            config_mod.load(p)


def test_node_fragment_sets_chain_and_rules_from_board_sensors():
    w = Workload.from_dict(W_FILTER)
    r = Workload.from_dict({"name": "alarm", "kind": "rules", "node": "n1", "rules": [
        {"name": "hot", "sensor": "temperature", "type": "above", "threshold": 30.0}]})
    board = {"sensors": [{"name": "temperature", "driver": "bme280", "filters": [{"type": "offset", "value": 1}]},
                         {"name": "humidity", "driver": "bme280", "field": "humidity"}]}
    base = {"rules": [{"name": "keep", "sensor": "humidity", "type": "below", "threshold": 5.0}]}
    frag, err = node_fragment("n1", [w, r], [w, r], base, board)
    assert err is None
    assert frag["sensors"][0]["filters"] == MEDIAN and "filters" not in frag["sensors"][1]
    assert [x["name"] for x in frag["rules"]] == ["keep", "hot"]
    frag, _ = node_fragment("n1", [], [w, r], base, board)
    assert frag["sensors"][0]["filters"] == [] and [x["name"] for x in frag["rules"]] == ["keep"]
    assert board["sensors"][0]["filters"] == [{"type": "offset", "value": 1}]  # inputs untouched
    _, err = node_fragment("n1", [], [Workload.from_dict({**W_FILTER, "sensor": "co2"})], None, board)
    assert "no sensor 'co2'" in err
    # the node runs a sensor its board file does not list: pushing the board's list would drop it
    _, err = node_fragment("n1", [w], [w], None, board, running=["temperature", "humidity", "soil"])
    assert "runs sensors ['soil']" in err
    assert node_fragment("n1", [w], [w], None, board, running=["temperature", "humidity"])[1] is None


def test_gateway_runner_matches_firmware_chain_rules_and_sheds_over_cpu_budget():
    w = Workload.from_dict(W_FILTER)
    r = Workload.from_dict({"name": "alarm", "kind": "rules", "node": "n1", "rules": [
        {"name": "hot", "sensor": "temperature", "type": "above", "threshold": 30.0, "hysteresis": 1.0}]})
    run = GatewayRunner(cpu_ms_per_s=1000.0)
    outs, alerts = [], []
    run.outputs.append(lambda *a: outs.append(a))
    run.alerts.append(lambda *a: alerts.append(a))
    run.set_workloads([w, r])
    vals = [20.0, 25.0, 21.0, 31.0, 33.0, 32.0, 28.0, 29.5, 22.0]
    rds = [Reading("n1", "up", i + 1, "temperature", "Cel", v, 1000.0 + i) for i, v in enumerate(vals)]
    rds.append(Reading("n2", "up", 1, "temperature", "Cel", 99.0, 1000.0))  # another node: ignored
    run.on_readings(rds)
    ref = fw_filters.build_chain(MEDIAN)
    want = [x for x in (ref.update(v, int((1000.0 + i) * 1000)) for i, v in enumerate(vals)) if x is not None]
    assert [o[3] for o in outs] == want and len(want) == 3
    assert [(a[2], a[3]) for a in alerts] == [("hot", True), ("hot", False)]
    st = run.stats()
    assert st["smooth"]["in"] == 9 and st["smooth"]["out"] == 3 and st["alarm"]["alerts"] == 2
    run.set_workloads([w, r])  # unchanged: state kept
    assert run.running["smooth"].counts["in"] == 9
    # CPU cap: a fake CPU clock that burns 30 ms per call, budget 50 ms/s -> the third reading of a second is shed
    cpu = iter(x * 0.03 for x in range(1000))
    capped = GatewayRunner(cpu_ms_per_s=50.0, clock=lambda: 5.0, cpu=lambda: next(cpu))
    capped.set_workloads([w])
    capped.on_readings(rds[:6])
    st = capped.stats()["smooth"]
    assert st["in"] == 2 and st["shed"] == 4, st


class FakeGw:
    """Just what Placement uses of a Gateway: registry, on_state/on_readings hooks, publish."""

    def __init__(self):
        self.registry = DeviceRegistry()
        self.states, self.readings, self.published = [], [], []
        self.mqtt = object()

    def on_state(self, cb):
        self.states.append(cb)

    def on_readings(self, cb):
        self.readings.append(cb)

    async def publish(self, topic, payload, qos=1, retain=False):
        self.published.append((topic, payload, retain))

    def state(self, node, st, now):
        dev = self.registry.update_state(node, st, now)
        for cb in self.states:
            cb(node, st, dev)


def test_component_moves_workload_on_battery_drop_and_back(tmp_path):
    async def main():
        pushes = []

        async def publish(topic, payload, qos, retain):
            pushes.append((topic, cbor2.loads(payload)))

        twin = Twin(TwinConfig(), "s1", publish, data_dir=tmp_path)
        gw = FakeGw()
        twin.gw = gw
        gw.on_state(lambda node, st, _d=None: twin.on_state(node, st))
        pc = _cfg(workloads=[W_FILTER], interval_s=3600)
        p = Placement(pc, "s1", "gw1", tmp_path, twin, health_source=_health)
        await p.start(gw)
        await asyncio.sleep(0.05)
        assert p.current == {} and not pushes  # no state yet: nothing is pushed
        assert "waiting for the node's first state" in p.decisions["smooth"]["reason"]
        st = {"heap_free": 60000, "flash_free": 200000, "power": "battery", "battery": 80, "board": "esp32_devkitc",
              "version": 1, "link": {"loss": 0.0, "rtt_ms": 10}}
        now = time.time()
        gw.state("n1", st, now)
        await asyncio.sleep(0.05)
        assert p.current["smooth"] == "node:n1"
        t, cfg1 = pushes[-1]
        assert t == "fogline/s1/n1/config" and cfg1["version"] == 2
        temp = next(s for s in cfg1["sensors"] if s["name"] == "temperature")
        assert temp["filters"] == MEDIAN and len(cfg1["sensors"]) == 3  # board's sensors kept
        gw.state("n1", {**st, "version": 2}, now)
        await asyncio.sleep(0.05)
        assert len(pushes) == 1  # nothing changed: no new push
        gw.state("n1", {**st, "version": 2, "battery": 12}, now)
        await asyncio.sleep(0.05)
        assert p.current["smooth"] == "gateway:gw1"
        cfg2 = pushes[-1][1]
        assert cfg2["version"] == 3 and next(s for s in cfg2["sensors"] if s["name"] == "temperature")["filters"] == []
        assert "smooth" in p.runner.running
        gw.state("n1", {**st, "version": 3, "battery": 30}, now)  # between the thresholds: stays
        await asyncio.sleep(0.05)
        assert p.current["smooth"] == "gateway:gw1" and len(pushes) == 2
        gw.state("n1", {**st, "version": 3, "battery": 60}, now)
        await asyncio.sleep(0.05)
        assert p.current["smooth"] == "node:n1" and pushes[-1][1]["version"] == 4
        assert "smooth" not in p.runner.running
        await p.stop()
        rep = json.loads((tmp_path / "placement.json").read_text())
        assert rep["current"] == {"smooth": "node:n1"} and [e["to"] for e in rep["events"]] == [
            "node:n1", "gateway:gw1", "node:n1"]
        assert rep["decisions"]["smooth"]["config_version"] == 4
        topic, payload, retain = gw.published[-1]
        assert topic == "fogline/s1/_gw/gw1/placement" and retain
        assert cbor2.loads(payload)["current"] == {"smooth": "node:n1"}
        # a restarted gateway remembers where things run (hysteresis across restarts)
        p2 = Placement(pc, "s1", "gw1", tmp_path, twin, health_source=_health)
        assert p2.current == {"smooth": "node:n1"}
        return rep

    rep = asyncio.run(main())
    assert rep["counters"]["moves"] == 3


def test_twin_overlay_keeps_file_layers_and_bumps_versions(tmp_path):
    async def main():
        pushes = []

        async def publish(topic, payload, qos, retain):
            pushes.append(cbor2.loads(payload))

        f = tmp_path / "twin.toml"
        f.write_text('[all]\nversion = 5\nsample_ms = 500\n[nodes.n1]\n')
        twin = Twin(TwinConfig(file=str(f)), "s1", publish, data_dir=tmp_path)
        twin.on_state("n1", {"version": 5, "board": "esp32_devkitc"})
        await twin.reload()
        assert pushes[-1]["version"] == 5 and "rules" not in pushes[-1]
        rule = {"name": "hot", "sensor": "temperature", "type": "above", "threshold": 30.0}
        await twin.set_overlay("n1", {"rules": [rule]})
        assert pushes[-1]["version"] == 6 and pushes[-1]["sample_ms"] == 500 and pushes[-1]["rules"] == [rule]
        await twin.set_overlay("n1", {"rules": [rule]})
        assert len(pushes) == 2  # same content: no push, same version
        f.write_text('[all]\nversion = 7\nsample_ms = 250\n[nodes.n1]\n')
        await twin.reload()
        assert pushes[-1]["version"] == 7 and pushes[-1]["sample_ms"] == 250 and pushes[-1]["rules"] == [rule]
        await twin.set_overlay("n1", None)
        assert pushes[-1]["version"] == 7 and len(pushes) == 3  # back to the file's own config: same version
        assert twin.nodes["n1"].desired == {"version": 7, "sample_ms": 250, "node": {"id": "n1", "site": "s1"}}

    asyncio.run(main())


def test_placement_command_prints_scores_and_reasons(tmp_path, capsys):
    async def main():
        twin = Twin(TwinConfig(), "s1", None, data_dir=tmp_path)
        gw = FakeGw()
        p = Placement(_cfg(workloads=[W_FILTER, {**W_FILTER, "name": "huge", "heap_bytes": 1 << 20}]), "s1", "gw1",
                      tmp_path, twin, health_source=_health)
        await p.start(gw)
        gw.state("n1", {"heap_free": 60000, "flash_free": 200000, "power": "usb", "version": 1,
                        "board": "esp32_devkitc"}, time.time())
        await asyncio.sleep(0.05)
        await p.stop()

    asyncio.run(main())
    assert cli_main(["placement", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "smooth  [filter of node n1]  -> node:n1" in out
    assert "huge  [filter of node n1]  -> gateway:gw1" in out
    assert "excluded: heap: 60000 free - 1048576 needed" in out
    assert "proximity=1.00" in out and "reason: node:n1 scores" in out
    assert cli_main(["placement", "--data-dir", str(tmp_path / "none")]) == 1
    assert cli_main(["placement", "--data-dir", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["current"] == {"smooth": "node:n1", "huge": "gateway:gw1"}


def test_cluster_only_the_nodes_primary_gateway_places_it(tmp_path):
    async def main():
        twin = Twin(TwinConfig(), "s1", None, data_dir=tmp_path)
        gw = FakeGw()
        gw.cluster = SimpleNamespace(primary=lambda node: "gwB")
        p = Placement(_cfg(workloads=[W_FILTER]), "s1", "gwA", tmp_path, twin, health_source=_health)
        p.current = {"smooth": "gateway:gwA"}
        p._apply_runner()
        assert "smooth" in p.runner.running
        await p.start(gw)
        gw.state("n1", {"heap_free": 60000, "flash_free": 200000, "power": "usb", "version": 1,
                        "board": "esp32_devkitc"}, time.time())
        await asyncio.sleep(0.05)
        assert p.current == {} and "smooth" not in p.runner.running
        assert "served by gateway gwB" in p.decisions["smooth"]["reason"]
        gw.cluster = SimpleNamespace(primary=lambda node: "gwA")  # failover: this gateway is primary now
        await p.evaluate()
        assert p.current == {"smooth": "node:n1"}
        await p.stop()

    asyncio.run(main())


def test_service_wiring_attaches_placement_with_its_own_twin(tmp_path):
    from fogline.gateway.app import Gateway
    from fogline.gateway.service_components import attach

    cfg = config_mod.from_dict({"site": {"data_dir": str(tmp_path)}, "inference": {"enabled": False},
                                "placement": {"enabled": True, "workloads": [W_FILTER]}})
    gw = Gateway(cfg)
    notes = attach(gw)
    assert notes["placement"] == "on", notes
    assert isinstance(gw.placement, Placement) and isinstance(gw.placement.twin, Twin)
    assert gw.placement in gw._components and gw.placement.twin in gw._components
    off = attach(Gateway(config_mod.from_dict({"site": {"data_dir": str(tmp_path / "b")},
                                               "inference": {"enabled": False}})))
    assert off["placement"].startswith("off"), off


def test_gateway_workload_memory_cap_holds_within_one_pass(tmp_path):
    async def main():
        gw = FakeGw()
        ws = [{**W_FILTER, "name": f"big{i}", "heap_bytes": 30 << 20} for i in range(3)]
        twin = Twin(TwinConfig(), "s1", None, data_dir=tmp_path)
        # 3 x 30 MiB vs the 64 MiB budget
        p = Placement(_cfg(workloads=ws), "s1", "gw1", tmp_path, twin, health_source=_health)
        await p.start(gw)
        gw.state("n1", {"heap_free": 60000, "flash_free": 200000, "power": "usb", "version": 1,
                        "board": "esp32_devkitc"}, time.time())
        await asyncio.sleep(0.05)
        await p.stop()
        return p

    p = asyncio.run(main())
    assert p.current == {"big0": "gateway:gw1", "big1": "gateway:gw1"}, p.current
    assert p.decisions["big2"]["placed"] is None
    assert "gw_workload_mem_max" in p.decisions["big2"]["reason"]


def test_a_move_the_node_config_cannot_follow_is_not_made(tmp_path):
    async def main():
        gw = FakeGw()
        soil = {**W_FILTER, "name": "soil", "sensor": "soil"}  # the board has no sensor 'soil'
        p = Placement(_cfg(workloads=[W_FILTER, soil]), "s1", "gw1", tmp_path, None, health_source=_health)
        await p.start(gw)
        gw.state("n1", {"heap_free": 60000, "flash_free": 200000, "power": "usb", "version": 1,
                        "board": "esp32_devkitc"}, time.time())
        await asyncio.sleep(0.05)
        assert p.current == {} and p.node_errors["n1"] == "no twin: node configs cannot be pushed"
        p.twin = Twin(TwinConfig(), "s1", None, data_dir=tmp_path)
        await p.evaluate()
        assert p.current == {} and "no sensor 'soil'" in p.decisions["soil"]["reason"]
        assert p.decisions["smooth"]["reason"].startswith("not moved (") and p.counters["config_errors"] == 1
        assert not p.runner.running
        await p.stop()

    asyncio.run(main())


def test_the_injected_health_source_decides_the_gateway_candidate(tmp_path):
    async def main(cpu_pct: float) -> Placement:
        gw = FakeGw()
        calls = []

        def health() -> dict:
            calls.append(1)
            return {**GW_HEALTH, "cpu_pct": cpu_pct}

        d = tmp_path / str(cpu_pct)
        p = Placement(_cfg(workloads=[{**W_FILTER, "heap_bytes": 50000}]), "s1", "gw1", d,
                      Twin(TwinConfig(), "s1", None, data_dir=d), health_source=health)
        await p.start(gw)
        gw.state("n1", {"heap_free": 60000, "flash_free": 200000, "power": "usb", "version": 1,
                        "board": "esp32_devkitc"}, time.time())
        await asyncio.sleep(0.05)
        await p.stop()
        assert calls, "the health source was never asked"
        return p

    idle, busy = asyncio.run(main(10.0)), asyncio.run(main(99.0))
    assert idle.decisions["smooth"]["placed"] == "gateway:gw1"  # too big for the node's heap
    assert busy.decisions["smooth"]["placed"] is None
    assert "cpu 99% > gw_cpu_max_pct" in busy.decisions["smooth"]["reason"]
