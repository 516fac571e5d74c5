"""SQL shared by the PostgreSQL and SQLite backends (written with ? placeholders; `pg()` converts)."""

from __future__ import annotations

from typing import Any

from fogline.gateway.cloudsvc.rows import Batch

INSERT_NODE = "INSERT INTO nodes (site, node) VALUES (?, ?) ON CONFLICT (site, node) DO NOTHING"
SELECT_NODE = "SELECT nid FROM nodes WHERE site = ? AND node = ?"
INSERT_SERIES = "INSERT INTO series (nid, metric, unit) VALUES (?, ?, ?) ON CONFLICT (nid, metric) DO NOTHING"
SELECT_SERIES = "SELECT sid FROM series WHERE nid = ? AND metric = ?"
INSERT_ALERT = ("INSERT INTO alerts (nid, seq, sid, t, v, gw, sent, stored) VALUES (?, ?, ?, ?, ?, ?, ?, {now}) "
                "ON CONFLICT (nid, seq) DO NOTHING")
_WCOLS = ("site", "node", "metric", "length", "start", "end", "rev", "count", "min", "max", "mean", "last",
          "stddev", "unit", "corr", "gw")
_DCOLS = ("site", "node", "length", "start", "end", "rev", "lane", "action", "label", "score", "confidence",
          "model", "late", "retract", "gw", "body")


def _upsert(table: str, cols: tuple[str, ...], key: tuple[str, ...]) -> str:
    # keep-highest-rev: a lower or equal revision of a key never overwrites what is stored
    q = ", ".join(f'"{c}"' for c in cols)
    sets = ", ".join(f'"{c}" = excluded."{c}"' for c in cols if c not in key)
    return (f"INSERT INTO {table} ({q}, stored) VALUES ({', '.join('?' for _ in cols)}, {{now}}) "
            f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {sets}, stored = excluded.stored "
            f"WHERE excluded.rev > {table}.rev")


UPSERT_WINDOW = _upsert("windows", _WCOLS, ("site", "node", "metric", "length", "start"))
UPSERT_DECISION = _upsert("decisions", _DCOLS, ("site", "node", "length", "start"))
INSERT_HEALTH = ("INSERT INTO gateway_health (site, k, gw, ts, body) VALUES (?, ?, ?, ?, ?) "
                 "ON CONFLICT (site, k) DO NOTHING")
INSERT_DEAD = "INSERT INTO dead_letters (topic, reason, payload, stored) VALUES (?, ?, ?, {now})"


def pg(sql: str) -> str:
    """? placeholders -> psycopg's %s."""
    return sql.replace("%", "%%").replace("?", "%s")


def window_params(b: Batch) -> list[tuple[Any, ...]]:
    return [tuple(r[c] for c in _WCOLS) for r in b.windows.values()]


def decision_params(b: Batch) -> list[tuple[Any, ...]]:
    return [tuple(r[c] for c in _DCOLS) for r in b.decisions.values()]


class IdCache:
    """Node and series ids; ids learnt in a transaction count only once it commits (a rollback forgets them)."""

    def __init__(self) -> None:
        self.nodes: dict[tuple[str, str], int] = {}
        self.series: dict[tuple[int, str], int] = {}
        self._new_nodes: dict[tuple[str, str], int] = {}
        self._new_series: dict[tuple[int, str], int] = {}

    def node(self, k: tuple[str, str]) -> int | None:
        return self.nodes.get(k, self._new_nodes.get(k))

    def sid(self, k: tuple[int, str]) -> int | None:
        return self.series.get(k, self._new_series.get(k))

    def learn_node(self, k: tuple[str, str], nid: int) -> None:
        self._new_nodes[k] = nid

    def learn_series(self, k: tuple[int, str], sid: int) -> None:
        self._new_series[k] = sid

    def committed(self) -> None:
        self.nodes.update(self._new_nodes)
        self.series.update(self._new_series)
        self.rolled_back()

    def rolled_back(self) -> None:
        self._new_nodes.clear()
        self._new_series.clear()


def resolve_ids(cache: IdCache, b: Batch, execute: Any, fetch_one: Any) -> list[tuple[int, int, int, float, int, float]]:
    """Reading rows as (nid, lane, seq, t, sid, v), creating missing nodes/series inside the open transaction."""
    out = []
    last_nk: tuple[str, str] | None = None
    last_sk: tuple[int, str] | None = None
    nid = sid = 0
    for site, node, lane, seq, metric, unit, v, t in b.readings:
        # consecutive readings are mostly of one node and metric: look ids up only when they change
        if last_nk is None or last_nk[1] != node or last_nk[0] != site:
            last_nk = (site, node)
            got = cache.node(last_nk)
            if got is None:
                execute(INSERT_NODE, last_nk)
                got = int(fetch_one(SELECT_NODE, last_nk))
                cache.learn_node(last_nk, got)
            nid = got
            last_sk = None
        if last_sk is None or last_sk[1] != metric:
            last_sk = (nid, metric)
            got = cache.sid(last_sk)
            if got is None:
                execute(INSERT_SERIES, (nid, metric, unit))
                got = int(fetch_one(SELECT_SERIES, last_sk))
                cache.learn_series(last_sk, got)
            sid = got
        out.append((nid, lane, seq, t, sid, v))
    return out


def alert_params(cache: IdCache, b: Batch) -> list[tuple[Any, ...]]:
    """Alert rows (after resolve_ids: every node and series is known)."""
    out = []
    for site, node, seq, metric, _unit, v, t, gw, ts in b.alerts:
        nid = cache.node((site, node))
        out.append((nid, seq, cache.sid((nid, metric)), t, v, gw, ts))
    return out
