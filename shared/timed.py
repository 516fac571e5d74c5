"""Time-driven filters: throttle_average, heartbeat, debounce, timeout.

Each has `update(value, now_ms)` and `tick(now_ms)`; the node calls tick()
every iteration, which is where ESPHome's interval timers would fire.
"""

NAN = float("nan")


class ThrottleAverage:
    """Average of the values seen in each interval, emitted when it ends (NaN ignored)."""

    def __init__(self, interval_ms=1000):
        self.ms = interval_ms
        self.start = None
        self.sum = 0.0
        self.n = 0
        self.nan = False

    def update(self, v, now):
        if self.start is None:
            self.start = now
        out = self.tick(now)
        if v == v:
            self.sum += v
            self.n += 1
        else:
            self.nan = True
        return out

    def tick(self, now):
        if self.start is None or now - self.start < self.ms:
            return None
        self.start = now
        if self.n:
            r = self.sum / self.n
        elif self.nan:
            r = NAN
        else:
            return None
        self.sum = 0.0
        self.n = 0
        self.nan = False
        return r


class Heartbeat:
    """Emit the latest value every interval, whether or not it changed (inputs are held)."""

    def __init__(self, interval_ms=60000):
        self.ms = interval_ms
        self.v = None
        self.next = None

    def update(self, v, now):
        self.v = v
        if self.next is None:
            self.next = now + self.ms
        return self.tick(now)

    def tick(self, now):
        if self.v is None or self.next is None or now < self.next:
            return None
        self.next += self.ms * (1 + (now - self.next) // self.ms)
        return self.v


class Debounce:
    """Emit a value only once no new value arrived for time_ms (ESPHome debounce)."""

    def __init__(self, time_ms=1000):
        self.ms = time_ms
        self.v = None
        self.at = 0

    def update(self, v, now):
        self.v = v
        self.at = now
        return None

    def tick(self, now):
        if self.v is not None and now - self.at >= self.ms:
            v = self.v
            self.v = None
            return v
        return None


class Timeout:
    """Pass values; if none arrives for time_ms after the last, emit `value` (default NaN) once."""

    def __init__(self, time_ms=60000, value=None):
        self.ms = time_ms
        self.out = NAN if value is None else value
        self.last = None

    def update(self, v, now):
        self.last = now
        return v

    def tick(self, now):
        if self.last is not None and now - self.last >= self.ms:
            self.last = None
            return self.out
        return None
