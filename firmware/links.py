"""Link wiring for the node: MQTT client, store-and-forward uplink, remote config, BTHome adverts.

    build(app, config_path, mqtt=True, ble=True, ntp=False) -> list of objects with `async run()`

Called by firmware.app (the composition root); each link gets the app's store,
config and hooks (app.on_alert wakes the uplink when an alert is kept,
app.apply_config / app.status serve remote config and `state`). ntp=True (boards)
adds the SNTP task that sets the app clock: record times are epoch seconds.
"""

import asyncio


class BleTask:
    """Advertises the latest filtered values as BTHome every ble.interval_ms."""

    def __init__(self, app, adv, interval_ms):
        self.app = app
        self.adv = adv
        self.interval_ms = interval_ms

    async def run(self):
        """Forever: advertise, sleep interval_ms."""
        while True:
            node = self.app.node
            readings = {}
            for c in node.channels:
                v = node.latest.get(c.name)
                if v is not None:
                    readings[c.name] = (c.unit, v)
            if readings:
                self.adv.update_readings(readings)
            await asyncio.sleep_ms(self.interval_ms)


def tls_context(m):
    """SSLContext for the broker link from mqtt cafile (+ certfile/keyfile), or None without cafile.

    The CA and the node's certificate are the ones `fogline provision --certs` writes (ca.crt,
    nodes/<node>.crt/.key). A port without `ssl` refuses to start rather than fall back to plaintext."""
    if not m.get("cafile"):
        return None
    try:
        import ssl
    except ImportError:
        raise ValueError("mqtt.cafile: this port has no ssl module (TLS needs ESP32, Pico W or the unix port)")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=_der(m["cafile"]))
    if m.get("certfile"):
        ctx.load_cert_chain(_der(m["certfile"]), _der(m["keyfile"]))
    return ctx


def _der(path):
    # mbedtls on MicroPython parses PEM only NUL-terminated: hand it the DER inside the armour.
    import binascii
    with open(path) as f:
        text = f.read()
    if "-----BEGIN" not in text:
        with open(path, "rb") as f:
            return f.read()
    body = "".join(ln for ln in text.splitlines() if ln and not ln.startswith("-----"))
    return binascii.a2b_base64(body)


def build(app, config_path="/config.json", mqtt=True, ble=True, ntp=False):
    """MQTT client + uplink + remote config, and the BTHome advertiser, as the config asks."""
    cfg = app.cfg
    site, nid = cfg["node"]["site"], cfg["node"]["id"]
    key = bytes.fromhex(cfg["auth_key"]) if cfg.get("auth_key") else None
    out = []
    if mqtt and app.store is not None:
        import network
        from shared import topics
        from firmware.mqtt import MQTTClient
        from firmware.uplink import Uplink
        from firmware.remote_config import RemoteConfig
        wlan = network.WLAN(network.STA_IF)
        if hasattr(network, "set_link") and not wlan.active():
            # host emulation has no board_main to bring the (simulated) Wi-Fi up
            wlan.active(True)
            wlan.connect(cfg["wifi"]["ssid"] or "sim", cfg["wifi"]["password"])
        m = cfg["mqtt"]
        u = cfg.get("uplink") or {}
        ckw = {}
        for k in ("backoff_min_ms", "backoff_max_ms"):
            if k in u:
                ckw[k] = u[k]
        client = MQTTClient(nid, m["host"], m["port"], keepalive_s=m["keepalive"], user=m["user"],
                            password=m["password"], link_up=wlan.isconnected, ssl=tls_context(m),
                            will=(topics.node(site, nid, "state"), b"\xa1\x66online\xf4", 1, False), **ckw)
        ukw = {}
        for k in ("min_pack", "max_pack", "window", "linger_ms", "ack_timeout_ms", "qos"):
            if k in u:
                ukw[k] = u[k]
        up = Uplink(client, app.store, site, nid, auth_key=key, **ukw)
        app.on_alert(up.kick)
        rc = RemoteConfig(client, cfg, config_path, apply=app.apply_config, status=app.status, key=key, fw=app.fw,
                          state_ms=cfg.get("state_ms", 60000))
        app.client = client
        app.uplink = up
        app.remote_config = rc
        from firmware.uplink import reconfigure  # cfg["uplink"] timings, live on pushes
        reconfigure(client, up, cfg)
        rc.on_applied.append(lambda c: reconfigure(client, up, c))
        rc.extra.append(up.state_fields)  # "oldest" pending seq per lane (gateway gap skip)
        out += [client, up, rc]
    if ble and cfg["ble"]["enabled"] and "ble" in cfg["hw"].get("radios", ()):
        import bluetooth
        from firmware.bthome import Advertiser
        ctr = None
        if cfg["ble"]["bind_key"] and app.store is not None and hasattr(app.store, "root"):
            from firmware.counter import ReservedCounter  # the encryption counter survives reboots
            ctr = ReservedCounter(app.store.root.rsplit("/", 1)[0] + "/bthome.ctr")
        adv = Advertiser(bluetooth.BLE(), cfg["ble"]["bind_key"], cfg["ble"]["interval_ms"], name=nid, counter=ctr)
        app.advertiser = adv
        out.append(BleTask(app, adv, cfg["ble"]["interval_ms"]))
    if ntp and cfg["ntp"]["enabled"] and "wifi" in cfg["hw"].get("radios", ()):
        import network
        from firmware.timesync import TimeSync
        n = cfg["ntp"]
        ts = TimeSync(app.clock, n["host"], interval_s=n["interval_s"],
                      link_up=network.WLAN(network.STA_IF).isconnected)
        app.timesync = ts
        out.append(ts)
    return out
