"""Sensirion SHT4x (temperature, humidity) over I2C, bus passed in.

Datasheet (SHT4x v6.6): command 0xFD = measure T & RH, high repeatability,
max 8.3 ms; the answer is 6 bytes, T[2] CRC RH[2] CRC, CRC-8 polynomial 0x31
init 0xFF. T = -45 + 175 * S_T / 65535 degC, RH = -6 + 125 * S_RH / 65535 %RH
(clipped to 0..100). The driver pipelines: each measure() reads the
conversion started by the previous one and starts the next, so sampling never
waits 8 ms; only the very first call waits once. A CRC mismatch or bus error is
counted in `errors` and never raised.
"""

import time

from micropython import const

_MEASURE_HIGH = const(0xFD)
_WAIT_MS = const(9)


def crc8(buf, start=0, n=2):
    """Sensirion CRC-8 (poly 0x31, init 0xFF) of buf[start:start+n]."""
    c = 0xFF
    for i in range(start, start + n):
        c ^= buf[i]
        for _ in range(8):
            c = ((c << 1) ^ 0x31) & 0xFF if c & 0x80 else (c << 1) & 0xFF
    return c


class SHT4x:
    """Driver; after measure() `values` holds [degC, %RH] (None when not read)."""

    FIELDS = ("temperature", "humidity")
    UNITS = ("Cel", "%RH")

    def __init__(self, i2c, addr=0x44):
        self.i2c = i2c
        self.addr = addr
        self.values = [None, None]
        self.buf = bytearray(6)
        self.cmd = bytes((_MEASURE_HIGH,))
        self.started = False
        self.reads = 0
        self.errors = 0
        self.last_error = None

    def _fail(self, why):
        self.errors += 1
        self.last_error = "sht4x@%d: %s" % (self.addr, why)
        self.values[0] = self.values[1] = None
        self.started = False
        return False

    def measure(self):
        """Read the pending conversion into `values` and start the next; False on error."""
        try:
            if not self.started:
                self.i2c.writeto(self.addr, self.cmd)
                time.sleep(_WAIT_MS / 1000)  # sleep(float): MicroPython and CircuitPython alike
            self.i2c.readfrom_into(self.addr, self.buf)
            self.i2c.writeto(self.addr, self.cmd)
            self.started = True
        except OSError as e:
            return self._fail("OSError %s" % (e.args[0] if e.args else ""))
        b = self.buf
        if crc8(b, 0) != b[2] or crc8(b, 3) != b[5]:
            return self._fail("CRC mismatch")
        self.reads += 1
        self.values[0] = self.celsius((b[0] << 8) | b[1])
        self.values[1] = self.humidity((b[3] << 8) | b[4])
        return True

    @staticmethod
    def celsius(st):
        """Temperature from the raw 16-bit signal."""
        return -45.0 + 175.0 * st / 65535.0

    @staticmethod
    def humidity(srh):
        """Relative humidity from the raw 16-bit signal, clipped to 0..100."""
        h = -6.0 + 125.0 * srh / 65535.0
        return 0.0 if h < 0.0 else (100.0 if h > 100.0 else h)
