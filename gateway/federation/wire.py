"""Federation wire format: signed CBOR envelopes for round start, update, model and result messages.

Topics (under a prefix, default `fogline/fed`):
  <prefix>/<round>/start            coordinator -> gateways: base version + sha256 of the round
  <prefix>/<round>/update/<gw>      gateway -> coordinator: weight deltas + sample count + base version
  <prefix>/<round>/model            coordinator -> gateways: aggregated ONNX + manifest (new version)
  <prefix>/<round>/result/<gw>      gateway -> all: adopted or not, with both evaluation scores

Payload = CBOR map {"body": body_bytes, "by": signer_id, "tag": bytes}; body_bytes is the CBOR
map of the message; the tag covers "fogline-fed/<kind>" 0x00 body_bytes, so a message cannot be
forged, altered, or replayed as another kind. With Ed25519 keys (`[federation] signing_key`,
`peer_public_keys`) the tag is a 64-byte signature: every participant signs with its own private key
and holds only the others' public keys, so a member cannot forge the coordinator or another member.
With shared HMAC keys (legacy) tag = HMAC-SHA256(key, ...)[:16] (fogline.shared.auth) and whoever holds a
signer's key can sign as it. Deltas travel
as float32 (or float16) little-endian byte strings with their shapes: only weights and metadata, never readings.
"""

from __future__ import annotations

from typing import Any

from pathlib import Path

import cbor2
import numpy as np
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fogline.gateway.federation.config import UPDATE_DTYPES
from fogline.shared import auth

KINDS = ("start", "update", "model", "result")
MAX_PAYLOAD = 8 << 20


class FedRefused(ValueError):
    """A federation message was refused (malformed, unknown signer, bad tag, wrong kind...)."""


def topic(prefix: str, rnd: int, kind: str, gw: str | None = None) -> str:
    """Topic of a message kind in a round."""
    t = f"{prefix}/{rnd}/{kind}"
    return f"{t}/{gw}" if gw else t


def parse_topic(prefix: str, t: str) -> tuple[int, str, str | None] | None:
    """(round, kind, gw or None) of a federation topic, None if it is not one."""
    if not t.startswith(prefix + "/"):
        return None
    parts = t[len(prefix) + 1:].split("/")
    if len(parts) not in (2, 3) or not parts[0].isdigit() or parts[1] not in KINDS:
        return None
    return int(parts[0]), parts[1], parts[2] if len(parts) == 3 else None


Key = bytes | Ed25519PrivateKey | Ed25519PublicKey  # HMAC key, own signing key, or a peer's public key


def _signed(kind: str, body: bytes) -> bytes:
    return b"fogline-fed/" + kind.encode() + b"\x00" + body


def _mac(key: Key, kind: str, body: bytes) -> bytes:
    if isinstance(key, Ed25519PrivateKey):
        return key.sign(_signed(kind, body))
    if not isinstance(key, (bytes, bytearray)):
        raise ValueError("fedwire: a public key cannot sign")
    return auth.hmac_sha256(key, _signed(kind, body))[:auth.TAG_LEN]


def _verify(key: Key, kind: str, body: bytes, tag: bytes) -> bool:
    if isinstance(key, Ed25519PrivateKey):
        key = key.public_key()
    if isinstance(key, Ed25519PublicKey):
        try:
            key.verify(tag, _signed(kind, body))
            return True
        except InvalidSignature:
            return False
    return auth.equal(_mac(key, kind, body), tag)


def load_private(path: str | Path) -> Ed25519PrivateKey:
    """This participant's Ed25519 signing key (PEM, e.g. from `fogline federate --keygen`)."""
    k = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(k, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key")
    return k


def load_public(path: str | Path) -> Ed25519PublicKey:
    """A peer's Ed25519 public key (PEM)."""
    k = serialization.load_pem_public_key(Path(path).read_bytes())
    if not isinstance(k, Ed25519PublicKey):
        raise ValueError(f"{path}: not an Ed25519 public key")
    return k


def seal(key: Key, signer: str, kind: str, body: dict[str, Any]) -> bytes:
    """Signed payload of a message body (kind is stored in the body as "t")."""
    if kind not in KINDS:
        raise ValueError(f"fedwire: unknown kind {kind}")
    raw = cbor2.dumps({**body, "t": kind}, canonical=True)
    return cbor2.dumps({"body": raw, "by": signer, "tag": _mac(key, kind, raw)})


def open_(keys: dict[str, Key], payload: bytes, kind: str) -> tuple[str, dict[str, Any]]:
    """(signer, body) after checking size, shape, signer key and tag; FedRefused otherwise."""
    if not isinstance(payload, (bytes, bytearray)) or len(payload) > MAX_PAYLOAD:
        raise FedRefused("payload missing or too large")
    try:
        env = cbor2.loads(payload)
    except Exception as e:  # cbor2 raises several decode error types
        raise FedRefused(f"not CBOR ({type(e).__name__})") from None
    if not isinstance(env, dict) or set(env) != {"body", "by", "tag"}:
        raise FedRefused("envelope must be a map {body, by, tag}")
    raw, by, tag = env["body"], env["by"], env["tag"]
    if not isinstance(raw, bytes) or not isinstance(by, str) or not isinstance(tag, bytes):
        raise FedRefused("envelope field types")
    key = keys.get(by)
    if key is None:
        raise FedRefused(f"unknown signer {by!r}")
    if not _verify(key, kind, raw, tag):
        raise FedRefused(f"bad tag for {kind} from {by!r}")
    try:
        body = cbor2.loads(raw)
    except Exception:
        raise FedRefused("body not CBOR") from None
    if not isinstance(body, dict) or body.get("t") != kind:
        raise FedRefused(f"body is not a {kind} message")
    return by, body


DTYPES = UPDATE_DTYPES


def pack_tensors(ts: list[np.ndarray], dtype: str = "float32") -> dict[str, Any]:
    """{"shapes", "dtype", "data"}: little-endian float32 (or float16: half the bytes) per tensor."""
    code = DTYPES[dtype]
    if dtype == "float16":  # values beyond float16 range would become inf and be refused: clip instead
        ts = [np.clip(t, -65504.0, 65504.0) for t in ts]
    return {"shapes": [list(t.shape) for t in ts], "dtype": dtype, "data": [np.asarray(t, code).tobytes() for t in ts]}


def unpack_tensors(obj: Any) -> list[np.ndarray]:
    """Tensors of pack_tensors output; FedRefused when sizes and shapes disagree."""
    try:
        shapes, data = obj["shapes"], obj["data"]
        code = DTYPES.get(obj.get("dtype", "float32"))
        if code is None:
            raise FedRefused(f"tensors: unknown dtype {obj.get('dtype')!r}")
        if len(shapes) != len(data):
            raise FedRefused("tensors: shapes/data length mismatch")
        out = []
        for s, b in zip(shapes, data):
            if not isinstance(b, bytes) or any(not isinstance(d, int) or d < 0 for d in s):
                raise FedRefused("tensors: bad shape or data type")
            a = np.frombuffer(b, dtype=code)
            if a.size != int(np.prod(s)):
                raise FedRefused("tensors: data size does not match shape")
            out.append(a.reshape(s).astype(np.float64))
        return out
    except (KeyError, TypeError) as e:
        raise FedRefused(f"tensors: malformed ({e})") from None
