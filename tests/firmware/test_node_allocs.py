# Heap bytes allocated per sample by the node core (filters, rules, codec, CRC framing, FlashLog) are
# the same whatever the node's clock, its record times and its CRC values: on a 32-bit board an int
# above 2**30 (an epoch second, a CRC-32, a large seq or tick) is a heap object, so a long int on the
# per-sample path shows up here as a difference. gc.mem_alloc() deltas with the collector off;
# readings come from a driver that does not allocate (a board's I2C is C, not the simulated chip).
import gc
import os

import flashdev
import machine
from firmware.flashlog import FlashLog
from firmware.node import Node
from shared import config as C

MP_HEAPSIZE = "384wK"
# the flash image lives in a host file (not on the heap); unique per run: colleagues share /tmp
_IMG = "/tmp/fogline_node_allocs_%s.img" % "".join("%02x" % b for b in os.urandom(4))

_CYCLE = 20  # readings repeat every _CYCLE samples, so every window sees the same records
_WINDOW = 3 * _CYCLE


class _Preset:
    """bme280-shaped driver whose readings cycle through preallocated floats."""

    FIELDS = ("temperature", "pressure", "humidity")
    UNITS = ("Cel", "Pa", "%RH")

    def __init__(self):
        self.values = [None, None, None]
        self.last_error = None
        self.t = [20.0 + (i % 10) * 0.5 + (12.0 if i == 7 else 0.0) for i in range(_CYCLE)]
        self.h = [40.0 + (i % 4) for i in range(_CYCLE)]
        self.i = 0

    def measure(self):
        i = self.i
        self.values[0] = self.t[i]
        self.values[1] = 101325.0
        self.values[2] = self.h[i]
        self.i = 0 if i + 1 == _CYCLE else i + 1
        return True


def _node(store):
    site = {"node": {"id": "a1", "site": "s1", "board": "pico_w"}, "sample_ms": 1000, "watchdog_ms": 0,
            "sensors": [{"name": "temperature", "driver": "bme280", "field": "temperature", "unit": "Cel",
                         "filters": [{"type": "median", "window_size": 3, "send_every": 1},
                                     {"type": "delta", "value": 0.2}, {"type": "heartbeat", "interval_ms": 7000}]},
                        {"name": "humidity", "driver": "bme280", "field": "humidity", "unit": "%RH",
                         "filters": [{"type": "sliding_window_moving_average", "window_size": 4,
                                      "send_every": 2}]}],
            "rules": [{"name": "hot", "sensor": "temperature", "type": "above", "threshold": 30.0,
                       "hysteresis": 1.0, "actuator": "relay"}]}
    import json
    with open("boards/pico_w.json") as f:
        board = json.load(f)
    cfg = C.validate_config(C.merge(C.DEFAULTS, board, site))
    dev = _Preset()
    return Node.from_config(cfg, {"temperature": dev, "humidity": dev},
                            {"relay": machine.Pin(15, machine.Pin.OUT)}, store)


def _window(node, store, now, t_s):
    """Bytes allocated over one window of samples starting at (now ms, t_s node seconds)."""
    for lane in ("up", "alert"):
        store.ack_upto(lane, store.durable_seq(lane))
    gc.collect()
    gc.disable()
    try:
        a = gc.mem_alloc()
        k = node.stats["kept"] + node.stats["alerts"]
        for i in range(_WINDOW):
            node.sample(now + i * 1000, t_s + i)
        return gc.mem_alloc() - a, node.stats["kept"] + node.stats["alerts"] - k
    finally:
        gc.enable()


def test_bytes_per_sample_do_not_depend_on_clock_times_or_crc_values():
    dev = flashdev.FlashDev(64, path=_IMG)
    flashdev.mount(dev, "/fa", format=True)
    try:
        _measure()
    finally:
        flashdev.umount("/fa")
        dev.close()
        os.remove(_IMG)


def _measure():
    rows = []
    # A fresh node per case, started at (now ms, node seconds): 2026 at boot; 2050 (node seconds
    # above 2**29); 2050 after six days of uptime (now just below 2**30 ms). Same readings, same
    # seqs: only the times (and so every CRC) differ.
    for k, (now, t_s) in enumerate(((0, 190000000), (0, 950000000), (2 ** 30 - 4 * _WINDOW * 1000, 950000000))):
        store = FlashLog("/fa/log%d" % k, capacity_bytes=96 * 1024, segment_bytes=32 * 1024, sync_every=1,
                         sync_ms=0)
        node = _node(store)
        _window(node, store, now, t_s)  # warm-up: filter windows fill, files exist
        rows.append(_window(node, store, now + _WINDOW * 1000, t_s + _WINDOW))
        assert node.stats["store_errors"] == 0 and node.stats["alerts"] > 0, node.stats
    print("bytes per window of %d samples, records:" % _WINDOW, rows,
          "-> %d bytes/sample, %d bytes/record" % (rows[0][0] // _WINDOW, rows[0][0] // rows[0][1]))
    assert rows[0][1] == rows[1][1] == rows[2][1] > 0, rows  # the same records in every case
    assert rows[0][0] == rows[1][0] == rows[2][0], rows
