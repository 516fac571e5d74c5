"""Relay feed catch-up: stored up readings -> outbox (lane raw) through fogline.gateway.relay.feed, readings/s.

A gateway store (real SQLite, synchronous=FULL) holds N up readings of M nodes that were never
handed over (as after an outbox outage or a crash); the feeder reads them past its cursors on a
store thread, submits them to a real outbox (synchronous=FULL) in batches and advances the
cursors. The cloud link is not started: this measures the store -> outbox hand-over only.

    python tools/bench/relay_feed.py [--quick] [--readings 200000] [--nodes 50] [--batch 100]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from fogline.gateway.relay.cloud import CloudConfig, CloudLink  # noqa: E402
from fogline.gateway.relay.outbox import Outbox, OutboxConfig  # noqa: E402
from fogline.gateway.relay.core import Relay  # noqa: E402
from fogline.gateway.relay.feed import RelayFeeder, init_cursors  # noqa: E402
from fogline.gateway.store.core import Store  # noqa: E402
from fogline.gateway.ingest.validate import Message, Reading  # noqa: E402


class _Host:
    """The two gateway services the feeder uses: run_store on one thread, and the wake-up hooks."""

    def __init__(self, store: Store):
        self.store = store
        self._exec = concurrent.futures.ThreadPoolExecutor(1)

    async def run_store(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._exec, fn, self.store, *args)

    def on_alert(self, cb) -> None:
        pass

    def on_readings(self, cb) -> None:
        pass


def fill(store: Store, nodes: int, readings: int) -> None:
    per = readings // nodes
    t0 = time.time() - 3600
    for n in range(nodes):
        node = f"n{n:03d}"
        for first in range(1, per + 1, 500):
            rs = [Reading(node, "up", s, "temp", "Cel", 20.0 + (s % 100) / 10, t0 + s)
                  for s in range(first, min(per, first + 499) + 1)]
            store.commit_batch([Message(node, "up", first, rs, "mqtt", 0, None, b"", t0)])


async def run(args: argparse.Namespace, work: Path) -> dict:
    store = Store(work / "ingest.sqlite", "FULL")
    host = _Host(store)
    await host.run_store(init_cursors, {0, 1}, time.time())  # feed lanes from an empty store: cursor 0
    t = time.perf_counter()
    await host.run_store(fill, args.nodes, args.readings)
    fill_s = time.perf_counter() - t
    ob = Outbox(OutboxConfig(path=str(work / "outbox.sqlite"), synchronous="FULL",
                             lanes={"raw": {"max_rows": 10_000_000, "max_bytes": 1 << 34}}), "gw1")
    relay = Relay(ob, CloudLink(CloudConfig(tls=False, allow_plaintext=True, port=1)), "site1")
    feeder = RelayFeeder(relay, host, forward_readings=True, batch=args.batch)
    t = time.perf_counter()
    await feeder.start()
    total = args.readings // args.nodes * args.nodes
    while feeder.counters["readings"] < total:
        await asyncio.sleep(0.01)
    await feeder.stop()
    feed_s = time.perf_counter() - t
    cur = await host.run_store(lambda st: sum(st.relay_cursor.values()))
    res = {"readings": total, "nodes": args.nodes, "batch": args.batch, "fill_s": round(fill_s, 2),
           "catch_up_s": round(feed_s, 2), "readings_per_s": round(total / feed_s),
           "raw_messages": feeder.counters["raw_messages"], "steps": feeder.counters["steps"],
           "cursor_sum_ok": cur == total, "outbox_rows": ob.depth()["raw"]["rows"]}
    ob.close()
    store.close()
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="20k readings")
    ap.add_argument("--readings", type=int, default=200_000)
    ap.add_argument("--nodes", type=int, default=50)
    ap.add_argument("--batch", type=int, default=100, help="[cloud] forward_batch")
    args = ap.parse_args()
    if args.quick:
        args.readings = 20_000
    with tempfile.TemporaryDirectory(prefix="fogline-relayfeed-") as d:
        r = asyncio.run(run(args, Path(d)))
    print("relay feed catch-up: stored up readings -> outbox (raw lane), SQLite FULL on both sides")
    for k, v in r.items():
        print(f"  {k:<16} {v}")
    print(json.dumps(r))
    return 0 if r["cursor_sum_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
