"""Store side of late data (run on the store thread): re-open windows from SQLite, replay after a restart.

A window no longer in the aggregator's memory is recomputed from the readings the store holds
(raw rows through the (sid, t) index, plus compressed blocks), together with the count the
windows table says was delivered, so only a changed window is delivered again. After a restart
`replay` rebuilds the open windows and tells the aggregator which of them were delivered and
from when on it saw every reading; `recent_windows` lists the windows touched by the last
readings committed before a crash, whose correction may not have been delivered.
"""

from __future__ import annotations

import logging
import math
import sqlite3
from dataclasses import dataclass, field
from typing import Any, Iterable

from fogline.gateway.store.tiers import unpack_block
from fogline.gateway.aggregate.windowstats import _Acc, acc_of

log = logging.getLogger(__name__)
Key = tuple[str, str, float, float]  # (node, metric, length, start)


def _sid(store: Any, node: str, metric: str) -> int | None:
    nid = store.nids.get(node)
    return store.sids.get((nid, metric)) if nid is not None else None


def recompute(store: Any, keys: Iterable[Key]) -> list[tuple[Key, _Acc | None, int]]:
    """(key, accumulator over the stored readings or None, count delivered before) per window.

    None when the series is unknown or part of the window was pruned to the cloud (cold): the
    gateway cannot know the whole window then, so it does not send a smaller one."""
    con: sqlite3.Connection = store.con
    out: list[tuple[Key, _Acc | None, int]] = []
    for k in keys:
        node, metric, ln, start = k
        sid = _sid(store, node, metric)
        if sid is None:
            out.append((k, None, 0))
            continue
        end = start + ln
        meta = con.execute("SELECT s.unit, w.count, c.upto FROM series s LEFT JOIN windows w ON w.sid=s.sid "
                           "AND w.length=? AND w.start=? LEFT JOIN cold c ON c.sid=s.sid WHERE s.sid=?",
                           (ln, start, sid)).fetchone()
        unit, before, cold = meta if meta else (None, 0, None)
        if cold is not None and start < cold:
            out.append((k, None, int(before or 0)))
            continue
        pts = con.execute("SELECT t, v FROM readings WHERE sid=? AND t >= ? AND t < ?", (sid, start, end)).fetchall()
        for (data,) in con.execute("SELECT data FROM blocks WHERE sid=? AND t0 < ? AND t1 >= ?", (sid, end, start)):
            pts.extend(p for p in unpack_block(data) if start <= p[0] < end)
        out.append((k, acc_of(start, end, unit, pts), int(before or 0)))
    return out


@dataclass
class Replay:
    """What the aggregator needs after a restart."""
    rows: list[tuple] = field(default_factory=list)          # (node, metric, unit, value, t) in time order
    covered_from: dict[tuple[str, str], float] = field(default_factory=dict)
    delivered: dict[Key, int] = field(default_factory=dict)  # windows in the replayed range -> count sent


def replay(store: Any, lengths: list[float], limit: int = 200000) -> Replay:
    """Per series: readings since its newest delivered longest window (aligned so every window is whole)."""
    con: sqlite3.Connection = store.con
    longest = max(lengths)
    done: dict[tuple[int, float], float] = {}
    for sid, length, end in con.execute('SELECT sid, length, MAX("end") FROM windows GROUP BY sid, length'):
        done[(sid, float(length))] = end
    packed = dict(con.execute("SELECT sid, MAX(t1) FROM blocks GROUP BY sid"))
    res = Replay()
    for sid, node, metric, unit in con.execute(
            "SELECT s.sid, n.name, s.metric, s.unit FROM series s JOIN nodes n ON n.nid=s.nid").fetchall():
        since = done.get((sid, longest), -math.inf)
        if since != -math.inf:
            since = min(math.floor(since / ln) * ln for ln in lengths)  # the first window holding `since` is whole
        if sid in packed and packed[sid] >= since:  # compacted rows are not replayed: start after them
            since = (math.floor(packed[sid] / longest) + 1) * longest
        rows = con.execute("SELECT t, v FROM readings WHERE sid=? AND t >= ? ORDER BY t DESC LIMIT ?",
                           (sid, since if since != -math.inf else -1e18, limit)).fetchall()
        if len(rows) == limit:  # only the newest rows: begin at a window edge all lengths share
            since = (math.floor(rows[-1][0] / longest) + 1) * longest
            rows = [r for r in rows if r[0] >= since]
        res.covered_from[(node, metric)] = since
        res.rows.extend((node, metric, unit, v, t) for t, v in rows)
        for length, start, count in con.execute("SELECT length, start, count FROM windows WHERE sid=? AND start >= ?",
                                                (sid, since if since != -math.inf else -1e18)):
            res.delivered[(node, metric, float(length), float(start))] = int(count)
    res.rows.sort(key=lambda r: r[4])
    return res


def recent_windows(store: Any, lengths: list[float], covered_from: dict[tuple[str, str], float],
                   within_s: float = 60.0, per_lane: int = 2000) -> list[Key]:
    """Windows before the replayed range touched by readings committed within_s before the newest commit.

    A crash between a commit and the delivery of the corrections it caused leaves those windows stale;
    recomputing them (only the changed ones are sent) closes that gap."""
    con: sqlite3.Connection = store.con
    recent: list[tuple[int, float, float]] = []
    for nid, lane in list(store.lanes):
        recent.extend(con.execute("SELECT sid, t, rx FROM readings WHERE nid=? AND lane=? ORDER BY seq DESC LIMIT ?",
                                  (nid, lane, per_lane)))
    if not recent:
        return []
    newest = max(r[2] for r in recent)
    names = {sid: (store.names.get(nid), metric) for (nid, metric), sid in store.sids.items()}
    out: set[Key] = set()
    for sid, t, rx in recent:
        if rx < newest - within_s or sid not in names:
            continue
        node, metric = names[sid]
        if t >= covered_from.get((node, metric), -math.inf):
            continue  # replayed: the aggregator rebuilt that window and delivers it if it changed
        for ln in lengths:
            out.add((node, metric, ln, math.floor(t / ln) * ln))
    return sorted(out)


# ---------------------------------------------------------------- gateway side (event loop)
async def replay_into(gw: Any) -> None:
    """After a restart: rebuild open windows, deliver only changed ones, recheck what a crash may have cut off."""
    agg = gw.aggregator
    rep = await gw.run_store(replay, agg.lengths)
    agg.covered_from, agg.delivered = rep.covered_from, rep.delivered
    wall = gw.clock()
    for node, metric, unit, v, t in rep.rows:
        agg.add(node, metric, unit, v, t, wall)
    # windows open or just corrected at the crash have readings committed within idle_close_s of it
    stale = await gw.run_store(recent_windows, agg.lengths, rep.covered_from, max(60.0, 2 * agg.idle_close_s))
    await deliver_corrections(gw, stale)
    agg.late_readings = 0
    if rep.rows or stale:
        log.info("event=windows_replayed readings=%d open_windows=%d rechecked=%d", len(rep.rows),
                 agg.open_count(), len(stale))


async def deliver_corrections(gw: Any, extra: Iterable[Key] = (), flush: bool = True) -> None:
    """Re-open windows no longer in memory from the store; with flush, deliver the in-memory corrections too.

    After each commit (before the next one, so a re-open reads exactly what is stored; flush=False) and
    each tick (flush=True): a window a drain keeps correcting goes upstream about once a second, not
    once per commit."""
    agg = gw.aggregator
    if flush:
        agg.flush_late()
    keys = agg.take_reopen() + list(extra)
    m = gw.metrics
    if keys:
        res = await gw.run_store(recompute, keys)
        m.inc("windows_reopened", len(res))
        m.inc("windows_corrected_from_store", agg.reopened(res, gw.clock()))
    m.set("open_windows", agg.open_count())
    m.set("windows_kept_for_corrections", agg.kept_count())
    m.set("late_readings", agg.late_readings)
    m.set("window_corrections", agg.corrections)
    m.set("window_reopen_dropped", agg.reopen_dropped)
