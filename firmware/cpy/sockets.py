"""Sockets for the core on CircuitPython's socketpool: a MicroPython-style `socket` module and
the asyncio stream (`open_connection`) our MQTT client reads with readinto().

CircuitPython has neither `socket` nor a usable asyncio.open_connection (the library's uses
`usocket`), and its sockets have no recv()/read(). The stream polls a non-blocking socketpool
socket: EAGAIN -> await asyncio.sleep_ms(POLL_MS). The TCP connect itself blocks for at most
CONNECT_TIMEOUT_S (socketpool has no asynchronous connect).
"""

import asyncio

AF_INET = 2
SOCK_STREAM = 1
SOCK_DGRAM = 2
IPPROTO_TCP = 6
TCP_NODELAY = 1
SOL_SOCKET = 0xFFF
SO_REUSEADDR = 0x0004
POLL_MS = 5
CONNECT_TIMEOUT_S = 3
_AGAIN = (11, 110, 116)  # EAGAIN, ETIMEDOUT (Linux, newlib/lwIP): "nothing yet" on a 0 timeout

_pool = [None]


def pool():
    """The process-wide socketpool.SocketPool(wifi.radio)."""
    if _pool[0] is None:
        import socketpool
        import wifi
        _pool[0] = socketpool.SocketPool(wifi.radio)
    return _pool[0]


def _again(e):
    return bool(e.args) and e.args[0] in _AGAIN


def getaddrinfo(host, port, af=0, type=0, proto=0, flags=0):
    """[(family, type, proto, canonname, (ip, port))]."""
    return pool().getaddrinfo(host, port, af, type, proto, flags)


class socket:
    """MicroPython-style socket over a socketpool socket."""

    def __init__(self, af=AF_INET, type=SOCK_STREAM, proto=0):
        self.s = pool().socket(af, type, proto)
        self._nb = False

    def setblocking(self, flag):
        self._nb = not flag
        self.s.setblocking(flag)

    def settimeout(self, t):
        self._nb = t == 0
        self.s.settimeout(t)

    def setsockopt(self, level, opt, value):
        self.s.setsockopt(level, opt, value)

    def connect(self, addr):
        self.s.connect(addr)

    def send(self, data):
        return self.s.send(data)

    def sendall(self, data):
        mv = memoryview(data)
        off = 0
        while off < len(mv):
            off += self.s.send(mv[off:])

    def sendto(self, data, addr):
        return self.s.sendto(data, addr)

    def recv(self, n):
        """Up to n bytes (OSError EAGAIN when non-blocking and nothing is there)."""
        b = bytearray(n)
        k = self.s.recv_into(b, n)
        return bytes(b[:k])

    def recvfrom(self, n):
        b = bytearray(n)
        k, addr = self.s.recvfrom_into(b)
        return bytes(b[:k]), addr

    def readinto(self, buf):
        """MicroPython stream semantics: None when non-blocking and nothing is there."""
        try:
            return self.s.recv_into(buf)
        except OSError as e:
            if self._nb and _again(e):
                return None
            raise

    def write(self, data):
        try:
            return self.s.send(data)
        except OSError as e:
            if self._nb and _again(e):
                return None
            raise

    def close(self):
        self.s.close()


class Stream:
    """asyncio reader+writer on a non-blocking socketpool socket (uasyncio's Stream API subset)."""

    def __init__(self, s):
        self.s = s
        self._out = b""

    def write(self, buf):
        """Queue bytes; drain() sends them."""
        self._out += bytes(buf)

    async def drain(self):
        """Send everything queued."""
        mv = memoryview(self._out)
        off = 0
        while off < len(mv):
            try:
                off += self.s.send(mv[off:])
            except OSError as e:
                if not _again(e):
                    raise
                await asyncio.sleep_ms(POLL_MS)
        self._out = b""

    async def readinto(self, buf):
        """Bytes read into buf (0 = closed by the peer)."""
        while True:
            try:
                return self.s.recv_into(buf)
            except OSError as e:
                if not _again(e):
                    raise
            await asyncio.sleep_ms(POLL_MS)

    async def read(self, n):
        """Up to n bytes."""
        b = bytearray(n)
        k = await self.readinto(b)
        return bytes(b[:k])

    def close(self):
        pass

    async def wait_closed(self):
        """Close the socket."""
        self.s.close()


async def open_connection(host, port):
    """(reader, writer) for a TCP connection (asyncio.open_connection on CircuitPython)."""
    p = pool()
    ai = p.getaddrinfo(host, port, 0, SOCK_STREAM)[0]
    s = p.socket(ai[0], SOCK_STREAM)
    try:
        s.settimeout(CONNECT_TIMEOUT_S)
        s.connect(ai[-1])
        s.settimeout(0)
    except BaseException:
        s.close()
        raise
    st = Stream(s)
    return st, st
