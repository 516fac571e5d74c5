"""Simulated `microcontroller` (CircuitPython 9.2): Pin, pin.GPIOn, watchdog, cpu, reset, nvm."""

import time

import watchdog as _wd


class Pin:
    """A GPIO identity (CircuitPython pins are plain objects; board.X aliases them)."""

    def __init__(self, n):
        self._n = n
        self._claimed = False
        self._level = False  # simulated electrical level
        self._history = []  # (time.monotonic_ns(), level)
        self._source = None  # analog source (test side)
        self._pull = None

    def __repr__(self):
        return "board.GPIO%d" % self._n

    def __hash__(self):
        return self._n

    def __eq__(self, other):
        return isinstance(other, Pin) and other._n == self._n


class _Pins:
    pass


pin = _Pins()
for _i in range(49):
    setattr(pin, "GPIO%d" % _i, Pin(_i))


class _Processor:
    frequency = 240000000
    temperature = 31.5
    voltage = 3.3
    uid = bytearray(b"\x7c\xdf\xa1\x01\x02\x03")

    def __init__(self):
        self.reset_reason = None


cpu = _Processor()
cpus = (cpu,)
nvm = bytearray(8192)


class ResetSim(SystemExit):
    """Raised by reset() in the simulation (a board would reboot)."""


def reset():
    """Reset the board (the simulation raises ResetSim)."""
    raise ResetSim("microcontroller.reset()")


def delay_us(delay):
    """Busy-wait."""
    time.sleep(delay / 1e6)


class RunMode:
    NORMAL = 0
    SAFE_MODE = 1
    UF2 = 2
    BOOTLOADER = 3


def on_next_reset(run_mode):
    """Next reset's run mode."""
    global next_mode
    next_mode = run_mode


next_mode = RunMode.NORMAL
watchdog = _wd.WatchDogTimer()


def _reset_sim():
    for i in range(49):
        p = getattr(pin, "GPIO%d" % i)
        p._claimed = False
        p._level = False
        p._history = []
        p._source = None
    global watchdog
    watchdog = _wd.WatchDogTimer()
