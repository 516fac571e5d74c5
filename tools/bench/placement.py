"""Placement benchmark: scoring cost, gateway runner cost, re-placement latency end to end.

1. decide(): microseconds per decision (one workload, node + gateway candidates), over varied capabilities;
   Placement.evaluate() over many nodes (whole pass, and one node's re-evaluation on its `state`).
2. GatewayRunner: CPU per reading for a median filter workload and a rule set (firmware classes on CPython).
3. Re-placement latency with a real firmware node (tools/demo_node.py on the MicroPython unix port), real
   mosquitto and the gateway: simulated battery drop -> placement decision -> node runs the new config
   (its `state` reports the pushed version); then recovery -> back on the node. `cycles` drop/recover pairs.

    python tools/bench/placement.py [--quick] [--cycles N]
Last line: one JSON object of figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests")]  # tests/harness: the kits benches share with tests

from fogline.gateway.ingest.devices import DeviceRegistry  # noqa: E402
from fogline.gateway.placement.run import GatewayRunner  # noqa: E402
from fogline.gateway.placement.score import PlacementConfig, Workload, decide, gateway_candidate, node_candidate  # noqa: E402
from fogline.gateway.ingest.validate import Reading  # noqa: E402

MEDIAN = [{"type": "median", "window_size": 5, "send_every": 5}]
W = {"name": "t-smooth", "kind": "filter", "node": "n1", "sensor": "temperature", "filters": MEDIAN,
     "heap_bytes": 2048, "cpu_us": 40}


def bench_decide(n: int) -> dict:
    cfg = PlacementConfig()
    cfg.validate()
    w = Workload.from_dict(W)
    rnd = random.Random(1)
    reg = DeviceRegistry()
    views = []
    for i in range(200):
        dev = reg.update_state("n1", {"heap_free": rnd.randint(10000, 120000), "flash_free": rnd.randint(0, 400000),
                                      "power": rnd.choice(["usb", "battery", "mains"]), "battery": rnd.randint(0, 100),
                                      "link": {"loss": rnd.random() / 2, "rtt_ms": rnd.randint(1, 500)}}, 1000.0)
        nc = node_candidate(dev, 1000.0 + rnd.random() * 10)
        gc = gateway_candidate("gw1", {"mem_total": 4 << 30, "mem_avail": rnd.randint(1 << 26, 4 << 30),
                                       "rss": 80 << 20, "cpu_pct": rnd.random() * 100})
        views.append([nc, gc])
    cur = None
    t0 = time.perf_counter()
    for i in range(n):
        cur = decide(w, views[i % len(views)], cfg, cur).placed
    dt = time.perf_counter() - t0
    return {"decisions": n, "us_per_decision": round(dt / n * 1e6, 2)}


def bench_evaluate(n_nodes: int) -> dict:
    """Steady-state Placement.evaluate() over n_nodes nodes with one workload each (twin without a broker)."""
    from types import SimpleNamespace

    from fogline.gateway.placement.core import Placement
    reg = DeviceRegistry()
    for i in range(n_nodes):
        reg.update_state(f"n{i}", {"heap_free": 60000, "flash_free": 200000, "power": "usb", "version": 1,
                                   "board": "esp32_devkitc"}, time.time())
    ws = [{**W, "name": f"w{i}", "node": f"n{i}"} for i in range(n_nodes)]
    cfg = PlacementConfig(workloads=ws)
    tmp = Path(tempfile.mkdtemp(prefix="fogline-plc-eval-"))
    from fogline.gateway.twin.core import Twin, TwinConfig
    p = Placement(cfg, "bench", "gw1", tmp, Twin(TwinConfig(), "bench", None, data_dir=tmp))  # no broker: no publish
    p.gw = SimpleNamespace(registry=reg, mqtt=None, metrics=None)
    asyncio.run(p.evaluate())  # first pass: everything moves
    t0 = time.perf_counter()
    asyncio.run(p.evaluate())
    full = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(200):
        asyncio.run(p.evaluate([f"n{i % n_nodes}"]))
    one = (time.perf_counter() - t0) / 200
    return {"nodes": n_nodes, "evaluate_all_ms": round(full * 1000, 1), "evaluate_one_node_ms": round(one * 1000, 3)}


def bench_runner(n: int) -> dict:
    out = {}
    for kind, w in (("filter_median5", Workload.from_dict(W)),
                    ("rules_2", Workload.from_dict({"name": "r", "kind": "rules", "node": "n1", "rules": [
                        {"name": "hot", "sensor": "temperature", "type": "above", "threshold": 25.0, "hysteresis": 0.5},
                        {"name": "fast", "sensor": "temperature", "type": "rate", "threshold": 2.0}]}))):
        run = GatewayRunner(cpu_ms_per_s=1e9)
        run.set_workloads([w])
        rds = [Reading("n1", "up", i + 1, "temperature", "Cel", 21.0 + 5 * ((i * 7919) % 100) / 100, 1000.0 + i * 0.2)
               for i in range(n)]
        c0 = time.thread_time()
        for i in range(0, n, 100):
            run.on_readings(rds[i:i + 100])
        dt = time.thread_time() - c0
        out[kind] = round(dt / n * 1e6, 2)
    return out


def bench_latency(cycles: int) -> dict:
    from fogline.gateway import config as config_mod
    from fogline.gateway.placement import core as placement_mod
    from fogline.gateway.app import Gateway
    from harness.broker import Mosquitto
    from harness.sitekit import VNode

    tmp = Path(tempfile.mkdtemp(prefix="fogline-plc-bench-"))
    broker = Mosquitto(tmp / "broker").start()
    site = {"version": 1, "node": {"id": "n1", "site": "bench", "board": "esp32_devkitc"}, "sample_ms": 200,
            "watchdog_ms": 0, "state_ms": 300, "mqtt": {"host": "127.0.0.1", "port": broker.port, "keepalive": 5},
            "hw": {"power": "battery", "battery": {"pin": 34, "divider": 2, "empty_mv": 3300, "full_mv": 4200}},
            "ble": {"enabled": False, "bind_key": None, "interval_ms": 1000},
            "ntp": {"enabled": False, "host": "pool.ntp.org", "interval_s": 3600},
            "log": {"capacity_bytes": 65536, "segment_bytes": 4096, "sync_every": 5, "sync_ms": 200}}
    (tmp / "site.json").write_text(json.dumps(site))
    node = VNode(tmp, "n1", tmp / "site.json", "normal", 3, blocks=128, drain_ms=500, time_scale=1.0)
    node.start()
    cfg = config_mod.from_dict({"site": {"id": "bench", "gateway_id": "gwA", "data_dir": str(tmp / "gw")},
                                "mqtt": {"port": broker.port, "client_id": "gw-bench", "worker_process": False},
                                "placement": {"enabled": True, "interval_s": 1.0, "workloads": [W]}})
    res: dict[str, list[float]] = {"drop_decide_s": [], "drop_applied_s": [], "recover_decide_s": [],
                                   "recover_applied_s": []}

    async def main() -> None:
        gw = Gateway(cfg)
        p = placement_mod.attach(gw)
        await gw.start()
        nt = lambda: p.twin.nodes.get("n1")  # noqa: E731

        async def until(pred, timeout=20.0):
            t0 = time.monotonic()
            while not pred():
                if time.monotonic() - t0 > timeout:
                    raise RuntimeError("timeout")
                await asyncio.sleep(0.005)
            return time.monotonic()

        try:
            await until(lambda: p.current.get("t-smooth") == "node:n1" and nt().reported_version == nt().desired_version)
            for _ in range(cycles):
                for mv, where, key in ((3400, "gateway:gwA", "drop"), (4100, "node:n1", "recover")):
                    t0 = time.monotonic()
                    node.battery_mv(mv)
                    t1 = await until(lambda: p.current.get("t-smooth") == where)
                    v = nt().desired_version
                    t2 = await until(lambda: nt().reported_version == v)
                    res[f"{key}_decide_s"].append(t1 - t0)
                    res[f"{key}_applied_s"].append(t2 - t0)
        finally:
            await gw.stop()

    try:
        asyncio.run(main())
    finally:
        node.halt(10)
        broker.stop()
    return {k: round(statistics.median(v), 3) for k, v in res.items() if v} | {"cycles": cycles}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--cycles", type=int, default=None)
    a = ap.parse_args()
    n = 2000 if a.quick else 20000
    d = bench_decide(n)
    r = bench_runner(2000 if a.quick else 20000)
    ev = bench_evaluate(200 if a.quick else 1000)
    lat = bench_latency(a.cycles or (1 if a.quick else 3))
    print(f"{'figure':<40} value")
    print(f"{'decide() per decision (us)':<40} {d['us_per_decision']}")
    for k, v in r.items():
        print(f"{'gateway runner ' + k + ' (us CPU/reading)':<40} {v}")
    print(f"{'evaluate() all ' + str(ev['nodes']) + ' nodes (ms)':<40} {ev['evaluate_all_ms']}")
    print(f"{'evaluate() one node on its state (ms)':<40} {ev['evaluate_one_node_ms']}")
    for k, v in lat.items():
        print(f"{'re-placement ' + k:<40} {v}")
    print("(latencies include the node's state period of 300 ms: it reports the battery at most that late)")
    print(json.dumps({"us_per_decision": d["us_per_decision"], "runner_us_per_reading": r, **ev, **lat}))


if __name__ == "__main__":
    main()
