"""The gateway checks an uplink's authenticator from its one cbor2 decode, with check()'s outcomes and counts."""

from __future__ import annotations

import time

import cbor2
import pytest

from fogline.gateway.ingest import packauth
from fogline.gateway.ingest.packauth import PackVerifier, pack_span
from fogline.gateway.ingest.validate import Policy, Rejected, decode_uplink
from fogline.shared import auth, cbor, senml

K1, K2 = bytes(range(16)), bytes(range(16, 32))
POL = Policy(site="s1", units=frozenset({"Cel"}))


def _pack(n: int = 3, value: float = 21.5) -> bytes:
    now = int(time.time())
    return cbor.dumps(senml.build_pack("n1/", now, [("temp", "Cel", value + i, now + i) for i in range(n)]))


def _outcome(fn, *a):
    try:
        return fn(*a)
    except Rejected as e:
        return e.detail.split(":")[0]


def _cases() -> list[tuple[str, str, bytes]]:
    p = _pack()
    good = auth.seal_pack(K1, "n1", "up", 5, p)
    long_seq = auth.seal_pack(K1, "n1", "up", 70000, p, 9)  # a 5-byte first_seq header
    first, pack, tag, ep = cbor2.loads(long_seq)
    # what shared/auth.seal_pack never writes: first_seq and epoch in longer headers than needed
    wide = b"\x84\x1b" + first.to_bytes(8, "big") + p + cbor2.dumps(tag) + b"\x1a" + ep.to_bytes(4, "big")
    pack[0][2] = 99.0
    return [("n1", "up", good), ("n1", "up", long_seq), ("n1", "up", wide),
            ("n1", "alert", good),                                        # lane swap
            ("n2", "up", auth.seal_pack(K1, "n2", "up", 1, p)),           # signed with another node's key
            ("n1", "up", auth.seal_pack(None, "n1", "up", 1, p)),         # no tag
            ("n1", "up", auth.seal_pack(None, "n1", "up", 1, p, 3)),      # no tag, with an epoch (null 3rd)
            ("n9", "up", auth.seal_pack(K1, "n9", "up", 1, p)),           # no key for this node
            ("n1", "up", cbor2.dumps([first, pack, tag, ep]))]            # value altered, same tag


@pytest.mark.parametrize("require", [True, False])
def test_check_message_gives_checks_outcome_and_counters_for_every_case(require):
    exact, once = PackVerifier({"n1": K1, "n2": K2}, require), PackVerifier({"n1": K1, "n2": K2}, require)
    for node, lane, payload in _cases():
        msg = decode_uplink(node, lane, payload, POL, time.time())
        assert _outcome(once.check_message, msg) == _outcome(exact.check, node, lane, payload), (node, lane, payload)
    assert once.counters == exact.counters
    assert exact.counters["ok"] == 3 and exact.counters["bad_tag"] == 3


def test_an_authentic_uplink_is_not_parsed_again_in_pure_python(monkeypatch):
    calls = []
    monkeypatch.setattr(packauth.auth, "split_uplink", lambda p: calls.append(p) or auth.split_uplink(p))
    v = PackVerifier({"n1": K1})
    for n in (1, 20, 200):
        payload = auth.seal_pack(K1, "n1", "up", 7, _pack(n), 4)
        assert v.check_message(decode_uplink("n1", "up", payload, POL, time.time())) == 7
    assert calls == [] and v.counters["ok"] == 3


def test_pack_span_is_the_signed_pack_bytes_or_none_when_unsure():
    p = _pack()
    for seq, ep in ((1, 0), (23, 0), (24, 5), (300, 2 ** 30 - 1), (2 ** 40, 1)):
        for key in (K1, None):
            payload = auth.seal_pack(key, "n1", "up", seq, p, ep)
            tag = auth.split_uplink(payload)[2]
            assert pack_span(payload, tag, ep) == p == auth.split_uplink(payload)[1]
    good = auth.seal_pack(K1, "n1", "up", 5, p, 6)
    assert pack_span(good, auth.split_uplink(good)[2], 7) is None          # tail is not what the decode says
    assert pack_span(b"\xa0", None, 0) is None and pack_span(b"", None, 0) is None
