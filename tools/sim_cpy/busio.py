"""Simulated `busio.I2C` (CircuitPython 9.2) over register-level chips (tools/sim/sim_sensors.py).

I2C(scl, sda, *, frequency=100000, timeout=255); every transfer needs try_lock() first
(RuntimeError "Function requires lock" otherwise, as CircuitPython does). A chip is any
object with .addr, .read(reg, n), .write(reg, data) (simctl.attach_i2c). The register
pointer is the first byte of the last write, as on a real bus.
"""

_ENODEV = 19
_buses = {}  # (scl GPIO, sda GPIO) -> {addr: chip}


def attach(scl, sda, chip):
    """Put chip on the bus wired to these pins (test side)."""
    _buses.setdefault((scl._n, sda._n), {})[chip.addr] = chip


class I2C:
    """I2C controller; one lock holder at a time."""

    def __init__(self, scl, sda, *, frequency=100000, timeout=255):
        for p in (scl, sda):
            if p._claimed:
                raise ValueError("%r in use" % (p,))
        scl._claimed = sda._claimed = True
        self._pins = (scl, sda)
        self.frequency = frequency
        self._locked = False
        self._ptr = {}
        self.transfers = 0

    def _chips(self):
        if self._pins is None:
            raise ValueError("Object has been deinitialized and can no longer be used. Create a new object.")
        return _buses.get((self._pins[0]._n, self._pins[1]._n), {})

    def _dev(self, addr):
        if not self._locked:
            raise RuntimeError("Function requires lock")
        d = self._chips().get(addr)
        if d is None or getattr(d, "dead", False):
            raise OSError(_ENODEV)
        self.transfers += 1
        return d

    def try_lock(self):
        """True if the lock was taken."""
        if self._locked:
            return False
        self._locked = True
        return True

    def unlock(self):
        """Release the lock."""
        self._locked = False

    def deinit(self):
        """Release the pins."""
        if self._pins is not None:
            for p in self._pins:
                p._claimed = False
            self._pins = None

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.deinit()

    def scan(self):
        """Addresses that acknowledge."""
        if not self._locked:
            raise RuntimeError("Function requires lock")
        return sorted(a for a, d in self._chips().items() if not getattr(d, "dead", False))

    def _write(self, addr, data):
        d = self._dev(addr)
        data = bytes(data)
        if data:
            self._ptr[addr] = data[0]
            d.write(data[0], data[1:])
        return d

    def writeto(self, address, buffer, *, start=0, end=None):
        """Write buffer[start:end]."""
        self._write(address, memoryview(buffer)[start:end])

    def readfrom_into(self, address, buffer, *, start=0, end=None):
        """Read into buffer[start:end]."""
        d = self._dev(address)
        end = len(buffer) if end is None else end
        data = d.read(self._ptr.get(address), end - start)
        for i in range(end - start):
            buffer[start + i] = data[i]

    def writeto_then_readfrom(self, address, out_buffer, in_buffer, *, out_start=0, out_end=None, in_start=0,
                              in_end=None):
        """Write then read with a repeated start."""
        self._write(address, memoryview(out_buffer)[out_start:out_end])
        self.readfrom_into(address, in_buffer, start=in_start, end=in_end)
