"""Seeded, reproducible sensor signals with ground truth (host emulation only).

A Series is a pure function of (seed, t): evaluating it twice or out of order
gives the same numbers, so a test can recompute what the sensor "saw".

    s = Series(seed=3, base=21.0, amplitude=4.0, noise=0.05, spike_rate=0.01, ...)
    measured, truth, flags = s.sample(t_s)   # measured None during a dropout/death
    s.value(t_s) -> measured (what simulated hardware reports)

Flags (bitmask) say which effects applied at t: SPIKE STUCK DROPOUT DRIFT STEP DEAD.
A Scenario groups named series plus Wi-Fi outage windows and records the
ground truth of every sample read through it (bounded list, optional file).
"""

import math

SPIKE = 1
STUCK = 2
DROPOUT = 4
DRIFT = 8
STEP = 16
DEAD = 32

_M32 = 0xFFFFFFFF


def _mix(x):
    # 32-bit integer hash (lowbias32): good enough spread for simulated noise.
    x &= _M32
    x ^= x >> 16
    x = (x * 0x7FEB352D) & _M32
    x ^= x >> 15
    x = (x * 0x846CA68B) & _M32
    x ^= x >> 16
    return x


def _uniform(seed, k, salt):
    """Deterministic uniform in [0, 1) for (seed, sample index, salt)."""
    return _mix(_mix(_mix(seed) ^ (k & _M32)) ^ salt) / 4294967296.0


def _gauss(seed, k, salt):
    u1 = _uniform(seed, k, salt) or 1e-12
    u2 = _uniform(seed, k, salt + 0x9E37)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


class Series:
    """One simulated physical quantity and the faults of the sensor measuring it."""

    def __init__(self, seed=1, base=21.0, amplitude=0.0, period_s=86400, phase_s=0, noise=0.0,
                 spike_rate=0.0, spike_size=10.0, drift_per_h=0.0, drift_start_s=0, stuck=None,
                 step=None, dropouts=(), dies_at_s=None, lo=None, hi=None, resolution_ms=1):
        self.seed = seed
        self.base = base
        self.amplitude = amplitude
        self.period_s = period_s
        self.phase_s = phase_s
        self.noise = noise
        self.spike_rate = spike_rate
        self.spike_size = spike_size
        self.drift_per_h = drift_per_h
        self.drift_start_s = drift_start_s
        self.stuck = stuck
        self.step = step
        self.dropouts = [tuple(d) for d in dropouts]
        self.dies_at_s = dies_at_s
        self.lo = lo
        self.hi = hi
        self.resolution_ms = resolution_ms

    @classmethod
    def from_spec(cls, spec, seed=1):
        """Build from a dict of constructor keywords (JSON-friendly)."""
        kw = dict(spec)
        kw.setdefault("seed", seed)
        return cls(**kw)

    def truth(self, t_s):
        """The physical value (no sensor faults, no noise) and DRIFT/STEP flags."""
        flags = 0
        v = self.base
        if self.amplitude:
            v += self.amplitude * math.sin(2.0 * math.pi * (t_s + self.phase_s) / self.period_s)
        if self.step is not None and t_s >= self.step[0]:
            v += self.step[1]
            flags |= STEP
        return v, flags

    def sample(self, t_s):
        """(measured or None, truth, flags) at t_s seconds."""
        truth, flags = self.truth(t_s)
        if self.dies_at_s is not None and t_s >= self.dies_at_s:
            return None, truth, flags | DEAD
        for a, b in self.dropouts:
            if a <= t_s < b:
                return None, truth, flags | DROPOUT
        t_read = t_s
        if self.stuck is not None and self.stuck[0] <= t_s < self.stuck[1]:
            t_read = self.stuck[0]
            flags |= STUCK
        k = int(t_read * 1000) // self.resolution_ms
        v = self.truth(t_read)[0]
        if self.drift_per_h and t_read > self.drift_start_s:
            v += self.drift_per_h * (t_read - self.drift_start_s) / 3600.0
            flags |= DRIFT
        if self.noise:
            v += self.noise * _gauss(self.seed, k, 1)
        if self.spike_rate and _uniform(self.seed, k, 7) < self.spike_rate:
            v += self.spike_size if _uniform(self.seed, k, 11) < 0.5 else -self.spike_size
            flags |= SPIKE
        if self.lo is not None and v < self.lo:
            v = self.lo
        if self.hi is not None and v > self.hi:
            v = self.hi
        return v, truth, flags

    def value(self, t_s):
        """What the sensor reports at t_s (None when it does not answer)."""
        return self.sample(t_s)[0]


class Scenario:
    """Named series + Wi-Fi outages + ground-truth recording."""

    def __init__(self, series=None, wifi_outages=(), seed=1, record=0, record_path=None, hang_at_s=None):
        self.seed = seed
        self.hang_at_s = hang_at_s  # the sensor bus locks up for good (watchdog tests)
        self.series = series or {}
        self.wifi_outages = [tuple(w) for w in wifi_outages]
        self.record_max = record
        # Preallocated: a growing list needs ever larger contiguous blocks in a fragmented heap.
        self._recs = [None] * record
        self.n_records = 0
        self.record_path = record_path
        self._rf = None

    @classmethod
    def from_spec(cls, spec):
        """Build from {"seed", "signals": {name: series kwargs}, "wifi_outages": [[a_s, b_s]], "hang_at_s"}."""
        seed = spec.get("seed", 1)
        series = {}
        i = 0
        for name, s in spec.get("signals", {}).items():
            i += 1
            series[name] = Series.from_spec(s, seed * 1000 + i)
        return cls(series, spec.get("wifi_outages", ()), seed, spec.get("record", 0), spec.get("record_path"),
                   spec.get("hang_at_s"))

    def read(self, name, t_s):
        """Measured value of series `name` at t_s, recorded with its truth."""
        m, truth, flags = self.series[name].sample(t_s)
        if self.n_records < self.record_max:
            self._recs[self.n_records] = (t_s, name, m, truth, flags)
            self.n_records += 1
        if self.record_path:
            if self._rf is None:
                self._rf = open(self.record_path, "a")
            self._rf.write("%s,%s,%s,%s,%d\n" % (t_s, name, m, truth, flags))
        return m

    @property
    def records(self):
        """Recorded (t_s, name, measured, truth, flags), oldest first."""
        return self._recs if self.n_records == self.record_max else self._recs[:self.n_records]

    def wifi_up(self, t_s):
        """False inside a scheduled outage."""
        for a, b in self.wifi_outages:
            if a <= t_s < b:
                return False
        return True

    def close(self):
        if self._rf is not None:
            self._rf.close()
            self._rf = None


def preset(name, seed=1):
    """Demo scenarios: normal, spikes, drift, dies, wifi_loss, hot, stuck."""
    t = {"base": 21.0, "amplitude": 3.0, "period_s": 600, "noise": 0.05}
    h = {"base": 45.0, "amplitude": 8.0, "period_s": 600, "phase_s": 150, "noise": 0.3, "lo": 0.0, "hi": 100.0}
    p = {"base": 101325.0, "amplitude": 150.0, "period_s": 900, "noise": 3.0}
    out = []
    if name == "spikes":
        t["spike_rate"] = 0.03
        t["spike_size"] = 15.0
    elif name == "drift":
        t["drift_per_h"] = 30.0
    elif name == "dies":
        t["dies_at_s"] = 60
        h["dies_at_s"] = 60
        p["dies_at_s"] = 60
    elif name == "wifi_loss":
        out = [[30, 90]]
    elif name == "hot":
        t["step"] = [40, 15.0]
    elif name == "stuck":
        t["stuck"] = [30, 120]
    elif name != "normal":
        raise ValueError("unknown scenario preset: " + name)
    return Scenario.from_spec({"seed": seed, "signals": {"temperature": t, "humidity": h, "pressure": p},
                               "wifi_outages": out})
