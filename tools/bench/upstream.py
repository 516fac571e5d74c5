"""Upstream bytes: a simulated site through aggregation -> decision -> outbox -> real MQTT to a cloud broker.

200 nodes x 3 metrics at 1 Hz for one simulated hour (seeded), with injected anomalies
(spikes, steps, stuck sensors), ambiguous events, node alerts and late readings (`--p-late` of the
node-windows get their last 10 s one pack 40 s after the window closed: a correction, whose bytes are
reported apart from the summaries'). Readings go through the
gateway's Aggregator (60 s windows); each node's window set gets a local decision
(summary / anomaly / raw window); decisions and alerts go through the Outbox and the Relay
to a real mosquitto (through a counting TCP proxy). Compared with naive forwarding of every
reading as one JSON MQTT message. Bytes are payload + topic + 5 (MQTT fixed header and
packet id) per message on both sides; the proxy's TCP byte count (all MQTT traffic) is shown too.

The decision is a simple threshold rule by default; `--decider model` uses the gateway's
InferenceEngine when it is available (falls back to the rule and says so).

    python tools/bench/upstream.py [--quick] [--mode high|middle]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import logging
import math
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[2]), str(Path(__file__).resolve().parents[2] / "tests")]  # tests/harness

from fogline.gateway.aggregate.core import Aggregator, Window  # noqa: E402
from fogline.gateway.relay.bandwidth import BandwidthConfig, BandwidthPolicy  # noqa: E402
from fogline.gateway.relay.cloud import CloudConfig, CloudLink  # noqa: E402
from fogline.gateway.relay.outbox import Outbox, OutboxConfig  # noqa: E402
from fogline.gateway.relay.core import MQTT_OVERHEAD, Relay  # noqa: E402
from harness.broker import Mosquitto  # noqa: E402
from harness.cloudkit import CloudSubscriber  # noqa: E402
from harness.netem import NetEm  # noqa: E402
from fogline.shared import summary as wire  # noqa: E402

SITE = "site1"
T0 = 1_764_150_000
METRICS = (("temperature", "Cel", 21.0, 2.0, 0.05), ("humidity", "%RH", 45.0, 5.0, 0.3),
           ("pressure", "hPa", 1013.0, 2.0, 0.1))  # name, unit, base, daily swing, noise sd
# (range that is surely anomalous, range that makes us unsure) per metric within one window
LIMITS = {"temperature": (2.0, 0.8), "humidity": (8.0, 3.0), "pressure": (4.0, 1.5)}


def rule_decide(node: str, start: float, wins: dict[str, Window]) -> tuple[str, dict]:
    """Threshold decision: anomaly when a window jumps or is stuck, raw when unsure, else summary."""
    action = "summary"
    for m, w in wins.items():
        sure, unsure = LIMITS[m]
        rng = w.max - w.min
        if rng >= sure or (w.count > 5 and w.stddev == 0.0):
            action = "anomaly"
            break
        if rng >= unsure:
            action = "raw"
    body = {"node": node, "start": start, "end": start + 60, "action": action,
            "windows": {m: [w.count, round(w.min, 2), round(w.max, 2), round(w.mean, 3), round(w.last, 2),
                            round(w.stddev, 4)] for m, w in wins.items()}}
    return action, wire.stamp(body, sum(w.count for w in wins.values()), False)


async def run(args: argparse.Namespace) -> dict:
    rng = random.Random(args.seed)
    nodes = [f"n{i:03d}" for i in range(args.nodes)]
    n_windows = args.seconds // 60
    # ground truth per (node, window index)
    inj: dict[tuple[str, int], str] = {}
    alerts_at: dict[tuple[str, int], int] = {}
    for node in nodes:
        for wi in range(n_windows):
            r = rng.random()
            if r < args.p_anomaly:
                inj[(node, wi)] = rng.choice(("spike", "step", "stuck"))
            elif r < args.p_anomaly + args.p_ambiguous:
                inj[(node, wi)] = "ambiguous"
            if rng.random() < args.p_alert:
                alerts_at[(node, wi)] = rng.randrange(60)

    work = Path(tempfile.mkdtemp(prefix="fogline-upstream-"))
    broker = Mosquitto(work / "cloud", extra_conf="max_queued_messages 0").start()
    sub = CloudSubscriber(broker.port, None, "bench", "bench", client_id="bench-cloud").start()
    proxy = NetEm(broker.port).start()  # pass mode: counts the TCP bytes the relay sends
    ob = Outbox(OutboxConfig(path=str(work / "outbox.sqlite"), synchronous="FULL"), "gw1")
    link = CloudLink(CloudConfig(host="127.0.0.1", port=proxy.port, tls=False, allow_plaintext=True,
                                 client_id="fogline-gw1"))
    bw = BandwidthPolicy(BandwidthConfig(initial_mode=args.mode, hold_s=math.inf, linger_s=0.5))
    relay = Relay(ob, link, SITE, bandwidth=bw)
    await relay.start()
    await link.wait_connected(10)

    sets: dict[tuple[str, float], dict[str, Window]] = {}
    raw_buf: dict[tuple[str, str], tuple[float, list[float]]] = {}
    closed_raw: dict[tuple[str, str, float], list[float]] = {}
    pending: list[tuple[str, dict, bool]] = []
    decided = collections.Counter()
    detected: set[tuple[str, int]] = set()
    anomaly_keys: dict[str, tuple[str, int]] = {}

    def on_window(w: Window) -> None:
        if w.correction:  # late readings changed a window already decided: its new revision as a summary
            pending.append(("summary", w.as_dict(), False))
            return
        s = sets.setdefault((w.node, w.start), {})
        s[w.metric] = w
        if len(s) == len(METRICS):
            del sets[(w.node, w.start)]
            action, body = rule_decide(w.node, w.start, s)
            wi = int((w.start - T0) // 60)
            if action == "raw":
                body["raw"] = {m: closed_raw.pop((w.node, m, w.start), []) for m, *_ in METRICS}
            for m, *_ in METRICS:
                closed_raw.pop((w.node, m, w.start), None)
            if action == "anomaly":
                detected.add((w.node, wi))
            decided[action] += 1
            pending.append((action, body, False))

    def submit(batch: list[tuple[str, dict, bool]]) -> None:
        if not batch:
            return
        ids = relay.submit_many(batch)
        for (action, body, _), rid in zip(batch, ids):
            if action == "anomaly" and rid is not None:
                anomaly_keys[f"gw1:{rid}"] = (body["node"], int((body["start"] - T0) // 60))
        batch.clear()

    engine = None
    if args.decider == "model":
        try:
            from fogline.gateway.inference.core import InferenceConfig, InferenceEngine

            def sink(decisions) -> None:
                for d in decisions:
                    wi = int((d.start - T0) // 60)
                    body = d.as_dict()
                    if d.action == "raw":
                        body["raw"] = {w.metric: closed_raw.get((d.node, w.metric, d.start), []) for w in d.windows}
                    for w in d.windows:
                        closed_raw.pop((d.node, w.metric, d.start), None)
                    if d.action == "anomaly":
                        detected.add((d.node, wi))
                    decided[d.action] += 1
                    pending.append((d.lane, body, False))

            engine = InferenceEngine(InferenceConfig(window_s=60.0, set_timeout_s=1e9, registry_dir=str(work / "models")),
                                     sink=sink, data_dir=str(work))
            engine.start()
        except Exception as e:  # the inference engine missing or refusing: say so, use the rule
            print(f"model decider unavailable ({e}); using the threshold rule", file=sys.stderr)
            engine = None

    def on_window_model(w: Window) -> None:
        assert engine is not None
        engine.submit(w)

    agg = Aggregator([60.0], 0.0, on_window if engine is None else on_window_model, idle_close_s=1e9)
    held: list[tuple[float, str, str, str, float, float]] = []  # late readings: (due, node, metric, unit, v, t)
    late_win = {(n, wi) for n in nodes for wi in range(n_windows) if rng.random() < args.p_late}
    naive_bytes = 0
    readings = 0
    alerts_sent = 0
    alert_ids: set[int] = set()
    phase = {n: rng.random() * 6.28 for n in nodes}
    stuck_val: dict[tuple[str, str], float] = {}
    t_start = time.perf_counter()
    for sec in range(args.seconds):
        t = T0 + sec
        wi, off = divmod(sec, 60)
        for node in nodes:
            kind = inj.get((node, wi))
            for (m, unit, base, swing, sd) in METRICS:
                v = base + swing * math.sin(2 * math.pi * t / 86400 + phase[node]) + rng.gauss(0, sd)
                if kind == "spike" and off == 30 and m == "temperature":
                    v += 8.0
                elif kind == "step" and off >= 30 and m == "humidity":
                    v += 12.0
                elif kind == "stuck" and m == "pressure":
                    v = stuck_val.setdefault((node, m), round(v, 2))
                elif kind == "ambiguous" and off >= 30 and m == "temperature":
                    v += 1.2
                v = round(v, 2)
                key = (node, m)
                start = t - off
                buf = raw_buf.get(key)
                if buf is None or buf[0] != start:
                    if buf is not None:
                        closed_raw[(node, m, buf[0])] = buf[1]
                    buf = raw_buf[key] = (start, [])
                buf[1].append(v)
                if (node, wi) in late_win and off >= 50:  # its last 10 s arrive in one pack 40 s after it closed
                    held.append((t - off + 100, node, m, unit, v, t))
                else:
                    agg.add(node, m, unit, v, t, t)
                readings += 1
                # naive: one JSON message per reading
                topic = f"fogline/{SITE}/{node}/{m}"
                naive_bytes += len(json.dumps({"node": node, "metric": m, "unit": unit, "value": v, "t": t})) \
                    + len(topic) + MQTT_OVERHEAD
            if alerts_at.get((node, wi)) == off:
                rid = relay.submit_alert(node, wi + 1, [("temperature", "Cel", 85.0, t)])
                alerts_sent += 1
                if rid is not None:
                    alert_ids.add(rid)
        while held and held[0][0] <= t:
            _, hn, hm, hu, hv, ht = held.pop(0)
            agg.add(hn, hm, hu, hv, ht, t)
        agg.flush_late()
        if engine is not None and off == 0:
            engine.flush()
        submit(pending)
        await asyncio.sleep(0)
    for _, hn, hm, hu, hv, ht in held:
        agg.add(hn, hm, hu, hv, ht, T0 + args.seconds)
    agg.flush()
    if engine is not None:
        engine.flush(force=True)
    submit(pending)
    sim_s = time.perf_counter() - t_start
    lanes_to_wait = set(bw.lanes())
    t0 = time.monotonic()
    while any(ob.depth()[ln]["rows"] for ln in lanes_to_wait) and time.monotonic() - t0 < 120:
        await asyncio.sleep(0.05)
    t1 = time.monotonic()
    while time.monotonic() - t1 < 10:
        with sub.lock:
            n = len(sub.items)
        if n >= ob.counters["acked"]["alert"] + ob.counters["acked"]["anomaly"] + ob.counters["acked"]["summary"] \
                + ob.counters["acked"]["raw"]:
            break
        await asyncio.sleep(0.05)
    st = relay.stats()
    await relay.stop(drain_s=2)
    proxy.stop()
    sub.stop()
    broker.stop()
    items = sub.snapshot()
    got_keys = {i["k"] for i in items}
    anomalies_injected = sum(1 for k in inj.values() if k != "ambiguous")
    delivered_anom = {anomaly_keys[k] for k in got_keys if k in anomaly_keys}
    true_anoms = {k for k, v in inj.items() if v != "ambiguous"}
    alerts_delivered = sum(1 for i in items if i["lane"] == "alert")
    ours = st["bandwidth"]["acked_bytes"]
    return {
        "nodes": args.nodes, "metrics": len(METRICS), "sim_seconds": args.seconds, "readings": readings,
        "mode": args.mode, "decider": "model" if engine is not None else "threshold",
        "naive_json_bytes": naive_bytes, "relay_bytes": ours, "relay_tcp_bytes": proxy.counters["bytes_up"],
        "ratio": round(naive_bytes / max(1, ours), 1), "ratio_tcp": round(naive_bytes / max(1, proxy.counters["bytes_up"]), 1),
        "messages": st["relay"]["messages"], "bundles": st["relay"]["bundles"],
        # window summaries/decisions (body bytes) vs corrections, the later revisions late readings caused
        "summary_bytes": st["relay"]["summary_bytes"], "correction_bytes": st["relay"]["correction_bytes"],
        "correction_items": st["relay"]["correction_items"], "late_node_windows": len(late_win),
        "correction_fraction": round(st["relay"]["correction_bytes"] / max(1, st["relay"]["summary_bytes"]), 4),
        "decisions": dict(decided), "items_at_cloud": len(got_keys),
        "alerts_injected": alerts_sent, "alerts_delivered": alerts_delivered,
        "anomalies_injected": anomalies_injected, "anomalies_detected": len(detected & true_anoms),
        "anomalies_delivered": len(delivered_anom & true_anoms),
        "anomaly_events_decided": decided["anomaly"], "anomaly_events_delivered": len(delivered_anom),
        "anomaly_delivery": round(len(delivered_anom) / max(1, len(detected)), 4),
        "alert_delivery": round(alerts_delivered / max(1, alerts_sent), 4),
        "outbox_left": {k: v["rows"] for k, v in st["outbox"]["depth"].items()},
        "sim_wall_s": round(sim_s, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="50 nodes for 10 simulated minutes")
    ap.add_argument("--nodes", type=int, default=200)
    ap.add_argument("--seconds", type=int, default=3600)
    ap.add_argument("--mode", choices=("middle", "high"), default="high")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--decider", choices=("threshold", "model"), default="threshold",
                    help="model = the gateway's InferenceEngine on the bundled ONNX model")
    ap.add_argument("--p-anomaly", type=float, default=0.005, help="per node-window")
    ap.add_argument("--p-ambiguous", type=float, default=0.003, help="per node-window")
    ap.add_argument("--p-alert", type=float, default=0.004, help="per node-window")
    ap.add_argument("--p-late", type=float, default=0.02,
                    help="per node-window: its last 10 s of readings arrive 40 s after it closed (a correction)")
    args = ap.parse_args()
    if args.quick:
        args.nodes, args.seconds = 50, 600
        args.p_anomaly, args.p_alert = 0.02, 0.02
    logging.basicConfig(level=logging.ERROR)
    r = asyncio.run(run(args))
    rows = [("readings", r["readings"]), ("naive JSON bytes", r["naive_json_bytes"]),
            ("relay bytes (payload+topic+hdr)", r["relay_bytes"]), ("relay TCP bytes (proxy)", r["relay_tcp_bytes"]),
            ("reduction", f"{r['ratio']}x ({r['ratio_tcp']}x TCP)"), ("messages / bundles",
                                                                       f"{r['messages']} / {r['bundles']}"),
            ("decisions", r["decisions"]),
            ("summary bytes / correction bytes", f"{r['summary_bytes']} / {r['correction_bytes']} "
                                                 f"({100 * r['correction_fraction']:.1f} %, "
                                                 f"{r['late_node_windows']} late node-windows)"),
            ("alerts delivered / injected", f"{r['alerts_delivered']} / {r['alerts_injected']}"),
            ("anomalies injected / detected / delivered",
             f"{r['anomalies_injected']} / {r['anomalies_detected']} / {r['anomalies_delivered']}"),
            ("anomaly events decided / delivered",
             f"{r['anomaly_events_decided']} / {r['anomaly_events_delivered']}"),
            ("outbox left", r["outbox_left"]), ("simulation wall s", r["sim_wall_s"])]
    w = max(len(a) for a, _ in rows)
    print(f"upstream: {r['nodes']} nodes x {r['metrics']} metrics, {r['sim_seconds']} s simulated, "
          f"mode {r['mode']}, decider {r['decider']}")
    for a, b in rows:
        print(f"  {a:<{w}}  {b}")
    print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
