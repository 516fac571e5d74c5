"""The broker `fogline provision` generates, installed by the README's own commands, run by the real
mosquitto as an unprivileged user, serving the real firmware node and the real gateway.

The README's install lines are executed with only the base of their paths moved to a temp dir
(/etc/mosquitto -> <tmp>/etc/mosquitto, /etc/fogline -> <tmp>/etc/fogline). As root (CI) mosquitto
starts as root and drops to its `mosquitto` user exactly as the packaged service does, so the files
must be readable by that user; otherwise it runs as the current user.
"""

from __future__ import annotations

import json
import os
import pwd
import queue
import re
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from fogline.tools import cli
from fogline.gateway import config as config_mod
from fogline.gateway.ops import provision_broker as pb
from tests.gateway.ingest_helpers import GatewayThread, db_rows, stored_seqs, wait_for
from fogline.tools import hostemu
from harness.broker import free_ports, mosquitto_binary
from harness.sitekit import VNode

REPO = hostemu.REPO
SITE = "s1"
WAIT = 30.0


def _mp_available() -> bool:
    try:
        hostemu.find_micropython()
        return True
    except Exception:
        return False


def _have_mosquitto() -> bool:
    try:
        mosquitto_binary()
        return True
    except RuntimeError:
        return False


pytestmark = pytest.mark.skipif(not _have_mosquitto(), reason="mosquitto not installed")


def readme_install_lines() -> list[str]:
    """The README's broker/gateway install commands (`sudo install ...` after `P=`)."""
    text = (REPO / "README.md").read_text()
    i = text.index("    P=/etc/fogline/provision")
    block = []
    for ln in text[i:].splitlines()[1:]:
        if not ln.startswith("    sudo "):
            break
        block.append(ln.strip())
    cmds = [c for c in block if c.startswith("sudo install")]
    assert len(cmds) >= 4, block
    return cmds


def run_install(cmds: list[str], out: Path, base: Path) -> None:
    """Run the install lines as the README says, paths rebased into `base`."""
    root = os.geteuid() == 0
    for c in cmds:
        c = c[len("sudo "):].replace("$P", str(out))
        c = c.replace("/etc/mosquitto", f"{base}/etc/mosquitto").replace("/etc/fogline", f"{base}/etc/fogline")
        owner = re.search(r"-o (\S+) -g (\S+) ", c)
        if owner and (not root or not _user(owner.group(1))):
            # not root, or the service user does not exist here: same mode, this user's ownership
            c = c.replace(owner.group(0), "")
        subprocess.run(c, shell=True, check=True)


def _user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


class Broker:
    """mosquitto on a Debian-like main config that includes the installed conf.d."""

    def __init__(self, base: Path, ports: list[int]):
        self.base, self.ports = base, ports
        self.conf = base / "etc" / "mosquitto" / "mosquitto.conf"
        self.conf.write_text("persistence false\nlog_dest stderr\nlog_type error\nlog_type warning\n"
                             "log_type notice\nlog_type information\n"
                             f"include_dir {base}/etc/mosquitto/conf.d\n")
        self.proc = subprocess.Popen([mosquitto_binary(), "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        self.log: list[str] = []
        self.t = threading.Thread(target=lambda: self.log.extend(self.proc.stderr), daemon=True)
        self.t.start()
        import socket
        deadline = time.monotonic() + WAIT
        pending = list(ports)
        while pending and time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.t.join(2)
                raise AssertionError(f"mosquitto exited {self.proc.returncode}: {''.join(self.log)}")
            try:
                with socket.create_connection(("127.0.0.1", pending[0]), timeout=0.5):
                    pending.pop(0)
            except OSError:
                time.sleep(0.05)
        assert not pending, f"mosquitto never listened on {pending}: {''.join(self.log)}"

    def uid(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            return int(next(ln for ln in f if ln.startswith("Uid:")).split()[1])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.t.join(5)


class Client:
    """paho client that records messages and disconnects."""

    def __init__(self, port: int, user: str | None, password: str | None, client_id: str, tls: dict | None = None):
        self.msgs: queue.Queue = queue.Queue()
        self.connack: queue.Queue = queue.Queue()
        self.disconnects = 0
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False,
                             protocol=mqtt.MQTTv311)
        if user is not None:
            self.c.username_pw_set(user, password)
        if tls:
            self.c.tls_set(**tls)
        self.c.on_connect = lambda c, u, f, rc, p: self.connack.put(rc)
        self.c.on_message = lambda c, u, m: self.msgs.put((m.topic, m.payload))
        self.c.on_disconnect = self._on_disc
        self.c.reconnect_delay_set(0.1, 0.5)
        self.c.connect("127.0.0.1", port, keepalive=30)
        self.c.loop_start()
        self.rc = self.connack.get(timeout=WAIT)

    def _on_disc(self, c, u, f, rc, p) -> None:
        self.disconnects += 1
        self.connack.put(None)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def installed(tmp_path):
    """Provision (CLI), install with the README's lines, start mosquitto; yields what the tests need."""
    lan, gwp, tls = free_ports(3)
    out = tmp_path / "provision"
    assert cli.main(["provision", "--site", SITE, "nA", "nB", "--out", str(out), "--broker-port", str(lan),
                     "--gateway-port", str(gwp), "--certs", "--tls-port", str(tls)]) == 0
    base = Path(tempfile.mkdtemp(prefix="fogline-etc-", dir="/tmp"))  # traversable by the mosquitto user
    try:
        os.chmod(base, 0o755)
        for d in ("etc/mosquitto/conf.d", "etc/fogline"):  # what the mosquitto package and `mkdir` leave
            (base / d).mkdir(parents=True)
            os.chmod(base / d, 0o755)
        run_install(readme_install_lines(), out, base)
        conf = base / "etc/mosquitto/conf.d/fogline.conf"
        conf.write_text(conf.read_text().replace(pb.ETC_DIR, f"{base}/etc/mosquitto"))  # only the base dir
        broker = Broker(base, [lan, gwp, tls])
        try:
            yield {"out": out, "base": base, "lan": lan, "gw": gwp, "tls": tls, "broker": broker,
                   "secrets": json.loads((out / "secrets.json").read_text())}
        finally:
            broker.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_installed_files_have_the_readmes_modes_and_the_broker_runs_unprivileged(installed):
    base, broker = installed["base"], installed["broker"]
    fdir = base / "etc/mosquitto/fogline"
    names = sorted(p.name for p in fdir.iterdir())
    assert names == ["acl", "broker.crt", "broker.key", "ca.crt", "passwd"], names
    want_uid = pwd.getpwnam("mosquitto").pw_uid if os.geteuid() == 0 else os.geteuid()
    for p in [fdir, *fdir.iterdir()]:
        st = p.stat()
        assert st.st_mode & 0o077 == 0, f"{p} readable by others: {oct(st.st_mode)}"
        assert st.st_uid == want_uid, p
    gw = base / "etc/fogline/gateway.toml"
    assert gw.stat().st_mode & 0o777 == 0o600, oct(gw.stat().st_mode)
    assert broker.uid() != 0, "mosquitto kept root privileges"
    assert broker.proc.poll() is None
    log = "".join(broker.log)
    assert "local only mode" not in log and "Error" not in log, log
    conf = (installed["out"] / "mosquitto/conf.d/fogline.conf").read_text()
    for line in ("set_tcp_nodelay true", f"max_packet_size {pb.MAX_PACKET_SIZE}", f"listener {installed['lan']}",
                 "use_username_as_clientid true", "password_file /etc/mosquitto/fogline/passwd"):
        assert line + "\n" in conf, line


def _node_site(out: Path, d: Path, node: str) -> Path:
    """The provisioned nodes/<node>.json plus fast test timings (mqtt host/port/user/password as provisioned)."""
    cfg = json.loads((out / "nodes" / f"{node}.json").read_text())
    cfg.update({"version": 1, "sample_ms": 200, "watchdog_ms": 0, "state_ms": 1000,
                "ntp": {"enabled": False, "host": "pool.ntp.org", "interval_s": 3600},
                "uplink": {"min_pack": 1, "linger_ms": 100},
                "log": {"capacity_bytes": 65536, "segment_bytes": 4096, "sync_every": 5, "sync_ms": 200}})
    cfg["node"]["board"] = "esp32_devkitc"
    p = d / "site.json"
    p.write_text(json.dumps(cfg))
    return p


@pytest.mark.skipif(not _mp_available(), reason="micropython not available")
def test_firmware_node_and_gateway_through_the_installed_broker(installed, tmp_path):
    out, base = installed["out"], installed["base"]
    raw = config_mod.load(base / "etc/fogline/gateway.toml")  # the installed file, as the service reads it
    assert raw.mqtt.port == installed["gw"] and raw.mqtt.username == "gateway" and raw.mqtt.password
    cfg = config_mod.from_dict({"site": {"id": raw.site.id, "data_dir": str(tmp_path / "data")},
                                "mqtt": {"port": raw.mqtt.port, "username": raw.mqtt.username,
                                         "password": raw.mqtt.password},
                                "ingest": {"auth_keys_file": raw.ingest.auth_keys_file},
                                "inference": {"enabled": False}})
    d = tmp_path / "node"
    d.mkdir()
    g = GatewayThread(cfg).start()
    node = VNode(d, "nA", _node_site(out, d, "nA"), "normal", 3, blocks=128, drain_ms=2000, time_scale=1.0)
    node.start()
    lines = node.proc.lines
    data = tmp_path / "data"
    intruder = None
    try:
        ok = wait_for(lambda: len(stored_seqs(data, "nA")) >= 5 or not node.proc.alive(), timeout=90)
        assert ok and node.proc.alive(), f"node tail: {' | '.join(lines[-10:])}"
        acked = lambda: [json.loads(ln[5:])["acked"]["up"] for ln in lines if ln.startswith("STAT ")]  # noqa: E731
        assert wait_for(lambda: any(a >= 3 for a in acked()), timeout=60), lines[-5:]
        m = g.gw.metrics
        connects = m.get("mqtt_connects")
        # A provisioned node connects on the LAN listener with the gateway's own client id: mosquitto
        # replaces it with the user name, so the gateway keeps its session and readings keep arriving.
        intruder = Client(installed["lan"], "nB", installed["secrets"]["nodes"]["nB"]["password"],
                          cfg.mqtt_client_id())
        assert intruder.rc is not None and not intruder.rc.is_failure, intruder.rc
        n0 = len(stored_seqs(data, "nA"))
        assert wait_for(lambda: len(stored_seqs(data, "nA")) >= n0 + 5, timeout=60), "readings stopped"
        assert m.get("mqtt_disconnects") == 0 and m.get("mqtt_connects") == connects, \
            (m.get("mqtt_disconnects"), m.get("mqtt_connects"))
        assert intruder.disconnects == 0
        assert db_rows(data, "SELECT COUNT(*) FROM dead_letters") == [(0,)]
    finally:
        if intruder is not None:
            intruder.close()
        node.halt(30)
        g.stop()
    final = [json.loads(ln[6:]) for ln in lines if ln.startswith("FINAL ")]
    assert final and final[0]["acked"]["up"] >= 8, lines[-5:]


def test_oversized_publish_is_refused_by_the_broker(installed):
    s = installed["secrets"]
    gw = Client(installed["gw"], "gateway", s["gateway"]["password"], "gw-watch")
    gw.c.subscribe(f"fogline/{SITE}/#", 1)
    time.sleep(0.2)
    nb = Client(installed["lan"], "nB", s["nodes"]["nB"]["password"], "nB")
    try:
        big = b"x" * (pb.MAX_PACKET_SIZE + 1024)
        nb.c.publish(f"fogline/{SITE}/nB/up", big, qos=0)  # QoS 0: paho does not resend it on reconnect
        assert wait_for(lambda: nb.disconnects >= 1, timeout=WAIT), "the broker kept a client over max_packet_size"
        # reconnected (paho retries): a small message still arrives, the big one never did
        assert wait_for(lambda: nb.c.is_connected(), timeout=WAIT)
        nb.c.publish(f"fogline/{SITE}/nB/up", b"small", qos=1).wait_for_publish(WAIT)
        got = []
        while True:
            topic, payload = gw.msgs.get(timeout=WAIT)
            got.append(len(payload))
            if payload == b"small":
                break
        assert got == [5], got
    finally:
        nb.close()
        gw.close()


def test_tls_listener_takes_site_certificates_only(installed):
    certs = installed["out"] / "certs"
    ca = {"ca_certs": str(certs / "ca.crt")}
    gw = Client(installed["tls"], None, None, "gw-tls", tls={**ca, "certfile": str(certs / "gateway-client.crt"),
                                                             "keyfile": str(certs / "gateway-client.key")})
    # the node takes the gateway client's id: the broker makes it the cert's CN, nobody is kicked
    a = Client(installed["tls"], None, None, "gw-tls", tls={**ca, "certfile": str(certs / "nodes/nA.crt"),
                                                            "keyfile": str(certs / "nodes/nA.key")})
    try:
        assert gw.rc is not None and not gw.rc.is_failure and a.rc is not None and not a.rc.is_failure
        gw.c.subscribe(f"fogline/{SITE}/#", 1)
        time.sleep(0.2)
        a.c.publish(f"fogline/{SITE}/nB/up", b"spoof", qos=1).wait_for_publish(WAIT)  # the CN is nA: denied
        a.c.publish(f"fogline/{SITE}/nA/up", b"mine", qos=1).wait_for_publish(WAIT)
        assert gw.msgs.get(timeout=WAIT) == (f"fogline/{SITE}/nA/up", b"mine")
        assert gw.disconnects == 0 and a.disconnects == 0
    finally:
        a.close()
        gw.close()
    # a password without a client certificate does not get in
    try:
        c = Client(installed["tls"], "nA", installed["secrets"]["nodes"]["nA"]["password"], "nocert", tls=ca)
        rc = c.rc
        c.close()
    except (ssl.SSLError, OSError):
        rc = None
    assert rc is None or rc.is_failure, rc
