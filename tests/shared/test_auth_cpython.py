# cpython-only
"""shared/auth.py cross-checked against CPython's hmac module and cbor2 (independent implementations)."""

import hashlib
import hmac

import cbor2
from hypothesis import given, settings, strategies as st

from shared import auth

NODE = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=64)


@settings(max_examples=200, deadline=None)
@given(key=st.binary(min_size=0, max_size=200), msg=st.binary(max_size=300))
def test_hmac_matches_cpython_hmac(key, msg):
    assert auth.hmac_sha256(key, msg) == hmac.new(key, msg, hashlib.sha256).digest()


@settings(max_examples=100, deadline=None)
@given(key=st.binary(min_size=1, max_size=80), node=NODE, lane=st.sampled_from(["up", "alert"]),
       seq=st.integers(min_value=0, max_value=2**64 - 1), pack=st.binary(max_size=2000))
def test_pack_tag_matches_independent_construction(key, node, lane, seq, pack):
    mac_input = cbor2.dumps([node, lane, seq, pack], canonical=True)
    want = hmac.new(key, mac_input, hashlib.sha256).digest()[:16]
    assert auth.sign_pack(key, node, lane, seq, pack) == want
    assert auth.verify_pack(key, node, lane, seq, pack, want)


@settings(max_examples=100, deadline=None)
@given(key=st.binary(min_size=1, max_size=80), cfg=st.binary(max_size=1000))
def test_config_tag_matches_independent_construction(key, cfg):
    want = hmac.new(key, cbor2.dumps(["fogline-config", cfg], canonical=True), hashlib.sha256).digest()[:16]
    assert auth.sign_config(key, cfg) == want


def test_gateway_can_check_a_sealed_payload_with_cbor2_only():
    # What the gateway's ingest does if it decodes with cbor2: the pack re-encodes canonically to the signed bytes.
    from shared import cbor, senml

    recs = [("t", "Cel", 20.125, 1700000000), ("t", "Cel", 0.1, 1700000002)]
    pack = cbor.dumps(senml.build_pack("n9/", 1700000000, recs))
    payload = auth.seal_pack(b"k" * 32, "n9", "alert", 11, pack)
    seq, p, tag = cbor2.loads(payload)
    assert seq == 11 and cbor2.dumps(p, canonical=True) == pack
    assert hmac.compare_digest(tag, hmac.new(b"k" * 32, cbor2.dumps(["n9", "alert", 11, pack], canonical=True),
                                             hashlib.sha256).digest()[:16])


@settings(max_examples=200, deadline=None)
@given(key=st.binary(min_size=0, max_size=200), parts=st.lists(st.binary(max_size=200), max_size=4))
def test_c_and_portable_hmac_give_identical_tags(key, parts):
    # CPython copies cached padded-key sha256 states; MicroPython streams the pads: same bytes.
    assert auth._COPY
    assert auth._hmac_parts(key, parts) == auth._hmac_portable(key, parts) == hmac.new(
        key, b"".join(parts), hashlib.sha256).digest()


def test_rfc4231_vectors_on_the_portable_path(monkeypatch):
    from test_auth import RFC4231

    monkeypatch.setattr(auth, "_COPY", False)
    monkeypatch.setattr(auth, "_c_compare", None)
    for key, data, want in RFC4231:
        assert auth.hmac_sha256(key, data).hex()[:len(want)] == want
    pack = b"\xa1\x00\x61x" * 40
    tag = auth.sign_pack(b"k" * 32, "n9", "up", 11, pack, 7)
    forged = tag[:-1] + bytes([tag[-1] ^ 1])
    for _ in range(2):  # portable path, then the C path: same tag, same verdicts
        assert auth.sign_pack(b"k" * 32, "n9", "up", 11, pack, 7) == tag
        assert auth.verify_pack(b"k" * 32, "n9", "up", 11, pack, tag, 7)
        assert not auth.verify_pack(b"k" * 32, "n9", "up", 11, pack, forged, 7)
        monkeypatch.undo()
