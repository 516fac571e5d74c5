"""Bosch BME280 (temperature, pressure, humidity) over I2C, bus passed in.

Normal mode (continuous conversions), so a sample is one 8-byte burst read
and never waits. Compensation is the datasheet's integer code (rev 1.6,
section 4.2.3: int32 temperature/humidity, int64 pressure). A bus error is
counted in `errors`, kept in `last_error`, and makes measure() return False.
"""

from micropython import const

_REG_ID = const(0xD0)
_REG_CAL1 = const(0x88)
_REG_CAL2 = const(0xE1)
_REG_CTRL_HUM = const(0xF2)
_REG_CTRL_MEAS = const(0xF4)
_REG_CONFIG = const(0xF5)
_REG_DATA = const(0xF7)
_CHIP_ID = const(0x60)
_SKIPPED = const(0x80000)


def _u16(b, i):
    return b[i] | (b[i + 1] << 8)


def _s16(b, i):
    v = b[i] | (b[i + 1] << 8)
    return v - 65536 if v > 32767 else v


def _tdiv(a, b):
    # C integer division truncates toward zero.
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


class BME280:
    """Driver; after measure() `values` holds [degC, Pa, %RH] (None when not read)."""

    FIELDS = ("temperature", "pressure", "humidity")
    UNITS = ("Cel", "Pa", "%RH")

    def __init__(self, i2c, addr=0x76, osrs=1):
        self.i2c = i2c
        self.addr = addr
        self.osrs = osrs & 7
        self.cal = None
        self.ready = False
        self.values = [None, None, None]
        self.buf = bytearray(8)
        self.reads = 0
        self.errors = 0
        self.last_error = None

    def setup(self):
        """Check the chip id, load calibration, start normal mode (raises OSError)."""
        if self.i2c.readfrom_mem(self.addr, _REG_ID, 1)[0] != _CHIP_ID:
            raise OSError(19)
        a = self.i2c.readfrom_mem(self.addr, _REG_CAL1, 26)
        b = self.i2c.readfrom_mem(self.addr, _REG_CAL2, 7)
        e4, e5, e6 = b[3], b[4], b[5]
        h4 = (e4 << 4) | (e5 & 0x0F)
        h5 = (e6 << 4) | (e5 >> 4)
        self.cal = (
            _u16(a, 0), _s16(a, 2), _s16(a, 4),
            _u16(a, 6), _s16(a, 8), _s16(a, 10), _s16(a, 12), _s16(a, 14),
            _s16(a, 16), _s16(a, 18), _s16(a, 20), _s16(a, 22),
            a[25], _s16(b, 0), b[2],
            h4 - 4096 if h4 > 2047 else h4, h5 - 4096 if h5 > 2047 else h5,
            b[6] - 256 if b[6] > 127 else b[6],
        )
        o = self.osrs
        self.i2c.writeto_mem(self.addr, _REG_CTRL_HUM, bytes((o,)))
        self.i2c.writeto_mem(self.addr, _REG_CONFIG, b"\x00")  # t_sb 0.5 ms, filter off
        self.i2c.writeto_mem(self.addr, _REG_CTRL_MEAS, bytes(((o << 5) | (o << 2) | 3,)))
        self.ready = True

    def measure(self):
        """Read one sample into `values`; False (and errors += 1) on a bus error."""
        v = self.values
        try:
            if not self.ready:
                self.setup()
            self.i2c.readfrom_mem_into(self.addr, _REG_DATA, self.buf)
        except OSError as e:
            self.errors += 1
            self.ready = False  # the part may have been power-cycled: set it up again
            self.last_error = "bme280@%d: OSError %s" % (self.addr, e.args[0] if e.args else "")
            v[0] = v[1] = v[2] = None
            return False
        d = self.buf
        adc_p = (d[0] << 12) | (d[1] << 4) | (d[2] >> 4)
        adc_t = (d[3] << 12) | (d[4] << 4) | (d[5] >> 4)
        adc_h = (d[6] << 8) | d[7]
        self.reads += 1
        if adc_t == _SKIPPED:
            self.errors += 1
            self.last_error = "bme280: no conversion yet"
            v[0] = v[1] = v[2] = None
            return False
        t, t_fine = self.compensate_t(adc_t)
        v[0] = t / 100.0
        v[1] = None if adc_p == _SKIPPED else self.compensate_p(adc_p, t_fine) / 256.0
        v[2] = None if adc_h == 0x8000 else self.compensate_h(adc_h, t_fine) / 1024.0
        return True

    def compensate_t(self, adc_t):
        """(temperature in 0.01 degC, t_fine) from the raw 20-bit code."""
        c = self.cal
        var1 = (((adc_t >> 3) - (c[0] << 1)) * c[1]) >> 11
        var2 = (((((adc_t >> 4) - c[0]) * ((adc_t >> 4) - c[0])) >> 12) * c[2]) >> 14
        t_fine = var1 + var2
        return (t_fine * 5 + 128) >> 8, t_fine

    def compensate_p(self, adc_p, t_fine):
        """Pressure in Pa as Q24.8 (datasheet int64 routine)."""
        c = self.cal
        var1 = t_fine - 128000
        var2 = var1 * var1 * c[8]
        var2 = var2 + ((var1 * c[7]) << 17)
        var2 = var2 + (c[6] << 35)
        var1 = ((var1 * var1 * c[5]) >> 8) + ((var1 * c[4]) << 12)
        var1 = (((1 << 47) + var1) * c[3]) >> 33
        if var1 == 0:
            return 0
        p = 1048576 - adc_p
        p = _tdiv(((p << 31) - var2) * 3125, var1)
        var1 = (c[11] * (p >> 13) * (p >> 13)) >> 25
        var2 = (c[10] * p) >> 19
        return ((p + var1 + var2) >> 8) + (c[9] << 4)

    def compensate_h(self, adc_h, t_fine):
        """Relative humidity in %RH as Q22.10 (datasheet int32 routine)."""
        c = self.cal
        h1, h2, h3, h4, h5, h6 = c[12], c[13], c[14], c[15], c[16], c[17]
        v = t_fine - 76800
        v = ((((adc_h << 14) - (h4 << 20) - (h5 * v)) + 16384) >> 15) * \
            (((((((v * h6) >> 10) * (((v * h3) >> 11) + 32768)) >> 10) + 2097152) * h2 + 8192) >> 14)
        v = v - (((((v >> 15) * (v >> 15)) >> 7) * h1) >> 4)
        v = 0 if v < 0 else (419430400 if v > 419430400 else v)
        return v >> 12
