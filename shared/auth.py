"""HMAC-SHA256 authenticators for packs and config pushes; pure, runs on MicroPython and CPython.

API (keys are bytes; a site config carries them as hex, see key_from_hex):

  hmac_sha256(key, msg) -> 32 bytes                  RFC 2104 over hashlib.sha256 (no `hmac` on MicroPython);
                                                     where sha256 objects have .copy() (CPython) the padded-key
                                                     states are kept per key and copied (C work only)
  TAG_LEN = 16                                       tags are HMAC-SHA256 truncated to 16 bytes
  sign_pack(key, node_id, lane, first_seq, pack_bytes, epoch=0) -> 16-byte tag
      MAC input = canonical CBOR of [node_id, lane, first_seq, pack_bytes] (pack_bytes as a byte string),
      or [node_id, lane, first_seq, pack_bytes, epoch] for a node epoch != 0 (shared/epoch.py),
      i.e. the tag binds node id (take it from the topic, never from the payload), lane ("up"/"alert"),
      first seq and the exact pack bytes.
  verify_pack(key, node_id, lane, first_seq, pack_bytes, tag) -> bool   (constant-time compare)
  sign_config(key, cfg_bytes) -> 16-byte tag         MAC input = canonical CBOR of ["fogline-config", cfg_bytes]
  verify_config(key, cfg_bytes, tag) -> bool

Wire placement (what the node's uplink sends and the gateway's ingest and relay check):

  up / alert payload = CBOR array [first_seq, senml_pack, tag]; the 3rd element is the 16-byte tag
      (CBOR byte string) over the pack's exact encoded bytes as they sit in the payload, so nobody
      re-encodes anything (float32 boards would not reproduce a double-encoded pack).
      seal_pack(key, node_id, lane, first_seq, pack_bytes, epoch=0) -> payload   (key None -> no tag; an epoch
          != 0 makes it [first_seq, pack, tag or null, epoch])
      split_uplink(payload) -> (first_seq, pack_bytes, tag or None, epoch)   (no verification; ValueError if malformed)
      split_pack(payload) -> (first_seq, pack_bytes, tag or None)
      open_pack(key, node_id, lane, payload) -> (first_seq, pack_bytes)  (ValueError "auth: ..." when the tag
          is missing, not 16 bytes or wrong; key None = unauthenticated node allowed, tag ignored).
      Replays: a replayed pack verifies (same bytes) and must be refused by seq at the gateway
      (seq at or below the stored/acked high-water mark of that node and lane = duplicate, never re-stored).

  config payload (retained, on fogline/<site>/<node>/config) = CBOR map {"cfg": cfg_bytes, "tag": tag}
      where cfg_bytes is the CBOR encoding of the config map (signed with the target node's auth key).
      seal_config(key, cfg) -> payload              (cfg: a dict, encoded with shared.cbor, or CBOR bytes)
      open_config(key, payload, current_version=None) -> cfg dict; ValueError "auth: ..." when unsigned,
          badly signed, without an int "version", or version < current_version (stale). An equal version
          is returned (retained re-delivery); the caller treats it as already applied.
          key None (node without auth_key) also accepts a plain, unwrapped config map.

  ack payload (fogline/<site>/<node>/ack) = CBOR map {"up": n, "alert": m, "e": epoch, "tag": tag} for a
      node with a key: tag = sign_ack(key, node_id, epoch, up, alert), MAC input = canonical CBOR of
      ["fogline-ack", node_id, epoch, up, alert] (a lane absent from the ack is -1, epoch 0 for a legacy
      log). seal_ack(key, node_id, ack) adds the tag; open_ack(key, node_id, m) -> m or ValueError
      "auth: ..." (key None accepts any ack). A replayed ack is harmless: acks never go backwards.

  key_from_hex(s) -> bytes or None (None/"" -> None; ValueError on bad hex or fewer than 16 bytes).
"""

import hashlib

from . import cbor, epoch as _epoch

try:  # CPython: constant-time compare in C
    from hmac import compare_digest as _c_compare
except ImportError:  # MicroPython: no hmac module
    _c_compare = None

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

TAG_LEN = const(16)
_BLOCK = const(64)  # SHA-256 block size
_CONFIG_CTX = "fogline-config"
_LANES = ("up", "alert")
_HEX = "0123456789abcdefABCDEF"
_STATES_MAX = const(4096)  # keys whose padded states are kept (one per node on a gateway)
_STATES = {}  # key bytes -> (sha256 after ipad, sha256 after opad)
_COPY = hasattr(hashlib.sha256(), "copy")  # MicroPython's sha256 has no copy(): the portable path


def _key_block(key):
    if isinstance(key, str):
        key = key.encode()
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    return bytes(key) + bytes(_BLOCK - len(key))


def _pads(key):
    k = _key_block(key)
    return bytes(b ^ 0x36 for b in k), bytes(b ^ 0x5C for b in k)


def _hmac_parts(key, parts):
    if not _COPY:
        return _hmac_portable(key, parts)
    k = key.encode() if isinstance(key, str) else bytes(key)
    st = _STATES.get(k)
    if st is None:  # the pads' two compression blocks once per key, not per message (~17 -> ~1 us a tag)
        ipad, opad = _pads(k)
        st = (hashlib.sha256(ipad), hashlib.sha256(opad))
        if len(_STATES) >= _STATES_MAX:
            _STATES.clear()
        _STATES[k] = st
    inner = st[0].copy()
    for p in parts:
        inner.update(p)
    outer = st[1].copy()
    outer.update(inner.digest())
    return outer.digest()


def _hmac_portable(key, parts):
    # Stream the parts so a large pack is never copied into one MAC buffer (small heaps).
    ipad, opad = _pads(key)
    inner = hashlib.sha256(ipad)
    for p in parts:
        inner.update(p)
    outer = hashlib.sha256(opad)
    outer.update(inner.digest())
    return outer.digest()


def hmac_sha256(key, msg):
    """HMAC-SHA256 of msg under key (RFC 2104), 32 bytes."""
    return _hmac_parts(key, (msg,))


def _check_key(key):
    if not isinstance(key, (bytes, bytearray)) or not len(key):
        raise ValueError("auth: key must be non-empty bytes")


def sign_pack(key, node_id, lane, first_seq, pack_bytes, epoch=0):
    """16-byte tag over canonical CBOR [node_id, lane, first_seq, pack_bytes(, epoch if not 0)]."""
    _check_key(key)
    if lane not in _LANES:
        raise ValueError("auth: unknown lane %s" % lane)
    if not isinstance(first_seq, int) or first_seq < 0:
        raise ValueError("auth: first_seq must be an int >= 0")
    head = bytearray(b"\x85" if epoch else b"\x84")
    cbor.encode_into(head, node_id)
    cbor.encode_into(head, lane)
    cbor.encode_into(head, first_seq)
    cbor._head(head, 2, len(pack_bytes))
    if not epoch:
        return _hmac_parts(key, (bytes(head), pack_bytes))[:TAG_LEN]
    tail = bytearray()
    cbor.encode_into(tail, epoch)
    return _hmac_parts(key, (bytes(head), pack_bytes, bytes(tail)))[:TAG_LEN]


def equal(a, b):
    """Constant-time comparison of two byte strings (time depends only on length)."""
    if not isinstance(a, (bytes, bytearray)) or not isinstance(b, (bytes, bytearray)):
        return False
    if len(a) != len(b):
        return False
    if _c_compare is not None:
        return _c_compare(a, b)
    acc = 0
    for i in range(len(a)):
        acc |= a[i] ^ b[i]
    return acc == 0


def verify_pack(key, node_id, lane, first_seq, pack_bytes, tag, epoch=0):
    """True if tag authenticates this pack for node_id/lane/first_seq(/epoch)."""
    try:
        want = sign_pack(key, node_id, lane, first_seq, pack_bytes, epoch)
    except ValueError:
        return False
    return equal(want, tag)


def sign_config(key, cfg_bytes):
    """16-byte tag over canonical CBOR ["fogline-config", cfg_bytes]."""
    _check_key(key)
    head = bytearray(b"\x82")
    cbor.encode_into(head, _CONFIG_CTX)
    cbor._head(head, 2, len(cfg_bytes))
    return _hmac_parts(key, (bytes(head), cfg_bytes))[:TAG_LEN]


def verify_config(key, cfg_bytes, tag):
    """True if tag authenticates cfg_bytes."""
    try:
        want = sign_config(key, cfg_bytes)
    except ValueError:
        return False
    return equal(want, tag)


def seal_pack(key, node_id, lane, first_seq, pack_bytes, epoch=0):
    """up/alert payload [first_seq, pack(, tag)(, epoch)] built around the encoded pack (no tag if key is None).

    With an epoch (shared/epoch.py) the payload has 4 elements, the 3rd null when there is no key."""
    out = bytearray(b"\x84" if epoch else b"\x82" if key is None else b"\x83")
    cbor.encode_into(out, first_seq)
    out.extend(pack_bytes)
    if key is not None:
        cbor.encode_into(out, sign_pack(key, node_id, lane, first_seq, pack_bytes, epoch))
    elif epoch:
        out.append(0xF6)
    if epoch:
        cbor.encode_into(out, epoch)
    return bytes(out)


def split_uplink(payload):
    """(first_seq, pack_bytes, tag or None, epoch) of an up/alert payload, unverified; ValueError if malformed."""
    if not isinstance(payload, (bytes, bytearray, memoryview)) or len(payload) < 3:
        raise ValueError("auth: payload too short")
    n = payload[0]
    if n not in (0x82, 0x83, 0x84):
        raise ValueError("auth: payload must be a definite 2-, 3- or 4-element array")
    r = cbor._Reader(payload)
    r.i = 1
    try:
        first_seq = r.item(0)
        start = r.i
        r.item(0)
        end = r.i
        tag = r.item(0) if n != 0x82 else None
        ep = r.item(0) if n == 0x84 else 0
    except (IndexError, TypeError, KeyError, OverflowError, MemoryError, RuntimeError):
        raise ValueError("auth: malformed payload")
    if r.i != r.n:
        raise ValueError("auth: %d trailing bytes" % (r.n - r.i))
    if not isinstance(first_seq, int) or isinstance(first_seq, bool) or first_seq < 0:
        raise ValueError("auth: first_seq must be an int >= 0")
    if tag is not None and not isinstance(tag, bytes):
        raise ValueError("auth: tag must be a byte string")
    if not _epoch.valid(ep) or (n == 0x84 and not ep):
        raise ValueError("auth: epoch must be an int in 1..2**30-1")
    return first_seq, bytes(payload[start:end]), tag, ep


def split_pack(payload):
    """(first_seq, pack_bytes, tag or None) of an up/alert payload, without verifying; ValueError if malformed."""
    return split_uplink(payload)[:3]


def open_pack(key, node_id, lane, payload):
    """(first_seq, pack_bytes) after checking the tag; ValueError("auth: ...") if refused."""
    first_seq, pack_bytes, tag, ep = split_uplink(payload)
    if key is None:
        return first_seq, pack_bytes
    if tag is None:
        raise ValueError("auth: missing tag")
    if len(tag) != TAG_LEN:
        raise ValueError("auth: tag must be %d bytes" % TAG_LEN)
    if not verify_pack(key, node_id, lane, first_seq, pack_bytes, tag, ep):
        raise ValueError("auth: bad tag")
    return first_seq, pack_bytes


def seal_config(key, cfg):
    """Config payload {"cfg": cfg_bytes, "tag": tag}; cfg is a dict or its CBOR bytes."""
    cfg_bytes = cfg if isinstance(cfg, (bytes, bytearray)) else cbor.dumps(cfg)
    return cbor.dumps({"cfg": bytes(cfg_bytes), "tag": sign_config(key, cfg_bytes)})


def open_config(key, payload, current_version=None):
    """Verified config dict of a config payload; ValueError("auth: ...") if unsigned, forged or stale."""
    obj = cbor.loads(payload)
    if not isinstance(obj, dict):
        raise ValueError("auth: config payload must be a map")
    if "cfg" in obj and "tag" in obj and len(obj) == 2:
        cfg_bytes, tag = obj["cfg"], obj["tag"]
        if not isinstance(cfg_bytes, bytes):
            raise ValueError("auth: cfg must be a byte string")
        if key is not None and not verify_config(key, cfg_bytes, tag):
            raise ValueError("auth: bad config tag")
        cfg = cbor.loads(cfg_bytes)
    elif key is None:
        cfg = obj
    else:
        raise ValueError("auth: unsigned config")
    if not isinstance(cfg, dict):
        raise ValueError("auth: config must be a map")
    ver = cfg.get("version")
    if not isinstance(ver, int) or isinstance(ver, bool):
        raise ValueError("auth: config has no int version")
    if current_version is not None and ver < current_version:
        raise ValueError("auth: stale config version %d < %d" % (ver, current_version))
    return cfg


_ACK_CTX = "fogline-ack"


def sign_ack(key, node_id, epoch, up, alert):
    """16-byte tag over canonical CBOR ["fogline-ack", node_id, epoch, up, alert] (-1 for an absent lane)."""
    _check_key(key)
    msg = bytearray(b"\x85")
    for x in (_ACK_CTX, node_id, epoch, up, alert):
        cbor.encode_into(msg, x)
    return _hmac_parts(key, (bytes(msg),))[:TAG_LEN]


def _ack_fields(m):
    up, alert = m.get("up", -1), m.get("alert", -1)
    e = m.get("e", 0)
    for v in (up, alert, e):
        if not isinstance(v, int) or isinstance(v, bool):
            raise ValueError("auth: ack fields must be integers")
    return e, up, alert


def seal_ack(key, node_id, ack):
    """The ack map with its tag (unchanged if key is None)."""
    if key is None:
        return ack
    m = dict(ack)
    m["tag"] = sign_ack(key, node_id, *_ack_fields(m))
    return m


def open_ack(key, node_id, m):
    """m after checking its tag; ValueError("auth: ...") if unsigned or forged (key None: any ack)."""
    if key is None:
        return m
    tag = m.get("tag")
    if tag is None:
        raise ValueError("auth: unsigned ack")
    if not equal(sign_ack(key, node_id, *_ack_fields(m)), tag):
        raise ValueError("auth: bad ack tag")
    return m


def key_from_hex(s):
    """Key bytes from a hex string; None for None/empty; ValueError on bad hex or < 16 bytes."""
    if s is None or s == "":
        return None
    if not isinstance(s, str) or len(s) % 2:
        raise ValueError("auth: key must be an even-length hex string")
    for c in s:
        if c not in _HEX:
            raise ValueError("auth: key is not hex")
    k = bytes(int(s[i:i + 2], 16) for i in range(0, len(s), 2))
    if len(k) < 16:
        raise ValueError("auth: key shorter than 16 bytes")
    return k
