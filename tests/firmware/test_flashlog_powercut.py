# Power-cut sweep: a small realistic FlashLog workload cut at EVERY program/erase op, in each mode.
# After each cut: fresh FlashDev + VfsLfs2 + FlashLog, then check durability, integrity, seq order, writability.
import io
import flashdev as fd
from firmware.flashlog import FlashLog

MP_HEAPSIZE = "8M"
MP_TIMEOUT = 300

_BLOCKS = 24  # 96 KiB image, rp2 geometry (4 KiB blocks, progsize 256)
_TICKS = 220
_MNT = "/flash"
_ROOT = "/flash/log"
_KW = {"capacity_bytes": 16 * 1024, "segment_bytes": 2048, "sync_every": 4, "sync_ms": 2000, "ack_lag": 8}
# Capacity variant: the uplink is offline for a while, so the cap drops the oldest readings.
_KW_CAP = {"capacity_bytes": 2048, "segment_bytes": 512, "sync_every": 8, "sync_ms": 5000}
_OFFLINE = (20, 150)


def body(lane, seq):
    # [t, name, unit, value] as the node writes it; content tied to (lane, seq) so any mix-up shows.
    name = b"temp" if lane == "up" else b"alrt"
    v = seq * 7 % 251
    return bytes((0x84, 0x1A, 0x65, 0x80, (seq >> 8) & 0xFF, seq & 0xFF, 0x64)) + name + bytes((0x61, 0x43, 0x18, v))


def base_image():
    dev = fd.FlashDev(_BLOCKS)
    fd.mkfs(dev)
    return dev.image()


def workload(log, dev, seen, offline=(0, 0)):
    # _TICKS ticks of 1 s: a reading per tick, an alert every 9th, uplink drains + acks every 10th.
    for i in range(_TICKS):
        now = i * 1000
        s = log.last_seq("up") + 1
        if log.append("up", body("up", s), now) != s:
            raise AssertionError("append returned an unexpected seq")
        if i % 9 == 4:
            a = log.last_seq("alert") + 1
            log.append("alert", body("alert", a), now)
            seen.note(log, dev)
        if i % 10 == 9 and not offline[0] <= i < offline[1]:
            for lane in ("alert", "up"):
                recs = log.pending(lane, 16)
                for seq, b in recs:
                    if b != body(lane, seq):
                        raise AssertionError("corrupt record before the cut")
                    seen.sent(lane, seq, dev)
                if recs:
                    log.ack_upto(lane, recs[-1][0] - 2)
        log.poll(now)
        seen.note(log, dev)
        if dev.cut and dev.ops > dev.cut_at + 40:
            return  # lost mode: the rest would vanish anyway
    log.flush(_TICKS * 1000)
    seen.note(log, dev)


class Seen:
    """What the node could have promised before the power went."""

    def __init__(self):
        self.durable = {"up": 0, "alert": 0}
        self.maxsent = {"up": 0, "alert": 0}

    def note(self, log, dev):
        if not dev.cut:  # only promises made while the power was on count
            for lane in ("up", "alert"):
                self.durable[lane] = max(self.durable[lane], log.durable_seq(lane))

    def sent(self, lane, seq, dev):
        if not dev.cut:
            self.maxsent[lane] = max(self.maxsent[lane], seq)


def fresh(img):
    store = io.BytesIO(img)
    dev = fd.FlashDev(_BLOCKS, store=store)
    fd.umount(_MNT)
    fd.mount(dev, _MNT)
    return dev


def total_ops(img, kw, offline):
    dev = fresh(img)
    log = FlashLog(_ROOT, **kw)
    start = dev.ops
    workload(log, dev, Seen(), offline)
    if offline[1] and not log.stats()["dropped"]["up_capacity"]:
        raise AssertionError("capacity workload dropped nothing")
    return dev.ops - start


def check_after_cut(dev, seen, n, mode, kw):
    where = " (cut after op %d, mode %d)" % (n, mode)
    dev = dev.power_cycle()
    fd.umount(_MNT)
    fd.mount(dev, _MNT)
    log = FlashLog(_ROOT, **kw)
    st = log.stats()
    if st["dropped"]["alert_capacity"]:
        raise AssertionError("alerts dropped while readings were there" + where)
    for lane in ("up", "alert"):
        d = seen.durable[lane]
        if log.durable_seq(lane) < d:
            raise AssertionError(lane + ": durable seq went backwards" + where)
        recs = log.pending(lane, 1000)
        expect = log.acked(lane) + 1
        if lane == "up" and recs and recs[0][0] > expect:
            # a gap at the head is allowed only as counted drops of the oldest readings
            if recs[0][0] - expect > st["dropped"]["up_capacity"]:
                raise AssertionError("up: unexplained gap before seq %d" % recs[0][0] + where)
            expect = recs[0][0]
        for seq, b in recs:
            if seq != expect:
                raise AssertionError(lane + ": gap or repeat at seq %d" % seq + where)
            if b != body(lane, seq):
                raise AssertionError(lane + ": corrupt record %d" % seq + where)
            expect += 1
        if expect - 1 < d:
            raise AssertionError(lane + ": durable records missing" + where)
        if log.acked(lane) > seen.maxsent[lane]:
            raise AssertionError(lane + ": ack beyond anything sent" + where)
        # Still writable, and a new seq never reuses one that may have left the node.
        s = log.append(lane, body(lane, log.last_seq(lane) + 1), 0)
        if s <= d or s <= seen.maxsent[lane]:
            raise AssertionError(lane + ": seq reused after the cut" + where)
    log.flush()
    for lane in ("up", "alert"):
        recs = log.pending(lane, 1000)
        if not recs or recs[-1][0] != log.last_seq(lane) or recs[-1][1] != body(lane, recs[-1][0]):
            raise AssertionError(lane + ": append after recovery not readable" + where)
    return log.stats()["torn_tail_skipped"]


def sweep(mode, part=0, parts=1, kw=_KW, offline=(0, 0), raising=False):
    img = base_image()
    ops = total_ops(img, kw, offline)
    tested = 0
    torn = 0
    for n in range(part, ops, parts):
        dev = fresh(img)
        log = FlashLog(_ROOT, **kw)
        dev.cut_after(n, mode)
        dev.raise_errors = raising  # the cut op raises OSError through littlefs instead of returning -EIO
        seen = Seen()
        try:
            workload(log, dev, seen, offline)
        except OSError:
            pass  # the power cut as the firmware sees it
        if not dev.cut:
            raise AssertionError("cut point %d never reached" % n)
        torn += check_after_cut(dev, seen, n, mode, kw)
        tested += 1
    print("power-cut sweep, mode", mode, "(capacity workload)" if offline[1] else "", ":", tested,
          "cut points of", ops, "ops; torn record tails repaired:", torn)
    if tested < ops // parts:
        raise AssertionError("too few cut points")


def test_powercut_fail_every_op():
    sweep(fd.CUT_FAIL)


def test_powercut_fail_raising_every_op():
    sweep(fd.CUT_FAIL, raising=True)


def test_powercut_torn_every_op():
    sweep(fd.CUT_TORN)


def test_powercut_lost_every_op():
    sweep(fd.CUT_LOST)


def test_powercut_capacity_fail_every_op():
    sweep(fd.CUT_FAIL, kw=_KW_CAP, offline=_OFFLINE)


def test_powercut_capacity_torn_every_op():
    sweep(fd.CUT_TORN, kw=_KW_CAP, offline=_OFFLINE)


def test_powercut_capacity_lost_every_op():
    sweep(fd.CUT_LOST, kw=_KW_CAP, offline=_OFFLINE)
