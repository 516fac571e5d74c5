# HMAC-SHA256 authenticators (shared/auth.py); runs on CPython and MicroPython.
from shared import auth, cbor, senml

MP_HEAPSIZE = "64wK"  # a 64 KiB heap on a 32-bit board

# RFC 4231 section 4: (key, data, HMAC-SHA-256); case 5 is the 128-bit truncation case.
_T7 = (b"This is a test using a larger than block-size key and a larger than block-size data."
       b" The key needs to be hashed before being used by the HMAC algorithm.")
RFC4231 = [
    (b"\x0b" * 20, b"Hi There",
     "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (b"Jefe", b"what do ya want for nothing?",
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    (b"\xaa" * 20, b"\xdd" * 50,
     "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
    (bytes(range(1, 26)), b"\xcd" * 50,
     "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
    (b"\x0c" * 20, b"Test With Truncation", "a3b6167473100ee06e0c796c2955552b"),
    (b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First",
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
    (b"\xaa" * 131, _T7,
     "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
]

KEY = bytes(range(32))
KEY2 = bytes(range(1, 33))


def _raises(fn, *args):
    try:
        fn(*args)
    except ValueError as e:
        return str(e)
    raise AssertionError("no ValueError from %s" % fn)


def _pack():
    recs = [("temp", "Cel", 21.5, 1700000000), ("temp", "Cel", 21.25, 1700000001), ("hum", "%RH", 40.0, 1700000001)]
    return cbor.dumps(senml.build_pack("n1/", 1700000000, recs))


def test_rfc4231_vectors():
    for key, data, want in RFC4231:
        got = auth.hmac_sha256(key, data)
        assert len(got) == 32
        assert got.hex()[:len(want)] == want, (key[:4], want)


def test_pack_tag_is_16_bytes_and_deterministic():
    p = _pack()
    t = auth.sign_pack(KEY, "n1", "up", 5, p)
    assert len(t) == auth.TAG_LEN == 16
    assert t == auth.sign_pack(KEY, "n1", "up", 5, p)
    assert auth.verify_pack(KEY, "n1", "up", 5, p, t)
    # The documented MAC input: canonical CBOR [node_id, lane, first_seq, pack_bytes].
    assert t == auth.hmac_sha256(KEY, cbor.dumps(["n1", "up", 5, p]))[:16]


def test_pack_tamper_detection():
    p = _pack()
    t = auth.sign_pack(KEY, "n1", "up", 5, p)
    assert not auth.verify_pack(KEY2, "n1", "up", 5, p, t)      # other key
    assert not auth.verify_pack(KEY, "n2", "up", 5, p, t)       # other node (topic spoof)
    assert not auth.verify_pack(KEY, "n1", "alert", 5, p, t)    # lane swap
    assert not auth.verify_pack(KEY, "n1", "up", 6, p, t)       # seq shift
    assert not auth.verify_pack(KEY, "n1", "up", 5, p, t[:15])  # short tag
    assert not auth.verify_pack(KEY, "n1", "up", 5, p, None)
    for i in range(len(p)):  # every single-bit flip of the pack is caught
        b = bytearray(p)
        b[i] ^= 1 << (i % 8)
        assert not auth.verify_pack(KEY, "n1", "up", 5, bytes(b), t), i
    for i in range(16):
        b = bytearray(t)
        b[i] ^= 0x80
        assert not auth.verify_pack(KEY, "n1", "up", 5, p, bytes(b)), i


def test_seal_and_open_pack_payload():
    p = _pack()
    payload = auth.seal_pack(KEY, "n1", "up", 7, p)
    obj = cbor.loads(payload)
    assert len(obj) == 3 and obj[0] == 7 and obj[1] == cbor.loads(p)
    assert obj[2] == auth.sign_pack(KEY, "n1", "up", 7, p)
    assert auth.split_pack(payload) == (7, p, obj[2])
    assert auth.open_pack(KEY, "n1", "up", payload) == (7, p)
    assert "bad tag" in _raises(auth.open_pack, KEY, "n2", "up", payload)
    assert "bad tag" in _raises(auth.open_pack, KEY2, "n1", "up", payload)
    assert "bad tag" in _raises(auth.open_pack, KEY, "n1", "alert", payload)
    # Unsigned payload: refused with a key, accepted without one.
    bare = auth.seal_pack(None, "n1", "up", 7, p)
    assert cbor.loads(bare) == [7, cbor.loads(p)]
    assert "missing tag" in _raises(auth.open_pack, KEY, "n1", "up", bare)
    assert auth.open_pack(None, "n1", "up", bare) == (7, p)
    # A payload built by a generic encoder with the same pack verifies too (no re-encoding involved).
    generic = cbor.dumps([7, cbor.loads(p), obj[2]])
    assert auth.open_pack(KEY, "n1", "up", generic) == (7, p)
    # Altered value inside the pack.
    forged = cbor.dumps([7, senml.build_pack("n1/", 1700000000, [("temp", "Cel", 99.0, 1700000000)]), obj[2]])
    assert "bad tag" in _raises(auth.open_pack, KEY, "n1", "up", forged)


def test_split_pack_malformed_inputs_raise_value_error():
    p = _pack()
    good = auth.seal_pack(KEY, "n1", "up", 3, p)
    bad = [b"", b"\x83", good[:-1], good + b"\x00", b"\x81\x01", b"\x84\x01\x02\x03\x04",
           cbor.dumps([-1, [], b"x" * 16]), cbor.dumps(["1", [], b"x" * 16]), cbor.dumps([1, [], "tag"]),
           b"\x9f\x01\x80\xff", "text", None]
    for i in range(len(good)):
        bad.append(good[:i])
    for b in bad:
        _raises(auth.split_pack, b)
    assert "tag must be 16" in _raises(auth.open_pack, KEY, "n1", "up", cbor.dumps([3, cbor.loads(p), b"x" * 8]))


def test_config_sign_verify_and_open():
    cfg = {"version": 4, "node": {"id": "n1", "site": "s"}, "sample_ms": 1000, "rules": [{"gt": 30.5}]}
    payload = auth.seal_config(KEY, cfg)
    env = cbor.loads(payload)
    assert sorted(env.keys()) == ["cfg", "tag"] and len(env["tag"]) == 16
    assert auth.verify_config(KEY, env["cfg"], env["tag"])
    assert not auth.verify_config(KEY2, env["cfg"], env["tag"])
    assert env["tag"] == auth.hmac_sha256(KEY, cbor.dumps(["fogline-config", env["cfg"]]))[:16]
    assert auth.open_config(KEY, payload) == cfg
    assert auth.open_config(KEY, payload, current_version=3) == cfg
    assert auth.open_config(KEY, payload, current_version=4) == cfg  # retained re-delivery
    assert "stale" in _raises(auth.open_config, KEY, payload, 5)
    assert "bad config tag" in _raises(auth.open_config, KEY2, payload)
    # Unsigned (plain map) refused when the node has a key, accepted when it has none.
    plain = cbor.dumps(cfg)
    assert "unsigned" in _raises(auth.open_config, KEY, plain)
    assert auth.open_config(None, plain) == cfg
    # Tampered cfg bytes inside a valid envelope.
    b = bytearray(env["cfg"])
    b[-1] ^= 1
    assert "bad config tag" in _raises(auth.open_config, KEY, cbor.dumps({"cfg": bytes(b), "tag": env["tag"]}))
    # A pack tag can never pass as a config tag (distinct MAC inputs).
    t = auth.sign_pack(KEY, "n1", "up", 1, env["cfg"])
    assert "bad config tag" in _raises(auth.open_config, KEY, cbor.dumps({"cfg": env["cfg"], "tag": t}))
    assert "version" in _raises(auth.open_config, KEY, auth.seal_config(KEY, {"node": {}}))
    _raises(auth.open_config, KEY, b"\xff")
    _raises(auth.open_config, KEY, cbor.dumps([1, 2]))


def test_key_from_hex():
    assert auth.key_from_hex(None) is None and auth.key_from_hex("") is None
    assert auth.key_from_hex("00" * 16) == bytes(16)
    assert auth.key_from_hex("0A" * 32) == b"\x0a" * 32
    for bad in ("0", "zz" * 16, "00" * 15, " f" * 16, "+1" * 16):
        _raises(auth.key_from_hex, bad)
    _raises(auth.sign_pack, b"", "n1", "up", 1, b"")
    _raises(auth.sign_pack, KEY, "n1", "state", 1, b"")
    _raises(auth.sign_config, None, b"")
