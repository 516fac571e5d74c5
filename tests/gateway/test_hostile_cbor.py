"""CBOR tags the wire format does not use are refused before anything is built; untrusted objects are
never formatted whole (a 260-byte shared-reference bomb is 168,000 leaves, 340 bytes are 3.4 million)."""

from __future__ import annotations

import time
import tracemalloc
from types import SimpleNamespace

import cbor2
import pytest

from fogline.gateway.ops.discovery import Discovery
from fogline.gateway.twin.core import Twin, TwinConfig
from fogline.gateway.ingest.validate import Policy, Rejected, brief, decode_state, decode_uplink
from tests.gateway.ingest_helpers import shared_ref_bomb

NOW = time.time()
GOOD_PACK = [{-2: "v1/temp", -4: "Cel", -3: NOW - 10, 2: 21.5}]
POL = Policy(units=frozenset({"Cel"}))


def _peak(fn):
    """(result or exception, peak bytes allocated while fn ran): work done, independent of host speed."""
    tracemalloc.start()
    try:
        try:
            out = fn()
        except Exception as e:  # noqa: BLE001 - the exception is the result under test
            out = e
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _dag(levels):
    """What cbor2 builds from shared_ref_bomb(levels) without the refusal: 2**levels leaves, levels objects."""
    x = [1]
    for _ in range(levels):
        x = [x, x]
    return x


@pytest.mark.parametrize("where", ["first_seq", "record_value", "pack"])
def test_shared_reference_bomb_in_an_uplink_is_refused_before_it_is_built(where):
    bomb = shared_ref_bomb()
    if where == "first_seq":
        data = b"\x82" + bomb + cbor2.dumps(GOOD_PACK)
    elif where == "record_value":
        data = cbor2.dumps([1, [{-2: "v1/temp", 2: 0}]])[:-1] + bomb  # record value -> the bomb
    else:
        data = b"\x82\x01" + bomb
    assert len(data) < 300
    err, peak = _peak(lambda: decode_uplink("v1", "up", data, POL, NOW))
    assert isinstance(err, Rejected) and err.reason == "tag", err
    assert "tag 28" in err.detail
    assert peak < 64 * 1024, f"decoding {len(data)} bytes allocated {peak} bytes"


def test_shared_reference_bomb_in_a_state_message_is_refused():
    data = cbor2.dumps({"config_rejected": 0})[:-1] + shared_ref_bomb()
    err, peak = _peak(lambda: decode_state(data, POL))
    assert isinstance(err, Rejected) and err.reason == "tag", err
    assert peak < 64 * 1024


@pytest.mark.parametrize("tag", [0, 1, 2, 3, 4, 5, 21, 24, 25, 28, 29, 30, 32, 35, 36, 37, 256, 258, 260, 55799,
                                 1000, 2**32, 2**64 - 1])
def test_every_tag_is_refused_at_its_header(tag):
    # content that would be expensive or invalid for the tag: nothing of it may be decoded
    inner = cbor2.dumps([10**30, "x" * 100, b"\xff" * 8])
    head = cbor2.dumps(cbor2.CBORTag(tag, None))[:-1]  # tag header only (drop the encoded null)
    for data in (b"\x82" + head + inner + cbor2.dumps(GOOD_PACK), cbor2.dumps([1, [{-2: "v1/t", 2: 0}]])[:-1]
                 + head + inner):
        with pytest.raises(Rejected) as ei:
            decode_uplink("v1", "up", data, POL, NOW)
        assert ei.value.reason == "tag" and f"tag {tag} " in ei.value.detail
    with pytest.raises(Rejected) as ei:
        decode_state(b"\xa1\x62fw" + head + inner, POL)
    assert ei.value.reason == "tag"


def test_untagged_packs_still_decode():
    data = cbor2.dumps([7, GOOD_PACK])
    msg = decode_uplink("v1", "up", data, POL, NOW)
    assert [(r.seq, r.metric, r.value) for r in msg.readings] == [(7, "temp", 21.5)]


def test_brief_is_bounded_for_shared_and_huge_objects():
    for obj in (_dag(60), {"k" * 10_000: [_dag(60)] * 1000}, "x" * 100_000, 10**5000, b"\x00" * 100_000):
        s, peak = _peak(lambda o=obj: brief(o))
        assert isinstance(s, str) and 0 < len(s) <= 200
        assert peak < 64 * 1024


def test_twin_records_a_bounded_rejection_reason_from_a_hostile_state(tmp_path):
    twin = Twin(TwinConfig(file=str(tmp_path / "twin.toml")), "site1", None, data_dir=tmp_path)
    out, peak = _peak(lambda: twin.on_state("v1", {"version": 1, "config_rejected": _dag(60)}))
    assert not isinstance(out, Exception), out
    assert peak < 256 * 1024
    assert 0 < len(twin.nodes["v1"].rejected) <= 200
    twin.on_state("v1", {"version": 1, "config_rejected": "r" * 5000})
    assert len(twin.nodes["v1"].rejected) <= 200 and twin.nodes["v1"].rejected.startswith("rrr")


def test_discovery_never_formats_a_hostile_board_or_fw():
    disc = Discovery()
    disc.gw = SimpleNamespace(site="site1")
    out, peak = _peak(lambda: disc._on_state("v1", {"board": _dag(60), "fw": "f" * 5000}))
    assert not isinstance(out, Exception), out
    assert peak < 64 * 1024
    d = disc._device("v1")
    assert d["model"] == "sensor node" and d["sw_version"] == "f" * 64
