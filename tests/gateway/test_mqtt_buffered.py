"""BufferedClient (fogline.gateway.ingest.mqtt) on a real mosquitto: each message once, in order, none left buffered."""

from __future__ import annotations

import threading
import time

import paho.mqtt.client as mqtt

from fogline.gateway.ingest.mqtt import BufferedClient

SIZES = [0, 1, 5, 127, 128, 16383, 16384, 70000, 200000, 3]  # 1..3 length bytes, bodies across 64 KiB chunks


def _subscriber(port: int, got: list[tuple[str, bytes]], ready: threading.Event, cid: str = "",
                clean: bool = True) -> BufferedClient:
    c = BufferedClient(mqtt.CallbackAPIVersion.VERSION2, client_id=cid or f"buf-{time.monotonic_ns()}",
                       clean_session=clean)
    c.on_message = lambda cl, u, m: got.append((m.topic, m.payload))
    c.on_subscribe = lambda *a: ready.set()
    c.on_connect = lambda cl, *a: cl.subscribe("t/#", 1)
    c.connect("127.0.0.1", port)
    c.loop_start()
    assert ready.wait(10)
    return c


def _wait(cond, s: float = 20.0) -> bool:
    deadline = time.monotonic() + s
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.01)
    return cond()


def test_every_message_arrives_once_in_order_whatever_its_size_and_with_no_traffic_after_it(mosquitto):
    got: list[tuple[str, bytes]] = []
    first = _subscriber(mosquitto.port, got, threading.Event(), "buf-sub", clean=False)
    first.disconnect()
    first.loop_stop()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="buf-pub")
    pub.max_inflight_messages_set(1000)
    pub.connect("127.0.0.1", mosquitto.port)
    pub.loop_start()
    # queued for the persistent session (under mosquitto's 1,000 a client), then drained: the broker sends
    # a window of them at once, so many packets share a chunk, and the last ones arrive with no socket
    # traffic after them
    sent = [(f"t/{i % 7}", bytes([i % 251]) * SIZES[i % len(SIZES)]) for i in range(700)]
    sent += [(f"t/tail{i}", b"%d" % i) for i in range(200)]
    for i in [pub.publish(t, p, qos=1) for t, p in sent]:
        i.wait_for_publish(30)
    pub.loop_stop()
    pub.disconnect()
    sub = _subscriber(mosquitto.port, got, threading.Event(), "buf-sub", clean=False)
    try:
        assert _wait(lambda: len(got) >= len(sent)), f"{len(got)} of {len(sent)} delivered"
        time.sleep(0.2)
        assert got == sent
        # its own publishes go out (and come back through its subscription)
        sub.publish("t/back", b"x", qos=1).wait_for_publish(10)
        assert _wait(lambda: got[-1] == ("t/back", b"x"))
    finally:
        sub.loop_stop()
        sub.disconnect()


def test_after_a_broker_restart_the_new_connection_gets_only_new_messages_once(mosquitto):
    got: list[tuple[str, bytes]] = []
    ready = threading.Event()
    sub = _subscriber(mosquitto.port, got, ready)
    sub.reconnect_delay_set(0.05, 0.2)
    left: list[int] = []  # bytes still buffered when the connection closed (the next one must not see them)
    sub.on_disconnect = lambda c, *a: left.append(len(c._rbuf) - c._rpos)
    try:
        ready.clear()
        mosquitto.restart()
        assert ready.wait(20), "never re-subscribed"
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="buf-pub2")
        pub.connect("127.0.0.1", mosquitto.port)
        pub.loop_start()
        for i in range(50):
            pub.publish("t/new", b"fresh%d" % i, qos=1).wait_for_publish(10)
        pub.loop_stop()
        pub.disconnect()
        assert _wait(lambda: len(got) >= 50)
        time.sleep(0.2)
        assert got == [("t/new", b"fresh%d" % i) for i in range(50)] and left and not any(left)
    finally:
        sub.loop_stop()
        sub.disconnect()


def test_per_topic_callbacks_still_get_their_messages_and_on_message_the_rest(mosquitto):
    got: list[tuple[str, bytes]] = []
    special: list[bytes] = []
    sub = _subscriber(mosquitto.port, got, threading.Event())
    sub.message_callback_add("t/special/#", lambda c, u, m: special.append(m.payload))
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="buf-pub3")
    pub.connect("127.0.0.1", mosquitto.port)
    pub.loop_start()
    try:
        for i in range(20):
            pub.publish("t/special/x" if i % 4 == 0 else "t/plain", b"%d" % i, qos=1).wait_for_publish(10)
        assert _wait(lambda: len(got) + len(special) >= 20)
        time.sleep(0.2)
        assert special == [b"%d" % i for i in range(0, 20, 4)]
        assert got == [("t/plain", b"%d" % i) for i in range(20) if i % 4]
    finally:
        pub.loop_stop()
        pub.disconnect()
        sub.loop_stop()
        sub.disconnect()
