"""Real power cuts: kill -9 a MicroPython process appending to FlashLog on a host-file flash image,
restart it, and check that every record it reported durable survived, intact and in seq order."""

from __future__ import annotations

import random
import subprocess
import time

from fogline.tools import hostemu

SCRIPT = r"""
import sys
import flashdev as fd
from firmware.flashlog import FlashLog
p = fd.PICO_W
dev = fd.FlashDev(p["block_count"], p["block_size"], path=sys.argv[1])
try:
    fd.mount(dev, "/flash", progsize=p["progsize"])
except OSError:
    fd.mount(dev, "/flash", progsize=p["progsize"], format=True)
log = FlashLog("/flash/log", capacity_bytes=64 * 1024, segment_bytes=2048, sync_every=4, sync_ms=50)

def body(lane, seq):
    return bytes((0x83, 0x1A, (seq >> 24) & 0xFF, (seq >> 16) & 0xFF, (seq >> 8) & 0xFF, seq & 0xFF,
                  0x61, 0x75 if lane == "up" else 0x61, 0x18, seq * 31 % 256))

# what survived the previous cut: contiguous, intact
for lane in ("up", "alert"):
    recs = log.pending(lane, 100000)
    exp = log.acked(lane) + 1
    for seq, b in recs:
        if seq != exp or b != body(lane, seq):
            print("BAD", lane, seq)
            sys.exit(1)
        exp += 1
print("R", log.durable_seq("up"), log.durable_seq("alert"), log.acked("up"), log.acked("alert"),
      log.stats()["torn_tail_skipped"])
i = 0
last = None
while True:
    i += 1
    lane = "alert" if i % 17 == 0 else "up"
    log.append(lane, body(lane, log.last_seq(lane) + 1), i)
    if i % 40 == 0:
        for ln in ("alert", "up"):
            got = log.pending(ln, 30)
            if got:
                log.ack_upto(ln, got[-1][0] - 5)
    d = (log.durable_seq("up"), log.durable_seq("alert"))
    if d != last:
        last = d
        print("D", d[0], d[1])
"""


def test_flashlog_survives_kill_9(tmp_path):
    img = tmp_path / "node.img"
    script = tmp_path / "killme.py"
    script.write_text(SCRIPT)
    rng = random.Random(7)
    promised = (0, 0)
    recovered = []
    margins = []
    for k in range(7):
        outp = tmp_path / f"run{k}.out"
        with open(outp, "w") as out_f:
            proc = subprocess.Popen(hostemu.mp_command(script, str(img)), env=hostemu.mp_env(),
                                    cwd=str(hostemu.REPO), stdout=out_f, stderr=subprocess.PIPE, text=True)
            t0 = time.monotonic()
            while "R " not in outp.read_text() and proc.poll() is None and time.monotonic() - t0 < 20:
                time.sleep(0.01)  # booted and recovered
            if k < 6:
                time.sleep(rng.uniform(0.02, 0.3))  # then cut somewhere in the append/flush/ack stream
            proc.kill()  # SIGKILL mid-write: the image keeps exactly the write() calls that happened
            _, err = proc.communicate(timeout=30)
        lines = outp.read_text().splitlines()
        r = [ln.split() for ln in lines if ln.startswith("R ")]
        assert r and not any(ln.startswith("BAD") for ln in lines) and "Traceback" not in err, \
            "\n".join(lines[-20:]) + err[-2000:]
        d_up, d_alert = int(r[0][1]), int(r[0][2])
        # every record reported durable before the kill is there after the restart
        assert d_up >= promised[0] and d_alert >= promised[1], (r[0], promised)
        recovered.append((d_up, d_alert))
        margins.append(d_up - promised[0])
        ds = [ln.split() for ln in lines if ln.startswith("D ") and len(ln.split()) == 3]
        if ds:
            promised = (int(ds[-1][1]), int(ds[-1][2]))
    assert recovered[-1][0] > 50, recovered  # progress across the cuts
    print("kill -9 cuts:", len(recovered) - 1, "recovered durable seqs:", recovered, "beyond promised:", margins)
