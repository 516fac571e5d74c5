"""Power source and battery gauge for the `state` capabilities (integer maths: no float per read).

    gauge = Battery(adc, divider=2, empty_mv=3300, full_mv=4200)
    gauge.percent() -> 0..100 (int)      gauge.mv() -> battery millivolts (int)
    battery_from_config(cfg, adc_class) -> Battery or None (hw.battery absent)
    Gauge(app, cfg).read() -> percent or None (what firmware/app.py puts in `state`)

The ADC is anything with MicroPython's `read_u16()` (and optionally `read_uv()`, the
calibrated ESP32 reading): a board's machine.ADC, or the simulated one in tools/sim.
Read only when `state` is built (every state_ms), never per sample.
"""

from micropython import const

_VREF_MV = const(3300)  # full-scale of read_u16() when the port has no calibrated read_uv()
_AVG = const(4)  # reads averaged per gauge reading: ADC noise on an ESP32 is a few LSB


def percent_of(mv, empty_mv, full_mv):
    """Linear state of charge in whole percent, clamped to 0..100 (good enough for LiPo above 3.5 V)."""
    if mv <= empty_mv:
        return 0
    if mv >= full_mv:
        return 100
    return (mv - empty_mv) * 100 // (full_mv - empty_mv)


class Battery:
    """A battery voltage behind a resistor divider on one ADC pin."""

    def __init__(self, adc, divider=2, empty_mv=3300, full_mv=4200):
        self.adc = adc
        # divider as a ratio of integers (x1000) so a reading stays in small-int arithmetic
        self.div_k = int(divider * 1000)
        self.empty_mv = empty_mv
        self.full_mv = full_mv
        self.uv = hasattr(adc, "read_uv")

    def mv(self):
        """Battery voltage in millivolts (average of a few reads)."""
        tot = 0
        for _ in range(_AVG):
            if self.uv:
                tot += self.adc.read_uv() // 1000
            else:
                tot += self.adc.read_u16() * _VREF_MV // 65535
        return tot // _AVG * self.div_k // 1000

    def percent(self):
        """State of charge 0..100."""
        return percent_of(self.mv(), self.empty_mv, self.full_mv)


def battery_from_config(cfg, adc_class, pin_class=None):
    """The gauge declared in cfg hw.battery, or None."""
    b = cfg.get("hw", {}).get("battery")
    if not b:
        return None
    pin = pin_class(b["pin"]) if pin_class is not None else b["pin"]
    adc = adc_class(pin)
    try:
        adc.atten(3)  # ESP32: 11 dB, the full 0..3.3 V range (other ports have no atten)
    except (AttributeError, ValueError, OSError):
        pass
    return Battery(adc, b.get("divider", 2), b.get("empty_mv", 3300), b.get("full_mv", 4200))


class Gauge:
    """The app's view of the battery: percent or None, errors go to app.last_error (sensing goes on)."""

    def __init__(self, app, cfg):
        import machine
        self.app = app
        try:
            self.battery = battery_from_config(cfg, machine.ADC, machine.Pin)
        except Exception as e:  # no ADC on this pin / port
            self.battery = None
            app.last_error = "battery: " + str(e)

    def read(self):
        """State of charge 0..100, or None when the gauge cannot be read."""
        if self.battery is None:
            return None
        try:
            return self.battery.percent()
        except Exception as e:
            self.app.last_error = "battery: " + str(e)
            return None
