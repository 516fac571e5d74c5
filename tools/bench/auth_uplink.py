"""Gateway CPU per authenticated uplink: decode, then verify the tag from the raw payload or from the one decode.

Builds firmware-shaped sealed packs (shared/senml + shared/auth, as a node does) of --records readings and
times (process CPU, so a busy host inflates it less), per uplink: `decode_uplink` alone; decode + `PackVerifier.check` (re-parses the payload in pure
Python with shared/auth.split_uplink: the old gateway path); decode + `PackVerifier.check_message` (the
tag checked against the pack bytes sliced at the offsets the decode implies); `check_message` alone on
messages decoded beforehand (the tag's own cost, which decode noise would hide). Median of --repeat runs.
Last line: one JSON object.

usage: python tools/bench/auth_uplink.py [--records 10,50] [--n 2000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path[:0] = [str(Path(__file__).resolve().parents[2])]

from fogline.gateway.ingest.packauth import PackVerifier  # noqa: E402
from fogline.gateway.ingest.validate import Policy, decode_uplink  # noqa: E402
from fogline.shared import auth, cbor, senml  # noqa: E402

KEY = bytes(range(16))


def _uplinks(records: int, n: int, epoch: int) -> list[bytes]:
    t0 = int(time.time()) - 3600
    out = []
    for i in range(n):
        rows = [(("temperature", "humidity")[j % 2], ("Cel", "%RH")[j % 2], 20.0 + (i + j) % 50 / 8, t0 + i + j)
                for j in range(records)]
        pack = cbor.dumps(senml.build_pack("n1/", t0, rows))
        out.append(auth.seal_pack(KEY, "n1", "up", 1 + i * records, pack, epoch))
    return out


def _per_uplink_us(fn, payloads: list[bytes], repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        t = time.process_time()
        for p in payloads:
            fn(p)
        runs.append((time.process_time() - t) / len(payloads) * 1e6)
    return round(statistics.median(runs), 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", default="10,50", help="readings per pack, comma-separated")
    ap.add_argument("--n", type=int, default=2000, help="uplinks per run")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--epoch", type=int, default=7, help="node epoch in the payload (0: legacy 3-element)")
    a = ap.parse_args()
    pol = Policy(site="s1", units=frozenset({"Cel", "%RH"}), max_age_s=10 * 86400)
    v = PackVerifier({"n1": KEY})
    now = time.time()
    out: dict[str, dict[str, float]] = {}
    for records in (int(x) for x in a.records.split(",")):
        payloads = _uplinks(records, a.n, a.epoch)
        for p in payloads[:3]:  # both paths accept the same payloads
            m = decode_uplink("n1", "up", p, pol, now)
            assert v.check("n1", "up", p) == v.check_message(m) == m.first_seq

        def old(p: bytes) -> None:
            v.check("n1", "up", decode_uplink("n1", "up", p, pol, now).raw)

        def new(p: bytes) -> None:
            v.check_message(decode_uplink("n1", "up", p, pol, now))

        msgs = [decode_uplink("n1", "up", p, pol, now) for p in payloads]
        row = {"check_message_only_us": _per_uplink_us(v.check_message, msgs, a.repeat),
               "decode_us": _per_uplink_us(lambda p: decode_uplink("n1", "up", p, pol, now), payloads, a.repeat),
               "decode_and_split_uplink_us": _per_uplink_us(old, payloads, a.repeat),
               "decode_and_check_message_us": _per_uplink_us(new, payloads, a.repeat),
               "payload_bytes": round(statistics.mean(len(p) for p in payloads), 1)}
        out[f"records_{records}"] = row
        print(f"{records:3d} readings/pack ({row['payload_bytes']:.0f} B): decode {row['decode_us']} us, "
              f"+ split_uplink check {row['decode_and_split_uplink_us']} us, "
              f"+ check from the decode {row['decode_and_check_message_us']} us "
              f"(check alone {row['check_message_only_us']} us)")
    print(json.dumps({"n": a.n, "repeat": a.repeat, "epoch": a.epoch, **out}))


if __name__ == "__main__":
    main()
