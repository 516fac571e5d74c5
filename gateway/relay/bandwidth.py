"""Bandwidth-aware sync policy: measured uplink throughput -> mode -> which lanes go and how.

Throughput is measured from bytes the cloud acknowledged divided by the time the link was
busy (at least one message in flight), so an idle link does not look like a slow one.
Modes: low (alerts + anomalies only), middle (batched zlib-compressed CBOR bundles, no raw
windows), high (everything including raw windows). Alerts are never batched. An optional
hard cap (token bucket, kbit/s) bounds what the gateway puts on the link.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from fogline.gateway.config_check import build_section

log = logging.getLogger(__name__)

LOW, MIDDLE, HIGH = "low", "middle", "high"
MODES = (LOW, MIDDLE, HIGH)
MODE_CODE = {LOW: 0, MIDDLE: 1, HIGH: 2}
LANES_BY_MODE = {
    LOW: ("alert", "anomaly"),
    MIDDLE: ("alert", "anomaly", "summary"),
    HIGH: ("alert", "anomaly", "summary", "raw"),
}


@dataclass
class BandwidthConfig:
    """[cloud.bandwidth] mode thresholds (kbit/s), hysteresis, optional hard cap, batching."""

    low_kbps: float = 100.0  # below: low mode
    high_kbps: float = 1000.0  # at or above: high mode
    hysteresis: float = 0.15  # a threshold must be crossed by this share to switch
    window_s: float = 5.0  # measurement window
    evidence_s: float = 0.05  # a downgrade needs a busy period worth this long at the threshold rate
    hold_s: float = 2.0  # minimum time between mode changes
    initial_mode: str = MIDDLE
    cap_kbps: float | None = None  # hard cap on bytes put on the link; None = no cap
    cap_burst_bytes: int = 16384
    bundle_max_items: int = 500
    bundle_max_bytes: int = 60000
    linger_s: float = 1.0  # middle/low: wait this long for a bundle to fill
    probe_s: float = 30.0  # low mode: send one withheld-lane bundle this often to re-measure
    compress_level: int = 6

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "BandwidthConfig":
        """Build from a TOML table: unknown keys and wrong types refused with the field's name (ConfigError)."""
        return build_section("cloud.bandwidth", cls, d)

    def validate(self) -> None:
        if not (0 < self.low_kbps < self.high_kbps):
            raise ValueError("cloud.bandwidth: need 0 < low_kbps < high_kbps")
        if self.initial_mode not in MODES:
            raise ValueError(f"cloud.bandwidth.initial_mode: one of {MODES}")
        if self.cap_kbps is not None and self.cap_kbps <= 0:
            raise ValueError("cloud.bandwidth.cap_kbps: must be > 0 or absent")
        if self.bundle_max_items < 1 or self.bundle_max_bytes < 1 or self.linger_s < 0 or self.probe_s <= 0:
            raise ValueError("cloud.bandwidth: bundle_max_* >= 1, linger_s >= 0, probe_s > 0")


class ThroughputMeter:
    """Link throughput from acknowledged bytes over busy periods (time with messages in flight).

    Each busy period moved b bytes in d seconds (one round trip included), so the link's
    capacity is at least b/d: the estimate is the largest such lower bound in the window.
    Small messages on a fast link give loose bounds (latency-bound) and simply do not win;
    on a slow link every period is serialisation-bound and the bound is tight. Small periods
    can only prove a link fast, so a downgrade also needs `saturated`: a period that carried
    enough bytes to keep a link at the threshold busy for `evidence_s`.
    """

    def __init__(self, window_s: float = 5.0, history: int = 512):
        self.window_s = window_s
        self.inflight = 0
        self._periods: deque[list[float]] = deque(maxlen=history)  # [start, last_ack, bytes]
        self.total_bytes = 0

    def sent(self, now: float) -> None:
        """A message went on the wire."""
        if self.inflight == 0:
            self._periods.append([now, now, 0.0])
        self.inflight += 1

    def acked(self, nbytes: int, now: float) -> None:
        """The cloud acknowledged a message of nbytes."""
        if self._periods:
            p = self._periods[-1]
            p[1] = max(p[1], now)
            p[2] += nbytes
        self.inflight = max(0, self.inflight - 1)
        self.total_bytes += nbytes

    def failed(self, now: float) -> None:
        """A message in flight was given up (timeout, disconnect)."""
        self.inflight = max(0, self.inflight - 1)

    def saturated(self, now: float, kbps: float, evidence_s: float) -> bool:
        """Did a busy period in the window move what `kbps` would need evidence_s for? Only then can
        the link be called slower than kbps (a few 100-byte alerts prove nothing on a busy machine)."""
        need = kbps * 1000 / 8 * evidence_s
        return any(p[1] >= now - self.window_s and p[2] >= need for p in self._periods)

    def kbps(self, now: float | None = None) -> float | None:
        """Measured kbit/s over the window, None when nothing was acknowledged in it."""
        if not self._periods:
            return None
        now = self._periods[-1][1] if now is None else now
        best = None
        for start, last, b in self._periods:
            d = last - start
            if last < now - self.window_s or b <= 0 or d <= 0:
                continue
            r = b * 8 / 1000 / d
            if best is None or r > best:
                best = r
        return best


class TokenBucket:
    """Hard cap in kbit/s; `debit` may go negative (alerts never wait), later sends then wait."""

    def __init__(self, kbps: float | None, burst_bytes: int = 16384, clock=time.monotonic):
        self.rate = kbps * 1000 / 8 if kbps else None  # bytes/s
        self.burst = float(burst_bytes)
        self.tokens = self.burst
        self.clock = clock
        self._t = clock()

    def _refill(self) -> None:
        now = self.clock()
        if self.rate:
            self.tokens = min(self.burst, self.tokens + (now - self._t) * self.rate)
        self._t = now

    def wait_s(self, nbytes: int) -> float:
        """Seconds to wait before nbytes may go (0 = now)."""
        if not self.rate:
            return 0.0
        self._refill()
        need = min(float(nbytes), self.burst) - self.tokens
        return max(0.0, need / self.rate)

    def debit(self, nbytes: int) -> None:
        if self.rate:
            self._refill()
            self.tokens -= nbytes

    async def take(self, nbytes: int) -> None:
        """Wait until nbytes fit under the cap, then spend them."""
        while (w := self.wait_s(nbytes)) > 0:
            await asyncio.sleep(w)
        self.debit(nbytes)


class BandwidthPolicy:
    """Turns the measured throughput into a mode, with hysteresis and a hold time."""

    def __init__(self, cfg: BandwidthConfig | None = None, clock=time.monotonic):
        self.cfg = cfg or BandwidthConfig()
        self.clock = clock
        self.meter = ThroughputMeter(self.cfg.window_s)
        self.bucket = TokenBucket(self.cfg.cap_kbps, self.cfg.cap_burst_bytes)
        self.mode = self.cfg.initial_mode
        self._changed_at = -1e9
        self.bytes_by_mode = {m: 0 for m in MODES}
        self.msgs_by_mode = {m: 0 for m in MODES}
        self.switches = 0
        self._last_probe = clock()

    def update(self) -> str:
        """Re-evaluate the mode from the meter; returns the current mode."""
        now = self.clock()
        kbps = self.meter.kbps(now)
        if kbps is None or now - self._changed_at < self.cfg.hold_s:
            return self.mode
        h = self.cfg.hysteresis
        target = self.mode
        if self.mode == LOW:
            if kbps >= self.cfg.high_kbps * (1 + h):
                target = HIGH
            elif kbps >= self.cfg.low_kbps * (1 + h):
                target = MIDDLE
        elif self.mode == MIDDLE:
            if kbps < self.cfg.low_kbps * (1 - h):
                target = LOW
            elif kbps >= self.cfg.high_kbps * (1 + h):
                target = HIGH
        else:
            if kbps < self.cfg.low_kbps * (1 - h):
                target = LOW
            elif kbps < self.cfg.high_kbps * (1 - h):
                target = MIDDLE
        bound = self.cfg.high_kbps if self.mode == HIGH else self.cfg.low_kbps
        if MODE_CODE[target] < MODE_CODE[self.mode] and not self.meter.saturated(now, bound, self.cfg.evidence_s):
            target = self.mode  # slow-looking but small samples: not evidence of a slow link
        if target != self.mode:
            log.info("event=bandwidth_mode from=%s to=%s kbps=%.1f", self.mode, target, kbps)
            self.mode = target
            self._changed_at = now
            self.switches += 1
        return self.mode

    def lanes(self) -> tuple[str, ...]:
        """Lanes the current mode sends, in priority order."""
        return LANES_BY_MODE[self.mode]

    def batching(self) -> bool:
        """Low and middle modes wait (up to linger_s) to fill compressed bundles; high sends at once."""
        return self.mode != HIGH

    def probe_due(self) -> bool:
        """In low mode, time to send one withheld-lane bundle so the meter sees the link again?"""
        now = self.clock()
        if self.mode == LOW and now - self._last_probe >= self.cfg.probe_s:
            self._last_probe = now
            return True
        return False

    def account(self, nbytes: int) -> None:
        """Count bytes acknowledged in the current mode (reported per mode)."""
        self.bytes_by_mode[self.mode] += nbytes
        self.msgs_by_mode[self.mode] += 1

    def stats(self) -> dict[str, Any]:
        k = self.meter.kbps(self.clock())
        return {"mode": self.mode, "mode_code": MODE_CODE[self.mode], "kbps": round(k, 1) if k else None,
                "switches": self.switches, "bytes_by_mode": dict(self.bytes_by_mode),
                "msgs_by_mode": dict(self.msgs_by_mode), "acked_bytes": self.meter.total_bytes}
