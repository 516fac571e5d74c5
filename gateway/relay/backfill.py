"""Late fills below the relay feed's cursor: readings stored after the feeder passed their seq.

The feeder's per-(node, lane) cursor passes seqs skipped as gaps. A node may still send one of
those later (it had it after all); the store then commits it below the cursor, where the cursor
scan never looks again. `note_late` records such rows in `relay_backfill` in the SAME transaction
that stores them (so a kill -9 cannot separate the two), the feeder reads them with `read`, hands
them to the outbox and deletes them with `drop` in its next cursor transaction. Retention keeps
them raw until then (`held`).
"""

from __future__ import annotations

from typing import Any, Iterable

Key = tuple[int, int, int]  # nid, lane, seq


def note_late(store: Any, late: Iterable[Key]) -> int:
    """Inside the store's open commit: record stored seqs at or below what the feeder has read. Returns the count."""
    fed = store.relay_lanes
    if not fed:
        return 0
    cur, read = store.relay_cursor, store.relay_read
    rows = [k for k in late if k[1] in fed and k[2] <= max(cur.get(k[:2], 0), read.get(k[:2], 0))]
    if rows:
        store.con.executemany("INSERT OR IGNORE INTO relay_backfill(nid, lane, seq) VALUES (?,?,?)", rows)
    return len(rows)


def read(con: Any, lane: int, skip: frozenset[tuple[int, int]], limit: int
         ) -> dict[tuple[int, int], list[tuple[int, str, str | None, float, float]]]:
    """Late fills of one lane, by (nid, lane), ordered by seq: (seq, metric, unit, v, t), at most limit in all."""
    out: dict[tuple[int, int], list[tuple[int, str, str | None, float, float]]] = {}
    if limit <= 0:
        return out
    for nid, seq, metric, unit, v, t in con.execute(
            "SELECT b.nid, b.seq, s.metric, s.unit, r.v, r.t FROM relay_backfill b "
            "JOIN readings r ON r.nid=b.nid AND r.lane=b.lane AND r.seq=b.seq JOIN series s ON s.sid=r.sid "
            "WHERE b.lane=? ORDER BY b.nid, b.seq", (lane,)):
        if (nid, lane) in skip:
            continue
        out.setdefault((nid, lane), []).append((seq, metric, unit, v, t))
        limit -= 1
        if limit <= 0:
            break
    return out


def drop(con: Any, keys: list[Key]) -> None:
    """Inside the feeder's transaction: forget late fills the outbox accepted."""
    if keys:
        con.executemany("DELETE FROM relay_backfill WHERE nid=? AND lane=? AND seq=?", keys)


def held(con: Any) -> set[Key]:
    """Late fills not handed to the outbox yet (retention keeps them raw)."""
    return set(con.execute("SELECT nid, lane, seq FROM relay_backfill"))
