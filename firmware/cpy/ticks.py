"""`time` with MicroPython's ticks_* / sleep_ms added, for CircuitPython (whose time has none).

compat.install() registers this module as `time`, so `from time import ticks_ms` in the
core and links resolves here. Ticks come from time.monotonic_ns() (exact, unlike the float
time.monotonic(), which loses ms resolution after hours on float32 boards) and wrap at
2**29 like CircuitPython's supervisor.ticks_ms(); ticks_diff() is modular, so callers that
keep differences below 2**28 ms (3.1 days) are correct across the wrap.
"""

from time import *  # noqa: F401,F403 (sleep, time, monotonic, monotonic_ns, localtime, ...)
from time import monotonic_ns as _mono_ns, sleep as _sleep

_PERIOD = 1 << 29
_MASK = _PERIOD - 1
_HALF = _PERIOD >> 1


def ticks_ms():
    """Milliseconds, wrapping at 2**29."""
    return (_mono_ns() // 1000000) & _MASK


def ticks_us():
    """Microseconds, wrapping at 2**29."""
    return (_mono_ns() // 1000) & _MASK


def ticks_add(t, delta):
    """t + delta on the ticks circle."""
    return (t + delta) & _MASK


def ticks_diff(a, b):
    """Signed a - b on the ticks circle."""
    return ((a - b + _HALF) & _MASK) - _HALF


def sleep_ms(ms):
    """Block for ms milliseconds."""
    if ms > 0:
        _sleep(ms / 1000)


def sleep_us(us):
    """Block for us microseconds."""
    if us > 0:
        _sleep(us / 1000000)


def time_ns():
    """Wall-clock ns from the integer time.time() (CircuitPython has no time_ns)."""
    return time() * 1000000000  # noqa: F405
