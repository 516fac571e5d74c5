# Seeded random FlashLog histories (appends, flushes, polls, acks, drains, capacity drops, clean
# reboots and power cuts in all three modes at random ops) checked against what was promised.
import io
import random
import flashdev as fd
from firmware.flashlog import FlashLog

MP_HEAPSIZE = "8M"
MP_TIMEOUT = 300

_BLOCKS = 24
_MNT = "/flash"
_ROOT = "/flash/log"
_LANES = ("up", "alert")


def body(lane, seq):
    return bytes((0x84, 0x1A, 0, 1, (seq >> 8) & 0xFF, seq & 0xFF, 0x61, 0x75 if lane == "up" else 0x61,
                  0x60, 0x18, seq * 13 % 256))


class World:
    def __init__(self, seed):
        random.seed(seed)
        self.kw = {"capacity_bytes": 3072, "segment_bytes": 512, "sync_every": random.randint(1, 6),
                   "sync_ms": 3000, "ack_lag": random.choice((0, 0, 5))}
        dev = fd.FlashDev(_BLOCKS)
        fd.mkfs(dev)
        self.dev = fd.FlashDev(_BLOCKS, store=io.BytesIO(dev.image()))
        fd.umount(_MNT)
        fd.mount(self.dev, _MNT)
        self.log = FlashLog(_ROOT, **self.kw)
        self.promised = {"up": 0, "alert": 0}
        self.sent = {"up": 0, "alert": 0}
        self.now = 0
        self.online = True
        self.reboots = 0
        self.cuts = 0

    def note(self):
        if not self.dev.cut:
            for ln in _LANES:
                self.promised[ln] = max(self.promised[ln], self.log.durable_seq(ln))

    def drain(self, ln, limit):
        recs = self.log.pending(ln, limit)
        prev = 0
        for seq, b in recs:
            if b != body(ln, seq) or (prev and seq != prev + 1):
                raise AssertionError("bad pending record %s %d" % (ln, seq))
            prev = seq
            if not self.dev.cut:
                self.sent[ln] = max(self.sent[ln], seq)
        return recs

    def step(self):
        op = random.randint(0, 99)
        self.now += random.randint(0, 1500)
        log = self.log
        if op < 60:
            ln = "alert" if op < 5 else "up"
            log.append(ln, body(ln, log.last_seq(ln) + 1), self.now)
        elif op < 65:
            log.flush(self.now)
        elif op < 72:
            log.poll(self.now)
        elif op < 87:
            ln = log.next_lane() if self.online else None
            if ln:
                recs = self.drain(ln, random.randint(1, 20))
                if recs and random.randint(0, 3):
                    log.ack_upto(ln, recs[random.randint(0, len(recs) - 1)][0])
        elif op < 89:
            if self.online:
                log.ack_upto("up", log.acked("up") + random.randint(-3, 40))  # bogus acks too
        elif op < 93:
            self.reopen()
        elif op < 97:
            self.dev.cut_after(random.randint(0, 12), random.randint(1, 3))
        else:
            self.online = not self.online  # uplink outages let the backlog hit the cap
        self.note()

    def reopen(self):
        self.reboots += 1
        if self.dev.cut:
            self.cuts += 1
        self.dev = fd.remount(self.dev, _MNT)
        self.log = log = FlashLog(_ROOT, **self.kw)
        st = log.stats()
        for ln in _LANES:
            if log.durable_seq(ln) < self.promised[ln]:
                raise AssertionError(ln + ": a durable record was lost")
            recs = self.drain(ln, 10000)
            expect = log.acked(ln) + 1
            if recs and recs[0][0] != expect:
                gap = recs[0][0] - expect
                if ln == "alert" or gap > st["dropped"]["up_capacity"]:
                    raise AssertionError(ln + ": unexplained gap")
            if (recs[-1][0] if recs else log.durable_seq(ln)) != log.durable_seq(ln) or (not recs and log.depth(ln)):
                raise AssertionError(ln + ": tail missing")
            if log.last_seq(ln) < max(self.promised[ln], self.sent[ln]):
                raise AssertionError(ln + ": seq went backwards")
            self.promised[ln] = log.durable_seq(ln)


def run(seed, steps):
    w = World(seed)
    for _ in range(steps):
        try:
            w.step()
        except OSError:
            w.reopen()  # the firmware saw the power cut
    w.reopen()
    if w.log.stats()["dropped"]["alert_capacity"]:
        raise AssertionError("alerts dropped")
    return w


def test_random_histories():
    reboots = cuts = dropped = 0
    for seed in range(1, 41):
        w = run(seed, 500)
        reboots += w.reboots
        cuts += w.cuts
        dropped += w.log.stats()["dropped"]["up_capacity"]
    print("random histories: 40 seeds x 500 steps,", reboots, "reboots,", cuts, "after power cuts,",
          dropped, "readings dropped by the cap (counted)")
    if cuts < 50 or not dropped:
        raise AssertionError("history mix too tame")
