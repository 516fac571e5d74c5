# SNTP time sync against a local UDP responder (MicroPython unix port): never blocks sampling.
import _thread
import asyncio
import os
import socket
import struct
import time

from firmware.app import Clock
from firmware.timesync import TimeSync
from shared.senml import NODE_EPOCH

_NTP_DELTA = 2208988800
EPOCH = 1767225600  # 2026-01-01 00:00:00 UTC


def _server(sock, replies):
    # Answers each request once with EPOCH + 0.5 s; the first reply has a wrong origin (spoof).
    n = 0
    while n < replies:
        data, addr = sock.recvfrom(48)
        out = bytearray(48)
        out[0] = 0x24  # version 4, mode 4 (server)
        out[1] = 2  # stratum
        out[24:32] = data[40:48] if n else b"\x00" * 8
        struct.pack_into("!II", out, 40, EPOCH + _NTP_DELTA, 0x80000000)
        if n == 0:
            sock.sendto(out, addr)  # spoofed: ignored, the real answer follows
            out[24:32] = data[40:48]
        sock.sendto(out, addr)
        n += 1


def _bound_udp():
    # The unix port's sockets have no getsockname(), so port 0 cannot be read back: try random ports
    # (the same test runs at once on both interpreters and next to colleagues' runs).
    while True:
        port = 20000 + (os.urandom(1)[0] << 8 | os.urandom(1)[0]) % 40000
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind(socket.getaddrinfo("127.0.0.1", port)[0][-1])
            return s, port
        except OSError:
            s.close()


def test_sntp_sets_clock_and_sampling_keeps_running():
    srv, port = _bound_udp()
    _thread.start_new_thread(_server, (srv, 1))
    clock = Clock()
    # a generous answer timeout: a loaded host may be slow to answer; giving up is test_sntp_timeout_counted's
    ts = TimeSync(clock, "127.0.0.1", port, interval_s=3600, timeout_ms=60000)
    ticks = [0]
    synced_at = [None]
    started = [None]

    async def sampler():
        while not ts.synced:
            ticks[0] += 1
            await asyncio.sleep_ms(1)
        synced_at[0] = clock.now_ms()

    async def main():
        started[0] = clock.now_ms()
        t = asyncio.create_task(ts.run())
        await asyncio.wait_for_ms(sampler(), 120000)
        t.cancel()

    asyncio.run(main())
    assert ts.stats["syncs"] == 1 and ts.stats["bad_replies"] == 1, ts.stats
    # The reply says EPOCH + 0.5 s and the clock is set to it on arrival. SNTP's guarantee: the clock is off
    # by no more than the round trip, so when the sampler sees the sync, the clock reads EPOCH + 0.5 s plus at
    # most the time since the request went out (measured on the node's own clock, whatever the host's load).
    now = synced_at[0]
    exchange_ms = now - started[0]
    past_ms = now - clock.base_ms  # what the clock says, in ms past EPOCH (ints: exact on a float32 board)
    assert clock.base_s == EPOCH, clock.base_s
    assert 500 <= past_ms <= 500 + exchange_ms, (past_ms, exchange_ms)
    assert EPOCH <= clock.epoch_s(now) <= EPOCH + (500 + exchange_ms) // 1000, (clock.epoch_s(now), exchange_ms)
    assert clock.node_s(now) == clock.epoch_s(now) - NODE_EPOCH and isinstance(clock.node_s(now), int)
    assert ticks[0] >= 1  # the sampler ran while waiting for the answer
    srv.close()


def test_sntp_timeout_counted():
    sock, port = _bound_udp()  # bound, never answers
    ts = TimeSync(Clock(), "127.0.0.1", port, timeout_ms=200)
    t0 = time.ticks_ms()
    assert asyncio.run(ts.query()) is None
    assert ts.stats["errors"] == 1 and "no answer" in ts.last_error
    # it returned, so it gave up rather than hang; and only after waiting its timeout (a lower bound: a slow
    # host can only make it later)
    assert time.ticks_diff(time.ticks_ms(), t0) >= 200
    sock.close()
