"""Power-loss-safe store-and-forward log over plain file calls (LittleFS on the board).

FlashLog(root_dir, capacity_bytes, segment_bytes, sync_every, sync_ms): append(lane, body, now_ms)
-> seq; poll(now_ms); flush(); checkpoint(); pending(lane, limit, after=0) -> [(seq, body)];
next_lane(); ack_upto(lane, seq); depth/backlog/durable_seq/last_seq/acked(lane); stats(); epoch.

Two lanes, "up" (readings) and "alert", each with its own seq space starting at 1.
A lane is a run of segment files `<root>/u%08x` / `a%08x` named by their first seq;
each holds frames (shared/frame.py) whose body is the CBOR array `[seq, record]`.
Records are buffered in RAM and written by group commit (every `sync_every` records
or `sync_ms`, alerts at once); a segment write ends with close(), which is the
LittleFS commit, so a record is durable exactly when its flush returned.  Only
durable records are handed to the uplink (a non-durable seq may be reassigned
after a crash, so it must never leave the node).  Acks, drop floors and counters
live in two alternating CRC-framed state slots (`s0`, `s1`): a torn state write
leaves the other slot valid. So does the log's epoch (shared/epoch.py): a log that starts
without state (erased flash, new board) draws a fresh one, so the gateway can tell its
restarted seqs from resends.  Full (cap or ENOSPC): the oldest reading segment goes
first, alerts only when no readings are left; every dropped record is counted by reason.
"""

import os
from shared import frame
from firmware import logfile
from firmware.logfile import split_record, LANES, UP as _UP, ALERT as _AL

try:
    from micropython import const
except ImportError:  # CPython (tests, tools)
    def const(x):
        return x

try:
    from time import ticks_diff
except ImportError:  # CPython
    def ticks_diff(a, b):
        return a - b

_ENOSPC = const(28)
_DROPS = ("up_capacity", "alert_capacity", "up_nospace", "alert_nospace", "io_error")


def _lane(lane):
    if lane == "up":
        return _UP
    if lane == "alert":
        return _AL
    raise ValueError("flashlog: unknown lane")


class FlashLog(logfile.Segments):
    """Append-only two-lane log with acks, capacity policy, group commit and crash recovery."""

    def __init__(self, root_dir, capacity_bytes=256 * 1024, segment_bytes=16 * 1024,
                 sync_every=32, sync_ms=30000, max_record=512, buffer_bytes=4096, ack_lag=0):
        if segment_bytes < 256 or capacity_bytes < 2 * segment_bytes:
            raise ValueError("flashlog: need segment_bytes >= 256 and capacity_bytes >= 2 * segment_bytes")
        if sync_every < 1 or sync_ms < 0 or not 1 <= max_record <= 4096:
            raise ValueError("flashlog: need sync_every >= 1, sync_ms >= 0, 1 <= max_record <= 4096")
        self.root = root_dir.rstrip("/")
        self.capacity = capacity_bytes
        self.segment_bytes = segment_bytes
        self.sync_every = sync_every
        self.sync_ms = sync_ms
        self.max_record = max_record
        self.buffer_bytes = buffer_bytes
        self.ack_lag = ack_lag  # >0: acks persist lazily (less wear); a reboot then resends up to this many
        try:
            os.mkdir(self.root)
        except OSError:
            pass  # exists
        self._segs = [[], []]  # first seqs of the segment files, oldest first
        self._sizes = [[], []]  # their sizes in bytes
        self._buf = [bytearray(), bytearray()]  # framed records not yet written
        self._bufn = [0, 0]
        self._newseg = [False, False]  # next write opens a new segment
        self._suspect = [False, False]  # a write failed: rescan the tail before the next one
        self._last = [0, 0]  # last seq handed out
        self._durable = [0, 0]
        self._ack = [0, 0]
        self._ack_saved = [0, 0]
        self._floor = [1, 1]  # seqs below were dropped by policy (or acked)
        self._hint = [None, None]  # (segment first seq, file offset, seq at that offset)
        self._gen = 0
        self.epoch = 0  # shared/epoch.py: set by _load_state (a fresh log draws a new one)
        self._cnt = {}  # persisted counters
        self._rt = {"flushes": 0, "bytes_written": 0, "state_writes": 0, "read_errors": 0}
        self._dirty = False
        self._t0 = None  # now_ms of the oldest unflushed record
        self._rbuf = bytearray(frame.HEADER + 10 + max_record)  # frame header, [seq, head (<= 10 B), record
        self._load_state()
        self._recover()

    # ---------------------------------------------------------------- public API
    def append(self, lane, body, now_ms):
        """Buffer one record body; returns its seq. Durable once flushed (alerts: before this returns)."""
        li = _lane(lane)
        n = len(body) if isinstance(body, (bytes, bytearray, memoryview)) else 0
        if not 1 <= n <= self.max_record:
            self._count("rejected")
            raise ValueError("flashlog: body must be 1..max_record bytes")
        if len(self._buf[0]) + len(self._buf[1]) >= 2 * self.buffer_bytes:
            try:  # writes have been failing: bounded RAM, so this record is refused (and counted)
                self._flush(now_ms)
            except OSError:
                self._count("io_error")
                raise
        seq = self._last[li] + 1
        rec = frame.encode(logfile.seqhead(seq) + bytes(body))
        cur = len(self._buf[li])
        if not self._newseg[li] and self._segs[li]:
            cur += self._sizes[li][-1]
        if cur and cur + len(rec) > self.segment_bytes:
            self._flush(now_ms)  # seal the active segment; the new record opens the next one
            self._newseg[li] = True
        self._buf[li].extend(rec)
        self._bufn[li] += 1
        self._last[li] = seq
        if self._t0 is None:
            self._t0 = now_ms
        if (li == _AL or self._bufn[0] + self._bufn[1] >= self.sync_every
                or len(self._buf[0]) + len(self._buf[1]) >= self.buffer_bytes
                or ticks_diff(now_ms, self._t0) >= self.sync_ms):
            self._flush(now_ms)
        return seq

    def poll(self, now_ms):
        """Flush if the oldest buffered record has waited sync_ms (call from the main loop)."""
        if self._t0 is not None and ticks_diff(now_ms, self._t0) >= self.sync_ms:
            self._flush(now_ms)

    def flush(self, now_ms=None):
        """Durability point: everything appended so far survives a power cut once this returns."""
        self._flush(now_ms)

    def checkpoint(self, now_ms=None):
        """flush() and also persist the ack cursors now (before deep sleep or a planned reset)."""
        if self._ack != self._ack_saved:
            self._dirty = True
        self._flush(now_ms)

    def pending(self, lane, limit=32, after=0):
        """Up to limit durable, unacked (seq, body) of lane with seq > after, oldest first."""
        li = _lane(lane)
        out = []
        start = self._start(li)
        if after >= start:  # the uplink skips what it already has in flight
            start = after + 1
        segs = self._segs[li]
        end = self._durable[li]
        if start > end or limit <= 0:
            return out
        i = len(segs) - 1
        while i > 0 and segs[i] > start:
            i -= 1
        while i < len(segs) and len(out) < limit:
            hi = segs[i + 1] - 1 if i + 1 < len(segs) else end
            self._read_seg(li, segs[i], start, hi, limit, out)
            i += 1
        return out

    def next_lane(self):
        """Lane to drain next: "alert" before "up"; None when nothing durable is pending."""
        if self.depth("alert"):
            return "alert"
        if self.depth("up"):
            return "up"
        return None

    def ack_upto(self, lane, seq):
        """Gateway ack: everything <= seq in lane is safe off-node; acks never go backwards."""
        li = _lane(lane)
        if seq > self._durable[li]:
            self._count("ack_ahead")
            seq = self._durable[li]
        if seq <= self._ack[li]:
            return
        self._ack[li] = seq
        if seq - self._ack_saved[li] > self.ack_lag:
            self._dirty = True  # persisted at the next flush
        if self._deletable(li):
            self._save_state()  # the cursor must be durable before data goes
            self._delete_below(li)

    def depth(self, lane):
        """Durable records not yet acked in lane (what pending() can return)."""
        li = _lane(lane)
        return max(0, self._durable[li] - self._start(li) + 1)

    def backlog(self, lane):
        """All unacked records in lane, including ones still buffered in RAM."""
        li = _lane(lane)
        return max(0, self._last[li] - self._start(li) + 1)

    def durable_seq(self, lane):
        """Highest seq of lane such that every seq <= it survives a power cut."""
        return self._durable[_lane(lane)]

    def last_seq(self, lane):
        """Highest seq handed out in lane (0 = none yet)."""
        return self._last[_lane(lane)]

    def acked(self, lane):
        """Highest acked seq of lane."""
        return self._ack[_lane(lane)]

    def used_bytes(self):
        """Bytes in segment files plus buffered bytes (what the capacity cap counts)."""
        return sum(self._sizes[0]) + sum(self._sizes[1]) + len(self._buf[0]) + len(self._buf[1])

    def stats(self):
        """Counters: persisted ones (drops by reason, torn tails, rejects) and runtime ones."""
        c = self._cnt
        d = {}
        for k in _DROPS:
            d[k] = c.get(k, 0)
        s = {"dropped_by_policy": sum(d.values()), "dropped": d,
             "torn_tail_skipped": c.get("torn_tail_skipped", 0), "rejected": c.get("rejected", 0),
             "ack_ahead": c.get("ack_ahead", 0), "bytes_used": self.used_bytes(),
             "segments": len(self._segs[0]) + len(self._segs[1]),
             "buffered": self._bufn[0] + self._bufn[1], "epoch": self.epoch}
        for k in self._rt:
            s[k] = self._rt[k]
        for li in (_UP, _AL):
            s["last_" + LANES[li]] = self._last[li]
            s["durable_" + LANES[li]] = self._durable[li]
            s["acked_" + LANES[li]] = self._ack[li]
        return s

    # ---------------------------------------------------------------- internals
    def _count(self, key, n=1):
        self._cnt[key] = self._cnt.get(key, 0) + n
        self._dirty = True

    def _start(self, li):
        s = max(self._ack[li] + 1, self._floor[li])
        if self._segs[li] and self._segs[li][0] > s:
            s = self._segs[li][0]
        return s

    def _flush(self, now_ms):
        self._enforce_capacity()
        for li in (_AL, _UP):
            while self._bufn[li]:
                try:
                    self._write(li)
                except OSError as e:
                    # The filesystem is fuller than the cap assumed: same policy, oldest readings first.
                    if e.errno != _ENOSPC or not self._drop_oldest("_nospace"):
                        raise
        if self._dirty:
            self._save_state()
        self._t0 = None

    def _write(self, li):
        fresh = self._resync(li) if self._suspect[li] else False
        buf = self._buf[li]
        first = self._last[li] - self._bufn[li] + 1
        segs = self._segs[li]
        if self._newseg[li] or not segs:
            segs.append(first)
            self._sizes[li].append(0)
            self._newseg[li] = False
            fresh = True
        if fresh:
            self._sizes[li][-1] = 0
        try:
            # close() is the LittleFS commit: the durability point of these records
            with open(self._path(li, segs[-1]), "wb" if fresh else "ab") as f:
                f.write(buf)
        except OSError:
            self._suspect[li] = True
            raise
        self._sizes[li][-1] += len(buf)
        self._rt["flushes"] += 1
        self._rt["bytes_written"] += len(buf)
        self._durable[li] = self._last[li]
        self._buf[li] = bytearray()
        self._bufn[li] = 0

    def _enforce_capacity(self):
        # Over the cap: drop the oldest reading segment; alerts only when no readings are left.
        while self.used_bytes() > self.capacity and self._drop_oldest("_capacity"):
            pass

    def _drop_oldest(self, reason):
        li = _UP if self._segs[_UP] else _AL
        if not self._segs[li]:
            return False
        segs = self._segs[li]
        end = segs[1] - 1 if len(segs) > 1 else self._durable[li]  # buffered records are not in it
        lost = end - max(self._ack[li], self._floor[li] - 1)
        if lost > 0:
            key = LANES[li] + reason
            self._cnt[key] = self._cnt.get(key, 0) + lost
        self._floor[li] = max(self._floor[li], end + 1)
        self._save_state()  # floor and counters first: a crash then finishes the delete at boot
        self._remove_seg(li)
        return True

    def _read_seg(self, li, first, start, hi, limit, out):
        # Stream frames from one segment without loading it whole.
        h = self._hint[li]
        off, seq = 0, first
        if h and h[0] == first and h[2] <= start:
            off, seq = h[1], h[2]
        try:
            f = open(self._path(li, first), "rb")
        except OSError:
            self._rt["read_errors"] += 1
            return
        try:
            f.seek(off)
            while seq <= hi and len(out) < limit:
                body = logfile.next_frame(f, self._rbuf)
                if body is None:
                    self._rt["read_errors"] += 1
                    break
                s, b = split_record(body)
                if s != seq:
                    self._rt["read_errors"] += 1
                    break
                if seq >= start:
                    if not out:
                        self._hint[li] = (first, off, seq)
                    out.append((seq, bytes(body[b:])))
                off += frame.HEADER + len(body)
                seq += 1
        finally:
            f.close()
