"""The gateway side of the cloud query API: fetch a series' cloud-only ranges and merge them with local tiers.

Tiers of a point in `fogline query`: "hot" = raw rows in the gateway store (as ingested), "warm" =
compressed blocks in the gateway store, "cold" = fetched from the cloud (`fogline cloud`). A point the
gateway still has is never taken from the cloud too: same reading, same time.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

HOT, WARM, COLD = "hot", "warm", "cold"


class CloudQueryError(Exception):
    """The cloud API could not answer (unreachable, refused the token, bad answer)."""


def fetch_readings(url: str, token: str | None, site: str, node: str, metric: str, since: float, until: float,
                   timeout: float = 10.0) -> list[tuple[float, float]]:
    """(t, value) of one series in [since, until) from the cloud, in time order (every lane)."""
    q = urllib.parse.urlencode({"site": site, "node": node, "metric": metric, "since": repr(since),
                                "until": repr(until)})
    req = urllib.request.Request(f"{url.rstrip('/')}/v1/readings?{q}",
                                 headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            doc = json.loads(r.read())
    except urllib.error.HTTPError as e:
        try:
            why = json.loads(e.read()).get("error", "")
        except Exception:
            why = ""
        raise CloudQueryError(f"cloud API {e.code}: {why or e.reason}") from e
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise CloudQueryError(f"cloud API unreachable: {e}") from e
    try:
        cols = doc["columns"]
        it, iv = cols.index("t"), cols.index("v")
        pts = [(float(r[it]), float(r[iv])) for r in doc["rows"]]
    except (KeyError, ValueError, TypeError, IndexError) as e:
        raise CloudQueryError(f"cloud API answer: {e}") from e
    if doc.get("truncated"):
        raise CloudQueryError("cloud API answer truncated: ask a shorter range")
    return pts


def merge(hot: list[tuple[float, float]], warm: list[tuple[float, float]],
          cold: list[tuple[float, float]]) -> list[tuple[float, float, str]]:
    """Every point once, in time order, with its tier (local copies win over the cloud's)."""
    local = {t for t, _v in hot} | {t for t, _v in warm}
    out = [(t, v, HOT) for t, v in hot] + [(t, v, WARM) for t, v in warm]
    seen: set[float] = set()
    for t, v in cold:
        if t not in local and t not in seen:
            seen.add(t)
            out.append((t, v, COLD))
    out.sort(key=lambda p: p[0])
    return out


def tiered(res: Any, cloud: dict[str, Any] | None, site: str) -> tuple[list[tuple[float, float, str]], str | None]:
    """Points of a tiers.QueryResult with tiers, plus the cloud-only ranges fetched when `cloud` is configured.

    cloud: {"url", "token", "timeout_s"} or None. Returns (points, error text or None)."""
    hot, warm = res.raw_points, res.block_points
    cold: list[tuple[float, float]] = []
    err = None
    if cloud and cloud.get("url") and res.cloud_only:
        try:
            for a, b in res.cloud_only:
                cold += fetch_readings(cloud["url"], cloud.get("token"), site, res.node, res.metric, a, b,
                                       cloud.get("timeout_s", 10.0))
        except CloudQueryError as e:
            err = str(e)
    return merge(hot, warm, cold), err
