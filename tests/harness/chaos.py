"""The chaos run (tests/system/test_chaos.py): a provisioned site, one gateway process, virtual nodes on the
real firmware, seeded faults, then the ledger (tests/harness/ledger.py) of what every node kept.

Faults (seeded, logged with their time): kill -9 + restart of a node (power cut mid-write), kill -9 +
restart of the gateway, site broker restart, Wi-Fi outages per node (node 0's scenario; with `wifi_drops`
seeded drops of random nodes). With `cloud` the relay sends to the TLS cloud through a NetEm proxy
degraded on a seeded schedule (`CloudFaults`). With `flash_full` the last node samples fast into a tiny
flash log (FULL_LOG) and loses Wi-Fi for long stretches, so its capacity policy drops its oldest readings.
An intruder with a node's MQTT password but not its auth key forges packs (`attack`).
"""

from __future__ import annotations

import json
import random
import signal
import threading
import time
from pathlib import Path

from harness.cloud import Cloud
from harness.gwwatch import GatewayWatch, count, dir_bytes, outbox_counters
from harness.ledger import dead_letters, reconcile
from harness.sitekit import HEAP, Site, wait_until

SITE = "chaos"
ALERT_ABOVE = 22.0  # the scenarios swing 18..24 C, so every node crosses it a few times
# The flash-full node: a tiny log (the config minimum) filled fast, so a Wi-Fi outage overflows it.
FULL_LOG = {"capacity_bytes": 8192, "segment_bytes": 1024, "sync_every": 32, "sync_ms": 2000}
FULL_SAMPLE_MS = 50
# Configured gateway caps ([outbox.lanes.*] max_bytes).
OUTBOX_CAPS = {"alert": 8 << 20, "anomaly": 8 << 20, "summary": 8 << 20, "raw": 32 << 20}
# The stated bounds a run must stay within (asserted by the test, printed in the table).
GATEWAY_RSS_BOUND_MB = 400   # all gateway processes together (main + MQTT worker), sampled every second
GATEWAY_DISK_BOUND_MB = 256  # the gateway data dir (ingest store, outbox, WAL files, metrics)
UPLINK_KINDS = ("cloud_outage", "uplink_throttle", "uplink_blackhole", "uplink_refuse")
SUMMARY_S = 10.0  # the relay's summary window in these runs ([cloud] summary_windows_s)
# a node silent this long (wall clock) has its windows fired: Wi-Fi drops then make late data normal
IDLE_CLOSE_S = 3.0


def gateway_sections() -> str:
    """The chaos gateway's config beyond the site's: fast metrics snapshots, idle windows closed, outbox caps."""
    lanes = "".join(f"\n[outbox.lanes.{ln}]\nmax_bytes = {cap}\n" for ln, cap in OUTBOX_CAPS.items())
    return f'[metrics]\nsnapshot_s = 1.0\n\n[aggregate]\nidle_close_s = {IDLE_CLOSE_S}\n' + lanes


def attack(port: int, node: str, password: str) -> dict[str, int]:
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


class CloudFaults:
    """The seeded uplink fault schedule against a Cloud with a NetEm proxy: cloud broker outages (stopped),
    throttled, blackholed and refused uplinks; during the first outage a provisioned node `probe` raises alerts."""

    def __init__(self, cloud: Cloud, site_port: int, probe: dict | None):
        self.cloud, self.broker, self.netem = cloud, cloud.broker, cloud.netem
        self._threads: list[threading.Thread] = []
        self._probe: threading.Thread | None = None
        self._stop = threading.Event()
        self.site_port, self.probe_secret = site_port, probe
        self.probe_acked = 0

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
                deadline = time.monotonic() + 60
                while self.probe_acked < seq and time.monotonic() < deadline:
                    c.publish(f"fogline/{SITE}/probe/alert", data, qos=1)
                    t = time.monotonic() + 1.0
                    while self.probe_acked < seq and time.monotonic() < t:
                        time.sleep(0.05)
        finally:
            c.disconnect()
            c.loop_stop()

    def wait_probe(self) -> None:
        """Wait (bounded) for the probe's alerts to be acked."""
        if self._probe is not None:
            self._probe.join(70)

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)


def settle(cl: Cloud, cf: CloudFaults, db: Path, forward: bool, timeout: float) -> dict:
    """Wait (bounded) until everything the gateway stored that the relay sends reached the cloud."""
    cf.wait_probe()
    rep = cl.settle({"gw": db}, forward, timeout, summary_s=SUMMARY_S)
    rep["probe_acked"] = cf.probe_acked
    return rep


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
    # The site runs as provisioned: per-node passwords, the ACL, HMAC-signed packs; the user adds an alert
    # rule to each provisioned node config.
    names = [f"n{i}" for i in range(n_nodes)]
    full = names[-1] if flash_full else None
    site = Site(tmp, SITE, names, extra_nodes=("probe",) if cloud else (), alert_above=ALERT_ABOVE)
    if full is not None:  # a tiny log filled fast; state often, so the gateway hears its oldest seq soon
        site.edit_node(full, log=dict(FULL_LOG), sample_ms=FULL_SAMPLE_MS, state_ms=2000)
    broker = site.broker.start()
    secrets = site.secrets
    cl = Cloud(tmp, SITE, "gw1", "gw-secret", netem=True, shared=False) if cloud else None
    cf = CloudFaults(cl, site.port, secrets["nodes"].get("probe")) if cl is not None else None
    gw = site.gateway(tmp / "gw", gateway_sections() + (cl.toml(SUMMARY_S, forward) if cl else ""))
    data = tmp / "gw" / "data"
    db = data / "ingest.sqlite"
    watch = GatewayWatch(gw, data)
    # Node 0 loses Wi-Fi (scenario outage), node 1 overheats (alerts), node 2 spikes, the rest are normal.
    scen = ["wifi_loss", "hot", "spikes"]
    nodes = [site.vnode(n, scen[i] if i < len(scen) else "normal", seed * 100 + i, runtime)
             for i, n in enumerate(names)]
    faults: list[tuple[float, str, str]] = [(0.0, "wifi_outage_scenario", names[0])]
    stop_side = threading.Event()
    side: list[threading.Thread] = []
    forged: dict = {}
    try:
        gw.start()
        watch.start()
        wait_until(db.exists, 120.0, every=0.1)
        for n in nodes:
            n.start()
        # Once the gateway is storing (subscribed), the intruder strikes; wait for its refusals to commit.
        deadline = time.monotonic() + 120
        while count(db, "SELECT count(*) FROM readings") == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        forged = attack(broker.port, names[0], secrets["nodes"][names[0]]["password"])
        deadline = time.monotonic() + 60
        while count(db, "SELECT count(*) FROM dead_letters WHERE reason='auth'") < forged["forged_packs"] \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        t0 = time.monotonic()
        if cf is not None:
            if soak:
                cf.schedule(faults, t0, duration, random.Random(seed + 1) if uplink_faults else None,
                            first_at=30.0, first_len=20.0, length=(10.0, 60.0), gap=(20.0, 90.0),
                            rates=(500, 2000, 8000))
            else:
                cf.schedule(faults, t0, duration, random.Random(seed + 1) if uplink_faults else None,
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
        if cf is not None:
            cf.end_faults()
        if not gw.alive():
            gw.start()
        for n in nodes:
            n.stop()
        finals = {n.name: n.final(timeout=40) for n in nodes}
        peaks = {n.name: n.peaks() for n in nodes}
        time.sleep(0.5)  # let the last commit land before the clean stop
        cloud_rep = settle(cl, cf, db, forward, timeout=240 if soak else 60) if cl is not None and cf else None
        watch.stop()
        if gw.p and gw.p.poll() is None:
            gw.p.send_signal(signal.SIGTERM)
            gw.p.wait(30)
        cloud_seen = None
        if cloud_rep is not None:
            cloud_seen = {"alert": {k for k in cloud_rep.pop("seen_alert")},
                          "up": cloud_rep.pop("seen_up") if forward else None}
        rows = reconcile({"gw": db}, finals, peaks, cloud_seen)
        dead = dead_letters(db)
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
        if cf is not None:
            cf.close()
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
                        "end_disk_mb": round(dir_bytes(data) / 2**20, 2),
                        "peak_outbox_bytes": watch.peak_outbox, "outbox_counters": outbox_counters(data),
                        "counters": watch.counters(), "samples": watch.samples},
            **({"cloud": cloud_rep, "netem": cl.netem.stats()} if cl is not None and cl.netem else {})}


def print_table(rep: dict) -> None:
    """The reconciliation table, faults, peaks, duplicates and cloud figures of a run_chaos report."""
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


