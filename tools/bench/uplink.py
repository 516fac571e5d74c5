"""Uplink throughput and wire cost: firmware FlashLog + Uplink + MQTT client -> mosquitto -> acking gateway.

Runs tests/node/uplink_node.py (the real firmware modules on the MicroPython unix port, LittleFS on
a file-backed sim flash) producing N readings as fast as it can, with a paho gateway that acks the
contiguous prefix (broker with `set_tcp_nodelay true`, plus one run on mosquitto's default). Reports end-to-end readings/s and messages/s until every reading is acked, bytes
per reading in payload and on the wire (all MQTT bytes the node sent), alert latency (append on the
node -> first arrival at the gateway, wall clock, while readings stream), the sensing loop's largest gap
between readings (with and without a 1.2 s broker outage: sensing must not wait on the network), and BTHome
advert sizes.
Last line: one JSON object.

usage: python tools/bench/uplink.py [--quick] [--readings N] [--max-pack N]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path[:0] = [str(Path(__file__).resolve().parents[2]), str(Path(__file__).resolve().parents[2] / "tests")]

from tests.node.gateway_stub import AckingGateway  # noqa: E402
from fogline.tools import hostemu  # noqa: E402
from harness.broker import Mosquitto  # noqa: E402
from harness.counternode import run_counter_node  # noqa: E402

ADVERTS = r"""
import bluetooth
from firmware import bthome
ble = bluetooth.BLE()
v = {"temperature": 21.37, "humidity": 45.5, "pressure": 1013.25, "battery": 97}
print(len(bthome.Advertiser(ble).update(v)), len(bthome.Advertiser(ble, bind_key=bytes(range(16))).update(v)),
      len(bthome.Advertiser(ble, name="node1").update(v)))
"""


def _outage(broker: Mosquitto, after_s: float, down_s: float) -> None:
    time.sleep(after_s)
    broker.stop()
    time.sleep(down_s)
    broker.start()


def run(n: int, max_pack: int, work: Path, nodelay: bool = True, period_ms: int = 0, outage_s: float = 0) -> dict:
    # mosquitto's default leaves Nagle on: its small acks to the node then wait for delayed ACKs
    broker = Mosquitto(work / "mq", extra_conf="set_tcp_nodelay true" if nodelay else "").start()
    gw = AckingGateway(broker.port)
    ctl = work / "ctl"
    ctl.write_text("wifi 1")
    t0 = time.monotonic()
    cut = threading.Thread(target=_outage, args=(broker, 0.5, outage_s), daemon=True) if outage_s else None
    if cut:
        cut.start()
    try:
        proc, d = run_counter_node(broker.port, n, period_ms, ctl, f"max_pack={max_pack}", "min_pack=10", "window=4",
                                   "sync_every=32", "capacity=900000", "stamp=1", timeout=600)
        elapsed = time.monotonic() - t0
    finally:
        if cut:
            cut.join()
        gw.stop()
        broker.stop()
    lat = sorted((gw.first_rx[("node1", "alert", seq)] - rec[3]) * 1000 for seq, rec in gw.got[("node1", "alert")].items())
    if proc.returncode or not d:
        raise SystemExit(f"node failed: {proc.stderr[-2000:]}")
    up, mq = d["uplink"], d["mqtt"]
    return {"readings": n, "max_pack": max_pack, "broker_nodelay": nodelay, "period_ms": period_ms,
            "broker_outage_s": outage_s, "sensing_max_gap_ms": d["max_gap_ms"], "seconds": round(elapsed, 2),
            "readings_per_s": round(n / elapsed), "msgs": up["msgs"], "msgs_per_s": round(up["msgs"] / elapsed),
            "records_sent": up["records"], "resent_records": up["resent_records"],
            "payload_bytes_per_reading": round(up["bytes"] / up["records"], 2),
            "wire_bytes_per_reading": round(mq["tx_bytes"] / n, 2),
            "gateway_received": gw.records,
            "alert_latency_ms_p50": round(lat[len(lat) // 2], 2), "alert_latency_ms_p99": round(lat[int(len(lat) * 0.99)], 2), "peak_flash_bytes": d["peak_bytes"], "final_flash_bytes": d["bytes_used"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--readings", type=int)
    ap.add_argument("--max-pack", type=int)
    a = ap.parse_args()
    n = a.readings or (1000 if a.quick else 5000)
    packs = [a.max_pack] if a.max_pack else ([50] if a.quick else [10, 50])
    rows = []
    with tempfile.TemporaryDirectory() as td:
        for p in packs:
            rows.append(run(n, p, Path(td) / f"p{p}"))
        rows.append(run(n, packs[-1], Path(td) / "nagle", nodelay=False))
        rows.append(run(n // 5, packs[-1], Path(td) / "paced", period_ms=2))  # 500 readings/s offered
        rows.append(run(n // 2, packs[-1], Path(td) / "outage", period_ms=2, outage_s=1.2))  # sensing spans it
        script = Path(td) / "adv.py"
        script.write_text(ADVERTS)
        out = hostemu.run_mp(script, cwd=str(hostemu.REPO), timeout=60)
        plain, enc, named = (int(x) for x in out.stdout.split())
    print(f"{'max_pack':>8} {'nodelay':>7} {'period':>6} {'readings':>8} {'s':>6} {'rd/s':>7} {'msg/s':>6} {'B/rd payload':>12} "
          f"{'B/rd wire':>9} {'resent':>6} {'alert ms p50/p99':>16} {'outage s':>8} {'max gap ms':>10}")
    for r in rows:
        print(f"{r['max_pack']:>8} {str(r['broker_nodelay']):>7} {r['period_ms']:>6} {r['readings']:>8} {r['seconds']:>6} {r['readings_per_s']:>7} {r['msgs_per_s']:>6} "
              f"{r['payload_bytes_per_reading']:>12} {r['wire_bytes_per_reading']:>9} {r['resent_records']:>6} "
              f"{r['alert_latency_ms_p50']:>8}/{r['alert_latency_ms_p99']:<7} {r['broker_outage_s']:>8} "
              f"{r['sensing_max_gap_ms']:>10}")
    print(f"BTHome advert bytes: plain {plain}, encrypted {enc}, plain+name(5) {named} (legacy limit 31)")
    print(json.dumps({"runs": rows, "advert_bytes": {"plain": plain, "encrypted": enc, "plain_named": named}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
