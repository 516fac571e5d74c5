"""Home Assistant MQTT discovery: payload fields against HA's schema, and the live component on mosquitto."""

from __future__ import annotations

import json
import threading

import paho.mqtt.client as mqtt
import pytest

from fogline.gateway.ops.discovery import HomeAssistantConfig, alert_config, device_info, sensor_config
from tests.gateway.ingest_helpers import SITE, GatewayThread, SimNode, gw_config, payload, wait_for

pytestmark = pytest.mark.timeout(60)

# Home Assistant's MQTT sensor / binary_sensor discovery keys (full names) we may use, and the units each
# sensor device class accepts (homeassistant.components.sensor.const.DEVICE_CLASS_UNITS, subset).
HA_SENSOR_KEYS = {"name", "unique_id", "object_id", "state_topic", "value_template", "unit_of_measurement",
                  "device_class", "state_class", "expire_after", "device", "availability_topic", "icon",
                  "force_update", "json_attributes_topic", "suggested_display_precision", "enabled_by_default"}
HA_BINARY_KEYS = {"name", "unique_id", "object_id", "state_topic", "payload_on", "payload_off", "device_class",
                  "device", "value_template", "expire_after", "off_delay"}
HA_DEVICE_KEYS = {"identifiers", "connections", "name", "manufacturer", "model", "sw_version", "hw_version",
                  "via_device", "suggested_area", "configuration_url"}
HA_UNITS = {"temperature": {"°C", "°F", "K"}, "humidity": {"%"}, "pressure": {"Pa", "hPa", "kPa", "bar", "cbar",
            "mbar", "mmHg", "inHg", "psi"}, "voltage": {"V", "mV"}, "battery": {"%"}, "illuminance": {"lx"},
            "signal_strength": {"dB", "dBm"}}
HA_STATE_CLASSES = {"measurement", "total", "total_increasing"}
CFG = HomeAssistantConfig(enabled=True)


@pytest.mark.parametrize("metric,unit,ha_unit,dclass", [
    ("temperature", "Cel", "°C", "temperature"),
    ("humidity", "%RH", "%", "humidity"),
    ("pressure", "hPa", "hPa", "pressure"),
    ("pressure", "Pa", "Pa", "pressure"),
    ("battery", "%", "%", "battery"),
    ("supply", "V", "V", "voltage"),
    ("rssi", "dBm", "dBm", "signal_strength"),
])
def test_sensor_payload_fields(metric, unit, ha_unit, dclass):
    dev = device_info("site1", "node7", board="pico_w", fw="0.3.0", gateway_id="gw1")
    topic, p = sensor_config(CFG, "site1", "node7", metric, unit, dev)
    assert topic == f"homeassistant/sensor/fogline_site1_node7/{metric}/config"
    assert set(p) <= HA_SENSOR_KEYS, set(p) - HA_SENSOR_KEYS
    assert p["unique_id"] == f"fogline_site1_node7_{metric}"
    assert p["state_topic"] == "homeassistant/fogline/site1/node7/state"
    assert p["unit_of_measurement"] == ha_unit
    assert p["device_class"] == dclass
    assert p["unit_of_measurement"] in HA_UNITS[dclass]
    assert p["state_class"] in HA_STATE_CLASSES
    assert metric in p["value_template"] and p["value_template"].startswith("{{ value_json")
    assert set(p["device"]) <= HA_DEVICE_KEYS
    assert p["device"]["identifiers"] == ["fogline_site1_node7"]
    assert p["device"]["model"] == "pico_w" and p["device"]["sw_version"] == "0.3.0"
    json.dumps(p)  # the payload is JSON


def test_unknown_unit_has_no_device_class_and_ids_are_unique():
    dev = device_info("s", "n1")
    _, p = sensor_config(CFG, "s", "n1", "flow", "l/s", dev)
    assert "device_class" not in p and p["unit_of_measurement"] == "l/s"
    ids = {sensor_config(CFG, "s", n, m, "Cel", dev)[1]["unique_id"] for n in ("n1", "n2") for m in ("a", "b")}
    assert len(ids) == 4
    with pytest.raises(ValueError):
        sensor_config(CFG, "s", "bad/node", "t", "Cel", dev)


def test_alert_payload_is_a_problem_binary_sensor():
    topic, p = alert_config(CFG, "s", "n1", "temp_high", device_info("s", "n1"))
    assert topic == "homeassistant/binary_sensor/fogline_s_n1/alert_temp_high/config"
    assert set(p) <= HA_BINARY_KEYS
    assert p["device_class"] == "problem" and p["payload_on"] == "ON" and p["payload_off"] == "OFF"
    assert p["unique_id"] == "fogline_s_n1_alert_temp_high"


def test_gateway_publishes_discovery_and_states(mosquitto, tmp_path):
    got: dict[str, bytes] = {}
    lock = threading.Lock()

    def on_msg(_c, _u, m):
        with lock:
            got[m.topic] = m.payload

    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    sub.on_message = on_msg
    sub.connect("127.0.0.1", mosquitto.port)
    sub.subscribe("homeassistant/#", 1)
    sub.loop_start()
    cfg = gw_config(tmp_path, mosquitto.port, homeassistant={"enabled": True, "state_interval_s": 0.0})
    node = SimNode(mosquitto.port, "n1")
    try:
        g = GatewayThread(cfg)
        from fogline.gateway import service_components
        notes = service_components.attach(g.gw, cfg)  # as `fogline gateway` does, before start
        assert notes["homeassistant"] == "on"
        with g:
            node.send("up", payload("n1", 1, [21.5, 21.75], metric="temperature"))
            node.send("alert", payload("n1", 1, [35.0], metric="temp_high"))
            assert wait_for(lambda: "homeassistant/fogline/site1/n1/alert/temp_high" in got and
                            "homeassistant/fogline/site1/n1/state" in got, 30), sorted(got)
    finally:
        node.close()
        sub.loop_stop()
        sub.disconnect()
    conf = json.loads(got["homeassistant/sensor/fogline_site1_n1/temperature/config"])
    assert conf["unique_id"] == "fogline_site1_n1_temperature" and conf["device_class"] == "temperature"
    assert json.loads(got["homeassistant/fogline/site1/n1/state"])["temperature"] == 21.75
    assert json.loads(got["homeassistant/binary_sensor/fogline_site1_n1/alert_temp_high/config"])["device_class"] \
        == "problem"
    assert got["homeassistant/fogline/site1/n1/alert/temp_high"] == b"ON"
    assert SITE == "site1"
