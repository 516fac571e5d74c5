"""Model signatures: Ed25519 over the manifest (which holds the model file's sha256), via `cryptography`.

A signed manifest carries `"signature": {"alg": "ed25519", "key": <key id>, "sig": <hex>}`; the signed
bytes are the manifest without "signature" as canonical JSON (sorted keys, no spaces). The gateway
installs a downloaded or pushed model only if one of its trusted public keys (`[inference] model_keys`,
PEM files) verifies it, unless `require_signed_models = false`. The model shipped with the package is
trusted as code. `fogline model keygen` / `fogline model sign` make and use a model-signing key.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fogline.gateway.inference.registry import ModelError


def signed_bytes(manifest: dict[str, Any]) -> bytes:
    """The bytes a model signature covers: the manifest minus "signature", canonical JSON."""
    body = {k: v for k, v in manifest.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def key_id(pub: Ed25519PublicKey) -> str:
    """Short id of a public key (first 8 bytes of the sha256 of its raw form, hex)."""
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def keygen(out_dir: str | Path, name: str = "model-signing") -> tuple[Path, Path]:
    """Write <name>.key (PEM, 0600) and <name>.pub (PEM) into out_dir; refuses to overwrite a key."""
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    priv_p, pub_p = d / f"{name}.key", d / f"{name}.pub"
    if priv_p.exists():
        raise ModelError(f"{priv_p}: exists (a new signing key would orphan every model signed with it)")
    k = Ed25519PrivateKey.generate()
    pem = k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(priv_p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    pub_p.write_bytes(k.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    return priv_p, pub_p


def load_private(path: str | Path) -> Ed25519PrivateKey:
    """An Ed25519 private key from a PEM file; ModelError otherwise."""
    try:
        k = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise ModelError(f"{path}: not a readable PEM private key ({e})") from None
    if not isinstance(k, Ed25519PrivateKey):
        raise ModelError(f"{path}: not an Ed25519 key")
    return k


def load_public(paths: list[str]) -> dict[str, Ed25519PublicKey]:
    """Trusted public keys by key id from PEM files; ModelError names a bad one."""
    out = {}
    for p in paths:
        try:
            k = serialization.load_pem_public_key(Path(p).read_bytes())
        except (OSError, ValueError, TypeError) as e:
            raise ModelError(f"{p}: not a readable PEM public key ({e})") from None
        if not isinstance(k, Ed25519PublicKey):
            raise ModelError(f"{p}: not an Ed25519 public key")
        out[key_id(k)] = k
    return out


def sign(manifest: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """The manifest with its signature."""
    sig = key.sign(signed_bytes(manifest))
    return dict(manifest, signature={"alg": "ed25519", "key": key_id(key.public_key()), "sig": sig.hex()})


def verify(manifest: dict[str, Any], trusted: dict[str, Ed25519PublicKey], require: bool = True) -> str | None:
    """The id of the key that signed manifest; None if unsigned and not required; ModelError otherwise."""
    s = manifest.get("signature")
    if s is None:
        if require:
            raise ModelError("model is not signed (sign it with `fogline model sign`, trust the key in "
                             "[inference] model_keys; or set require_signed_models = false)")
        return None
    if not isinstance(s, dict) or s.get("alg") != "ed25519" or not isinstance(s.get("sig"), str):
        raise ModelError("manifest.signature: expected {alg: ed25519, key, sig}")
    k = trusted.get(s.get("key"))  # type: ignore[arg-type]
    if k is None:
        raise ModelError(f"manifest.signature: key {str(s.get('key'))[:20]!r} is not a trusted model key")
    try:
        k.verify(bytes.fromhex(s["sig"]), signed_bytes(manifest))
    except (InvalidSignature, ValueError):
        raise ModelError("manifest.signature: does not verify (manifest or model changed after signing)") from None
    return str(s["key"])
