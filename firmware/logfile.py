"""FlashLog files: [seq, record] frame bodies, streaming frame reads, tail repair, state slots, recovery."""

import os
from shared import cbor, frame, epoch as _epoch

try:
    from micropython import const
except ImportError:  # CPython (tests, tools)
    def const(x):
        return x

_CHUNK = const(256)
LANES = ("up", "alert")
UP = const(0)
ALERT = const(1)
_PREFIX = "ua"


def seqhead(seq):
    """CBOR head of array(2) + uint seq: a stored frame body is seqhead(seq) + record (= [seq, record])."""
    if seq < 24:
        return bytes((0x82, seq))
    if seq < 0x100:
        return bytes((0x82, 0x18, seq))
    if seq < 0x10000:
        return bytes((0x82, 0x19, seq >> 8, seq & 0xFF))
    if seq < 0x100000000:
        return bytes((0x82, 0x1A, (seq >> 24) & 0xFF, (seq >> 16) & 0xFF, (seq >> 8) & 0xFF, seq & 0xFF))
    return b"\x82\x1b" + bytes((seq >> s) & 0xFF for s in (56, 48, 40, 32, 24, 16, 8, 0))


def split_record(sb):
    """(seq, offset of the record) of a stored frame body, or (-1, 0) if malformed."""
    n = len(sb)
    if n < 3 or sb[0] != 0x82:
        return -1, 0
    ai = sb[1]
    if ai < 24:
        return ai, 2
    w = 1 if ai == 0x18 else 2 if ai == 0x19 else 4 if ai == 0x1A else 8 if ai == 0x1B else 0
    if not w or n < 3 + w:
        return -1, 0
    v = 0
    for i in range(w):
        v = (v << 8) | sb[2 + i]
    return v, 2 + w


def next_frame(f, rbuf):
    """Next valid frame body from file f as a memoryview into rbuf; None at EOF or a torn/corrupt frame."""
    mv = memoryview(rbuf)
    if f.readinto(mv[:frame.HEADER]) != frame.HEADER:
        return None
    n = rbuf[0] | (rbuf[1] << 8)
    if n == 0 or n > len(rbuf) - frame.HEADER:
        return None
    if f.readinto(mv[frame.HEADER:frame.HEADER + n]) != n:
        return None
    for body in frame.Scanner(mv[:frame.HEADER + n]):
        return body
    return None


def scan(path, first, rbuf):
    """(last valid seq or 0, end of the valid prefix, file size) of a segment starting at seq first."""
    seq, off = first, 0
    with open(path, "rb") as f:
        while True:
            body = next_frame(f, rbuf)
            if body is None or split_record(body)[0] != seq:
                break
            off += frame.HEADER + len(body)
            seq += 1
        f.seek(0, 2)
        size = f.tell()
    return (seq - 1 if seq > first else 0), off, size


def truncate(path, size):
    """Keep the first size bytes: copy them to path.tmp and rename it over path (atomic on LittleFS)."""
    tmp = path + ".tmp"
    mv = memoryview(bytearray(_CHUNK))
    left = size
    with open(path, "rb") as src, open(tmp, "wb") as dst:
        while left:
            n = src.readinto(mv[:min(left, _CHUNK)])
            if not n:
                break
            dst.write(mv[:n])
            left -= n
    try:
        os.rename(tmp, path)
    except OSError:  # a filesystem whose rename will not replace (FAT): recover_tmp finishes a cut here
        os.remove(path)
        os.rename(tmp, path)


def recover_tmp(root, name):
    """Finish or discard a leftover name.tmp from an interrupted truncate."""
    tmp = root + "/" + name
    base = tmp[:-4]
    try:
        os.stat(base)
    except OSError:
        os.rename(tmp, base)  # the original was already removed: the copy is the segment
        return
    os.remove(tmp)


def load_state(root):
    """The newest valid state slot (dict with g, a, f, c) or None."""
    best = None
    for slot in (0, 1):
        try:
            with open("%s/s%d" % (root, slot), "rb") as f:
                data = f.read(1024)
            bodies, _, _ = frame.decode_all(data)
            st = cbor.loads(bodies[0]) if bodies else None
        except (OSError, ValueError):
            continue  # missing or corrupt slot: the other one wins
        if not isinstance(st, dict) or not isinstance(st.get("g"), int):
            continue
        a, fl, c = st.get("a"), st.get("f"), st.get("c")
        if isinstance(a, list) and isinstance(fl, list) and isinstance(c, dict) and len(a) == 2 == len(fl):
            if best is None or st["g"] > best["g"]:
                best = st
    return best


def save_state(root, gen, ack, floor, counters, epoch=0):
    """Write state generation gen into slot gen % 2 (the other slot keeps the previous one)."""
    st = {"g": gen, "a": ack, "f": floor, "c": counters}
    if epoch:
        st["e"] = epoch  # shared/epoch.py: absent on a log that predates epochs
    data = frame.encode(cbor.dumps(st))
    with open("%s/s%d" % (root, gen & 1), "wb") as f:
        f.write(data)


class Segments:
    """FlashLog's file bookkeeping: segment names and ends, deletion, state slots, crash recovery."""

    def _path(self, li, first):
        return "%s/%s%08x" % (self.root, _PREFIX[li], first)

    def _resync(self, li):
        # After a failed write the filesystem's view of that segment is suspect until a remount:
        # never rescan, cut or delete it (durable records are in it); write on in a fresh segment.
        # Anything of the failed write that did land stays behind the new segment's first seq.
        segs = self._segs[li]
        self._suspect[li] = False
        if segs and segs[-1] > self._durable[li]:
            return True  # that segment holds nothing durable: rewrite it from the start
        self._newseg[li] = True
        return False

    def _seg_end(self, li, i):
        segs = self._segs[li]
        if i + 1 < len(segs):
            return segs[i + 1] - 1
        if self._bufn[li] and not self._newseg[li]:
            return self._last[li]  # buffered records still go into this segment
        return self._durable[li]

    def _deletable(self, li):
        segs = self._segs[li]
        return bool(segs) and self._seg_end(li, 0) < max(self._ack[li] + 1, self._floor[li])

    def _delete_below(self, li):
        segs = self._segs[li]
        lim = max(self._ack[li] + 1, self._floor[li])
        while segs and self._seg_end(li, 0) < lim:
            self._remove_seg(li)

    def _remove_seg(self, li):
        first = self._segs[li].pop(0)
        self._sizes[li].pop(0)
        if not self._segs[li]:
            self._newseg[li] = True
        h = self._hint[li]
        if h and h[0] == first:
            self._hint[li] = None
        try:
            os.remove(self._path(li, first))
        except OSError:
            pass  # already gone (finished by an earlier boot)

    def _load_state(self):
        st = load_state(self.root)
        if not st:
            # A fresh log (flash erased, new board): its seqs restart, so it gets a new epoch at once.
            self.epoch = _epoch.fresh()
            self._dirty = True
        else:
            e = st.get("e", 0)
            self.epoch = e if _epoch.valid(e) else _epoch.fresh()
            self._gen = st["g"]
            self._ack = [int(st["a"][0]), int(st["a"][1])]
            self._ack_saved = list(self._ack)
            self._floor = [int(st["f"][0]), int(st["f"][1])]
            self._cnt = dict(st["c"])

    def _save_state(self):
        self._gen += 1
        save_state(self.root, self._gen, self._ack, self._floor, self._cnt, self.epoch)
        self._ack_saved = list(self._ack)
        self._dirty = False
        self._rt["state_writes"] += 1

    def _recover(self):
        for name in os.listdir(self.root):
            if name.endswith(".tmp"):
                recover_tmp(self.root, name)
        for name in os.listdir(self.root):
            if len(name) == 9 and name[0] in _PREFIX:
                try:
                    first = int(name[1:], 16)
                except ValueError:
                    continue
                self._segs[_PREFIX.index(name[0])].append(first)
        for li in (UP, ALERT):
            segs = self._segs[li]
            segs.sort()
            last = 0
            while segs:
                last = self._scan_tail(li, segs[-1])
                if last:
                    break
                os.remove(self._path(li, segs.pop()))  # nothing valid in it
            self._last[li] = self._durable[li] = max(last, self._ack[li], self._floor[li] - 1)
            self._sizes[li] = [os.stat(self._path(li, s))[6] for s in segs]
            if self._ack[li] > self._last[li]:
                self._ack[li] = self._last[li]
            self._delete_below(li)
        if self._dirty:
            self._save_state()

    def _scan_tail(self, li, first):
        # Last valid seq of a segment (0 if none); a torn or corrupt tail is cut off and counted.
        path = self._path(li, first)
        last, off, size = scan(path, first, self._rbuf)
        if off < size:
            self._count("torn_tail_skipped")
            if off:
                truncate(path, off)
        return last
