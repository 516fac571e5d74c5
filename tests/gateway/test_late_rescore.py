"""Re-scoring of corrected windows with the shipped model: late anomalies flagged, cleared anomalies
retracted on the anomaly lane, higher revisions, and the node's live feature context left alone."""

from __future__ import annotations

import dataclasses

import cbor2

from fogline.gateway.relay.outbox import Outbox, OutboxConfig
from fogline.gateway.inference.core import Decision, outbox_sink
from fogline.shared import summary as wire
from tests.gateway.test_inference import engine, normal_set, win


def _run(tmp_path, corrections: dict[int, object]) -> tuple[list[Decision], object]:
    out: list[Decision] = []
    e = engine(tmp_path, sink=out.extend)
    for k in range(30):
        s = normal_set("n1", 60.0 * k)
        if k == 21:
            s[0] = win("n1", "temperature", 60.0 * k, 21.0, 0.0)  # stuck sensor: an anomaly
        e.submit_many(s)
        e.flush()
        if k - 3 in corrections:  # a correction arrives three intervals later (a drain)
            e.submit(corrections[k - 3])
            e.flush()
    e.flush(force=True)
    return out, e


def test_corrections_rescore_late_anomaly_and_retraction(tmp_path):
    stuck = dataclasses.replace(win("n1", "temperature", 60.0 * 20, 21.0, 0.0), count=75, correction=True)
    fixed = dataclasses.replace(win("n1", "temperature", 60.0 * 21, 21.0, 0.07), count=75, correction=True)
    base, _ = _run(tmp_path / "a", {})
    out, e = _run(tmp_path / "b", {20: stuck, 21: fixed})
    first = {d.start: d for d in base}
    assert first[1200.0].action == "summary" and first[1260.0].action == "anomaly"
    again = [d for d in out if d.correction]
    assert [(d.start, d.action, d.lane, d.late, d.retract) for d in again] == [
        (1200.0, "anomaly", "anomaly", True, False),      # found only after the correction: a late anomaly
        (1260.0, "summary", "anomaly", False, True)]      # the correction clears it: retracted, anomaly lane
    for d in again:
        assert d.rev == first[d.start].rev + 15  # 75 instead of 60 temperature readings
        body = d.as_dict()
        assert wire.body_key(body) == ("n1", wire.SET, 60.0, d.start) and body["corr"] == 1
        assert wire.supersedes(body, first[d.start].as_dict())
    assert again[0].as_dict()["late"] == 1 and again[1].as_dict()["retract"] == 1
    assert e.counters["late_anomalies"] == 1 and e.counters["retractions"] == 1 and e.counters["sets_rescored"] == 2
    # the re-scores ran in the sets' own context: every other set scores exactly as without corrections
    live = [d for d in out if not d.correction]
    assert [(d.start, d.score) for d in live if d.start not in (1200.0, 1260.0)] == \
           [(d.start, d.score) for d in base if d.start not in (1200.0, 1260.0)]


def test_equal_revision_is_not_rescored_and_retraction_goes_through_the_outbox(tmp_path):
    out: list[Decision] = []
    e = engine(tmp_path, sink=out.extend)
    for k in range(6):
        s = normal_set("n1", 60.0 * k)
        if k == 3:
            s[0] = win("n1", "temperature", 60.0 * k, 21.0, 0.0)
        e.submit_many(s)
    e.flush(force=True)
    n = len(out)
    e.submit(win("n1", "temperature", 0.0, 21.0, 0.07))  # the same revision again (a re-delivery)
    e.flush()
    assert len(out) == n and e.counters["sets_rescored"] == 0
    ob = Outbox(OutboxConfig(), "gw1", tmp_path / "ob")
    e.sink = outbox_sink(ob)
    e.submit(dataclasses.replace(win("n1", "temperature", 180.0, 21.0, 0.07), count=70, correction=True))
    e.flush()
    rows = ob.peek("anomaly", 10, 1 << 20)
    bodies = [cbor2.loads(r.body) for r in rows]
    assert [(b["start"], b["retract"], b["rev"], b["label"]) for b in bodies if b.get("retract")] == \
           [(180.0, 1, 70 + 3 * 60, "normal")]
    ob.close()
