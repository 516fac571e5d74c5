import paho.mqtt.client as mqtt


def test_mosquitto_fixture_relays_a_message(mosquitto):
    got = []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.on_message = lambda _c, _u, m: got.append(m.payload)
    c.connect("127.0.0.1", mosquitto.port)
    c.subscribe("t/x", qos=1)
    c.loop_start()
    import time
    time.sleep(0.2)
    c.publish("t/x", b"hello", qos=1).wait_for_publish(5)
    for _ in range(100):
        if got:
            break
        time.sleep(0.02)
    c.loop_stop()
    c.disconnect()
    assert got == [b"hello"]
