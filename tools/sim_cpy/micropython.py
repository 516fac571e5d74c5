"""CircuitPython's `micropython` module (const is a compile-time hint; identity here)."""


def const(x):
    """Compile-time constant."""
    return x
