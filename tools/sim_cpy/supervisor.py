"""Simulated `supervisor` (CircuitPython 9.2): ticks_ms() (wraps at 2**29), runtime, reload()."""

import time


def ticks_ms():
    """Milliseconds, wrapping at 2**29 like CircuitPython's."""
    return (time.monotonic_ns() // 1000000) & ((1 << 29) - 1)


class _Runtime:
    usb_connected = True
    serial_connected = False
    safe_mode_reason = None


runtime = _Runtime()


def reload():
    """Restart code.py (the simulation raises SystemExit)."""
    raise SystemExit("supervisor.reload()")
