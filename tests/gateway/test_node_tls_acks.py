"""The node's broker link over TLS (CA and node certificate from `fogline provision --certs`) and signed acks.

Real parts: the firmware (FlashLog + Uplink + MQTT client with the unix port's ssl) on the MicroPython
unix port, mosquitto with a TLS listener that requires a client certificate, the gateway on a plain
loopback listener with the node's auth key. A forger on the broker publishes unsigned and badly signed
acks for the node's current epoch while the gateway is down: the node must delete nothing.
"""

from __future__ import annotations

import getpass
import json
import subprocess

import cbor2
import paho.mqtt.client as mqtt
import pytest

from fogline.gateway.ops import provision_certs
from fogline.shared import auth
from tests.gateway.ingest_helpers import GatewayThread, db_rows, gw_config, wait_for
from fogline.tools import hostemu
from harness.broker import Mosquitto, free_ports
from harness.counternode import CounterNode

KEY = bytes(range(32, 48))


def _has_ssl() -> bool:
    return subprocess.run([hostemu.find_micropython(), "-c", "import ssl"], capture_output=True).returncode == 0


def test_tls_node_ignores_forged_acks_and_drains_to_the_gateway(tmp_path):
    if not _has_ssl():
        pytest.skip("this MicroPython port has no ssl module")
    certs = provision_certs.ensure(tmp_path / "certs", "s1", ["node1"], rotate_nodes=[], rotate_ca=False,
                                   broker_host="localhost", days=30)
    d = tmp_path / "certs"
    plain, tls = free_ports(2)
    broker = Mosquitto(tmp_path / "mq", port=plain, extra_conf="\n".join([
        f"user {getpass.getuser()}",  # read the test's cert files (mosquitto drops root to its own user)
        f"listener {plain} 127.0.0.1", "allow_anonymous true",
        f"listener {tls} 127.0.0.1", f"cafile {d / 'ca.crt'}", f"certfile {d / 'broker.crt'}",
        f"keyfile {d / 'broker.key'}", "require_certificate true", "use_identity_as_username true"])).start()
    keys = tmp_path / "gateway_keys.json"
    keys.write_text(json.dumps({"nodes": {"node1": {"auth_key": KEY.hex(), "bind_key": "00" * 16}}}))
    n = 60
    node = CounterNode(tls, n, 2, tmp_path / "ctl", f"key={KEY.hex()}", f"cafile={certs['ca']}")
    lines = node.lines
    seen: list[bytes] = []
    forger = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="forger")
    forger.on_message = lambda c, u, m: seen.append(m.payload)
    forger.connect("127.0.0.1", plain)
    forger.subscribe("fogline/s1/node1/up", 1)
    forger.loop_start()
    g = None
    try:
        assert wait_for(lambda: seen, timeout=60), (lines[-2:], broker.log.read_text()[-500:])
        ep = auth.split_uplink(seen[0])[3]                      # the node's epoch, read off the wire
        assert ep > 0 and auth.split_uplink(seen[0])[2] is not None
        for forged in ({"up": 1000, "alert": 1000, "e": ep},
                       {"up": 1000, "alert": 1000, "e": ep, "tag": bytes(16)},
                       auth.seal_ack(bytes(16), "node1", {"up": 1000, "e": ep})):  # signed with another key
            forger.publish("fogline/s1/node1/ack", cbor2.dumps(forged), qos=1).wait_for_publish(10)
        stat = node.stat
        # every reading sampled, all three forgeries seen, and all n in flash (a stats line can come between a
        # sample and its flash append, so depth is waited for too; a forged ack obeyed would keep it below n)
        assert wait_for(lambda: stat().get("produced") == n and stat()["uplink"]["unsigned_acks"] >= 3
                        and stat()["depth_up"] == n, timeout=60), stat()
        s = stat()
        assert s["depth_up"] == n and s["acked_up"] == 0 and s["mqtt"]["connects"] >= 1  # nothing deleted
        cfg = gw_config(tmp_path, plain, site={"id": "s1"}, ingest={"max_age_s": 10 * 365 * 86400.0,
                                                                      "auth_keys_file": str(keys)},
                        tiers={"compress_after_s": 20 * 365 * 86400.0})
        g = GatewayThread(cfg).start()                          # the real gateway's signed acks drain it
        done = node.finish(90)                                  # asserts a clean exit with its DONE line
    finally:
        forger.loop_stop()
        node.kill()
        if g is not None:
            g.stop()
        broker.stop()
    assert done["acked_up"] == n and done["depth_up"] == 0
    assert [s for (s,) in db_rows(tmp_path / "data", "SELECT seq FROM readings WHERE lane=0 ORDER BY seq")] \
        == list(range(1, n + 1))
    assert db_rows(tmp_path / "data", "SELECT COUNT(*) FROM dead_letters") == [(0,)]


def test_ack_tag_binds_node_epoch_and_cursors():
    key = bytes(16)
    m = auth.seal_ack(key, "n1", {"up": 5, "alert": 2, "e": 7})
    assert auth.open_ack(key, "n1", m) == m
    for other in (dict(m, up=6), dict(m, e=8), dict(m, alert=3)):
        with pytest.raises(ValueError, match="bad ack tag"):
            auth.open_ack(key, "n1", other)
    with pytest.raises(ValueError, match="bad ack tag"):
        auth.open_ack(key, "n2", m)                            # another node's ack
    with pytest.raises(ValueError, match="unsigned"):
        auth.open_ack(key, "n1", {"up": 5, "e": 7})
    assert auth.open_ack(None, "n1", {"up": 5}) == {"up": 5}  # a node without a key takes any ack
