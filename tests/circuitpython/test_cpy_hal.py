"""The CircuitPython `machine` shim: busio I2C to register-level chips, digitalio, analogio, watchdog."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.timeout(90)  # a hung socket must fail the test, not stall the suite


def _bme(cpy, t=21.5, p=101325.0, h=45.0):
    chip = cpy.sim_sensors.BME280Sim(lambda: t, lambda: p, lambda: h, addr=0x76)
    cpy.simctl.attach_i2c(cpy.board.SCL, cpy.board.SDA, chip)
    return chip


def test_bme280_through_busio(cpy):
    """The unchanged BME280 driver reads the datasheet-compensated values through busio's lock protocol."""
    _bme(cpy, 23.25, 98765.0, 61.0)
    import machine
    from firmware.drivers.bme280 import BME280
    assert machine.__name__ == "firmware.cpy.machine"
    i2c = machine.I2C(0, scl=machine.Pin(4), sda=machine.Pin(3), freq=400000)  # Feather ESP32-S3 STEMMA QT
    assert i2c.scan() == [0x76]
    d = BME280(i2c, 0x76)
    for _ in range(3):
        assert d.measure(), d.last_error
    t, p, h = d.values[:3]
    assert t == pytest.approx(23.25, abs=0.01)
    assert p == pytest.approx(98765.0, abs=2.0)
    assert h == pytest.approx(61.0, abs=0.05)
    assert not i2c._bus._locked  # every transfer released the lock


def test_sht4x_through_busio_and_errors_counted(cpy):
    """SHT4x command/read cycle works; a locked bus, a NACK and a CRC error are counted, never raised."""
    chip = cpy.sim_sensors.SHT4xSim(lambda: 19.0, lambda: 55.5)
    cpy.simctl.attach_i2c(cpy.board.SCL, cpy.board.SDA, chip)
    import machine
    from firmware.drivers.sht4x import SHT4x
    i2c = machine.I2C(0, scl=machine.Pin("SCL"), sda=machine.Pin("SDA"))
    d = SHT4x(i2c, 0x44)
    assert d.measure() and d.measure()
    assert d.values[0] == pytest.approx(19.0, abs=0.01) and d.values[1] == pytest.approx(55.5, abs=0.01)
    i2c._bus.try_lock()  # someone else holds the bus
    assert not d.measure() and d.errors == 1 and "OSError" in d.last_error
    i2c._bus.unlock()
    chip.dead = True
    assert not d.measure() and d.errors == 2
    chip.dead = False
    chip.corrupt_next = 1
    assert not d.measure() and "CRC" in d.last_error
    assert d.measure()


def test_i2c_without_pullups_is_an_oserror(cpy, monkeypatch):
    """busio.I2C raising at construction (no pull-ups) turns into OSError at transfer time, not a crash."""
    import busio
    import machine

    def broken(*a, **k):
        raise RuntimeError("No pull up found on SDA or SCL; check your wiring")
    monkeypatch.setattr(busio, "I2C", broken)
    i2c = machine.I2C(0, scl=machine.Pin(4), sda=machine.Pin(3))
    with pytest.raises(OSError):
        i2c.readfrom_mem(0x76, 0xD0, 1)
    assert "pull up" in i2c.last_error


def test_ntc_through_analogio(cpy):
    """NTC driver over AnalogIn.value (16-bit on every CircuitPython port)."""
    import machine
    from firmware.drivers.ntc import NTC
    div = cpy.sim_sensors.NTCDivider(lambda: 30.0)
    cpy.simctl.attach_adc(cpy.board.A0, div.read_u16)
    d = NTC(machine.ADC(machine.Pin(18)), 10000.0, 10000.0, 25.0, 3950.0, 1)
    assert d.measure()
    assert d.values[0] == pytest.approx(30.0, abs=0.1)


def test_pin_output_and_claiming(cpy):
    """Pin(n, OUT) drives a DigitalInOut; a second claim of the pin fails like CircuitPython."""
    import machine
    p = machine.Pin(10, machine.Pin.OUT)
    p.value(1)
    assert cpy.simctl.level(cpy.board.D10) is True and p.value() == 1
    p.off()
    assert cpy.simctl.level(cpy.board.D10) is False
    with pytest.raises(ValueError, match="in use"):
        machine.Pin(10, machine.Pin.OUT)


def test_watchdog(cpy):
    """WDT(timeout=ms) arms microcontroller.watchdog in RESET mode; over the chip limit -> ValueError."""
    import machine
    import watchdog
    w = machine.WDT(timeout=4000)
    mc = cpy.microcontroller
    assert mc.watchdog.timeout == 4.0 and mc.watchdog.mode == watchdog.WatchDogMode.RESET
    w.feed()
    assert mc.watchdog.feeds == 1
    mc.watchdog.max_timeout = 8.388  # RP2040
    with pytest.raises(ValueError):
        machine.WDT(timeout=20000)


def test_ticks_shim(cpy):
    """time.ticks_* on CircuitPython: modular diff across the 2**29 wrap, sleep_ms present."""
    import time
    assert time.__name__ == "firmware.cpy.ticks"
    assert time.ticks_diff(5, (1 << 29) - 5) == 10
    assert time.ticks_diff((1 << 29) - 5, 5) == -10
    assert time.ticks_add((1 << 29) - 1, 2) == 1
    t0 = time.ticks_ms()
    time.sleep_ms(20)
    assert 15 <= time.ticks_diff(time.ticks_ms(), t0) < 10000  # ms, not s: a seconds mix-up would take 20 s
    assert callable(time.monotonic_ns) and callable(time.time)


def test_wait_for_ms_shim_never_loses_a_cancel(cpy):
    """asyncio.wait_for_ms on the host: a task cancelled in the moment the Event it waits on is set ends
    cancelled (CPython < 3.12's wait_for returned the result instead, and the uplink ran on after its
    cancel); results, exceptions and timeouts as MicroPython's wait_for_ms gives them."""
    import asyncio

    async def main():
        ev = asyncio.Event()
        passes = []

        async def idle():  # the uplink's idle wait
            while len(passes) < 3:
                try:
                    await asyncio.wait_for_ms(ev.wait(), 100)
                except asyncio.TimeoutError:
                    pass
                passes.append(1)

        ended = []
        for settle in range(4):  # the cancel lands at each step of the waiter's wake-up
            passes.clear()
            ev.clear()
            t = asyncio.create_task(idle())
            for _ in range(settle):
                await asyncio.sleep(0)
            ev.set()
            t.cancel()
            await asyncio.gather(t, return_exceptions=True)
            ended.append((t.cancelled(), len(passes)))
        assert ended == [(True, 0)] * 4

        assert await asyncio.wait_for_ms(asyncio.sleep(0, "r"), 30000) == "r"
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for_ms(asyncio.sleep(3600), 10)

        async def boom():
            raise ValueError("bad")

        with pytest.raises(ValueError):
            await asyncio.wait_for_ms(boom(), 30000)
        inner = asyncio.create_task(asyncio.sleep(3600))
        outer = asyncio.create_task(asyncio.wait_for_ms(inner, 30000))
        await asyncio.sleep(0)
        outer.cancel()
        await asyncio.gather(outer, return_exceptions=True)
        await asyncio.gather(inner, return_exceptions=True)
        assert outer.cancelled() and inner.cancelled()  # a cancelled wait takes what it waited on along

    asyncio.run(main())


def test_cryptolib_shim_fips197_vector_in_place(cpy):
    """cryptolib.aes(key, 1) on aesio: FIPS-197 C.1 vector, in-place like bthome's CCM calls it."""
    import cryptolib
    assert cryptolib.__name__ == "firmware.cpy.cryptolib"
    key = bytes(range(16))
    buf = bytearray(bytes.fromhex("00112233445566778899aabbccddeeff"))
    cryptolib.aes(key, 1).encrypt(buf, buf)
    assert bytes(buf).hex() == "69c4e0d86a7b0430d8cdb78070b4c55a"
    with pytest.raises(ValueError):
        cryptolib.aes(key, 2)


def test_deepsleep_flushes_then_sleeps_via_alarm(cpy, tmp_path):
    """Battery cycle: App.sleep() flushes the log, then alarm.exit_and_deep_sleep_until_alarms (code.py restarts)."""
    import alarm
    import machine
    with pytest.raises(alarm.DeepSleepSim) as e:
        machine.deepsleep(5000)
    assert 4.9 < e.value.args[0] <= 5.0
    from firmware.flashlog import FlashLog
    from firmware import app as A
    from tests.circuitpython.test_cpy_node import ManualClock, _cfg
    cfg = _cfg(watchdog_ms=0, deepsleep_ms=60000)
    log = FlashLog(str(tmp_path / "log"), capacity_bytes=65536, segment_bytes=4096, sync_every=100, sync_ms=600000)
    log.append("up", b"\x84\x01\x61x\xf6\x01", 0)
    assert log.durable_seq("up") == 0
    app = A.App(cfg, log, clock=ManualClock())
    with pytest.raises(alarm.DeepSleepSim):
        app.sleep()
    assert log.durable_seq("up") == 1  # made durable before power-down
