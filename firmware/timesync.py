"""SNTP client that never blocks the event loop: records carry epoch time, so a board must sync.

    ts = TimeSync(clock, host="pool.ntp.org", interval_s=3600, link_up=wlan.isconnected)
    await ts.run()          # an uplink-style task; clock.rebase(epoch_s, ms) on every good answer

Non-blocking UDP socket polled with asyncio sleeps; the host name is resolved
once per attempt (getaddrinfo is the only blocking call, skipped when `host`
is an IP address literal). An answer with a bad mode/stratum or a wrong
origin timestamp is counted and ignored.
"""

import asyncio
import struct

_NTP_DELTA = 2208988800  # 1900-01-01 to 1970-01-01


class TimeSync:
    """SNTP task: sets the clock once the link is up, then every interval_s."""

    def __init__(self, clock, host="pool.ntp.org", port=123, interval_s=3600, link_up=None, timeout_ms=2000):
        self.clock = clock
        self.host = host
        self.port = port
        self.interval_s = interval_s
        self.link_up = link_up
        self.timeout_ms = timeout_ms
        self.synced = False
        self.stats = {"requests": 0, "syncs": 0, "errors": 0, "bad_replies": 0}
        self.last_error = None
        self._pkt = bytearray(48)

    def _addr(self):
        import socket
        return socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_DGRAM)[0][-1]

    async def query(self):
        """One SNTP exchange; returns (epoch seconds int, ms) or None (ints: float32 cannot hold epochs)."""
        import socket
        self.stats["requests"] += 1
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.setblocking(False)
            p = self._pkt
            for i in range(48):
                p[i] = 0
            p[0] = 0x23  # LI 0, version 4, mode 3 (client)
            tx = self.clock.now_ms()
            struct.pack_into("!II", p, 40, tx // 1000 + 1, (tx % 1000) * 4294967)  # origin cookie
            cookie = bytes(p[40:48])
            s.sendto(p, self._addr())
            await asyncio.sleep_ms(0)  # the answer takes a round trip: let sampling run meanwhile
            waited = 0
            while waited < self.timeout_ms:
                try:
                    data = s.recv(48)
                except OSError:
                    await asyncio.sleep_ms(20)
                    waited += 20
                    continue
                if len(data) < 48 or data[0] & 7 != 4 or not 0 < data[1] < 16 or data[24:32] != cookie:
                    self.stats["bad_replies"] += 1
                    continue
                secs, frac = struct.unpack_from("!II", data, 40)
                return secs - _NTP_DELTA, (frac >> 22) * 1000 >> 10
            self.last_error = "ntp: no answer"
        except OSError as e:
            self.last_error = "ntp: OSError %s" % (e.args[0] if e.args else "")
        finally:
            s.close()
        self.stats["errors"] += 1
        return None

    async def run(self):
        """Sync now (once the link is up) and every interval_s; retry sooner after failures."""
        while True:
            if self.link_up is not None and not self.link_up():
                await asyncio.sleep_ms(500)
                continue
            t = await self.query()
            if t is not None:
                self.clock.rebase(t[0], t[1])
                self.synced = True
                self.stats["syncs"] += 1
            await asyncio.sleep_ms((self.interval_s if t is not None else 30) * 1000)
