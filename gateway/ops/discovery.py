"""Home Assistant MQTT discovery: every node's sensors and alerts appear in Home Assistant without YAML.

For each (node, metric) the gateway has stored, it publishes (retained) a sensor config on
`<prefix>/sensor/fogline_<site>_<node>/<metric>/config`; node values go as one JSON object per node
on `<state_root>/<site>/<node>/state` (Home Assistant cannot read CBOR), read with a value_template.
The default state_root sits under the discovery prefix, which the provisioned mosquitto ACL lets the
gateway write (topics there that do not end in /config are not discovery messages).
Each alert rule becomes a binary_sensor (device_class problem) switched ON by the rule's alert and
OFF by its `.clear` record. BTHome adverts need nothing: Home Assistant decodes BTHome natively.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from fogline.shared import topics

log = logging.getLogger(__name__)

# SenML unit -> (Home Assistant unit_of_measurement, device_class)
UNITS: dict[str, tuple[str | None, str | None]] = {
    "Cel": ("°C", "temperature"), "K": ("K", "temperature"), "%RH": ("%", "humidity"),
    "Pa": ("Pa", "pressure"), "hPa": ("hPa", "pressure"), "kPa": ("kPa", "pressure"), "bar": ("bar", "pressure"),
    "V": ("V", "voltage"), "mV": ("mV", "voltage"), "A": ("A", "current"), "mA": ("mA", "current"),
    "W": ("W", "power"), "Wh": ("Wh", "energy"), "lx": ("lx", "illuminance"), "dBm": ("dBm", "signal_strength"),
    "ppm": ("ppm", "carbon_dioxide"), "ug/m3": ("µg/m³", "pm25"), "Hz": ("Hz", "frequency"),
    "%": ("%", None), "m/s2": ("m/s²", None), "s": ("s", "duration"), "m": ("m", "distance"),
}
# metric names that pin a device class when the unit alone is ambiguous
NAMED_CLASSES = {"battery": "battery", "rssi": "signal_strength", "co2": "carbon_dioxide", "moisture": "moisture"}


@dataclass
class HomeAssistantConfig:
    """[homeassistant] MQTT discovery on the site broker."""
    enabled: bool = False              # publish discovery configs and JSON states
    discovery_prefix: str = "homeassistant"  # Home Assistant's discovery prefix
    state_root: str = "homeassistant/fogline"  # JSON states: <state_root>/<site>/<node>/state (under the
                                      # discovery prefix, where `fogline provision`'s ACL lets the gateway write)
    state_interval_s: float = 5.0      # at most one state message per node this often
    expire_after_s: int = 600          # Home Assistant marks a value unavailable after this long


def _slug(s: str) -> str:
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in s)


def device_info(site: str, node: str, board: str | None = None, fw: str | None = None,
                gateway_id: str | None = None) -> dict[str, Any]:
    """The `device` block shared by a node's entities (groups them on one device page)."""
    d: dict[str, Any] = {"identifiers": [f"fogline_{site}_{node}"], "name": f"Fogline {node}",
                         "manufacturer": "Fogline", "model": board or "sensor node"}
    if fw:
        d["sw_version"] = str(fw)
    if gateway_id:
        d["via_device"] = f"fogline_{site}_gateway_{gateway_id}"
    return d


def state_topic(cfg: HomeAssistantConfig, site: str, node: str) -> str:
    return f"{cfg.state_root}/{site}/{node}/state"


def sensor_config(cfg: HomeAssistantConfig, site: str, node: str, metric: str, unit: str | None,
                  device: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(discovery topic, config payload) of one numeric sensor."""
    topics.check_id(site, "site")
    topics.check_id(node, "node")
    ha_unit, dclass = UNITS.get(unit or "", (unit, None))
    dclass = NAMED_CLASSES.get(metric, dclass)
    uid = f"fogline_{site}_{node}_{_slug(metric)}"
    payload: dict[str, Any] = {
        "name": metric.replace("_", " "),
        "unique_id": uid,
        "object_id": uid,
        "state_topic": state_topic(cfg, site, node),
        "value_template": "{{ value_json['%s'] }}" % metric,
        "state_class": "measurement",
        "expire_after": cfg.expire_after_s,
        "device": device,
    }
    if ha_unit:
        payload["unit_of_measurement"] = ha_unit
    if dclass:
        payload["device_class"] = dclass
    return f"{cfg.discovery_prefix}/sensor/fogline_{site}_{node}/{_slug(metric)}/config", payload


def alert_config(cfg: HomeAssistantConfig, site: str, node: str, rule: str,
                 device: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(discovery topic, config payload) of one alert rule as a problem binary_sensor."""
    uid = f"fogline_{site}_{node}_alert_{_slug(rule)}"
    return (f"{cfg.discovery_prefix}/binary_sensor/fogline_{site}_{node}/alert_{_slug(rule)}/config", {
        "name": f"alert {rule}",
        "unique_id": uid,
        "object_id": uid,
        "state_topic": f"{cfg.state_root}/{site}/{node}/alert/{_slug(rule)}",
        "payload_on": "ON",
        "payload_off": "OFF",
        "device_class": "problem",
        "device": device,
    })


class Discovery:
    name = "homeassistant"
    """Gateway component: announces entities as data arrives and keeps their states fresh."""

    def __init__(self, cfg: HomeAssistantConfig | None = None):
        self.cfg = cfg or HomeAssistantConfig()
        self.gw: Any = None
        self.announced: set[tuple[str, str]] = set()
        self.latest: dict[str, dict[str, float]] = {}
        self.last_sent: dict[str, float] = {}
        self.devices: dict[str, dict[str, Any]] = {}
        self.counters = {"configs": 0, "states": 0, "alerts": 0, "errors": 0}

    async def start(self, gw: Any) -> None:
        self.gw = gw
        gw.on_readings(self._on_readings)
        gw.on_alert(self._on_alert)
        gw.on_state(self._on_state)

    async def stop(self) -> None:
        pass

    def _device(self, node: str) -> dict[str, Any]:
        d = self.devices.get(node)
        if d is None:
            d = self.devices[node] = device_info(self.gw.site, node, gateway_id=self._gateway_id())
        return d

    def _gateway_id(self) -> str | None:
        try:
            return self.gw.config.site.gateway_id
        except AttributeError:
            return None

    def _on_state(self, node: str, state: dict[str, Any], _device: Any = None) -> None:
        d = self._device(node)
        for key, field in (("board", "model"), ("fw", "sw_version")):
            v = state.get(key)
            if v and isinstance(v, (str, int, float)):  # untrusted: plain and short, never formatted whole
                d[field] = str(v)[:64]

    async def _publish(self, topic: str, payload: dict[str, Any] | str, retain: bool) -> None:
        data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
        try:
            await self.gw.publish(topic, data.encode(), qos=1, retain=retain)
        except Exception as e:  # the broker may be away: the next batch tries again
            self.counters["errors"] += 1
            log.warning("event=ha_publish_failed topic=%s error=%s", topic, e)

    async def _on_readings(self, readings: list[Any]) -> None:
        touched: set[str] = set()
        for r in readings:
            if r.lane != "up":
                continue
            key = (r.node, r.metric)
            if key not in self.announced:
                self.announced.add(key)
                topic, payload = sensor_config(self.cfg, self.gw.site, r.node, r.metric, r.unit, self._device(r.node))
                await self._publish(topic, payload, retain=True)
                self.counters["configs"] += 1
            self.latest.setdefault(r.node, {})[r.metric] = r.value
            touched.add(r.node)
        now = time.monotonic()
        for node in touched:
            if now - self.last_sent.get(node, -1e9) >= self.cfg.state_interval_s:
                self.last_sent[node] = now
                await self._publish(state_topic(self.cfg, self.gw.site, node), self.latest[node], retain=False)
                self.counters["states"] += 1

    async def _on_alert(self, r: Any) -> None:
        rule, on = (r.metric[:-6], "OFF") if r.metric.endswith(".clear") else (r.metric, "ON")
        key = (r.node, "alert:" + rule)
        if key not in self.announced:
            self.announced.add(key)
            topic, payload = alert_config(self.cfg, self.gw.site, r.node, rule, self._device(r.node))
            await self._publish(topic, payload, retain=True)
            self.counters["configs"] += 1
        await self._publish(f"{self.cfg.state_root}/{self.gw.site}/{r.node}/alert/{_slug(rule)}", on, retain=True)
        self.counters["alerts"] += 1
