"""Worker-mode MQTT ingest holds a bounded number of payload bytes when the gateway's loop falls behind."""

from __future__ import annotations

import asyncio
import threading
import time

import paho.mqtt.client as mqtt

from fogline.gateway import config as config_mod
from fogline.gateway.ops.metrics import Metrics
from fogline.gateway.ingest.worker import MqttWorkerIngest

N, SIZE, BOUND = 300, 8192, 256 * 1024


def _wait(pred, timeout: float = 60.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return bool(pred())


def test_a_stalled_loop_backs_up_into_the_broker_not_into_memory(mosquitto):
    cfg = config_mod.from_dict({"site": {"id": "s1"}, "mqtt": {"port": mosquitto.port, "client_id": "w-mem"}})
    loop = asyncio.new_event_loop()
    t = threading.Thread(target=loop.run_forever, daemon=True)
    t.start()
    release = threading.Event()
    got: list[bytes] = []

    def deliver(items):  # the first batch stalls the loop, as a long commit would
        release.wait(120)
        got.extend(p for _t, p, _rx in items)

    metrics = Metrics()
    ing = MqttWorkerIngest(cfg, loop, deliver, metrics, queue_max=100000, queue_max_bytes=BOUND)
    ing.start()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="w-mem-pub")
    try:
        assert ing.connected.wait(30)
        pub.connect("127.0.0.1", mosquitto.port)
        pub.loop_start()
        for i in range(N):
            pub.publish("fogline/s1/n1/up", i.to_bytes(4, "big") + bytes(SIZE - 4), qos=1).wait_for_publish(30)
        assert _wait(lambda: metrics.get("ingest_backpressure_waits") >= 1), "the reader never waited"
        time.sleep(1.0)  # more time to over-read, if it would
        assert ing.held_peak <= 2 * BOUND + SIZE, ing.held_peak
        assert ing.pending() * SIZE <= 2 * BOUND + SIZE, ing.pending()  # before: every message scheduled
        release.set()
        assert _wait(lambda: len(got) == N), len(got)
        assert [int.from_bytes(p[:4], "big") for p in got] == list(range(N))  # nothing lost, in order
    finally:
        release.set()
        pub.loop_stop()
        pub.disconnect()
        asyncio.run_coroutine_threadsafe(ing.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        t.join(10)
