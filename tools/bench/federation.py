"""Federated learning benchmark: F1 local-only vs federated per gateway, bytes per round, round time.

    python tools/bench/federation.py [--quick] [--rounds N] [--transport mqtt|inproc] [--aggregator NAME]

Three simulated gateways (tools/fedsim.py: different climates, sensor mixes, anomaly mixes and
rates) start from the same weak v1 model of the shipped architecture. Local-only = the same
fine-tuning steps on the gateway's own windows alone; federated = the model each gateway serves
after the rounds (adoption gated on its own held-back windows). F1 on the same unseen union mix.
Bytes = every federation payload + topic published in a round (start, 3 updates, model, 3 results);
also measured with float16 deltas (update_dtype = "float16"). A third run starts from the shipped
(bundled, pruned) model with the default learning rate: does fine-tuning forget or improve? -- with
generator labels and with pseudo-labels (the shipped model's confident calls: what a real gateway has).
A second run adds a faulty gateway sending 1e4-scaled deltas every round: F1 with plain FedAvg
(norm screen off) vs the robust aggregator. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # tests/harness: the kits benches share with tests
from fogline.gateway.federation import local as fedlocal, wire as fedwire  # noqa: E402
from fogline.gateway.federation.bus import InProcessBus, MqttBus  # noqa: E402
from fogline.gateway.federation.coord import run_round  # noqa: E402
from fogline.gateway.federation.core import FederationConfig, load_bytes  # noqa: E402
from fogline.gateway.inference.registry import BUNDLED_DIR, read_manifest  # noqa: E402
from fogline.tools import fedsim  # noqa: E402


def federate(cfg: FederationConfig, sites, base, rounds: int, transport: str, tmp: Path, attacker: bool = False):
    """(members, per-round results) after `rounds` rounds."""
    ids = [*fedsim.GATEWAYS, "coordinator"]
    broker = None
    if transport == "mqtt":
        from harness.broker import Mosquitto
        broker = Mosquitto(tmp / "mosquitto").start()
        buses = {i: MqttBus("127.0.0.1", broker.port, f"bench-{i}") for i in ids}
    else:
        bus = InProcessBus()
        buses = {i: bus for i in ids}
    coord, members = fedsim.build(cfg, sites, base, buses, tmp / ("reg-bad" if attacker else "reg"))
    if attacker:
        evil = b"faulty gateway key faulty gw key"
        coord.keys["gw-faulty"] = evil
        rng = np.random.default_rng(0)

        def attack(topic: str, _p: bytes) -> None:
            rnd = fedwire.parse_topic(cfg.topic_prefix, topic)[0]
            body = {"round": rnd, "gw": "gw-faulty", "base": coord.lineage.version, "base_sha": coord.lineage.sha,
                    "n": 10**6, "steps": 1,
                    "tensors": fedwire.pack_tensors([rng.normal(0, 1e-3, s) * 1e4 for s in coord.lineage.shapes])}
            buses["coordinator"].publish(fedwire.topic(cfg.topic_prefix, rnd, "update", "gw-faulty"),
                                         fedwire.seal(evil, "gw-faulty", "update", body))
        buses["coordinator"].subscribe(f"{cfg.topic_prefix}/+/start", attack)
    uniq = list({id(b): b for b in buses.values()}.values())
    res = []
    try:
        for r in range(1, rounds + 1):
            res.append(run_round(coord, uniq, r, members if transport != "mqtt" else []))
    finally:
        for m in members:
            m.close()
        if transport == "mqtt":
            for b in uniq:
                b.close()
            broker.stop()
    return members, res


def stall_during_training(site, base, steps: int = 200) -> dict:
    """Gaps of a 1 ms 'ingest' loop in the main thread while a local round trains in the worker thread."""
    from fogline.gateway.federation.core import Member

    cfg = FederationConfig(max_steps=steps, max_train_s=30)
    bus = InProcessBus()
    keys = fedsim.keys()
    m = Member(cfg, site.gw, keys[site.gw], {"coordinator": keys["coordinator"]}, site.data, base, bus)
    bus.publish(fedwire.topic(cfg.topic_prefix, 1, "start"), fedwire.seal(
        keys["coordinator"], "coordinator", "start", {"round": 1, "base": base[0]["version"], "base_sha": base[0]["sha256"]}))
    gaps, t0 = [], time.perf_counter()
    bus.pump_once()
    last = time.perf_counter()
    while m._busy.locked():
        time.sleep(0.001)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now
    train_s = time.perf_counter() - t0
    m.close()
    g = np.array(gaps) * 1e3
    return {"train_s": round(train_s, 3), "steps": steps, "loop_gap_p50_ms": round(float(np.percentile(g, 50)), 2),
            "loop_gap_p99_ms": round(float(np.percentile(g, 99)), 2), "loop_gap_max_ms": round(float(g.max()), 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="less data, 10 rounds, in-process")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--transport", choices=("mqtt", "inproc"))
    ap.add_argument("--aggregator", default="trimmed_mean")
    a = ap.parse_args(argv)
    rounds = a.rounds or (10 if a.quick else 20)
    transport = a.transport or ("inproc" if a.quick else "mqtt")
    nodes, hours, tnodes, thours = (4, 12, 2, 8) if a.quick else (4, 24, 3, 24)
    t0 = time.perf_counter()
    sites = [fedsim.gateway_data(g, nodes, hours, fedsim.TRAIN_SEED) for g in fedsim.GATEWAYS]
    union = fedsim.union_test(tnodes, thours)
    base = fedsim.base_model()
    print(f"data: {', '.join(f'{s.gw} {len(s.data)} windows ({int(s.data.y.sum())} anomalous)' for s in sites)}; "
          f"union test {len(union)} windows ({int(union.y.sum())} anomalous) ({time.perf_counter() - t0:.1f} s)")
    cfg = FederationConfig(aggregator=a.aggregator, max_steps=50, expected_updates=3, round_timeout_s=60,
                           lr=fedsim.WEAK_LR)
    with tempfile.TemporaryDirectory() as tmp:
        members, res = federate(cfg, sites, base, rounds, transport, Path(tmp))
        local = {s.gw: fedsim.f1(fedsim.local_only(base, s, cfg, rounds), union) for s in sites}
        fed = {m.id: fedsim.f1(m.serving, union) for m in members}
        ver = {m.id: m.serving.manifest["version"] for m in members}
        train_s = [m.counters["rounds_trained"] for m in members]
        # float16 deltas: half the update bytes; same rounds, in-process
        hc = FederationConfig(aggregator=a.aggregator, max_steps=50, expected_updates=3, round_timeout_s=60,
                              lr=fedsim.WEAK_LR, update_dtype="float16")
        hm, hres = federate(hc, sites, base, rounds, "inproc", Path(tmp) / "f16")
        f16 = {"bytes_per_round": round(statistics.mean(r.bytes for r in hres)),
               "f1_federated": {m.id: round(fedsim.f1(m.serving, union), 4) for m in hm}}
        # from the shipped model (bundled v1, pruned) with the config's default learning rate
        shipped = (read_manifest(BUNDLED_DIR), (BUNDLED_DIR / read_manifest(BUNDLED_DIR)["file"]).read_bytes())
        sc = FederationConfig(aggregator=a.aggregator, max_steps=50, expected_updates=3, round_timeout_s=60)
        sm, _sres = federate(sc, sites, shipped, rounds, "inproc", Path(tmp) / "shipped")
        ship = {"base_f1": round(fedsim.f1(load_bytes(*shipped), union), 4),
                "f1_local": {s.gw: round(fedsim.f1(fedsim.local_only(shipped, s, sc, rounds), union), 4) for s in sites},
                "f1_federated": {m.id: round(fedsim.f1(m.serving, union), 4) for m in sm},
                "serving": {m.id: m.serving.manifest["version"] for m in sm}}
        # the production labelling: no ground truth at the gateways, the shipped model's confident calls
        smodel = load_bytes(*shipped)
        psites = [fedsim.Site(x.gw, fedlocal.pseudo_label(x.data.X, smodel), x.stats) for x in sites]
        pm, _pres = federate(sc, psites, shipped, rounds, "inproc", Path(tmp) / "pseudo")
        ship["pseudo_labels"] = {
            "f1_local": {x.gw: round(fedsim.f1(fedsim.local_only(shipped, x, sc, rounds), union), 4) for x in psites},
            "f1_federated": {m.id: round(fedsim.f1(m.serving, union), 4) for m in pm},
            "kept_share": {x.gw: round(len(x.data) / len(o.data), 3) for x, o in zip(psites, sites)}}
        # poisoning: a faulty 4th gateway, plain FedAvg without the norm screen vs the robust aggregator
        pois = {}
        for name, agg, ratio in (("fedavg_unscreened", "fedavg", 0.0), (a.aggregator, a.aggregator, 0.0)):
            pc = FederationConfig(aggregator=agg, max_norm_ratio=ratio, max_steps=50, expected_updates=4,
                                  round_timeout_s=60, lr=fedsim.WEAK_LR)
            _m, _res = federate(pc, sites, base, min(rounds, 5), "inproc", Path(tmp) / name, attacker=True)
            pois[name] = round(fedsim.f1(load_bytes(_m[0].lineage.manifest, _m[0].lineage.data), union), 4)
    stall = stall_during_training(sites[1], base)
    base_f1 = fedsim.f1(load_bytes(*base), union)
    per_round = [r.bytes for r in res]
    secs = [r.seconds for r in res]
    print(f"\n{'gateway':<10}{'local-only F1':>15}{'federated F1':>14}{'serving':>9}")
    for g in fed:
        print(f"{g:<10}{local[g]:>15.3f}{fed[g]:>14.3f}{'v' + str(ver[g]):>9}")
    print(f"base model F1 {base_f1:.3f}; {rounds} rounds over {transport}, aggregator {a.aggregator}, "
          f"{cfg.max_steps} local steps/round (rounds trained per gateway: {train_s})")
    print(f"bytes per round: mean {statistics.mean(per_round):.0f} (min {min(per_round)}, max {max(per_round)}); "
          f"round time p50 {statistics.median(secs) * 1e3:.0f} ms, max {max(secs) * 1e3:.0f} ms")
    print(f"from the shipped model (F1 {ship['base_f1']:.3f}, lr {FederationConfig().lr}): "
          f"local-only {json.dumps(ship['f1_local'])}, federated {json.dumps(ship['f1_federated'])}")
    pl = ship["pseudo_labels"]
    print(f"  same, pseudo-labels (shipped model's confident calls, no ground truth): local-only "
          f"{json.dumps(pl['f1_local'])}, federated {json.dumps(pl['f1_federated'])}")
    print(f"float16 deltas: bytes per round {f16['bytes_per_round']}, federated F1 {json.dumps(f16['f1_federated'])}")
    print(f"local round of {stall['steps']} steps in the worker thread: {stall['train_s']} s; a 1 ms main-thread loop "
          f"meanwhile: gap p50 {stall['loop_gap_p50_ms']} ms, p99 {stall['loop_gap_p99_ms']} ms, max {stall['loop_gap_max_ms']} ms")
    print(f"poisoned (1e4-scaled deltas every round, {min(rounds, 5)} rounds): F1 {json.dumps(pois)}")
    out = {"rounds": rounds, "transport": transport, "aggregator": a.aggregator, "base_f1": round(base_f1, 4),
           "f1_local": {g: round(v, 4) for g, v in local.items()}, "f1_federated": {g: round(v, 4) for g, v in fed.items()},
           "bytes_per_round": round(statistics.mean(per_round)), "round_s_p50": round(statistics.median(secs), 3),
           "round_s_max": round(max(secs), 3), "float16": f16, "from_shipped": ship, "train_stall": stall, "poisoned_f1": pois, "quick": a.quick}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
