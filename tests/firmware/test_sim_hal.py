# The simulated HAL itself (tools/sim/machine.py): PinBase/Signal, ADC, I2C, WDT, Timer, RTC (MicroPython unix port).
import time

import machine
import umachine


def test_pin_subclasses_builtin_pinbase_and_signal_works():
    machine.reset_sim()
    p = machine.Pin(5, machine.Pin.OUT)
    assert isinstance(p, umachine.PinBase)
    s = machine.Signal(p, invert=True)  # the built-in Signal (segfaults with a non-PinBase pin)
    s.on()
    assert p.value() == 0 and machine.pin_state(5) == 0
    s.off()
    assert p.value() == 1 and p.changes == 1
    p(0)
    assert p() == 0 and machine.get_pin(5) is p


def test_adc_source_and_clamping():
    machine.reset_sim()
    vals = [70000, -5, 1234]
    machine.attach_adc(26, lambda: vals.pop(0))
    a = machine.ADC(machine.Pin(26))
    assert [a.read_u16(), a.read_u16(), a.read_u16()] == [65535, 0, 1234]
    assert machine.ADC(27).read_u16() == 0  # nothing attached: grounded input


class _Regs:
    def __init__(self, addr):
        self.addr = addr
        self.mem = bytearray(16)

    def read(self, reg, n):
        return self.mem[reg:reg + n]

    def write(self, reg, data):
        self.mem[reg:reg + len(data)] = data


def test_i2c_scan_read_write_and_nack():
    machine.reset_sim()
    d = _Regs(0x44)
    machine.attach_i2c(1, d)
    bus = machine.I2C(1, scl=machine.Pin(3), sda=machine.Pin(2), freq=100000)
    assert bus.scan() == [0x44]
    bus.writeto_mem(0x44, 2, b"\x01\x02")
    assert bus.readfrom_mem(0x44, 1, 3) == b"\x00\x01\x02"
    buf = bytearray(2)
    bus.readfrom_mem_into(0x44, 2, buf)
    assert buf == b"\x01\x02"
    for addr in (0x45,):
        try:
            bus.readfrom_mem(addr, 0, 1)
        except OSError as e:
            assert e.args[0] == 19  # ENODEV: no acknowledge
        else:
            raise AssertionError("absent device answered")
    machine.detach_i2c(1, 0x44)
    assert bus.scan() == []


def test_wdt_cooperative_check_with_virtual_clock():
    machine.reset_sim()
    now = [0]
    machine.set_clock(lambda: now[0])
    try:
        w = machine.WDT(timeout=1000)
        w.stopped = True  # only the virtual-clock check here, not the real-time thread
        now[0] = 900
        machine.wdt_check()
        w.feed()
        now[0] = 1800
        machine.wdt_check()
        now[0] = 2001
        try:
            machine.wdt_check()
        except machine.WatchdogReset:
            pass
        else:
            raise AssertionError("starved watchdog did not fire")
        assert machine.reset_cause() == machine.WDT_RESET
    finally:
        machine.set_clock(time.ticks_ms)
        machine.reset_sim()


def test_timer_poll_periodic_and_one_shot():
    machine.reset_sim()
    now = [0]
    machine.set_clock(lambda: now[0])
    try:
        hits = []
        machine.Timer(0, mode=machine.Timer.PERIODIC, period=100, callback=lambda t: hits.append(("p", now[0])))
        machine.Timer(1, mode=machine.Timer.ONE_SHOT, period=250, callback=lambda t: hits.append(("o", now[0])))
        for t in range(0, 501, 50):
            now[0] = t
            machine.timers_poll()
        assert [h for h in hits if h[0] == "p"] == [("p", 100), ("p", 200), ("p", 300), ("p", 400), ("p", 500)]
        assert [h for h in hits if h[0] == "o"] == [("o", 250)]
    finally:
        machine.set_clock(time.ticks_ms)
        machine.reset_sim()


def test_rtc_unique_id_deepsleep():
    r = machine.RTC()
    r.datetime((2026, 1, 2, 4, 3, 4, 5, 0))
    y, mo, d, wd, h, mi, s, _ = r.datetime()
    assert (y, mo, d, h, mi) == (2026, 1, 2, 3, 4) and 5 <= s <= 7
    assert len(machine.unique_id()) == 6
    try:
        machine.deepsleep(1234)
    except machine.DeepSleepReset as e:
        assert e.args[0] == 1234
    assert machine.sleep_log[-1] == 1234 and machine.reset_cause() == machine.DEEPSLEEP_RESET
