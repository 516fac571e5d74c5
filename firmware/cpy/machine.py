"""MicroPython `machine` subset on CircuitPython: Pin, I2C, ADC, WDT, deepsleep, reset, unique_id.

Registered as `machine` by compat.install(), so firmware/hal.py and firmware/app.py run
unchanged. Pins are GPIO numbers (boards/*.json) -> microcontroller.pin.GPIOn, or board
names ("D10", "SCL"). I2C wraps busio.I2C (try_lock / writeto_then_readfrom / unlock) into
the readfrom_mem / writeto_mem the drivers use; every bus failure becomes OSError, so a
driver counts it instead of crashing the node.
"""

import time

import board
import microcontroller

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5
_EBUSY = 16
_ENODEV = 19


def _pin(p):
    if isinstance(p, Pin):
        return p.pin
    if isinstance(p, str):
        return getattr(board, p)
    return getattr(microcontroller.pin, "GPIO%d" % p)


class Pin:
    """GPIO; claimed as digitalio.DigitalInOut only when a mode is given (I2C/ADC pins stay free)."""

    IN = 0
    OUT = 1
    OPEN_DRAIN = 2
    PULL_UP = 1
    PULL_DOWN = 2

    def __init__(self, id, mode=-1, pull=-1, value=None):
        self.id = id
        self.pin = _pin(id)
        self.io = None
        if mode != -1:
            self.init(mode, pull, value)

    def init(self, mode=-1, pull=-1, value=None):
        """Configure as input or output (push-pull or open drain)."""
        import digitalio
        if self.io is None:
            self.io = digitalio.DigitalInOut(self.pin)
        if mode in (Pin.OUT, Pin.OPEN_DRAIN):
            dm = digitalio.DriveMode.OPEN_DRAIN if mode == Pin.OPEN_DRAIN else digitalio.DriveMode.PUSH_PULL
            self.io.switch_to_output(value=bool(value), drive_mode=dm)
        else:
            pl = {Pin.PULL_UP: digitalio.Pull.UP, Pin.PULL_DOWN: digitalio.Pull.DOWN}.get(pull)
            self.io.switch_to_input(pull=pl)

    def value(self, v=None):
        """Read (0/1) or set the level."""
        if self.io is None:
            self.init(Pin.IN)
        if v is None:
            return 1 if self.io.value else 0
        self.io.value = bool(v)

    def __call__(self, v=None):
        return self.value(v)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)


class I2C:
    """machine.I2C API over busio.I2C; the bus is (re)built lazily so a wiring fault is an OSError."""

    def __init__(self, id=0, scl=None, sda=None, freq=400000, timeout=50000):
        self.id = id
        self._scl = _pin(scl) if scl is not None else None
        self._sda = _pin(sda) if sda is not None else None
        self.freq = freq
        self._bus = None
        self.last_error = None
        try:
            self._get()
        except OSError:
            pass  # reported by the first transfer, counted by the driver

    def _get(self):
        if self._bus is None:
            try:
                if self._scl is None:
                    self._bus = board.I2C()
                else:
                    import busio
                    self._bus = busio.I2C(self._scl, self._sda, frequency=self.freq)
            except (RuntimeError, ValueError) as e:  # no pull-ups, pin in use
                self.last_error = str(e)
                raise OSError(_ENODEV, "i2c: " + str(e))
        return self._bus

    def _locked(self):
        b = self._get()
        # Single-threaded: a lock held now is held by code that is not running; do not spin.
        if not b.try_lock():
            raise OSError(_EBUSY, "i2c: bus locked")
        return b

    def _xfer(self, fn, *args):
        b = self._locked()
        try:
            return fn(b, *args)
        except OSError:
            raise
        except Exception as e:  # RuntimeError/ValueError from the port: still a bus error
            raise OSError(_ENODEV, "i2c: " + str(e))
        finally:
            b.unlock()

    def scan(self):
        """Addresses that acknowledge."""
        return self._xfer(lambda b: b.scan())

    @staticmethod
    def _reg(memaddr, addrsize):
        if addrsize == 16:
            return bytes(((memaddr >> 8) & 0xFF, memaddr & 0xFF))
        return bytes((memaddr & 0xFF,))

    def readfrom_mem_into(self, addr, memaddr, buf, addrsize=8):
        """Read registers starting at memaddr into buf (repeated start)."""
        self._xfer(lambda b: b.writeto_then_readfrom(addr, self._reg(memaddr, addrsize), buf))

    def readfrom_mem(self, addr, memaddr, nbytes, addrsize=8):
        """nbytes from registers starting at memaddr."""
        buf = bytearray(nbytes)
        self.readfrom_mem_into(addr, memaddr, buf, addrsize)
        return bytes(buf)

    def writeto_mem(self, addr, memaddr, buf, addrsize=8):
        """Write buf to registers starting at memaddr."""
        self._xfer(lambda b: b.writeto(addr, self._reg(memaddr, addrsize) + bytes(buf)))

    def readfrom_into(self, addr, buf, stop=True):
        """Plain read into buf."""
        self._xfer(lambda b: b.readfrom_into(addr, buf))

    def readfrom(self, addr, nbytes, stop=True):
        """Plain read of nbytes."""
        buf = bytearray(nbytes)
        self.readfrom_into(addr, buf)
        return bytes(buf)

    def writeto(self, addr, buf, stop=True):
        """Plain write; returns the byte count (MicroPython returns ACKs)."""
        self._xfer(lambda b: b.writeto(addr, buf))
        return len(buf)


class ADC:
    """analogio.AnalogIn as machine.ADC: read_u16() is AnalogIn.value (both 16-bit full scale)."""

    def __init__(self, pin, atten=None):
        import analogio
        self.ain = analogio.AnalogIn(_pin(pin))

    def read_u16(self):
        """0..65535."""
        return self.ain.value

    def read_uv(self):
        """Microvolts (from the reference voltage)."""
        return int(self.ain.value * self.ain.reference_voltage * 1000000 / 65535)


class WDT:
    """microcontroller.watchdog in RESET mode; timeout in ms (ValueError above the chip's limit)."""

    def __init__(self, id=0, timeout=5000):
        import watchdog
        w = microcontroller.watchdog
        w.timeout = timeout / 1000
        w.mode = watchdog.WatchDogMode.RESET
        self.w = w

    def feed(self):
        """Restart the countdown."""
        self.w.feed()


def deepsleep(ms=0):
    """Deep sleep for ms (code.py restarts on wake, like a MicroPython board reboots into main)."""
    import alarm
    a = alarm.time.TimeAlarm(monotonic_time=time.monotonic() + ms / 1000)
    alarm.exit_and_deep_sleep_until_alarms(a)


def lightsleep(ms=0):
    """Block for ms."""
    time.sleep(ms / 1000)


def reset():
    """Hard reset."""
    microcontroller.reset()


def soft_reset():
    """Restart code.py."""
    import supervisor
    supervisor.reload()


def unique_id():
    """The chip's unique id bytes."""
    return bytes(microcontroller.cpu.uid)


def freq(hz=None):
    """CPU frequency in Hz (read only here)."""
    return microcontroller.cpu.frequency


def reset_cause():
    """MicroPython reset cause from microcontroller.cpu.reset_reason."""
    r = str(getattr(microcontroller.cpu, "reset_reason", ""))
    if "WATCHDOG" in r:
        return WDT_RESET
    if "DEEP_SLEEP" in r:
        return DEEPSLEEP_RESET
    if "SOFTWARE" in r:
        return SOFT_RESET
    if "RESET_PIN" in r:
        return HARD_RESET
    return PWRON_RESET
