# FlashLog within a small board's heap: 64 KB (word-scaled, so 128 KiB on this 64-bit port), the
# Pico W's 848 KiB filesystem in a host file (the image itself is not on the heap).
import gc
import os
import flashdev as fd
from firmware.flashlog import FlashLog

MP_HEAPSIZE = "64wK"

# unique per run: colleagues run the suite on the same machine
_IMG = "/tmp/fogline_flashlog_memory_%s.img" % "".join("%02x" % b for b in os.urandom(4))


def test_flashlog_runs_in_64k_heap():
    try:
        os.remove(_IMG)
    except OSError:
        pass
    p = fd.PICO_W
    dev = fd.FlashDev(p["block_count"], p["block_size"], path=_IMG)
    fd.mount(dev, "/flash", progsize=p["progsize"], format=True)
    log = FlashLog("/flash/log", capacity_bytes=256 * 1024, segment_bytes=16 * 1024, sync_every=32, sync_ms=30000)
    body = b"\x84\x1a\x65\x80\x00\x00\x64temp\x61C\xfa\x41\xbc\x00\x00"
    gc.collect()
    base = gc.mem_alloc()
    peak = 0
    for i in range(3000):
        log.append("alert" if i % 500 == 7 else "up", body, i * 1000)
        if i % 50 == 49:
            for lane in ("alert", "up"):
                got = log.pending(lane, 25)
                if got:
                    log.ack_upto(lane, got[-1][0])
        if i % 100 == 0:
            peak = max(peak, gc.mem_alloc() - base)
            gc.collect()
    log.flush()
    assert log.last_seq("up") == 2994 and log.stats()["dropped_by_policy"] == 0
    print("heap in use above baseline: peak", peak, "bytes; free", gc.mem_free())
    fd.umount("/flash")
    dev.close()
    os.remove(_IMG)
