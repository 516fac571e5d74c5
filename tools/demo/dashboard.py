"""Live terminal dashboard of `fogline demo` (rich): nodes with sparklines, link, backlog, events, bytes saved."""

from __future__ import annotations

import time
from typing import Any, Iterable

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

BARS = "▁▂▃▄▅▆▇█"
# Smallest span a sparkline scale covers per metric (its units): sensor noise (0.05 degC, 0.3 %RH,
# 0.03 hPa) stays within one bar, a real change of a few units fills the row.
SPAN_FLOOR = {"temperature": 4.0, "humidity": 10.0, "pressure": 4.0}
DEFAULT_FLOOR = 1.0


def metric_scale(series: Iterable[Iterable[float]], floor: float) -> tuple[float, float]:
    """One (lo, hi) for a metric across nodes: their min and max, widened to `floor` with the middle of
    the values in the middle of a bar (not on a bar edge, where noise would flip between two bars)."""
    vals = [v for s in series for v in s]
    if not vals:
        return 0.0, floor
    lo, hi = min(vals), max(vals)
    if hi - lo < floor:
        mid = (lo + hi) / 2
        lo = mid - floor * (len(BARS) // 2 - 0.5) / len(BARS)
        hi = lo + floor
    return lo, hi


def sparkline(values: Iterable[float], width: int = 24, scale: tuple[float, float] | None = None) -> str:
    """Unicode sparkline of the last `width` values on `scale` (lo, hi); default: their own range
    widened to DEFAULT_FLOOR."""
    vals = list(values)[-width:]
    if not vals:
        return ""
    lo, hi = scale if scale is not None else metric_scale([vals], DEFAULT_FLOOR)
    span = max(hi - lo, 1e-12)
    return "".join(BARS[max(0, min(7, int((v - lo) / span * 7.999)))] for v in vals)


def _num(v: Any, unit: str = "") -> str:
    if not isinstance(v, (int, float)):
        return "-"
    if abs(v) >= 10000:
        return f"{v:.0f}{unit}"
    return f"{v:.1f}{unit}" if abs(v) >= 100 else f"{v:.2f}{unit}"


def render(demo: Any, width: int = 120) -> Group:
    """One frame from the demo's observers (called a few times per second)."""
    mon, sink, fleet = demo.monitor, demo.sink, demo.fleet
    now = time.time()
    wide = width >= 120
    spark = 16 if wide else 8
    t = Table(expand=True, pad_edge=False, box=None, header_style="bold cyan")
    heads = (("node", 6), ("scenario", 9), ("link", 9), ("temp °C", None), ("hum %RH", None), ("press hPa", None),
             ("backlog", 7), ("acked", 7), ("alerts", 6))
    for col, w in heads:
        t.add_column(col, no_wrap=True, min_width=w, overflow="ellipsis")
    with mon.lock:
        views = dict(mon.nodes)
    ble = demo.ble_recent(spark)
    series = {v.id: {m: list(vals)[-spark:] for m, vals in mv.values.items()} for v in fleet.nodes
              if not v.ble_only and (mv := views.get(v.id)) is not None}
    series.update(ble)
    scales = {m: metric_scale([s[m] for s in series.values() if m in s], SPAN_FLOOR.get(m, DEFAULT_FLOOR))
              for m in ("temperature", "humidity", "pressure")}
    t.caption = "sparklines: one scale per metric across nodes, " + ", ".join(
        f"{m} {lo:.1f}..{hi:.1f}" for m, (lo, hi) in scales.items())
    for v in fleet.nodes:
        mv = views.get(v.id)
        st = v.latest
        if v.error:
            link = Text("down", style="red")
        elif v.ble_only:
            link = Text("BLE", style="blue")
        elif mv is not None and now - mv.last_seen < 5:
            link = Text("MQTT", style="green")
        elif st.get("wifi") is False:
            link = Text("Wi-Fi out", style="yellow")
        else:
            link = Text("waiting", style="yellow")
        cells = []
        for metric in ("temperature", "humidity", "pressure"):
            vals = series.get(v.id, {}).get(metric)
            if vals:  # MQTT: readings on the wire; BLE: advert values the gateway stored
                cells.append(f"{sparkline(vals, spark, scales[metric])} {_num(vals[-1])}")
            else:
                latest = (st.get("latest") or {}).get(metric)
                cells.append(_num(latest) if latest is not None else Text("no data", style="dim"))
        bl = st.get("backlog") or {}
        acked = (mv.acked if mv is not None else None) or {}
        # a BLE node's log never leaves it (adverts carry the latest values): no backlog, nothing acked
        backlog = Text("adverts", style="dim") if v.ble_only else f"{bl.get('up', '-')}/{bl.get('alert', '-')}"
        t.add_row(v.id, v.scenario, link, *cells, backlog,
                  "-" if v.ble_only else f"{acked.get('up', 0)}/{acked.get('alert', 0)}",
                  str(mv.alerts if mv is not None else (st.get("sensing") or {}).get("alerts", 0)))
    events = list(sink.events) + list(mon.events)
    ev = Text("\n".join(events[:10]) if events else "waiting for alerts and anomalies ...")
    c = dict(mon.counters)
    up = sink.counters["bytes"]
    naive = c["naive_bytes"]
    ratio = f"{naive / up:.1f}x less" if up else "-"
    lanes = ", ".join(f"{k} {n}" for k, n in sorted(sink.lanes.items())) or "nothing yet"
    stats = Text.assemble(
        ("readings on the wire ", "bold"), f"{c['readings']}   ",
        ("alerts ", "bold"), f"{c['alert_readings']}   ",
        ("cloud rows ", "bold"), f"{lanes}\n",
        ("upstream ", "bold"), f"{up:,} B vs naive JSON {naive:,} B ({ratio})   ",
        ("elapsed ", "bold"), f"{now - demo.t0:.0f} s" + (f" / {demo.duration:.0f} s" if demo.duration else ""),
        ("   components ", "bold"), demo.components_line(),
    )
    return Group(Panel(t, title=f"Fogline demo: site {demo.site}, {len(fleet.nodes)} virtual nodes (real firmware)"),
                 Panel(ev, title="alerts (nodes) and anomalies (cloud)", height=12),
                 Panel(stats, title="fog at work (Ctrl-C stops)"))
