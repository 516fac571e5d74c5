"""The cloud query API (per-site tokens) and `fogline query` merging hot, warm and cold tiers."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections import Counter
from types import SimpleNamespace

import cbor2
import pytest
from cloudsvc_helpers import ServiceThread, reading_keys, service_config, wait_for

from fogline.tools.cli import main as cli
from fogline.gateway.relay.cloud import envelope
from fogline.gateway.store.core import Store
from fogline.gateway.store.tiers import maintain, mark_relayed
from fogline.gateway.ingest.validate import Message, Reading
from harness.cloudfeed import Publisher, alert_message, raw_message, summary_message

NOW = 1_800_000_000.0
TOKENS = {"s1": "tok-s1", "s2": "tok-s2"}


@pytest.fixture(params=["pg", "sqlite"])
def db(request, tmp_path):
    if request.param == "pg":
        return {"dsn": request.getfixturevalue("pg_dsn")}, None
    return {"data_dir": tmp_path / "cloud"}, tmp_path / "cloud" / "cloud.sqlite"


def _get(port: int, path: str, token: str | None = None) -> tuple[int, dict | str]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                 headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read().decode()
            return r.status, (json.loads(body) if r.headers["Content-Type"].startswith("application/json") else body)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_api_serves_each_site_only_to_its_token(db, cloud_broker):
    kw, sq = db
    svc = ServiceThread(service_config(cloud_broker.port, http=True, tokens=TOKENS, **kw)).start()
    pub = Publisher(cloud_broker.port)
    try:
        pub.publish("fogline/s1/raw", raw_message("gw1", 1, "n1", 1, 20))
        pub.publish("fogline/s2/raw", raw_message("gw2", 1, "n1", 1, 7))
        pub.publish("fogline/s1/alert", alert_message("gw1", 2, "n1", 1))
        pub.publish("fogline/s1/summary", summary_message("gw1", 3, "n1", 1_780_000_000.0, 20, 21.0))
        assert pub.drain()
        assert wait_for(lambda: len(reading_keys(kw.get("dsn", ""), sq)) == 28, timeout=60)
        assert wait_for(lambda: svc.metric("cloud_rows", kind="windows") == 1, timeout=60)
        port = svc.svc.http.port

        code, doc = _get(port, "/v1/readings?site=s1&node=n1&metric=temperature", TOKENS["s1"])
        assert code == 200 and len(doc["rows"]) == 21 and not doc["truncated"]  # 20 up + the alert reading
        cols = doc["columns"]
        assert Counter(r[cols.index("lane")] for r in doc["rows"]) == {"up": 20, "alert": 1}
        code, doc = _get(port, "/v1/readings?site=s1&since=1780000005&until=1780000010", TOKENS["s1"])
        assert code == 200 and sorted(r[cols.index("seq")] for r in doc["rows"] if r[3] == "up") == [5, 6, 7, 8, 9]
        code, doc = _get(port, "/v1/readings?site=s2", TOKENS["s2"])
        assert code == 200 and len(doc["rows"]) == 7
        code, doc = _get(port, "/v1/windows?site=s1", TOKENS["s1"])
        assert code == 200 and [r[doc["columns"].index("rev")] for r in doc["rows"]] == [20]
        code, doc = _get(port, "/v1/alerts?site=s1&node=n1", TOKENS["s1"])
        assert code == 200 and len(doc["rows"]) == 1 and doc["rows"][0][doc["columns"].index("gw")] == "gw1"

        # s2's token never reads s1, and no token or an unknown one reads nothing
        assert _get(port, "/v1/readings?site=s1", TOKENS["s2"])[0] == 403
        assert _get(port, "/v1/alerts?site=s1", TOKENS["s2"])[0] == 403
        assert _get(port, "/v1/readings?site=s1")[0] == 401
        assert _get(port, "/v1/readings?site=s1", "guess")[0] == 401
        assert _get(port, "/v1/readings", TOKENS["s1"])[0] == 400
        assert _get(port, "/v1/readings?site=s1&since=soon", TOKENS["s1"])[0] == 400
        assert _get(port, "/healthz")[0] == 200
        code, text = _get(port, "/metrics")
        assert code == 200 and 'fogline_cloud_rows_total{kind="readings"} 28.0' in text
        assert 'fogline_cloud_http_requests_total{code="403"' in text
    finally:
        pub.stop()
        svc.stop()


def _fill(s: Store, n: int, t0: float, first: int) -> None:
    rs = [Reading("n", "up", first + i, "temp", "Cel", first + i + 0.5, t0 + i * 60.0) for i in range(n)]
    s.commit_batch([Message("n", "up", first, rs)], now=NOW)


def test_fogline_query_spans_hot_warm_and_cold_each_point_once(db, cloud_broker, tmp_path, capsys):
    kw, sq = db
    # the gateway: seqs 1..300 three days ago (pruned after relay: only the cloud has them), 301..400
    # five hours ago (compressed blocks), 401..410 in the last ten minutes (raw rows)
    data = tmp_path / "gw"
    s = Store(data / "ingest.sqlite")
    tiers = SimpleNamespace(compress_after_s=3600.0, retention_s=86400.0)
    ingest = SimpleNamespace(dead_letter_max_rows=100)
    _fill(s, 300, NOW - 3 * 86400.0, 1)
    maintain(s, tiers, ingest, NOW)  # compressed back then, in blocks of their own
    _fill(s, 100, NOW - 5 * 3600.0, 301)
    _fill(s, 10, NOW - 600.0, 401)
    maintain(s, tiers, ingest, NOW)
    mark_relayed(s, "n", "temp", NOW - 2 * 86400.0)
    assert maintain(s, tiers, ingest, NOW)["pruned_blocks"] >= 1  # prune what the cloud has
    s.close()
    # the cloud got every reading the gateway forwarded (including those it still has)
    svc = ServiceThread(service_config(cloud_broker.port, http=True, tokens=TOKENS, **kw)).start()
    pub = Publisher(cloud_broker.port)
    try:
        times = [NOW - 3 * 86400.0 + i * 60.0 for i in range(300)] + [NOW - 5 * 3600.0 + i * 60.0 for i in range(100)]
        for first in range(1, 401, 50):
            recs = [["temp", "Cel", seq + 0.5, times[seq - 1]] for seq in range(first, first + 50)]
            body = cbor2.dumps({"node": "n", "lane": "up", "first_seq": first, "records": recs})
            pub.publish("fogline/s1/raw", envelope("gw1", first, "raw", NOW, body))
        assert pub.drain()
        assert wait_for(lambda: len(reading_keys(kw.get("dsn", ""), sq)) == 400, timeout=60)
        conf = tmp_path / "gateway.toml"
        conf.write_text(f'[site]\nid = "s1"\ndata_dir = "{data}"\n\n[cloud]\n'
                        f'query_url = "http://127.0.0.1:{svc.svc.http.port}"\nquery_token = "{TOKENS["s1"]}"\n')
        args = ["query", "--config", str(conf), "--node", "n", "--metric", "temp", "--since",
                str(NOW - 4 * 86400.0), "--until", str(NOW + 1), "--json"]
        assert cli(args) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["cloud_error"] is None and out["cloud_only"]
        pts = out["points"]
        assert len(pts) == 410 and len({p[0] for p in pts}) == 410  # every point once
        assert Counter(p[2] for p in pts) == {"cold": 300, "warm": 100, "hot": 10}
        assert [p[1] for p in pts] == [seq + 0.5 for seq in range(1, 411)]  # in time order, right values
        assert all(p[2] == "cold" for p in pts[:300]) and all(p[2] == "hot" for p in pts[400:])

        # another site's token: the cloud refuses, the local tiers still answer and the error is said
        conf.write_text(conf.read_text().replace(TOKENS["s1"], TOKENS["s2"]))
        assert cli(args) == 0
        cap = capsys.readouterr()
        out = json.loads(cap.out)
        assert len(out["points"]) == 110 and "403" in out["cloud_error"] and "403" in cap.err
    finally:
        pub.stop()
        svc.stop()


def test_a_taken_http_port_does_not_stop_ingest(cloud_broker, tmp_path):
    """Two consumers on one host with the same [cloud.http] port: the second serves no API but still ingests."""
    first = ServiceThread(service_config(cloud_broker.port, data_dir=tmp_path / "a", client_id="a", http=True,
                                         tokens=TOKENS)).start()
    port = first.svc.http.port
    cfg = service_config(cloud_broker.port, data_dir=tmp_path / "b", client_id="b", http=True, tokens=TOKENS)
    cfg.broker.shared = False  # this one sees every message
    cfg.http.port = port
    second = ServiceThread(cfg).start()
    pub = Publisher(cloud_broker.port)
    try:
        assert second.svc.http is None and second.metric("cloud_http_unavailable") == 1
        pub.publish("fogline/s1/raw", raw_message("gw1", 1, "n1", 1, 5))
        assert pub.drain()
        assert wait_for(lambda: len(reading_keys("", tmp_path / "b" / "cloud.sqlite")) == 5, timeout=60)
    finally:
        pub.stop()
        second.stop()
        first.stop()
