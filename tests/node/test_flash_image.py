"""A FlashLog image written by the real firmware on MicroPython reads back in CPython with
littlefs-python (same Pico W geometry), and its frames decode with fogline.shared.frame + cbor2."""

from __future__ import annotations

import json

import cbor2
from littlefs import LittleFS

from fogline.shared import frame
from fogline.tools import hostemu

SCRIPT = r"""
import sys, struct
import flashdev as fd
from firmware.flashlog import FlashLog
p = fd.PICO_W
dev = fd.FlashDev(p["block_count"], p["block_size"], path=sys.argv[1])
fd.mount(dev, "/flash", progsize=p["progsize"], format=True)
log = FlashLog("/flash/log", capacity_bytes=128 * 1024, segment_bytes=1024, sync_every=8, sync_ms=10000)
from shared import cbor
for i in range(200):
    v = struct.unpack("f", struct.pack("f", 20.0 + i * 0.01))[0]  # float32 as on a board
    log.append("up", cbor.dumps([1700000000 + i, "temp", "Cel", v]), i * 1000)
    if i % 40 == 3:
        log.append("alert", cbor.dumps([1700000000 + i, "temp", "Cel", 99.5]), i * 1000)
log.ack_upto("up", 120)
log.flush()
# an unflushed tail: never durable, must not be on the image
log.append("up", cbor.dumps([1, "x", "", 0]), 0)
print("DURABLE", log.durable_seq("up"), log.durable_seq("alert"), log.acked("up"), log.acked("alert"))
fd.umount("/flash")
dev.close()
"""


def test_flashlog_image_reads_with_littlefs_python(tmp_path):
    img = tmp_path / "pico_w.img"
    script = tmp_path / "write_log.py"
    script.write_text(SCRIPT)
    proc = hostemu.run_mp(script, str(img), timeout=120, cwd=str(hostemu.REPO))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("DURABLE")][0]
    d_up, d_alert, a_up, a_alert = (int(x) for x in line.split()[1:])
    assert (d_up, d_alert, a_up, a_alert) == (200, 5, 120, 0)

    data = img.read_bytes()
    assert len(data) == 212 * 4096
    fs = LittleFS(block_size=4096, block_count=212, prog_size=256, mount=False)
    fs.context.buffer = bytearray(data)
    fs.mount()
    names = sorted(fs.listdir("/log"))
    assert {"s0", "s1"} & set(names)

    def lane(prefix: str) -> list[list]:
        out = []
        for n in sorted(x for x in names if x.startswith(prefix)):
            with fs.open("/log/" + n, "rb") as f:
                bodies, end, status = frame.decode_all(f.read())
            assert status == frame.OK
            out += [cbor2.loads(b) for b in bodies]
        return out

    ups = lane("u")
    seqs = [r[0] for r in ups]
    # fully acked segments are gone; what is left is contiguous and ends at the durable seq
    assert seqs == list(range(seqs[0], 201)) and seqs[0] <= 121
    for seq, (t, name, unit, value) in ups:
        assert (t, name, unit) == (1700000000 + seq - 1, "temp", "Cel")
        assert abs(value - (20.0 + (seq - 1) * 0.01)) < 1e-4
    alerts = lane("a")
    assert [r[0] for r in alerts] == [1, 2, 3, 4, 5]
    assert all(r[1][1:] == ["temp", "Cel", 99.5] for r in alerts)

    # the cursor slots decode too: the newest generation holds the acks
    states = []
    for n in ("s0", "s1"):
        if n in names:
            with fs.open("/log/" + n, "rb") as f:
                bodies, _, _ = frame.decode_all(f.read())
            states.append(cbor2.loads(bodies[0]))
    newest = max(states, key=lambda s: s["g"])
    assert newest["a"] == [120, 0]
    print(json.dumps({"segments": len(names) - len(states), "readings_on_image": len(ups), "alerts": len(alerts)}))
