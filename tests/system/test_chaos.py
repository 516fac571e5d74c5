"""Chaos system test: real mosquitto + gateway process + virtual nodes on the real firmware, seeded faults.

Faults (seeded, logged with their time): kill -9 + restart of a node (power cut mid-write), kill -9 +
restart of the gateway, site broker restart, simulated Wi-Fi outages per node (node 0's scenario, and
with `wifi_drops` seeded drops of random nodes through the node's control file). With `cloud` the relay
sends to a TLS + password cloud mosquitto through `harness.netem.NetEm`, a TCP proxy the test degrades on
a seeded schedule: cloud broker outages (stopped), and with `uplink_faults` a throttled uplink (bytes/s),
a blackholed one and a refused one. With `flash_full` the last node samples fast into a tiny flash log
(FULL_LOG) and loses Wi-Fi for long stretches, so its capacity policy drops its oldest readings.

At the end every node stops sampling and drains; then we reconcile per node and lane against the
ground truth the node holds in its flash log (n = highest durable seq = readings it decided to keep):
- gateway: every seq 1..n is stored, or is in a gap the gateway skipped on the node's word AND counted
  by the node's persisted drop counters (`dropped.<lane>_capacity/_nospace`); anything else is
  unexplained loss; nothing stored above n (no seq reuse); everything acked; backlog empty;
- cloud (with `cloud`; readings only when the relay forwards them, `[cloud] forward_readings`): every
  kept reading is in the cloud record after de-duplication by (node, lane, seq), or is one of those
  explicit policy drops; every alert the gateway stored is there exactly once after de-duplication by
  (node, seq); nothing the gateway never stored; summaries present; nothing undecodable;
- summaries (with `cloud`): the cloud keeps the highest revision of each window key (shared/summary.py);
  every reading the gateway stored lies in a delivered 10 s summary window ("no summary" = 0, late data
  included: windows are corrected, not dropped) and every window the cloud holds has, in its final
  revision, the count/min/max/mean of the readings the gateway stored for it;
- duplicates absorbed are counted (gateway: re-sent seqs it already had; cloud: re-sent rows with the same
  key, and the same (node, lane, seq) under another key after a gateway crash);
- resources stay within the configured caps: gateway RSS (all its processes, sampled from
  /proc/<pid>/status VmRSS/VmHWM), gateway data dir and outbox bytes per lane, node heap (heap_free
  minimum) and node flash log bytes (FlashLog.used_bytes against log.capacity_bytes).
No message may be dead-lettered as corrupt. The site runs as provisioned (`fogline provision`:
passwords, ACL, HMAC keys checked by the gateway); an intruder holding a node's MQTT password but not
its auth key publishes forged packs, which must be refused (`auth` dead letters) and never stored.
The test prints the reconciliation table. The short runs are in CI; the soak variant runs with --soak
(FOGLINE_SOAK_S seconds, default 1800, FOGLINE_SOAK_NODES nodes, default 20, FOGLINE_SOAK_SEED, default 7).
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import sqlite3
import sys
import threading
import time
from pathlib import Path

import pytest

from fogline.gateway.ops.provision import broker_conf, provision
from fogline.tools import hostemu
from harness.broker import Mosquitto, free_port
from harness.sitekit import HEAP, NODE_SCRIPT, Proc, VNode

REPO = hostemu.REPO
SITE = "chaos"
ALERT_ABOVE = 22.0  # the scenarios swing 18..24 C, so every node crosses it a few times
CORRUPT_REASONS = ("cbor", "structure", "senml", "seq", "internal")
# The flash-full node: a tiny log (the config minimum) filled fast, so a Wi-Fi outage overflows it.
FULL_LOG = {"capacity_bytes": 8192, "segment_bytes": 1024, "sync_every": 32, "sync_ms": 2000}
FULL_SAMPLE_MS = 50
FLASH_BUFFER_BYTES = 4096  # FlashLog's RAM group-commit buffer, counted in used_bytes on top of the files
# Configured gateway caps ([outbox.lanes.*] max_bytes) and stated bounds the run must stay within.
OUTBOX_CAPS = {"alert": 8 << 20, "anomaly": 8 << 20, "summary": 8 << 20, "raw": 32 << 20}
GATEWAY_RSS_BOUND_MB = 400   # all gateway processes together (main + MQTT worker), sampled every second
GATEWAY_DISK_BOUND_MB = 256  # the gateway data dir (ingest store, outbox, WAL files, metrics)
UPLINK_KINDS = ("cloud_outage", "uplink_throttle", "uplink_blackhole", "uplink_refuse")
SUMMARY_S = 10.0  # the relay's summary window in these runs ([cloud] summary_windows_s)
# a node silent this long (wall clock) has its windows fired: Wi-Fi drops then make late data normal
IDLE_CLOSE_S = 3.0


def _mp_available() -> bool:
    try:
        hostemu.find_micropython()
        return True
    except Exception:
        return False


pytestmark = pytest.mark.skipif(not NODE_SCRIPT.exists() or not _mp_available(),
                                reason="virtual node runner or micropython not available")


def _gateway(d: Path, port: int, user: str, password: str, keys: Path, extra: str = "") -> Proc:
    d.mkdir(parents=True, exist_ok=True)
    conf = d / "gateway.toml"
    lanes = "".join(f"\n[outbox.lanes.{ln}]\nmax_bytes = {cap}\n" for ln, cap in OUTBOX_CAPS.items())
    conf.write_text(f'[site]\nid = "{SITE}"\ndata_dir = "{d / "data"}"\n\n[mqtt]\nhost = "127.0.0.1"\n'
                    f'port = {port}\nusername = "{user}"\npassword = "{password}"\n'
                    f'reconnect_min_s = 0.2\nreconnect_max_s = 1.0\n\n'
                    f'[ingest]\nauth_keys_file = "{keys}"\nrequire_auth = true\n\n'
                    f'[metrics]\nsnapshot_s = 1.0\n\n[aggregate]\nidle_close_s = {IDLE_CLOSE_S}\n' + lanes + extra)
    return Proc([sys.executable, "-m", "fogline.tools.cli", "gateway", "--config", str(conf), "--log-level", "WARNING"],
                dict(os.environ), REPO, d / "gateway.log")


def _wait_ready(db: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not db.exists():
        time.sleep(0.1)


def _proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM (kB) of a process from /proc; {} if it is gone."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for ln in f:
                if ln.startswith(("VmRSS:", "VmHWM:")):
                    out[ln.split(":")[0]] = int(ln.split()[1])
    except OSError:
        pass
    return out


def _children(pid: int) -> list[int]:
    """Direct and indirect children of pid (the gateway's MQTT worker process)."""
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    kids = [int(x) for x in f.read().split()]
                out += kids
                todo += kids
        except OSError:
            pass
    return out


def _dir_bytes(d: Path) -> int:
    n = 0
    for root, _dirs, files in os.walk(d):
        for fn in files:
            try:
                n += os.stat(os.path.join(root, fn)).st_size
            except OSError:
                pass  # a WAL file checkpointed away meanwhile
    return n


def _count(db: Path, sql: str) -> int:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            return con.execute(sql).fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:  # not created yet, or locked for a moment
        return 0


class GatewayWatch:
    """Samples the gateway every `every` s across its incarnations: RSS, disk, outbox bytes, metrics counters."""

    COUNTERS = ("duplicates", "duplicate_messages", "seq_gaps_skipped")
    GAUGES = ("late_readings", "window_corrections")  # per incarnation: readings for fired windows, corrections

    def __init__(self, gw: Proc, data: Path, every: float = 1.0):
        self.gw, self.data, self.every = gw, data, every
        self.peak_rss_kb = 0     # sum over the gateway's processes at one sample
        self.peak_hwm_kb = 0     # highest VmHWM of any one gateway process
        self.peak_disk = 0       # data dir bytes
        self.peak_outbox: dict[str, int] = {}  # lane -> body bytes queued
        self.samples = 0
        self._incarnations: dict[tuple, dict[str, float]] = {}  # (pid, started) -> counter totals
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "GatewayWatch":
        self._t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._t.join(10)
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.sample()
            except Exception as e:  # the watch must never kill the run; it reports what it saw
                print("gateway watch:", repr(e))

    def sample(self) -> None:
        pid = self.gw.pid
        if pid:
            rss = 0
            for p in [pid] + _children(pid):
                st = _proc_status(p)
                rss += st.get("VmRSS", 0)
                self.peak_hwm_kb = max(self.peak_hwm_kb, st.get("VmHWM", 0))
            self.peak_rss_kb = max(self.peak_rss_kb, rss)
        if self.data.exists():
            self.peak_disk = max(self.peak_disk, _dir_bytes(self.data))
        ob = self.data / "outbox.sqlite"
        if ob.exists():
            try:
                con = sqlite3.connect(f"file:{ob}?mode=ro", uri=True)
                try:
                    from fogline.gateway.relay.outbox import LANES
                    for li, n in con.execute("SELECT lane, COALESCE(SUM(size), 0) FROM outbox GROUP BY lane"):
                        ln = LANES[li] if isinstance(li, int) and li < len(LANES) else str(li)
                        self.peak_outbox[ln] = max(self.peak_outbox.get(ln, 0), int(n))
                finally:
                    con.close()
            except sqlite3.Error:
                pass
        try:
            snap = json.loads((self.data / "metrics.json").read_text())
            key = (snap.get("pid"), snap.get("started"))
            vals = {c: sum(x["value"] for x in snap["counters"].get(c, [])) for c in self.COUNTERS}
            vals.update({g: sum(x["value"] for x in snap["gauges"].get(g, [])) for g in self.GAUGES})
            self._incarnations[key] = vals
        except (OSError, ValueError, KeyError, TypeError):
            pass
        self.samples += 1

    def counters(self) -> dict[str, int]:
        """Counter totals summed over gateway incarnations (lower bounds: a kill -9 loses up to one snapshot)."""
        tot = {c: 0 for c in self.COUNTERS + self.GAUGES}
        for d in self._incarnations.values():
            for c in self.COUNTERS + self.GAUGES:
                tot[c] += int(d.get(c, 0))
        tot["incarnations_seen"] = len(self._incarnations)
        return tot


def _attack(port: int, node: str, password: str) -> dict[str, int]:
    """An intruder with a node's MQTT password but not its auth key forges packs; a stranger tries too."""
    import paho.mqtt.client as mqtt

    from fogline.shared import auth, cbor, senml

    now = int(time.time())
    pack = cbor.dumps(senml.build_pack(f"{node}/", now, [("temperature", "Cel", 99.0, now)]))
    payloads = [auth.seal_pack(bytes(32), node, "up", 10**6, pack),        # wrong key
                auth.seal_pack(None, node, "alert", 10**6, pack),          # unsigned
                auth.seal_pack(bytes(32), node, "alert", 10**6 + 1, pack)]
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="intruder", protocol=mqtt.MQTTv311)
    c.username_pw_set(node, password)
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        for i, p in enumerate(payloads):
            lane = "up" if i == 0 else "alert"
            c.publish(f"fogline/{SITE}/{node}/{lane}", p, qos=1).wait_for_publish(10)
    finally:
        c.disconnect()
        c.loop_stop()
    stranger = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="stranger", protocol=mqtt.MQTTv311)
    refused = {"rc": -1}
    stranger.on_connect = lambda cl, u, f, rc, p: refused.update(rc=rc.value)
    stranger.connect("127.0.0.1", port)
    stranger.loop_start()
    deadline = time.monotonic() + 60
    while refused["rc"] == -1 and time.monotonic() < deadline:
        time.sleep(0.05)
    stranger.loop_stop()
    return {"forged_packs": len(payloads), "anonymous_connect_rc": refused["rc"]}


class _Cloud:
    """Cloud side: a TLS + password mosquitto (persistent) behind a NetEm proxy, the gateway's [cloud]
    settings, a cloud consumer, and the seeded uplink fault schedule."""

    def __init__(self, tmp: Path, site_port: int, probe: dict | None, forward_readings: bool):
        from harness.cloudkit import make_pki, tls_cloud_broker
        from harness.cloudrecord import CloudRecord
        from harness.netem import NetEm

        self.pki = make_pki(tmp / "pki")
        self.broker = tls_cloud_broker(tmp / "cloud", self.pki, {"gw1": "gw-secret", "cloud": "cloud-secret"}).start()
        self.netem = NetEm(self.broker.port).start()  # the gateway's uplink: gateway -> netem -> cloud broker
        # the cloud record is `fogline cloud`'s PostgreSQL database, read back as envelope-shaped rows. One
        # consumer on a plain subscription: this test restarts the cloud mosquitto, and mosquitto 2.0 does not
        # restore shared subscriptions from its persistence (see README, the cloud tier)
        self.sub = CloudRecord(self.broker.port, self.pki.ca, "cloud", "cloud-secret", SITE, shared=False)
        self.forward_readings = forward_readings
        self._threads: list[threading.Thread] = []
        self._probe: threading.Thread | None = None
        self._stop = threading.Event()
        self.site_port, self.probe_secret = site_port, probe
        self.probe_acked = 0

    def toml(self) -> str:
        """The gateway's relay section: TLS with our test CA via the proxy, 10 s summaries, fast reconnects."""
        fwd = "forward_readings = true\n" if self.forward_readings else ""
        return (f'\n[cloud]\nenabled = true\nhost = "127.0.0.1"\nport = {self.netem.port}\n'
                f'ca_file = "{self.pki.ca}"\nusername = "gw1"\npassword = "gw-secret"\n'
                f'reconnect_min_s = 0.2\nreconnect_max_s = 1.0\nsummary_windows_s = [10.0]\n{fwd}\n'
                f'[cloud.bandwidth]\ninitial_mode = "high"\n\n[cloud.breaker]\nbackoff_max_s = 2.0\n')

    def schedule(self, faults: list, t0: float, duration: float, rng: random.Random | None,
                 first_at: float, first_len: float, length: tuple[float, float] = (1.0, 3.0),
                 gap: tuple[float, float] = (0.5, 1.5), rates: tuple[int, ...] = (4000,)) -> None:
        """A cloud outage at t0+first_at for first_len s (the probe raises alerts meanwhile); then, with rng,
        seeded uplink faults until the end: each round a shuffle of UPLINK_KINDS (the first round opens with
        the throttle), lengths, gaps and throttle rates drawn from rng."""
        def run() -> None:
            self._sleep_until(t0 + first_at)
            self._fault(faults, t0, "cloud_outage", min(first_len, max(0.5, duration - first_at - 0.5)), None)
            first = True
            while rng is not None and not self._stop.is_set():
                kinds = [k for k in UPLINK_KINDS if k != "uplink_throttle"]
                rng.shuffle(kinds)
                # the first round opens with the throttled uplink, so even a short run has one
                kinds.insert(0 if first else rng.randrange(len(kinds) + 1), "uplink_throttle")
                first = False
                for kind in kinds:
                    self._sleep_until(time.monotonic() + rng.uniform(*gap))
                    left = t0 + duration - 0.5 - time.monotonic()
                    if self._stop.is_set() or left < 0.5:
                        return
                    self._fault(faults, t0, kind, min(rng.uniform(*length), left), rng.choice(rates))
        t = threading.Thread(target=run, daemon=True)
        t.start()
        self._threads.append(t)

    def _sleep_until(self, when: float) -> None:
        self._stop.wait(max(0.0, when - time.monotonic()))

    def _fault(self, faults: list, t0: float, kind: str, length: float, rate: int | None) -> None:
        note = f"{length:.1f}s" + (f" {rate}B/s" if kind == "uplink_throttle" else "")
        faults.append((round(time.monotonic() - t0, 2), kind, note))
        if kind == "cloud_outage":
            self.broker.stop()
            if self.probe_secret and self._probe is None:  # alerts raised while the cloud is away reach it later
                self._probe = threading.Thread(target=self._send_probe_alerts, daemon=True)
                self._probe.start()
        elif kind == "uplink_throttle":
            self.netem.set_mode("throttle", rate=rate)
        elif kind == "uplink_blackhole":
            self.netem.set_mode("blackhole")
        else:
            self.netem.set_mode("refuse")
        try:
            self._stop.wait(length)
        finally:
            if kind == "cloud_outage":
                self.broker.start()
            else:
                self.netem.set_mode("pass")

    def end_faults(self) -> None:
        """Stop the schedule (a running fault ends now) and leave the uplink healthy."""
        self._stop.set()
        for t in self._threads:
            t.join(30)
        if self.broker.proc is None or self.broker.proc.poll() is not None:
            self.broker.start()
        self.netem.set_mode("pass")

    def _send_probe_alerts(self, n: int = 3) -> None:
        """A provisioned node `probe` raises n signed alerts, re-sending each until the gateway acks it."""
        import cbor2
        import paho.mqtt.client as mqtt

        from fogline.shared import auth, cbor, senml

        key = bytes.fromhex(self.probe_secret["auth_key"])  # type: ignore[index]
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="probe", protocol=mqtt.MQTTv311)
        c.username_pw_set("probe", self.probe_secret["password"])  # type: ignore[index]
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(f"fogline/{SITE}/probe/ack", 1)

        def on_ack(cl, u, m) -> None:
            self.probe_acked = max(self.probe_acked, int(cbor2.loads(m.payload).get("alert", 0)))
        c.on_message = on_ack
        c.reconnect_delay_set(0.1, 0.5)
        c.connect_async("127.0.0.1", self.site_port)
        c.loop_start()
        try:
            for seq in range(1, n + 1):
                now = int(time.time())
                pack = cbor.dumps(senml.build_pack("probe/", now, [("temperature", "Cel", 30.0 + seq, now)]))
                data = auth.seal_pack(key, "probe", "alert", seq, pack)
                deadline = time.monotonic() + 20
                while self.probe_acked < seq and time.monotonic() < deadline:
                    c.publish(f"fogline/{SITE}/probe/alert", data, qos=1)
                    t = time.monotonic() + 1.0
                    while self.probe_acked < seq and time.monotonic() < t:
                        time.sleep(0.05)
        finally:
            c.disconnect()
            c.loop_stop()

    def settle(self, db: Path, timeout: float) -> dict:
        """Wait (bounded) until everything the gateway stored that the relay sends reached the cloud."""
        if self._probe is not None:
            self._probe.join(70)
        deadline = time.monotonic() + timeout
        while True:
            stored = _stored_by_lane(db)
            items = self.sub.snapshot()
            rep = reconcile_cloud(stored, items, self.sub.bad, self.forward_readings)
            rep.update(reconcile_summaries(db, latest_windows(items)))
            rep["probe_acked"] = self.probe_acked
            rep["db_duplicates"] = self.sub.db_duplicates()
            rep["absorbed_by_keys"] = self.sub.absorbed()
            if (not rep["missing"] and rep["summaries"] and not rep["stored_in_no_summary"]
                    and not rep["windows_mismatch"]) or time.monotonic() > deadline:
                rep["settle_s"] = round(timeout - max(0.0, deadline - time.monotonic()), 1)
                return rep
            time.sleep(1.0)

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)
        self.sub.stop()
        self.netem.stop()
        self.broker.stop()


def _stored_by_lane(db: Path) -> dict[str, set[tuple[str, int]]]:
    """(node, seq) the gateway stored, per lane name."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        out: dict[str, set[tuple[str, int]]] = {"up": set(), "alert": set()}
        for name, lane, seq in con.execute("SELECT n.name, r.lane, r.seq FROM readings r JOIN nodes n ON n.nid=r.nid "
                                           "WHERE r.lane IN (0, 1)"):
            out["up" if lane == 0 else "alert"].add((name, seq))
        return out
    finally:
        con.close()


def _body(it: dict):
    from harness.cloudkit import envelope_body
    return envelope_body(it)


def latest_windows(items: list[dict]) -> dict:
    """The cloud's window record after de-duplication by row key: the highest revision per window key."""
    from harness.cloudkit import latest_windows as latest
    by_key = {it["k"]: it for it in items}
    return latest(list(by_key.values()))


def reconcile_summaries(db: Path, latest: dict, length: float = SUMMARY_S) -> dict:
    """The gateway's stored readings against the cloud's final window revisions of `length`.

    stored_in_no_summary: stored readings whose window the cloud does not hold (per node/lane in
    no_summary_by); windows_mismatch: windows whose final count/min/max/mean differ from the stored
    readings of that window (or that cover none)."""
    from fogline.shared import summary
    from fogline.gateway.store.tiers import unpack_block

    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    truth: dict[tuple, list] = {}
    by: dict[str, int] = {}
    try:
        rows = con.execute("SELECT n.name, s.metric, r.lane, r.t, r.v FROM readings r JOIN series s ON s.sid=r.sid "
                           "JOIN nodes n ON n.nid=s.nid").fetchall()
        for name, metric, data in con.execute("SELECT n.name, s.metric, b.data FROM blocks b JOIN series s ON "
                                              "s.sid=b.sid JOIN nodes n ON n.nid=s.nid"):
            rows.extend((name, metric, 0, t, v) for t, v in unpack_block(data))
    finally:
        con.close()
    for node, metric, lane, t, v in rows:
        start = math.floor(t / length) * length
        k = summary.key(node, metric, start, start + length)
        truth.setdefault(k, []).append(v)
        if k not in latest:
            lk = f"{node}/{'alert' if lane == 1 else 'up'}"
            by[lk] = by.get(lk, 0) + 1
    mismatch = []
    held = [(k, b) for k, b in latest.items() if k[1] != summary.SET and k[2] == length]
    for k, b in held:
        vals = truth.get(k)
        if vals is None or b.get("count") != len(vals) or b.get("min") != min(vals) or b.get("max") != max(vals) \
                or not math.isclose(b.get("mean", math.nan), math.fsum(vals) / len(vals), rel_tol=1e-9, abs_tol=1e-9):
            mismatch.append({"key": k, "cloud": {f: b.get(f) for f in ("count", "min", "max", "mean", "rev")},
                             "stored": None if vals is None else {"count": len(vals), "min": min(vals),
                                                                  "max": max(vals), "mean": math.fsum(vals) / len(vals)}})
    return {"windows_in_cloud": len(held), "windows_stored": len(truth),
            "stored_in_no_summary": sum(by.values()), "no_summary_by": by,
            "windows_mismatch": len(mismatch), "mismatch_examples": mismatch[:3],
            "windows_corrected_in_cloud": sum(1 for _, b in held if b.get(summary.CORR))}


def reconcile_cloud(stored: dict[str, set[tuple[str, int]]], items: list[dict], bad: int,
                    forward_readings: bool) -> dict:
    """The cloud record after de-duplication: by row key, then alerts by (node, seq), readings by (node, lane, seq).

    Each alert the gateway stored must be there (once after de-duplication); with forward_readings each
    up-lane reading it stored too; nothing the gateway never stored. Duplicates absorbed are counted."""
    by_key: dict[str, dict] = {}
    key_dups = 0
    for it in items:
        if it["k"] in by_key:
            key_dups += 1  # a re-send of the same outbox row (same key): absorbed
            continue
        by_key[it["k"]] = it
    seen: dict[str, dict[tuple[str, int], int]] = {"alert": {}, "up": {}}
    summaries: set[tuple] = set()
    summary_counts: dict[str, int] = {}
    for it in by_key.values():
        lane = it.get("lane")
        b = _body(it)
        if lane == "alert":
            k = (b["node"], b["seq"])
            seen["alert"][k] = seen["alert"].get(k, 0) + 1
        elif lane == "raw" and isinstance(b, dict) and "first_seq" in b:
            for i in range(len(b["records"])):
                k = (b["node"], b["first_seq"] + i)
                seen["up"][k] = seen["up"].get(k, 0) + 1
        elif lane == "summary":
            from fogline.shared.summary import body_key
            sk = body_key(b) or it["k"]
            if sk not in summaries:
                summaries.add(sk)
                if isinstance(b, dict) and b.get("node"):
                    summary_counts[b["node"]] = summary_counts.get(b["node"], 0) + int(b.get("count", 0))
    per_node: dict[str, dict[str, int]] = {}
    lanes = ("alert", "up") if forward_readings else ("alert",)
    for lane in lanes:
        st, sn = stored.get(lane, set()), seen[lane]
        for node, seq in st | set(sn):
            r = per_node.setdefault(node, {f"{ln}_{k}": 0 for ln in ("alert", "up")
                                           for k in ("stored", "in_cloud", "missing", "not_stored", "dups")})
            r[f"{lane}_stored"] += (node, seq) in st
            r[f"{lane}_in_cloud"] += (node, seq) in sn
            r[f"{lane}_missing"] += (node, seq) in st and (node, seq) not in sn
            r[f"{lane}_not_stored"] += (node, seq) not in st
            r[f"{lane}_dups"] += max(0, sn.get((node, seq), 0) - 1)  # same item under another key: absorbed
    return {"per_node": dict(sorted(per_node.items())),
            "missing": sum(r["alert_missing"] + r["up_missing"] for r in per_node.values()),
            "alerts_stored": len(stored.get("alert", ())), "forward_readings": forward_readings,
            "seen_up": set(seen["up"]), "seen_alert": set(seen["alert"]), "summaries": len(summaries),
            "summary_counts": summary_counts,
            "keys": len(by_key), "deliveries": len(items), "key_dups": key_dups,
            "seq_dups": sum(max(0, n - 1) for d in seen.values() for n in d.values()), "undecodable": bad}


def _lane_drops(fin: dict, lane: str) -> int:
    """Readings of a lane the node's capacity policy dropped (persisted counters, FINAL line)."""
    d = fin.get("dropped")
    if isinstance(d, dict):
        return int(d.get(f"{lane}_capacity", 0)) + int(d.get(f"{lane}_nospace", 0))
    # an older runner without per-reason counters: the total is all "up" (alerts go only when no readings are left)
    return int(fin.get("store", {}).get("dropped_by_policy", 0)) if lane == "up" else 0


def reconcile(db: Path, finals: dict[str, dict], peaks: dict[str, dict],
              cloud_seen: dict[str, set[tuple[str, int]]] | None) -> tuple[list[dict], dict[str, int]]:
    """Per node and lane: the node's durable seqs 1..n against what the gateway stored, skipped and the cloud got.

    A seq the gateway skipped (a gap the node reported it no longer has) is explained only up to the
    number of readings the node's policy counted as dropped in that lane; the rest is unexplained."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        nids = dict(con.execute("SELECT name, nid FROM nodes"))
        try:
            dead = dict(con.execute("SELECT reason, n FROM dead_letter_totals"))
        except sqlite3.Error:
            dead = {}
        if not dead:
            dead = dict(con.execute("SELECT reason, count(*) FROM dead_letters GROUP BY reason"))
        rows = []
        for node, fin in sorted(finals.items(), key=lambda kv: int(kv[0][1:]) if kv[0][1:].isdigit() else 0):
            st = fin.get("store", {})
            pk = peaks.get(node, {})
            for li, lane in ((0, "up"), (1, "alert")):
                kept = int(st.get(f"durable_{lane}", 0))  # highest seq the node holds durably (ground truth)
                nid = nids.get(node)
                seqs = {s for (s,) in con.execute("SELECT seq FROM readings WHERE nid=? AND lane=?", (nid, li))}
                gap: set[int] = set()
                for lo, hi in con.execute("SELECT lo, hi FROM gaps WHERE nid=? AND lane=?", (nid, li)):
                    gap.update(range(lo, hi + 1))
                skipped = {s for s in gap if s not in seqs and s <= kept}
                drops = _lane_drops(fin, lane)
                missing = [s for s in range(1, kept + 1) if s not in seqs and s not in skipped]
                unexplained = len(missing) + max(0, len(skipped) - drops)
                r = {"node": node, "lane": lane,
                     "sampled": pk.get("sampled" if lane == "up" else "alerts_raised", 0), "kept": kept,
                     "acked": int(fin.get("acked", {}).get(lane, 0) or 0), "stored": len(seqs),
                     "skipped": len(skipped), "policy": drops, "unexplained": unexplained, "missing": missing[:10],
                     "beyond_kept": len([s for s in seqs if s > kept]),
                     "backlog": int(fin.get("backlog", {}).get(lane, 0)),
                     "dropped_by_policy": int(st.get("dropped_by_policy", 0))}
                if cloud_seen is not None and (lane == "alert" or cloud_seen.get("up") is not None):
                    got = {s for (n, s) in cloud_seen[lane] if n == node}
                    r["cloud"] = len([s for s in got if s <= kept])
                    r["cloud_beyond"] = len([s for s in got if s > kept])
                    lost = [s for s in range(1, kept + 1) if s not in got and s not in skipped]
                    r["cloud_unexplained"] = len(lost) + max(0, len(skipped) - drops)
                    r["cloud_missing"] = lost[:10]
                rows.append(r)
        return rows, dead
    finally:
        con.close()


def _outbox_counters(data: Path) -> dict[str, int]:
    """The outbox's persisted exit counters (accepted, acked, overwritten, expired, rejected_full ... per lane)."""
    ob = data / "outbox.sqlite"
    if not ob.exists():
        return {}
    con = sqlite3.connect(f"file:{ob}?mode=ro", uri=True)
    try:
        return {k: int(v) for k, v in con.execute("SELECT name, value FROM counters") if v}
    finally:
        con.close()


def run_chaos(tmp: Path, seed: int, duration: float, n_nodes: int, mean_gap_s: float,
              cloud: bool = False, uplink_faults: bool = False, flash_full: bool = False,
              wifi_drops: bool = False, soak: bool = False, runtime: str = "micropython") -> dict:
    """Run the system with seeded faults for `duration` seconds; return the reconciliation report.

    cloud: TLS cloud mosquitto behind NetEm with the relay on (forwarding readings when the gateway can),
    an outage of it early in the run, and the cloud-side record in the report (`cloud`). uplink_faults:
    seeded cloud outages, throttling, blackholes and refusals of the uplink all run long. flash_full:
    the last node has FULL_LOG and long Wi-Fi outages. wifi_drops: seeded Wi-Fi drops of the other nodes.
    soak: fault lengths for a long run (tens of seconds) instead of CI's seconds. runtime: the nodes'
    interpreter (tools/hostemu.py: "board" is the 32-bit single-precision port)."""
    rng = random.Random(seed)
    forward = cloud  # with the cloud, every reading is relayed ([cloud] forward_readings) and reconciled there
    # The site runs as provisioned: per-node passwords, the ACL, HMAC-signed packs.
    port = free_port()
    names = [f"n{i}" for i in range(n_nodes)]
    full = names[-1] if flash_full else None
    res = provision(tmp / "prov", SITE, names + (["probe"] if cloud else []), broker_port=port)
    secrets = json.loads(res.files["secrets"].read_text())
    for n in names:  # the user adds an alert rule to each provisioned node config
        p = res.files[f"node:{n}"]
        cfg = json.loads(p.read_text())
        cfg["rules"] = [{"name": "too_warm", "sensor": "temperature", "type": "above", "threshold": ALERT_ABOVE,
                         "hysteresis": 0.2}]
        if n == full:  # a tiny log filled fast; state often, so the gateway hears its oldest seq soon
            cfg.update(log=dict(FULL_LOG), sample_ms=FULL_SAMPLE_MS, state_ms=2000)
        p.write_text(json.dumps(cfg))
    as_root = "user root\n" if os.geteuid() == 0 else ""  # root mosquitto would drop to a user that can't read 0600
    broker = Mosquitto(tmp / "broker", port=port, extra_conf=f"listener {port} 127.0.0.1\n{as_root}"
                       + broker_conf(res.files["passwd"], res.files["acl"])).start()
    cl = _Cloud(tmp, port, secrets["nodes"].get("probe"), forward) if cloud else None
    gw = _gateway(tmp / "gw", broker.port, secrets["gateway"]["user"], secrets["gateway"]["password"],
                  res.files["gateway_keys"], cl.toml() if cl else "")
    data = tmp / "gw" / "data"
    db = data / "ingest.sqlite"
    watch = GatewayWatch(gw, data)
    # Node 0 loses Wi-Fi (scenario outage), node 1 overheats (alerts), node 2 spikes, the rest are normal.
    scen = ["wifi_loss", "hot", "spikes"]
    nodes = [VNode(tmp / n, n, res.files[f"node:{n}"], scen[i] if i < len(scen) else "normal", seed * 100 + i,
                   runtime) for i, n in enumerate(names)]
    faults: list[tuple[float, str, str]] = [(0.0, "wifi_outage_scenario", names[0])]
    stop_side = threading.Event()
    side: list[threading.Thread] = []
    forged: dict = {}
    try:
        gw.start()
        watch.start()
        _wait_ready(db)
        for n in nodes:
            n.start()
        # Once the gateway is storing (subscribed), the intruder strikes; wait for its refusals to commit.
        deadline = time.monotonic() + 30
        while _count(db, "SELECT count(*) FROM readings") == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        forged = _attack(broker.port, names[0], secrets["nodes"][names[0]]["password"])
        deadline = time.monotonic() + 60
        while _count(db, "SELECT count(*) FROM dead_letters WHERE reason='auth'") < forged["forged_packs"] \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        t0 = time.monotonic()
        if cl is not None:
            if soak:
                cl.schedule(faults, t0, duration, random.Random(seed + 1) if uplink_faults else None,
                            first_at=30.0, first_len=20.0, length=(10.0, 60.0), gap=(20.0, 90.0),
                            rates=(500, 2000, 8000))
            else:
                cl.schedule(faults, t0, duration, random.Random(seed + 1) if uplink_faults else None,
                            first_at=min(2.0, duration / 4), first_len=min(4.0, duration / 3),
                            length=(1.0, 2.0), gap=(0.3, 0.8), rates=(2000,))
        if full is not None:
            fnode = nodes[-1]
            # CI: one outage over most of the run; soak: 90 s every 5 min. At ~2 KiB/s into an 8 KiB log.
            plan = [(0.5, 0.6 * duration)] if not soak else \
                [(a, 90.0) for a in range(20, int(duration) - 150, 300)]

            def full_outages() -> None:
                for at, length in plan:
                    if stop_side.wait(max(0.0, t0 + at - time.monotonic())):
                        return
                    faults.append((round(time.monotonic() - t0, 2), "wifi_outage_long", f"{fnode.name} {length:.0f}s"))
                    fnode.set_wifi(False)
                    stop_side.wait(length)
                    fnode.set_wifi(True)
            side.append(threading.Thread(target=full_outages, daemon=True))
        drop_pool = [n for n in nodes[1:] if n.name != full]
        if wifi_drops and drop_pool:
            wrng = random.Random(seed + 2)
            gap_s, len_s = ((20.0, (3.0, 40.0)) if soak else (3.0, (1.0, 2.5)))

            def wifi_drops_run() -> None:
                while not stop_side.wait(wrng.expovariate(1.0 / gap_s)):
                    left = t0 + duration - 1.0 - time.monotonic()
                    if left < 0.5:
                        return
                    n = wrng.choice(drop_pool)
                    length = min(wrng.uniform(*len_s), left)
                    faults.append((round(time.monotonic() - t0, 2), "wifi_drop", f"{n.name} {length:.1f}s"))
                    n.set_wifi(False)
                    stop_side.wait(length)
                    n.set_wifi(True)
            side.append(threading.Thread(target=wifi_drops_run, daemon=True))
        for t in side:
            t.start()
        while (now := time.monotonic() - t0) < duration:
            time.sleep(min(rng.expovariate(1.0 / mean_gap_s), max(0.0, duration - now)))
            now = time.monotonic() - t0
            if now >= duration:
                break
            kind = rng.choice(["node_power_cut", "node_power_cut", "gateway_kill", "broker_restart"])
            if kind == "node_power_cut":
                n = rng.choice(nodes)
                n.power_cut()
                time.sleep(rng.uniform(0.1, 1.0))
                n.start()
                faults.append((round(now, 2), kind, n.name))
            elif kind == "gateway_kill":
                gw.kill()
                time.sleep(rng.uniform(0.2, 1.5))
                gw.start()
                faults.append((round(now, 2), kind, "gateway"))
            else:
                broker.restart()
                faults.append((round(now, 2), kind, "site-broker"))
        stop_side.set()
        for t in side:
            t.join(30)
        if cl is not None:
            cl.end_faults()
        if not gw.alive():
            gw.start()
        for n in nodes:
            n.stop()
        finals = {n.name: n.final(timeout=40) for n in nodes}
        peaks = {n.name: n.peaks() for n in nodes}
        time.sleep(0.5)  # let the last commit land before the clean stop
        cloud_rep = cl.settle(db, timeout=240 if soak else 60) if cl is not None else None
        watch.stop()
        if gw.p and gw.p.poll() is None:
            gw.p.send_signal(signal.SIGTERM)
            gw.p.wait(30)
        cloud_seen = None
        if cloud_rep is not None:
            cloud_seen = {"alert": {k for k in cloud_rep.pop("seen_alert")},
                          "up": cloud_rep.pop("seen_up") if forward else None}
        rows, dead = reconcile(db, finals, peaks, cloud_seen)
        if cloud_rep is not None:
            for r in rows:
                r["no_summary"] = cloud_rep["no_summary_by"].get(f"{r['node']}/{r['lane']}", 0)
    finally:
        stop_side.set()
        for n in nodes:
            n.proc.kill()
        gw.kill()
        watch._stop.set()
        broker.stop()
        if cl is not None:
            cl.close()
    by_kind: dict[str, int] = {}
    for _, k, _ in faults:
        by_kind[k] = by_kind.get(k, 0) + 1
    return {"seed": seed, "duration_s": duration, "nodes": n_nodes, "faults": sorted(faults),
            "faults_by_kind": by_kind, "rows": rows, "dead_letters": dead, "node_peaks": peaks, "attack": forged,
            "flash_full_node": full, "node_restarts": {n.name: n.restarts for n in nodes if n.restarts},
            "gateway": {"starts": gw.starts, "peak_rss_mb": round(watch.peak_rss_kb / 1024, 1),
                        "peak_hwm_mb": round(watch.peak_hwm_kb / 1024, 1),
                        "peak_disk_mb": round(watch.peak_disk / 2**20, 2),
                        "end_disk_mb": round(_dir_bytes(data) / 2**20, 2),
                        "peak_outbox_bytes": watch.peak_outbox, "outbox_counters": _outbox_counters(data),
                        "counters": watch.counters(), "samples": watch.samples},
            **({"cloud": cloud_rep, "netem": cl.netem.stats()} if cl is not None else {})}


def _print_table(rep: dict) -> None:
    print(f"\nchaos seed={rep['seed']} duration={rep['duration_s']}s nodes={rep['nodes']} "
          f"flash_full_node={rep['flash_full_node']}")
    print("faults by kind:", json.dumps(rep["faults_by_kind"], sort_keys=True))
    for f in rep["faults"]:
        print("  fault", *f)
    has_cloud = any("cloud" in r for r in rep["rows"])
    head = (f"{'node':7}{'lane':6}{'sampled':>8}{'kept':>7}{'stored':>8}{'policy':>7}{'skipped':>8}{'unexpl':>7}"
            f"{'acked':>7}{'backlog':>8}")
    if has_cloud:
        head += f"{'cloud':>7}{'c.unexpl':>9}{'no.sum':>7}"
    print(head)
    tot: dict[tuple[str, str], int] = {}
    for r in rep["rows"] + [None]:  # type: ignore[operator]
        if r is None:  # totals per lane
            for lane in ("up", "alert"):
                t = {k: tot.get((lane, k), 0) for k in ("sampled", "kept", "stored", "policy", "skipped",
                                                         "unexplained", "acked", "backlog", "cloud",
                                                         "cloud_unexplained", "no_summary")}
                line = (f"{'TOTAL':7}{lane:6}{t['sampled']:>8}{t['kept']:>7}{t['stored']:>8}{t['policy']:>7}"
                        f"{t['skipped']:>8}{t['unexplained']:>7}{t['acked']:>7}{t['backlog']:>8}")
                if has_cloud:
                    line += f"{t['cloud']:>7}{t['cloud_unexplained']:>9}{t['no_summary']:>7}"
                print(line)
            break
        for k in ("sampled", "kept", "stored", "policy", "skipped", "unexplained", "acked", "backlog", "cloud",
                  "cloud_unexplained", "no_summary"):
            tot[(r["lane"], k)] = tot.get((r["lane"], k), 0) + int(r.get(k, 0) or 0)
        line = (f"{r['node']:7}{r['lane']:6}{r['sampled']:>8}{r['kept']:>7}{r['stored']:>8}{r['policy']:>7}"
                f"{r['skipped']:>8}{r['unexplained']:>7}{r['acked']:>7}{r['backlog']:>8}")
        if has_cloud:
            line += f"{r.get('cloud', '-'):>7}{r.get('cloud_unexplained', '-'):>9}{r.get('no_summary', '-'):>7}"
        print(line)
    print("  sampled: readings the sensors produced (alerts raised for the alert lane), a lower bound: counted "
          "since each boot up to its last STAT line before a power cut; kept: highest durable seq in the node's "
          "flash log; policy: readings the node's capacity policy dropped (persisted counters); skipped: seqs "
          "the gateway skipped on the node's word; cloud: kept seqs in the cloud record after de-duplication; "
          f"no.sum: stored readings in no delivered {SUMMARY_S:.0f} s summary (the cloud's highest revision)"
          + ("" if rep.get("cloud", {}).get("forward_readings", True) else " (alerts only: readings are not "
             "forwarded; see summary counts)"))
    g = rep["gateway"]
    c = rep.get("cloud") or {}
    print(f"duplicates absorbed: gateway re-sent readings {g['counters']['duplicates']} "
          f"(in {g['counters']['duplicate_messages']} messages, over {g['counters']['incarnations_seen']} gateway "
          f"incarnations seen, a lower bound) | cloud same-key re-sends {c.get('key_dups', '-')}, same (node, lane, "
          f"seq) under another key {c.get('seq_dups', '-')}, re-deliveries absorbed by the cloud database's keys "
          f"{c.get('absorbed_by_keys', '-')}")
    pk = rep["node_peaks"]
    heap = min((p["min_heap_free"] for p in pk.values()), default=0)
    flash = max(((p["max_flash_used"], p["log_capacity"], n) for n, p in pk.items()), default=(0, 0, ""))
    full = rep["flash_full_node"]
    print(f"peak memory: gateway RSS {g['peak_rss_mb']} MiB (all processes; bound {GATEWAY_RSS_BOUND_MB}), "
          f"highest VmHWM of one process {g['peak_hwm_mb']} MiB; node heap_free min {heap} B "
          f"(fixed heap -X heapsize={HEAP} is the cap; MemoryErrors "
          f"{sum(p['memory_errors'] for p in pk.values())})")
    print(f"peak disk: gateway data dir {g['peak_disk_mb']} MiB (bound {GATEWAY_DISK_BOUND_MB}), end "
          f"{g['end_disk_mb']} MiB; outbox bytes peak {g['peak_outbox_bytes']} (caps {OUTBOX_CAPS}); node flash "
          f"log max {flash[0]} B of {flash[1]} B cap ({flash[2]})"
          + (f"; flash-full node {full}: {pk[full]['max_flash_used']} B of {pk[full]['log_capacity']} B" if full
             else ""))
    print("gateway:", json.dumps({k: v for k, v in g.items() if k != "counters"}), "| restarts:",
          rep["node_restarts"])
    if "netem" in rep:
        print("uplink (netem):", json.dumps(rep["netem"]))
    if c:
        print(f"summaries: {c['summaries']} distinct keys in the cloud; {c['windows_in_cloud']} {SUMMARY_S:.0f} s "
              f"windows (final revision) for {c['windows_stored']} windows of stored readings, "
              f"{c['windows_corrected_in_cloud']} of them corrected; stored readings in no delivered summary "
              f"{c['stored_in_no_summary']}; windows whose final count/min/max/mean differ from the stored "
              f"readings {c['windows_mismatch']}; late readings (corrected, not dropped) >= "
              f"{g['counters']['late_readings']}, window corrections >= {g['counters']['window_corrections']}")
        print("cloud:", json.dumps({k: v for k, v in c.items() if k != "per_node"}))
    print("attack:", rep["attack"], "| dead letters:", rep["dead_letters"])
    print(json.dumps({k: v for k, v in rep.items() if k not in ("faults", "rows")}, default=str))


def _check(rep: dict) -> None:
    _print_table(rep)
    assert rep["faults"], "no fault was injected"
    for r in rep["rows"]:
        assert r["unexplained"] == 0, f"unexplained loss: {r}"
        assert r["backlog"] == 0, f"node did not drain: {r}"
        assert r["beyond_kept"] == 0, f"gateway holds seqs the node never kept (seq reuse?): {r}"
        assert r["acked"] == r["kept"], f"node's durable readings not all acknowledged: {r}"
        if "cloud" in r:
            assert r["cloud_unexplained"] == 0, f"kept but neither in the cloud nor dropped by policy: {r}"
            assert r["cloud_beyond"] == 0, f"the cloud has seqs the node never kept: {r}"
    up_rows = [r for r in rep["rows"] if r["lane"] == "up"]
    assert all(r["kept"] > 0 for r in up_rows), "a node kept nothing"
    for node, pk in rep["node_peaks"].items():
        assert pk["max_flash_used"] > 0, (node, pk)
        # heap: the interpreter's fixed heap (HEAP) is the cap; gc.mem_free() before a collection is noisy,
        # so the check is that no node ever hit MemoryError and free heap never reached zero
        assert pk["memory_errors"] == 0 and pk["min_heap_free"] > 0, f"{node}: heap exhausted {pk}"
        assert pk["max_flash_used"] <= pk["log_capacity"] + FLASH_BUFFER_BYTES, f"{node}: flash log over cap {pk}"
    full = rep["flash_full_node"]
    if full:
        fr = next(r for r in up_rows if r["node"] == full)
        assert fr["policy"] > 0 and fr["skipped"] > 0, f"the flash-full case did not happen: {fr}"
    g = rep["gateway"]
    assert g["peak_rss_mb"] > 0 and g["peak_rss_mb"] <= GATEWAY_RSS_BOUND_MB, g
    assert g["peak_disk_mb"] <= GATEWAY_DISK_BOUND_MB, g
    for lane, n in g["peak_outbox_bytes"].items():
        assert n <= OUTBOX_CAPS[lane], f"outbox lane {lane} over its cap: {g}"
    gw_drops = {k: v for k, v in g["outbox_counters"].items()
                if k.split(".")[0] in ("overwritten", "expired", "rejected_full", "rejected_invalid")}
    assert not gw_drops, f"the gateway outbox dropped rows (caps hit?): {gw_drops}"
    corrupt = {k: v for k, v in rep["dead_letters"].items() if k in CORRUPT_REASONS}
    assert not corrupt, f"corrupt messages reached the gateway: {corrupt}"
    # Security under chaos: exactly the forged packs were refused (nothing genuine), none was stored
    # (beyond_kept == 0 above), and the broker refused the anonymous client.
    assert rep["dead_letters"].get("auth", 0) == rep["attack"]["forged_packs"], rep["dead_letters"]
    assert rep["attack"]["anonymous_connect_rc"] in (4, 5, 134, 135), rep["attack"]  # 3.1.1 codes as paho maps them


def _check_cloud(rep: dict) -> None:
    """The cloud record: every stored alert (and forwarded reading) once after de-duplication, nothing else."""
    c = rep["cloud"]
    assert rep["faults_by_kind"].get("cloud_outage", 0) >= 1, rep["faults_by_kind"]
    assert c["alerts_stored"] > 0, "no alert was raised (node 1 runs the 'hot' scenario)"
    # the probe node raised 3 alerts while the cloud was down: stored, acked, and in the cloud afterwards
    assert c["probe_acked"] == 3 and c["per_node"]["probe"]["alert_in_cloud"] == 3, c
    for node, r in c["per_node"].items():
        assert r["alert_missing"] == 0 and r["up_missing"] == 0, f"{node}: stored at the gateway, not in the cloud: {r}"
        assert r["alert_not_stored"] == 0 and r["up_not_stored"] == 0, f"{node}: in the cloud, never stored: {r}"
    assert c["summaries"] > 0, f"no summary reached the cloud: {c}"
    # late data is the normal case: every stored reading is in a delivered window, and the cloud's final
    # revision of each window is exactly what the gateway stored for it
    assert c["windows_in_cloud"] > 0 and c["stored_in_no_summary"] == 0, \
        f"stored readings in no delivered summary: {c['no_summary_by']}"
    assert c["windows_mismatch"] == 0, f"cloud windows differ from the stored readings: {c['mismatch_examples']}"
    assert c["undecodable"] == 0, c
    assert c["db_duplicates"] == 0 and c["seq_dups"] == 0, c  # the cloud database holds each (node, lane, seq) once


def test_chaos_short(tmp_path, runtime):
    """Power cuts, gateway kill -9, broker restarts; drained to zero backlog; nodes on each MicroPython runtime."""
    _check(run_chaos(tmp_path, seed=20261126, duration=12.0, n_nodes=3, mean_gap_s=1.5, runtime=runtime))


def test_chaos_cloud_short(tmp_path):
    """Cloud + uplink faults (outage, throttle, blackhole, refuse) + a flash-full node + Wi-Fi drops, 4 nodes."""
    rep = run_chaos(tmp_path, seed=20261127, duration=14.0, n_nodes=4, mean_gap_s=2.5, cloud=True,
                    uplink_faults=True, flash_full=True, wifi_drops=True)
    _check(rep)
    _check_cloud(rep)
    assert rep["faults_by_kind"].get("uplink_throttle", 0) >= 1, rep["faults_by_kind"]
    assert rep["netem"]["seconds"]["throttle"] > 0, rep["netem"]


@pytest.mark.slow
@pytest.mark.timeout(float(os.environ.get("FOGLINE_SOAK_S", "1800")) + 1200)
def test_chaos_soak(tmp_path):
    duration = float(os.environ.get("FOGLINE_SOAK_S", "1800"))
    rep = run_chaos(tmp_path, seed=int(os.environ.get("FOGLINE_SOAK_SEED", "7")), duration=duration,
                    n_nodes=int(os.environ.get("FOGLINE_SOAK_NODES", "20")), mean_gap_s=5.0, cloud=True,
                    uplink_faults=True, flash_full=True, wifi_drops=True, soak=True)
    try:
        _check(rep)
        _check_cloud(rep)
    finally:
        out = os.environ.get("FOGLINE_SOAK_REPORT")
        if out:  # the whole report as JSON, for the closing note
            Path(out).write_text(json.dumps(rep, default=str, indent=1))


def test_reconcile_explains_skips_only_by_counted_policy_drops(tmp_path):
    """The reconciliation itself can fail: a gateway skip beyond the node's counted drops, or a kept reading
    missing from the cloud record, is unexplained loss."""
    from fogline.gateway.store.core import Store
    from fogline.gateway.ingest.validate import Message, Reading

    st = Store(tmp_path / "ingest.sqlite")
    now = time.time()

    def msg(first: int, n: int) -> Message:
        return Message("n0", "up", first, [Reading("n0", "up", first + i, "t", "Cel", 20.0, now) for i in range(n)])
    st.commit_batch([msg(1, 5)])
    assert st.note_oldest("n0", "up", 10) == (6, 9)  # the node says 6..9 are gone
    st.commit_batch([msg(10, 3)])
    st.con.close()
    fin = {"store": {"durable_up": 12, "durable_alert": 0}, "acked": {"up": 12}, "backlog": {"up": 0}}
    seen = {"alert": set(), "up": {("n0", s) for s in (1, 2, 3, 4, 5, 10, 11, 12)}}
    rows, _ = reconcile(tmp_path / "ingest.sqlite", {"n0": dict(fin, dropped={"up_capacity": 4})}, {}, seen)
    up = rows[0]
    assert (up["stored"], up["skipped"], up["policy"], up["unexplained"], up["cloud_unexplained"]) == (8, 4, 4, 0, 0)
    rows, _ = reconcile(tmp_path / "ingest.sqlite", {"n0": dict(fin, dropped={"up_capacity": 1})}, {}, seen)
    assert rows[0]["unexplained"] == 3 and rows[0]["cloud_unexplained"] == 3, rows[0]
    seen["up"].discard(("n0", 11))
    rows, _ = reconcile(tmp_path / "ingest.sqlite", {"n0": dict(fin, dropped={"up_capacity": 4})}, {}, seen)
    assert rows[0]["unexplained"] == 0 and rows[0]["cloud_unexplained"] == 1 and rows[0]["cloud_missing"] == [11]


def test_reconcile_summaries_catches_missing_windows_and_stale_revisions(tmp_path):
    """The summary reconciliation can fail: a stored reading in no window, a window whose final revision is stale."""
    from fogline.gateway.aggregate.core import Aggregator
    from fogline.gateway.store.core import Store
    from fogline.gateway.ingest.validate import Message, Reading
    from fogline.shared import summary

    st = Store(tmp_path / "ingest.sqlite")
    vals = [(1000.0 + i, 20.0 + i) for i in range(25)]  # windows [1000,1010), [1010,1020), [1020,1030)
    st.commit_batch([Message("n0", "up", 1, [Reading("n0", "up", 1 + i, "t", "Cel", v, t)
                                             for i, (t, v) in enumerate(vals)])])
    st.con.close()
    out = []
    agg = Aggregator([SUMMARY_S], 0.0, out.append)
    for t, v in vals:
        agg.add("n0", "t", "Cel", v, t, 0)
    agg.flush()
    latest: dict = {}
    for w in out:
        summary.keep_highest(latest, w.as_dict())
    ok = reconcile_summaries(tmp_path / "ingest.sqlite", latest)
    assert (ok["windows_in_cloud"], ok["stored_in_no_summary"], ok["windows_mismatch"]) == (3, 0, 0)
    gone = dict(latest)
    del gone[("n0", "t", SUMMARY_S, 1020.0)]
    bad = reconcile_summaries(tmp_path / "ingest.sqlite", gone)
    assert bad["stored_in_no_summary"] == 5 and bad["no_summary_by"] == {"n0/up": 5}
    stale = dict(latest)
    k = ("n0", "t", SUMMARY_S, 1000.0)
    stale[k] = dict(stale[k], count=9, rev=9)  # an older revision: one reading short
    assert reconcile_summaries(tmp_path / "ingest.sqlite", stale)["windows_mismatch"] == 1
