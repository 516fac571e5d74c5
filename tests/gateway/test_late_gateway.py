"""The real Gateway (site mosquitto, TLS cloud mosquitto, relay): late readings reach the cloud as higher
revisions of the same window key, in memory within the lateness and re-opened from the store beyond it;
`fogline status` shows the correction bytes apart."""

from __future__ import annotations

import asyncio
import math
import statistics
import time

import cbor2
import paho.mqtt.client as mqtt

from fogline.gateway import config as gwconfig
from fogline.gateway.app import Gateway
from fogline.gateway.commands import status
from fogline.gateway.relay.component import attach
from fogline.shared import senml, summary, topics
from tests.gateway.conftest import CLOUD_USERS
from harness.cloudkit import CloudSubscriber


async def _wait(pred, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        await asyncio.sleep(0.05)
    return pred()


def test_late_readings_become_corrections_in_the_cloud(tmp_path, pki, cloud, mosquitto, capsys):
    sub = CloudSubscriber(cloud.port, pki, "cloud", CLOUD_USERS["cloud"]).start()
    data = tmp_path / "data"
    cfg = gwconfig.Config({
        "site": {"id": "site1", "gateway_id": "gw1", "data_dir": str(data)},
        "mqtt": {"host": "127.0.0.1", "port": mosquitto.port},
        "aggregate": {"windows_s": [10.0], "watermark_s": 0.0, "idle_close_s": 1000.0, "allowed_lateness_s": [600.0]},
        "inference": {"enabled": False},
        "metrics": {"snapshot_s": 0.2},
        "cloud": {"enabled": True, "host": "127.0.0.1", "port": cloud.port, "ca_file": str(pki.ca),
                  "username": "gw1", "password": CLOUD_USERS["gw1"], "summary_windows_s": [10.0],
                  "health_every_s": 0, "bandwidth": {"initial_mode": "high"}},
    })
    base = math.floor((time.time() - 3000) / 10) * 10
    key = ("n1", "temp", 10.0, float(base))
    sent: list[float] = []

    def latest():
        return sub.latest.get(key)

    async def main():
        gw = Gateway(cfg)
        comps = attach(gw)
        await gw.start()
        assert await gw.wait_connected(10) and await comps[0].relay.link.wait_connected(10)
        node = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="n1")
        node.connect("127.0.0.1", mosquitto.port)
        node.loop_start()
        seq = 0

        def send(t: float, v: float) -> None:
            nonlocal seq
            seq += 1
            if base <= t < base + 10:
                sent.append(v)
            pack = senml.build_pack("n1/", t, [("temp", "Cel", v, t)])
            node.publish(topics.node("site1", "n1", "up"), cbor2.dumps([seq, pack]), qos=1).wait_for_publish(5)

        for i in range(5):
            send(base + i, 20.0 + i)
        send(base + 15, 30.0)                     # the watermark passes [base, base+10): it fires, rev 5
        assert await _wait(lambda: latest() is not None and latest()["rev"] == 5)
        send(base + 3.5, 40.0)                    # late, within the lateness: corrected in memory
        assert await _wait(lambda: latest()["rev"] == 6)
        send(base + 700, 31.0)                    # the watermark moves past end + 600 s: dropped from memory
        await asyncio.sleep(0.5)
        send(base + 5.5, 10.0)                    # later still: re-opened from the store
        assert await _wait(lambda: latest()["rev"] == 7)
        await asyncio.sleep(1.5)                  # a metrics export and snapshot
        m = gw.metrics.snapshot()
        node.loop_stop()
        node.disconnect()
        await gw.stop()
        return m

    m = asyncio.run(main())
    sub.stop()
    w = latest()
    assert (w["count"], w["min"], w["max"], w["corr"]) == (7, 10.0, 40.0, 1)
    assert math.isclose(w["mean"], statistics.fmean(sent), rel_tol=1e-12)
    revs = sorted(summary.revision(i["body"]) for i in sub.snapshot()
                  if i["lane"] == "summary" and summary.body_key(i["body"]) == key)
    assert revs == [5, 6, 7]
    assert sum(r["value"] for r in m["counters"]["windows_reopened"]) >= 1
    status._print_late(status.collect(data / "ingest.sqlite", data / "metrics.json"))
    out = capsys.readouterr().out
    assert "late data: late readings 2, window corrections 2, re-opened from the store 1" in out, out
    corr_bytes = int(out.split("upstream correction bytes ")[1].split()[0])
    assert corr_bytes > 0 and "(2 items)" in out
