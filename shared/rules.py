"""Critical-threshold rules and actuators (pure apart from the pin objects passed in).

Rule types: above / below (threshold + hysteresis), rate (units per second,
rise / fall / both), stale (sensor missing for missing_ms or stuck within
stuck_epsilon for stuck_ms). delay_ms: the condition must hold this long
before the rule fires (0 = on the crossing sample). hold_ms: once changed, a
rule's state is kept at least this long (no chatter). fail_safe: what a
threshold/rate rule does while its sensor is missing: on, off or keep.
Actuators are resolved right after any transition, in the same iteration:
active stale rules win (fail-safe), then the first active rule in config
order, else the actuator's idle level.
"""

_INF = 1e38


class Rule:
    """One rule's state machine; step() returns True (fired), False (cleared) or None."""

    def __init__(self, spec, unit=None):
        self.spec = spec
        self.name = spec["name"]
        self.sensor = spec["sensor"]
        self.type = spec["type"]
        self.filtered = spec.get("source", "raw") == "filtered"
        self.th = spec.get("threshold", 0.0)
        self.hyst = spec.get("hysteresis") or 0.0
        self.delay = spec.get("delay_ms") or 0
        self.hold = spec.get("hold_ms") or 0
        self.dir = spec.get("direction", "both")
        self.missing_ms = spec.get("missing_ms") or 0
        self.stuck_ms = spec.get("stuck_ms") or 0
        self.eps = spec.get("stuck_epsilon") or 0.0
        self.actuator = spec.get("actuator")
        self.action = 1 if spec.get("action", "on") == "on" else 0
        fs = spec.get("fail_safe", "keep")
        self.fail_safe = 1 if fs == "on" else (0 if fs == "off" else -1)
        self.severity = spec.get("severity", "critical")
        self.unit = unit
        self.active = False
        self.changed = None
        self.pending = None
        self.last_v = None
        self.last_t = None
        self.seen = None
        self.stuck_ref = None
        self.stuck_since = None
        self.value = None
        self.fired = 0

    def _cond(self, v, now):
        # Returns 1 (want active), 0 (want inactive) or -1 (inside the hysteresis band: keep).
        t = self.type
        if t == "above":
            return 1 if v > self.th else (0 if v <= self.th - self.hyst else -1)
        if t == "below":
            return 1 if v < self.th else (0 if v >= self.th + self.hyst else -1)
        if t == "rate":
            if self.last_t is None or now == self.last_t:
                return -1 if self.active else 0
            r = (v - self.last_v) * 1000.0 / (now - self.last_t)
            if self.dir == "rise":
                m = r
            elif self.dir == "fall":
                m = -r
            else:
                m = abs(r)
            return 1 if m > self.th else (0 if m <= self.th - self.hyst else -1)
        # stale: a present value is stale only when stuck
        if self.stuck_ms:
            if self.stuck_ref is None or abs(v - self.stuck_ref) > self.eps:
                self.stuck_ref = v
                self.stuck_since = now
                return 0
            return 1 if now - self.stuck_since >= self.stuck_ms else (-1 if self.active else 0)
        return 0

    def step(self, v, now):
        """Feed a value (None = sensor missing this iteration) at now ms."""
        if self.seen is None:
            self.seen = now  # missing since boot counts from the first iteration
        if v is None:
            gone = now - self.seen >= self.missing_ms
            if self.type == "stale":
                want = 1 if (self.missing_ms and gone) else -1
            elif gone and self.fail_safe >= 0:
                want = self.fail_safe
            else:
                want = -1
            self.last_t = None  # a gap breaks the rate estimate
        else:
            self.seen = now
            want = self._cond(v, now)
            self.last_v = v
            self.last_t = now
            self.value = v
        if want < 0 or want == self.active:
            self.pending = None
            return None
        if want and self.delay:
            if self.pending is None:
                self.pending = now
            if now - self.pending < self.delay:
                return None
        if self.changed is not None and now - self.changed < self.hold:
            return None
        self.pending = None
        self.active = bool(want)
        self.changed = now
        if want:
            self.fired += 1
        return self.active


class Actuator:
    """A digital output with polarity and an idle level; set() writes only on change."""

    def __init__(self, name, pin, active_high=True, idle=0):
        self.name = name
        self.pin = pin
        self.high = active_high
        self.idle = idle
        self.on = None
        self.changes = 0
        self.set(idle)

    def set(self, on):
        """Drive the output to on (1) / off (0); True if the pin changed."""
        if on == self.on:
            return False
        self.on = on
        self.pin.value(on if self.high else 1 - on)
        self.changes += 1
        return True


class Rules:
    """All rules of a node plus the actuators they drive."""

    def __init__(self, specs, units, actuators):
        self.rules = [Rule(s, units.get(s["sensor"])) for s in specs]
        self.actuators = actuators
        self.index()

    def index(self):
        """Rebuild the per-sensor lists (after rules were swapped in)."""
        self.by_sensor = {}
        for r in self.rules:
            raw, filt = self.by_sensor.setdefault(r.sensor, ([], []))
            (filt if r.filtered else raw).append(r)

    def for_sensor(self, name):
        """(raw_rules, filtered_rules) of a sensor."""
        return self.by_sensor.get(name, ((), ()))

    def drive(self):
        """Set every actuator from the active rules; returns how many pins changed."""
        n = 0
        for name in self.actuators:
            a = self.actuators[name]
            want = -1
            for r in self.rules:
                if r.active and r.actuator == name and r.type == "stale":
                    want = r.action
                    break
            if want < 0:
                for r in self.rules:
                    if r.active and r.actuator == name:
                        want = r.action
                        break
            if want < 0:
                want = a.idle
            if a.set(want):
                n += 1
        return n

    def active(self):
        """Names of the rules that are active now."""
        return [r.name for r in self.rules if r.active]
