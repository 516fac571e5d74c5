"""Gateway pack authentication: spoofed, altered, unsigned and cross-node packs are refused and counted."""

from __future__ import annotations

import time

import cbor2
import pytest

from fogline.gateway.ops import provision as prov
from fogline.gateway.ingest.packauth import PackVerifier
from fogline.gateway.ingest.validate import Policy, Rejected, decode_uplink
from fogline.shared import auth, cbor, senml


@pytest.fixture
def keys(tmp_path):
    res = prov.provision(tmp_path, "s1", ["n1", "n2"])
    return prov.load_keys(res.files["gateway_keys"]), res.files["gateway_keys"]


def _payload(key, node="n1", lane="up", seq=1, value=21.5):
    now = int(time.time())
    pack = cbor.dumps(senml.build_pack(f"{node}/", now, [("temp", "Cel", value, now)]))
    return auth.seal_pack(key, node, lane, seq, pack)


def test_authentic_pack_passes_validation_and_check(keys):
    k, path = keys
    v = PackVerifier.from_file(path)
    p = _payload(k["n1"].auth_key, seq=5)
    msg = decode_uplink("n1", "up", p, Policy(site="s1", units=frozenset({"Cel"})), time.time())
    assert msg.first_seq == 5 and len(msg.auth) == 16
    assert v.check(msg.node, msg.lane, msg.raw) == 5
    assert v.counters["ok"] == 1


def test_spoofed_altered_unsigned_and_unknown_are_refused(keys):
    k, path = keys
    v = PackVerifier.from_file(path)
    good = _payload(k["n1"].auth_key)
    cases = {
        "bad_tag": [
            ("n2", "up", good),                                       # n1's pack replayed on n2's topic
            ("n1", "alert", good),                                    # lane swap
            ("n1", "up", _payload(k["n2"].auth_key)),                 # signed with another node's key
            ("n1", "up", _payload(bytes(32))),                        # attacker's key
        ],
        "missing_tag": [("n1", "up", _payload(None))],
        "unknown_node": [("n9", "up", _payload(bytes(32), node="n9"))],
        "malformed": [("n1", "up", b"\xa0"), ("n1", "up", good[:-3])],
    }
    seq, pack, tag = cbor2.loads(good)
    pack[0][2] = 99.0  # value altered in transit, same tag
    cases["bad_tag"].append(("n1", "up", cbor2.dumps([seq, pack, tag], canonical=True)))
    for outcome, items in cases.items():
        for node, lane, payload in items:
            with pytest.raises(Rejected) as ei:
                v.check(node, lane, payload)
            assert ei.value.reason == "auth" and outcome in ei.value.detail
        assert v.counters[outcome] == len(items), outcome
    assert v.counters["ok"] == 0


def test_optional_mode_accepts_keyless_nodes_only(keys):
    k, _ = keys
    v = PackVerifier({"n1": k["n1"].auth_key}, require=False)
    assert v.check("n7", "up", _payload(None, node="n7", seq=3)) == 3
    assert v.counters["unsigned_accepted"] == 1
    with pytest.raises(Rejected):
        v.check("n1", "up", _payload(None))  # a node with a key must sign


def test_config_push_sealed_for_the_node(keys):
    k, path = keys
    v = PackVerifier.from_file(path)
    cfg = {"version": 3, "sample_ms": 500}
    p = v.seal_config("n1", cfg)
    assert auth.open_config(k["n1"].auth_key, p, current_version=2) == cfg
    with pytest.raises(ValueError, match="bad config tag"):
        auth.open_config(k["n2"].auth_key, p)
    assert cbor2.loads(v.seal_config("zz", cfg)) == cfg
