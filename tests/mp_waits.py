# Condition waits for MicroPython tests (tests/mp_runner.py puts tests/ on the path: `from mp_waits import
# until`); also runs on CPython (`from tests.mp_waits import until`, the CircuitPython adapter tests).
# A test waits for what must happen, never for a fixed time: a loaded host only makes it take longer.
import asyncio

try:
    from time import ticks_ms, ticks_diff
except ImportError:  # CPython
    from time import monotonic as _mono

    def ticks_ms():
        return int(_mono() * 1000)

    def ticks_diff(a, b):
        return a - b

_POLL_S = 0.005


async def until(cond, ms=10000, what=None):
    """Poll cond() every 5 ms until it is true; AssertionError naming what (or cond) after ms."""
    t0 = ticks_ms()
    while not cond():
        if ticks_diff(ticks_ms(), t0) >= ms:
            raise AssertionError("not within %d ms: %s" % (ms, what or cond))
        await asyncio.sleep(_POLL_S)
