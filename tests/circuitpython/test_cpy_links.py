"""Links on the CircuitPython adapter: our asyncio MQTT client over socketpool (simulated over real sockets)
to a real mosquitto with a test-side acking gateway (paho), and BTHome adverts through _bleio checked by
bthome-ble. The links code (firmware/links.py, mqtt.py, uplink.py, remote_config.py, bthome.py) is the
MicroPython one, unchanged."""

from __future__ import annotations

import asyncio

import pytest
# Imported before the cpy fixture installs CircuitPython's shims: bthome-ble's import chain (habluetooth ->
# bleak's BlueZ backend -> dbus-fast annotations) fails when it first runs under them.
from bthome_ble import BTHomeBluetoothDeviceData

from tests.circuitpython.test_cpy_node import _cfg
from tests.mp_waits import until

pytestmark = pytest.mark.timeout(90)  # a hung socket must fail the test, not stall the suite


def _node(cpy, tmp_path, port, **over):
    temp = [22.0]
    chip = cpy.sim_sensors.BME280Sim(lambda: temp[0], lambda: 100500.0, lambda: 48.0, addr=0x77)
    cpy.simctl.attach_i2c(cpy.board.SCL, cpy.board.SDA, chip)
    from firmware import app as A
    cfg = _cfg(sample_ms=50, watchdog_ms=0, wifi={"ssid": "lab", "password": "pw"},
               mqtt={"host": "127.0.0.1", "port": port, "keepalive": 10, "user": None, "password": None},
               uplink={"linger_ms": 50, "ack_timeout_ms": 1000}, state_ms=500, **over)
    import network
    network.WLAN(network.STA_IF).connect("lab", "pw")  # what app.board_main does on a board
    (tmp_path / "config.json").write_text("{}")
    app = A.App(cfg, A.make_store(cfg, str(tmp_path / "log")))
    app.uplinks = A.build_links(app, str(tmp_path / "config.json"), mqtt=True, ble=False, ntp=False)
    return app, temp


def test_end_to_end_mqtt_over_socketpool_with_wifi_outage(cpy, tmp_path, mosquitto, monkeypatch):
    """Every kept reading and alert reaches the gateway in seq order across a Wi-Fi outage; acks empty the log."""
    from tests.node.gateway_stub import AckingGateway
    from firmware.cpy import network as cnet
    monkeypatch.setattr(cnet, "RETRY_S", 0.2)  # a board retries every 15 s; the test cannot wait that long
    app, temp = _node(cpy, tmp_path, mosquitto.port)
    from firmware.mqtt import MQTTClient
    assert isinstance(app.client, MQTTClient)
    gw = AckingGateway(mosquitto.port, site="s1")
    client = app.client

    async def weather():
        # Each step waits for what the one before must have caused, never for a fixed time.
        await until(lambda: client.connected and app.samples >= 10, 30000, "the first connection")
        temp[0] = 33.0  # hot -> alert lane
        await until(lambda: app.node.stats["alerts"] >= 1, 30000, "the hot alert")
        cpy.simctl.set_link(False)  # AP gone: sockets die, the node keeps sampling into flash
        down = app.samples
        await until(lambda: not client.connected and app.samples >= down + 10, 30000,
                    "the client dropping its connection while sampling goes on")
        temp[0] = 21.0
        cpy.simctl.set_link(True)
        up = app.samples
        await until(lambda: client.stats["connects"] >= 2 and app.samples >= up + 10, 30000,
                    "the reconnection after the outage")

    async def main():
        tasks = [asyncio.create_task(u.run()) for u in app.uplinks]
        w = asyncio.create_task(weather())
        try:
            while not w.done():
                await app.sampler(1)
            await w
            app.store.flush(app.clock.now_ms())
            await until(lambda: app.store.depth("up") == 0 and app.store.depth("alert") == 0, 60000,
                        "the gateway acking everything")
        finally:
            w.cancel()
            for t in tasks:
                t.cancel()
            await asyncio.gather(w, *tasks, return_exceptions=True)

    try:
        asyncio.run(main())
    finally:
        gw.stop()
    st = app.node.stats
    kept, alerts = st["kept"], st["alerts"]
    assert app.samples >= 30 and kept >= app.samples and alerts >= 2
    assert client.stats["connects"] >= 2, client.stats  # it really reconnected after the outage
    up = gw.got[("cp1", "up")]
    al = gw.got[("cp1", "alert")]
    assert sorted(up) == list(range(1, kept + 1)), (len(up), kept)
    assert sorted(al) == list(range(1, alerts + 1))
    assert al[1][0] == "cp1/hot" and al[1][2] == pytest.approx(33.0, abs=0.01)
    assert al[2][0] == "cp1/hot.clear"
    vals = [up[k][2] for k in sorted(up) if up[k][0] == "cp1/temperature"]
    assert min(vals) == pytest.approx(21.0, abs=0.6) and max(vals) == pytest.approx(33.0, abs=0.01)
    assert app.store.depth("up") == 0 and app.store.depth("alert") == 0
    assert gw.contig[("cp1", "up")] == kept
    assert any(s.get("board") == "adafruit_feather_esp32s3" for s in gw.states)  # remote_config's `state`
    segs = [p for p in (tmp_path / "log").iterdir() if p.name[0] in "ua"]
    assert sum(p.stat().st_size for p in segs) < 2048  # acked segments were deleted


def test_socketpool_stream_semantics(cpy, mosquitto):
    """open_connection over socketpool: CONNECT/CONNACK round trip with readinto; link down -> OSError."""
    from firmware.cpy import sockets
    from firmware.mqttpkt import connect_packet
    import network
    network.WLAN().connect("lab", "pw")

    async def go():
        r, w = await asyncio.wait_for_ms(asyncio.open_connection("127.0.0.1", mosquitto.port), 30000)
        assert isinstance(r, sockets.Stream)
        w.write(connect_packet("cpy-probe", 10, True, None, None, None))
        await w.drain()
        buf = bytearray(4)
        n = await asyncio.wait_for_ms(r.readinto(buf), 30000)
        assert n >= 2 and buf[0] == 0x20  # CONNACK
        cpy.simctl.set_link(False)
        with pytest.raises(OSError):
            await r.readinto(buf)
        await w.wait_closed()
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", mosquitto.port)

    asyncio.run(go())


@pytest.mark.parametrize("key", [None, "231d39c1d7cc1ab1aee224cd096db932"])
def test_bthome_adverts_through_bleio(cpy, tmp_path, key):
    """links.build's BTHome task advertises through _bleio; bthome-ble decodes (and decrypts via aesio)."""
    from tests.node.bthome_check import decode
    chip = cpy.sim_sensors.BME280Sim(lambda: 24.5, lambda: 100800.0, lambda: 52.25, addr=0x77)
    cpy.simctl.attach_i2c(cpy.board.SCL, cpy.board.SDA, chip)
    from firmware import app as A
    cfg = _cfg(ble={"enabled": True, "bind_key": key, "interval_ms": 100}, watchdog_ms=0)
    for s in cfg["sensors"]:
        s["filters"] = []
    cfg["sensors"].append({"name": "pressure", "driver": "bme280", "field": "pressure", "unit": "Pa",
                           "addr": 119, "filters": []})
    app = A.App(cfg, None)
    links = A.build_links(app, str(tmp_path / "c.json"), mqtt=False, ble=True, ntp=False)
    app.sample_once()

    async def adv():
        t = asyncio.create_task(links[0].run())
        await until(lambda: len(cpy._bleio.adapter.adverts) >= 2, 30000, "two adverts")
        t.cancel()

    asyncio.run(adv())
    ads = cpy._bleio.adapter.adverts
    assert len(ads) >= 2 and all(a[0] == pytest.approx(0.1) for a in ads)
    mac = app.advertiser.mac
    assert mac == bytes(reversed(cpy._bleio.adapter.address.address_bytes))
    parser = BTHomeBluetoothDeviceData(bindkey=bytes.fromhex(key) if key else None)
    vals = decode(ads[-1][1], mac, parser)
    assert vals["temperature"] == pytest.approx(24.5, abs=0.01)
    assert vals["humidity"] == pytest.approx(52.25, abs=0.01)
    assert vals["pressure"] == pytest.approx(1008.0, abs=0.02)
    assert parser.encryption_scheme.name == ("BTHOME_BINDKEY" if key else "NONE")


def test_sntp_over_socketpool_udp(cpy, monkeypatch):
    """firmware/timesync.py's non-blocking UDP exchange through the `socket` shim on socketpool."""
    import socket as host_socket
    import struct
    import sys
    import threading
    from firmware.cpy import sockets
    import network
    network.WLAN().connect("lab", "pw")
    srv = host_socket.socket(host_socket.AF_INET, host_socket.SOCK_DGRAM)
    srv.bind(("127.0.0.1", 0))
    srv.settimeout(60)  # generous deadlines: a loaded host is slow, not wrong; the answer ends the wait
    port = srv.getsockname()[1]
    epoch = 1_800_000_000

    def serve():
        try:
            req, addr = srv.recvfrom(64)
        except OSError:
            return
        rep = bytearray(48)
        rep[0] = 0x24  # version 4, mode 4 (server)
        rep[1] = 2
        rep[24:32] = req[40:48]  # origin = the client's transmit timestamp
        struct.pack_into("!II", rep, 40, epoch + 2208988800, 1 << 31)  # .5 s
        srv.sendto(bytes(rep), addr)

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    sockets.pool()  # the simulated socketpool binds the host's socket module before the swap below
    monkeypatch.setitem(sys.modules, "socket", sockets)  # what compat.install() registers on CircuitPython
    from firmware.timesync import TimeSync
    from tests.circuitpython.test_cpy_node import ManualClock
    ts = TimeSync(ManualClock(), "127.0.0.1", port=port, timeout_ms=30000)
    got = asyncio.run(ts.query())
    th.join(30)
    srv.close()
    assert got == (epoch, 500), (got, ts.last_error)
