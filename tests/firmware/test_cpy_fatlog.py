# FlashLog on FAT (CircuitPython's CIRCUITPY filesystem): MicroPython's vfs.VfsFat is the same FatFs
# CircuitPython uses, here on 512-byte sectors of the simulated flash (tools/sim/flashdev.py).
# Power cut at every block op of a realistic workload, all three cut modes: no durable record lost,
# no corrupt record yielded, seqs stay in order, the log stays writable.
import vfs

import flashdev
from shared import cbor
from firmware.flashlog import FlashLog

MP_HEAPSIZE = "4M"
MP_TIMEOUT = 240
_MNT = "/cpyfat"


def _fresh():
    dev = flashdev.FlashDev(256, block_size=512)  # 128 KiB, 512-byte sectors like CIRCUITPY
    vfs.VfsFat.mkfs(dev)
    return dev


def _log():
    return FlashLog(_MNT + "/log", capacity_bytes=32 * 1024, segment_bytes=2048, sync_every=4, sync_ms=100000)


def _umount():
    try:
        vfs.umount(_MNT)
    except OSError:
        pass


def _workload(dev, durable):
    """Appends with group commit, an alert, segment rotation, an ack; durable[lane] = last seq made durable."""
    vfs.mount(vfs.VfsFat(dev), _MNT)
    try:
        lg = _log()
        for i in range(60):
            s = lg.append("up", cbor.dumps([i, "t", "Cel", 20.5]), i)
            if i == 30:
                a = lg.append("alert", cbor.dumps([i, "hot", "Cel", 31.0]), i)  # alerts flush at once
                if not dev.cut:
                    durable["alert"] = a
            if i % 4 == 3:
                lg.flush(i)
                if not dev.cut:
                    durable["up"] = s
            if i == 40:
                lg.ack_upto("up", 20)
        lg.flush(99)
        if not dev.cut:
            durable["up"] = 60
    finally:
        _umount()


def _check(dev, durable):
    new = dev.power_cycle()
    vfs.mount(vfs.VfsFat(new), _MNT)
    try:
        lg = _log()
        for lane in ("up", "alert"):
            got = lg.pending(lane, 1000)
            seqs = [s for s, _ in got]
            assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), (lane, seqs)
            for s, body in got:
                r = cbor.loads(bytes(body))
                if lane == "up":
                    assert r[0] == s - 1 and r[1] == "t", (s, r)
            first = seqs[0] if seqs else durable[lane] + 1
            # acked (<= 20 for up) may be gone; everything durable after that must be there
            for s in range(max(first, 21 if lane == "up" else 1), durable[lane] + 1):
                assert s in seqs, (lane, s, durable[lane], seqs[:3], seqs[-3:])
        nxt = lg.append("up", cbor.dumps([0, "x", None, 1.0]), 0)
        assert nxt > durable["up"]
        lg.flush(0)
    finally:
        _umount()


def test_flashlog_on_fat_roundtrip():
    dev = _fresh()
    d = {"up": 0, "alert": 0}
    _workload(dev, d)
    assert d == {"up": 60, "alert": 1}
    _check(dev, d)


def test_flashlog_on_fat_power_cut_sweep():
    base = _fresh()
    _workload(base, {"up": 0, "alert": 0})
    total = base.ops
    assert total > 20
    runs = 0
    for mode in (flashdev.CUT_FAIL, flashdev.CUT_TORN, flashdev.CUT_LOST):
        for n in range(total):
            dev = _fresh()
            dev.ops = 0
            dev.cut_after(n, mode)
            d = {"up": 0, "alert": 0}
            try:
                _workload(dev, d)
            except OSError:
                pass  # the cut surfaced as an I/O error
            _check(dev, d)
            runs += 1
    assert runs == 3 * total
