"""Circuit breaker for the cloud link: open on error rate or latency, probe with backoff, close on recovery.

Pure state machine (time is passed in), so the relay and the tests drive it the same way.
While open the relay keeps accepting into the outbox and sends nothing; when the backoff
has elapsed it is half-open and lets exactly one probe through.
"""

from __future__ import annotations

import logging
import random
from collections import deque
from dataclasses import dataclass
from typing import Any

from fogline.gateway.config_check import build_section

log = logging.getLogger(__name__)

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
STATE_CODE = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}  # numeric gauge for metrics


@dataclass
class BreakerConfig:
    """[cloud.breaker] window of recent outcomes, thresholds, probe backoff."""

    window: int = 20  # recent outcomes considered
    min_calls: int = 5  # no verdict on fewer outcomes
    error_rate: float = 0.5  # open at or above this share of failures
    slow_s: float = 5.0  # an acknowledged call slower than this counts as a failure
    backoff_s: float = 1.0  # first probe delay
    backoff_max_s: float = 60.0
    jitter: float = 0.2  # +- share of the delay, so many gateways do not probe in step

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "BreakerConfig":
        """Build from a TOML table: unknown keys and wrong types refused with the field's name (ConfigError)."""
        return build_section("cloud.breaker", cls, d)

    def validate(self) -> None:
        if not (0 < self.error_rate <= 1) or self.window < 1 or self.min_calls < 1 or self.backoff_s <= 0:
            raise ValueError("cloud.breaker: error_rate in (0,1], window/min_calls >= 1, backoff_s > 0")


class Breaker:
    """closed -> open (thresholds) -> half_open (after backoff) -> closed (probe ok) or open (probe failed)."""

    def __init__(self, cfg: BreakerConfig | None = None, rng: random.Random | None = None):
        self.cfg = cfg or BreakerConfig()
        self.state = CLOSED
        self._outcomes: deque[bool] = deque(maxlen=self.cfg.window)
        self._opened_at = 0.0
        self._retry_at = 0.0
        self._failures_in_row = 0  # consecutive failed probes: drives the backoff exponent
        self._probe_out = False
        self._rng = rng or random.Random()
        self.counters = {"opened": 0, "closed": 0, "probes": 0, "failures": 0, "successes": 0, "slow": 0}
        self.last_latency_s = 0.0

    def allow(self, now: float) -> bool:
        """May a message be sent now? In half-open, only one probe at a time."""
        if self.state == CLOSED:
            return True
        if self.state == OPEN and now >= self._retry_at:
            self.state = HALF_OPEN
            self._probe_out = False
            log.info("event=breaker_half_open")
        if self.state == HALF_OPEN and not self._probe_out:
            self._probe_out = True
            self.counters["probes"] += 1
            return True
        return False

    def retry_in(self, now: float) -> float:
        """Seconds until the next probe is allowed (0 when closed)."""
        if self.state == CLOSED:
            return 0.0
        return max(0.0, self._retry_at - now)

    def success(self, now: float, latency_s: float = 0.0) -> None:
        """Record an acknowledged call."""
        self.last_latency_s = latency_s
        if latency_s > self.cfg.slow_s:
            self.counters["slow"] += 1
            self.failure(now, reason="slow")
            return
        self.counters["successes"] += 1
        self._outcomes.append(True)
        if self.state != CLOSED:
            self.state = CLOSED
            self._failures_in_row = 0
            self._probe_out = False
            self._outcomes.clear()
            self.counters["closed"] += 1
            log.info("event=breaker_closed after=%.3fs", now - self._opened_at)

    def failure(self, now: float, reason: str = "error") -> None:
        """Record a failed call (error, timeout, disconnect, refused PUBACK, or slow)."""
        self.counters["failures"] += 1
        self._outcomes.append(False)
        if self.state == HALF_OPEN or self.state == OPEN:
            if self.state == HALF_OPEN:
                self._failures_in_row += 1
                self._open(now, reason)
            return
        n = len(self._outcomes)
        bad = n - sum(self._outcomes)
        if n >= self.cfg.min_calls and bad / n >= self.cfg.error_rate:
            self._open(now, reason)

    def trip(self, now: float, reason: str) -> None:
        """Open at once (e.g. connection lost): no point waiting for the error rate."""
        self.counters["failures"] += 1
        if self.state == CLOSED:
            self._open(now, reason)
        elif self.state == HALF_OPEN:
            self._failures_in_row += 1
            self._open(now, reason)

    def _open(self, now: float, reason: str) -> None:
        delay = min(self.cfg.backoff_max_s, self.cfg.backoff_s * (2 ** min(self._failures_in_row, 30)))
        delay *= 1 + self._rng.uniform(-self.cfg.jitter, self.cfg.jitter)
        if self.state == CLOSED:
            self._opened_at = now
            self.counters["opened"] += 1
        self.state = OPEN
        self._probe_out = False
        self._retry_at = now + delay
        log.warning("event=breaker_open reason=%s retry_in=%.2fs", reason, delay)

    def stats(self) -> dict[str, Any]:
        """State (name and numeric gauge), counters, error rate over the window."""
        n = len(self._outcomes)
        rate = (n - sum(self._outcomes)) / n if n else 0.0
        return {"state": self.state, "state_code": STATE_CODE[self.state], "error_rate": round(rate, 3),
                "last_latency_s": round(self.last_latency_s, 4), **self.counters}
