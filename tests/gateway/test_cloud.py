"""Cloud link + relay against a real TLS + password mosquitto (test CA made here with `cryptography`)."""

from __future__ import annotations

import asyncio
import collections
import time

import cbor2
import pytest

from fogline.gateway.relay.bandwidth import BandwidthConfig, BandwidthPolicy
from fogline.gateway.relay.breaker import Breaker, BreakerConfig
from fogline.gateway.relay.cloud import CloudConfig, CloudLink, decode_cloud_message, envelope
from fogline.gateway.relay.outbox import LANES, Outbox, OutboxConfig
from fogline.gateway.relay.core import Relay
from tests.gateway.conftest import CLOUD_USERS
from harness.cloudkit import CloudSubscriber, make_pki, tls_cloud_broker

USERS = CLOUD_USERS


def link_cfg(port: int, pki, **kw) -> CloudConfig:
    base = dict(host="127.0.0.1", port=port, client_id="fogline-gw1", ca_file=str(pki.ca),
                username="gw1", password="gw-secret", reconnect_min_s=0.1, reconnect_max_s=0.5,
                ack_timeout_s=5.0)
    base.update(kw)
    return CloudConfig(**base)


def make_relay(tmp_path, port, pki, *, bw=None, name="ob", **kw) -> Relay:
    # High mode unless a test passes its own policy: a loaded machine's measured rate must not withhold lanes.
    ob = Outbox(OutboxConfig(path=str(tmp_path / f"{name}.sqlite"), synchronous="NORMAL"), "gw1")
    return Relay(ob, CloudLink(link_cfg(port, pki, **kw)), "site1",
                 bandwidth=BandwidthPolicy(bw or BandwidthConfig(initial_mode="high", linger_s=0.05, low_kbps=0.001,
                                                                  high_kbps=0.002)),
                 breaker=Breaker(BreakerConfig(backoff_s=0.2, backoff_max_s=1.0)))


async def wait_for(pred, timeout=60.0, step=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        await asyncio.sleep(step)
    return pred()


def test_config_refuses_plaintext_without_explicit_flag():
    with pytest.raises(ValueError, match="plaintext"):
        CloudConfig(tls=False).check()
    CloudConfig(tls=False, allow_plaintext=True).check()
    with pytest.raises(ValueError, match="cert_file"):
        CloudConfig(cert_file="a.pem").check()
    with pytest.raises(ValueError, match="unknown key"):
        CloudConfig.from_dict({"hots": "x"})


def test_envelope_splices_body_and_decodes():
    body = cbor2.dumps({"node": "n1", "v": 1.5})
    env = envelope("gw1", 42, "alert", 1000.25, body)
    (item,) = decode_cloud_message(env)
    assert item == {"k": "gw1:42", "gw": "gw1", "id": 42, "lane": "alert", "ts": 1000.25,
                    "body": {"node": "n1", "v": 1.5}}
    with pytest.raises(ValueError):
        decode_cloud_message(b"\xff\x00garbage")


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_tls_password_delivery_with_idempotency_keys(tmp_path, pki, cloud, protocol):
    sub = CloudSubscriber(cloud.port, pki, "cloud", USERS["cloud"]).start()

    async def main():
        relay = make_relay(tmp_path, cloud.port, pki, protocol=protocol)
        await relay.start()
        assert await relay.link.wait_connected(10)
        ids = [relay.submit(LANES[i % 4], {"i": i}) for i in range(40)]
        assert await wait_for(lambda: len(sub.keys()) >= 40), (len(sub.keys()), relay.stats())
        assert await wait_for(lambda: sum(d["rows"] for d in relay.outbox.depth().values()) == 0)
        await relay.stop()
        return ids, relay

    ids, relay = asyncio.run(main())
    sub.stop()
    items = sub.snapshot()
    assert sorted(i["k"] for i in items) == sorted(f"gw1:{i}" for i in ids)
    assert all(i["_topic"] == f"fogline/site1/{i['lane']}" for i in items)
    assert {i["body"]["i"] for i in items} == set(range(40))
    assert relay.outbox.depth()["alert"]["rows"] == 0 and sum(d["rows"] for d in relay.outbox.depth().values()) == 0
    assert relay.link.counters["acked"] >= 1


def test_wrong_password_and_untrusted_ca_never_connect(tmp_path, pki, cloud):
    other = make_pki(tmp_path / "other")

    async def main():
        bad_pw = CloudLink(link_cfg(cloud.port, pki, password="nope", client_id="bad1"))
        bad_ca = CloudLink(link_cfg(cloud.port, other, client_id="bad2"))
        await bad_pw.start()
        await bad_ca.start()
        ok = await bad_pw.wait_connected(1.5) or await bad_ca.wait_connected(0.5)
        fut = bad_pw.publish("fogline/site1/alert", b"x")
        await bad_pw.stop()
        await bad_ca.stop()
        return ok, fut, bad_pw.counters["connect_failures"] + bad_ca.counters["connect_failures"]

    ok, fut, fails = asyncio.run(main())
    assert not ok
    assert fut.exception() is not None
    assert fails >= 1


def test_client_certificate_auth(tmp_path, pki):
    b = tls_cloud_broker(tmp_path / "mtls", pki, USERS, require_cert=True).start()
    try:
        sub_ok = []

        async def main():
            with_cert = CloudLink(link_cfg(b.port, pki, cert_file=str(pki.client_cert), key_file=str(pki.client_key),
                                           client_id="c1"))
            without = CloudLink(link_cfg(b.port, pki, client_id="c2"))
            await with_cert.start()
            await without.start()
            sub_ok.append(await with_cert.wait_connected(10))
            sub_ok.append(await without.wait_connected(1.0))
            await with_cert.stop()
            await without.stop()

        asyncio.run(main())
        assert sub_ok == [True, False]
    finally:
        b.stop()


def _missing(sub, accepted, outage_ids):
    got = set(sub.keys())
    miss = collections.Counter((lane, "outage" if rid in outage_ids else "before")
                               for lane, ids in accepted.items() for rid in ids if f"gw1:{rid}" not in got)
    return f"{len(got)} keys at the cloud; missing by (lane, phase): {dict(miss)}"


def test_outage_under_load_delivers_all_in_lane_priority_dups_only_resends(tmp_path, pki, cloud):
    sub = CloudSubscriber(cloud.port, pki, "cloud", USERS["cloud"]).start()
    accepted: dict[str, list[int]] = collections.defaultdict(list)

    async def main():
        relay = make_relay(tmp_path, cloud.port, pki)
        await relay.start()
        assert await relay.link.wait_connected(10)
        # load before the outage
        for i in range(100):
            for lane in LANES:
                accepted[lane].append(relay.submit(lane, {"i": i, "phase": "before"}))
            if i % 10 == 0:
                await asyncio.sleep(0.005)
        await asyncio.to_thread(cloud.stop)
        assert await wait_for(lambda: not relay.link.connected.is_set(), 60)
        outage_ids = {}
        for i in range(150):  # accepted while the cloud is down
            for lane in reversed(LANES):  # submitted lowest priority first
                rid = relay.submit(lane, {"i": i, "phase": "outage"})
                accepted[lane].append(rid)
                outage_ids[rid] = lane
            await asyncio.sleep(0.002)
        assert await wait_for(lambda: relay.breaker.state != "closed", 60), relay.breaker.state
        await asyncio.to_thread(cloud.start)
        total = sum(len(v) for v in accepted.values())
        assert await wait_for(lambda: len(set(sub.keys())) >= total, 180), _missing(sub, accepted, outage_ids)
        assert await wait_for(lambda: sum(d["rows"] for d in relay.outbox.depth().values()) == 0)
        st = relay.stats()
        await relay.stop()
        return outage_ids, st

    outage_ids, st = asyncio.run(main())
    time.sleep(0.2)
    sub.stop()
    items = sub.snapshot()
    keys = [i["k"] for i in items]
    want = {f"gw1:{rid}" for ids in accepted.values() for rid in ids}
    assert None not in {rid for ids in accepted.values() for rid in ids}
    assert set(keys) == want  # nothing lost
    # At-least-once: a row whose PUBACK died with the broker is sent again under the SAME key with
    # the same content; the cloud de-duplicates by key. Only rows in flight at the cut may repeat,
    # and none of the rows accepted during the outage.
    by_key: dict[str, list] = collections.defaultdict(list)
    for i in items:
        by_key[i["k"]].append((i["lane"], i["body"]))
    dups = {k: v for k, v in by_key.items() if len(v) > 1}
    assert all(len(set(map(repr, v))) == 1 for v in dups.values()), "same key, different content"
    assert not any(int(k.split(":")[1]) in outage_ids for k in dups), "outage rows duplicated"
    # outage backlog arrives highest lane first
    seq = [LANES.index(i["lane"]) for i in items if i["id"] in outage_ids]
    assert seq == sorted(seq), "outage backlog not delivered in lane priority order"
    assert st["breaker"]["opened"] >= 1 and st["breaker"]["closed"] >= 1
    assert st["bandwidth"]["switches"] == 0


def test_gateway_attach_relays_node_alerts_and_windows(tmp_path, pki, cloud, mosquitto, capsys):
    """Real Gateway (site mosquitto) + relay_component.attach: a node alert and closed windows reach the TLS cloud."""
    import cbor2 as _cbor2
    import paho.mqtt.client as mqtt

    from fogline.gateway import config as gwconfig
    from fogline.gateway.app import Gateway
    from fogline.gateway.relay.component import attach
    from fogline.shared import senml, topics

    sub = CloudSubscriber(cloud.port, pki, "cloud", USERS["cloud"]).start()
    cfg = gwconfig.Config({
        "site": {"id": "site1", "gateway_id": "gw9", "data_dir": str(tmp_path / "data")},
        "mqtt": {"host": "127.0.0.1", "port": mosquitto.port},
        "aggregate": {"windows_s": [1.0], "watermark_s": 0.0},
        "cloud": {"enabled": True, "host": "127.0.0.1", "port": cloud.port, "ca_file": str(pki.ca),
                  "username": "gw1", "password": USERS["gw1"], "summary_windows_s": [1.0],
                  "bandwidth": {"initial_mode": "high"}},
        "twin": {"file": str(tmp_path / "twin.toml"), "poll_s": 0.2, "accept_cloud": True},
    })
    (tmp_path / "twin.toml").write_text("[all]\nversion = 2\n[nodes.n1]\n")

    async def main():
        gw = Gateway(cfg)
        comps = attach(gw)
        assert [type(c).__name__ for c in comps] == ["RelayComponent", "Twin"]
        await gw.start()
        assert await gw.wait_connected(10)
        assert await comps[0].relay.link.wait_connected(10)
        node = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="n1")
        node.connect("127.0.0.1", mosquitto.port)
        node.loop_start()
        now = time.time()
        for i in range(5):
            recs = [("temp", "Cel", 20.0 + i, now - 5 + i)]
            node.publish(topics.node("site1", "n1", "up"),
                         _cbor2.dumps([i + 1, senml.build_pack("n1/", now - 5 + i, recs)]), qos=1).wait_for_publish(5)
        alert = [("temp", "Cel", 85.5, now)]
        node.publish(topics.node("site1", "n1", "alert"),
                     _cbor2.dumps([1, senml.build_pack("n1/", now, alert)]), qos=1).wait_for_publish(5)
        ok = await wait_for(lambda: any(i["lane"] == "alert" for i in sub.snapshot())
                            and any(i["lane"] == "summary" for i in sub.snapshot()), 60)
        # a desired document from the cloud side replaces the file's
        twin = comps[1]
        sub.client.publish("fogline/site1/twin", _cbor2.dumps({"all": {"version": 7}, "nodes": {"n1": {}, "n2": {}}}),
                           qos=1).wait_for_publish(5)
        ok = ok and await wait_for(lambda: {r["node"]: r["desired"] for r in twin.report()} == {"n1": 7, "n2": 7}, 60)
        await asyncio.sleep(1.2)  # let the metrics export run once
        gauges = gw.metrics.snapshot()["gauges"]
        node.loop_stop()
        node.disconnect()
        await gw.stop()
        return ok, gauges

    ok, gauges = asyncio.run(main())
    sub.stop()
    assert ok
    from fogline.gateway.commands import status
    data = tmp_path / "data"
    status._print_relay(status.collect(data / "nonexistent.sqlite", data / "metrics.json"), data)
    out = capsys.readouterr().out
    assert "cloud: connected=" in out and "breaker=" in out and "mode=high" in out
    assert "twin: 0 in sync, 2 not" in out and "n1: pending desired=7" in out
    items = sub.snapshot()
    (al,) = [i for i in items if i["lane"] == "alert"]
    assert al["k"].startswith("gw9:") and al["body"]["node"] == "n1" and al["body"]["seq"] == 1
    assert al["body"]["records"] == [["temp", "Cel", 85.5, pytest.approx(al["body"]["records"][0][3])]]
    summ = [i["body"] for i in items if i["lane"] == "summary"]
    assert summ and all(s["node"] == "n1" and s["metric"] == "temp" for s in summ)
    assert "cloud_breaker_state" in gauges and "outbox_rows" in gauges and "cloud_mode" in gauges
