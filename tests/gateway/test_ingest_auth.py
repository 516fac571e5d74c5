"""[ingest] auth_keys_file: packs must carry a valid fogline.shared.auth tag (keys from `fogline provision`)."""

from __future__ import annotations

import json
import time

from fogline.shared import auth, cbor, senml
from tests.gateway.ingest_helpers import GatewayThread, SimNode, dead_letters, gw_config, stored_seqs

KEY = bytes(range(16, 48))


def _signed(node: str, first: int, values: list[float], key: bytes | None, tamper: bool = False) -> bytes:
    t0 = time.time() - 60
    pack = cbor.dumps(senml.build_pack(node + "/", t0, [("temp", "Cel", v, t0 + i) for i, v in enumerate(values)]))
    data = auth.seal_pack(key, node, "up", first, pack)
    if tamper:  # change the value inside the signed pack: 3.0 (half float f9 4200) -> 3.5
        assert b"\xf9\x42\x00" in data
        data = data.replace(b"\xf9\x42\x00", b"\xf9\x43\x00")
    return data


def test_signed_packs_accepted_forged_unsigned_and_keyless_refused(mosquitto, tmp_path):
    keys = tmp_path / "gateway_keys.json"
    keys.write_text(json.dumps({"nodes": {"a1": {"auth_key": KEY.hex(), "bind_key": bytes(16).hex()}}}))
    cfg = gw_config(tmp_path, mosquitto.port, ingest={"auth_keys_file": str(keys)})
    with GatewayThread(cfg) as g:
        a1, x9 = SimNode(mosquitto.port, "a1"), SimNode(mosquitto.port, "x9")
        a1.send("up", _signed("a1", 1, [1.0, 2.0], KEY))
        a1.send("up", _signed("a1", 3, [3.0], KEY, tamper=True))      # altered on the way
        a1.send("up", _signed("a1", 3, [3.0], None))                  # unsigned from a keyed node
        a1.send("up", _signed("a1", 3, [3.0], bytes(32)))             # signed with another key
        x9.send("up", _signed("x9", 1, [1.0], None))                  # a node without a key
        a1.send("up", _signed("a1", 3, [3.5], KEY))
        assert a1.wait_ack("up", 3)
        g.flush()
        a1.close()
        x9.close()
    data = tmp_path / "data"
    assert stored_seqs(data, "a1") == [1, 2, 3] and stored_seqs(data, "x9") == []
    got = [(r, s, d.split(":")[0]) for r, s, d in dead_letters(data)]
    assert got == [("auth", "a1", "bad_tag"), ("auth", "a1", "missing_tag"), ("auth", "a1", "bad_tag"),
                   ("auth", "x9", "unknown_node")]
    assert g.gw.verifier.counters["ok"] == 2
