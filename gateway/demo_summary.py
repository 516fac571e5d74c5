"""The demo's closing summary: node ledgers, gateway and cloud counts, bytes upstream vs naive JSON."""

from __future__ import annotations

from typing import Any


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
    # FlashLog seqs start at 1 on a fresh image, so the gateway's ack is the count it holds durably.
    led["unexplained"] = led["kept"] - led["stored_at_gateway"] - led["dropped_by_policy"] - led["backlog"]
    led["consistent"] = (sampled == led["kept"] + filtered + led["store_errors"]) and led["unexplained"] == 0
    return led


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
            inference = {k: st.get(k) for k in ("sets_scored", "summary", "anomaly", "raw", "model")}
        except Exception as e:  # stats are informative only
            inference = {"error": str(e)}
    ble_stored = 0
    gwm: dict[str, int] = {}
    if gw is not None:
        try:
            m = gw.metrics
            gwm = {k: int(m.total(k)) for k in ("messages_in", "readings_stored", "duplicates", "dead_letters",
                                                  "acks_sent", "windows_closed", "ble_adverts")}
            ble_stored = int(m.get("readings_in", lane="ble"))  # BLE readings get gateway-assigned seqs
        except Exception:
            ble_stored = 0
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
        "store_errors": tot["store_errors"],
        "unexplained": tot["unexplained"],
        "consistent": bool(came_up) and all(led["consistent"] for led in ledgers if led["final_report"]),
        "relayed": sum(lanes.values()),
        "relayed_by_lane": lanes,
        "alerts": {"raised": tot["alerts_raised"], "stored": tot["alerts_stored_at_gateway"],
                   "relayed": lanes.get("alert", 0)},
        "anomalies": {"detected": inference.get("anomaly"), "relayed": lanes.get("anomaly", 0)},
        "ble_readings_at_gateway": ble_stored,
        "gateway": gwm,
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
