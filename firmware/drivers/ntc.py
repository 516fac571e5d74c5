"""NTC thermistor on an ADC divider (Vref - R_fixed - ADC - NTC - GND), beta model.

T = 1 / (1/T0 + ln(R/R0) / B), R = R_fixed * u / (65535 - u) for a 16-bit
reading u. A reading at either rail means an open or shorted thermistor: it
is counted as an error, never converted.
"""

import math

from micropython import const

_FULL = const(65535)
_RAIL = const(64)


class NTC:
    """Driver; after measure() `values[0]` is degC or None."""

    FIELDS = ("temperature",)
    UNITS = ("Cel",)

    def __init__(self, adc, r_fixed=10000.0, r0=10000.0, t0_c=25.0, beta=3950.0, oversample=1):
        self.adc = adc
        self.r_fixed = r_fixed
        self.r0 = r0
        self.inv_t0 = 1.0 / (t0_c + 273.15)
        self.inv_beta = 1.0 / beta
        self.oversample = oversample if oversample > 0 else 1
        self.values = [None]
        self.reads = 0
        self.errors = 0
        self.last_error = None

    def celsius(self, u):
        """Temperature for a raw 16-bit reading (None at the rails)."""
        if u <= _RAIL or u >= _FULL - _RAIL:
            return None
        r = self.r_fixed * u / (_FULL - u)
        return 1.0 / (self.inv_t0 + math.log(r / self.r0) * self.inv_beta) - 273.15

    def measure(self):
        """Read one sample into `values`; False (and errors += 1) when open/shorted or on OSError."""
        try:
            s = 0
            for _ in range(self.oversample):
                s += self.adc.read_u16()
        except OSError as e:
            self.errors += 1
            self.last_error = "ntc: OSError %s" % (e.args[0] if e.args else "")
            self.values[0] = None
            return False
        t = self.celsius(s // self.oversample)
        self.reads += 1
        self.values[0] = t
        if t is None:
            self.errors += 1
            self.last_error = "ntc: open or shorted (raw %d)" % (s // self.oversample)
            return False
        return True
