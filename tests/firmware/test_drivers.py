# Drivers against datasheet conversions and the register-level simulated chips (MicroPython unix port).
import math

import machine
import sim_sensors
from firmware.drivers.bme280 import BME280
from firmware.drivers.ntc import NTC

# BMP280/BME280 datasheet worked example (section 3.12): calibration words and raw codes.
DS_CAL = (27504, 26435, -1000, 36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000)


def _bme(t=22.37, p=101325.4, h=45.5):
    machine.reset_sim()
    vals = {"t": t, "p": p, "h": h}
    dev = sim_sensors.BME280Sim(lambda: vals["t"], lambda: vals["p"], lambda: vals["h"])
    machine.attach_i2c(0, dev)
    return BME280(machine.I2C(0)), dev, vals


def test_bme280_datasheet_example():
    d, _, _ = _bme()
    assert d.measure()
    d.cal = DS_CAL + d.cal[12:]
    t, t_fine = d.compensate_t(519888)
    assert t == 2508 and t_fine == 128422, (t, t_fine)  # 25.08 degC
    p = d.compensate_p(415148, t_fine) / 256.0
    assert abs(p - 100653.27) < 0.05, p  # datasheet: 100653.27 Pa


def test_bme280_reads_calibration_from_chip():
    d, _, _ = _bme()
    assert d.measure()
    assert d.cal[:12] == sim_sensors.CAL_T + sim_sensors.CAL_P, d.cal
    assert d.cal[12:] == sim_sensors.CAL_H, d.cal[12:]


def test_bme280_values_round_trip_through_registers():
    d, _, vals = _bme()
    for t, p, h in ((22.37, 101325.4, 45.5), (-12.5, 95000.0, 10.0), (41.03, 103000.0, 88.8)):
        vals["t"], vals["p"], vals["h"] = t, p, h
        assert d.measure()
        tt, pp, hh = d.values
        assert abs(tt - t) <= 0.006, (tt, t)
        assert abs(pp - p) <= 1.0, (pp, p)
        assert abs(hh - h) <= 0.02, (hh, h)


def test_bme280_bus_error_counted_not_fatal():
    d, dev, _ = _bme()
    assert d.measure()
    dev.fail_next = 1
    assert not d.measure()
    assert d.errors == 1 and d.values == [None, None, None]
    assert "OSError" in d.last_error
    assert d.measure() and d.values[0] is not None  # recovers (re-setup)
    dev.dead = True  # stops acknowledging
    for _ in range(3):
        assert not d.measure()
    assert d.errors == 4
    machine.detach_i2c(0, 0x76)
    assert not d.measure() and d.errors == 5


def test_bme280_missing_at_boot_then_appears():
    machine.reset_sim()
    d = BME280(machine.I2C(0))
    assert not d.measure() and d.errors == 1
    machine.attach_i2c(0, sim_sensors.BME280Sim(lambda: 20.0, lambda: 100000.0, lambda: 50.0))
    assert d.measure() and abs(d.values[0] - 20.0) < 0.01


def test_ntc_beta_conversion():
    machine.reset_sim()
    t = {"v": 25.0}
    sim = sim_sensors.NTCDivider(lambda: t["v"])
    machine.attach_adc(34, sim.read_u16)
    n = NTC(machine.ADC(machine.Pin(34)))
    # Midpoint: R_ntc == R_fixed == R0 -> exactly T0.
    assert abs(n.celsius(32767.5) - 25.0) < 1e-9
    # 10k B3950 at 0 degC: R = 10k * exp(3950 * (1/273.15 - 1/298.15)) = 33.6 kOhm
    r0c = 10000.0 * math.exp(3950.0 * (1 / 273.15 - 1 / 298.15))
    assert abs(r0c - 33620.6) < 1.0, r0c
    u = 65535.0 * r0c / (r0c + 10000.0)
    assert abs(n.celsius(u)) < 1e-6
    for v in (-20.0, 0.0, 25.0, 60.0, 100.0):
        t["v"] = v
        assert n.measure()
        assert abs(n.values[0] - v) < 0.05, (n.values[0], v)


def test_ntc_open_or_short_counted():
    machine.reset_sim()
    raw = {"u": 0}
    machine.attach_adc(26, lambda: raw["u"])
    n = NTC(machine.ADC(26))
    assert not n.measure() and n.values[0] is None and n.errors == 1
    raw["u"] = 65535
    assert not n.measure() and n.errors == 2 and "open" in n.last_error

    def broken():
        raise OSError(5)
    machine.attach_adc(26, broken)
    assert not n.measure() and n.errors == 3


def test_sht4x_datasheet_conversions_and_crc():
    from firmware.drivers.sht4x import SHT4x, crc8
    assert crc8(b"\xbe\xef") == 0x92  # Sensirion's CRC example
    assert abs(SHT4x.celsius(0x6666) - 25.0) < 1e-9  # 26214 / 65535 = 0.4
    assert abs(SHT4x.humidity(0x8000) - 56.50095) < 1e-4
    assert SHT4x.humidity(0) == 0.0 and SHT4x.humidity(65535) == 100.0  # clipped


def test_sht4x_pipelined_reads_crc_and_errors():
    from firmware.drivers.sht4x import SHT4x
    machine.reset_sim()
    env = {"t": 21.5, "h": 40.0}
    dev = sim_sensors.SHT4xSim(lambda: env["t"], lambda: env["h"])
    machine.attach_i2c(0, dev)
    d = SHT4x(machine.I2C(0))
    assert d.measure()
    assert abs(d.values[0] - 21.5) < 0.003 and abs(d.values[1] - 40.0) < 0.002, d.values
    env["t"] = 30.0
    assert d.measure()  # reads the conversion started by the previous call (no 8 ms wait)
    assert abs(d.values[0] - 21.5) < 0.003
    assert d.measure() and abs(d.values[0] - 30.0) < 0.003
    dev.corrupt_next = 1
    assert not d.measure() and d.errors == 1 and "CRC" in d.last_error and d.values == [None, None]
    assert d.measure() and d.errors == 1
    env["t"] = None  # the chip stops answering
    assert d.measure()  # the conversion started before it died is still delivered
    assert not d.measure() and d.errors == 2 and "OSError" in d.last_error
    env["t"] = 5.0
    assert d.measure() and abs(d.values[0] - 5.0) < 0.003  # restarts on its own
