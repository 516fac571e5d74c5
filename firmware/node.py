"""Per-sample pipeline (pure): read -> rules(raw) -> filters -> rules(filtered) -> actuator -> records.

    node = Node.from_config(cfg, devices, actuator_pins, store=None)
    node.sample(now_ms, t_s) -> records kept this iteration (t_s: node seconds, see app.Clock)
    node.latest     dict metric -> last filtered value (BTHome adverts read it)
    node.stats      counters (see STATS)
    node.last_error last driver/store error text or None

Every kept record goes to `store.append(lane, body, now_ms)`: lane "up" for
filtered readings, "alert" for rule transitions; body = CBOR
[t_s, name, unit, value] with the value rounded to float32 and t_s in node
seconds (from shared.senml.NODE_EPOCH: a small int on a 32-bit board). Alert records:
(rule, unit, value) when a rule fires, (rule + ".clear", unit, value) when it
clears; value is the reading that caused it (1.0 / 0.0 for stale rules).
Actuators are driven right after the transition, before filtering. A driver
or filter that raises is counted in stats["pipeline_errors"]; the other
channels, the rules and the next samples carry on.
"""

import struct

from shared import cbor
from shared import filters
from shared.rules import Rules, Actuator

STATS = ("samples", "readings", "read_errors", "kept", "filtered", "timer_outputs", "nan", "alerts",
         "store_errors", "pipeline_errors")


class Channel:
    """One metric: a field of a device plus its filter chain and rules."""

    def __init__(self, name, unit, device, index, chain, raw_rules=(), filt_rules=()):
        self.name = name
        self.unit = unit
        self.device = device
        self.index = index
        self.chain = chain
        self.raw_rules = raw_rules
        self.filt_rules = filt_rules
        self.spec = None


class Node:
    """The node's sensing core; no I/O beyond the driver and pin objects it is given."""

    def __init__(self, channels, rules, store=None, on_record=None):
        self.channels = channels
        self.rules = rules
        self.store = store
        self.on_record = on_record
        self.devices = []
        for c in channels:
            if c.device not in self.devices:
                self.devices.append(c.device)
        self.latest = {}
        self.stats = {k: 0 for k in STATS}
        self.last_error = None
        self._f = bytearray(4)

    @classmethod
    def from_config(cls, cfg, devices, actuator_pins, store=None, on_record=None, prev=None):
        """Build from a validated config; devices: sensor name -> driver, actuator_pins: name -> Pin.

        With `prev` (the node being replaced by a pushed config) actuators keep their level, and
        unchanged rules and filter chains keep their state, so a config push never glitches a relay.
        """
        acts = {}
        hw = cfg.get("hw", {}).get("actuators", {})
        old_acts = prev.rules.actuators if prev is not None else {}
        for name in hw:
            a = hw[name]
            if name in actuator_pins:
                act = old_acts.get(name)
                if act is None or act.pin is not actuator_pins[name]:
                    act = Actuator(name, actuator_pins[name], a.get("active_high", True), a.get("idle", 0))
                else:
                    act.high = a.get("active_high", True)
                    act.idle = a.get("idle", 0)
                acts[name] = act
        units = {}
        for s in cfg["sensors"]:
            units[s["name"]] = s.get("unit")
        rules = Rules(cfg.get("rules", []), units, acts)
        if prev is not None:
            old = {}
            for r in prev.rules.rules:
                old[r.name] = r
            for i in range(len(rules.rules)):
                r = old.get(rules.rules[i].name)
                if r is not None and r.spec == rules.rules[i].spec and r.unit == rules.rules[i].unit:
                    rules.rules[i] = r
            rules.index()
        old_ch = {}
        if prev is not None:
            for c in prev.channels:
                old_ch[c.name] = c
        chans = []
        for s in cfg["sensors"]:
            dev = devices[s["name"]]
            field = s.get("field", dev.FIELDS[0])
            idx = dev.FIELDS.index(field)
            unit = s.get("unit") or dev.UNITS[idx]
            raw, filt = rules.for_sensor(s["name"])
            spec = s.get("filters", [])
            oc = old_ch.get(s["name"])
            chain = oc.chain if oc is not None and oc.spec == spec and oc.device is dev else filters.build_chain(spec)
            ch = Channel(s["name"], unit, dev, idx, chain, raw, filt)
            ch.spec = spec
            chans.append(ch)
        node = cls(chans, rules, store, on_record)
        if prev is not None:
            node.latest = prev.latest
            node.stats = prev.stats
        return node

    def f32(self, v):
        """v rounded to float32, as the flash record and a board's float hold it."""
        struct.pack_into("<f", self._f, 0, v)
        return struct.unpack_from("<f", self._f, 0)[0]

    def _keep(self, lane, name, unit, value, t_s, now):
        st = self.stats
        if value != value:
            st["nan"] += 1
            return 0
        value = self.f32(value)
        if self.on_record is not None:
            self.on_record(lane, name, unit, value, t_s)
        if self.store is not None:
            try:
                self.store.append(lane, cbor.dumps([t_s, name, unit, value]), now)
            except Exception as e:  # a full or broken store must not stop sensing
                st["store_errors"] += 1
                self.last_error = "store: " + str(e)
                return 0
        if lane == "alert":
            st["alerts"] += 1
        else:
            st["kept"] += 1
        return 1

    def _rules(self, rules, v, now, t_s, unit):
        n = 0
        for r in rules:
            tr = r.step(v, now)
            if tr is not None:
                self.rules.drive()  # same iteration, before anything else
                val = r.value if r.type != "stale" and v is not None else (1.0 if tr else 0.0)
                n += self._keep("alert", r.name if tr else r.name + ".clear", unit, val, t_s, now)
        return n

    def sample(self, now, t_s):
        """One iteration at now ms (ticks) / t_s (node seconds); returns records kept."""
        st = self.stats
        st["samples"] += 1
        for d in self.devices:
            try:
                ok = d.measure()
            except Exception as e:  # a driver bug must not stop the other sensors or the actuators
                ok = False
                d.values[0] = None
                d.last_error = "driver: " + repr(e)
                st["pipeline_errors"] += 1
            if not ok:
                st["read_errors"] += 1
                self.last_error = d.last_error
        kept = 0
        for c in self.channels:
            try:
                kept += self._channel(c, now, t_s)
            except Exception as e:  # counted and reported; the next channel and sample go on
                st["pipeline_errors"] += 1
                self.last_error = c.name + ": " + repr(e)
        self.rules.drive()
        return kept

    def _channel(self, c, now, t_s):
        st = self.stats
        kept = 0
        raw = c.device.values[c.index]
        if c.raw_rules:
            kept += self._rules(c.raw_rules, raw, now, t_s, c.unit)
        outs = 0
        if raw is not None:
            st["readings"] += 1
            fv = c.chain.update(raw, now)
            if fv is None:
                st["filtered"] += 1
            else:
                outs += 1
                kept += self._out(c, fv, now, t_s)
        # Timers after the new value, so a due heartbeat repeats this sample, not the previous one.
        tv = c.chain.tick(now)
        if tv is not None:
            st["timer_outputs"] += 1
            outs += 1
            kept += self._out(c, tv, now, t_s)
        if not outs and raw is None and c.filt_rules:
            kept += self._rules(c.filt_rules, None, now, t_s, c.unit)
        return kept

    def _out(self, c, v, now, t_s):
        k = 0
        if c.filt_rules:
            k += self._rules(c.filt_rules, v if v == v else None, now, t_s, c.unit)
        self.latest[c.name] = v if v == v else None
        return k + self._keep("up", c.name, c.unit, v, t_s, now)
