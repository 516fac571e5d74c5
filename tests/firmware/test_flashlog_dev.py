# The simulated flash under FlashLog: extended block protocol, wear counters, cut modes, no allocation.
import os
import micropython
import flashdev as fd

MP_HEAPSIZE = "4M"


def test_block_protocol_and_wear_counters():
    dev = fd.FlashDev(8)
    assert dev.ioctl(4, 0) == 8 and dev.ioctl(5, 0) == 4096 and dev.ioctl(1, 0) == 0
    assert dev.ioctl(6, 3) == 0 and dev.erases[3] == 1
    assert dev.writeblocks(3, b"\x01" * 256, 512) == 0
    buf = bytearray(4)
    dev.readblocks(3, buf, 510)
    assert buf == b"\xff\xff\x01\x01"
    assert dev.progs[3] == 1 and dev.prog_bytes == 256 and dev.ops == 2
    mx, mean, tot, pb = dev.wear()
    assert (mx, tot, pb) == (1, 1, 256) and mean == 1 / 8


def test_methods_do_not_allocate_with_heap_locked():
    dev = fd.FlashDev(8)
    buf = bytearray(256)
    data = b"\x5a" * 256
    micropython.heap_lock()
    try:
        dev.ioctl(6, 1)
        dev.writeblocks(1, data, 256)
        dev.readblocks(1, buf, 256)
        n = dev.ioctl(4, 0)
    finally:
        micropython.heap_unlock()
    assert buf == data and n == 8
    # the cut paths too: torn op then errors, with pre-built exceptions only
    dev.cut_after(0, fd.CUT_TORN)
    dev.raise_errors = True
    micropython.heap_lock()
    try:
        try:
            dev.writeblocks(2, data, 0)
            r = 0
        except OSError:
            r = 1
        try:
            dev.ioctl(6, 2)
        except OSError:
            r += 1
    finally:
        micropython.heap_unlock()
    assert r == 2
    img = dev.image()
    assert img[8192:8192 + 128] == data[:128] and img[8192 + 128:8192 + 256] == b"\xff" * 128


def test_cut_modes():
    data = b"\xaa" * 512
    for mode in (fd.CUT_FAIL, fd.CUT_TORN, fd.CUT_LOST):
        dev = fd.FlashDev(4)
        dev.writeblocks(2, data, 0)
        dev.cut_after(1, mode)
        assert dev.writeblocks(0, data, 0) == 0  # op 1 completes
        r = dev.writeblocks(1, data, 0)  # op 2: the cut
        r2 = dev.ioctl(6, 2)
        buf = bytearray(512)
        if mode == fd.CUT_LOST:
            assert r == 0 and r2 == 0  # "succeeds"
            assert dev.readblocks(1, buf, 0) == 0 and buf == data  # the live view still sees it
        else:
            assert r == -5 and r2 == -5 and dev.readblocks(1, buf, 0) == -5
        img = dev.power_cycle().image()
        assert img[:512] == data
        landed = img[4096:4096 + 512]
        if mode == fd.CUT_TORN:
            assert landed[:256] == data[:256] and landed[256:] == b"\xff" * 256
        else:
            assert landed == b"\xff" * 512
        assert img[8192:8192 + 512] == data  # the erase after the cut never landed


def test_file_backed_image_persists():
    path = "/tmp/fogline_flashdev_%s.img" % "".join("%02x" % b for b in os.urandom(4))
    try:
        os.remove(path)
    except OSError:
        pass
    dev = fd.FlashDev(16, path=path)
    fd.mount(dev, "/fx", format=True)
    with open("/fx/hello", "w") as f:
        f.write("world")
    fd.umount("/fx")
    dev.close()
    assert os.stat(path)[6] == 16 * 4096
    dev = fd.FlashDev(16, path=path)
    fd.mount(dev, "/fx")
    with open("/fx/hello") as f:
        assert f.read() == "world"
    fd.umount("/fx")
    dev.close()
    os.remove(path)


def test_board_geometry_helpers():
    dev = fd.for_board("pico_w")
    assert dev.block_count * dev.block_size == 848 * 1024 and dev.progsize == 256
    fs = fd.mount(dev, "/fb", format=True)
    st = os.statvfs("/fb")
    assert st[0] == 4096 and st[2] == 212  # block size and count as the rp2 port formats it
    with open("/fb/x", "wb") as f:
        f.write(b"y" * 5000)
    dev.cut_after(0, fd.CUT_LOST)
    with open("/fb/x", "wb") as f:
        f.write(b"z" * 100)
    dev = fd.remount(dev, "/fb")  # fresh device + VfsLfs2 over what was persisted
    assert dev.progsize == 256
    with open("/fb/x", "rb") as f:
        assert f.read() == b"y" * 5000
    fd.umount("/fb")
    assert fs is not None


def _leak_open_file(path):
    f = open(path, "wb")
    f.write(b"q" * 3000)  # dirty, never closed: the GC finalizer will close (and sync) it


def test_littlefs_finalizer_with_heap_locked_writes_through_device():
    import gc
    dev = fd.FlashDev(32)
    fd.mount(dev, "/fz", format=True)
    ops = dev.ops
    _leak_open_file("/fz/leak")
    for _ in range(3):
        gc.collect()  # runs the file finalizer, which calls writeblocks/ioctl with the heap locked
    assert dev.ops > ops
    fd.umount("/fz")
    fd.mount(dev.power_cycle(), "/fz2")  # fresh objects: only what was synced is there
    with open("/fz2/leak", "rb") as f:
        assert f.read() == b"q" * 3000  # so the finalizer's close reached the device
    fd.umount("/fz2")
