"""Gateway ingest throughput on one mosquitto: raw paho subscriber vs the gateway end to end.

Drain mode (the headline figures): the whole load (20 nodes, QoS 1) is first queued in the
broker for a persistent session, then the consumer connects and drains it, so one paho
publisher's speed (~10k msg/s) does not cap what is measured:
(a) raw: a bare paho subscriber (QoS 1) receiving the messages;
(b) gateway: ingest -> validate -> durable SQLite commit (synchronous=FULL) -> ack published ->
    aggregate -> hooks, timed from the first message to the commit of the last reading, for
    single readings and packs of 10, with paho in-process and with [mqtt] worker_process.
Live mode: publisher and consumer at the same time; the gateway's time ends when the publisher
has received the acks covering every node's last reading.
Loss = readings sent - distinct readings stored, over every run (must be 0; the broker runs with
an unlimited queue). Each case runs --repeat times (default 3); the figures are each case's median
run (by messages/s; `best` in the JSON has each case's best run: on a shared machine the one least
disturbed by other load). The raw subscriber is plain paho, as a user's own subscriber would be;
`raw_buffered_*` is the same drain with the gateway's own paho client (fogline.gateway.ingest.mqtt.BufferedClient).

The drain cases run again with --also-nodes nodes (default 500) for the same total load, so per-node
costs (registry, windows, tiers) show. CPU us per reading: this process's CPU (the whole gateway, paho
included when in-process) from the first message delivered to the last commit, over the readings drained;
with the worker, `worker_*_cpu_us_per_reading` adds the MQTT child process's CPU over the same span (read
from /proc). Starting (store open, the child's interpreter and imports, connecting) is a fixed cost: it is
`*_start_cpu_s`, and `*_cpu_us_per_reading_with_start` counts it in as well.

Usage: python tools/bench/gateway_ingest.py [--quick] [--also-nodes 500]; last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests")]  # tests/harness: the kits benches share with tests

SITE = "bench"


def build_payloads(nodes: int, msgs: int, pack: int, t0: float) -> list[tuple[str, bytes]]:
    """Round-robin (topic, payload) list: each node sends msgs messages of `pack` readings."""
    from fogline.shared import cbor, senml
    out = []
    for i in range(msgs):
        for n in range(nodes):
            node = f"b{n:03d}"
            first = 1 + i * pack
            recs = [("temp", "Cel", 20.0 + ((first + j) % 500) * 0.01, t0 + first + j) for j in range(pack)]
            out.append((f"fogline/{SITE}/{node}/up", cbor.dumps([first, senml.build_pack(node + "/", t0 + first,
                                                                                         recs)])))
    return out


def publisher_main(port: int, nodes: int, msgs: int, pack: int, want_acks: bool) -> None:
    """Child process: publish everything at QoS 1 as fast as paho allows; optionally wait for final acks."""
    import cbor2
    import paho.mqtt.client as mqtt
    t0 = time.time() - msgs * pack - 100
    payloads = build_payloads(nodes, msgs, pack, t0)
    last = msgs * pack
    done = threading.Event()
    acked: dict[str, int] = {}
    t_ack = [0.0]

    def on_msg(c, u, m):
        node = m.topic.split("/")[2]
        v = cbor2.loads(m.payload).get("up", 0)
        if v > acked.get(node, 0):
            acked[node] = v
            if v >= last and len([x for x in acked.values() if x >= last]) == nodes:
                t_ack[0] = time.time()
                done.set()

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{os.getpid()}")
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.on_message = on_msg
    c.connect("127.0.0.1", port)
    if want_acks:
        c.subscribe(f"fogline/{SITE}/+/ack", 1)
    c.loop_start()
    time.sleep(0.3)
    print("READY", flush=True)
    sys.stdin.readline()
    t_start = time.time()
    infos = [c.publish(t, p, qos=1) for t, p in payloads]
    for i in infos:
        i.wait_for_publish(120)
    t_pub = time.time()
    if want_acks:
        done.wait(300)
    c.loop_stop()
    c.disconnect()
    print(json.dumps({"t_start": t_start, "t_pub": t_pub, "t_ack": t_ack[0], "sent": len(payloads),
                      "acked": sum(acked.values())}), flush=True)


def run_publisher(port: int, nodes: int, msgs: int, pack: int, want_acks: bool) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, __file__, "--publisher", str(port), str(nodes), str(msgs), str(pack),
                          "1" if want_acks else "0"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                         cwd=REPO)
    assert p.stdout.readline().strip() == "READY"
    return p


def go(p: subprocess.Popen) -> dict:
    p.stdin.write("go\n")
    p.stdin.flush()
    out = p.stdout.read()
    p.wait(300)
    return json.loads(out.strip().splitlines()[-1])


def bench_raw(port: int, nodes: int, msgs: int, pack: int) -> dict:
    """Messages/s a bare paho subscriber (QoS 1) receives from the publisher process."""
    import paho.mqtt.client as mqtt
    total = nodes * msgs
    got = [0]
    first = [0.0]
    last = [0.0]
    done = threading.Event()

    def on_msg(c, u, m):
        if got[0] == 0:
            first[0] = time.time()
        got[0] += 1
        if got[0] >= total:
            last[0] = time.time()
            done.set()

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-raw")
    c.on_message = on_msg
    c.connect("127.0.0.1", port)
    c.subscribe(f"fogline/{SITE}/+/up", 1)
    c.loop_start()
    time.sleep(0.3)
    pub = run_publisher(port, nodes, msgs, pack, False)
    res = go(pub)
    done.wait(120)
    c.loop_stop()
    c.disconnect()
    el = (last[0] or time.time()) - res["t_start"]
    return {"messages": got[0], "sent": total, "seconds": el, "msg_per_s": got[0] / el, "pub_seconds":
            res["t_pub"] - res["t_start"]}


def bench_gateway(port: int, nodes: int, msgs: int, pack: int, tmp: Path) -> dict:
    """Readings/s end to end through a Gateway (in this process, own event-loop thread)."""
    from fogline.gateway import config
    from fogline.gateway.app import Gateway
    data = tmp / f"gw-{pack}"
    cfg = config.from_dict({"site": {"id": SITE, "data_dir": str(data)},
                            "mqtt": {"port": port, "client_id": f"bench-gw-{pack}-{time.monotonic_ns()}",
                                     "clean_session": True, "worker_process": True},
                            "metrics": {"snapshot_s": 60.0},
                            "tiers": {"maintenance_s": 3600.0, "compress_after_s": 1e9}})
    loop = asyncio.new_event_loop()
    th = threading.Thread(target=loop.run_forever, daemon=True)
    th.start()
    gw = Gateway(cfg)
    windows = [0]
    gw.on_window(lambda w: windows.__setitem__(0, windows[0] + 1))
    call = lambda coro: asyncio.run_coroutine_threadsafe(coro, loop).result(300)  # noqa: E731
    call(gw.start())
    assert call(gw.wait_connected(10))
    pub = run_publisher(port, nodes, msgs, pack, True)
    cpu0 = time.process_time()
    res = go(pub)
    cpu = time.process_time() - cpu0
    call(gw.stop())
    loop.call_soon_threadsafe(loop.stop)
    th.join(10)
    con = sqlite3.connect(data / "ingest.sqlite")
    stored = con.execute("SELECT COUNT(*) FROM readings").fetchone()[0]
    distinct = con.execute("SELECT COUNT(*) FROM (SELECT DISTINCT nid, lane, seq FROM readings)").fetchone()[0] \
        + con.execute("SELECT IFNULL(SUM(n), 0) FROM blocks").fetchone()[0]  # compacted rows count too
    con.close()
    sent = nodes * msgs * pack
    el = (res["t_ack"] or time.time()) - res["t_start"]
    return {"pack": pack, "messages": nodes * msgs, "readings_sent": sent, "readings_stored": stored,
            "loss": sent - distinct, "seconds": el, "readings_per_s": sent / el, "msg_per_s": nodes * msgs / el,
            "gateway_cpu_s": cpu, "commits": gw.metrics.total("commits"), "acks_sent": gw.metrics.total("acks_sent"),
            "windows": windows[0], "all_acked": bool(res["t_ack"])}


def drop_session(port: int, client_id: str) -> None:
    """Connect once with clean_session=True: the broker forgets that persistent session and its queue."""
    import paho.mqtt.client as mqtt
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    c.connect("127.0.0.1", port)
    c.loop_start()
    time.sleep(0.1)
    c.disconnect()
    c.loop_stop()


def publish_only(port: int, nodes: int, msgs: int, pack: int) -> dict:
    """Publish the whole load (QoS 1) while the measured subscriber is away; its session queues it."""
    pub = run_publisher(port, nodes, msgs, pack, False)
    return go(pub)


def drain_raw(port: int, nodes: int, msgs: int, pack: int, buffered: bool = False) -> dict:
    """Bare paho subscriber (persistent session, QoS 1) draining a queued load: messages/s."""
    import paho.mqtt.client as mqtt
    from fogline.gateway.ingest.mqtt import BufferedClient
    cls = BufferedClient if buffered else mqtt.Client
    total = nodes * msgs
    got = [0]
    last = [0.0]
    done = threading.Event()

    first = [0.0]
    cid = f"bench-raw-{pack}-{os.getpid()}-{time.monotonic_ns()}"

    def on_msg(c, u, m):
        if not got[0]:
            first[0] = time.time()
        got[0] += 1
        if got[0] >= total:
            last[0] = time.time()
            done.set()

    def client() -> mqtt.Client:
        c = cls(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, clean_session=False)
        c.on_message = on_msg
        return c
    c = client()
    c.connect("127.0.0.1", port)
    c.subscribe(f"fogline/{SITE}/+/up", 1)
    c.loop_start()
    time.sleep(0.3)
    c.disconnect()
    c.loop_stop()
    publish_only(port, nodes, msgs, pack)
    c = client()
    t0 = time.time()
    c.connect("127.0.0.1", port)
    c.loop_start()
    done.wait(300)
    c.loop_stop()
    c.disconnect()
    drop_session(port, cid)
    el = (last[0] or time.time()) - (first[0] or t0)  # from the first message: connect time excluded
    return {"messages": got[0], "sent": total, "seconds": el, "msg_per_s": got[0] / el}


def drain_gateway(port: int, nodes: int, msgs: int, pack: int, tmp: Path, worker: bool = False) -> dict:
    """The gateway draining the same queued load: ingest -> validate -> commit -> ack -> aggregate."""
    from fogline.gateway import config
    from fogline.gateway.app import Gateway
    data = tmp / f"gwd-{pack}-{worker}"
    cfg = config.from_dict({"site": {"id": SITE, "data_dir": str(data)},
                            "mqtt": {"port": port, "client_id": f"bench-gwd-{pack}-{worker}-{time.monotonic_ns()}",
                                     "worker_process": worker},
                            "metrics": {"snapshot_s": 60.0},
                            "tiers": {"maintenance_s": 3600.0, "compress_after_s": 1e9}})
    total = nodes * msgs * pack
    loop = asyncio.new_event_loop()
    th = threading.Thread(target=loop.run_forever, daemon=True)
    th.start()
    call = lambda coro: asyncio.run_coroutine_threadsafe(coro, loop).result(300)  # noqa: E731
    gw = Gateway(cfg)          # first run: creates the persistent session and its subscriptions
    call(gw.start())
    assert call(gw.wait_connected(10))
    call(gw.stop())
    publish_only(port, nodes, msgs, pack)
    gw = Gateway(cfg)
    n = [0]
    wins = [0]
    end = [0.0]
    done = threading.Event()

    def on_readings(rs):
        n[0] += len(rs)
        if n[0] >= total and not end[0]:
            end[0] = time.time()
            done.set()
    gw.on_readings(on_readings)
    gw.on_window(lambda w: wins.__setitem__(0, wins[0] + 1))
    first = [0.0]
    at_first = [0.0, 0.0]  # this process's and the MQTT child's CPU s when the first message arrives
    inner = gw._on_mqtt

    def on_mqtt(items):  # clock starts at the first delivered message, as for the raw subscriber
        if not first[0]:
            first[0] = min(rx for _, _, rx in items)
            at_first[:] = [time.process_time(), _proc_cpu_s(gw.mqtt.proc.pid) if worker else 0.0]
        inner(items)
    gw._on_mqtt = on_mqtt  # type: ignore[method-assign]
    before = _threads_cpu_s()
    cpu0 = time.process_time()
    t0 = time.time()
    call(gw.start())
    done.wait(300)
    cpu = time.process_time() - cpu0
    threads = {k: round(v - before.get(k, 0.0), 3) for k, v in _threads_cpu_s(th.native_id).items()}
    child_cpu = _proc_cpu_s(gw.mqtt.proc.pid) if worker else 0.0
    call(gw.stop())
    loop.call_soon_threadsafe(loop.stop)
    th.join(10)
    drop_session(port, cfg.mqtt_client_id())
    con = sqlite3.connect(data / "ingest.sqlite")
    distinct = con.execute("SELECT COUNT(*) FROM (SELECT DISTINCT nid, lane, seq FROM readings)").fetchone()[0] \
        + con.execute("SELECT IFNULL(SUM(n), 0) FROM blocks").fetchone()[0]  # compacted rows count too
    con.close()
    el = (end[0] or time.time()) - (first[0] or t0)
    return {"pack": pack, "messages": nodes * msgs, "readings_sent": total, "loss": total - distinct,
            "seconds": el, "readings_per_s": total / el, "msg_per_s": nodes * msgs / el, "gateway_cpu_s": cpu,
            "child_cpu_s": child_cpu, "start_cpu_s": at_first[0] - cpu0 if at_first[0] else 0.0,
            "child_start_cpu_s": at_first[1], "commits": gw.metrics.total("commits"),
            "acks_sent": gw.metrics.total("acks_sent"), "windows": wins[0], "threads_cpu_s": threads,
            "all_acked": bool(end[0])}


def _threads_cpu_s(loop_tid: int | None = None) -> dict[str, float]:
    """CPU seconds of this process's threads so far, by role: asyncio loop, store, paho, MQTT reader, other."""
    out: dict[str, float] = {}
    for t in threading.enumerate():
        name = t.name
        role = ("loop" if t.native_id == loop_tid else "store" if name.startswith("fogline-store")
                else "paho" if name.startswith("paho") else "mqtt_reader" if name.startswith("fogline-mqtt")
                else "main" if t is threading.main_thread() else "other")
        try:
            f = Path(f"/proc/self/task/{t.native_id}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[role] = out.get(role, 0.0) + (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    return out


def _proc_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a live process has used so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _median(runs: list[dict]) -> dict:
    """The median run by messages/s (the lower middle one for an even count)."""
    return sorted(runs, key=lambda d: d["msg_per_s"])[(len(runs) - 1) // 2]


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--publisher":
        a = sys.argv[2:]
        publisher_main(int(a[0]), int(a[1]), int(a[2]), int(a[3]), a[4] == "1")
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short run (CI smoke)")
    ap.add_argument("--nodes", type=int, default=20)
    ap.add_argument("--also-nodes", type=int, default=500,
                    help="also run the drain cases with this many nodes, same total load (0: skip)")
    ap.add_argument("--repeat", type=int, default=None, help="runs per case, median reported (default 3, quick 1)")
    args = ap.parse_args()
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    from harness.broker import Mosquitto
    msgs_single = 250 if args.quick else 2000   # per node
    msgs_pack = 100 if args.quick else 1000
    with tempfile.TemporaryDirectory(prefix="fogline-bench-") as td:
        tmp = Path(td)
        broker = Mosquitto(tmp / "mq", max_queued_messages=0).start()
        try:
            # drain mode: the load is queued in the broker first, so the publisher's speed does not cap it
            runs: list[dict[str, dict]] = []
            for rep in range(args.repeat):  # the machine is shared: median (and best) of each case
                sub = tmp / f"rep{rep}"
                sub.mkdir()
                runs.append({
                    "raw": drain_raw(broker.port, args.nodes, msgs_single, 1),
                    "raw_b": drain_raw(broker.port, args.nodes, msgs_single, 1, buffered=True),
                    "single": drain_gateway(broker.port, args.nodes, msgs_single, 1, sub),
                    "raw10": drain_raw(broker.port, args.nodes, msgs_pack, 10),
                    "raw10_b": drain_raw(broker.port, args.nodes, msgs_pack, 10, buffered=True),
                    "packs": drain_gateway(broker.port, args.nodes, msgs_pack, 10, sub),
                    "single_w": drain_gateway(broker.port, args.nodes, msgs_single, 1, sub, worker=True),
                    "packs_w": drain_gateway(broker.port, args.nodes, msgs_pack, 10, sub, worker=True),
                    # live mode: publisher and consumer at once (capped by one paho QoS 1 publisher)
                    "live_raw": bench_raw(broker.port, args.nodes, msgs_single, 1),
                    "live": bench_gateway(broker.port, args.nodes, msgs_single, 1, sub)})
            best = {k: _median([r[k] for r in runs]) for k in runs[0]}
            top = {k: max((r[k] for r in runs), key=lambda d: d["msg_per_s"]) for k in runs[0]}
            total_loss = sum(r[k].get("loss", 0) for r in runs for k in r)
            wide: dict[str, dict] = {}
            if args.also_nodes:  # the same total load spread over many nodes: per-node costs show
                k = args.also_nodes
                ms, mp = max(1, msgs_single * args.nodes // k), max(1, msgs_pack * args.nodes // k)
                wruns = []
                for rep in range(args.repeat):
                    sub = tmp / f"wide{rep}"
                    sub.mkdir()
                    wruns.append({"raw": drain_raw(broker.port, k, ms, 1),
                                  "single": drain_gateway(broker.port, k, ms, 1, sub),
                                  "raw10": drain_raw(broker.port, k, mp, 10),
                                  "packs": drain_gateway(broker.port, k, mp, 10, sub),
                                  "single_w": drain_gateway(broker.port, k, ms, 1, sub, worker=True),
                                  "packs_w": drain_gateway(broker.port, k, mp, 10, sub, worker=True)})
                wide = {c: _median([r[c] for r in wruns]) for c in wruns[0]}
                total_loss += sum(r[c].get("loss", 0) for r in wruns for c in r)
            raw, single, raw10, packs = best["raw"], best["single"], best["raw10"], best["packs"]
            single_w, packs_w, live_raw, live = best["single_w"], best["packs_w"], best["live_raw"], best["live"]
        finally:
            broker.stop()
    print(f"{'case':40} {'messages':>9} {'readings':>9} {'seconds':>8} {'msg/s':>9} {'readings/s':>11} {'loss':>5}")
    rows = [("drain: raw paho subscriber, singles", raw["messages"], raw["messages"], raw["seconds"],
             raw["msg_per_s"], raw["msg_per_s"], raw["sent"] - raw["messages"]),
            ("drain: gateway e2e, singles, in-process", single["messages"], single["readings_sent"],
             single["seconds"], single["msg_per_s"], single["readings_per_s"], single["loss"]),
            ("drain: raw paho subscriber, packs of 10", raw10["messages"], raw10["messages"] * 10, raw10["seconds"],
             raw10["msg_per_s"], raw10["msg_per_s"] * 10, raw10["sent"] - raw10["messages"]),
            ("drain: gateway e2e, packs 10, in-process", packs["messages"], packs["readings_sent"], packs["seconds"],
             packs["msg_per_s"], packs["readings_per_s"], packs["loss"]),
            ("drain: gateway e2e, singles, mqtt worker", single_w["messages"], single_w["readings_sent"],
             single_w["seconds"], single_w["msg_per_s"], single_w["readings_per_s"], single_w["loss"]),
            ("drain: gateway e2e, packs 10, mqtt worker", packs_w["messages"], packs_w["readings_sent"],
             packs_w["seconds"], packs_w["msg_per_s"], packs_w["readings_per_s"], packs_w["loss"]),
            ("live: raw paho subscriber, singles", live_raw["messages"], live_raw["messages"], live_raw["seconds"],
             live_raw["msg_per_s"], live_raw["msg_per_s"], live_raw["sent"] - live_raw["messages"]),
            ("live: gateway e2e, worker (acks at pub.)", live["messages"], live["readings_sent"], live["seconds"],
             live["msg_per_s"], live["readings_per_s"], live["loss"])]
    for name, m, r, sec, mps, rps, loss in rows:
        print(f"{name:40} {m:9d} {r:9d} {sec:8.2f} {mps:9.0f} {rps:11.0f} {loss:5d}")
    ratio = single["msg_per_s"] / raw["msg_per_s"]
    live_ratio = live["msg_per_s"] / live_raw["msg_per_s"]
    print(f"paho in-process: singles gateway/raw = {ratio:.2f} drained (live, worker: {live_ratio:.2f}; "
          f"goal >= 0.80); packs of 10: "
          f"{packs['readings_per_s']:.0f} readings/s (goal >= 100000); {args.nodes} nodes; gateway CPU s "
          f"singles/packs = {single['gateway_cpu_s']:.1f}/{packs['gateway_cpu_s']:.1f} "
          f"({single['readings_sent'] / single['gateway_cpu_s']:.0f}/"
          f"{packs['readings_sent'] / packs['gateway_cpu_s']:.0f} readings per gateway CPU-second)")
    loss = total_loss  # over every run, not only the median ones
    ratio_w = single_w["msg_per_s"] / raw["msg_per_s"]
    print(f"[mqtt] worker_process = true (default): singles gateway/raw = {ratio_w:.2f}; packs of 10: "
          f"{packs_w['readings_per_s']:.0f} readings/s")
    # CPU per reading counts the drain, from the first message delivered to the last commit: the cost that
    # grows with the load. Starting (opening the store, the MQTT child's interpreter and imports, connecting)
    # is a fixed cost, reported apart as start_cpu_s; `*_with_start` keeps it in, as earlier rounds measured.
    def cpu_us(case: dict, start: bool = False) -> float:
        cpu = case["gateway_cpu_s"] - (0.0 if start else case["start_cpu_s"])
        return round(cpu * 1e6 / case["readings_sent"], 2)

    def cpu_us_all(case: dict, start: bool = False) -> float:  # worker mode: the gateway process and its MQTT child
        child = case["child_cpu_s"] - (0.0 if start else case["child_start_cpu_s"])
        return round(cpu_us(case, start) + child * 1e6 / case["readings_sent"], 2)

    def start_cpu(case: dict) -> float:
        return round(case["start_cpu_s"] + case["child_start_cpu_s"], 3)
    print(f"CPU us per reading, packs of 10: in-process {cpu_us(packs)}, worker {cpu_us_all(packs_w)} "
          f"(gateway {cpu_us(packs_w)} + MQTT child); with the start: {cpu_us(packs, True)}, "
          f"{cpu_us_all(packs_w, True)} (start CPU s {start_cpu(packs)}, {start_cpu(packs_w)}); "
          f"raw with the gateway's paho client: "
          f"singles {best['raw_b']['msg_per_s']:.0f} msg/s, packs {best['raw10_b']['msg_per_s'] * 10:.0f} readings/s")
    def by_thread(case: dict) -> str:  # why in-process is slower: one GIL for every thread (busy = CPU s / wall s)
        th = case["threads_cpu_s"]
        return (", ".join(f"{k} {v * 1e6 / case['readings_sent']:.1f}" for k, v in sorted(th.items()) if v)
                + f" us per reading; threads busy {sum(th.values()) / case['seconds']:.2f} of the wall time")
    print(f"by thread, packs of 10: in-process: {by_thread(packs)}; worker (gateway process): {by_thread(packs_w)}")
    extra: dict[str, object] = {}
    if wide:
        w_ratio = wide["single"]["msg_per_s"] / wide["raw"]["msg_per_s"]
        print(f"{args.also_nodes} nodes, same load: packs of 10 {wide['packs']['readings_per_s']:.0f} readings/s "
              f"in-process ({cpu_us(wide['packs'])} us CPU per reading), {wide['packs_w']['readings_per_s']:.0f} "
              f"worker; singles gateway/raw = {w_ratio:.2f}")
        extra = {f"n{args.also_nodes}": {
            "nodes": args.also_nodes, "gateway_pack10_readings_per_s": round(wide["packs"]["readings_per_s"]),
            "worker_pack10_readings_per_s": round(wide["packs_w"]["readings_per_s"]),
            "raw_pack10_readings_per_s": round(wide["raw10"]["msg_per_s"] * 10),
            "raw_msg_per_s": round(wide["raw"]["msg_per_s"]),
            "gateway_single_readings_per_s": round(wide["single"]["readings_per_s"]),
            "worker_single_readings_per_s": round(wide["single_w"]["readings_per_s"]),
            "single_vs_raw_ratio": round(w_ratio, 3),
            "worker_single_vs_raw_ratio": round(wide["single_w"]["msg_per_s"] / wide["raw"]["msg_per_s"], 3),
            "pack10_cpu_us_per_reading": cpu_us(wide["packs"]),
            "worker_pack10_cpu_us_per_reading": cpu_us_all(wide["packs_w"]),
            "pack10_cpu_us_per_reading_with_start": cpu_us(wide["packs"], True),
            "worker_pack10_cpu_us_per_reading_with_start": cpu_us_all(wide["packs_w"], True),
            "single_cpu_us_per_reading": cpu_us(wide["single"]),
            "all_acked": all(wide[c]["all_acked"] for c in ("single", "packs", "packs_w", "single_w"))}}
    print(json.dumps({"raw_msg_per_s": round(raw["msg_per_s"]),
                      "gateway_single_readings_per_s": round(single["readings_per_s"]),
                      "gateway_pack10_readings_per_s": round(packs["readings_per_s"]),
                      "raw_pack10_msg_per_s": round(raw10["msg_per_s"]),
                      "single_vs_raw_ratio": round(ratio, 3),
                      "worker_single_readings_per_s": round(single_w["readings_per_s"]),
                      "worker_pack10_readings_per_s": round(packs_w["readings_per_s"]),
                      "worker_single_vs_raw_ratio": round(ratio_w, 3), "live_single_vs_raw_ratio": round(live_ratio, 3),
                      "live_raw_msg_per_s": round(live_raw["msg_per_s"]),
                      "live_gateway_readings_per_s": round(live["readings_per_s"]),
                      "gateway_single_readings_per_cpu_s": round(single["readings_sent"] / single["gateway_cpu_s"]),
                      "gateway_pack10_readings_per_cpu_s": round(packs["readings_sent"] / packs["gateway_cpu_s"]),
                      "pack10_cpu_us_per_reading": cpu_us(packs), "single_cpu_us_per_reading": cpu_us(single),
                      "worker_pack10_cpu_us_per_reading": cpu_us_all(packs_w),
                      "worker_single_cpu_us_per_reading": cpu_us_all(single_w),
                      "pack10_cpu_us_per_reading_with_start": cpu_us(packs, True),
                      "worker_pack10_cpu_us_per_reading_with_start": cpu_us_all(packs_w, True),
                      "pack10_start_cpu_s": start_cpu(packs), "worker_pack10_start_cpu_s": start_cpu(packs_w),
                      "raw_buffered_msg_per_s": round(best["raw_b"]["msg_per_s"]),
                      "raw_buffered_pack10_msg_per_s": round(best["raw10_b"]["msg_per_s"]),
                      "best": {"gateway_pack10_readings_per_s": round(top["packs"]["readings_per_s"]),
                               "worker_pack10_readings_per_s": round(top["packs_w"]["readings_per_s"]),
                               "raw_pack10_msg_per_s": round(top["raw10"]["msg_per_s"]),
                               "raw_msg_per_s": round(top["raw"]["msg_per_s"]),
                               "gateway_single_readings_per_s": round(top["single"]["readings_per_s"]),
                               "worker_single_readings_per_s": round(top["single_w"]["readings_per_s"])},
                      "pack10_threads_cpu_s": packs["threads_cpu_s"],
                      "worker_pack10_threads_cpu_s": packs_w["threads_cpu_s"],
                      "stat": "median",
                      "loss": loss, "all_acked": all(r["all_acked"] for r in (single, packs, live, single_w, packs_w))
                      and all(v["all_acked"] for v in extra.values()),  # type: ignore[index]
                      "nodes": args.nodes, "repeat": args.repeat, "quick": args.quick, **extra}))
    return 0 if loss == 0 else 1

if __name__ == "__main__":
    sys.exit(main())
