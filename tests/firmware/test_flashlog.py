# FlashLog behaviour on real LittleFS (vfs.VfsLfs2 on the simulated rp2 flash): append, pending, ack,
# group commit, rotation, recovery, torn tails, state slots, capacity policy and counters.
import os
import flashdev as fd
from firmware.flashlog import FlashLog
from shared import cbor, frame

MP_HEAPSIZE = "4M"

_MNT = "/flash"
_ROOT = "/flash/log"


def rec(i):
    # a realistic [t, name, unit, value] body (value float32 1.5 + i)
    head = bytes((0x84, 0x1A, 0x65, 0x80, (i >> 8) & 0xFF, i & 0xFF, 0x64))
    return head + b"temp" + bytes((0x61, 0x43, 0x18, i & 0xFF))


def setup(blocks=64):
    fd.umount(_MNT)
    dev = fd.FlashDev(blocks)
    fd.mount(dev, _MNT, format=True)
    return dev


def reboot(dev):
    """Power cut (nothing unflushed survives) and a fresh device + mount."""
    return fd.remount(dev, _MNT)


def segs(prefix):
    return sorted(n for n in os.listdir(_ROOT) if n[0] == prefix and not n.endswith(".tmp"))


def test_append_pending_ack_lanes():
    setup()
    log = FlashLog(_ROOT, sync_every=1)
    for i in range(1, 11):
        assert log.append("up", rec(i), i) == i
    assert log.append("alert", rec(99), 11) == 1  # own seq space
    got = log.pending("up", 4)
    assert [s for s, _ in got] == [1, 2, 3, 4]
    assert got[2][1] == rec(3)
    assert log.depth("up") == 10 and log.depth("alert") == 1
    log.ack_upto("up", 6)
    assert [s for s, _ in log.pending("up", 100)] == [7, 8, 9, 10]
    log.ack_upto("up", 3)  # backwards: ignored
    assert log.acked("up") == 6
    log.ack_upto("up", 50)  # ahead of anything stored: clamped and counted
    assert log.acked("up") == 10 and log.stats()["ack_ahead"] == 1
    assert log.pending("up", 10) == [] and log.depth("up") == 0
    assert log.pending("alert", 10) == [(1, rec(99))]


def test_alerts_drain_first():
    setup()
    log = FlashLog(_ROOT, sync_every=1)
    assert log.next_lane() is None
    log.append("up", rec(1), 0)
    assert log.next_lane() == "up"
    log.append("alert", rec(2), 0)
    assert log.next_lane() == "alert"
    log.ack_upto("alert", 1)
    assert log.next_lane() == "up"


def test_group_commit_count_time_and_alerts():
    dev = setup()
    log = FlashLog(_ROOT, sync_every=5, sync_ms=10000)
    for i in range(4):
        log.append("up", rec(i), 100 * i)
    assert log.durable_seq("up") == 0 and log.pending("up", 10) == []  # never hand out non-durable
    assert log.backlog("up") == 4 and log.depth("up") == 0
    log.append("up", rec(4), 400)  # 5th record: count trigger
    assert log.durable_seq("up") == 5 and len(log.pending("up", 10)) == 5
    log.append("up", rec(5), 1000)
    log.poll(10999)
    assert log.durable_seq("up") == 5
    log.poll(11000)  # time trigger
    assert log.durable_seq("up") == 6
    log.append("up", rec(6), 12000)
    log.append("alert", rec(7), 12001)  # an alert is durable at once, and takes buffered readings along
    assert log.durable_seq("alert") == 1 and log.durable_seq("up") == 7
    log.append("up", rec(8), 12002)  # not durable: lost by the cut, and its seq is handed out again
    dev = reboot(dev)
    log = FlashLog(_ROOT, sync_every=5, sync_ms=10000)
    assert log.last_seq("up") == 7 and log.durable_seq("up") == 7
    assert [s for s, _ in log.pending("up", 10)] == list(range(1, 8))
    assert log.append("up", rec(9), 0) == 8


def test_rotation_and_delete_when_acked():
    dev = setup()
    log = FlashLog(_ROOT, segment_bytes=512, capacity_bytes=64 * 1024, sync_every=4)
    for i in range(100):
        log.append("up", rec(i), i)
    log.flush()
    names = segs("u")
    assert len(names) >= 5
    for n in names:
        assert os.stat(_ROOT + "/" + n)[6] <= 512
    assert [s for s, _ in log.pending("up", 1000)] == list(range(1, 101))
    log.ack_upto("up", 60)
    left = segs("u")
    assert len(left) < len(names) and int(left[0][1:], 16) <= 61
    assert log.pending("up", 1)[0][0] == 61
    log.ack_upto("up", 100)
    assert segs("u") == []  # fully acked: all gone (the cursor was persisted first)
    assert log.append("up", rec(1), 0) == 101
    log.flush()
    dev = reboot(dev)
    log = FlashLog(_ROOT, segment_bytes=512, capacity_bytes=64 * 1024, sync_every=4)
    assert log.acked("up") == 100 and log.last_seq("up") == 101
    assert log.pending("up", 10) == [(101, rec(1))]


def test_recovery_resumes_seq_and_cursor():
    dev = setup()
    log = FlashLog(_ROOT, sync_every=3)
    for i in range(30):
        log.append("up", rec(i), i)
    for i in range(4):
        log.append("alert", rec(i), i)
    log.ack_upto("up", 12)
    log.ack_upto("alert", 2)
    log.flush()
    dev = reboot(dev)
    log = FlashLog(_ROOT, sync_every=3)
    assert log.last_seq("up") == 30 and log.last_seq("alert") == 4
    assert log.acked("up") == 12 and log.acked("alert") == 2
    assert log.pending("up", 1) == [(13, rec(12))]
    assert log.append("up", rec(0), 0) == 31 and log.append("alert", rec(0), 0) == 5


def test_lazy_acks_with_ack_lag_and_checkpoint():
    dev = setup()
    log = FlashLog(_ROOT, sync_every=1, ack_lag=16)
    for i in range(40):
        log.append("up", rec(i), i)
    log.ack_upto("up", 10)
    log.flush()
    dev = reboot(dev)
    log = FlashLog(_ROOT, sync_every=1, ack_lag=16)
    # within the lag the ack is not persisted: the gateway sees resends, never a gap
    assert log.acked("up") == 0 and log.pending("up", 1)[0][0] == 1
    log.ack_upto("up", 20)  # beyond the lag: persisted by the next flush
    log.flush()
    dev = reboot(dev)
    log = FlashLog(_ROOT, sync_every=1, ack_lag=16)
    assert log.acked("up") == 20
    log.ack_upto("up", 25)
    log.checkpoint()  # before deep sleep: persist the cursor regardless of the lag
    dev = reboot(dev)
    log = FlashLog(_ROOT, sync_every=1, ack_lag=16)
    assert log.acked("up") == 25 and log.pending("up", 1)[0][0] == 26


def test_torn_tail_is_cut_and_next_append_clean():
    dev = setup()
    log = FlashLog(_ROOT, sync_every=1)
    for i in range(10):
        log.append("up", rec(i), i)
    name = _ROOT + "/" + segs("u")[-1]
    good = os.stat(name)[6]
    with open(name, "ab") as f:  # half a frame, as a torn write on a non-atomic filesystem leaves it
        f.write(b"\x10\x00\x01\x02\x03")
    dev = reboot(dev)
    log = FlashLog(_ROOT, sync_every=1)
    assert log.stats()["torn_tail_skipped"] == 1
    assert os.stat(name)[6] == good
    assert log.last_seq("up") == 10
    assert log.append("up", rec(77), 0) == 11
    got = log.pending("up", 100)
    assert [s for s, _ in got] == list(range(1, 12)) and got[-1][1] == rec(77)
    # a whole frame with a bad CRC is corrupt, never yielded
    with open(name, "ab") as f:
        f.write(b"\x03\x00\xde\xad\xbe\xef\x82\x0c\x01")
    dev = reboot(dev)
    log = FlashLog(_ROOT, sync_every=1)
    assert log.stats()["torn_tail_skipped"] == 2  # persisted counter
    assert log.last_seq("up") == 11 and len(log.pending("up", 100)) == 11


def test_empty_and_garbage_segments_are_recovered():
    dev = setup()
    log = FlashLog(_ROOT, sync_every=1)
    for i in range(5):
        log.append("up", rec(i), i)
    with open(_ROOT + "/u00000006", "wb") as f:  # a newer segment with nothing valid in it
        f.write(b"\xff\xff\xff")
    with open(_ROOT + "/u00000001.tmp", "wb") as f:  # a leftover of an interrupted rewrite
        f.write(b"x")
    dev = reboot(dev)
    log = FlashLog(_ROOT, sync_every=1)
    assert log.last_seq("up") == 5 and segs("u") == ["u00000001"]
    assert "u00000001.tmp" not in os.listdir(_ROOT)
    assert log.append("up", rec(5), 0) == 6


def test_state_slots_survive_a_corrupt_slot():
    dev = setup()
    log = FlashLog(_ROOT, sync_every=1, ack_lag=0)
    for i in range(20):
        log.append("up", rec(i), i)
    log.ack_upto("up", 5)
    log.flush()
    log.ack_upto("up", 9)
    log.flush()
    slots = [n for n in os.listdir(_ROOT) if n[0] == "s"]
    assert sorted(slots) == ["s0", "s1"]
    newest, gen = None, -1
    for n in slots:
        with open(_ROOT + "/" + n, "rb") as f:
            st = cbor.loads(frame.decode_all(f.read())[0][0])
        if st["g"] > gen:
            newest, gen, acked = n, st["g"], st["a"][0]
    assert acked == 9
    with open(_ROOT + "/" + newest, "wb") as f:  # torn cursor write
        f.write(b"\x20\x00garbage")
    dev = reboot(dev)
    log = FlashLog(_ROOT, sync_every=1)
    assert log.acked("up") == 5  # the older slot wins; acks re-arrive from the gateway
    assert log.pending("up", 1)[0][0] == 6


def test_capacity_drops_oldest_readings_never_alerts():
    dev = setup()
    kw = {"capacity_bytes": 1024, "segment_bytes": 256, "sync_every": 1}
    log = FlashLog(_ROOT, **kw)
    for i in range(3):
        log.append("alert", rec(i), i)
    for i in range(200):
        log.append("up", rec(i), i)
    assert log.used_bytes() <= 1024
    st = log.stats()
    dropped = st["dropped"]["up_capacity"]
    assert dropped > 100 and st["dropped"]["alert_capacity"] == 0 and st["dropped_by_policy"] == dropped
    up = log.pending("up", 1000)
    assert up[0][0] == dropped + 1 and up[-1][0] == 200  # the oldest went, the newest stayed
    assert [s for s, _ in log.pending("alert", 10)] == [1, 2, 3]
    dev = reboot(dev)
    log = FlashLog(_ROOT, **kw)
    assert log.stats()["dropped"]["up_capacity"] == dropped  # persisted by reason
    assert log.pending("up", 1)[0][0] == dropped + 1
    # alerts alone over the cap: then (and only then) the oldest alerts go, counted
    for i in range(100):
        log.append("alert", rec(i), i)
    st = log.stats()
    assert log.used_bytes() <= 1024 and st["dropped"]["alert_capacity"] > 0
    assert log.pending("up", 10) == []
    assert log.pending("alert", 1000)[-1][0] == 103


def test_acked_records_count_no_drop():
    setup()
    log = FlashLog(_ROOT, capacity_bytes=1024, segment_bytes=256, sync_every=1)
    for i in range(300):
        log.append("up", rec(i), i)
        log.ack_upto("up", log.durable_seq("up"))
    assert log.stats()["dropped_by_policy"] == 0 and log.used_bytes() <= 1024


def test_bad_input_is_rejected_and_counted():
    setup()
    log = FlashLog(_ROOT, max_record=64)
    for lane, body in (("up", b""), ("up", b"x" * 65), ("up", "text"), ("nope", b"x")):
        try:
            log.append(lane, body, 0)
        except ValueError:
            pass
        else:
            raise AssertionError("accepted bad append")
    assert log.stats()["rejected"] == 3  # the unknown lane is an API error, not data
    assert log.last_seq("up") == 0
    for kw in ({"segment_bytes": 100}, {"capacity_bytes": 1000, "segment_bytes": 1000}, {"sync_every": 0}):
        try:
            FlashLog(_ROOT, **kw)
        except ValueError:
            pass
        else:
            raise AssertionError("accepted bad config")


def test_pending_reads_bounded_and_resumes_from_hint():
    setup()
    log = FlashLog(_ROOT, segment_bytes=4096, capacity_bytes=64 * 1024, sync_every=10)
    for i in range(500):
        log.append("up", rec(i), i)
    log.flush()
    n = 0
    while True:
        got = log.pending("up", 25)
        if not got:
            break
        assert got[0][0] == n + 1 and len(got) <= 25
        for s, b in got:
            assert b == rec(s - 1)
        n = got[-1][0]
        log.ack_upto("up", n)
    assert n == 500 and log.depth("up") == 0


def test_full_filesystem_drops_oldest_readings_counted():
    setup(blocks=12)  # 48 KiB filesystem, a cap far above it: ENOSPC decides, same policy
    log = FlashLog(_ROOT, capacity_bytes=1024 * 1024, segment_bytes=2048, sync_every=8)
    for i in range(3):
        log.append("alert", rec(i), i)
    for i in range(3000):
        log.append("up", rec(i), i)
    log.flush()
    st = log.stats()
    assert st["dropped"]["up_nospace"] > 0 and st["dropped"]["alert_nospace"] == 0
    assert st["dropped_by_policy"] == st["dropped"]["up_nospace"]
    up = log.pending("up", 10000)
    assert up[-1][0] == 3000 and up[0][0] == st["dropped"]["up_nospace"] + 1
    assert [s for s, _ in log.pending("alert", 10)] == [1, 2, 3]


def test_pending_after_skips_in_flight():
    setup()
    log = FlashLog(_ROOT, sync_every=1)
    for i in range(20):
        log.append("up", rec(i), i)
    log.ack_upto("up", 4)
    assert [s for s, _ in log.pending("up", 3, after=10)] == [11, 12, 13]
    assert [s for s, _ in log.pending("up", 3, after=2)] == [5, 6, 7]  # never before the ack
    assert log.pending("up", 3, after=20) == []


def test_write_errors_keep_durable_records_and_bound_ram():
    dev = setup()
    log = FlashLog(_ROOT, sync_every=1, buffer_bytes=512)
    for i in range(10):
        log.append("up", rec(i), i)
    dev.cut_after(1, fd.CUT_FAIL)  # one op lands, then the flash errors
    failed = 0
    for i in range(10, 13):
        try:
            log.append("up", rec(i), i)
        except OSError:
            failed += 1
    d = log.durable_seq("up")
    assert failed and 10 <= d < 13 and log.last_seq("up") == 13  # failed records stay buffered
    assert log.pending("up", 100) == []  # unreadable flash serves nothing (and does not crash)
    # flash that stays dead: RAM use stays bounded, refused readings are counted
    refused = 0
    for i in range(200):
        try:
            log.append("up", rec(i), i)
        except OSError:
            refused += 1
    st = log.stats()
    assert refused == 200 and st["dropped"]["io_error"] > 150 and st["buffered"] <= 2 * 512 // 20 + 1
    # after a remount (the app reboots on a dead store) the log is consistent and writable
    dev.cut, dev.cut_at = False, -1
    dev = reboot(dev)
    log = FlashLog(_ROOT, sync_every=1, buffer_bytes=512)
    assert log.durable_seq("up") >= d
    s = log.append("up", rec(99), 0)
    assert s == log.durable_seq("up") and log.pending("up", 100)[-1] == (s, rec(99))
    got = log.pending("up", 100)
    assert [x for x, _ in got] == list(range(1, s + 1)) and all(b == rec(x - 1) for x, b in got[:d])


def test_stored_body_is_cbor_seq_record_pair():
    from firmware import logfile
    for n in (1, 23, 24, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, 2 ** 40 + 5):
        b = logfile.seqhead(n) + rec(7)
        assert logfile.split_record(b) == (n, len(b) - len(rec(7)))
        assert cbor.loads(b) == [n, cbor.loads(rec(7))]
    for bad in (b"", b"\x82", b"\x83\x01\x01", b"\x82\x1c\x00\x00", b"\x82\x19\x01"):
        assert logfile.split_record(bad) == (-1, 0)


def test_max_size_records_round_trip():
    dev = setup()
    log = FlashLog(_ROOT, max_record=300, sync_every=2)
    big = [bytes([i]) * 300 for i in range(5)]
    for b in big:
        log.append("up", b, 0)
    log.flush()
    dev = reboot(dev)
    log = FlashLog(_ROOT, max_record=300, sync_every=2)
    assert log.pending("up", 10) == [(i + 1, b) for i, b in enumerate(big)]


def test_epoch_is_drawn_for_a_fresh_log_and_kept_across_reboots():
    from shared import epoch
    dev = setup()
    log = FlashLog(_ROOT, sync_every=1)
    e1 = log.epoch
    assert 1 <= e1 <= epoch.MAX and log.stats()["epoch"] == e1
    for i in range(1, 6):
        log.append("up", rec(i), i)
    dev = reboot(dev)
    log = FlashLog(_ROOT, sync_every=1)
    assert log.epoch == e1 and log.last_seq("up") == 5  # a reboot is no reset
    seen = {e1}
    for _ in range(3):  # an erased flash starts over at seq 1 under a new epoch
        dev = setup()
        log = FlashLog(_ROOT, sync_every=1)
        assert log.last_seq("up") == 0 and log.epoch not in seen
        seen.add(log.epoch)


def test_log_written_before_epochs_keeps_epoch_0():
    # Upgrading the firmware on a log without an epoch must not look like a reset to the gateway.
    dev = setup()
    os.mkdir(_ROOT)
    with open(_ROOT + "/s1", "wb") as f:
        f.write(frame.encode(cbor.dumps({"g": 1, "a": [0, 0], "f": [1, 1], "c": {}})))
    log = FlashLog(_ROOT, sync_every=1)
    assert log.epoch == 0
    log.append("up", rec(1), 1)
    dev = reboot(dev)
    assert FlashLog(_ROOT, sync_every=1).epoch == 0
