"""Simulated NOR flash block device for host emulation: wear counters and power-cut injection.

Implements MicroPython's extended block protocol (readblocks/writeblocks with an
offset, ioctl 1-6 including erase), so `vfs.VfsLfs2` mounts it exactly like a
board's flash.  Backed by a host file (persists between runs, and a kill -9 is a
real power cut) or by RAM.  Device methods never allocate: littlefs can call them
from a file finalizer while the GC heap is locked.
"""

import io
import vfs
from array import array

try:
    from micropython import const
except ImportError:  # pragma: no cover
    def const(x):
        return x

# Power-cut modes for cut_after(): what happens to op N+1 and everything after it.
CUT_FAIL = const(1)  # op not performed, reported as an I/O error (EIO)
CUT_TORN = const(2)  # op N+1 half performed (first half of a prog/erase), then I/O errors
CUT_LOST = const(3)  # ops N+1.. "succeed" but never reach the persisted image (lost write cache)

_EIO = const(-5)
_CHUNK = const(256)  # erase/fill granule: a board's flash driver is C and costs no heap, so keep ours small

# Real board parameters: the rp2 port formats with VfsLfs2(bdev, progsize=256) on 4 KiB blocks.
PICO_W = {"block_size": 4096, "block_count": 212, "progsize": 256}  # 848 KiB
PICO = {"block_size": 4096, "block_count": 352, "progsize": 256}  # 1408 KiB
ESP32 = {"block_size": 4096, "block_count": 512, "progsize": 32}  # ~2 MiB vfs partition


class FlashDev:
    """Block device over a host file (path) or RAM (path=None), with wear counters and power cuts."""

    def __init__(self, block_count, block_size=4096, path=None, store=None, progsize=256):
        self.progsize = progsize  # what mkfs()/mount() use unless told otherwise
        self.block_size = block_size
        self.block_count = block_count
        size = block_size * block_count
        if store is not None:  # a persisted RAM image handed over by power_cycle()
            self._store = store
        elif path is None:
            self._store = io.BytesIO(b"\xff" * size)  # erased flash
        else:
            try:
                f = open(path, "r+b")
            except OSError:
                f = open(path, "w+b")
            f.seek(0, 2)
            have = f.tell()
            if have < size:  # a fresh image is erased flash (0xFF)
                ff = b"\xff" * _CHUNK
                while have < size:
                    f.write(ff)
                    have += _CHUNK
            self._store = f
        self.path = path
        # A BytesIO copies its initial bytes on the first write; do it now, not with the heap locked.
        self._store.seek(0)
        self._one = bytearray(1)
        self._store.readinto(self._one)
        self._store.seek(0)
        self._store.write(self._one)
        self._live = self._store
        self._ff = b"\xff" * min(_CHUNK, block_size // 2)  # divides a half block (torn erase)
        self._blk = None  # a block-sized copy buffer, only for CUT_LOST
        self._shadow = None
        self.erases = array("I", [0] * block_count)
        self.progs = array("I", [0] * block_count)
        self.ops = 0  # program + erase ops so far
        self.prog_bytes = 0
        self.erase_ops = 0
        self.cut_at = -1  # ops that still complete before the cut; -1 = never
        self.cut_mode = 0
        self.cut = False  # power is off (after the cut op)
        self.raise_errors = False  # raise the pre-built OSError instead of returning -EIO
        self._exc = OSError(5)

    # --- power-cut control (called by tests, may allocate) ---
    def cut_after(self, n, mode=CUT_FAIL):
        """Let n more program/erase ops complete, then cut power in mode."""
        self.cut_at = self.ops + n
        self.cut_mode = mode
        if mode == CUT_LOST and self._blk is None:
            self._blk = bytearray(self.block_size)
        if mode == CUT_LOST and self._shadow is None:
            self._shadow = io.BytesIO(bytes(self.block_size * self.block_count))
            self._shadow.write(self._one)

    def power_cycle(self):
        """A fresh FlashDev over what was persisted when the power went (counters carried over)."""
        if self.path is not None:
            self._store.close()
            if self._shadow is not None:
                self._shadow = None
            dev = FlashDev(self.block_count, self.block_size, path=self.path, progsize=self.progsize)
        else:
            dev = FlashDev(self.block_count, self.block_size, store=self._store, progsize=self.progsize)
        dev.erases = self.erases
        dev.progs = self.progs
        dev.ops = self.ops
        dev.prog_bytes = self.prog_bytes
        dev.erase_ops = self.erase_ops
        # This object is now a powered-off chip: a stale VfsLfs2 (or its file finalizers) gets EIO.
        self.cut = True
        self.cut_mode = CUT_FAIL
        return dev

    def image(self):
        """The persisted image as bytes."""
        self._store.seek(0)
        return self._store.read(self.block_size * self.block_count)

    def save(self, path):
        """Write the persisted image to a host file (for littlefs-python)."""
        with open(path, "wb") as f:
            f.write(self.image())

    def close(self):
        if self.path is not None:
            self._store.close()

    # --- from here on: no allocation (may run with the heap locked) ---
    def _fail(self):
        if self.raise_errors:
            raise self._exc
        return _EIO

    def _go_lost(self):
        # Persisted image freezes here; the live view continues in RAM.
        sh = self._shadow
        st = self._store
        b = 0
        bs = self.block_size
        while b < self.block_count:
            st.seek(b * bs)
            st.readinto(self._blk)
            sh.seek(b * bs)
            sh.write(self._blk)
            b += 1
        self._live = sh

    def _gate(self):
        # 0: perform; 1: perform half then fail; 2: fail; 3: perform (lost mode)
        if self.cut:
            return 3 if self.cut_mode == CUT_LOST else 2
        if self.cut_at >= 0 and self.ops >= self.cut_at:
            self.cut = True
            if self.cut_mode == CUT_LOST:
                self._go_lost()
                return 3
            if self.cut_mode == CUT_TORN:
                return 1
            return 2
        return 0

    def readblocks(self, block, buf, offset=0):
        if self.cut and self.cut_mode != CUT_LOST:
            return self._fail()
        f = self._live
        f.seek(block * self.block_size + offset)
        f.readinto(buf)
        return 0

    def writeblocks(self, block, buf, offset=0):
        g = self._gate()
        if g == 2:
            return self._fail()
        self.ops += 1
        self.progs[block] += 1
        n = len(buf)
        self.prog_bytes += n
        f = self._live
        f.seek(block * self.block_size + offset)
        if g == 1:  # torn: only the first half of the bytes land
            one = self._one
            i = 0
            h = n >> 1
            while i < h:
                one[0] = buf[i]
                f.write(one)
                i += 1
            return self._fail()
        f.write(buf)
        return 0

    def ioctl(self, op, arg):
        if op == 4:
            return self.block_count
        if op == 5:
            return self.block_size
        if op == 6:
            g = self._gate()
            if g == 2:
                return self._fail()
            self.ops += 1
            self.erase_ops += 1
            self.erases[arg] += 1
            f = self._live
            f.seek(arg * self.block_size)
            ff = self._ff
            k = len(ff)
            n = self.block_size >> 1 if g == 1 else self.block_size
            done = 0
            while done < n:  # whole chunks: block sizes are multiples of _CHUNK
                f.write(ff)
                done += k
            if g == 1:  # torn: only the first half of the block was erased
                return self._fail()
            return 0
        return 0  # 1 init, 2 deinit, 3 sync

    # --- wear figures ---
    def wear(self):
        """(max erases of any block, mean erases per block, total erases, bytes programmed)."""
        mx = 0
        tot = 0
        for e in self.erases:
            tot += e
            if e > mx:
                mx = e
        return mx, tot / self.block_count, tot, self.prog_bytes


BOARDS = {"pico_w": PICO_W, "pico": PICO, "esp32": ESP32}


def for_board(board="pico_w", path=None):
    """A FlashDev with the geometry and progsize of a board's filesystem (RAM, or a host file)."""
    g = BOARDS[board]
    return FlashDev(g["block_count"], g["block_size"], path=path, progsize=g["progsize"])


def mkfs(dev, progsize=None):
    """Format dev with LittleFS v2 as the board's port does (rp2: progsize=256)."""
    vfs.VfsLfs2.mkfs(dev, progsize=progsize or getattr(dev, "progsize", 256))


def mount(dev, mountpoint="/flash", progsize=None, format=False):
    """Mount dev at mountpoint (formatting first if asked); returns the VfsLfs2 object."""
    progsize = progsize or getattr(dev, "progsize", 256)
    if format:
        mkfs(dev, progsize)
    fs = vfs.VfsLfs2(dev, progsize=progsize)
    vfs.mount(fs, mountpoint)
    return fs


def umount(mountpoint="/flash"):
    """Unmount, ignoring a mountpoint that is not mounted."""
    try:
        vfs.umount(mountpoint)
    except OSError:
        pass


def remount(dev, mountpoint="/flash", progsize=None):
    """After a power cut: drop the old mount and mount a fresh device object; returns the new dev."""
    umount(mountpoint)
    new = dev.power_cycle()
    mount(new, mountpoint, progsize)
    return new
