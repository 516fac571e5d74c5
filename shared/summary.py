"""Summary wire shape: a window's key and revision, one definition for the gateway and the cloud side.

A window summary (cloud lane "summary") is a CBOR map with the window statistics and its key:

    {"node", "metric", "start", "end", "count", "min", "max", "mean", "last", "stddev", "unit",
     "rev": n, "corr": 1 (only on a correction)}

The key of a window is (node, metric, length, start) with length = end - start. Late readings
make the gateway send the same key again with a higher "rev": the cloud keeps, per key, the body
with the highest rev (equal rev = the same readings, either copy). The gateway uses the number of
readings the window summarises as its rev: a correction only ever adds readings, so the number
grows with every correction and a window recomputed after a restart gets the same rev again.
"corr" marks a body sent after an earlier revision of its key (for byte accounting; not needed
to pick the winner).

A model decision (lanes "summary", "anomaly", "raw") summarises a node's window set: its key
uses metric SET ("*") and its rev is the sum of the set's window counts. A decision found on a
correction carries "late": 1 when it is an anomaly; a corrected decision that clears an anomaly
sent earlier for the same key carries "retract": 1 and goes on the anomaly lane (the lane the
anomaly took), so it passes wherever the anomaly passed.
"""

REV = "rev"
CORR = "corr"
LATE = "late"
RETRACT = "retract"
SET = "*"  # metric of a decision's key: the whole window set of one node and interval
STATS = ("count", "min", "max", "mean", "last", "stddev")


def length_of(start, end):
    """Window length from its bounds, rounded to ms so 900.0 stays 900.0 after float subtraction."""
    return round(end - start, 3)


def key(node, metric, start, end):
    """The key (node, metric, length, start) of a window [start, end)."""
    return (node, metric, length_of(start, end), float(start))


def body_key(body):
    """Key of a summary or decision body (a map), or None if it is not one (e.g. gateway health)."""
    if not isinstance(body, dict):
        return None
    node = body.get("node")
    start = body.get("start")
    end = body.get("end")
    if not isinstance(node, str) or not isinstance(start, (int, float)) or not isinstance(end, (int, float)):
        return None
    metric = body.get("metric")
    if metric is None:
        if "windows" not in body:
            return None
        metric = SET
    return key(node, metric, start, end)


def revision(body):
    """The body's rev (0 when absent: a gateway that did not send revisions)."""
    r = body.get(REV, 0) if isinstance(body, dict) else 0
    return r if isinstance(r, int) else 0


def supersedes(new, old):
    """True if body `new` should replace `old` for their key: a strictly higher rev."""
    return old is None or revision(new) > revision(old)


def keep_highest(latest, body):
    """latest: dict key -> body. Store body if it is the newest revision of its key; True if stored."""
    k = body_key(body)
    if k is None:
        return False
    if supersedes(body, latest.get(k)):
        latest[k] = body
        return True
    return False


def stamp(body, rev, correction):
    """Add the revision fields to a summary/decision body (a dict, changed in place and returned)."""
    body[REV] = int(rev)
    if correction:
        body[CORR] = 1
    return body
