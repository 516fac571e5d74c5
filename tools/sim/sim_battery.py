"""Simulated battery behind a resistor divider on an ADC pin (host emulation only).

    b = BatterySim(mv=4100, divider=2)            # or mv_fn=lambda: scenario value
    machine.attach_adc(pin, b.read_u16)           # what firmware/power.py reads
    b.set_mv(3400)                                 # a test drains it at once
    b.drain_mv_per_h = 50                          # ...or lets it discharge with the clock

The pin sees mv / divider, scaled to the port's 0..3.3 V read_u16() range.
"""

_VREF_MV = 3300


class BatterySim:
    """Battery voltage source: fixed (set_mv), a function of time (mv_fn), minus a linear drain."""

    def __init__(self, mv=4100, divider=2, mv_fn=None, clock_ms=None, drain_mv_per_h=0):
        self.mv = mv
        self.divider = divider
        self.mv_fn = mv_fn
        self.clock_ms = clock_ms
        self.drain_mv_per_h = drain_mv_per_h

    def set_mv(self, mv):
        """Battery voltage from now on (replaces mv_fn)."""
        self.mv = mv
        self.mv_fn = None

    def volts_mv(self):
        """Battery voltage now in millivolts."""
        v = self.mv_fn() if self.mv_fn is not None else self.mv
        if v is None:
            v = self.mv
        if self.drain_mv_per_h and self.clock_ms is not None:
            v -= self.drain_mv_per_h * self.clock_ms() // 3600000
        return v

    def read_u16(self):
        """Raw ADC reading of the divided voltage."""
        raw = int(self.volts_mv() * 65535 // (self.divider * _VREF_MV))
        return 0 if raw < 0 else (65535 if raw > 65535 else raw)


BATTERY = None  # the node's simulated battery once sim_attach() made one (tests and runners set it)


def attach(cfg, scenario=None, clock_ms=None):
    """Attach a BatterySim at cfg hw.battery's pin; series 'battery_mv' of the scenario drives it if present."""
    global BATTERY
    b = cfg["hw"].get("battery")
    if not b:
        return None
    import machine
    fn = None
    if scenario is not None and "battery_mv" in scenario.series and clock_ms is not None:
        fn = lambda: scenario.read("battery_mv", clock_ms() / 1000.0)  # noqa: E731
    BATTERY = BatterySim(b.get("full_mv", 4200) - 100, b.get("divider", 2), fn, clock_ms)
    machine.attach_adc(b["pin"], BATTERY.read_u16)
    return BATTERY
