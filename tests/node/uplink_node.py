# MicroPython harness: counter "sensor" -> FlashLog (LittleFS on a sim flash device) -> Uplink -> MQTT.
# usage: micropython uplink_node.py PORT N PERIOD_MS CONTROL_FILE [KEY=VALUE ...]
# Reading i (seq i in lane "up") has value i * 0.25 and time T0 + i; every 40th reading also appends
# an alert (value i); bad_every=K / badtime_every=K make every K-th record unreadable / dated 3 years
# ahead. The control file, polled every 50 ms, holds "wifi 0" / "wifi 1".
# offset=K shifts values and times by K readings; keep=1 mounts the flash image as it is (a reboot)
# instead of formatting it, so seqs continue after the ones already in the log. key=HEX signs packs and
# takes only acks signed with it; cafile=PATH connects over TLS checking the broker against that CA.
# Prints "STAT {json}" every 250 ms and "DONE {json}" when everything produced was acked.
import sys
import json
import asyncio
import os
import gc
import time
from time import ticks_ms, ticks_diff

import network
import flashdev
from shared import cbor
from firmware.flashlog import FlashLog
from firmware.mqtt import MQTTClient
from firmware.uplink import Uplink

T0 = 1764150000
port, n, period, ctl = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
opts = {}
for a in sys.argv[5:]:
    k, v = a.split("=")
    opts[k] = v if k in ("key", "cafile") else int(v)

dev = flashdev.FlashDev(256, path=ctl + ".img")  # 1 MiB, 4 KiB blocks, host-file-backed
flashdev.mount(dev, "/flash", format=not opts.get("keep"))
log = FlashLog("/flash/log", capacity_bytes=opts.get("capacity", 512 * 1024), segment_bytes=4096,
               sync_every=opts.get("sync_every", 8), sync_ms=100)
wlan = network.WLAN(network.STA_IF)
wlan.active(True)
wlan.connect("sim")
tls = None
if "cafile" in opts:
    from firmware.links import tls_context
    d = opts["cafile"].rsplit("/", 1)[0]
    tls = tls_context({"cafile": opts["cafile"], "certfile": d + "/nodes/node1.crt", "keyfile": d + "/nodes/node1.key"})
client = MQTTClient("node1", "127.0.0.1", port, keepalive_s=opts.get("keepalive", 2), ssl=tls,
                    server_hostname="localhost",  # the broker certificate's name (provision --certs)
                    backoff_min_ms=100, backoff_max_ms=800, connect_timeout_ms=1000,
                    retry_ms=1000, link_up=wlan.isconnected,
                    will=("fogline/s1/node1/state", b"\xa1\x66online\xf4", 1, False))
seq0 = log.last_seq("up")  # seqs already in the log (keep=1)
alerts0 = log.last_seq("alert")
off = opts.get("offset", 0)
up = Uplink(client, log, "s1", "node1", auth_key=bytes.fromhex(opts["key"]) if "key" in opts else None, min_pack=opts.get("min_pack", 10),
            max_pack=opts.get("max_pack", 50), window=opts.get("window", 4), linger_ms=200,
            ack_timeout_ms=opts.get("ack_timeout", 800))
bad_every = opts.get("bad_every", 0) or n + 1        # every k-th record unreadable when read back
badtime_every = opts.get("badtime_every", 0) or n + 1  # every k-th record stamped 3 years ahead
state = {"produced": 0, "alerts": alerts0, "peak_bytes": 0, "max_gap_ms": 0}


async def producer():
    last = ticks_ms()
    for i in range(1, n + 1):
        now = ticks_ms()
        # How late the sensing loop runs shows whether it ever waited on the uplink.
        gap = ticks_diff(now, last)
        if gap > state["max_gap_ms"]:
            state["max_gap_ms"] = gap
        last = now
        t = T0 + off + i if i % badtime_every else T0 + i + 100000000
        body = cbor.dumps([t, "temp", "Cel", (off + i) * 0.25])
        if i % bad_every == 0:
            body = b"\x84\xff" + body  # intact on flash (CRC) but not a record: sent as the placeholder
        seq = log.append("up", body, now)
        if seq != seq0 + i:
            raise RuntimeError("seq %d != %d" % (seq, seq0 + i))
        if i % 40 == 0:
            # with stamp=1 an alert carries its wall-clock creation time (latency benchmark)
            t = time.time_ns() / 1e9 if opts.get("stamp") else T0 + off + i
            log.append("alert", cbor.dumps([t, "temp_high", None, off + i]), now)
            state["alerts"] += 1
            up.kick()
        state["produced"] = i
        await asyncio.sleep_ms(period)
    log.flush(ticks_ms())


async def control():
    while True:
        log.poll(ticks_ms())
        try:
            with open(ctl) as f:
                want = f.read().strip() != "wifi 0"
        except OSError:
            want = True
        network.set_link(want)
        await asyncio.sleep_ms(50)


def stat():
    s = log.stats()
    used = s["bytes_used"]
    if used > state["peak_bytes"]:
        state["peak_bytes"] = used
    d = {"produced": state["produced"], "alerts": state["alerts"], "depth_up": log.depth("up"),
         "depth_alert": log.depth("alert"), "bytes_used": used, "peak_bytes": state["peak_bytes"],
         "segments": s["segments"], "acked_up": log.acked("up"), "acked_alert": log.acked("alert"),
         "uplink": up.stats, "mqtt": client.stats, "max_gap_ms": state["max_gap_ms"],
         "heap_free": gc.mem_free(), "last_error": client.last_error, "epoch": getattr(log, "epoch", 0),
         "connected": client.connected}
    return d


async def main():
    asyncio.create_task(client.run())
    asyncio.create_task(up.run())
    asyncio.create_task(control())
    prod = asyncio.create_task(producer())
    while True:
        await asyncio.sleep_ms(250)
        d = stat()
        print("STAT", json.dumps(d))
        if prod.done() and d["produced"] == n and log.acked("up") == seq0 + n and log.acked("alert") == state["alerts"]:
            break
    await client.disconnect()
    print("DONE", json.dumps(stat()))


asyncio.run(main())
