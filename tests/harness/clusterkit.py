"""Failover kit (tests/system/test_failover.py, tools/bench/failover.py): two gateways, one site, kill -9.

A provisioned site mosquitto (ACL, HMAC-signed packs), a TLS cloud mosquitto with a consumer, two
gateway processes with `[cluster] enabled` and the relay (`forward_readings` when the relay has it),
virtual nodes on the real firmware (tests/harness/sitekit.py's VNode). A monitor on the site broker
records gateway health, last wills, node publishes and acks, so takeover is timed from outside:
kill -9 -> the broker's last will -> the first ack a node of the dead gateway gets after it (the
standby's), and -> the ack that covers everything the node had published before the kill (drained).
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any

import cbor2
import paho.mqtt.client as mqtt

from fogline.gateway.ops.provision import broker_conf, provision
from fogline.shared import summary as wire
from fogline.tools import hostemu
from harness.broker import Mosquitto, free_port
from harness.sitekit import Proc, VNode

REPO = hostemu.REPO
SITE = "fo"
GATEWAYS = ("gwa", "gwb")


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


def _gateway_conf(d: Path, gw: str, port: int, sec: dict[str, Any], keys: Path, cloud_toml: str) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    conf = d / "gateway.toml"
    conf.write_text(f'[site]\nid = "{SITE}"\ngateway_id = "{gw}"\ndata_dir = "{d / "data"}"\n\n'
                    f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\nusername = "{sec["user"]}"\n'
                    f'password = "{sec["password"]}"\nreconnect_min_s = 0.2\nreconnect_max_s = 1.0\n\n'
                    f'[ingest]\nauth_keys_file = "{keys}"\nrequire_auth = true\n\n'
                    f'[inference]\nenabled = false\n\n'
                    f'[aggregate]\nwindows_s = [5.0]\nwatermark_s = 1.0\n\n'  # several summaries per run
                    # one host: both gateways see the same load average, so load must not decide
                    f'[cluster]\nenabled = true\nload_weight = 0.0\n' + cloud_toml)
    return conf


class Cloud:
    """Cloud side: a TLS + password mosquitto (persistent, no queue limit), `fogline cloud` on PostgreSQL (the
    record reconciled: `rec`) and a wire tap (`sub`: which gateway sent each summary, for doubled summaries)."""

    def __init__(self, tmp: Path):
        from harness.cloudkit import CloudSubscriber, make_pki, tls_cloud_broker
        from harness.cloudrecord import CloudRecord
        self.pki = make_pki(tmp / "pki")
        self.broker = tls_cloud_broker(tmp / "cloud", self.pki, {"gw": "gw-secret", "cloud": "cloud-secret"}).start()
        self.rec = CloudRecord(self.broker.port, self.pki.ca, "cloud", "cloud-secret", SITE)
        self.sub = CloudSubscriber(self.broker.port, self.pki, "cloud", "cloud-secret",
                                   topic=f"fogline/{SITE}/#").start()

    def toml(self) -> str:
        """[cloud] of both gateways: TLS with the test CA, 5 s summaries, every reading forwarded if supported."""
        from fogline.gateway.relay.cloud import CloudConfig
        fwd = "forward_readings = true\n" if "forward_readings" in {f.name for f in dataclasses.fields(CloudConfig)} \
            else ""
        return (f'\n[cloud]\nenabled = true\nhost = "127.0.0.1"\nport = {self.broker.port}\n'
                f'ca_file = "{self.pki.ca}"\nusername = "gw"\npassword = "gw-secret"\n'
                f'reconnect_min_s = 0.2\nreconnect_max_s = 1.0\nsummary_windows_s = [5.0]\n{fwd}\n'
                f'[cloud.bandwidth]\ninitial_mode = "high"\n\n[cloud.breaker]\nbackoff_max_s = 2.0\n')

    def reconcile(self, dbs: dict[str, Path]) -> dict[str, Any]:
        """reconcile_cloud against the cloud database (each summary's senders from the wire tap)."""
        return reconcile_cloud(dbs, self.rec.snapshot(), self.rec.bad, deliveries=self.sub.snapshot(),
                               absorbed=self.rec.absorbed(), db_dups=self.rec.db_duplicates())

    def close(self) -> None:
        self.sub.stop()
        self.rec.stop()
        self.broker.stop()


def _pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(q * len(xs)))], 1)


def _stranded(data_dir: Path) -> dict[str, int | None]:
    """What a dead gateway holds that only it can send: outbox rows, and stored readings not yet fed to it."""
    out: dict[str, int | None] = {"outbox_rows": None, "unfed_readings": None}
    try:
        con = _ro(data_dir / "outbox.sqlite")
        try:
            out["outbox_rows"] = con.execute("SELECT count(*) FROM outbox").fetchone()[0]
        finally:
            con.close()
        con = _ro(data_dir / "ingest.sqlite")
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
    port = free_port()
    names = [f"n{i}" for i in range(n_nodes)]
    res = provision(tmp / "prov", SITE, names, broker_port=port)
    secrets = json.loads(res.files["secrets"].read_text())
    for i, n in enumerate(names):
        p = res.files[f"node:{n}"]
        cfg = json.loads(p.read_text())
        cfg["rules"] = [{"name": "too_warm", "sensor": "temperature", "type": "above", "threshold": 22.0,
                         "hysteresis": 0.2}]
        # Under load: 4 samples/s (12 readings/s) made durable about once a second, so a kill always
        # lands with readings in flight and more coming.
        cfg["sample_ms"] = 250
        cfg.setdefault("log", {}).update({"sync_every": 12, "sync_ms": 1000})
        p.write_text(json.dumps(cfg))
    as_root = "user root\n" if os.geteuid() == 0 else ""
    broker = Mosquitto(tmp / "broker", port=port, extra_conf=f"listener {port} 127.0.0.1\n{as_root}"
                       + broker_conf(res.files["passwd"], res.files["acl"])).start()
    cloud = Cloud(tmp)
    gsec = secrets["gateway"]
    level = os.environ.get("FOGLINE_FAILOVER_LOG", "WARNING")  # INFO shows every takeover and handover
    gws = {g: Proc([sys.executable, "-m", "fogline.tools.cli", "gateway", "--config",
                          str(_gateway_conf(tmp / g, g, port, gsec, res.files["gateway_keys"], cloud.toml())),
                          "--log-level", level], dict(os.environ), REPO, tmp / g / "gateway.log") for g in GATEWAYS}
    scen = ["hot", "spikes"]
    nodes = [VNode(tmp / n, n, res.files[f"node:{n}"], scen[i] if i < len(scen) else "normal", seed * 100 + i)
             for i, n in enumerate(names)]
    mon = Monitor(port, gsec["user"], gsec["password"])
    events: list[tuple[float, str, str]] = []
    kill_rows: list[dict[str, Any]] = []
    t0 = time.monotonic()
    try:
        mon.ready.wait(10)
        for p in gws.values():
            p.start()
        _wait(lambda: all(mon.health.get(g, {}).get("alive") for g in GATEWAYS), 20)
        for n in nodes:
            n.start()
        _wait(lambda: all(mon.acks.get(n) for n in names), 30)  # every node served
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
            _wait(lambda: sorted(mon.serving(victim)) != [] or False, 15)
            time.sleep(after_s)
        for n in nodes:
            n.stop()
        finals = {n.name: n.final(timeout=40) for n in nodes}
        dbs = {g: tmp / g / "data" / "ingest.sqlite" for g in GATEWAYS}
        time.sleep(0.5)
        rep_cloud = _settle_cloud(cloud, dbs, timeout=30)
        for p in gws.values():
            if p.p and p.p.poll() is None:
                p.p.send_signal(signal.SIGTERM)
        for p in gws.values():
            if p.p:
                p.p.wait(30)
        rows = reconcile(dbs, finals)
        rep_cloud = cloud.reconcile(dbs)
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
               "freeze_first_ack_ms_p50": _pct(frozen, 0.5), "freeze_first_ack_ms_max": _pct(frozen, 1.0),
               "first_ack_ms_p50": _pct(firsts, 0.5), "first_ack_ms_max": _pct(firsts, 1.0),
               "takeover_service_ms_p50": _pct(services, 0.5), "takeover_service_ms_max": _pct(services, 1.0),
               "steady_ack_ms_p50": _pct(steady, 0.5), "steady_ack_ms_max": _pct(steady, 1.0),
               "drained_ms_p50": _pct(drains, 0.5), "drained_ms_max": _pct(drains, 1.0),
               "outbox_rows_at_death_max": max((r["at_death"].get("outbox_rows") or 0 for r in kr), default=None),
               "unfed_readings_at_death_max": max((r["at_death"].get("unfed_readings") or 0 for r in kr),
                                                  default=None),
               "duplicates_absorbed": rep_cloud["duplicates_absorbed"],
               "doubled_summaries": rep_cloud["doubled_summaries"], "wall_s": round(time.monotonic() - t0, 1)}
    return {"seed": seed, "nodes": n_nodes, "events": events, "kills": kill_rows, "rows": rows, "cloud": rep_cloud,
            "gateway_metrics": stats, "figures": figures}


def _wait(cond: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if cond():
                return True
        except Exception:
            pass
        time.sleep(0.05)
    return False


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


def _ro(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)


def _stored(dbs: dict[str, Path]) -> dict[str, dict[tuple[str, int], set[int]]]:
    """gateway -> (node, lane id) -> stored seqs."""
    out: dict[str, dict[tuple[str, int], set[int]]] = {}
    for g, db in dbs.items():
        d: dict[tuple[str, int], set[int]] = {}
        if db.exists():
            con = _ro(db)
            try:
                for node, lane, seq in con.execute("SELECT n.name, r.lane, r.seq FROM readings r "
                                                   "JOIN nodes n ON n.nid=r.nid"):
                    d.setdefault((node, lane), set()).add(seq)
            finally:
                con.close()
        out[g] = d
    return out


def reconcile(dbs: dict[str, Path], finals: dict[str, dict]) -> list[dict[str, Any]]:
    """Per node and lane: the node's durable seqs 1..kept against the union of what the gateways stored.

    Gaps a gateway skipped because another gateway acked them ("cluster: ...") explain nothing: the
    readings must be stored somewhere. Only a node's own policy drops (other gap reasons) do."""
    stored = _stored(dbs)
    policy: dict[tuple[str, int], set[int]] = {}
    for db in dbs.values():
        if not db.exists():
            continue
        con = _ro(db)
        try:
            for node, lane, lo, hi, why in con.execute("SELECT n.name, g.lane, g.lo, g.hi, g.why FROM gaps g "
                                                       "JOIN nodes n ON n.nid=g.nid"):
                if not str(why).startswith("cluster:"):
                    policy.setdefault((node, lane), set()).update(range(lo, hi + 1))
        finally:
            con.close()
    rows = []
    for node, fin in sorted(finals.items()):
        st = fin.get("store", {})
        for li, lane in ((0, "up"), (1, "alert")):
            kept = int(st.get(f"durable_{lane}", 0))
            per = {g: stored[g].get((node, li), set()) for g in dbs}
            union = set().union(*per.values())
            skipped = policy.get((node, li), set())
            missing = [s for s in range(1, kept + 1) if s not in union and s not in skipped]
            both = set.intersection(*per.values()) if per else set()
            rows.append({"node": node, "lane": lane, "kept": kept, "acked": int(fin.get("acked", {}).get(lane, 0) or 0),
                         **{f"at_{g}": len(s) for g, s in per.items()}, "on_both": len(both),
                         "policy_skipped": len(skipped), "unexplained": len(missing), "missing": missing[:10],
                         "beyond_kept": len([s for s in union if s > kept]),
                         "backlog": int(fin.get("backlog", {}).get(lane, 0))})
    return rows


def _cloud_sets(items: list[dict[str, Any]]) -> dict[str, Any]:
    by_key: dict[str, dict[str, Any]] = {}
    absorbed_keys = 0
    for it in items:
        if it["k"] in by_key:
            absorbed_keys += 1
            continue
        by_key[it["k"]] = it
    raw: dict[tuple[str, int], int] = {}
    alerts: dict[tuple[str, int], int] = {}
    summaries: dict[tuple, set[str]] = {}  # window key (shared/summary.py) -> gateways that sent one
    latest: dict = {}                        # window key -> its highest revision (what the cloud keeps)
    for it in by_key.values():
        b = it["body"]
        if isinstance(b, (bytes, bytearray)):
            b = cbor2.loads(b)
        lane = it.get("lane")
        if lane == "alert":
            alerts[(b["node"], b["seq"])] = alerts.get((b["node"], b["seq"]), 0) + 1
        elif lane == "raw" and isinstance(b, dict) and b.get("lane") == "up" and "first_seq" in b:
            for i in range(len(b.get("records", []))):
                k = (b["node"], b["first_seq"] + i)
                raw[k] = raw.get(k, 0) + 1
        elif lane == "summary" and isinstance(b, dict) and wire.body_key(b) is not None:
            summaries.setdefault(wire.body_key(b), set()).add(it.get("gw", ""))
            wire.keep_highest(latest, b)
    return {"raw": raw, "alerts": alerts, "summaries": summaries, "latest": latest, "absorbed_keys": absorbed_keys}


def reconcile_cloud(dbs: dict[str, Path], items: list[dict[str, Any]], bad: int,
                    deliveries: list[dict[str, Any]] | None = None, absorbed: int | None = None,
                    db_dups: int = 0) -> dict[str, Any]:
    """Cloud record after de-duplication by (node, lane, seq): every stored reading and alert, once.

    items: the cloud database's rows (or every delivery); deliveries: what the wire carried, for which
    gateways sent each summary (default: items); absorbed: re-deliveries the database's keys absorbed."""
    stored = _stored(dbs)
    up = set().union(*[{(n, s) for (n, li), ss in d.items() if li == 0 for s in ss} for d in stored.values()])
    al = set().union(*[{(n, s) for (n, li), ss in d.items() if li == 1 for s in ss} for d in stored.values()])
    cs = _cloud_sets(items)
    ws = _cloud_sets(deliveries) if deliveries is not None else cs
    dup_raw = sum(c - 1 for c in cs["raw"].values())
    dup_alert = sum(c - 1 for c in cs["alerts"].values())
    forwarded = bool(cs["raw"])
    return {"readings_stored": len(up), "readings_in_cloud": len(cs["raw"]), "forwarding": forwarded,
            "readings_missing": len(up - set(cs["raw"])) if forwarded else None,
            "readings_not_stored": len(set(cs["raw"]) - up),
            "alerts_stored": len(al), "alerts_in_cloud": len(cs["alerts"]),
            "alerts_missing": len(al - set(cs["alerts"])),
            "alerts_not_stored": len(set(cs["alerts"]) - al),
            "duplicates_absorbed": dup_raw + dup_alert + cs["absorbed_keys"] if absorbed is None else absorbed,
            "db_duplicates": db_dups,
            "duplicate_readings": dup_raw, "duplicate_alerts": dup_alert, "resent_envelopes": cs["absorbed_keys"],
            "summaries": len(cs["summaries"]),
            "summary_corrections": sum(1 for b in cs["latest"].values() if b.get(wire.CORR)),
            "doubled_summaries": sum(1 for g in ws["summaries"].values() if len(g) > 1),
            "undecodable": bad, "deliveries": len(items)}


def _settle_cloud(cloud: Any, dbs: dict[str, Path], timeout: float) -> dict[str, Any]:
    """Wait (bounded) until every reading and alert stored at either gateway is in the cloud."""
    deadline = time.monotonic() + timeout
    while True:
        rep = cloud.reconcile(dbs)
        done = rep["alerts_missing"] == 0 and (not rep["forwarding"] or rep["readings_missing"] == 0)
        if done or time.monotonic() > deadline:
            return rep
        time.sleep(0.3)


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

