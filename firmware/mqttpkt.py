"""MQTT 3.1.1 packet codec: build CONNECT/PUBLISH/SUBSCRIBE, split a stream into packets."""

from micropython import const

CONNECT = const(0x10)
CONNACK = const(0x20)
PUBLISH = const(0x30)
PUBACK = const(0x40)
SUBSCRIBE = const(0x82)
SUBACK = const(0x90)
PINGRESP = const(0xD0)
PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"


def _varlen(out, n):
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | 0x80 if n else b)
        if not n:
            return


def _str(out, s):
    if isinstance(s, str):
        s = s.encode()
    out.append(len(s) >> 8)
    out.append(len(s) & 0xFF)
    out.extend(s)


def connect_packet(client_id, keepalive_s, clean=True, user=None, password=None, will=None):
    """CONNECT bytes; will is (topic, message, qos, retain) or None."""
    body = bytearray(b"\x00\x04MQTT\x04\x00\x00\x00")
    flags = 0x02 if clean else 0
    if will:
        flags |= 0x04 | (will[2] & 3) << 3 | (0x20 if will[3] else 0)
    if user is not None:
        flags |= 0x80
        if password is not None:
            flags |= 0x40
    body[7] = flags
    body[8] = keepalive_s >> 8
    body[9] = keepalive_s & 0xFF
    _str(body, client_id)
    if will:
        _str(body, will[0])
        _str(body, will[1])
    if user is not None:
        _str(body, user)
        if password is not None:
            _str(body, password)
    out = bytearray((CONNECT,))
    _varlen(out, len(body))
    return out + body


def publish_header(topic, payload_len, qos=0, retain=False, dup=False, pid=0):
    """Fixed+variable header of a PUBLISH; the payload is written after it unchanged."""
    t = topic.encode() if isinstance(topic, str) else topic
    out = bytearray((PUBLISH | (0x08 if dup else 0) | qos << 1 | (1 if retain else 0),))
    _varlen(out, 2 + len(t) + (2 if qos else 0) + payload_len)
    _str(out, t)
    if qos:
        out.append(pid >> 8)
        out.append(pid & 0xFF)
    return out


def subscribe_packet(pid, topic, qos=1):
    """SUBSCRIBE bytes for one topic filter."""
    body = bytearray((pid >> 8, pid & 0xFF))
    _str(body, topic)
    body.append(qos)
    out = bytearray((SUBSCRIBE,))
    _varlen(out, len(body))
    return out + body


def puback_packet(pid):
    """PUBACK bytes."""
    return bytes((PUBACK, 2, pid >> 8, pid & 0xFF))


def parse_publish(hdr, mv):
    """(topic, payload bytes, qos, pid, retained) of a PUBLISH body; ValueError if malformed."""
    if len(mv) < 2:
        raise ValueError("mqtt: short publish")
    tl = mv[0] << 8 | mv[1]
    qos = (hdr >> 1) & 3
    pos = 2 + tl
    pid = 0
    if qos:
        if len(mv) < pos + 2:
            raise ValueError("mqtt: short publish")
        pid = mv[pos] << 8 | mv[pos + 1]
        pos += 2
    if pos > len(mv) or qos == 3:
        raise ValueError("mqtt: bad publish")
    return str(bytes(mv[2:2 + tl]), "utf-8"), bytes(mv[pos:]), qos, pid, bool(hdr & 1)


class PacketReader:
    """Splits a byte stream into MQTT packets in one preallocated buffer; drops oversized ones."""

    def __init__(self, max_packet=2048):
        self.buf = bytearray(max_packet + 5)
        self.mv = memoryview(self.buf)
        self.max_packet = max_packet
        self.start = 0
        self.fill = 0
        self.skip = 0
        self.oversized = 0
        self.oversized_topic = None  # topic of the last dropped PUBLISH, when it was readable

    def reset(self):
        """Forget buffered bytes (new connection)."""
        self.start = self.fill = self.skip = 0

    def space(self):
        """Free tail of the buffer to read into (compacts first)."""
        if self.start:
            n = self.fill - self.start
            self.mv[0:n] = self.mv[self.start:self.fill]
            self.start = 0
            self.fill = n
        return self.mv[self.fill:]

    def commit(self, n):
        """Account n bytes just read into space()."""
        self.fill += n

    def next(self):
        """(first byte, body memoryview) of the next whole packet, or None if incomplete."""
        while True:
            if self.skip:
                k = min(self.skip, self.fill - self.start)
                self.skip -= k
                self.start += k
                if self.skip:
                    return None
            avail = self.fill - self.start
            if avail < 2:
                return None
            n = 0
            shift = 0
            i = self.start + 1
            while True:
                if i >= self.fill:
                    return None
                b = self.buf[i]
                n |= (b & 0x7F) << shift
                i += 1
                if not b & 0x80:
                    break
                shift += 7
                if shift > 21:
                    raise ValueError("mqtt: bad remaining length")
            if n > self.max_packet:
                # Skip it byte-exactly so the stream stays in sync; keep its topic if buffered.
                self.oversized += 1
                self.oversized_topic = None
                if self.buf[self.start] & 0xF0 == PUBLISH and self.fill - i >= 2:
                    tl = self.buf[i] << 8 | self.buf[i + 1]
                    if self.fill - i >= 2 + tl:
                        self.oversized_topic = str(bytes(self.mv[i + 2:i + 2 + tl]), "utf-8")
                self.skip = n
                self.start = i
                continue
            if i + n > self.fill:
                return None
            hdr = self.buf[self.start]
            self.start = i + n
            return hdr, self.mv[i:i + n]
