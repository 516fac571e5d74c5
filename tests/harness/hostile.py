"""Hostile node traffic for fuzzing the gateway: generated CBOR of every major type and tag, deep and wide
nesting, shared-reference bombs, huge declared lengths, uplink- and state-shaped messages.

    python -m tests.harness.hostile PORT SITE COUNT [SEED]    # publishes COUNT messages (QoS 0, raw socket)

The last stdout line is JSON: messages per kind and bytes sent. `messages(rng, site, n)` yields
(topic, payload, kind) for use in-process; `fuzz_gateway()` runs them through a gateway (the fuzz test
and tools/bench/fuzz_ingest.py).
"""

from __future__ import annotations

import json
import random
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

REPO = Path(__file__).resolve().parents[2]
RSS_GROWTH_BOUND_MB = 150  # stated bound for the gateway's memory growth during a fuzz run

TAGS = (0, 1, 2, 3, 4, 5, 21, 22, 23, 24, 25, 28, 29, 30, 32, 35, 36, 37, 256, 258, 260, 261, 55799, 1000,
        0xFFFF, 0xFFFFFFFF, 2**64 - 1)
NODES = 20


def head(major: int, n: int, rng: random.Random | None = None) -> bytes:
    """A CBOR head; with rng sometimes in an overlong (non-minimal) form."""
    mt = major << 5
    widths = [w for w in (0, 1, 2, 4, 8) if (w == 0 and n < 24) or (w and n < 1 << (8 * w))]
    w = rng.choice(widths) if rng is not None else widths[0]
    if w == 0:
        return bytes([mt | n])
    return bytes([mt | {1: 24, 2: 25, 4: 26, 8: 27}[w]]) + n.to_bytes(w, "big")


def bomb(levels: int, width: int) -> bytes:
    """Shared-reference bomb: width**levels leaves in about 3*levels*width bytes."""
    b = bytearray(head(4, levels) + b"\xd8\x1c\x81\x01")
    for i in range(1, levels):
        ref = b"\xd8\x1d" + head(0, i - 1)
        b += b"\xd8\x1c" + head(4, width) + ref * width
    return bytes(b)


def item(rng: random.Random, depth: int = 0) -> bytes:
    """One random CBOR data item (well-formed or not)."""
    k = rng.randrange(16 if depth < 3 else 7)
    if k == 0:
        return head(0, rng.choice([0, 1, 23, 24, 255, 65535, 2**32 - 1, 2**64 - 1, rng.getrandbits(64)]), rng)
    if k == 1:
        return head(1, rng.getrandbits(rng.choice([3, 8, 16, 32, 64])), rng)
    if k == 2:
        data = rng.randbytes(rng.randrange(12))
        return head(2, len(data), rng) + data
    if k == 3:
        s = rng.choice([b"temp", b"n1/temp", b"\xff\xfe", b"\xed\xa0\x80", "\u00e9".encode(), b"x" * 40, b""])
        return head(3, len(s), rng) + s
    if k == 4:  # float16/32/64 incl. NaN and infinities
        v = rng.choice([0.0, -0.0, 1.5, 1e308, float("nan"), float("inf"), -float("inf"), rng.uniform(-1e9, 1e9)])
        return rng.choice([b"\xf9" + struct.pack(">e", v if abs(v) < 65000 or v != v else float("inf")),
                           b"\xfa" + struct.pack(">f", v if abs(v) < 3e38 or v != v else float("inf")),
                           b"\xfb" + struct.pack(">d", v)])
    if k == 5:  # simple values, break out of place, reserved infos
        return bytes([rng.choice([0xF4, 0xF5, 0xF6, 0xF7, 0xFF, 0xE0, 0xF0, 0x1C, 0x3D, 0x5E, 0x7F, 0x9F, 0xBF])])
    if k == 6:  # a huge declared length with (almost) nothing behind it
        return bytes([rng.choice([0x5B, 0x7B, 0x9B, 0xBB])]) + rng.getrandbits(64).to_bytes(8, "big") + b"\x00"
    if k == 7:
        return bomb(rng.randrange(2, 7), rng.randrange(2, 25))
    if k in (8, 9):  # arrays: definite, indefinite, wide
        n = rng.choice([0, 1, 3, 10, rng.randrange(2000)])
        kids = min(n, 6 if depth < 2 else 2)  # a few random children, the rest zeros: wide but small
        body = b"".join(item(rng, depth + 1) for _ in range(kids)) + b"\x00" * (n - kids)
        return (head(4, n, rng) + body) if rng.random() < 0.8 else (b"\x9f" + body + b"\xff")
    if k in (10, 11):  # maps: duplicate and non-text keys, odd lengths
        n = rng.choice([0, 1, 2, 5, 30]) if depth < 2 else rng.choice([0, 1, 2])
        body = b"".join((item(rng, depth + 1) if rng.random() < 0.3 else head(1, rng.randrange(8)))
                        + item(rng, depth + 1) for _ in range(n))
        return (head(5, n, rng) + body) if rng.random() < 0.8 else (b"\xbf" + body + b"\xff")
    if k == 12:  # deep nesting
        d = rng.choice([9, 20, 100, 1000])
        return (b"\x81" * d) + b"\x00"
    if k in (13, 14):
        return head(6, rng.choice(TAGS), rng) + item(rng, depth + 1)
    return rng.randbytes(rng.randrange(1, 30))  # noise


def uplink(rng: random.Random, node: str) -> bytes:
    """An uplink-shaped message: [first_seq, pack(, auth(, epoch))] with mutated SenML records."""
    recs = []
    for i in range(rng.randrange(0, 12)):
        rec = {}
        for label in rng.sample([-6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 42], rng.randrange(1, 5)):
            rec[label] = rng.choice([None, 1, -1, 2**63, 1.5, "Cel", f"{node}/temp", "bad name", b"\x00"])
        if i == 0 and rng.random() < 0.7:
            rec.update({-2: f"{node}/temp", -3: time.time() - rng.choice([10, 1e9, -1e6]), 2: rng.random()})
        body = b""
        for k, v in rec.items():
            body += (head(1, -1 - k) if k < 0 else head(0, k)) + (item(rng) if rng.random() < 0.15 else _enc(v))
        recs.append(head(5, len(rec)) + body)
    parts = [_enc(rng.choice([1, 5, 0, -1, 2**63, "1"])) if rng.random() < 0.9 else item(rng),
             head(4, len(recs)) + b"".join(recs)]
    if rng.random() < 0.3:
        parts.append(_enc(rng.choice([None, b"\x00" * 16, 5])))
        if rng.random() < 0.5:
            parts.append(_enc(rng.choice([0, 1, 2**30 - 1, 2**40, "e"])))
    return head(4, len(parts)) + b"".join(parts)


def state(rng: random.Random) -> bytes:
    """A state-shaped message: known keys with hostile values (big maps, tags, bombs, wrong types)."""
    keys = ["version", "fw", "board", "backlog", "dropped", "oldest", "link", "sensors", "config_rejected",
            "last_error", "online", "epoch", "heap_free", "power"]
    chosen = rng.sample(keys, rng.randrange(1, 6))
    body = b""
    for k in chosen:
        kb = k.encode()
        if rng.random() < 0.3:
            n = rng.choice([10, 500])
            v = head(5, n) + b"".join(_enc(f"l{i}") + _enc(i) for i in range(n))
        else:
            v = item(rng)
        body += head(3, len(kb)) + kb + v
    return head(5, len(chosen)) + body


def _enc(v: object) -> bytes:
    if v is None:
        return b"\xf6"
    if isinstance(v, bool):
        return b"\xf5" if v else b"\xf4"
    if isinstance(v, int):
        return head(0, v) if v >= 0 else head(1, -1 - v)
    if isinstance(v, float):
        return b"\xfb" + struct.pack(">d", v)
    if isinstance(v, str):
        b = v.encode()
        return head(3, len(b)) + b
    if isinstance(v, bytes):
        return head(2, len(v)) + v
    raise TypeError(type(v))


def messages(rng: random.Random, site: str, n: int) -> Iterator[tuple[str, bytes, str]]:
    """n hostile (topic, payload, kind) messages for nodes fz0..fz19 of site."""
    for _ in range(n):
        node = f"fz{rng.randrange(NODES)}"
        r = rng.random()
        if r < 0.35:
            yield f"fogline/{site}/{node}/{rng.choice(['up', 'alert'])}", uplink(rng, node), "uplink"
        elif r < 0.6:
            yield f"fogline/{site}/{node}/state", state(rng), "state"
        elif r < 0.95:
            kind = rng.choice(["up", "alert", "state"])
            yield f"fogline/{site}/{node}/{kind}", item(rng), "cbor"
        else:
            yield f"fogline/{site}/{node}/{rng.choice(['ack', 'config', 'x'])}", item(rng), "topic"


def _rl(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | (128 if n else 0))
        if not n:
            return bytes(out)


def publish_all(port: int, site: str, n: int, seed: int = 1) -> dict[str, int]:
    """Send n hostile messages as QoS 0 PUBLISH packets over one raw MQTT connection; counts per kind."""
    rng = random.Random(seed)
    s = socket.create_connection(("127.0.0.1", port))
    cid = f"hostile-{seed}".encode()
    var = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(cid).to_bytes(2, "big") + cid
    s.sendall(b"\x10" + _rl(len(var)) + var)
    if s.recv(4)[:2] != b"\x20\x02":
        raise RuntimeError("broker refused the connection")
    counts: dict[str, int] = {"bytes": 0}
    buf: list[bytes] = []
    for topic, data, kind in messages(rng, site, n):
        t = topic.encode()
        body = len(t).to_bytes(2, "big") + t + data
        buf.append(b"\x30" + _rl(len(body)) + body)
        counts[kind] = counts.get(kind, 0) + 1
        counts["bytes"] += len(data)
        if len(buf) >= 64:
            s.sendall(b"".join(buf))
            buf = []
    s.sendall(b"".join(buf) + b"\xe0\x00")
    s.close()
    return counts


def rss_kb() -> int:
    for ln in open("/proc/self/status"):
        if ln.startswith("VmRSS:"):
            return int(ln.split()[1])
    return 0


def fuzz_gateway(port: int, tmp_path: Any, n: int, seed: int = 1) -> dict[str, Any]:
    """Run n hostile messages through a gateway on port; returns the figures (ack latency after, RSS, ...)."""
    from tests.gateway.ingest_helpers import SITE, GatewayThread, SimNode, gw_config, wait_for
    cfg = gw_config(tmp_path, port, mqtt={"worker_process": False}, ingest={"max_devices": 100})
    g = GatewayThread(cfg).start()
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss_kb())
            stop.wait(0.1)
    try:
        good = SimNode(port, "good")
        good.up(1, [1.0])
        assert good.wait_ack("up", 1, 30), "good node not acked before the fuzz"
        base = rss_kb()
        th = threading.Thread(target=sample, daemon=True)
        th.start()
        t0 = time.monotonic()
        out = subprocess.run([sys.executable, "-m", "tests.harness.hostile", str(port), SITE, str(n), str(seed)],
                             cwd=REPO, capture_output=True, text=True, timeout=1800)
        assert out.returncode == 0, out.stderr
        sent = json.loads(out.stdout.strip().splitlines()[-1])
        m = g.gw.metrics
        # the gateway has taken in what the broker delivered once messages_in stops moving
        last = [-1.0]

        def settled() -> bool:
            cur = m.total("messages_in")
            done, last[0] = cur == last[0], cur
            return done
        wait_for(settled, timeout=600, step=1.0)
        t_sent = time.monotonic() - t0
        t1 = time.monotonic()
        good.up(2, [2.0, 3.0])
        acked = good.wait_ack("up", 3, timeout=120)
        latency = time.monotonic() - t1
        g.flush()
        stop.set()
        th.join(2)
        good.close()
        return {"messages": n, "sent": sent, "messages_in": m.total("messages_in"), "acked": acked,
                "ack_after_s": round(latency, 3), "seconds": round(t_sent, 1),
                "internal": m.get("dead_letters", reason="internal"),
                "dead_letters": {k[0][1]: v for k, v in m.counters.get("dead_letters", {}).items()},
                "rss_growth_mb": round((peak[0] - base) / 1024, 1), "rss_bound_mb": RSS_GROWTH_BOUND_MB}
    finally:
        stop.set()
        g.stop()



if __name__ == "__main__":
    a = sys.argv[1:]
    print(json.dumps(publish_all(int(a[0]), a[1], int(a[2]), int(a[3]) if len(a) > 3 else 1)), flush=True)
