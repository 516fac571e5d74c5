"""Node alert -> cloud subscriber latency on loopback while the site runs at full load.

Processes: site mosquitto; cloud mosquitto (TLS with a test CA + password); the real gateway
(fogline.gateway.app.Gateway + fogline.gateway.relay.component.attach, its own process); a load generator (its own
process: N nodes publishing `up` packs of 3 readings at H Hz each). This process publishes
alerts as a node would (`[seq, senml_pack]` on fogline/<site>/<node>/alert, QoS 1) and
receives them as the cloud consumer; latency = cloud arrival - node publish (one monotonic
clock). The path includes ingest validation, the durable group commit, the outbox INSERT
(synchronous=FULL), the QoS 1 publish over TLS and the cloud broker.

    python tools/bench/alert_latency.py [--quick] [--nodes 200] [--hz 1] [--alerts 300]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests")]  # tests/harness: the kits benches share with tests

import cbor2  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402

from fogline.shared import senml, topics  # noqa: E402
from harness.broker import Mosquitto  # noqa: E402
from harness.cloudkit import CloudSubscriber, make_pki, tls_cloud_broker  # noqa: E402
from harness.stats import pctl  # noqa: E402

SITE = "site1"

GATEWAY = textwrap.dedent("""
    import asyncio, logging, signal, sys
    sys.path.insert(0, {repo!r})
    from fogline.gateway import config
    from fogline.gateway.app import Gateway
    from fogline.gateway.relay.component import attach
    logging.basicConfig(level=logging.WARNING)
    async def main():
        gw = Gateway(config.load({conf!r}))
        attach(gw)
        import time as _t
        _f = open({trace!r}, "a")
        # the alert is durable here; the relay feed (woken by its own hook) reads it from the store next
        gw.on_alert(lambda rd: (_f.write("%d %.6f\\n" % (rd.seq, _t.monotonic())), _f.flush()))
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await gw.start()
        await gw.wait_connected(30)  # subscribed: a one-shot publish before that would find no session
        print("started", flush=True)
        await stop.wait()
        await gw.stop()
    asyncio.run(main())
""")

LOAD = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {repo!r})
    import cbor2, random
    import paho.mqtt.client as mqtt
    from fogline.shared import senml, topics
    nodes, hz, port = {nodes}, {hz}, {port}
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="load")
    c.max_inflight_messages_set(1000)
    c.connect("127.0.0.1", port)
    c.loop_start()
    seq = [0] * nodes
    rng = random.Random(1)
    period = 1.0 / hz
    nxt = time.monotonic()
    sent = 0
    while True:
        now = time.time()
        for i in range(nodes):
            node = "n%03d" % i
            recs = [("temp", "Cel", round(21 + rng.gauss(0, 0.1), 2), now), ("hum", "%RH", round(45 + rng.gauss(0, 0.5), 2), now),
                    ("press", "hPa", round(1013 + rng.gauss(0, 0.2), 2), now)]
            seq[i] += 1
            c.publish(topics.node("site1", node, "up"), cbor2.dumps([seq[i] * 3 - 2, senml.build_pack(node + "/", now, recs)]), qos=1)
            sent += 3
        nxt += period
        d = nxt - time.monotonic()
        if d > 0:
            time.sleep(d)
        if int(nxt) != int(nxt - period):
            print("sent", sent, flush=True)
""")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="60 alerts")
    ap.add_argument("--nodes", type=int, default=200)
    ap.add_argument("--hz", type=float, default=1.0, help="up packs (3 readings) per node per second")
    ap.add_argument("--alerts", type=int, default=300)
    ap.add_argument("--batch-ms", type=float, default=5.0, help="gateway [store] batch_ms (group commit wait)")
    args = ap.parse_args()
    if args.quick:
        args.alerts = 60
    work = Path(tempfile.mkdtemp(prefix="fogline-alertlat-"))
    pki = make_pki(work / "pki")
    site = Mosquitto(work / "site", max_queued_messages=100000).start()
    cloud = tls_cloud_broker(work / "cloud", pki, {"gw1": "gw-secret", "cloud": "cloud-secret"}).start()
    conf = work / "gateway.toml"
    trace = work / "alert_trace.txt"
    conf.write_text(textwrap.dedent(f"""
        [site]
        id = "{SITE}"
        gateway_id = "gw1"
        data_dir = "{work / 'data'}"
        [store]
        batch_ms = {args.batch_ms}
        [mqtt]
        host = "127.0.0.1"
        port = {site.port}
        [cloud]
        enabled = true
        host = "127.0.0.1"
        port = {cloud.port}
        ca_file = "{pki.ca}"
        username = "gw1"
        password = "gw-secret"
        [cloud.bandwidth]
        initial_mode = "high"
        """))
    procs: list[subprocess.Popen] = []
    sub = None
    try:
        gwp = subprocess.Popen([sys.executable, "-c", GATEWAY.format(repo=str(REPO), conf=str(conf), trace=str(trace))],
                               stdout=subprocess.PIPE, text=True, cwd=str(REPO))
        procs.append(gwp)
        assert gwp.stdout is not None and gwp.stdout.readline().strip() == "started", "gateway did not start"
        sub = CloudSubscriber(cloud.port, pki, "cloud", "cloud-secret", topic=topics.cloud(SITE, "alert")).start()
        load = subprocess.Popen([sys.executable, "-c", LOAD.format(repo=str(REPO), nodes=args.nodes, hz=args.hz,
                                                                  port=site.port)],
                                stdout=subprocess.PIPE, text=True, cwd=str(REPO))
        procs.append(load)
        node = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="alarm-node")
        node.connect("127.0.0.1", site.port)
        node.loop_start()
        sent: dict[int, float] = {}

        def send(seq: int) -> None:
            now = time.time()
            payload = cbor2.dumps([seq, senml.build_pack("alarm/", now, [("temp", "Cel", 85.0 + seq % 10, now)])])
            sent[seq] = time.monotonic()
            node.publish(topics.node(SITE, "alarm", "alert"), payload, qos=1)

        # warm-up: the first alert proves the whole path (cloud link up), not timed
        send(1)
        t0 = time.monotonic()
        while not sub.snapshot() and time.monotonic() - t0 < 30:
            time.sleep(0.05)
        if not sub.snapshot():
            raise RuntimeError("warm-up alert never reached the cloud")
        time.sleep(2.0)  # load running
        rng = random.Random(3)
        for seq in range(2, args.alerts + 2):
            send(seq)
            time.sleep(rng.uniform(0.02, 0.06))
        t0 = time.monotonic()
        while time.monotonic() - t0 < 15:
            got = {i["body"]["seq"] for i in sub.snapshot()}
            if all(s in got for s in range(2, args.alerts + 2)):
                break
            time.sleep(0.05)
        arrivals: dict[int, float] = {}
        for it in sub.snapshot():
            arrivals.setdefault(it["body"]["seq"], it["_t"])
        lat = [(arrivals[s] - sent[s]) * 1000 for s in range(2, args.alerts + 2) if s in arrivals]
        node.loop_stop()
        node.disconnect()
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        if sub:
            sub.stop()
        cloud.stop()
        site.stop()
    load_out = procs[1].stdout.read() if len(procs) > 1 and procs[1].stdout else ""
    load_sent = max([int(x.split()[1]) for x in load_out.splitlines() if x.startswith("sent")] or [0])
    seen: dict[int, float] = {}
    for line in (trace.read_text().splitlines() if trace.exists() else []):
        a, b = line.split()
        seen.setdefault(int(a), float(b))
    ing = [(seen[s] - sent[s]) * 1000 for s in range(2, args.alerts + 2) if s in seen and s in arrivals]
    rel = [(arrivals[s] - seen[s]) * 1000 for s in range(2, args.alerts + 2) if s in seen and s in arrivals]
    r = {"alerts": args.alerts, "delivered": len(lat), "p50_ms": pctl(lat, 0.5, 2),
         "p99_ms": pctl(lat, 0.99, 2), "max_ms": round(max(lat), 2) if lat else None,
         "ingest_p50_ms": pctl(ing, 0.5, 2), "ingest_p99_ms": pctl(ing, 0.99, 2),
         "relay_p50_ms": pctl(rel, 0.5, 2), "relay_p99_ms": pctl(rel, 0.99, 2),
         "load_nodes": args.nodes, "load_readings_per_s": args.nodes * args.hz * 3, "load_readings_sent": load_sent,
         "store_batch_ms": args.batch_ms, "goal_p99_ms": 20}
    print(f"alert latency, node -> gateway -> TLS cloud, under {r['load_readings_per_s']:.0f} readings/s "
          f"from {args.nodes} nodes")
    print("  (ingest = node publish -> durable at the gateway; relay = durable -> cloud subscriber)")
    for k in ("alerts", "delivered", "p50_ms", "p99_ms", "max_ms", "ingest_p50_ms", "ingest_p99_ms",
              "relay_p50_ms", "relay_p99_ms", "load_readings_sent"):
        print(f"  {k:<20} {r[k]}")
    print(json.dumps(r))
    return 0 if lat and len(lat) == args.alerts else 1


if __name__ == "__main__":
    sys.exit(main())
