# One virtual node of `fogline demo`: the real firmware app (firmware.app) on the unix port.
# usage: micropython tools/demo_node.py SPEC.json     (tools/sim first on MICROPYPATH)
# SPEC: {"node", "config" (site JSON path), "boards_dir", "scenario" (preset) or "scenario_spec"
#        (Scenario.from_spec dict), "seed", "time_scale",
#        "flash", "blocks", "control", "ble_only", "mac", "drain_ms", "truth" (optional ground-truth file)}
# The control file (polled every 200 ms) may hold "stop": sampling stops, the log is flushed, the
# uplink drains the backlog (up to drain_ms), then "FINAL {json}" is printed and the process exits.
# The node also stops when the process parent_pid (the demo) is gone.
# "STAT {json}" is printed about once a second. Scenario time may run time_scale x faster than the
# wall clock (the demo instead places its events in the first seconds, at scale 1).
import os
import sys
import json
import gc
import asyncio

import machine
import network
import flashdev
import scenario as scen_mod
from firmware import app as fw
from shared.senml import NODE_EPOCH

spec = json.load(open(sys.argv[1]))
NODE = spec["node"]


class Scaled:
    """A scenario seen through a faster clock (same signals, same ground truth).

    With `truth` (an open file) every read is recorded as "epoch_s t_s name flags" lines, the
    epoch time being what the node stamps on the reading: the demo scores the gateway against it."""

    def __init__(self, sc, k, clock=None, truth=None):
        self.sc = sc
        self.k = k
        self.clock = clock
        self.truth = truth
        self.series = sc.series
        self.wifi_outages = [(a / k, b / k) for a, b in sc.wifi_outages]
        h = getattr(sc, "hang_at_s", None)
        self.hang_at_s = None if h is None else h / k

    def __getattr__(self, name):
        return getattr(self.sc, name)

    def read(self, name, t_s):
        t = t_s * self.k
        if self.truth is None or name not in self.sc.series:
            return self.sc.read(name, t)
        m, _truth, flags = self.sc.series[name].sample(t)
        n = self.clock.node_s(self.clock.now_ms(), False)  # whole seconds on a single-float port
        # an int stays exact; "%.3f" of an epoch time on a float32 port is off by up to 64 s
        e = "%d" % (n + NODE_EPOCH) if isinstance(n, int) else "%.3f" % (n + NODE_EPOCH)
        self.truth.write("%s %.3f %s %d\n" % (e, t, name, flags))
        return m


def backlog(app):
    s = app.store
    return {"up": s.depth("up"), "alert": s.depth("alert")} if s else {"up": 0, "alert": 0}


def stats(app, links_note):
    d = {"node": NODE, "sensing": dict(app.node.stats), "latest": app.node.latest, "backlog": backlog(app),
         "heap_free": gc.mem_free(), "links": links_note, "wifi": network.link_up(),
         "last_error": app.node.last_error or app.last_error}
    if app.store is not None:
        s = app.store.stats()
        d["store"] = {k: s[k] for k in s if isinstance(s[k], (int, float))}
        d["dropped"] = s.get("dropped")  # persisted policy-drop counters by reason (lane_capacity...)
        d["acked"] = {"up": app.store.acked("up"), "alert": app.store.acked("alert")}
    return d


def parent_alive():
    """False once the demo that started this node is gone (no orphans after a kill -9 of the demo)."""
    pid = spec.get("parent_pid")
    if not pid:
        return True
    try:
        os.stat("/proc/%d" % pid)
        return True
    except OSError:
        return False


def control_lines():
    try:
        with open(spec["control"]) as f:
            return f.read().split("\n")
    except OSError:
        return []


async def main():
    cfg = fw.load_config(spec["config"], spec["boards_dir"], spec.get("board"))
    clock = fw.Clock()
    machine.set_clock(clock.now_ms)
    if spec.get("scenario_spec"):
        sc = scen_mod.Scenario.from_spec(spec["scenario_spec"])
    else:
        sc = scen_mod.preset(spec.get("scenario", "normal"), spec.get("seed", 1))
    truth = open(spec["truth"], "w") if spec.get("truth") else None
    fw.sim_attach(cfg, Scaled(sc, spec.get("time_scale", 1.0), clock, truth), clock)
    dev = flashdev.FlashDev(spec.get("blocks", 212), path=spec["flash"])
    try:
        flashdev.mount(dev, "/flash")
    except OSError:
        flashdev.mount(dev, "/flash", format=True)
    store = fw.make_store(cfg, "/flash/log")
    app = fw.App(cfg, store, clock=clock, wdt=False)
    ble_only = spec.get("ble_only", False)
    if ble_only:
        import bluetooth
        bluetooth.BLE().config(mac=bytes.fromhex(spec.get("mac", "a4c138000001")))
    app.uplinks = fw.build_links(app, spec["config"], not ble_only, ble_only)
    note = "firmware.links"
    tasks = [asyncio.create_task(u.run()) for u in app.uplinks]
    sampler = asyncio.create_task(app.sampler())
    n = 0
    while True:
        await asyncio.sleep_ms(200)
        n += 1
        lines = control_lines()
        if "stop" in lines or not parent_alive():
            break
        network.set_link("wifi 0" not in lines)  # scheduled scenario outages apply on top
        for ln in lines:  # "battery_mv 3400" drains the simulated battery (hw.battery boards)
            if ln.startswith("battery_mv "):
                import sim_battery
                if sim_battery.BATTERY is not None:
                    sim_battery.BATTERY.set_mv(int(ln[11:]))
        if n % 5 == 0:
            print("STAT", json.dumps(stats(app, note)))
    sampler.cancel()
    if store is not None:
        store.flush(clock.now_ms())
    t0 = clock.now_ms()
    while not ble_only and clock.now_ms() - t0 < spec.get("drain_ms", 4000):
        b = backlog(app)
        if b["up"] == 0 and b["alert"] == 0:
            break
        await asyncio.sleep_ms(100)
    if truth is not None:
        truth.close()
    print("FINAL", json.dumps(stats(app, note)))
    for t in tasks:
        t.cancel()


try:
    asyncio.run(main())
except Exception as e:
    sys.print_exception(e)
    print("FATAL", json.dumps({"node": NODE, "error": repr(e)}))
    sys.exit(1)
