# cpython-only: property tests against cbor2, a corpus compared across runtimes, fuzzing on both.
"""Our codec against cbor2 (an independent implementation) and across CPython and MicroPython."""

from __future__ import annotations

import json
import math
import random
import struct

import cbor2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared import cbor
from fogline.tools import hostemu

finite = st.floats(allow_nan=False)
f32 = st.floats(width=32, allow_nan=False)
leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**64), 2**64 - 1), finite, f32,
                 st.text(max_size=20), st.binary(max_size=20))
key = st.one_of(st.integers(-(2**64), 2**64 - 1), st.text(max_size=8))
values = st.recursive(leaf, lambda kids: st.one_of(st.lists(kids, max_size=5),
                                                   st.dictionaries(key, kids, max_size=5)), max_leaves=20)


def same(a, b) -> bool:
    """Equality that also checks types and float signs (1 != 1.0 != True here)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_cbor2_decodes_what_we_encode(x):
    assert same(cbor2.loads(cbor.dumps(x)), x)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_bytes_equal_cbor2_canonical(x):
    assert cbor.dumps(x) == cbor2.dumps(x, canonical=True)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_we_decode_what_cbor2_encodes(x):
    assert same(cbor.loads(cbor2.dumps(x)), x)
    assert same(cbor.loads(cbor2.dumps(x, canonical=True)), x)


def test_nan_and_float32_pick_cbor2_canonical_widths():
    for v in (float("nan"), struct.unpack("<f", struct.pack("<f", 21.37))[0], 65504.0, 65505.0, 1e-7, 2.0**-24):
        assert cbor.dumps(v) == cbor2.dumps(v, canonical=True), v


def _mutations(rng: random.Random, seeds: list[bytes], n: int) -> list[bytes]:
    out = []
    for _ in range(n):
        b = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            op = rng.randrange(4)
            if op == 0 and b:
                b[rng.randrange(len(b))] = rng.randrange(256)
            elif op == 1 and b:
                del b[rng.randrange(len(b)):]
            elif op == 2:
                b.insert(rng.randrange(len(b) + 1), rng.randrange(256))
            elif b:
                i = rng.randrange(len(b))
                b[i] ^= 1 << rng.randrange(8)
        out.append(bytes(b))
    out += [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))) for _ in range(n // 2)]
    return out


def _random_value(rng: random.Random, depth: int = 0):
    kind = rng.randrange(10 if depth < 3 else 8)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.randint(-(2**64), 2**64 - 1) if rng.random() < 0.3 else rng.randint(-300, 70000)
    if kind == 2:
        return struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0]
    if kind == 3:
        return struct.unpack("<f", struct.pack("<I", rng.getrandbits(32)))[0]
    if kind == 4:  # halves, including subnormals
        return rng.choice([1, -1]) * rng.randrange(1, 2048) * 2.0 ** rng.randrange(-24, 6)
    if kind == 5:
        return "".join(chr(rng.choice([rng.randrange(32, 127), rng.randrange(0xA0, 0xD7FF),
                                        rng.randrange(0x10000, 0x10FFFF)])) for _ in range(rng.randrange(6)))
    if kind in (6, 7):
        return bytes(rng.randrange(256) for _ in range(rng.randrange(8)))
    if kind == 8:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(5))]
    return {rng.choice([rng.randint(-30, 30), "k%d" % rng.randrange(9)]): _random_value(rng, depth + 1)
            for _ in range(rng.randrange(5))}


def _corpus() -> list[bytes]:
    rng = random.Random(8949)
    seeds = []
    for _ in range(400):
        seeds.append(cbor2.dumps(_random_value(rng)))
    seeds += [cbor2.dumps([{-2: "n/t", -3: 1.7e9, 2: 21.5, 6: i} for i in range(3)])]
    return seeds + _mutations(rng, seeds, 1500)


def _results_here(corpus: list[bytes]) -> list[str]:
    out = []
    for b in corpus:
        try:
            out.append("ok " + cbor.dumps(cbor.loads(b)).hex())
        except ValueError:
            out.append("ValueError")
        except Exception as e:  # noqa: BLE001 - the property is "only ValueError"
            out.append("EXC " + type(e).__name__)
    return out


MP_SCRIPT = r"""
import sys
from binascii import hexlify, unhexlify
from shared import cbor
for line in open(sys.argv[1]):
    b = unhexlify(line.strip())
    try:
        print("ok " + hexlify(cbor.dumps(cbor.loads(b))).decode())
    except ValueError:
        print("ValueError")
    except Exception as e:
        print("EXC " + type(e).__name__)
"""


def test_corpus_and_fuzz_give_identical_results_on_both_runtimes(tmp_path, runtime, monkeypatch):
    import warnings
    warnings.filterwarnings("ignore")
    corpus = _corpus()
    (tmp_path / "corpus.hex").write_text("\n".join(b.hex() for b in corpus) + "\n")
    (tmp_path / "run.py").write_text(MP_SCRIPT)
    proc = hostemu.run_mp(tmp_path / "run.py", str(tmp_path / "corpus.hex"), timeout=300, runtime=runtime)
    assert proc.returncode == 0, proc.stderr
    mp = proc.stdout.splitlines()
    f32 = "True" in hostemu.run_mp("-c", "print(float(16777217) == 16777216.0)", runtime=runtime).stdout
    # CPython replays a single-precision runtime's float64 decision (shared/cbor.py docstring)
    monkeypatch.setattr(cbor, "F32", f32)
    cp = _results_here(corpus)
    assert len(mp) == len(cp) == len(corpus)
    crashes = [(b.hex(), r) for b, r in zip(corpus, mp + cp) if r.startswith("EXC")]
    assert not crashes, crashes[:5]
    diffs = [(b.hex(), c, m) for b, c, m in zip(corpus, cp, mp) if c != m]
    assert not diffs, diffs[:5]
    accepted = sum(r.startswith("ok") for r in cp)
    print(json.dumps({"corpus": len(corpus), "accepted": accepted, "rejected": len(corpus) - accepted}))
    assert 300 <= accepted < len(corpus)  # both valid and invalid inputs were exercised


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_only_raise_value_error(b):
    try:
        cbor.loads(b)
    except ValueError:
        pass
