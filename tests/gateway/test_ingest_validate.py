"""Malformed input: every case lands in dead-letter with its reason, the gateway keeps going; fuzzing."""

from __future__ import annotations

import math
import time

import cbor2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fogline.gateway import config
from fogline.gateway.app import Gateway
from fogline.gateway.ingest.validate import Policy, Rejected, decode_uplink
from fogline.shared import cbor, senml
from tests.gateway.ingest_helpers import (GatewayThread, SimNode, dead_letters, gw_config, payload,
                                          shared_ref_bomb, stored_seqs)

NOW = time.time()


def _pack(node="v1", recs=None, t0=None):
    t0 = NOW - 10 if t0 is None else t0
    return senml.build_pack(node + "/", t0, recs or [("temp", "Cel", 21.5, t0)])


def _cases():
    good = payload("v1", 1, [1.0, 2.0, 3.0])
    deep = b"\x82\x01" + b"\x81" * 40 + b"\x01"
    return [
        ("fogline/site1/v1/up", good[:-3], "cbor"),                                   # truncated
        ("fogline/site1/v1/up", cbor2.dumps(["1", _pack()]), "seq"),                   # wrong type of seq
        ("fogline/site1/v1/up", cbor2.dumps([0, _pack()]), "seq"),                     # seq 0
        ("fogline/site1/v1/up", cbor2.dumps([1, {"a": 1}]), "structure"),              # pack not an array
        ("fogline/site1/v1/up", cbor2.dumps({"seq": 1}), "structure"),
        ("fogline/site1/v1/up", cbor2.dumps([5, [{-2: "v1/temp", 3: "warm"}]]), "type"),  # string value
        ("fogline/site1/v1/up", b"\x82\x01\x59\x4e\x20" + b"x" * 20000, "too_large"),  # huge
        ("fogline/site1/v1/up", deep, "cbor"),                                         # deep nesting
        ("fogline/site1/v1/up", cbor2.dumps([6, [{-2: "v1/temp", 2: 1.0, 99: 5}]]), "senml"),  # unknown label
        ("fogline/site1/v1/up", cbor2.dumps([7, [{-2: "v1/temp", 2: math.nan}]]), "non_finite"),
        ("fogline/site1/v1/up", cbor2.dumps([8, [{-2: "v1/temp", 2: math.inf}]]), "non_finite"),
        ("fogline/site1/v1/up", cbor2.dumps([9, [{-2: "v1/temp", -4: "furlong", 2: 1.0, -3: NOW}]]), "unit"),
        ("fogline/site1/v1/up", cbor2.dumps([10, _pack(t0=NOW + 86400)]), "time"),     # from the future
        ("fogline/site1/v1/up", cbor2.dumps([11, _pack(t0=100.0)]), "time"),           # 1970: clock not set
        ("fogline/site1/v1/up", cbor2.dumps([12, _pack(node="v2")]), "name"),          # another node's name
        ("fogline/site1/bad.id/up", good, "topic"),                                     # wrong topic shape
        ("fogline/site1/v1/state", b"\xff\x00", "cbor"),
        ("fogline/site1/v1/state", cbor2.dumps([1, 2]), "state"),
        ("fogline/site1/stranger/up", payload("stranger", 1, [1.0]), "unknown_device"),
        ("fogline/site1/v1/up", b"\x82" + shared_ref_bomb() + cbor2.dumps(_pack()), "tag"),  # 0.9 s to format
        ("fogline/site1/v1/state", cbor2.dumps({"config_rejected": 0})[:-1] + shared_ref_bomb(), "tag"),
    ]


def test_each_malformed_message_is_dead_lettered_with_its_reason(mosquitto, tmp_path):
    cases = _cases()
    cfg = gw_config(tmp_path, mosquitto.port, ingest={"unknown_devices": "quarantine", "known_devices": ["v1"]})
    with GatewayThread(cfg) as g:
        node = SimNode(mosquitto.port, "v1")
        for topic, data, _ in cases:
            node.c.publish(topic, data, qos=1).wait_for_publish(5)
        node.up(1, [1.0, 2.0, 3.0])            # the gateway keeps going
        assert node.wait_ack("up", 3)
        g.flush()
        node.close()
    got = dead_letters(tmp_path / "data")
    assert [r for r, _, _ in got] == [want for _, _, want in cases]
    assert all(detail for _, _, detail in got)
    assert stored_seqs(tmp_path / "data", "v1") == [1, 2, 3]
    m = g.gw.metrics
    assert m.total("dead_letters") == len(cases)
    assert m.get("dead_letters", reason="non_finite") == 2


def test_foreign_site_and_odd_topics_are_refused_without_a_broker(tmp_path):
    gw = Gateway(config.from_dict({"site": {"data_dir": str(tmp_path)}}))
    good = payload("v1", 1, [1.0])
    for t in ("fogline/other/v1/up", "x/y", "fogline/site1/v1/ack", "fogline/site1/v1/config", "", "fogline/site1//up"):
        gw.ingest(t, good)
    assert [d.reason for d in gw._dead] == ["topic"] * 6
    assert gw._msgs == []


# --- fuzzing: nothing escapes, every message is accounted for -----------------------------------

_cbor_vals = st.recursive(
    st.none() | st.booleans() | st.integers(-2**64, 2**64) | st.floats() | st.text(max_size=12)
    | st.binary(max_size=12),
    lambda kids: st.lists(kids, max_size=5) | st.dictionaries(st.integers(-10, 10) | st.text(max_size=3), kids,
                                                               max_size=5),
    max_leaves=25)


def _fresh_gateway(tmp_path):
    return Gateway(config.from_dict({"site": {"data_dir": str(tmp_path)}}))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300))
def test_fuzz_arbitrary_bytes_never_escape(tmp_path, data):
    gw = _fresh_gateway(tmp_path)
    for kind in ("up", "alert", "state"):
        gw.ingest(f"fogline/site1/f1/{kind}", data)
    assert len(gw._msgs) + len(gw._dead) + gw.metrics.total("state_messages") == 3
    for d in gw._dead:
        assert d.reason in {"cbor", "tag", "structure", "seq", "senml", "name", "type", "unit", "non_finite", "time",
                            "too_large", "state"}, d


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=_cbor_vals, pack=st.lists(st.dictionaries(st.sampled_from([-6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5,
                                                                         6, 7, 8, 42]), _cbor_vals, max_size=6),
                                      max_size=6))
def test_fuzz_structured_payloads_either_accepted_or_dead_lettered(tmp_path, first, pack):
    gw = _fresh_gateway(tmp_path)
    try:
        data = cbor2.dumps([first, pack])
    except Exception:
        return
    gw.ingest("fogline/site1/f1/up", data)
    assert len(gw._msgs) + len(gw._dead) == 1
    for m in gw._msgs:  # anything accepted is clean
        for r in m.readings:
            assert math.isfinite(r.value) and isinstance(r.seq, int) and r.seq >= 1


@settings(max_examples=200, deadline=None)
@given(vals=st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), min_size=1, max_size=20),
       first=st.integers(1, 2**40))
def test_fuzz_valid_packs_decode_to_what_was_sent(vals, first):
    t0 = float(int(NOW) - 100)
    recs = [("temp", "Cel", v, t0 + i) for i, v in enumerate(vals)]
    data = cbor.dumps([first, senml.build_pack("f1/", t0, recs)])
    msg = decode_uplink("f1", "up", data, Policy(units=frozenset({"Cel"})), NOW)
    assert [(r.seq, r.metric, r.unit, r.value, r.t) for r in msg.readings] == [
        (first + i, "temp", "Cel", v, t0 + i) for i, v in enumerate(vals)]


def test_rejected_carries_reason_and_detail():
    try:
        decode_uplink("f1", "up", b"\x82", Policy(), NOW)
    except Rejected as e:
        assert e.reason == "cbor" and e.detail
    else:
        raise AssertionError("truncated CBOR accepted")


def test_a_flood_of_invented_node_ids_stops_at_max_devices(tmp_path):
    gw = Gateway(config.from_dict({"site": {"data_dir": str(tmp_path)}, "ingest": {"max_devices": 50}}))
    for i in range(200):
        gw.ingest(f"fogline/site1/fake{i}/up", payload(f"fake{i}", 1, [1.0]))
    assert len(gw.registry.devices) == 50 and len(gw._msgs) == 50
    assert {d.reason for d in gw._dead} == {"unknown_device"} and len(gw._dead) == 150


def test_flush_waits_for_a_commit_already_in_flight(mosquitto, tmp_path):
    """flush() returns once what was received is committed, also when the committer already took the batch."""
    import asyncio
    import threading
    g = GatewayThread(gw_config(tmp_path, mosquitto.port)).start()
    entered, release = threading.Event(), threading.Event()
    try:
        real = g.gw.store.commit_batch

        def slow_commit(*a, **kw):  # a slow disk or a loaded host: the batch is in flight for a while
            entered.set()
            release.wait(60)
            return real(*a, **kw)

        g.gw.store.commit_batch = slow_commit
        g.loop.call_soon_threadsafe(g.gw.ingest, "x/y", b"junk")
        assert entered.wait(60), "the committer never committed"
        flushed = asyncio.run_coroutine_threadsafe(g.gw.flush(), g.loop)
        time.sleep(0.2)
        assert not flushed.done(), "flush() returned while a commit was still in flight"
        release.set()
        assert flushed.result(60) is True
        assert [r[0] for r in dead_letters(tmp_path / "data")] == ["topic"]
    finally:
        release.set()
        g.stop()
