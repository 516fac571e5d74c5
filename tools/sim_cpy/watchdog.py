"""Simulated `watchdog` (CircuitPython 9.2): WatchDogMode, WatchDogTimeout, WatchDogTimer."""

import time


class WatchDogMode:
    RAISE = "RAISE"
    RESET = "RESET"


class WatchDogTimeout(Exception):
    """Raised in RAISE mode when the timer expires."""


class WatchDogTimer:
    """microcontroller.watchdog; timeout in seconds (float); setting mode starts it."""

    max_timeout = None  # the simulated chip's limit (RP2040: 8.388 s); None = unlimited

    def __init__(self):
        self._timeout = 0.0
        self._mode = None
        self.feeds = 0
        self._last = None

    @property
    def timeout(self):
        return self._timeout

    @timeout.setter
    def timeout(self, t):
        t = float(t)
        if t <= 0 or (self.max_timeout is not None and t > self.max_timeout):
            raise ValueError("timeout must be <= %s" % self.max_timeout)
        self._timeout = t

    @property
    def mode(self):
        return self._mode

    @mode.setter
    def mode(self, m):
        if m is not None and self._timeout <= 0:
            raise ValueError("WatchDogTimer.timeout must be greater than 0")
        self._mode = m
        self._last = time.monotonic()

    def feed(self):
        """Restart the countdown."""
        if self._mode is None:
            raise ValueError("WatchDogTimer is not currently running")
        self.feeds += 1
        self._last = time.monotonic()

    def deinit(self):
        """Stop (not allowed in RESET mode on real chips)."""
        if self._mode == WatchDogMode.RESET:
            raise RuntimeError("WatchDogTimer cannot be deinitialized once mode is set to RESET")
        self._mode = None

    def expired(self, now=None):
        """Simulation: would the chip have reset by now (monotonic seconds)?"""
        if self._mode is None:
            return False
        return (time.monotonic() if now is None else now) - self._last > self._timeout
