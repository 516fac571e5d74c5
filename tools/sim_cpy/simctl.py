"""Test-side controls for the simulated CircuitPython modules (firmware never imports this)."""

import gc

import _bleio
import board  # noqa: F401 (pin map)
import busio
import microcontroller
import storage
import wifi


def attach_i2c(scl, sda, chip):
    """Put a simulated chip (sim_sensors.BME280Sim/SHT4xSim) on the bus of these pins."""
    busio.attach(scl, sda, chip)


def attach_adc(pin, fn):
    """fn() -> 16-bit code the AnalogIn on pin reads."""
    pin._source = fn


def drive_input(pin, fn):
    """fn() -> level a DigitalInOut input on pin reads (e.g. a button held at boot)."""
    pin._source = fn


def level(pin):
    """Simulated electrical level of a pin."""
    return pin._level


def history(pin):
    """[(monotonic_ns, level)] of a pin's output changes."""
    return list(pin._history)


def set_link(up):
    """Switch the simulated access point on or off."""
    wifi.radio._set_ap(up)


def reset():
    """Fresh simulated hardware (pins, buses, radio, BLE, storage, watchdog)."""
    microcontroller._reset_sim()
    busio._buses.clear()
    board._i2c = None
    wifi.radio.__init__()
    _bleio.adapter.__init__()
    storage._reset_sim()


def install_runtime():
    """Make CPython look like CircuitPython where the firmware can tell: gc.mem_free/mem_alloc.

    Returns an undo list for uninstall_runtime()."""
    undo = []
    for name, fn in (("mem_free", lambda: 2000000), ("mem_alloc", lambda: 100000)):
        if not hasattr(gc, name):
            setattr(gc, name, fn)
            undo.append(name)
    return undo


def uninstall_runtime(undo):
    """Remove what install_runtime() added."""
    for name in undo:
        if hasattr(gc, name):
            delattr(gc, name)
