"""Late data: 50 nodes, a 10-minute outage, then the drain; what corrections cost the gateway and the uplink.

Simulated (event) time, nothing waits on the wall clock: 50 nodes x 4 metrics at 1 Hz send packs of
7 s live for 5 minutes; then the link is down for 10 minutes (the nodes keep sampling into flash,
a third of them raise an alert meanwhile; the gateway's idle close fires their open windows); then
each node drains as the firmware does (its alert first, then the backlog oldest first, 5 packs of 50
per node per second, new readings appended) and runs live for 2 more minutes. The gateway side is the
real code path of gateway/ingest/path.py: group commits of <= 2000 readings (Store.commit_batch, SQLite),
Aggregator.add_many per pack, re-opens from the store after each commit, corrections once a second, every window (10 s, 60 s, 900 s) submitted
to the real Relay/Outbox as a summary, whose counters split first revisions from corrections.

    python tools/bench/late_data.py [--quick] [--nodes 50] [--outage-s 600]

Reports windows delivered and corrected, re-opens from the store, correction bytes as a fraction of
summary bytes, gateway CPU per late reading (process CPU measured on the late path: the update or re-open
request of each late reading, the corrections built and written to the outbox, the re-opens' store reads),
against the per-reading CPU of on-time data and of the whole ingest path, peak RSS; last line JSON.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import math
import random
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterable, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fogline.gateway.store import late  # noqa: E402
from fogline.gateway.aggregate.core import Aggregator, Window  # noqa: E402
from fogline.gateway.relay.cloud import CloudConfig  # noqa: E402
from fogline.gateway.relay.outbox import OutboxConfig  # noqa: E402
from fogline.gateway.relay.core import Relay  # noqa: E402
from fogline.gateway.store.core import Store  # noqa: E402
from fogline.gateway.ingest.validate import Message, Reading  # noqa: E402

T0 = 1_764_150_000  # aligned to 900 s
METRICS = (("temperature", "Cel", 21.0, 0.05), ("humidity", "%RH", 45.0, 0.3), ("pressure", "hPa", 1013.0, 0.1),
           ("vibration", "g", 0.2, 0.01))
LENGTHS = (10.0, 60.0, 900.0)


class Node:
    """A node's flash backlog and seqs. Reading i was sampled at T0 + i // 4 (metric i % 4); its value is a
    function of (node, i), so the simulated flash costs no memory and the RSS is the gateway's."""

    def __init__(self, name: str, idx: int):
        self.name, self.idx = name, idx
        self.sampled = 0   # readings taken so far
        self.sent = 0      # readings handed to the uplink (oldest first)
        self.seq = {"up": 0, "alert": 0}
        self.alert: tuple[str, str, float, float] | None = None

    def sample(self, t: float) -> None:
        self.sampled += len(METRICS)

    def backlog(self) -> int:
        return self.sampled - self.sent

    def _rec(self, i: int) -> tuple[str, str, float, float]:
        m, unit, base, sd = METRICS[i % len(METRICS)]
        noise = ((i * 2654435761 + self.idx * 40503) % 10007) / 10007 - 0.5
        return m, unit, round(base + 3 * sd * noise, 3), float(T0 + i // len(METRICS))

    def take(self, n: int) -> Message:
        """The next n readings of the backlog (at most what is there) as one up-lane pack."""
        recs = [self._rec(i) for i in range(self.sent, min(self.sent + n, self.sampled))]
        self.sent += len(recs)
        return self.pack("up", recs)

    def pack(self, lane: str, recs: list[tuple[str, str, float, float]]) -> Message:
        first = self.seq[lane] + 1
        self.seq[lane] += len(recs)
        return Message(self.name, lane, first, [Reading(self.name, lane, first + i, m, u, v, t)
                                                for i, (m, u, v, t) in enumerate(recs)])


class TimedAggregator(Aggregator):
    """The gateway's Aggregator, timing the work late readings cause: their accumulator updates (or re-open
    requests), the corrections they make (window built and written to the outbox) and the re-opens."""

    late_cpu = 0.0

    def _late(self, *a) -> None:  # type: ignore[no-untyped-def]
        c = time.process_time()
        super()._late(*a)
        self.late_cpu += time.process_time() - c

    def flush_late(self) -> int:
        c = time.process_time()
        n = super().flush_late()
        self.late_cpu += time.process_time() - c
        return n

    def reopened(self, *a) -> int:  # type: ignore[no-untyped-def]
        c = time.process_time()
        n = super().reopened(*a)
        self.late_cpu += time.process_time() - c
        return n


class Gateway:
    """The ingest path without MQTT: commit, aggregate pack by pack, corrections, relay summaries."""

    def __init__(self, work: Path):
        self.store = Store(work / "ingest.sqlite")
        self.relay = Relay.build(OutboxConfig(synchronous="NORMAL"),
                                 CloudConfig(enabled=True, tls=False, allow_plaintext=True), "gw1", "bench", work)
        self.pending: list[Window] = []
        self.agg = TimedAggregator(LENGTHS, 5.0, self._emit, idle_close_s=30.0)
        self.cpu_agg = 0.0   # aggregation + corrections + re-opens
        self.cpu_all = 0.0   # the whole path: commit, aggregation, corrections, outbox
        self.readings = 0
        self.reopened = 0

    def _emit(self, w: Window) -> None:
        self.pending.append(w)
        self.relay.submit_window(w)

    def commit_all(self, msgs: Iterable[Message], wall: float, batch_max: int = 2000) -> None:
        """Group commits of at most batch_max readings, as the gateway's committer makes them (msgs: lazily)."""
        batch: list[Message] = []
        n = 0
        for m in itertools.chain(msgs, [None]):
            if m is None or (batch and n + len(m.readings) > batch_max):
                if batch:
                    self.commit(batch, wall)
                batch, n = [], 0
            if m is not None:
                batch.append(m)
                n += len(m.readings)

    def commit(self, msgs: list[Message], wall: float) -> None:
        c0 = time.process_time()
        wins, self.pending = self.pending, []
        res = self.store.commit_batch(msgs, windows=wins, now=wall)
        c1 = time.process_time()
        agg = self.agg
        for r in res.results:
            rs = r.new
            if rs:
                agg.add_many(rs[0].node, [x.metric for x in rs], [x.unit for x in rs], [x.value for x in rs],
                             [x.t for x in rs], wall)
                self.readings += len(rs)
        self._late(wall, flush=False)  # re-opens before the next commit; corrections once a tick
        c2 = time.process_time()
        self.cpu_agg += c2 - c1
        self.cpu_all += c2 - c0

    def _late(self, wall: float, flush: bool = True) -> None:
        if flush:
            self.agg.flush_late()
        keys = self.agg.take_reopen()
        if keys:
            self.reopened += len(keys)
            c = time.process_time()
            got = late.recompute(self.store, keys)  # the indexed store reads
            self.agg.late_cpu += time.process_time() - c
            self.agg.reopened(got, wall)

    def tick(self, wall: float) -> None:
        c0 = time.process_time()
        self.agg.close_idle(wall)
        self._late(wall)
        d = time.process_time() - c0
        self.cpu_agg += d
        self.cpu_all += d


def run(args: argparse.Namespace) -> dict:
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="fogline-late-"))
    gw = Gateway(work)
    nodes = [Node(f"n{i:03d}", i) for i in range(args.nodes)]
    alerting = set(rng.sample(range(args.nodes), max(1, args.nodes // 3)))
    t = float(T0)
    phase: dict[str, dict] = {}

    def snap(name: str) -> dict:
        return {"cpu_agg": gw.cpu_agg, "cpu_all": gw.cpu_all, "readings": gw.readings, "late_cpu": gw.agg.late_cpu,
                "late": gw.agg.late_readings, "corrections": gw.agg.corrections, "reopened": gw.reopened}

    def live(seconds: int) -> None:
        nonlocal t
        for _ in range(seconds):
            msgs = []
            for n in nodes:
                n.sample(t)
                if int(t) % 7 == 6:  # a pack of the last 7 s (28 readings), as the uplink lingers for a pack
                    msgs.append(n.take(n.backlog()))
            gw.commit_all(msgs, t)
            gw.tick(t)
            t += 1.0

    live(args.live_s)
    phase["live"] = snap("live")
    outage_at = t
    for sec in range(args.outage_s):  # link down: sample into flash, the gateway hears nothing
        for i, n in enumerate(nodes):
            n.sample(t)
            if i in alerting and n.alert is None and rng.random() < 1.0 / args.outage_s * 3:
                n.alert = ("temperature", "Cel", 35.0, t)
        gw.tick(t)
        t += 1.0
    phase["outage"] = snap("outage")
    drain_start = t
    drained_at = None
    def drain_round() -> Iterator[Message]:
        for n in nodes:
            n.sample(t)
            if n.alert is not None:  # alerts drain first
                yield n.pack("alert", [n.alert])
                n.alert = None
            for _ in range(args.packs_per_s):
                if not n.backlog():
                    break
                yield n.take(50)

    while drained_at is None:
        gw.commit_all(drain_round(), t)
        gw.tick(t)
        t += 1.0
        if all(n.backlog() < 40 for n in nodes):
            drained_at = t
    phase["drain"] = snap("drain")
    live(args.after_s)
    t += 60.0
    gw.tick(t)  # the last windows fire on the idle close
    phase["end"] = snap("end")
    gw.commit([], t)  # the last delivered windows reach the windows table
    c = gw.relay.counters
    d0, d1 = phase["outage"], phase["drain"]
    drain_readings = d1["readings"] - d0["readings"]
    live_per = phase["live"]["cpu_agg"] / max(1, phase["live"]["readings"])
    live_all = phase["live"]["cpu_all"] / max(1, phase["live"]["readings"])
    drain_all = d1["cpu_all"] - d0["cpu_all"]
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {
        "nodes": args.nodes, "metrics": len(METRICS), "window_lengths_s": list(LENGTHS), "outage_s": args.outage_s,
        "readings": gw.readings, "late_readings": gw.agg.late_readings,
        "late_share": round(gw.agg.late_readings / max(1, gw.readings), 4),
        "windows_delivered": gw.agg.windows_emitted, "windows_corrected": gw.agg.corrections,
        "windows_reopened_from_store": gw.reopened, "windows_kept_in_memory_end": gw.agg.kept_count(),
        "summary_items": c["summary_items"], "summary_bytes": c["summary_bytes"],
        "correction_items": c["correction_items"], "correction_bytes": c["correction_bytes"],
        "correction_bytes_fraction": round(c["correction_bytes"] / max(1, c["summary_bytes"]), 4),
        # aggregation (windows fired, summaries into the outbox) per on-time reading of the live phase
        "agg_cpu_us_per_reading_live": round(live_per * 1e6, 2),
        # measured on the late path itself: update or re-open request, corrections built and written to
        # the outbox, re-opens (store read + recompute), over every late reading of the run
        "gateway_cpu_us_per_late_reading": round(gw.agg.late_cpu / max(1, gw.agg.late_readings) * 1e6, 2),
        "gateway_cpu_us_per_reading_live": round(live_all * 1e6, 2),
        "gateway_cpu_us_per_reading_drain": round(drain_all / max(1, drain_readings) * 1e6, 2),
        "drain_sim_s": round((drained_at or t) - drain_start, 1), "outage_start": outage_at,
        "peak_rss_mb": round(rss_kb / 1024, 1), "reopen_dropped": gw.agg.reopen_dropped,
    }
    gw.store.close()
    gw.relay.outbox.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10 nodes, a 3-minute outage")
    ap.add_argument("--nodes", type=int, default=50)
    ap.add_argument("--outage-s", type=int, default=600)
    ap.add_argument("--live-s", type=int, default=300)
    ap.add_argument("--after-s", type=int, default=120)
    ap.add_argument("--packs-per-s", type=int, default=5, help="backlog packs of 50 readings per node per second")
    ap.add_argument("--seed", type=int, default=18)
    args = ap.parse_args()
    if args.quick:
        args.nodes, args.outage_s, args.live_s, args.after_s = 10, 180, 60, 60
    logging.basicConfig(level=logging.ERROR)
    w0 = time.perf_counter()
    r = run(args)
    r["wall_s"] = round(time.perf_counter() - w0, 1)
    rows = [("readings (late)", f"{r['readings']} ({r['late_readings']}, {100 * r['late_share']:.1f} %)"),
            ("windows delivered / corrected", f"{r['windows_delivered']} / {r['windows_corrected']}"),
            ("windows re-opened from the store", r["windows_reopened_from_store"]),
            ("summary bytes / correction bytes", f"{r['summary_bytes']} / {r['correction_bytes']} "
                                                 f"({100 * r['correction_bytes_fraction']:.1f} %)"),
            ("gateway CPU per late reading (late path)", f"{r['gateway_cpu_us_per_late_reading']} us"),
            ("aggregation CPU per on-time reading (live)", f"{r['agg_cpu_us_per_reading_live']} us"),
            ("ingest path CPU per reading: live / drain", f"{r['gateway_cpu_us_per_reading_live']} us / "
                                                         f"{r['gateway_cpu_us_per_reading_drain']} us"),
            ("drain (simulated s)", r["drain_sim_s"]), ("peak RSS", f"{r['peak_rss_mb']} MiB"),
            ("wall s", r["wall_s"])]
    w = max(len(a) for a, _ in rows)
    print(f"late data: {r['nodes']} nodes x {r['metrics']} metrics at 1 Hz, a {r['outage_s']} s outage then the "
          f"drain; windows {r['window_lengths_s']} s all relayed as summaries")
    for a, b in rows:
        print(f"  {a:<{w}}  {b}")
    print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
