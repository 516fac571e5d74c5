"""Config -> hardware objects: I2C buses, sensor drivers (shared per chip) and actuator pins.

The only place besides app.py that touches `machine`; drivers get their bus
or ADC passed in. Board pin numbers come from the config's `hw` section.
"""

import machine

from firmware.drivers.bme280 import BME280
from firmware.drivers.ntc import NTC


def _i2c(cfg, bus):
    for b in cfg["hw"].get("i2c", []):
        if b["id"] == bus:
            return machine.I2C(bus, scl=machine.Pin(b["scl"]), sda=machine.Pin(b["sda"]), freq=b.get("freq", 400000))
    return machine.I2C(bus)


def build_devices(cfg, cache=None):
    """Driver per sensor name; sensors on the same chip share one driver."""
    cache = {} if cache is None else cache
    buses = {}
    out = {}
    for s in cfg["sensors"]:
        drv = s["driver"]
        if drv in ("bme280", "sht4x"):
            bus = s.get("bus", 0)
            key = (drv, bus, s.get("addr", 0x76 if drv == "bme280" else 0x44))
            if key not in cache:
                if bus not in buses:
                    buses[bus] = _i2c(cfg, bus)
                if drv == "bme280":
                    cache[key] = BME280(buses[bus], key[2])
                else:
                    from firmware.drivers.sht4x import SHT4x
                    cache[key] = SHT4x(buses[bus], key[2])
        else:
            key = ("ntc", s["pin"])
            if key not in cache:
                cache[key] = NTC(machine.ADC(machine.Pin(s["pin"])), s.get("r_fixed", 10000.0), s.get("r0", 10000.0),
                                 s.get("t0_c", 25.0), s.get("beta", 3950.0), s.get("oversample", 1))
        out[s["name"]] = cache[key]
    return out


def build_pins(cfg, old=None):
    """Output Pin per actuator name; `old` {name: (pin number, Pin)} objects are reused when unchanged."""
    out = {}
    acts = cfg["hw"].get("actuators", {})
    for name in acts:
        n = acts[name]["pin"]
        prev = old.get(name) if old else None
        out[name] = (n, prev[1] if prev is not None and prev[0] == n else machine.Pin(n, machine.Pin.OUT))
    return out


def _pin_objs(pins):
    out = {}
    for name in pins:
        out[name] = pins[name][1]
    return out
