# Battery gauge, power source and link quality for `state` (PLACEMENT), on MicroPython.
import machine
import sim_battery

from shared.config import DEFAULTS, merge, validate_config
from firmware.power import Battery, battery_from_config, percent_of


class FakeADC:
    def __init__(self, raw):
        self.raw = raw

    def read_u16(self):
        return self.raw


def test_percent_is_linear_and_clamped():
    assert percent_of(3300, 3300, 4200) == 0
    assert percent_of(3000, 3300, 4200) == 0
    assert percent_of(4200, 3300, 4200) == 100
    assert percent_of(5000, 3300, 4200) == 100
    assert percent_of(3750, 3300, 4200) == 50


def test_gauge_reads_through_divider():
    # 1.875 V at the pin behind a 1:2 divider is 3.75 V at the battery -> 50 %
    g = Battery(FakeADC(1875 * 65535 // 3300 + 1), divider=2, empty_mv=3300, full_mv=4200)
    assert 3745 <= g.mv() <= 3752, g.mv()
    assert 49 <= g.percent() <= 50, g.percent()


def test_sim_battery_on_sim_adc():
    cfg = validate_config(merge(DEFAULTS, {"hw": {"power": "battery", "adc_pins": [34],
                                                  "battery": {"pin": 34, "divider": 2, "empty_mv": 3300, "full_mv": 4200}}}))
    b = sim_battery.attach(cfg)
    g = battery_from_config(cfg, machine.ADC, machine.Pin)
    assert g.percent() >= 85, g.percent()
    b.set_mv(3400)
    assert 9 <= g.percent() <= 12, g.percent()
    b.set_mv(3100)
    assert g.percent() == 0


def test_config_power_fields_validated():
    for hw, word in (({"power": "solar"}, "hw.power"), ({"battery": {"divider": 2}}, "hw.battery.pin"),
                     ({"battery": {"pin": 3, "empty_mv": 4200, "full_mv": 3300}}, "hw.battery.empty_mv"),
                     ({"battery": {"pin": 3, "volts": 1}}, "hw.battery.volts")):
        try:
            validate_config(merge(DEFAULTS, {"hw": hw}))
            raise AssertionError("accepted %r" % (hw,))
        except ValueError as e:
            assert word in str(e), str(e)


def test_app_status_reports_power_battery_and_link():
    from firmware import app as A
    from firmware.mqtt import MQTTClient
    cfg = validate_config(merge(DEFAULTS, {"watchdog_ms": 0, "hw": {"power": "battery", "battery": {"pin": 35}}}))
    sim_battery.attach(cfg).set_mv(3750)
    app = A.App(cfg, None, wdt=False)
    c = MQTTClient("n", "127.0.0.1")
    app.client = c
    st = app.status()
    assert st["power"] == "battery", st
    assert 48 <= st["battery"] <= 51, st
    assert st["link"] == {"loss": 0.0, "rtt_ms": None, "reconnects": 0}, st
    c.loss_pm = 500
    assert app.status()["link"]["loss"] == 0.5
    plain = A.App(validate_config(merge(DEFAULTS, {"watchdog_ms": 0})), None, wdt=False)
    st = plain.status()
    assert st["battery"] is None and st["power"] == "usb" and "link" not in st, st


def test_app_status_heap_free_does_not_count_garbage():
    # placement judges the node's heap by `state.heap_free`: dropped objects must not read as used heap
    import gc
    from firmware import app as A
    app = A.App(validate_config(merge(DEFAULTS, {"watchdog_ms": 0})), None, wdt=False)
    base = app.status()["heap_free"]
    junk = [bytearray(1024) for _ in range(32)]
    junk = None  # 32 KiB of garbage, not yet collected
    after = app.status()["heap_free"]
    assert junk is None and after >= base - 4096, (base, after)
    gc.collect()
