"""Metrics: the Prometheus exposition (read back with prometheus_client's own parser), the JSON snapshot, isolation."""

from __future__ import annotations

import asyncio
import json
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from fogline.gateway.ops.http import MetricsHTTP
from fogline.gateway.ops.metric_help import HELP
from fogline.gateway.ops.metrics import Metrics


def _families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_counters_end_in_total_and_every_family_has_help():
    m = Metrics()
    m.inc("messages_in", link="mqtt")
    m.inc("messages_in", 2, link="ble")
    m.inc("tiers_pruned", 3)
    m.set("node_backlog", 7, node='odd"name\\', lane="up")
    m.set("uptime_s", 1.5)
    text = m.render_prometheus()
    fams = _families(text)
    assert fams["fogline_messages_in"].type == "counter"
    got = {(s.name, s.labels.get("link")): s.value for s in fams["fogline_messages_in"].samples}
    assert got == {("fogline_messages_in_total", "mqtt"): 1.0, ("fogline_messages_in_total", "ble"): 2.0}
    assert "fogline_messages_in_total{link=\"mqtt\"} 1.0" in text
    assert fams["fogline_messages_in"].documentation == HELP["messages_in"]
    assert fams["fogline_tiers_pruned"].documentation == "tier maintenance: pruned"
    backlog = fams["fogline_node_backlog"]
    assert backlog.type == "gauge" and backlog.samples[0].labels == {"node": 'odd"name\\', "lane": "up"}
    assert backlog.samples[0].value == 7.0
    assert fams["fogline_uptime_s"].samples[0].value == 1.5
    for name, fam in fams.items():
        assert fam.documentation, name
        assert f"# HELP {name}" in text or f"# HELP {name}_total" in text
    assert fams["process_resident_memory_bytes"].samples[0].value > 0
    assert "process_cpu_seconds" in fams


def test_describe_overrides_the_table_and_a_bad_gauge_does_not_break_the_scrape():
    m = Metrics()
    m.describe("commits", "transactions, as the cloud counts them")
    m.inc("commits")
    m.set("broken", None)  # type: ignore[arg-type]
    m.set("fine", 2)
    fams = _families(m.render_prometheus())
    assert fams["fogline_commits"].documentation == "transactions, as the cloud counts them"
    assert fams["fogline_fine"].samples[0].value == 2.0
    assert fams["fogline_broken"].samples == []


def test_each_metrics_has_its_own_registry():
    a, b = Metrics(), Metrics()
    a.inc("acks_sent", 5)
    assert "fogline_acks_sent_total" in a.render_prometheus()
    assert "fogline_acks_sent" not in b.render_prometheus()
    assert a.registry is not b.registry


def test_snapshot_keeps_the_plain_names():
    m = Metrics()
    m.inc("readings_in", 4, lane="up")
    m.set("devices", 2)
    snap = json.loads(json.dumps(m.snapshot()))
    assert snap["counters"] == {"readings_in": [{"labels": {"lane": "up"}, "value": 4}]}
    assert snap["gauges"] == {"devices": [{"labels": {}, "value": 2}]}
    assert m.get("readings_in", lane="up") == 4 and m.total("readings_in") == 4


def test_http_endpoint_serves_metrics_status_and_healthz():
    async def main() -> None:
        m = Metrics()
        m.inc("messages_in", link="mqtt")
        srv = MetricsHTTP(m, "127.0.0.1", 0)
        await srv.start()
        try:
            def get(path: str) -> tuple[str, bytes]:
                with urllib.request.urlopen(f"http://127.0.0.1:{srv.port}{path}", timeout=10) as r:
                    return r.headers["Content-Type"], r.read()
            ctype, body = await asyncio.to_thread(get, "/metrics")
            assert ctype == "text/plain; version=0.0.4; charset=utf-8"
            assert "fogline_messages_in_total" in _families(body.decode())["fogline_messages_in"].samples[0].name
            ctype, body = await asyncio.to_thread(get, "/status.json")
            assert ctype == "application/json"
            assert json.loads(body)["counters"]["messages_in"] == [{"labels": {"link": "mqtt"}, "value": 1}]
            assert await asyncio.to_thread(get, "/healthz") == ("text/plain", b"ok\n")
            _, body = await asyncio.to_thread(get, "/metrics")  # the scrapes themselves are counted
            served = [s for s in _families(body.decode())["fogline_http_requests"].samples
                      if s.labels == {"path": "/metrics", "code": "200"}]
            assert served and served[0].value >= 1
        finally:
            await srv.stop()

    asyncio.run(main())
