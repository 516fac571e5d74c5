"""Simulated `machine` for host emulation on the MicroPython unix port.

This file shadows the built-in `machine` of the unix port; the built-in one stays
reachable as `umachine`, so Pin subclasses the real `PinBase` and the real
`Signal` works with it. Simulated peripherals are wired by tests/scenarios:

    attach_adc(pin_id, fn)          fn() -> int 0..65535 (or raises OSError)
    attach_i2c(bus_id, device)      device.addr, device.read(reg, n), device.write(reg, data)
    set_clock(fn)                   ticks_ms source used by WDT/Timer/RTC (virtual clock)
    wdt_check(now_ms=None)          raises WatchdogReset when the WDT is starved
    timers_poll(now_ms=None)        runs due Timer callbacks (virtual clock)

Never imported on a real board (the board has its own `machine`).
"""

import sys
import time

import umachine

PinBase = umachine.PinBase
Signal = umachine.Signal
mem8 = umachine.mem8
mem16 = umachine.mem16
mem32 = umachine.mem32
idle = umachine.idle
time_pulse_us = umachine.time_pulse_us

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5
WAKE_REASON_TIMER = 3


class WatchdogReset(SystemExit):
    """The simulated hardware watchdog reset the board (BaseException: not swallowed by `except Exception`)."""


class DeepSleepReset(SystemExit):
    """deepsleep() ended the program; the board reboots after `ms` (see `sleep_log`)."""


class ResetException(SystemExit):
    """machine.reset() was called."""


_clock = time.ticks_ms
_reset_cause = PWRON_RESET
sleep_log = []
_STATE_ENV = "FOGLINE_SIM_STATE"


def _state_path():
    try:
        import os
        return os.getenv(_STATE_ENV)
    except Exception:
        return None


def _load_reset_cause():
    # A previous simulated run may have left why it ended (WDT, deep sleep).
    global _reset_cause
    p = _state_path()
    if not p:
        return
    try:
        with open(p) as f:
            _reset_cause = int(f.read().strip() or PWRON_RESET)
        with open(p, "w") as f:
            f.write(str(PWRON_RESET))
    except (OSError, ValueError):
        pass


def _save_reset_cause(cause):
    global _reset_cause
    _reset_cause = cause
    p = _state_path()
    if p:
        try:
            with open(p, "w") as f:
                f.write(str(cause))
        except OSError:
            pass


_load_reset_cause()


def set_clock(fn):
    """Use fn() -> ms as the time base of WDT, Timer and RTC (e.g. a virtual clock)."""
    global _clock
    _clock = fn


def now_ms():
    """Current simulated ticks_ms."""
    return _clock()


def reset_cause():
    """Why the (simulated) board last booted."""
    return _reset_cause


def wake_reason():
    """Wake reason after deep sleep (timer) or 0."""
    return WAKE_REASON_TIMER if _reset_cause == DEEPSLEEP_RESET else 0


def unique_id():
    """6-byte id; FOGLINE_UID (hex) overrides the default."""
    try:
        import os
        h = os.getenv("FOGLINE_UID")
        if h:
            import binascii
            return binascii.unhexlify(h)
    except Exception:
        pass
    return b"\x24\x0a\xc4\x00\x00\x01"


def freq(hz=None):
    """CPU frequency (fixed 240 MHz in the simulation)."""
    return 240000000


def reset():
    """Hard reset: ends the program with ResetException."""
    _save_reset_cause(HARD_RESET)
    raise ResetException("machine.reset")


def soft_reset():
    """Soft reset: ends the program with ResetException."""
    _save_reset_cause(SOFT_RESET)
    raise ResetException("machine.soft_reset")


def deepsleep(ms=0):
    """Record the sleep and end the program; the next boot reports DEEPSLEEP_RESET."""
    sleep_log.append(ms)
    _save_reset_cause(DEEPSLEEP_RESET)
    raise DeepSleepReset(ms)


def lightsleep(ms=0):
    """Sleep in place (real time)."""
    time.sleep_ms(ms)


def disable_irq():
    return 0


def enable_irq(state=0):
    pass


# ---- Pin ------------------------------------------------------------------

_pins = {}


class Pin(PinBase):
    """GPIO pin; output level readable by tests via pin_state(id) and change counters."""

    IN = 0
    OUT = 1
    OPEN_DRAIN = 2
    PULL_UP = 1
    PULL_DOWN = 2
    IRQ_RISING = 1
    IRQ_FALLING = 2

    def __init__(self, id, mode=-1, pull=-1, value=None):
        self.id = id
        self.mode = mode
        self.pull = pull
        self._v = 1 if pull == 1 else 0
        self.changes = 0
        self.last_change_us = 0
        self._irq = None
        _pins[id] = self
        if value is not None:
            self.value(value)

    def init(self, mode=-1, pull=-1, value=None):
        if mode != -1:
            self.mode = mode
        if pull != -1:
            self.pull = pull
        if value is not None:
            self.value(value)

    def value(self, v=None):
        if v is None:
            return self._v
        v = 1 if v else 0
        if v != self._v:
            self._v = v
            self.changes += 1
            self.last_change_us = time.ticks_us()
            if self._irq is not None:
                self._irq(self)

    def __call__(self, v=None):
        return self.value(v)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def low(self):
        self.value(0)

    def high(self):
        self.value(1)

    def irq(self, handler=None, trigger=3):
        self._irq = handler

    def drive(self, level):
        """Test hook: an external signal drives an input pin."""
        self.value(level)

    def __repr__(self):
        return "Pin(%s)" % (self.id,)


def pin_state(id):
    """Level of pin `id` (None if never created)."""
    p = _pins.get(id)
    return None if p is None else p._v


def get_pin(id):
    """The Pin object created for `id`, or None."""
    return _pins.get(id)


# ---- ADC ------------------------------------------------------------------

_adc_sources = {}


def attach_adc(pin_id, fn):
    """Feed ADC(pin_id).read_u16() from fn() -> 0..65535 (may raise OSError)."""
    _adc_sources[pin_id] = fn


class ADC:
    """Analog input; values come from the source attached for its pin."""

    ATTN_0DB = 0
    ATTN_11DB = 3
    WIDTH_12BIT = 12

    def __init__(self, pin, atten=None):
        self.pin_id = pin.id if isinstance(pin, Pin) else pin

    def atten(self, a):
        pass

    def width(self, w):
        pass

    def read_u16(self):
        fn = _adc_sources.get(self.pin_id)
        if fn is None:
            return 0
        v = int(fn())
        return 0 if v < 0 else (65535 if v > 65535 else v)

    def read(self):
        return self.read_u16() >> 4

    def read_uv(self):
        return self.read_u16() * 3300000 // 65535


# ---- I2C ------------------------------------------------------------------

_i2c_devices = {}
_ENODEV = 19
_ETIMEDOUT = 110


def attach_i2c(bus_id, device):
    """Put `device` (with .addr, .read(reg, n), .write(reg, data)) on bus `bus_id`."""
    _i2c_devices.setdefault(bus_id, {})[device.addr] = device


def detach_i2c(bus_id, addr):
    """Remove a device (it stops acknowledging: OSError ENODEV)."""
    d = _i2c_devices.get(bus_id)
    if d and addr in d:
        del d[addr]


class I2C:
    """I2C controller over simulated register-level devices."""

    def __init__(self, id=0, scl=None, sda=None, freq=400000, timeout=50000):
        self.bus_id = id
        self.freq = freq
        self.transfers = 0

    def _dev(self, addr):
        d = _i2c_devices.get(self.bus_id, {}).get(addr)
        if d is None or getattr(d, "dead", False):
            raise OSError(_ENODEV)
        h = getattr(d, "hangs", None)
        if getattr(d, "hang", False) or (h is not None and h()):
            # Clock stretching forever: only the watchdog gets us out.
            while True:
                pass
        self.transfers += 1
        return d

    def scan(self):
        return sorted(a for a, d in _i2c_devices.get(self.bus_id, {}).items() if not getattr(d, "dead", False))

    def readfrom_mem(self, addr, memaddr, nbytes, addrsize=8):
        return bytes(self._dev(addr).read(memaddr, nbytes))

    def readfrom_mem_into(self, addr, memaddr, buf, addrsize=8):
        data = self._dev(addr).read(memaddr, len(buf))
        for i in range(len(buf)):
            buf[i] = data[i]

    def writeto_mem(self, addr, memaddr, buf, addrsize=8):
        self._dev(addr).write(memaddr, bytes(buf))

    def readfrom(self, addr, nbytes, stop=True):
        return bytes(self._dev(addr).read(None, nbytes))

    def readfrom_into(self, addr, buf, stop=True):
        data = self._dev(addr).read(None, len(buf))
        for i in range(len(buf)):
            buf[i] = data[i]

    def writeto(self, addr, buf, stop=True):
        d = self._dev(addr)
        buf = bytes(buf)
        if len(buf) == 1:
            d.write(buf[0], b"")
        elif buf:
            d.write(buf[0], buf[1:])
        return len(buf)


SoftI2C = I2C


# ---- WDT ------------------------------------------------------------------

_wdts = []


class WDT:
    """Watchdog: must be fed within timeout ms.

    Cooperative check: wdt_check() raises WatchdogReset when starved (virtual
    clock). Hardware emulation: unless FOGLINE_SIM_WDT=0, a thread watches real
    time and kills the process (exit 137, like a hard reset) when the program
    hangs in a blocking call and stops feeding.
    """

    def __init__(self, id=0, timeout=5000):
        self.timeout = timeout
        self.last_feed = _clock()
        self.fed = 0
        self._real_feed = time.ticks_ms()
        self.stopped = False
        _wdts.append(self)
        try:
            import os
            thread = os.getenv("FOGLINE_SIM_WDT") != "0"
        except Exception:
            thread = True
        if thread:
            try:
                import _thread
                _thread.start_new_thread(self._watch, ())
            except Exception:
                pass

    def feed(self):
        self.last_feed = _clock()
        self._real_feed = time.ticks_ms()
        self.fed += 1

    def starved(self, now=None):
        if now is None:
            now = _clock()
        return time.ticks_diff(now, self.last_feed) > self.timeout

    def _watch(self):
        while not self.stopped:
            time.sleep_ms(20)
            if self.stopped:
                return
            if time.ticks_diff(time.ticks_ms(), self._real_feed) > self.timeout:
                _save_reset_cause(WDT_RESET)
                sys.stderr.write("machine.WDT: watchdog reset (not fed for %d ms)\n" % self.timeout)
                import os
                os.system("kill -9 $PPID")
                return


def wdt_check(now=None):
    """Raise WatchdogReset if any WDT was not fed within its timeout (by the sim clock)."""
    for w in _wdts:
        if w.starved(now):
            _save_reset_cause(WDT_RESET)
            raise WatchdogReset("watchdog not fed for %d ms" % w.timeout)


# ---- Timer / RTC -------------------------------------------------------------

_timers = []


class Timer:
    """Software timer; callbacks run from timers_poll() (no interrupts in the simulation)."""

    ONE_SHOT = 0
    PERIODIC = 1

    def __init__(self, id=-1, mode=PERIODIC, period=-1, callback=None, freq=-1):
        self.callback = None
        if callback is not None:
            self.init(mode=mode, period=period, callback=callback, freq=freq)

    def init(self, mode=PERIODIC, period=-1, callback=None, freq=-1):
        if freq > 0:
            period = 1000 // freq
        self.mode = mode
        self.period = period
        self.callback = callback
        self.due = time.ticks_add(_clock(), period)
        if self not in _timers:
            _timers.append(self)

    def deinit(self):
        if self in _timers:
            _timers.remove(self)


def timers_poll(now=None):
    """Run due timer callbacks; returns how many fired."""
    if now is None:
        now = _clock()
    n = 0
    for t in list(_timers):
        if t.callback is not None and time.ticks_diff(now, t.due) >= 0:
            n += 1
            if t.mode == Timer.PERIODIC:
                t.due = time.ticks_add(t.due, t.period)
            else:
                t.deinit()
            t.callback(t)
    return n


class RTC:
    """Real-time clock: epoch from time.time() plus an offset set by datetime()."""

    _offset = 0

    def __init__(self, id=0):
        pass

    def datetime(self, dt=None):
        if dt is None:
            g = time.gmtime(int(time.time()) + RTC._offset)
            return (g[0], g[1], g[2], g[6], g[3], g[4], g[5], 0)
        y, mo, d, h, mi, s = dt[0], dt[1], dt[2], dt[4], dt[5], dt[6]
        RTC._offset = time.mktime((y, mo, d, h, mi, s, 0, 0, 0)) - int(time.time())

    def init(self, dt):
        self.datetime(dt)


def reset_sim():
    """Forget pins, sources, devices, timers and watchdogs (between test cases)."""
    _pins.clear()
    _adc_sources.clear()
    _i2c_devices.clear()
    _timers.clear()
    for w in _wdts:
        w.stopped = True
    del _wdts[:]
    del sleep_log[:]
