"""Simulated sensors at register / ADC level (host emulation only).

BME280Sim: Bosch BME280 register map (chip id 0xD0 = 0x60, reset 0xE0,
calibration 0x88..0xA1 and 0xE1..0xE7, ctrl_hum 0xF2, status 0xF3, ctrl_meas
0xF4, config 0xF5, burst data 0xF7..0xFE). A measurement (forced or normal
mode) turns the physical values from the source callables into raw ADC codes
by inverting the datasheet's integer compensation (BME280 datasheet rev 1.6,
section 4.2.3), so a correct driver reads back the physical value to the
sensor's resolution. Calibration words are the BMP280 datasheet example
(section 3.12) plus humidity words of a real part.

SHT4xSim: Sensirion SHT4x command interface (0xFD measure high repeatability,
0x94 soft reset, 0x89 serial number); answers 6 bytes with CRC-8 (0x31, 0xFF)
per the datasheet's inverse formulas S_T = (T + 45) * 65535 / 175.

NTCDivider: Vref - R_fixed - (ADC) - NTC - GND, beta model; an open sensor
reads full scale.
"""

import math

CHIP_ID = 0x60
CAL_T = (27504, 26435, -1000)
CAL_P = (36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000)
CAL_H = (75, 362, 0, 313, 50, 30)
_EIO = 5


def _tdiv(a, b):
    # C integer division truncates toward zero.
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def comp_t(adc_t, cal=CAL_T):
    """Datasheet int32 compensation: (T in 0.01 degC, t_fine)."""
    t1, t2, t3 = cal
    var1 = (((adc_t >> 3) - (t1 << 1)) * t2) >> 11
    var2 = (((((adc_t >> 4) - t1) * ((adc_t >> 4) - t1)) >> 12) * t3) >> 14
    t_fine = var1 + var2
    return (t_fine * 5 + 128) >> 8, t_fine


def comp_p(adc_p, t_fine, cal=CAL_P):
    """Datasheet int64 compensation: pressure in Pa as Q24.8."""
    p1, p2, p3, p4, p5, p6, p7, p8, p9 = cal
    var1 = t_fine - 128000
    var2 = var1 * var1 * p6
    var2 = var2 + ((var1 * p5) << 17)
    var2 = var2 + (p4 << 35)
    var1 = ((var1 * var1 * p3) >> 8) + ((var1 * p2) << 12)
    var1 = (((1 << 47) + var1) * p1) >> 33
    if var1 == 0:
        return 0
    p = 1048576 - adc_p
    p = _tdiv(((p << 31) - var2) * 3125, var1)
    var1 = (p9 * (p >> 13) * (p >> 13)) >> 25
    var2 = (p8 * p) >> 19
    return ((p + var1 + var2) >> 8) + (p7 << 4)


def comp_h(adc_h, t_fine, cal=CAL_H):
    """Datasheet int32 compensation: humidity in %RH as Q22.10."""
    h1, h2, h3, h4, h5, h6 = cal
    v = t_fine - 76800
    v = ((((adc_h << 14) - (h4 << 20) - (h5 * v)) + 16384) >> 15) * \
        (((((((v * h6) >> 10) * (((v * h3) >> 11) + 32768)) >> 10) + 2097152) * h2 + 8192) >> 14)
    v = v - (((((v >> 15) * (v >> 15)) >> 7) * h1) >> 4)
    v = 0 if v < 0 else v
    v = 419430400 if v > 419430400 else v
    return v >> 12


def _search(f, target, lo, hi, increasing):
    # Smallest code whose output reaches target (f monotonic), then the closer neighbour.
    while lo < hi:
        mid = (lo + hi) // 2
        v = f(mid)
        if (v < target) if increasing else (v > target):
            lo = mid + 1
        else:
            hi = mid
    if lo > 0 and abs(f(lo - 1) - target) < abs(f(lo) - target):
        return lo - 1
    return lo


def calibration_bytes():
    """(block 0x88..0xA1 = 26 bytes, block 0xE1..0xE7 = 7 bytes) as the chip stores them."""
    import struct
    a = struct.pack("<HhhHhhhhhhhh", CAL_T[0], CAL_T[1], CAL_T[2], *CAL_P) + b"\x00" + bytes([CAL_H[0]])
    h2, h3, h4, h5, h6 = CAL_H[1], CAL_H[2], CAL_H[3], CAL_H[4], CAL_H[5]
    b = struct.pack("<hB", h2, h3) + bytes([(h4 >> 4) & 0xFF, (h4 & 0x0F) | ((h5 & 0x0F) << 4), (h5 >> 4) & 0xFF,
                                            h6 & 0xFF])
    return a, b


class BME280Sim:
    """Register-level BME280 on a simulated I2C bus; sources return degC, Pa, %RH or None."""

    def __init__(self, temperature, pressure=None, humidity=None, addr=0x76):
        self.addr = addr
        self.src_t = temperature
        self.src_p = pressure
        self.src_h = humidity
        self.regs = bytearray(256)
        self.measurements = 0
        self.dead = False  # test hook: stop acknowledging (I2C ENODEV)
        self.hang = False  # test hook: clock-stretch forever
        self.nack = False
        self.fail_next = 0
        self._reset()

    def _reset(self):
        r = self.regs
        for i in range(256):
            r[i] = 0
        r[0xD0] = CHIP_ID
        a, b = calibration_bytes()
        r[0x88:0x88 + len(a)] = a
        r[0xE1:0xE1 + len(b)] = b
        # Data registers after reset: 0x80000 (skipped) pattern.
        r[0xF7:0xFF] = b"\x80\x00\x00\x80\x00\x00\x80\x00"

    def _measure(self):
        t = self.src_t()
        if t is None:
            self.nack = True
            return
        self.nack = False
        ctrl_meas = self.regs[0xF4]
        adc_t = _search(lambda c: comp_t(c)[0], int(round(t * 100)), 0, (1 << 20) - 1, True)
        t_fine = comp_t(adc_t)[1]
        adc_p = 0x80000
        if self.src_p is not None and (ctrl_meas >> 2) & 7:
            p = self.src_p()
            if p is not None:
                adc_p = _search(lambda c: comp_p(c, t_fine), int(round(p * 256)), 0, (1 << 20) - 1, False)
        adc_h = 0x8000
        if self.src_h is not None and self.regs[0xF2] & 7:
            h = self.src_h()
            if h is not None:
                adc_h = _search(lambda c: comp_h(c, t_fine), int(round(h * 1024)), 0, 65535, True)
        if not (ctrl_meas >> 5) & 7:
            adc_t = 0x80000
        r = self.regs
        r[0xF7] = adc_p >> 12
        r[0xF8] = (adc_p >> 4) & 0xFF
        r[0xF9] = (adc_p & 0x0F) << 4
        r[0xFA] = adc_t >> 12
        r[0xFB] = (adc_t >> 4) & 0xFF
        r[0xFC] = (adc_t & 0x0F) << 4
        r[0xFD] = adc_h >> 8
        r[0xFE] = adc_h & 0xFF
        self.measurements += 1

    def _fault(self):
        if self.fail_next:
            self.fail_next -= 1
            raise OSError(_EIO)
        if self.nack:
            # The source says the sensor is gone; it answers again once the source returns values.
            self.nack = self.src_t() is None
            if self.nack:
                raise OSError(_EIO)

    def read(self, reg, n):
        if reg is None:
            reg = 0
        if reg == 0xF7 and self.regs[0xF4] & 3 == 3 and not self.fail_next:
            self._measure()  # normal mode: a fresh conversion is always waiting
        self._fault()
        return bytes(self.regs[reg:reg + n])

    def write(self, reg, data):
        if self.fail_next:
            self.fail_next -= 1
            raise OSError(_EIO)
        for i in range(len(data)):
            a = reg + i
            v = data[i]
            if a == 0xE0:
                if v == 0xB6:
                    self._reset()
            elif a in (0xF2, 0xF4, 0xF5):
                self.regs[a] = v
                if a == 0xF4 and v & 3 in (1, 2):
                    # Forced mode: one conversion, then back to sleep. Normal mode converts on read.
                    self._measure()
                    self.regs[0xF4] = v & 0xFC


def sht_crc8(b):
    """Sensirion CRC-8 of two bytes."""
    c = 0xFF
    for x in b:
        c ^= x
        for _ in range(8):
            c = ((c << 1) ^ 0x31) & 0xFF if c & 0x80 else (c << 1) & 0xFF
    return c


class SHT4xSim:
    """Command-level SHT4x; sources return degC and %RH (None: the chip stops answering)."""

    def __init__(self, temperature, humidity, addr=0x44, serial=0x0E5A3C21):
        self.addr = addr
        self.src_t = temperature
        self.src_h = humidity
        self.serial = serial
        self.out = b""
        self.dead = False
        self.hang = False
        self.corrupt_next = 0
        self.measurements = 0

    def _words(self, a, b):
        w = bytes((a >> 8, a & 0xFF))
        v = bytes((b >> 8, b & 0xFF))
        return w + bytes((sht_crc8(w),)) + v + bytes((sht_crc8(v),))

    def write(self, cmd, data):
        if cmd in (0xFD, 0xF6, 0xE0):
            t, h = self.src_t(), self.src_h()
            if t is None or h is None:
                self.out = None
                return
            st = int(round((t + 45.0) * 65535.0 / 175.0))
            srh = int(round((h + 6.0) * 65535.0 / 125.0))
            st = 0 if st < 0 else (65535 if st > 65535 else st)
            srh = 0 if srh < 0 else (65535 if srh > 65535 else srh)
            self.out = self._words(st, srh)
            self.measurements += 1
        elif cmd == 0x89:
            self.out = self._words(self.serial >> 16, self.serial & 0xFFFF)
        elif cmd == 0x94:
            self.out = b""

    def read(self, reg, n):
        if self.out is None:
            raise OSError(_EIO)  # no acknowledge while the source says the chip is gone
        out = bytearray(self.out[:n])
        if self.corrupt_next and out:
            self.corrupt_next -= 1
            out[0] ^= 0x01
        return bytes(out)


class NTCDivider:
    """NTC thermistor on the low side of a divider; read_u16() as the ADC sees it."""

    def __init__(self, source, r_fixed=10000.0, r0=10000.0, t0_c=25.0, beta=3950.0, noise_lsb=0):
        self.source = source
        self.r_fixed = r_fixed
        self.r0 = r0
        self.t0 = t0_c + 273.15
        self.beta = beta
        self.reads = 0

    def resistance(self, t_c):
        """NTC resistance at t_c (beta model)."""
        return self.r0 * math.exp(self.beta * (1.0 / (t_c + 273.15) - 1.0 / self.t0))

    def read_u16(self):
        self.reads += 1
        t = self.source()
        if t is None:
            return 65535  # open thermistor: node pulled to Vref
        r = self.resistance(t)
        return int(round(65535.0 * r / (r + self.r_fixed)))
