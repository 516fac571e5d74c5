"""Bytes per reading on the wire: naive JSON vs SenML-CBOR singles and packs.

Readings: temperature and humidity at 0.01 resolution, 1 s apart, one node;
values are float32 as a board's MicroPython produces them. The `up` payload is
`[first_seq, pack]` (README "Wire format").
"""

from __future__ import annotations

import argparse
import json
import math
import random
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fogline.shared import cbor, senml  # noqa: E402

T0 = 1_764_150_000
NODE = "node01"


def f32(x: float) -> float:
    """Round to what a float32 board holds."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def readings(n: int, seed: int) -> list[tuple[str, str, float, int]]:
    """n readings alternating temperature and humidity, realistic drift and noise."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        t = T0 + i // 2
        if i % 2 == 0:
            v = round(21.0 + 2.0 * math.sin(t / 3600) + rng.gauss(0, 0.05), 2)
            out.append(("temp", "Cel", v, t))
        else:
            v = round(48.0 - 5.0 * math.sin(t / 3600) + rng.gauss(0, 0.2), 2)
            out.append(("hum", "%RH", v, t))
    return out


def naive_json(recs) -> int:
    return sum(len(json.dumps({"node": NODE, "metric": n, "unit": u, "value": v, "ts": t},
                              separators=(",", ":")).encode()) for n, u, v, t in recs)


def senml_cbor(recs, per_msg: int) -> int:
    total = 0
    seq = 1
    for i in range(0, len(recs), per_msg):
        chunk = [(n, u, f32(v), t) for n, u, v, t in recs[i:i + per_msg]]
        total += len(cbor.dumps([seq, senml.build_pack(NODE + "/", chunk[0][3], chunk)]))
        seq += len(chunk)
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--readings", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="1,000 readings")
    a = ap.parse_args()
    n = 1000 if a.quick else a.readings
    recs = readings(n, a.seed)
    rows = {
        "json_single": naive_json(recs) / n,
        "senml_cbor_single": senml_cbor(recs, 1) / n,
        "senml_cbor_pack10": senml_cbor(recs, 10) / n,
        "senml_cbor_pack50": senml_cbor(recs, 50) / n,
    }
    print(f"{'encoding':<22}{'bytes/reading':>14}{'vs JSON':>9}")
    for k, v in rows.items():
        print(f"{k:<22}{v:>14.2f}{rows['json_single'] / v:>8.1f}x")
    print(json.dumps({"readings": n, **{k: round(v, 2) for k, v in rows.items()},
                      "goal_pack50_le_10": rows["senml_cbor_pack50"] <= 10}))


if __name__ == "__main__":
    main()
