"""Sliding-window filters (median, quantile, min, max, moving average) on preallocated arrays.

ESPHome cadence: a value is emitted every `send_every` inputs, the first one
after `send_first_at` inputs; NaN inputs occupy a slot but are ignored by the
statistic (an all-NaN window yields NaN).
"""

from array import array

NAN = float("nan")


class _Window:
    """Sliding window with ESPHome's send_every / send_first_at cadence."""

    def __init__(self, window_size=5, send_every=5, send_first_at=1):
        self.buf = array("f", [0.0] * window_size)
        self.size = window_size
        self.n = 0
        self.pos = 0
        self.every = send_every
        self.at = send_every - send_first_at

    def update(self, v, now):
        self.buf[self.pos] = v
        self.pos = (self.pos + 1) % self.size
        if self.n < self.size:
            self.n += 1
        self.at += 1
        if self.at >= self.every:
            self.at = 0
            return self.compute()
        return None


class _Sorted(_Window):
    def __init__(self, window_size=5, send_every=5, send_first_at=1):
        _Window.__init__(self, window_size, send_every, send_first_at)
        self.tmp = array("f", [0.0] * window_size)

    def _sorted(self):
        # Insertion sort into the preallocated scratch array, skipping NaN.
        tmp = self.tmp
        m = 0
        for i in range(self.n):
            x = self.buf[i]
            if x != x:
                continue
            j = m
            while j > 0 and tmp[j - 1] > x:
                tmp[j] = tmp[j - 1]
                j -= 1
            tmp[j] = x
            m += 1
        return m


class Median(_Sorted):
    """Median of the window (mean of the middle two for an even count)."""

    def compute(self):
        m = self._sorted()
        if not m:
            return NAN
        t = self.tmp
        return t[m // 2] if m % 2 else (t[m // 2 - 1] + t[m // 2]) / 2.0


class Quantile(_Sorted):
    """The q-quantile of the window: sorted[ceil(n * q) - 1] as ESPHome computes it."""

    def __init__(self, window_size=5, send_every=5, send_first_at=1, quantile=0.9):
        _Sorted.__init__(self, window_size, send_every, send_first_at)
        self.q = quantile

    def compute(self):
        m = self._sorted()
        if not m:
            return NAN
        # ESPHome: position = ceil(n * q) - 1, clamped to the window.
        k = int(m * self.q + 0.999999) - 1
        return self.tmp[0 if k < 0 else (m - 1 if k >= m else k)]


class Min(_Window):
    """Smallest value in the window."""

    def compute(self):
        r = NAN
        for i in range(self.n):
            x = self.buf[i]
            if x == x and (r != r or x < r):
                r = x
        return r


class Max(_Window):
    """Largest value in the window."""

    def compute(self):
        r = NAN
        for i in range(self.n):
            x = self.buf[i]
            if x == x and (r != r or x > r):
                r = x
        return r


class SlidingWindowMovingAverage(_Window):
    """Arithmetic mean of the window."""

    def compute(self):
        s = 0.0
        c = 0
        for i in range(self.n):
            x = self.buf[i]
            if x == x:
                s += x
                c += 1
        return s / c if c else NAN
