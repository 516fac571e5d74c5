"""Simulated `analogio` (CircuitPython 9.2): AnalogIn(pin).value is 16-bit (0..65535)."""


class AnalogIn:
    """ADC input; the test side sets pin._source to a callable returning a 16-bit code."""

    reference_voltage = 3.3

    def __init__(self, pin):
        if pin._claimed:
            raise ValueError("%r in use" % (pin,))
        pin._claimed = True
        self._pin = pin

    @property
    def value(self):
        if self._pin is None:
            raise ValueError("Object has been deinitialized and can no longer be used. Create a new object.")
        src = self._pin._source
        v = 0 if src is None else int(src())
        return 0 if v < 0 else (65535 if v > 65535 else v)

    def deinit(self):
        """Release the pin."""
        if self._pin is not None:
            self._pin._claimed = False
            self._pin = None

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.deinit()
