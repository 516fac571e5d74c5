"""Failover kit (tests/system/test_failover.py, tools/bench/failover.py): two gateways, one site, kill -9.

A provisioned site (tests/harness/sitekit.py's Site, VNode: ACL, HMAC-signed packs, nodes on the real
firmware), the TLS cloud (tests/harness/cloud.py, with a wire tap), two gateway processes with `[cluster]
enabled` and the relay forwarding every reading; the ledger is tests/harness/ledger.py's. A monitor on the site broker
records gateway health, last wills, node publishes and acks, so takeover is timed from outside:
kill -9 -> the broker's last will -> the first ack a node of the dead gateway gets after it (the
standby's), and -> the ack that covers everything the node had published before the kill (drained).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import cbor2
import paho.mqtt.client as mqtt

from fogline.tools import hostemu
from harness.cloud import Cloud
from harness.ledger import reconcile, ro
from harness.sitekit import Site, wait_until
from harness.stats import pctl

REPO = hostemu.REPO
SITE = "fo"
GATEWAYS = ("gwa", "gwb")
SUMMARY_S = 5.0   # the relay's summary window ([cloud] summary_windows_s)
FORWARD = True    # every stored reading is relayed ([cloud] forward_readings) and reconciled in the cloud


def available() -> bool:
    try:
        hostemu.find_micropython()
    except Exception:
        return False
    return (REPO / "tools" / "demo_node.py").exists()


class Monitor:
    """Site-broker observer: gateway health/wills, node up publishes (highest seq) and acks, with times."""

    def __init__(self, port: int, user: str, password: str):
        self.lock = threading.Lock()
        self.health: dict[str, dict[str, Any]] = {}
        self.wills: dict[str, list[float]] = {g: [] for g in GATEWAYS}
        self.acks: dict[str, list[tuple[float, int, int]]] = {}   # node -> [(t, up, alert)]
        self.published: dict[str, int] = {}                        # node -> highest up seq published
        self.pubs: dict[str, list[tuple[float, int, int]]] = {}   # node -> [(t, first seq, last seq)] of up
        self.ready = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="failover-monitor", protocol=mqtt.MQTTv311)
        c.username_pw_set(user, password)
        c.on_connect = lambda cl, *a: cl.subscribe([(f"fogline/{SITE}/_gw/+/health", 1),
                                                    (f"fogline/{SITE}/+/ack", 1), (f"fogline/{SITE}/+/up", 1)])
        c.on_subscribe = lambda *a: self.ready.set()
        c.on_message = self._on_message
        c.reconnect_delay_set(0.1, 0.5)
        c.connect_async("127.0.0.1", port)
        c.loop_start()
        self.client = c

    def _on_message(self, _c: Any, _u: Any, m: Any) -> None:
        t = time.monotonic()
        parts = m.topic.split("/")
        try:
            d = cbor2.loads(m.payload)
        except Exception:
            return
        with self.lock:
            if parts[2] == "_gw":
                if isinstance(d, dict):
                    if d.get("alive") is False and not m.retain:
                        self.wills.setdefault(parts[3], []).append(t)
                    self.health[parts[3]] = dict(d, _t=t)
            elif parts[3] == "ack" and isinstance(d, dict):
                self.acks.setdefault(parts[2], []).append((t, int(d.get("up", 0)), int(d.get("alert", 0))))
            elif parts[3] == "up" and isinstance(d, list) and len(d) >= 2 and isinstance(d[1], list):
                last = int(d[0]) + len(d[1]) - 1
                self.published[parts[2]] = max(self.published.get(parts[2], 0), last)
                self.pubs.setdefault(parts[2], []).append((t, int(d[0]), last))

    def serving(self, gw: str) -> list[str]:
        with self.lock:
            h = self.health.get(gw) or {}
            return list(h.get("serving", [])) if h.get("alive") else []

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _gateway_sections(cloud_toml: str) -> str:
    """Both gateways' config beyond the site's: no inference, 5 s windows, the cluster, the relay."""
    return ('[inference]\nenabled = false\n\n'
            '[aggregate]\nwindows_s = [5.0]\nwatermark_s = 1.0\n\n'  # several summaries per run
            # one host: both gateways see the same load average, so load must not decide
            '[cluster]\nenabled = true\nload_weight = 0.0\n' + cloud_toml)


def _stranded(data_dir: Path) -> dict[str, int | None]:
    """What a dead gateway holds that only it can send: outbox rows, and stored readings not yet fed to it."""
    out: dict[str, int | None] = {"outbox_rows": None, "unfed_readings": None}
    try:
        con = ro(data_dir / "outbox.sqlite")
        try:
            out["outbox_rows"] = con.execute("SELECT count(*) FROM outbox").fetchone()[0]
        finally:
            con.close()
        con = ro(data_dir / "ingest.sqlite")
        try:
            out["unfed_readings"] = con.execute(  # stored, past the relay cursor (skipped gaps hold none)
                "SELECT count(*) FROM readings r JOIN relay_lanes f ON f.lane=r.lane LEFT JOIN relay_cursor c "
                "ON c.nid=r.nid AND c.lane=r.lane WHERE r.seq > IFNULL(c.seq, 0)").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        pass  # a schema without the store-fed relay, or a file not there yet
    return out


def _steady_ack_ms(mon: Monitor, t_from: float, t_to: float) -> list[float]:
    """Normal publish -> covering ack latency per up message published in [t_from, t_to) (the yardstick)."""
    out = []
    with mon.lock:
        for n, pubs in mon.pubs.items():
            acks = mon.acks.get(n, [])
            for t, _first, last in pubs:
                if t_from <= t < t_to:
                    ta = next((ta for ta, up, _ in acks if ta >= t and up >= last), None)
                    if ta is not None:
                        out.append(round((ta - t) * 1000, 1))
    return out


def _kill_figures(mon: Monitor, victim: str, nodes: list[str], t_kill: float, published: dict[str, int],
                  acked: dict[str, tuple[int, int]], timeout: float, freeze: bool = False) -> dict[str, Any]:
    """Wait (bounded) for the standby's first ack to each node of the victim, and for each node's drain.

    First ack: the first one after the victim's last will that moves the node's ack past where it was at
    the kill (new readings committed by the standby; the broker delivers the victim's own acks before
    its will). Drained: an ack that covers every up reading the node had published before the kill."""
    deadline = time.monotonic() + timeout
    first: dict[str, float] = {}
    drained: dict[str, float] = {}
    t_will = None
    while time.monotonic() < deadline:
        with mon.lock:
            wl = [t for t in mon.wills.get(victim, []) if t >= t_kill - 0.05]
            t_will = wl[0] if wl else None
            if freeze:  # no will in time (keepalive 1.5 x 3 s): after 50 ms only the standby can ack
                t_will = t_kill + 0.05
            if t_will is not None:
                for n in nodes:
                    up0, al0 = acked.get(n, (0, 0))
                    for t, up, al in mon.acks.get(n, []):
                        if t <= t_will or (up <= up0 and al <= al0):
                            continue
                        first.setdefault(n, t)
                        if up >= published.get(n, 0):
                            drained.setdefault(n, t)
        if t_will is not None and len(first) == len(nodes) and len(drained) == len(nodes):
            break
        time.sleep(0.05)
    ms = lambda t: round((t - t_kill) * 1000, 1)  # noqa: E731
    service = []  # first ack - max(will, the node's first publish the dead gateway had not acked)
    with mon.lock:
        for n in nodes:
            if n not in first or t_will is None or freeze:
                continue
            up0 = acked.get(n, (0, 0))[0]
            pend = [t for t, _f, last in mon.pubs.get(n, []) if last > up0 and t <= first[n]]
            ref = max(t_will, min(pend)) if pend else t_will
            service.append(round((first[n] - ref) * 1000, 1))
    return {"victim": victim, "fault": "freeze" if freeze else "kill", "nodes": len(nodes),
            "will_ms": ms(t_will) if t_will and not freeze else None,
            "service_ms": service,
            "first_ack_ms": [ms(first[n]) for n in nodes if n in first],
            "drained_ms": [ms(drained[n]) for n in nodes if n in drained],
            "no_first_ack": [n for n in nodes if n not in first], "not_drained": [n for n in nodes if n not in drained]}


def run_failover(tmp: Path, seed: int = 1, n_nodes: int = 10, kills: int = 1, warmup_s: float = 4.0,
                 down_s: float = 4.0, after_s: float = 4.0, faults: list[str] | None = None) -> dict[str, Any]:
    """The scenario: load, then per round fault the gateway serving the most nodes and bring it back.

    faults: one kind per round (default `kills` x "kill"): "kill" = SIGKILL then a restart after down_s
    (the broker's last will tells the peers at once); "freeze" = SIGSTOP then SIGCONT after down_s
    (no will: the peers notice by heartbeat expiry, and the frozen gateway resumes where it was)."""
    rng = random.Random(seed)
    names = [f"n{i}" for i in range(n_nodes)]
    site = Site(tmp, SITE, names)
    for n in names:
        # Under load: 4 samples/s (12 readings/s) made durable about once a second, so a kill always
        # lands with readings in flight and more coming.
        log = json.loads(site.node_config(n).read_text()).get("log", {})
        site.edit_node(n, sample_ms=250, log=dict(log, sync_every=12, sync_ms=1000))
    broker = site.broker.start()
    cloud = Cloud(tmp, SITE, tap=True)
    gsec = site.secrets["gateway"]
    level = os.environ.get("FOGLINE_FAILOVER_LOG", "WARNING")  # INFO shows every takeover and handover
    gws = {g: site.gateway(tmp / g, _gateway_sections(cloud.toml(SUMMARY_S, FORWARD)), gateway_id=g, log_level=level)
           for g in GATEWAYS}
    scen = ["hot", "spikes"]
    nodes = [site.vnode(n, scen[i] if i < len(scen) else "normal", seed * 100 + i) for i, n in enumerate(names)]
    mon = Monitor(site.port, gsec["user"], gsec["password"])
    events: list[tuple[float, str, str]] = []
    kill_rows: list[dict[str, Any]] = []
    t0 = time.monotonic()
    try:
        mon.ready.wait(10)
        for p in gws.values():
            p.start()
        wait_until(lambda: all(mon.health.get(g, {}).get("alive") for g in GATEWAYS), 20)
        for n in nodes:
            n.start()
        wait_until(lambda: all(mon.acks.get(n) for n in names), 30)  # every node served
        t_warm = time.monotonic()
        time.sleep(warmup_s)
        steady = _steady_ack_ms(mon, t_warm, time.monotonic())
        for kind in faults or ["kill"] * kills:
            victim = max(GATEWAYS, key=lambda g: (len(mon.serving(g)), rng.random()))
            vnodes = mon.serving(victim)
            with mon.lock:
                published = {n: mon.published.get(n, 0) for n in vnodes}
                acked = {n: (max((a[1] for a in mon.acks.get(n, [])), default=0),
                             max((a[2] for a in mon.acks.get(n, [])), default=0)) for n in vnodes}
            t_kill = time.monotonic()
            if kind == "freeze":
                gws[victim].p.send_signal(signal.SIGSTOP)
            else:
                gws[victim].kill()
            events.append((round(t_kill - t0, 2), "SIGSTOP" if kind == "freeze" else "kill -9", victim))
            stranded = _stranded(tmp / victim / "data") if kind == "kill" else {}
            row = _kill_figures(mon, victim, vnodes, t_kill, published, acked, timeout=down_s + 20,
                                freeze=kind == "freeze")
            row["at_death"] = stranded  # what would never reach the cloud if this gateway never came back
            kill_rows.append(row)
            time.sleep(max(0.0, down_s - (time.monotonic() - t_kill)))
            if kind == "freeze":
                gws[victim].p.send_signal(signal.SIGCONT)
            else:
                gws[victim].start()
            events.append((round(time.monotonic() - t0, 2), "SIGCONT" if kind == "freeze" else "restart", victim))
            wait_until(lambda: sorted(mon.serving(victim)) != [] or False, 15)
            time.sleep(after_s)
        for n in nodes:
            n.stop()
        finals = {n.name: n.final(timeout=40) for n in nodes}
        dbs = {g: tmp / g / "data" / "ingest.sqlite" for g in GATEWAYS}
        time.sleep(0.5)
        rep_cloud = cloud.settle(dbs, FORWARD, timeout=120)
        for p in gws.values():
            if p.p and p.p.poll() is None:
                p.p.send_signal(signal.SIGTERM)
        for p in gws.values():
            if p.p:
                p.p.wait(30)
        rows = reconcile(dbs, finals)
        rep_cloud = cloud.reconcile(dbs, FORWARD)
        for k in ("seen_up", "seen_alert"):  # (node, seq) sets: the rows have them per node
            rep_cloud.pop(k)
        stats = {g: _metrics(tmp / g / "data" / "metrics.json") for g in GATEWAYS}
    finally:
        for n in nodes:
            n.proc.kill()
        for p in gws.values():
            p.kill()
        mon.stop()
        broker.stop()
        cloud.close()
    kr = [r for r in kill_rows if r["fault"] == "kill"]
    fr = [r for r in kill_rows if r["fault"] == "freeze"]
    firsts = [x for r in kr for x in r["first_ack_ms"]]
    services = [x for r in kr for x in r["service_ms"]]
    drains = [x for r in kr for x in r["drained_ms"]]
    frozen = [x for r in fr for x in r["first_ack_ms"]]
    figures = {"kills": len(kr), "freezes": len(fr),
               "will_ms_max": max((r["will_ms"] or 0 for r in kr), default=None),
               "freeze_first_ack_ms_p50": pctl(frozen, 0.5, 1), "freeze_first_ack_ms_max": pctl(frozen, 1.0, 1),
               "first_ack_ms_p50": pctl(firsts, 0.5, 1), "first_ack_ms_max": pctl(firsts, 1.0, 1),
               "takeover_service_ms_p50": pctl(services, 0.5, 1), "takeover_service_ms_max": pctl(services, 1.0, 1),
               "steady_ack_ms_p50": pctl(steady, 0.5, 1), "steady_ack_ms_max": pctl(steady, 1.0, 1),
               "drained_ms_p50": pctl(drains, 0.5, 1), "drained_ms_max": pctl(drains, 1.0, 1),
               "outbox_rows_at_death_max": max((r["at_death"].get("outbox_rows") or 0 for r in kr), default=None),
               "unfed_readings_at_death_max": max((r["at_death"].get("unfed_readings") or 0 for r in kr),
                                                  default=None),
               "duplicates_absorbed": rep_cloud["absorbed_by_keys"],
               "doubled_summaries": rep_cloud["doubled_summaries"], "wall_s": round(time.monotonic() - t0, 1)}
    return {"seed": seed, "nodes": n_nodes, "events": events, "kills": kill_rows, "rows": rows, "cloud": rep_cloud,
            "gateway_metrics": stats, "figures": figures}


def _metrics(path: Path) -> dict[str, Any]:
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    keep = ("cluster_", "duplicates", "seq_gaps", "acks_sent", "windows_not_leased", "readings_stored")
    out: dict[str, Any] = {}
    for table in ("counters", "gauges"):
        for name, series in (d.get(table) or {}).items():
            if name.startswith(keep):
                out[name] = sum(x.get("value", 0) for x in series)
    return out


def print_report(rep: dict[str, Any]) -> None:
    """Reconciliation table, takeover figures, cloud record."""
    print(f"\nfailover seed={rep['seed']} nodes={rep['nodes']} events={rep['events']}")
    gcols = [k for k in rep["rows"][0] if k.startswith("at_")] if rep["rows"] else []
    print(f"{'node':6}{'lane':7}{'kept':>6}{'acked':>7}" + "".join(f"{c:>8}" for c in gcols)
          + f"{'both':>6}{'unexpl.':>9}{'backlog':>9}")
    for r in rep["rows"]:
        print(f"{r['node']:6}{r['lane']:7}{r['kept']:>6}{r['acked']:>7}" + "".join(f"{r[c]:>8}" for c in gcols)
              + f"{r['on_both']:>6}{r['unexplained']:>9}{r['backlog']:>9}")
    for k in rep["kills"]:
        print(f"{k['fault']} {k['victim']}: nodes={k['nodes']} will_ms={k['will_ms']} service_ms={k['service_ms']} "
              f"first_ack_ms={k['first_ack_ms']} "
              f"drained_ms={k['drained_ms']} missing_first={k['no_first_ack']} not_drained={k['not_drained']} "
              f"at_death={k.get('at_death')}")
    print("cloud:", json.dumps(rep["cloud"]))
    print("gateways:", json.dumps(rep["gateway_metrics"]))
    print("figures:", json.dumps(rep["figures"]))

