"""A small network emulator for tests: a TCP proxy on 127.0.0.1 whose link can be degraded on command.

    em = NetEm(target_port).start()        # listens on em.port, forwards to 127.0.0.1:target_port
    em.set_mode("throttle", rate=2000)     # each direction shaped to 2000 bytes/s
    em.set_mode("blackhole")               # nothing moves (connections stay open, bytes wait, as TCP
                                           # retransmits would make them); new connections hang too
    em.set_mode("refuse")                  # listener closed (connect -> ECONNREFUSED), live ones reset
    em.set_mode("pass")                    # plain forwarding again
    em.stats(); em.stop()

The proxy runs its own asyncio loop in a daemon thread, so synchronous test code drives it;
set_mode() returns once the new mode is in force. Every mode change is logged with its time in
`em.changes` and counted in stats() (seconds spent per mode, bytes each way, connections).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

MODES = ("pass", "throttle", "blackhole", "refuse")


class NetEm:
    """TCP proxy with modes pass / throttle (bytes per second, each direction) / blackhole / refuse."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1", port: int = 0, chunk: int = 4096):
        self.target = (target_host, target_port)
        self.port = port
        self.chunk = chunk
        self.mode = "pass"
        self.rate: float | None = None
        self.changes: list[tuple[float, str, float | None]] = []  # (monotonic, mode, rate)
        self.counters = {"connections": 0, "refused": 0, "reset": 0, "upstream_failures": 0,
                         "bytes_up": 0, "bytes_down": 0}
        self._mode_s: dict[str, float] = {m: 0.0 for m in MODES}
        self._since = time.monotonic()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._flowing: asyncio.Event | None = None
        self._conns: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task] = set()

    # -- control (any thread) ----------------------------------------------------------------
    def start(self) -> "NetEm":
        """Start the loop thread and the listener; returns self (em.port is then bound)."""
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self._open())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name="netem", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("netem: listener did not start")
        self.changes.append((time.monotonic(), "pass", None))
        return self

    def set_mode(self, mode: str, rate: float | None = None) -> None:
        """Switch the link: "pass", "throttle" (rate bytes/s, > 0), "blackhole" or "refuse"."""
        if mode not in MODES:
            raise ValueError(f"netem: mode must be one of {MODES}, not {mode!r}")
        if mode == "throttle" and not (rate and rate > 0):
            raise ValueError("netem: throttle needs rate > 0 (bytes per second)")
        assert self._loop is not None, "start() first"
        asyncio.run_coroutine_threadsafe(self._apply(mode, rate), self._loop).result(10)

    def stats(self) -> dict[str, Any]:
        """Counters, current mode, seconds spent in each mode, number of mode changes."""
        secs = dict(self._mode_s)
        secs[self.mode] += time.monotonic() - self._since
        return {"mode": self.mode, "rate": self.rate, **self.counters, "changes": len(self.changes) - 1,
                "seconds": {k: round(v, 1) for k, v in secs.items()}}

    def stop(self) -> None:
        """Close every connection and the listener, stop the thread."""
        if self._loop is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._close_all(listener=True), self._loop).result(10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._thread is not None:
                self._thread.join(10)
            self._loop = None

    def __enter__(self) -> "NetEm":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- loop side ---------------------------------------------------------------------------
    async def _open(self) -> None:
        if self._flowing is None:
            self._flowing = asyncio.Event()
            self._flowing.set()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        for _ in range(50):  # after "refuse" the port is re-bound; a socket in TIME_WAIT may delay it
            try:
                sock.bind(("127.0.0.1", self.port))
                break
            except OSError:
                await asyncio.sleep(0.1)
        else:
            raise OSError(f"netem: cannot re-bind 127.0.0.1:{self.port}")
        self.port = sock.getsockname()[1]
        self._server = await asyncio.start_server(self._handle, sock=sock)

    async def _apply(self, mode: str, rate: float | None) -> None:
        now = time.monotonic()
        self._mode_s[self.mode] += now - self._since
        self._since = now
        old, self.mode, self.rate = self.mode, mode, (rate if mode == "throttle" else None)
        self.changes.append((now, mode, self.rate))
        assert self._flowing is not None
        if mode == "blackhole":
            self._flowing.clear()
        else:
            self._flowing.set()
        if mode == "refuse" and old != "refuse":
            await self._close_all(listener=True)
        elif old == "refuse" and mode != "refuse":
            await self._open()

    async def _close_all(self, listener: bool) -> None:
        if listener and self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for w in list(self._conns):
            self.counters["reset"] += 1
            _abort(w)
        self._conns.clear()
        for t in list(self._tasks):
            t.cancel()

    async def _handle(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        if self.mode == "refuse":  # accepted in the instant before the listener closed
            self.counters["refused"] += 1
            _abort(cw)
            return
        self.counters["connections"] += 1
        self._conns.add(cw)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        sw = None
        try:
            assert self._flowing is not None
            await self._flowing.wait()  # a blackholed link does not even reach the server
            try:
                sr, sw = await asyncio.open_connection(*self.target)
            except OSError:
                self.counters["upstream_failures"] += 1
                _abort(cw)
                return
            self._conns.add(sw)
            await asyncio.gather(self._pump(cr, sw, "bytes_up"), self._pump(sr, cw, "bytes_down"))
        except asyncio.CancelledError:
            pass
        finally:
            for w in (cw, sw):
                if w is not None:
                    self._conns.discard(w)
                    _abort(w)
            if task is not None:
                self._tasks.discard(task)

    async def _pump(self, r: asyncio.StreamReader, w: asyncio.StreamWriter, counter: str) -> None:
        assert self._flowing is not None
        next_t = time.monotonic()
        try:
            while True:
                n = self.chunk
                if self.mode == "throttle" and self.rate:
                    n = max(1, min(n, int(self.rate / 20)))  # small slices keep the rate smooth
                data = await r.read(n)
                if not data:
                    break
                await self._flowing.wait()
                if self.mode == "throttle" and self.rate:
                    next_t = max(next_t, time.monotonic()) + len(data) / self.rate
                    delay = next_t - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    await self._flowing.wait()  # the link may have gone dark meanwhile
                self.counters[counter] += len(data)
                w.write(data)
                await w.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            _abort(w)


def _abort(w: asyncio.StreamWriter) -> None:
    try:
        w.transport.abort()
    except Exception:  # already closed
        pass
