"""tests/harness/netem.py: the uplink emulator the chaos test puts between the gateway and the cloud broker.

Real sockets on 127.0.0.1 against a threaded echo server: pass forwards both ways, throttle holds a
byte rate (a loose lower bound on the transfer time, never a timing upper bound), blackhole holds
bytes without losing them (they arrive once the link passes again), refuse makes connects fail
and resets live connections, and the listener comes back on the same port afterwards.
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time

import pytest

from harness.netem import NetEm


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture
def echo():
    srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def _recv_exactly(s: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        d = s.recv(n - len(out))
        if not d:
            raise ConnectionError("closed")
        out += d
    return out


def test_netem_modes(echo):
    with NetEm(echo) as em:
        s = socket.create_connection(("127.0.0.1", em.port), timeout=5)
        s.sendall(b"hello")
        assert _recv_exactly(s, 5) == b"hello"

        # throttle: 6000 bytes each way at 20000 B/s cannot echo back in much less than 0.3 s
        em.set_mode("throttle", rate=20000)
        blob = bytes(range(256)) * 24
        t0 = time.monotonic()
        s.sendall(blob)
        assert _recv_exactly(s, len(blob)) == blob
        assert time.monotonic() - t0 >= 0.25

        # blackhole: nothing comes back while dark, everything arrives (in order) once it passes again
        em.set_mode("blackhole")
        s.sendall(b"in the dark")
        s.settimeout(0.5)
        with pytest.raises(socket.timeout):
            s.recv(100)
        em.set_mode("pass")
        s.settimeout(5)
        assert _recv_exactly(s, 11) == b"in the dark"

        # refuse: the live connection is reset and new connects are refused ...
        em.set_mode("refuse")
        with pytest.raises((ConnectionError, OSError)):
            s.sendall(b"x")
            if not s.recv(1):
                raise ConnectionError("closed")
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", em.port), timeout=2)
        # ... and the same port accepts again afterwards
        em.set_mode("pass")
        s2 = socket.create_connection(("127.0.0.1", em.port), timeout=5)
        s2.sendall(b"back")
        assert _recv_exactly(s2, 4) == b"back"
        s2.close()
        st = em.stats()
    assert st["connections"] == 2 and st["reset"] >= 1 and st["changes"] == 5, st
    assert st["bytes_up"] == st["bytes_down"] == 5 + len(blob) + 11 + 4, st
    with pytest.raises(ValueError):
        NetEm(echo).set_mode("throttle")
