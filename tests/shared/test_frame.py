# Flash frames: golden bytes, torn and corrupt tails; runs on CPython and MicroPython.
from shared import frame


def test_golden_frame_bytes():
    # len 3 LE, CRC-32 (IEEE) of b"\x03\x00abc" LE, body
    f = frame.encode(b"abc")
    assert f[:2] == b"\x03\x00" and f[6:] == b"abc" and len(f) == 9
    import binascii
    crc = binascii.crc32(b"\x03\x00abc") & 0xFFFFFFFF
    assert f[2:6] == bytes([crc & 255, (crc >> 8) & 255, (crc >> 16) & 255, crc >> 24])


def test_every_truncation_yields_only_whole_frames_and_reports_torn():
    bodies = [b"a" * n for n in (1, 7, 30, 200)]
    buf = b"".join(frame.encode(b) for b in bodies)
    ends = []
    pos = 0
    for b in bodies:
        pos += frame.HEADER + len(b)
        ends.append(pos)
    for cut in range(len(buf) + 1):
        got, end, status = frame.decode_all(buf[:cut])
        whole = [e for e in ends if e <= cut]
        assert got == bodies[:len(whole)], cut
        assert end == (whole[-1] if whole else 0)
        assert status == (frame.OK if cut == end else frame.TORN), (cut, status)


def test_flipped_bit_stops_at_corrupt_frame():
    bodies = [b"one", b"two", b"three"]
    buf = bytearray(b"".join(frame.encode(b) for b in bodies))
    second = frame.HEADER + 3
    for i in range(second, second + frame.HEADER + 3):
        bad = bytearray(buf)
        bad[i] ^= 0x10
        got, end, status = frame.decode_all(bad)
        assert got == [b"one"], (i, got)
        assert end == second
        assert status in (frame.CORRUPT, frame.TORN)


def test_zero_length_and_erased_flash_are_corrupt_not_frames():
    got, end, status = frame.decode_all(b"\x00" * 16)
    assert got == [] and end == 0 and status == frame.CORRUPT
    got, end, status = frame.decode_all(frame.encode(b"x") + b"\xff" * 16)
    assert got == [b"x"] and end == 7 and status != frame.OK


def test_body_length_limits():
    for bad in (b"", b"x" * (frame.MAX_BODY + 1)):
        try:
            frame.encode(bad)
            raise AssertionError("accepted %d bytes" % len(bad))
        except ValueError:
            pass
    assert len(frame.encode(b"x" * frame.MAX_BODY)) == frame.MAX_BODY + frame.HEADER


def test_scanner_resumes_from_offset():
    buf = frame.encode(b"a") + frame.encode(b"bb")
    s = frame.Scanner(buf, 7)
    assert [bytes(b) for b in s] == [b"bb"] and s.end == len(buf)
