"""Composition root: config -> HAL objects, drivers, node, store, links -> asyncio tasks.

    app.main(argv=None)          board: /config.json (+ board file); host emulation: tools/sim/simapp.py
    App(cfg, store=None, uplinks=None, clock=None, wdt=True)
    app.node, app.store, app.uplinks (objects with `async run()`), app.clock
    app.apply_config(new_cfg) -> (ok, reason)    live re-configuration (remote config)
    app.status() -> dict                          fields of the `state` message
    await app.run(samples=None)                   sampling + every uplink; returns after N samples

Sensing never awaits the network: the sampling task only awaits its own
period, feeds the watchdog after each completed iteration, and actuators are
set inside node.sample(). Drivers and pins come from firmware/hal.py; links
(MQTT uplink + remote config, BTHome, SNTP) are wired by firmware/links.py. Host emulation (virtual clock, simulated chips,
CLI) lives in tools/sim/simapp.py, which main() uses when the sim HAL is loaded.
Battery nodes: deepsleep_ms > 0 samples once per wake, keeps the links running
for awake_ms, flushes the log and deep-sleeps.
"""

import asyncio
import gc
import sys
import time

import machine

from firmware.node import Node
from shared.senml import NODE_EPOCH
from firmware.hal import build_devices, build_pins, _pin_objs  # noqa: F401 (build_* re-exported)

FW = "0.3.0"
SIM = hasattr(machine, "attach_i2c")  # host emulation HAL (tools/sim/machine.py)


_F32 = float(16777217) == 16777216.0  # single-precision floats (ESP32, RP2040)


def _unix_now_s():
    # time.time() is a float on the unix ports (a float32 one is 128 s coarse in 2026): integer ns.
    return time.time_ns() // 1000000000


class Clock:
    """Monotonic non-wrapping ms (from ticks_ms) and node seconds (ints counted from senml.NODE_EPOCH).

    Node seconds stay small ints on a 32-bit board (epoch seconds are above 2**30 there, so each
    one would be a heap-allocated long int, and a float32 cannot hold them at all).
    """

    def __init__(self):
        self._raw = time.ticks_ms()
        self._ms = 0
        self.base_n = _unix_now_s() - NODE_EPOCH  # node seconds at now_ms == base_ms
        self.base_ms = 0
        self.synced = False

    @property
    def base_s(self):
        """Unix epoch seconds at base_ms."""
        return self.base_n + NODE_EPOCH

    @base_s.setter
    def base_s(self, epoch_s):
        self.base_n = int(epoch_s) - NODE_EPOCH

    def now_ms(self):
        """Milliseconds since boot (never wraps)."""
        raw = time.ticks_ms()
        self._ms += time.ticks_diff(raw, self._raw)
        self._raw = raw
        return self._ms

    def rebase(self, epoch_s, frac_ms=0):
        """The wall clock says it is epoch_s (+ frac_ms) now (SNTP): later times follow it."""
        self.base_s = epoch_s
        self.base_ms = self.now_ms() - frac_ms
        self.synced = True

    def node_s(self, now_ms, whole=True):
        """Node seconds at now_ms: int, or a float with ms when asked and doubles are available."""
        d = now_ms - self.base_ms
        if whole or _F32:
            return self.base_n + d // 1000
        return self.base_n + d / 1000.0

    def epoch_s(self, now_ms, whole=True):
        """Unix epoch seconds at now_ms (a long int on a 32-bit board: not for per-sample use)."""
        return self.node_s(now_ms, whole) + NODE_EPOCH

    async def sleep_until(self, t_ms):
        """Await until now_ms() reaches t_ms."""
        d = t_ms - self.now_ms()
        await asyncio.sleep_ms(d if d > 0 else 0)

    def advance(self, ms):
        """Let ms pass (a real clock sleeps)."""
        time.sleep_ms(ms)


def load_json(path):
    """Parsed JSON file (ValueError naming the file when malformed)."""
    import json
    with open(path) as f:
        try:
            return json.load(f)
        except ValueError as e:
            raise ValueError(path + ": invalid JSON (" + str(e) + ")")


def load_config(site_path="/config.json", boards_dir="/boards", board=None):
    """DEFAULTS + boards/<board>.json + site file, validated (ValueError 'field: reason')."""
    from shared import config as config_mod
    try:
        site = load_json(site_path) if site_path else {}
    except OSError:
        site = {}
    name = board or site.get("node", {}).get("board") or config_mod.DEFAULTS["node"]["board"]
    b = None
    for p in (boards_dir + "/" + name + ".json", "/board.json"):
        try:
            b = load_json(p)
            break
        except OSError:
            pass
    if b is None:
        raise ValueError("node.board: no board file for " + repr(name))
    cfg = config_mod.merge(config_mod.DEFAULTS, b, site)
    cfg["node"]["board"] = name
    return config_mod.validate_config(cfg)


def sim_attach(cfg, scenario, clock):
    """Host emulation only: simulated chips behind the bus/ADC (see tools/sim/simapp.py)."""
    import simapp
    return simapp.sim_attach(cfg, scenario, clock)


def _rssi():
    try:
        import network
        w = network.WLAN(network.STA_IF)
        return w.status("rssi") if w.isconnected() else None
    except Exception:  # no radio, or the port has no rssi status
        return None


class App:
    """The running node: owns the config, node pipeline, store, links and tasks."""

    def __init__(self, cfg, store=None, uplinks=None, clock=None, wdt=True):
        self.cfg = cfg
        self.clock = clock or Clock()
        self.store = store
        self.uplinks = [] if uplinks is None else uplinks
        self.samples = 0
        self.overruns = 0
        self.boot_ms = self.clock.now_ms()
        self.last_error = None
        self.pins = build_pins(cfg)
        self._devcache = {}
        self.node = Node.from_config(cfg, build_devices(cfg, self._devcache), _pin_objs(self.pins), store,
                                     self._on_record)
        self.wdt = None
        if wdt and cfg.get("watchdog_ms"):
            try:
                self.wdt = machine.WDT(timeout=cfg["watchdog_ms"])
            except (ValueError, OSError) as e:  # over the chip's limit (RP2040: 8388 ms)
                self.last_error = "wdt: " + str(e) + "; using 8000 ms"
                self.wdt = machine.WDT(timeout=8000)
        self._kick = []
        self.fw = FW
        self.extra = []  # more coroutines to run beside the sampler (host emulation reporting)
        self.battery = None
        if cfg["hw"].get("battery"):  # the gauge module is loaded only on boards that declare one
            from firmware.power import Gauge
            self.battery = Gauge(self, cfg)

    def _on_record(self, lane, name, unit, value, t_s):
        if lane == "alert":
            for k in self._kick:
                k()

    def on_alert(self, fn):
        """Call fn() whenever an alert record is kept (an uplink wakes up at once)."""
        self._kick.append(fn)

    def apply_config(self, new):
        """Switch to a validated config without reboot; returns (ok, reason)."""
        try:
            pins = build_pins(new, self.pins)
            node = Node.from_config(new, build_devices(new, self._devcache), _pin_objs(pins), self.store,
                                    self._on_record, self.node)
        except Exception as e:
            return False, "apply: " + str(e)
        self.pins = pins
        self.node = node
        self.cfg = new
        return True, None

    def status(self):
        """Fields of the `state` message owned by the node."""
        # heap_free after a collection: MicroPython collects only when an allocation needs it, so a bare
        # mem_free() counts garbage as used and placement would read a full heap (state is rare: cheap)
        gc.collect()
        st = {"uptime_s": (self.clock.now_ms() - self.boot_ms) // 1000, "board": self.cfg["node"]["board"],
              "fw": FW, "heap_free": gc.mem_free(), "samples": self.samples,
              "last_error": self.node.last_error or self.last_error, "rssi": _rssi(),
              "battery": self.battery.read() if self.battery else None,
              "power": self.cfg["hw"].get("power", "usb"), "sensing": dict(self.node.stats),
              "sensors": [c.name for c in self.node.channels]}  # placement: a config push must not drop one
        c = getattr(self, "client", None)
        if c is not None and hasattr(c, "link_quality"):
            st["link"] = c.link_quality()  # loss / rtt_ms / reconnects of the uplink (a placement input)
        s = self.store
        if s is not None:
            try:
                st["backlog"] = {"up": s.depth("up"), "alert": s.depth("alert")}
                d = s.stats()
                st["dropped"] = {k: d[k] for k in d if k.startswith("dropped")}
                st["flash_free"] = self.cfg["log"]["capacity_bytes"] - d.get("bytes_used", 0)
            except Exception as e:
                st["last_error"] = "store: " + str(e)
        return st

    def sample_once(self):
        """One sampling iteration now (also used by benchmarks)."""
        now = self.clock.now_ms()
        self.node.sample(now, self.clock.node_s(now, self.cfg["sample_ms"] % 1000 == 0))
        s = self.store
        if s is not None and hasattr(s, "poll"):
            try:
                s.poll(now)
            except Exception as e:
                self.last_error = "store poll: " + str(e)
        self.samples += 1
        if self.wdt is not None:
            self.wdt.feed()  # only a sampler that completes an iteration keeps the board alive

    async def sampler(self, samples=None):
        """The sampling task: one iteration per sample_ms, never waiting on anything else."""
        nxt = self.clock.now_ms()
        n = 0
        while samples is None or n < samples:
            self.sample_once()
            n += 1
            if self.cfg.get("deepsleep_ms"):
                if self.cfg.get("awake_ms"):
                    await asyncio.sleep_ms(self.cfg["awake_ms"])  # let the links drain before sleeping
                self.sleep()
            nxt += self.cfg["sample_ms"]
            now = self.clock.now_ms()
            if nxt < now:
                self.overruns += 1
                nxt = now
            await self.clock.sleep_until(nxt)

    def sleep(self):
        """Battery cycle: make the log durable, then deep-sleep (the board reboots into main)."""
        if self.store is not None:
            try:
                self.store.flush(self.clock.now_ms())
            except Exception as e:
                self.last_error = "store flush: " + str(e)
        machine.deepsleep(self.cfg["deepsleep_ms"])

    async def run(self, samples=None):
        """Run the sampler and every uplink; return after `samples` samples (None = forever)."""
        tasks = [asyncio.create_task(u.run()) for u in self.uplinks]
        tasks += [asyncio.create_task(c) for c in self.extra]
        try:
            await self.sampler(samples)
        finally:
            for t in tasks:
                t.cancel()
            if self.store is not None and hasattr(self.store, "flush"):
                try:
                    self.store.flush(self.clock.now_ms())
                except Exception as e:
                    self.last_error = "store flush: " + str(e)


def make_store(cfg, root):
    """FlashLog on `root` with the config's log policy (None if the module is absent)."""
    try:
        from firmware.flashlog import FlashLog
    except ImportError:
        return None
    lg = cfg["log"]
    return FlashLog(root, capacity_bytes=lg["capacity_bytes"], segment_bytes=lg["segment_bytes"],
                    sync_every=lg["sync_every"], sync_ms=lg["sync_ms"])


def build_links(app, config_path="/config.json", mqtt=True, ble=True, ntp=False):
    """MQTT client + uplink + remote config, BTHome advertiser, SNTP (firmware/links.py)."""
    from firmware import links
    return links.build(app, config_path, mqtt, ble, ntp)


def host_main(argv):
    """Host emulation entry (sim HAL): see tools/sim/simapp.py."""
    import simapp
    return simapp.host_main(argv)


def forget_config_module():
    """Drop the config validator from RAM after boot validation; it is re-imported for a pushed config."""
    for name in ("config", "config_schema"):
        sys.modules.pop("shared." + name, None)
        try:
            import shared
            if name in shared.__dict__:
                delattr(shared, name)
        except (ImportError, AttributeError, TypeError):
            pass
    gc.collect()


def board_main():
    """Real board: load /config.json, refuse to start on an invalid one, run forever."""
    try:
        cfg = load_config("/config.json", "/boards")
    except (ValueError, OSError) as e:
        print("fogline: config rejected:", e)
        raise
    forget_config_module()
    try:
        import network
        w = network.WLAN(network.STA_IF)
        w.active(True)
        if cfg["wifi"]["ssid"]:
            w.connect(cfg["wifi"]["ssid"], cfg["wifi"]["password"])
    except Exception as e:
        print("fogline: wifi:", e)
    app = App(cfg, make_store(cfg, "/log"))
    try:
        app.uplinks = build_links(app, "/config.json", ntp=True)
    except ImportError:
        pass
    asyncio.run(app.run())


def main(argv=None):
    """Entry point: host emulation when the sim HAL is loaded, else the board."""
    if argv is None:
        argv = sys.argv[1:]
    if SIM:
        return host_main(argv)  # tools/sim is on the path only in host emulation
    return board_main()
