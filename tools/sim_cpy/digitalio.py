"""Simulated `digitalio` (CircuitPython 9.2): DigitalInOut, Direction, Pull, DriveMode."""

import time


class Direction:
    INPUT = "INPUT"
    OUTPUT = "OUTPUT"


class Pull:
    UP = "UP"
    DOWN = "DOWN"


class DriveMode:
    PUSH_PULL = "PUSH_PULL"
    OPEN_DRAIN = "OPEN_DRAIN"


def _claim(pin):
    if pin._claimed:
        raise ValueError("%r in use" % (pin,))
    pin._claimed = True


class DigitalInOut:
    """DigitalInOut(pin): starts as an input; switch_to_output()/direction to drive it."""

    def __init__(self, pin):
        _claim(pin)
        self._pin = pin
        self._dir = Direction.INPUT
        self._pull = None
        self._drive = DriveMode.PUSH_PULL

    def _check(self):
        if self._pin is None:
            raise ValueError("Object has been deinitialized and can no longer be used. Create a new object.")

    def deinit(self):
        """Release the pin."""
        if self._pin is not None:
            self._pin._claimed = False
            self._pin = None

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.deinit()

    def switch_to_output(self, value=False, drive_mode=DriveMode.PUSH_PULL):
        """Output at `value`."""
        self._check()
        self._dir = Direction.OUTPUT
        self._drive = drive_mode
        self._set(bool(value))

    def switch_to_input(self, pull=None):
        """Input with an optional pull."""
        self._check()
        self._dir = Direction.INPUT
        self.pull = pull

    def _set(self, v):
        p = self._pin
        if p._level != v or not p._history:
            p._history.append((time.monotonic_ns(), v))
        p._level = v

    @property
    def direction(self):
        self._check()
        return self._dir

    @direction.setter
    def direction(self, d):
        if d == Direction.OUTPUT:
            self.switch_to_output()
        elif d == Direction.INPUT:
            self.switch_to_input()
        else:
            raise ValueError("Invalid direction.")

    @property
    def value(self):
        self._check()
        p = self._pin
        if self._dir == Direction.INPUT and p._source is not None:
            return bool(p._source())  # externally driven (test side)
        if self._dir == Direction.INPUT and p._source is None and self._pull is not None:
            return self._pull == Pull.UP
        return p._level

    @value.setter
    def value(self, v):
        self._check()
        if self._dir != Direction.OUTPUT:
            raise AttributeError("Cannot set value when direction is input.")
        self._set(bool(v))

    @property
    def pull(self):
        return self._pull

    @pull.setter
    def pull(self, p):
        self._check()
        if self._dir == Direction.OUTPUT:
            raise AttributeError("Pull not used when direction is output.")
        if p not in (None, Pull.UP, Pull.DOWN):
            raise ValueError("Invalid pull")
        self._pull = p

    @property
    def drive_mode(self):
        return self._drive
