"""Host-emulation entry for the node firmware (on the sim path only; never on a board).

    micropython firmware/main.py --config site.json --samples N --virtual-clock --scenario hot
    (firmware.app.main() calls host_main() when the simulated `machine` is loaded)

VirtualClock makes sleeping jump the clock, so hours of sampling run in seconds;
sim_attach() puts register-level simulated chips (sim_sensors) fed by a
scenario behind the I2C bus / ADC pins the config names, and schedules the
scenario's Wi-Fi outages on the simulated network.
"""

import asyncio

import machine

from firmware import app as A


class VirtualClock(A.Clock):
    """Simulated time: sleeping jumps the clock, so hours of sampling run in seconds."""

    def __init__(self, epoch0=1767225600):
        self._ms = 0
        self.base_s = epoch0
        self.base_ms = 0
        self.synced = True

    def now_ms(self):
        return self._ms

    async def sleep_until(self, t_ms):
        if t_ms > self._ms:
            self._ms = t_ms
        await asyncio.sleep_ms(0)

    def advance(self, ms):
        self._ms += ms


def sim_attach(cfg, scenario, clock):
    """Host emulation: put simulated chips behind the bus/ADC for every configured sensor."""
    import sim_sensors
    fields = {}
    for s in cfg["sensors"]:
        addr = s.get("addr", 0x44 if s["driver"] == "sht4x" else 0x76)
        fields.setdefault((s["driver"], s.get("bus", 0), addr, s.get("pin")), {})[
            s.get("field", "temperature")] = s["name"]

    def src(name, field):
        key = name if name in scenario.series else field
        if key not in scenario.series:
            return None
        return lambda: scenario.read(key, clock.now_ms() / 1000.0)

    for key in fields:
        f = fields[key]
        if key[0] == "bme280":
            t = src(f.get("temperature"), "temperature") or (lambda: 21.0)
            dev = sim_sensors.BME280Sim(t, src(f.get("pressure"), "pressure") or (lambda: 101325.0),
                                        src(f.get("humidity"), "humidity") or (lambda: 45.0), key[2])
            if scenario.hang_at_s is not None:
                dev.hangs = lambda: clock.now_ms() >= scenario.hang_at_s * 1000
            machine.attach_i2c(key[1], dev)
        elif key[0] == "sht4x":
            dev = sim_sensors.SHT4xSim(src(f.get("temperature"), "temperature") or (lambda: 21.0),
                                       src(f.get("humidity"), "humidity") or (lambda: 45.0), key[2])
            if scenario.hang_at_s is not None:
                dev.hangs = lambda: clock.now_ms() >= scenario.hang_at_s * 1000
            machine.attach_i2c(key[1], dev)
        else:
            ntc = sim_sensors.NTCDivider(src(f.get("temperature"), "temperature") or (lambda: 21.0))
            machine.attach_adc(key[3], ntc.read_u16)
    if cfg["hw"].get("battery"):  # battery gauge on its ADC pin (scenario series battery_mv)
        import sim_battery
        sim_battery.attach(cfg, scenario, clock.now_ms)
    if scenario.wifi_outages:
        import network
        for a, b in scenario.wifi_outages:
            network.schedule_outage(int(a * 1000), int(b * 1000))


def usage():
    return ("usage: micropython firmware/main.py [--config site.json] [--board NAME] [--boards-dir DIR]\n"
            "  [--samples N] [--virtual-clock] [--scenario PRESET[:SEED] | --scenario-file F.json]\n"
            "  [--flash IMG [--flash-kib K]] [--data DIR] [--no-mqtt] [--no-ble] [--stats-every N]\n"
            "  [--truth FILE.csv]   (ground truth of every simulated sensor read)")


def _args(argv):
    opts = {"config": None, "board": None, "boards_dir": None, "samples": None, "virtual_clock": False,
            "scenario": None, "scenario_file": None, "flash": None, "flash_kib": None, "data": None,
            "no_mqtt": False, "no_ble": False, "stats_every": 0, "truth": None}
    i = 0
    while i < len(argv):
        a = argv[i]
        k = a[2:].replace("-", "_") if a.startswith("--") else None
        if k not in opts:
            raise ValueError("unknown argument " + a + "\n" + usage())
        if opts[k] is False:
            opts[k] = True
        else:
            i += 1
            opts[k] = argv[i]
        i += 1
    for k in ("samples", "flash_kib", "stats_every"):
        if opts[k] is not None:
            opts[k] = int(opts[k])
    return opts


def host_main(argv):
    """Host emulation entry (sim HAL): returns the final stats dict."""
    import json
    o = _args(argv)
    import os
    repo = os.getenv("FOGLINE_REPO") or (A.__file__.rsplit("/", 2)[0] if A.__file__.count("/") >= 2 else ".")
    cfg = A.load_config(o["config"], o["boards_dir"] or repo + "/boards", o["board"])
    clock = VirtualClock() if o["virtual_clock"] else A.Clock()
    machine.set_clock(clock.now_ms)
    import scenario as scen_mod
    if o["scenario_file"]:
        scen = scen_mod.Scenario.from_spec(A.load_json(o["scenario_file"]))
    else:
        p = (o["scenario"] or "normal").split(":")
        scen = scen_mod.preset(p[0], int(p[1]) if len(p) > 1 else 1)
    if o["truth"]:
        scen.record_path = o["truth"]  # CSV t_s,name,measured,truth,flags of every simulated read
    sim_attach(cfg, scen, clock)
    root = None
    if o["flash"]:
        import flashdev
        kib = o["flash_kib"] or cfg["hw"]["fs_bytes"] // 1024
        dev = flashdev.FlashDev(kib // 4, path=o["flash"])
        try:
            flashdev.mount(dev, "/flash")
        except OSError:  # a fresh (erased) image: format it like a new board
            flashdev.mount(dev, "/flash", format=True)
        root = "/flash/log"
    elif o["data"]:
        root = o["data"]
    pushed = "/flash/config.json" if o["flash"] else (o["config"] + ".pushed" if o["config"] else None)
    if pushed:
        from shared import config as C
        try:
            cfg = C.validate_config(C.merge(cfg, A.load_json(pushed)))
        except OSError:
            pass
        except ValueError as e:
            print("fogline: ignoring saved pushed config:", e)
    if not o["no_mqtt"]:
        import network
        w = network.WLAN(network.STA_IF)
        w.active(True)
        w.connect(cfg["wifi"]["ssid"] or "sim", cfg["wifi"]["password"])
    total = o["samples"]
    done = 0
    while True:
        store = A.make_store(cfg, root) if root else None
        app = A.App(cfg, store, clock=clock)
        if not o["no_mqtt"] or not o["no_ble"]:
            try:
                app.uplinks = A.build_links(app, pushed or "/tmp/fogline-config.json", not o["no_mqtt"],
                                          not o["no_ble"])
            except ImportError:
                pass
        try:
            every = o["stats_every"]
            left = None if total is None else total - done
            if every:
                app.extra.append(_stats_task(app, every))
            asyncio.run(app.run(left))
            done += app.samples
            break
        except machine.DeepSleepReset as e:
            done += app.samples
            for w in machine._wdts:  # the reboot resets the watchdog
                w.stopped = True
            del machine._wdts[:]
            clock.advance(e.args[0] if e.args else 0)
            if total is not None and done >= total:
                break
    out = {"samples": done, "sensing": app.node.stats, "latest": app.node.latest, "overruns": app.overruns,
           "actuators": {n: app.node.rules.actuators[n].on for n in app.node.rules.actuators},
           "active_rules": app.node.rules.active(), "last_error": app.node.last_error,
           "deepsleeps": len(machine.sleep_log)}
    if app.store is not None:
        out["store"] = app.store.stats()
    scen.close()
    print("STATS " + json.dumps(out))
    return out


async def _stats_task(app, every):
    import json
    last = 0
    while True:
        if app.samples - last >= every:
            last = app.samples
            print("STAT " + json.dumps({"samples": app.samples, "latest": app.node.latest,
                                        "sensing": app.node.stats}))
        await asyncio.sleep_ms(0 if isinstance(app.clock, VirtualClock) else 100)


