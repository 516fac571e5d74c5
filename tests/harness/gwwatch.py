"""Gateway resources across its incarnations (kill -9 and restarts): RSS of all its processes, data dir and
outbox bytes, and metrics counters summed over incarnations; read from /proc, the data dir and metrics.json.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path

from harness.ledger import ro
from harness.sitekit import Proc


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM (kB) of a process from /proc; {} if it is gone."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for ln in f:
                if ln.startswith(("VmRSS:", "VmHWM:")):
                    out[ln.split(":")[0]] = int(ln.split()[1])
    except OSError:
        pass
    return out


def children(pid: int) -> list[int]:
    """Direct and indirect children of pid (the gateway's MQTT worker process)."""
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    kids = [int(x) for x in f.read().split()]
                out += kids
                todo += kids
        except OSError:
            pass
    return out


def dir_bytes(d: Path) -> int:
    """Bytes of the files under d."""
    n = 0
    for root, _dirs, files in os.walk(d):
        for fn in files:
            try:
                n += os.stat(os.path.join(root, fn)).st_size
            except OSError:
                pass  # a WAL file checkpointed away meanwhile
    return n


def count(db: Path, sql: str) -> int:
    """One number from a gateway database; 0 while it is missing or locked."""
    try:
        con = ro(db)
        try:
            return con.execute(sql).fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:  # not created yet, or locked for a moment
        return 0


class GatewayWatch:
    """Samples the gateway every `every` s across its incarnations: RSS, disk, outbox bytes, metrics counters."""

    COUNTERS = ("duplicates", "duplicate_messages", "seq_gaps_skipped")
    GAUGES = ("late_readings", "window_corrections")  # per incarnation: readings for fired windows, corrections

    def __init__(self, gw: Proc, data: Path, every: float = 1.0):
        self.gw, self.data, self.every = gw, data, every
        self.peak_rss_kb = 0     # sum over the gateway's processes at one sample
        self.peak_hwm_kb = 0     # highest VmHWM of any one gateway process
        self.peak_disk = 0       # data dir bytes
        self.peak_outbox: dict[str, int] = {}  # lane -> body bytes queued
        self.samples = 0
        self._incarnations: dict[tuple, dict[str, float]] = {}  # (pid, started) -> counter totals
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "GatewayWatch":
        self._t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._t.join(10)
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.sample()
            except Exception as e:  # the watch must never kill the run; it reports what it saw
                print("gateway watch:", repr(e))

    def sample(self) -> None:
        pid = self.gw.pid
        if pid:
            rss = 0
            for p in [pid] + children(pid):
                st = proc_status(p)
                rss += st.get("VmRSS", 0)
                self.peak_hwm_kb = max(self.peak_hwm_kb, st.get("VmHWM", 0))
            self.peak_rss_kb = max(self.peak_rss_kb, rss)
        if self.data.exists():
            self.peak_disk = max(self.peak_disk, dir_bytes(self.data))
        ob = self.data / "outbox.sqlite"
        if ob.exists():
            try:
                con = ro(ob)
                try:
                    from fogline.gateway.relay.outbox import LANES
                    for li, n in con.execute("SELECT lane, COALESCE(SUM(size), 0) FROM outbox GROUP BY lane"):
                        ln = LANES[li] if isinstance(li, int) and li < len(LANES) else str(li)
                        self.peak_outbox[ln] = max(self.peak_outbox.get(ln, 0), int(n))
                finally:
                    con.close()
            except sqlite3.Error:
                pass
        try:
            snap = json.loads((self.data / "metrics.json").read_text())
            key = (snap.get("pid"), snap.get("started"))
            vals = {c: sum(x["value"] for x in snap["counters"].get(c, [])) for c in self.COUNTERS}
            vals.update({g: sum(x["value"] for x in snap["gauges"].get(g, [])) for g in self.GAUGES})
            self._incarnations[key] = vals
        except (OSError, ValueError, KeyError, TypeError):
            pass
        self.samples += 1

    def counters(self) -> dict[str, int]:
        """Counter totals summed over gateway incarnations (lower bounds: a kill -9 loses up to one snapshot)."""
        tot = {c: 0 for c in self.COUNTERS + self.GAUGES}
        for d in self._incarnations.values():
            for c in self.COUNTERS + self.GAUGES:
                tot[c] += int(d.get(c, 0))
        tot["incarnations_seen"] = len(self._incarnations)
        return tot


def outbox_counters(data: Path) -> dict[str, int]:
    """The outbox's persisted exit counters (accepted, acked, overwritten, expired, rejected_full ... per lane)."""
    ob = data / "outbox.sqlite"
    if not ob.exists():
        return {}
    con = ro(ob)
    try:
        return {k: int(v) for k, v in con.execute("SELECT name, value FROM counters") if v}
    finally:
        con.close()
