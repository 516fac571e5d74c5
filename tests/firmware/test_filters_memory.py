# Filter chains keep constant memory per sample (MicroPython's gc.mem_alloc; CPython has no equivalent).
import gc

from shared import filters as F


def test_constant_memory_per_sample():
    specs = [{"type": "median", "window_size": 9, "send_every": 1},
             {"type": "sliding_window_moving_average", "window_size": 16, "send_every": 1},
             {"type": "exponential_moving_average", "alpha": 0.2, "send_every": 1},
             {"type": "delta", "value": 0.01}, {"type": "heartbeat", "interval_ms": 5000}]
    c = F.build_chain(specs)
    for i in range(200):
        c.update(20.0 + (i % 7) * 0.1, i * 100)
    gc.collect()
    before = gc.mem_alloc()
    for i in range(200, 5200):
        c.update(20.0 + (i % 7) * 0.1, i * 100)
        c.tick(i * 100)
    gc.collect()
    grown = gc.mem_alloc() - before
    assert grown < 256, "filters grew by %d bytes over 5000 samples" % grown
