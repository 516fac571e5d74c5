"""Gateway check of up/alert authenticators (shared/auth.py) with per-node keys from `fogline provision`.

Use after `validate.decode_uplink` (which keeps the raw payload):

    verifier = PackVerifier.from_file("fogline-data/provision/gateway_keys.json")
    verifier.check(msg.node, msg.lane, msg.raw)   # raises validate.Rejected("auth", detail)

Replays of a correctly signed pack are not caught here: they carry an old seq and the store's
per-(node, lane) high-water mark absorbs them as duplicates (reason `replayed_seq`).
"""

from __future__ import annotations

import logging
from pathlib import Path

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
        key = self.keys.get(node)
        try:
            first_seq, pack, tag, ep = auth.split_uplink(payload)
        except ValueError as e:
            raise self._refuse("malformed", node, str(e)) from None
        if key is None:
            if self.require:
                raise self._refuse("unknown_node", node, "no auth key for this node")
            self.counters["unsigned_accepted"] += 1
            return first_seq
        if tag is None:
            raise self._refuse("missing_tag", node, "payload has no authenticator")
        if not auth.verify_pack(key, node, lane, first_seq, pack, tag, ep):
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
