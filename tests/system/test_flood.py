"""Bounded resources under a flood: real mosquitto, one in-process gateway, a hostile publisher.

A flooder process writes FLOOD_MSGS MQTT PUBLISH packets (QoS 0, raw socket, no pacing: as fast as TCP takes them)
mixing three kinds: valid packs of its own node `hog`, oversized payloads (> [ingest] max_payload_bytes)
and valid-looking packs from thousands of invented node ids (with a small [ingest] max_devices).
Meanwhile a well-behaved node `good` publishes a pack every 50 ms at QoS 1 and, like the firmware,
re-sends from its last ack when the ack stalls (mosquitto drops QoS 1 too when the gateway lags).

Asserted: every reading of `good` is stored exactly once and acked; the flood is refused with counters
(`dead_letters{too_large}`, `dead_letters{unknown_device}`) and every message the gateway received is
either accepted or dead-lettered (nothing silently lost); the registry and the nodes table stay within
max_devices; the dead-letter table is pruned back to dead_letter_max_rows; the gateway's memory growth
(VmRSS of this process, which hosts the whole gateway with worker_process = false) stays under
RSS_GROWTH_BOUND_MB. Printed, not asserted: ack latency p50/p99 of `good` during the flood, RSS, rates.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
import time

import cbor2
import paho.mqtt.client as mqtt

from fogline.shared import topics
from tests.gateway.ingest_helpers import SITE, GatewayThread, db_rows, gw_config, payload, wait_for
from fogline.tools import hostemu
from harness.stats import pctl

FLOOD_MSGS = 30000  # sent back to back; a bounded burst so the gateway drains it within the test
GOOD_S = 4.0        # the good node publishes for this long from the start of the flood
MAX_PAYLOAD = 1024
OVERSIZE = 4096
MAX_DEVICES = 8
DL_MAX_ROWS = 300
UNKNOWN_IDS = 5000
QUEUE_MAX = 2000
RSS_GROWTH_BOUND_MB = 150  # stated bound for the gateway's memory growth during the flood
DRAIN_STALL_S = 60.0  # the drain fails only when no ack progress for this long ...
DRAIN_CAP_S = 600.0   # ... or when the whole drain takes longer than this

FLOODER = r"""
import json, socket, sys, time
from fogline.shared import cbor, senml
port, site, total, oversize, n_unknown = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])

def rl(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | (128 if n else 0))
        if not n:
            return bytes(out)

def publish(topic, data):
    t = topic.encode()
    body = len(t).to_bytes(2, "big") + t + data
    return b"\x30" + rl(len(body)) + body

s = socket.create_connection(("127.0.0.1", port))
cid = b"flooder"
var = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(cid).to_bytes(2, "big") + cid
s.sendall(b"\x10" + rl(len(var)) + var)
assert s.recv(4)[:2] == b"\x20\x02"
now = time.time() - 30
def pack(node, seq, n):
    return cbor.dumps([seq, senml.build_pack(node + "/", now, [("temp", "Cel", 20.0 + i * 0.01, now + i) for i in range(n)])])
big = publish("fogline/%s/hog/up" % site, bytes(range(256)) * (oversize // 256 + 1))
strangers = [publish("fogline/%s/u%05d/up" % (site, k), pack("u%05d" % k, 1, 1)) for k in range(n_unknown)]
sent = {"hog_valid": 0, "oversized": 0, "unknown_id": 0}
seq = 1
t0 = time.monotonic()
i = 0
while i < total:
    buf = []
    for _ in range(min(64, total - i)):
        k = i % 3
        if k == 0:
            buf.append(publish("fogline/%s/hog/up" % site, pack("hog", seq, 10)))
            seq += 10
            sent["hog_valid"] += 1
        elif k == 1:
            buf.append(big)
            sent["oversized"] += 1
        else:
            buf.append(strangers[(i // 3) % n_unknown])
            sent["unknown_id"] += 1
        i += 1
    s.sendall(b"".join(buf))
s.sendall(b"\xe0\x00")  # DISCONNECT
s.close()
sent["seconds"] = round(time.monotonic() - t0, 3)
print(json.dumps(sent), flush=True)
"""


class GoodNode:
    """A well-behaved node: one pack every period, QoS 1, re-sends from the last ack when acks stall."""

    def __init__(self, port: int, name: str = "good", per_pack: int = 5):
        self.name, self.per_pack = name, per_pack
        self.sent: dict[int, tuple[bytes, float]] = {}  # first_seq -> (payload, first send time)
        self.last_seq = 0
        self.acked = 0
        self.ack_at: dict[int, float] = {}  # first_seq -> time its ack arrived
        self.resends = 0
        self.lock = threading.Lock()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"good-{port}", protocol=mqtt.MQTTv311)
        self.c.max_inflight_messages_set(100)
        self.c.on_message = self._on_ack
        self.c.connect("127.0.0.1", port)
        self.c.subscribe(topics.node(SITE, name, "ack"), 1)
        self.c.loop_start()
        self.last_progress = time.monotonic()  # last ack progress or re-send (paces re-sends)
        self.last_ack = self.last_progress     # last ack progress only (judges the drain)

    def _on_ack(self, c, u, m) -> None:
        up = cbor2.loads(m.payload).get("up", 0)
        now = time.monotonic()
        with self.lock:
            if up > self.acked:
                self.acked = up
                self.last_progress = self.last_ack = now
                for fs in self.sent:
                    if fs + self.per_pack - 1 <= up and fs not in self.ack_at:
                        self.ack_at[fs] = now

    def send_next(self, t0: float) -> None:
        fs = self.last_seq + 1
        data = payload(self.name, fs, [15.0 + 0.1 * ((fs + j) % 50) for j in range(self.per_pack)], t0=t0 + fs)
        with self.lock:
            self.sent[fs] = (data, time.monotonic())
            self.last_seq = fs + self.per_pack - 1
        self.c.publish(topics.node(SITE, self.name, "up"), data, qos=1)

    def resend_if_stalled(self, stall_s: float = 1.0) -> None:
        """Firmware behaviour: no ack progress for stall_s -> re-send everything above the ack."""
        with self.lock:
            if self.acked >= self.last_seq or time.monotonic() - self.last_progress < stall_s:
                return
            todo = [d for fs, (d, _) in sorted(self.sent.items()) if fs > self.acked]
            self.last_progress = time.monotonic()
        for d in todo:
            self.resends += 1
            self.c.publish(topics.node(SITE, self.name, "up"), d, qos=1)

    def latencies_ms(self, since: float, until: float) -> list[float]:
        with self.lock:
            return sorted((self.ack_at[fs] - t) * 1000 for fs, (_, t) in self.sent.items()
                          if fs in self.ack_at and since <= t <= until)

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def rss_kb(pid: str | int = "self") -> int:
    try:
        for ln in open(f"/proc/{pid}/status"):
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1])
    except OSError:
        pass
    return 0


def test_flood_leaves_good_node_served_and_resources_bounded(mosquitto, tmp_path):
    data = tmp_path / "data"
    cfg = gw_config(tmp_path, mosquitto.port, mqtt={"worker_process": False},
                    ingest={"max_payload_bytes": MAX_PAYLOAD, "max_devices": MAX_DEVICES,
                            "dead_letter_max_rows": DL_MAX_ROWS, "queue_max": QUEUE_MAX,
                            "known_devices": ["good"]},
                    tiers={"maintenance_s": 1.0})
    g = GatewayThread(cfg).start()
    gw = g.gw
    good = GoodNode(mosquitto.port)
    t0 = time.time() - 3000  # seq s at t0 + s: far from the max_future_s horizon
    flood = None
    peak = {"rss": 0, "dl_rows": 0}
    stop_sampling = threading.Event()

    def sample() -> None:
        while not stop_sampling.is_set():
            peak["rss"] = max(peak["rss"], rss_kb())
            n = db_rows(data, "SELECT count(*) FROM dead_letters")[0][0] if (data / "ingest.sqlite").exists() else 0
            peak["dl_rows"] = max(peak["dl_rows"], n)
            stop_sampling.wait(0.2)

    try:
        # the good node is registered and served before the flood starts
        good.send_next(t0)
        assert wait_for(lambda: good.acked >= good.last_seq, 60), "good node not acked before the flood"
        rss_base = rss_kb()
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        flood = subprocess.Popen([sys.executable, "-c", FLOODER, str(mosquitto.port), SITE, str(FLOOD_MSGS),
                                  str(OVERSIZE), str(UNKNOWN_IDS)], cwd=hostemu.REPO, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        f_start = time.monotonic()
        while time.monotonic() - f_start < GOOD_S:
            good.send_next(t0)
            good.resend_if_stalled()
            time.sleep(0.05)
        f_end = time.monotonic()
        out, err = flood.communicate(timeout=300)
        assert flood.returncode == 0, err
        sent = json.loads(out.strip().splitlines()[-1])
        # drain: the good node keeps re-sending until everything it published is acked; a slow host only
        # slows the drain, so give up only when the ack cursor stops moving for DRAIN_STALL_S (or at the cap)
        cap = time.monotonic() + DRAIN_CAP_S
        while good.acked < good.last_seq and time.monotonic() < cap:
            with good.lock:
                stalled = time.monotonic() - good.last_ack
            if stalled > DRAIN_STALL_S:
                break
            good.resend_if_stalled(0.5)
            time.sleep(0.05)
        g.flush()
        assert good.acked == good.last_seq, (f"good node acked {good.acked} of {good.last_seq}, no ack progress for "
                                             f"{time.monotonic() - good.last_ack:.0f} s ({sent})")
        # one maintenance cycle after the flood prunes the dead-letter table back to the cap
        assert wait_for(lambda: db_rows(data, "SELECT count(*) FROM dead_letters")[0][0] <= DL_MAX_ROWS, 60)
        stop_sampling.set()
        sampler.join(2)
        rss_end = rss_kb()
        m = gw.metrics
        counters = {k: m.get("dead_letters", reason=k) for k in ("too_large", "unknown_device", "replayed_seq",
                                                                 "cbor", "structure", "internal")}
        devices = dict(gw.registry.devices)
        msgs_in = m.total("messages_in")
        accepted = sum(d.messages for d in devices.values())
    finally:
        stop_sampling.set()
        if flood is not None and flood.poll() is None:
            flood.kill()
        good.close()
        g.stop()

    # every good reading stored exactly once (primary key) and acked
    seqs = [r[0] for r in db_rows(data, "SELECT r.seq FROM readings r JOIN nodes n ON n.nid=r.nid "
                                        "WHERE n.name='good' AND r.lane=0 ORDER BY r.seq")]
    assert seqs == list(range(1, good.last_seq + 1))
    # the flood was refused with counters, and nothing the gateway received went unaccounted
    assert counters["too_large"] > 0 and counters["unknown_device"] > 0
    assert counters["cbor"] == counters["structure"] == counters["internal"] == 0
    assert msgs_in == accepted + m.total("dead_letters"), (msgs_in, accepted, m.total("dead_letters"))
    assert {r[0] for r in db_rows(data, "SELECT DISTINCT reason FROM dead_letters")} <= {"too_large",
                                                                                       "unknown_device"}
    # bounded: registry, nodes table, dead letters, memory
    assert "good" in devices and len(devices) <= MAX_DEVICES
    assert db_rows(data, "SELECT count(*) FROM nodes")[0][0] <= MAX_DEVICES
    assert db_rows(data, "SELECT count(*) FROM devices")[0][0] <= MAX_DEVICES
    assert db_rows(data, "SELECT count(*) FROM dead_letters")[0][0] <= DL_MAX_ROWS
    assert peak["dl_rows"] <= DL_MAX_ROWS, peak  # hard cap at insert: never above it, even between prunes
    growth_mb = (peak["rss"] - rss_base) / 1024
    lat = good.latencies_ms(f_start, f_end)
    hog = db_rows(data, "SELECT count(*) FROM readings r JOIN nodes n ON n.nid=r.nid WHERE n.name='hog'")[0][0]
    print(f"\nflood {sent['seconds']}s sent: hog_valid={sent['hog_valid']} oversized={sent['oversized']} "
          f"unknown_id={sent['unknown_id']} ({sum(v for k, v in sent.items() if k != 'seconds') / sent['seconds']:.0f}"
          f" msg/s); gateway received {msgs_in:.0f} (mosquitto dropped the rest: QoS 0 to a lagging subscriber)")
    print(f"dead_letters: too_large={counters['too_large']:.0f} unknown_device={counters['unknown_device']:.0f} "
          f"table peak {peak['dl_rows']} (sampled every 0.2 s; hard cap enforced at insert) -> end "
          f"<= {DL_MAX_ROWS}; hog readings stored {hog}; registry {len(devices)}/{MAX_DEVICES}")
    print(f"good node: {good.last_seq} readings all stored and acked, {good.resends} re-sent packs; "
          f"ack latency during flood p50={pctl(lat, 0.5, empty=math.nan):.0f} ms p99={pctl(lat, 0.99, empty=math.nan):.0f} ms (n={len(lat)})")
    print(f"gateway process RSS: base {rss_base / 1024:.1f} MiB, peak {peak['rss'] / 1024:.1f} MiB, end "
          f"{rss_end / 1024:.1f} MiB, growth {growth_mb:.1f} MiB (bound {RSS_GROWTH_BOUND_MB}); mosquitto RSS "
          f"{rss_kb(mosquitto.proc.pid) / 1024:.1f} MiB")
    assert growth_mb < RSS_GROWTH_BOUND_MB
