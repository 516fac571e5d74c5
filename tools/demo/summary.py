"""The demo's closing summary: node ledgers, gateway and cloud counts, bytes upstream vs naive JSON, and
the model's decisions against the scenarios' ground truth (false positives per node, faults found)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

BLE_DELIVERS = "latest values in BTHome adverts (no store-and-forward, no acks): its log stays on the node"


def _node_ledger(v: Any) -> dict[str, Any]:
    """Counts one node reported in its final (or last) report."""
    d = v.latest
    s = d.get("sensing") or {}
    store = d.get("store") or {}
    acked = d.get("acked") or {}
    backlog = d.get("backlog") or {}
    sampled = int(s.get("readings", 0)) + int(s.get("timer_outputs", 0))
    filtered = int(s.get("filtered", 0)) + int(s.get("nan", 0))
    led = {
        "node": v.id, "scenario": v.scenario, "link": "ble" if v.ble_only else "mqtt",
        "final_report": v.final is not None, "error": v.error,
        "sampled": sampled, "filtered": filtered, "kept": int(s.get("kept", 0)),
        "store_errors": int(s.get("store_errors", 0)), "read_errors": int(s.get("read_errors", 0)),
        "alerts_raised": int(s.get("alerts", 0)),
        "stored_at_gateway": 0 if v.ble_only else int(acked.get("up", 0)),
        "alerts_stored_at_gateway": 0 if v.ble_only else int(acked.get("alert", 0)),
        "dropped_by_policy": int(store.get("dropped_by_policy", 0)),
        "backlog": int(backlog.get("up", 0)),
        "alert_backlog": int(backlog.get("alert", 0)),
    }
    if v.ble_only:
        led["delivers"] = BLE_DELIVERS
    # FlashLog seqs start at 1 on a fresh image, so the gateway's ack is the count it holds durably.
    led["unexplained"] = led["kept"] - led["stored_at_gateway"] - led["dropped_by_policy"] - led["backlog"]
    led["consistent"] = (sampled == led["kept"] + filtered + led["store_errors"]) and led["unexplained"] == 0
    return led


def gateway_rows(data_dir: Path) -> dict[str, dict[str, int]]:
    """Rows the gateway committed per node and lane (up, alert, ble), read from its store after it stopped."""
    from fogline.gateway.store.core import LANE_NAME
    out: dict[str, dict[str, int]] = {}
    db = Path(data_dir) / "ingest.sqlite"
    if not db.exists():
        return out
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        for node, lane, n in con.execute("SELECT n.name, r.lane, count(*) FROM readings r JOIN nodes n USING(nid) "
                                         "GROUP BY 1, 2"):
            out.setdefault(node, {})[LANE_NAME.get(lane, str(lane))] = int(n)
    finally:
        con.close()
    return out


def _detection(demo: Any) -> dict[str, Any]:
    """The model's decisions judged against what each node's scenario really did (event time)."""
    from fogline.tools.demo.fleet import BLE_INTERVAL_MS
    from fogline.tools.demo.truth import evaluate, load_truth
    fleet, mon = demo.fleet, demo.monitor
    if not fleet:
        return {}
    truths = [load_truth(v.truth_log, v.id, v.scenario, v.signals) for v in fleet.nodes]
    for v, nt in zip(fleet.nodes, truths):  # a BLE node's readings come with its adverts, not its samples
        nt.period_s = (BLE_INTERVAL_MS if v.ble_only else demo.sample_ms) / 1000.0
    alerts = {}
    if mon is not None:
        with mon.lock:
            alerts = {n: list(v.alert_log) for n, v in mon.nodes.items()}
    out = evaluate(truths, demo.decisions, alerts)
    out["window_s"] = demo.window_s
    return out


def reconcile(tot: dict[str, int], ble: int, in_flight: int, readings_stored: int | None) -> dict[str, Any]:
    """gateway.readings_stored against the node ledgers: acked readings + alert records + BLE readings +
    rows committed whose ack was still on its way to the node."""
    total = tot["stored_at_gateway"] + tot["alerts_stored_at_gateway"] + ble + in_flight
    return {"stored": tot["stored_at_gateway"], "alert_records": tot["alerts_stored_at_gateway"], "ble_readings": ble,
            "committed_ack_in_flight": in_flight, "sum": total, "gateway_readings_stored": readings_stored,
            "matches": readings_stored == total}


def build_summary(demo: Any) -> dict[str, Any]:
    """Summary dict of a finished Demo (JSON-ready)."""
    fleet, mon, sink, gw = demo.fleet, demo.monitor, demo.sink, demo.gw
    ledgers = [_node_ledger(v) for v in fleet.nodes] if fleet else []
    tot = {k: sum(led[k] for led in ledgers) for k in (
        "sampled", "filtered", "kept", "store_errors", "dropped_by_policy", "backlog", "stored_at_gateway",
        "alerts_raised", "alerts_stored_at_gateway", "unexplained")}
    came_up = [v.id for v in fleet.nodes if v.latest] if fleet else []
    mc = dict(mon.counters) if mon else {}
    lanes = dict(sink.lanes) if sink else {}
    up_bytes = sink.counters["bytes"] if sink else 0
    naive = mc.get("naive_bytes", 0)
    inference = {}
    if gw is not None and getattr(gw, "inference", None) is not None:
        try:
            st = gw.inference.stats()
            inference = {k: st.get(k) for k in ("sets_scored", "summary", "anomaly", "raw", "windows_late", "model")}
        except Exception as e:  # stats are informative only
            inference = {"error": str(e)}
    ble_stored = 0
    rows: dict[str, dict[str, int]] = {}
    try:
        rows = gateway_rows(demo.workdir / "gateway")
    except sqlite3.Error as e:
        demo.notes["gateway_rows"] = f"unreadable: {e}"
    in_flight = 0
    for led in ledgers:
        led["rows_at_gateway"] = r = rows.get(led["node"], {})
        if led["link"] == "ble":
            led["ble_readings_at_gateway"] = r.get("ble", 0)
        elif r:
            led["committed_ack_in_flight"] = (max(0, r.get("up", 0) - led["stored_at_gateway"])
                                              + max(0, r.get("alert", 0) - led["alerts_stored_at_gateway"]))
            in_flight += led["committed_ack_in_flight"]
    gwm: dict[str, int] = {}
    if gw is not None:
        try:
            m = gw.metrics
            gwm = {k: int(m.total(k)) for k in ("messages_in", "readings_stored", "duplicates", "dead_letters",
                                                  "acks_sent", "windows_closed", "ble_adverts")}
            ble_stored = int(m.get("readings_in", lane="ble"))  # BLE readings get gateway-assigned seqs
        except Exception:
            ble_stored = 0
    detection = _detection(demo)
    out = {
        "duration_s": round((demo.t_end or demo.t0) - demo.t0, 1),
        "seed": demo.seed,
        "nodes": {"started": len(ledgers), "came_up": len(came_up),
                  "ble_only": sum(1 for led in ledgers if led["link"] == "ble"),
                  "failed": {v.id: v.error for v in fleet.nodes if v.error} if fleet else {}},
        # headline figures (node ledger): sampled = stored + filtered + dropped_by_policy + backlog (+ store errors)
        "sampled": tot["sampled"],
        "filtered": tot["filtered"],
        "kept": tot["kept"],
        "stored": tot["stored_at_gateway"],
        "dropped_by_policy": tot["dropped_by_policy"],
        "backlog": tot["backlog"],
        # the backlog split: MQTT nodes' unacked readings vs BLE nodes' logs, which BLE never carries
        "backlog_mqtt": sum(led["backlog"] for led in ledgers if led["link"] == "mqtt"),
        "kept_on_ble_nodes": sum(led["backlog"] for led in ledgers if led["link"] == "ble"),
        "store_errors": tot["store_errors"],
        "unexplained": tot["unexplained"],
        "consistent": bool(came_up) and all(led["consistent"] for led in ledgers if led["final_report"]),
        "relayed": sum(lanes.values()),
        "relayed_by_lane": lanes,
        "alerts": {"raised": tot["alerts_raised"], "stored": tot["alerts_stored_at_gateway"],
                   "relayed": lanes.get("alert", 0)},
        "anomalies": {"detected": inference.get("anomaly"), "relayed": lanes.get("anomaly", 0)},
        "detection": detection,
        "false_positive_rate": {n: d["fp_rate"] for n, d in detection.get("per_node", {}).items()},
        "ble_readings_at_gateway": ble_stored,
        "ble_delivers": BLE_DELIVERS,
        "gateway": gwm,
        # gateway.readings_stored counts every row the gateway committed: the MQTT nodes' acked readings
        # ("stored"), their alert records, the BLE readings (gateway-assigned seqs, never acked) and rows
        # committed whose ack had not reached the node by its final report (in its backlog there)
        "stored_reconciled": reconcile(tot, ble_stored, in_flight, gwm.get("readings_stored")),
        "bytes": {"sent_upstream": up_bytes, "naive_json": naive,
                  "reduction": round(naive / up_bytes, 1) if up_bytes else None,
                  "site_wire": mc.get("up_bytes", 0)},
        "wire": {"readings_seen": mc.get("readings", 0), "alert_readings_seen": mc.get("alert_readings", 0),
                 "cloud_duplicates": sink.counters["duplicates"] if sink else 0},
        "inference": inference,
        "components": dict(demo.notes),
        "per_node": ledgers,
    }
    return out
