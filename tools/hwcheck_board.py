# On-board self-test of `fogline hwcheck` (tools/hwcheck.py sends it with `mpremote run`, ARGS prepended).
# Runs on the board against the deployed firmware in its filesystem; prints one `HWCHECK {json}` line.
import gc
import json
import os
import sys
import time

try:
    ARGS  # noqa: F821 (prepended by the host)
except NameError:
    ARGS = {"board": "pico_w", "broker": None, "crc_vector": None}

_R = []
_S = {}  # results handed from one check to the next


def check(name, fn):
    t0 = time.ticks_ms()
    try:
        ok, detail = fn()
    except Exception as e:  # a failing check is a row in the table, the others still run
        ok, detail = False, "%s: %s" % (type(e).__name__, e)
    _R.append({"name": name, "ok": ok, "detail": detail, "ms": time.ticks_diff(time.ticks_ms(), t0)})
    gc.collect()


def c_config():
    from firmware import app as A
    cfg = A.load_config("/config.json", "/boards", ARGS["board"])
    _S["cfg"] = cfg
    return True, "%s: %d sensors, node %s/%s" % (cfg["node"]["board"], len(cfg["sensors"]),
                                                  cfg["node"]["site"], cfg["node"]["id"])


def c_sensors():
    from firmware import app as A
    from firmware.hal import build_devices
    cfg = _S["cfg"]
    if not cfg["sensors"]:
        return False, "no sensors in the config"
    if A.SIM:  # a virtual board: simulated chips behind the same buses, as its main.py attaches them
        import scenario
        A.sim_attach(cfg, scenario.preset("normal", 1), A.Clock())
    devs = build_devices(cfg)
    got = []
    bad = []
    for s in cfg["sensors"]:
        d = devs[s["name"]]
        if d.measure():
            i = d.FIELDS.index(s.get("field", d.FIELDS[0]))
            got.append("%s=%s" % (s["name"], d.values[i]))
        else:
            bad.append("%s: %s" % (s["name"], d.last_error))
    return not bad, ", ".join(bad or got)


def _rm(path):
    try:
        for n in os.listdir(path):
            os.remove(path + "/" + n)
        os.rmdir(path)
    except OSError:
        pass


def c_flashlog():
    from firmware.flashlog import FlashLog
    from shared import cbor
    root = "/_hwcheck"
    _rm(root)
    log = FlashLog(root, capacity_bytes=8192, segment_bytes=1024, sync_every=1, sync_ms=0)
    bodies = [cbor.dumps([i, "hwcheck", None, i * 0.5]) for i in range(3)]
    for b in bodies:
        log.append("up", b, 0)
    log.flush()
    _S["log"] = (root, bodies)
    return log.durable_seq("up") == 3, "3 records appended and synced (seq %d)" % log.durable_seq("up")


def c_reopen():
    from firmware.flashlog import FlashLog
    from shared import frame
    root, bodies = _S["log"]
    seg = [n for n in os.listdir(root) if n.startswith("u")]
    with open(root + "/" + sorted(seg)[-1], "ab") as f:  # a power cut in the middle of a write
        f.write(frame.encode(b"torn by a power cut")[:9])
    log = FlashLog(root, capacity_bytes=8192, segment_bytes=1024, sync_every=1, sync_ms=0)
    got = [bytes(b) for _, b in log.pending("up", 10)]
    nxt = log.append("up", bodies[0], 0)
    log.flush()
    _rm(root)
    ok = got == bodies and nxt == 4
    return ok, "after a torn write: %d of 3 records back intact, next seq %d" % (sum(a == b for a, b in zip(got, bodies)), nxt)


def c_crc():
    from binascii import hexlify
    from shared import frame
    f = frame.encode(b"123456789")
    want = ARGS.get("crc_vector")
    if want and hexlify(f).decode() != want:
        return False, "frame %s, want %s" % (hexlify(f).decode(), want)
    bad = bytearray(f)
    bad[-1] ^= 1
    s = frame.Scanner(bad)
    for _ in s:
        pass
    return s.status == frame.CORRUPT, "CRC-32 vector matches, a flipped bit is refused"


def c_bthome():
    from firmware import bthome
    cfg = _S["cfg"]
    key = cfg["ble"]["bind_key"]
    ccm = bthome.CCM(bytes.fromhex(key)) if key else None
    vals = {"temperature": 21.5, "humidity": 45.0, "packet_id": 1}
    sd = bthome.service_data(bthome.encode_objects(vals), b"\xa4\xc1\x38\x00\x00\x01", ccm, 1)
    adv = bthome.advert(sd, cfg["node"]["id"])
    ok = len(adv) <= 31 and sd[0] == 0xD2 and sd[1] == 0xFC
    return ok, "%d-byte advert (%s)" % (len(adv), "encrypted" if ccm else "plain")


def c_mqtt():
    import asyncio
    from firmware.mqtt import MQTTClient
    from firmware.uplink import build_payload
    cfg = _S["cfg"]
    host, port = ARGS["broker"]
    if cfg["wifi"]["ssid"]:
        import network
        w = network.WLAN(network.STA_IF)
        w.active(True)
        if not w.isconnected():
            w.connect(cfg["wifi"]["ssid"], cfg["wifi"]["password"])
            t0 = time.ticks_ms()
            while not w.isconnected() and time.ticks_diff(time.ticks_ms(), t0) < 15000:
                time.sleep_ms(100)
        if not w.isconnected():
            return False, "Wi-Fi %r: not connected after 15 s" % cfg["wifi"]["ssid"]
    nid, site = cfg["node"]["id"], cfg["node"]["site"]
    c = MQTTClient(nid + "-hwcheck", host, port, keepalive_s=30, user=cfg["mqtt"].get("user"),
                   password=cfg["mqtt"].get("password"), connect_timeout_ms=5000)
    out = {}

    async def go():
        task = asyncio.create_task(c.run())
        try:
            if not await c.wait_connected(8000):
                out["why"] = "no CONNACK from %s:%d (%s)" % (host, port, c.last_error)
                return
            key = bytes.fromhex(cfg["auth_key"]) if cfg.get("auth_key") else None
            payload = build_payload(nid, "up", 1, [("hwcheck", None, 1.0, 0)], key)
            t0 = time.ticks_ms()
            pid = await c.publish("fogline/%s/%s/hwcheck" % (site, nid), payload, 1)
            out["acked"] = await c.wait_puback(pid, 5000)
            out["ms"] = time.ticks_diff(time.ticks_ms(), t0)
            out["bytes"] = len(payload)
            await c.disconnect()
        finally:
            task.cancel()

    asyncio.run(go())
    if "why" in out:
        return False, out["why"]
    return out["acked"], "%s:%d: %d-byte pack %s in %d ms" % (host, port, out["bytes"],
                                                           "acked (QoS 1)" if out["acked"] else "NOT acked", out["ms"])


check("config", c_config)
if "cfg" in _S:
    check("sensors", c_sensors)
check("flashlog append", c_flashlog)
if "log" in _S:
    check("flashlog reopen", c_reopen)
check("crc", c_crc)
if "cfg" in _S:
    check("bthome advert", c_bthome)
    if ARGS.get("broker"):
        check("mqtt pack", c_mqtt)
gc.collect()
try:
    st = os.statvfs("/")
    flash = {"flash_free": st[0] * st[3], "flash_total": st[0] * st[2]}
except (OSError, AttributeError):
    flash = {"flash_free": None, "flash_total": None}
info = {"platform": sys.platform, "version": ".".join(str(x) for x in sys.implementation.version[:3]),
        "word_bits": 32 if sys.maxsize < 2 ** 32 else 64, "float32": float(16777217) == 16777216.0,
        "heap_free": gc.mem_free(), "heap_used": gc.mem_alloc()}
info.update(flash)
print("HWCHECK " + json.dumps({"checks": _R, "board": info}))
