"""Inference wired into the real gateway: node readings over mosquitto -> windows -> decisions -> outbox."""

from __future__ import annotations

import asyncio
import math
import time

import cbor2
import numpy as np

from fogline.gateway import config as gwconfig
from fogline.gateway.app import Gateway
from fogline.gateway.inference.core import outbox_sink
from fogline.gateway.relay.outbox import Outbox, OutboxConfig
from fogline.gateway.service_components import attach
from fogline.shared import senml, topics


async def _wait(pred, timeout: float) -> bool:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return True
        await asyncio.sleep(0.05)
    return False


def test_readings_become_scored_window_sets_in_the_outbox(tmp_path, mosquitto):
    import paho.mqtt.client as mqtt

    cfg = gwconfig.Config({
        "site": {"id": "site1", "gateway_id": "gw1", "data_dir": str(tmp_path / "data")},
        "mqtt": {"host": "127.0.0.1", "port": mosquitto.port},
        "aggregate": {"windows_s": [60.0], "watermark_s": 0.0},
        "inference": {"registry_dir": str(tmp_path / "models")},
    })
    ob = Outbox(OutboxConfig(path=str(tmp_path / "outbox.sqlite"), synchronous="NORMAL"), "gw1")
    rng = np.random.default_rng(5)

    async def main():
        gw = Gateway(cfg)
        notes = attach(gw, cfg)
        assert notes["inference"].startswith("on"), notes
        eng = gw.inference
        eng.sink = outbox_sink(ob)
        await gw.start()
        assert await gw.wait_connected(10)
        node = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="n1")
        node.connect("127.0.0.1", mosquitto.port)
        node.loop_start()
        t0 = math.floor(time.time() / 60) * 60 - 300  # five whole minutes in the past
        seq = 1
        for minute in range(5):
            recs = []
            for s in range(60):
                t = t0 + 60 * minute + s
                stuck = minute == 3  # the temperature sensor freezes for one minute
                recs += [("temperature", "Cel", 21.0 if stuck else round(21 + rng.normal(0, 0.07), 2), t),
                         ("humidity", "%RH", round(45 + rng.normal(0, 0.3), 2), t),
                         ("pressure", "hPa", round(1012 + rng.normal(0, 0.05), 2), t)]
            for i in range(0, len(recs), 60):
                chunk = recs[i:i + 60]
                node.publish(topics.node("site1", "n1", "up"),
                             cbor2.dumps([seq, senml.build_pack("n1/", chunk[0][3], chunk)]), qos=1).wait_for_publish(5)
                seq += len(chunk)
        # minutes 0-3 close when later readings arrive; minute 4 stays open (watermark) until shutdown
        ok = await _wait(lambda: eng.counters["sets_scored"] >= 4, 20)
        st = eng.stats()
        lanes = {ln: ob.pending(ln) for ln in ("summary", "anomaly", "raw")}
        node.loop_stop()
        node.disconnect()
        await gw.stop()
        return ok, st, lanes

    ok, st, lanes = asyncio.run(main())
    assert ok, st
    assert st["sets_scored"] == 4 and st["windows_in"] == 12 and st["windows_late"] == 0
    assert st["model"] == "fogline-anomaly@v1"
    assert st["anomaly"] >= 1, st  # the stuck minute
    assert sum(lanes.values()) == 4 and lanes["anomaly"] == st["anomaly"], lanes
    body = cbor2.loads(ob.peek("anomaly", 1, 1 << 20)[0].body)
    assert body["node"] == "n1" and body["windows"]["temperature"]["stddev"] == 0.0
    ob.close()


def test_gateway_says_at_start_when_the_scored_window_is_not_the_models(tmp_path, mosquitto, caplog):
    """[inference] window_s = 5 with the bundled 60 s model: loud at start (ERROR log, gauge), still running."""
    import logging

    cfg = gwconfig.Config({
        "site": {"id": "site1", "gateway_id": "gw1", "data_dir": str(tmp_path / "data")},
        "mqtt": {"host": "127.0.0.1", "port": mosquitto.port},
        "aggregate": {"windows_s": [5.0, 60.0]},
        "inference": {"registry_dir": str(tmp_path / "models"), "window_s": 5.0},
    })

    async def main():
        gw = Gateway(cfg)
        attach(gw, cfg)
        with caplog.at_level(logging.ERROR, logger="fogline.gateway.service_components"):
            await gw.start()
        try:
            return gw.metrics.get("inference_window_mismatch"), gw.inference.model is not None
        finally:
            await gw.stop()

    gauge, serving = asyncio.run(main())
    errors = [r.getMessage() for r in caplog.records if "model_window_mismatch" in r.getMessage()]
    assert len(errors) == 1 and "trained on 60 s windows" in errors[0], errors
    assert gauge == 1 and serving
