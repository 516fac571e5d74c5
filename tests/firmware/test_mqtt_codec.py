# MQTT 3.1.1 packet codec (pure parts of the firmware client), on the MicroPython unix port.
from firmware import mqttpkt as m


def test_connect_packet_fields():
    p = m.connect_packet("n1", 30, True, "u", "pw", ("a/b", b"bye", 1, True))
    assert p[0] == 0x10 and p[1] == len(p) - 2
    assert p[2:10] == b"\x00\x04MQTT\x04"[0:8] or p[2:9] == b"\x00\x04MQTT\x04"
    flags = p[9]
    assert flags == 0x02 | 0x04 | 0x08 | 0x20 | 0x80 | 0x40, hex(flags)
    assert p[10:12] == b"\x00\x1e"
    assert p[12:16] == b"\x00\x02n1"
    assert p.endswith(b"\x00\x01u\x00\x02pw")
    q = m.connect_packet("n1", 0, False)
    assert q[9] == 0 and len(q) == 2 + 10 + 4


def test_remaining_length_boundaries():
    for n, enc in ((0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (16383, b"\xff\x7f"),
                   (16384, b"\x80\x80\x01"), (2097152, b"\x80\x80\x80\x01")):
        out = bytearray()
        m._varlen(out, n)
        assert bytes(out) == enc, (n, out)


def test_publish_header_qos1_dup_retain():
    h = m.publish_header("t/x", 300, qos=1, retain=True, dup=True, pid=0x1234)
    assert h[0] == 0x30 | 0x08 | 0x02 | 0x01
    assert h[1:3] == b"\xb3\x02"  # 2+3+2+300 = 307
    assert h[3:8] == b"\x00\x03t/x" and h[8:10] == b"\x12\x34"
    h0 = m.publish_header("t", 1)
    assert bytes(h0) == b"\x30\x04\x00\x01t"


def test_subscribe_and_puback():
    assert bytes(m.subscribe_packet(7, "a/#", 1)) == b"\x82\x08\x00\x07\x00\x03a/#\x01"
    assert m.puback_packet(0x0102) == b"\x40\x02\x01\x02"


def _feed(r, data, chunk):
    out = []
    i = 0
    while i < len(data):
        # like readinto(): at most what fits in the free space
        sp = r.space()
        part = data[i:i + min(chunk, len(sp))]
        i += len(part)
        sp[0:len(part)] = part
        r.commit(len(part))
        while True:
            p = r.next()
            if p is None:
                break
            out.append((p[0], bytes(p[1])))
    return out


def test_reader_splits_stream_any_chunking_and_drops_oversized():
    pub = bytes(m.publish_header("a/b", 5, qos=1, pid=9)) + b"hello"
    big = bytes(m.publish_header("a/big", 400)) + bytes(400)
    stream = b"\x20\x02\x00\x00" + pub + big + b"\xd0\x00" + pub
    for chunk in (1, 2, 3, 7, 64, 1000):
        r = m.PacketReader(max_packet=64)
        got = _feed(r, stream, chunk)
        assert [g[0] for g in got] == [0x20, 0x32, 0xD0, 0x32], (chunk, got)
        assert r.oversized == 1
        topic, payload, qos, pid, retained = m.parse_publish(got[1][0], memoryview(got[1][1]))
        assert (topic, payload, qos, pid, retained) == ("a/b", b"hello", 1, 9, False)


def test_reader_no_allocation_per_byte():
    import gc
    r = m.PacketReader(max_packet=256)
    pkt = bytes(m.publish_header("t", 200)) + bytes(200)
    sp = r.space()
    sp[0:len(pkt)] = pkt
    gc.collect()
    before = gc.mem_alloc()
    r.commit(len(pkt))
    p = r.next()
    grown = gc.mem_alloc() - before
    assert p is not None and len(p[1]) == len(pkt) - 3
    assert grown < 100, grown  # one memoryview per packet, not per byte


def test_bad_remaining_length_and_publish_raise():
    r = m.PacketReader()
    sp = r.space()
    sp[0:6] = b"\x30\xff\xff\xff\xff\x01"
    r.commit(6)
    try:
        r.next()
        raise AssertionError("accepted a 5-byte remaining length")
    except ValueError:
        pass
    for hdr, body in ((0x30, b"\x00"), (0x32, b"\x00\x01a\x00"), (0x36, b"\x00\x01a\x00\x01")):
        try:
            m.parse_publish(hdr, memoryview(body))
            raise AssertionError("accepted %r" % (body,))
        except ValueError:
            pass


def test_reader_keeps_topic_of_oversized_publish():
    r = m.PacketReader(max_packet=64)
    big = bytes(m.publish_header("fogline/s/n/config", 500, qos=1, pid=3)) + bytes(500)
    got = _feed(r, big + b"\xd0\x00", 64)
    assert [g[0] for g in got] == [0xD0] and r.oversized == 1
    assert r.oversized_topic == "fogline/s/n/config"
