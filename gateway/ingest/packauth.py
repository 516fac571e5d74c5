"""Gateway check of up/alert authenticators (shared/auth.py) with per-node keys from `fogline provision`.

Use after `validate.decode_uplink` (which keeps the raw payload):

    verifier = PackVerifier.from_file("fogline-data/provision/gateway_keys.json")
    verifier.check_message(msg)                  # raises validate.Rejected("auth", detail)
    verifier.check(node, lane, payload)          # the same from raw bytes (re-parses them in pure Python)

`check_message` takes first_seq, tag and epoch from the gateway's one cbor2 decode and slices the
signed pack bytes out of the raw payload at the offsets those imply, instead of walking the payload
again with shared/auth's pure-Python reader (which the node side keeps).

Replays of a correctly signed pack are not caught here: they carry an old seq and the store's
per-(node, lane) high-water mark absorbs them as duplicates (reason `replayed_seq`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import cbor2

from fogline.gateway.ingest.validate import Rejected
from fogline.shared import auth

log = logging.getLogger(__name__)

OUTCOMES = ("ok", "unsigned_accepted", "missing_tag", "bad_tag", "unknown_node", "malformed")


class PackVerifier:
    """Checks pack tags against node keys; counts every outcome (see OUTCOMES)."""

    def __init__(self, keys: dict[str, bytes], require: bool = True):
        # require=False lets nodes without a key (or unsigned payloads of keyless nodes) through.
        self.keys = dict(keys)
        self.require = require
        self.counters: dict[str, int] = dict.fromkeys(OUTCOMES, 0)

    @classmethod
    def from_file(cls, path: str | Path, require: bool = True) -> "PackVerifier":
        """Load gateway_keys.json (written by `fogline provision`)."""
        from fogline.gateway.ops.provision import load_keys

        return cls({n: k.auth_key for n, k in load_keys(path).items()}, require)

    def _refuse(self, outcome: str, node: str, detail: str) -> Rejected:
        self.counters[outcome] += 1
        log.warning("event=auth_refused node=%s outcome=%s detail=%s", node, outcome, detail)
        return Rejected("auth", f"{outcome}: {detail}")

    def check(self, node: str, lane: str, payload: bytes) -> int:
        """first_seq of an authentic payload; Rejected('auth') if it is not."""
        try:
            first_seq, pack, tag, ep = auth.split_uplink(payload)
        except ValueError as e:
            raise self._refuse("malformed", node, str(e)) from None
        return self._verify(node, lane, first_seq, pack, tag, ep)

    def check_message(self, msg: Any) -> int:
        """check() of a decoded `validate.Message` (first_seq, auth tag, epoch, raw), without re-parsing raw."""
        pack = pack_span(msg.raw, msg.auth, msg.epoch)
        key = self.keys.get(msg.node)
        if pack is None or (key is not None and msg.auth is not None and
                            not auth.verify_pack(key, msg.node, msg.lane, msg.first_seq, pack, msg.auth, msg.epoch)):
            # a payload seal_pack never writes, or a tag that does not match: the exact reader decides and counts
            return self.check(msg.node, msg.lane, msg.raw)
        return self._verify(msg.node, msg.lane, msg.first_seq, pack, msg.auth, msg.epoch, checked=True)

    def _verify(self, node: str, lane: str, first_seq: int, pack: bytes, tag: bytes | None, ep: int,
                checked: bool = False) -> int:
        key = self.keys.get(node)
        if key is None:
            if self.require:
                raise self._refuse("unknown_node", node, "no auth key for this node")
            self.counters["unsigned_accepted"] += 1
            return first_seq
        if tag is None:
            raise self._refuse("missing_tag", node, "payload has no authenticator")
        if not checked and not auth.verify_pack(key, node, lane, first_seq, pack, tag, ep):
            raise self._refuse("bad_tag", node, f"tag does not match ({lane} seq {first_seq})")
        self.counters["ok"] += 1
        return first_seq

    def seal_config(self, node: str, cfg: dict) -> bytes:
        """Signed config payload for a node (plain CBOR map if the node has no key)."""
        key = self.keys.get(node)
        if key is None:
            from fogline.shared import cbor

            return cbor.dumps(cfg)
        return auth.seal_config(key, cfg)


def pack_span(raw: bytes, tag: bytes | None, epoch: int) -> bytes | None:
    """The pack's bytes inside an up/alert payload whose fields decoded to (.., tag, epoch); None if unsure.

    The head (array byte, first_seq) is measured from its CBOR header; the tail must be exactly the
    shortest encoding of tag (and epoch), as shared/auth.seal_pack writes it."""
    n = raw[0] if raw else 0
    if n not in (0x82, 0x83, 0x84) or len(raw) < 3 or raw[1] >> 5:
        return None
    ai = raw[1] & 0x1F
    start = 2 if ai < 24 else 2 + (1 << (ai - 24)) if ai <= 27 else 0
    if not start:
        return None
    tail = b"" if n == 0x82 else cbor2.dumps(tag) if n == 0x83 else cbor2.dumps(tag) + cbor2.dumps(epoch)
    end = len(raw) - len(tail)
    if end <= start or raw[end:] != tail:
        return None
    return raw[start:end]
