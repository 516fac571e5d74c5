"""Make CircuitPython look like the MicroPython the core was written for; call install() first.

    from firmware.cpy import compat; compat.install()   # then: from firmware import app; app.main()

What it adds (only where the running interpreter lacks it, except where noted):
  time        -> firmware.cpy.ticks (ticks_ms/us/add/diff, sleep_ms/us over time.monotonic_ns)
  asyncio     .sleep_ms / .wait_for_ms (CircuitPython's asyncio library has them; CPython does not)
              .open_connection -> firmware.cpy.sockets (always: the library's needs `usocket`)
  machine     -> firmware.cpy.machine (busio/digitalio/analogio/microcontroller.watchdog/alarm)
  network     -> firmware.cpy.network (wifi.radio)
  bluetooth   -> firmware.cpy.bluetooth (_bleio.adapter advertising)
  cryptolib   -> firmware.cpy.cryptolib (aesio ECB)
  socket      -> firmware.cpy.sockets (socketpool)
  hashlib     .sha256 from hashlib.new("sha256") when the port only has new()
uninstall() undoes it (tests on CPython).
"""

import sys

_MISSING = object()
_undo = []


def _put(name, mod):
    _undo.append((None, name, sys.modules.get(name, _MISSING)))
    sys.modules[name] = mod


def _set(obj, name, val):
    _undo.append((obj, name, getattr(obj, name, _MISSING)))
    setattr(obj, name, val)


def _absent(name):
    try:
        __import__(name)
        return False
    except ImportError:
        return True


def _sleep_ms(ms):
    import asyncio
    return asyncio.sleep(ms / 1000)


async def _wait_for_ms(aw, ms):
    """aw's result, asyncio.TimeoutError after ms; a cancel of the caller is never lost (MicroPython's semantics)."""
    # Not asyncio.wait_for: before CPython 3.12 it returns aw's result when the caller is cancelled
    # in the moment aw completes (CPython gh-86296), so a task cancelled just after its Event was
    # set (the uplink right after an ack) went on running. asyncio.wait never swallows a cancel.
    import asyncio
    t = asyncio.ensure_future(aw)
    try:
        await asyncio.wait((t,), timeout=ms / 1000)
    except BaseException:
        t.cancel()
        raise
    if not t.done():
        t.cancel()
        await asyncio.wait((t,))  # aw cleans up; a cancel of the caller meanwhile propagates
        if t.cancelled():
            raise asyncio.TimeoutError
    return t.result()


class _HashlibCompat:
    """hashlib with sha256() for ports that only offer hashlib.new(name, data)."""

    def __init__(self, real):
        self._real = real
        self.new = real.new

    def sha256(self, data=b""):
        """SHA-256 from the port's hashlib.new, else the adafruit_hashlib library (/lib)."""
        try:
            return self._real.new("sha256", data)
        except ValueError:  # this port's hashlib has no sha256
            import adafruit_hashlib
            return adafruit_hashlib.sha256(data)


def installed():
    """True after install()."""
    return bool(_undo)


def install():
    """Register the shims (idempotent)."""
    if _undo:
        return
    _undo.append((None, None, None))  # marker: installed, even if nothing else was needed
    import time
    if not hasattr(time, "ticks_ms"):
        from firmware.cpy import ticks
        _put("time", ticks)
    import asyncio
    from firmware.cpy import sockets
    if not hasattr(asyncio, "sleep_ms"):
        _set(asyncio, "sleep_ms", _sleep_ms)
    if not hasattr(asyncio, "wait_for_ms"):
        _set(asyncio, "wait_for_ms", _wait_for_ms)
    _set(asyncio, "open_connection", sockets.open_connection)
    for name in ("machine", "network", "bluetooth", "cryptolib"):
        if _absent(name):
            _put(name, __import__("firmware.cpy." + name, None, None, [name]))
    if _absent("socket"):
        _put("socket", sockets)
    import hashlib
    if not hasattr(hashlib, "sha256") and hasattr(hashlib, "new"):
        _put("hashlib", _HashlibCompat(hashlib))


def uninstall():
    """Undo install() (host tests)."""
    while _undo:
        obj, name, old = _undo.pop()
        if name is None:
            continue
        if obj is None:
            if old is _MISSING:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old
        elif old is _MISSING:
            delattr(obj, name)
        else:
            setattr(obj, name, old)
