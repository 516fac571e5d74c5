# Condition waits for MicroPython tests (tests/mp_runner.py puts tests/ on the path as `mp_waits`).
# A test waits for what must happen, never for a fixed time: a loaded host only makes it take longer.
import asyncio
from time import ticks_ms, ticks_diff

_POLL_MS = 5


async def until(cond, ms=10000, what=None):
    """Poll cond() every 5 ms until it is true; AssertionError naming what (or cond) after ms."""
    t0 = ticks_ms()
    while not cond():
        if ticks_diff(ticks_ms(), t0) >= ms:
            raise AssertionError("not within %d ms: %s" % (ms, what or cond))
        await asyncio.sleep_ms(_POLL_MS)
