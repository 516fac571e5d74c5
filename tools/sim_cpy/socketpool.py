"""Simulated `socketpool` (CircuitPython 9.2) over the host's real sockets.

SocketPool(radio).socket(family=AF_INET, type=SOCK_STREAM, proto=IPPROTO_IP) -> Socket with
connect/send/sendall/recv_into/sendto/recvfrom_into/settimeout/setblocking/setsockopt/close
(no recv(), read() or makefile(): CircuitPython's sockets do not have them). A non-blocking
call with nothing to do raises OSError(EAGAIN); a timeout raises OSError(ETIMEDOUT);
while the simulated Wi-Fi is down every call raises OSError(ENOTCONN) and open sockets die.
"""

import errno
import socket as _s

AF_INET = 2
AF_INET6 = 10
SOCK_STREAM = 1
SOCK_DGRAM = 2
SOCK_RAW = 3
IPPROTO_IP = 0
IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
TCP_NODELAY = 1
SOL_SOCKET = 0xFFF
SO_REUSEADDR = 0x0004
EAI_NONAME = -2
_EAGAIN = 11
_ETIMEDOUT = 116
_ENOTCONN = 128


class Socket:
    """One socket; dies when the simulated link drops."""

    def __init__(self, pool, family, type, proto):
        self._pool = pool
        self._gen = pool._radio.connects
        self.type = type
        self.family = family
        self._sock = _s.socket(_s.AF_INET, _s.SOCK_STREAM if type == SOCK_STREAM else _s.SOCK_DGRAM)
        self._timeout = None

    def _alive(self):
        r = self._pool._radio
        if not r.connected or r.connects != self._gen:
            raise OSError(_ENOTCONN, "link down")

    def _io(self, fn, *args):
        self._alive()
        try:
            return fn(*args)
        except BlockingIOError:
            raise OSError(_EAGAIN, "EAGAIN")
        except _s.timeout:
            raise OSError(_ETIMEDOUT, "ETIMEDOUT")

    def settimeout(self, value):
        """None = blocking, 0 = non-blocking, else seconds."""
        self._timeout = value
        self._sock.settimeout(value)

    def setblocking(self, flag):
        """Blocking on/off."""
        self.settimeout(None if flag else 0)

    def setsockopt(self, level, optname, value):
        """Only TCP_NODELAY and SO_REUSEADDR are passed to the host."""
        if level == IPPROTO_TCP and optname == TCP_NODELAY:
            self._sock.setsockopt(_s.IPPROTO_TCP, _s.TCP_NODELAY, value)
        elif level == SOL_SOCKET and optname == SO_REUSEADDR:
            self._sock.setsockopt(_s.SOL_SOCKET, _s.SO_REUSEADDR, value)
        else:
            raise OSError(errno.EINVAL, "option")

    def connect(self, address):
        """Connect to (host, port)."""
        try:
            self._io(self._sock.connect, tuple(address))
        except ConnectionRefusedError:
            raise OSError(errno.ECONNREFUSED, "ECONNREFUSED")

    def send(self, bytes):
        """Bytes sent (may be fewer than given)."""
        return self._io(self._sock.send, bytes)

    def sendall(self, bytes):
        """Send everything (blocking)."""
        self._io(self._sock.sendall, bytes)

    def recv_into(self, buffer, bufsize=0):
        """Bytes received into buffer; 0 means the peer closed."""
        return self._io(self._sock.recv_into, buffer, bufsize or len(buffer))

    def sendto(self, bytes, address):
        """UDP send."""
        return self._io(self._sock.sendto, bytes, tuple(address))

    def recvfrom_into(self, buffer):
        """(n, (host, port))."""
        return self._io(self._sock.recvfrom_into, buffer)

    def bind(self, address):
        self._sock.bind(tuple(address))

    def close(self):
        """Close."""
        self._sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


class SocketPool:
    """Sockets of one radio."""

    AF_INET = AF_INET
    SOCK_STREAM = SOCK_STREAM
    SOCK_DGRAM = SOCK_DGRAM
    IPPROTO_TCP = IPPROTO_TCP
    TCP_NODELAY = TCP_NODELAY
    SOL_SOCKET = SOL_SOCKET
    SO_REUSEADDR = SO_REUSEADDR
    EAI_NONAME = EAI_NONAME

    class gaierror(OSError):
        pass

    def __init__(self, radio):
        self._radio = radio

    def socket(self, family=AF_INET, type=SOCK_STREAM, proto=IPPROTO_IP):
        """A new socket."""
        if not self._radio.connected:
            raise OSError(_ENOTCONN, "link down")
        return Socket(self, family, type, proto)

    def getaddrinfo(self, host, port, family=0, type=0, proto=0, flags=0):
        """[(family, type, proto, canonname, (ip, port))]."""
        if not self._radio.connected:
            raise self.gaierror(EAI_NONAME, "Name or service not known")
        try:
            ip = _s.gethostbyname(host)
        except OSError:
            raise self.gaierror(EAI_NONAME, "Name or service not known")
        return [(AF_INET, type or SOCK_STREAM, proto, "", (ip, port))]
