"""`fogline provision` output enforced by a real mosquitto: each node only its own topics, no strangers."""

from __future__ import annotations

import json
import os
import queue
import shutil
import ssl
import subprocess
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from fogline.tools import cli
from fogline.gateway.ops import provision as prov
from fogline.shared import auth, cbor, senml
from harness.broker import free_port

SITE = "s1"
WAIT = 10.0
# mosquitto started as root drops to the `mosquitto` user, which cannot read our 0600 files in tmp dirs.
AS_ROOT = "user root\n" if os.geteuid() == 0 else ""


class Client:
    """A paho client that records what it receives; connect() returns the CONNACK reason."""

    def __init__(self, port: int, user: str | None, password: str | None, tls: dict | None = None):
        self.port = port
        self.msgs: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.subacks: queue.Queue[list] = queue.Queue()
        self.connack: queue.Queue = queue.Queue()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{user}-{free_port()}",
                             protocol=mqtt.MQTTv311)
        if user is not None:
            self.c.username_pw_set(user, password)
        if tls:
            self.c.tls_set(**tls)
        self.c.on_connect = lambda c, u, f, rc, p: self.connack.put(rc)
        self.c.on_message = lambda c, u, m: self.msgs.put((m.topic, m.payload))
        self.c.on_subscribe = lambda c, u, mid, rcs, p: self.subacks.put(rcs)
        # A connection closed before CONNACK (e.g. TLS client cert refused) reports None.
        self.c.on_disconnect = lambda c, u, f, rc, p: self.connack.put(None)

    def connect(self):
        self.c.connect("127.0.0.1", self.port, keepalive=30)
        self.c.loop_start()
        rc = self.connack.get(timeout=WAIT)
        if rc is None or rc.is_failure:
            self.close()
        return rc

    def sub(self, *filters: str) -> list:
        self.c.subscribe([(f, 1) for f in filters])
        return self.subacks.get(timeout=WAIT)

    def pub(self, topic: str, payload: bytes) -> None:
        self.c.publish(topic, payload, qos=1).wait_for_publish(WAIT)

    def until(self, topic: str) -> list[str]:
        """Topics received up to and including the first message on `topic` (a barrier)."""
        seen = []
        while True:
            t, _ = self.msgs.get(timeout=WAIT)
            seen.append(t)
            if t == topic:
                return seen

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def t(node: str, kind: str) -> str:
    return f"fogline/{SITE}/{node}/{kind}"


@pytest.fixture
def site(tmp_path, mosquitto_factory):
    res = prov.provision(tmp_path / "prov", SITE, ["nA", "nB"])
    port = free_port()
    conf = f"listener {port} 127.0.0.1\n" + AS_ROOT + prov.broker_conf(res.files["passwd"], res.files["acl"])
    broker = mosquitto_factory("site", port=port, extra_conf=conf)
    secrets = json.loads(res.files["secrets"].read_text())
    clients: list[Client] = []

    def login(user: str, password: str | None = None) -> Client:
        if password is None:
            password = secrets["gateway"]["password"] if user == "gateway" else secrets["nodes"][user]["password"]
        c = Client(broker.port, user, password)
        rc = c.connect()
        assert rc is not None and not rc.is_failure, f"{user} refused: {rc}"
        clients.append(c)
        return c

    yield {"res": res, "port": broker.port, "secrets": secrets, "login": login}
    for c in clients:
        c.close()


def test_node_publishes_its_own_topics_and_receives_its_own_ack(site):
    gw, a = site["login"]("gateway"), site["login"]("nA")
    gw.sub(f"fogline/{SITE}/#")
    a.sub(t("nA", "ack"), t("nA", "config"))
    for kind in ("up", "alert", "state"):
        a.pub(t("nA", kind), kind.encode())
    assert gw.until(t("nA", "state")) == [t("nA", "up"), t("nA", "alert"), t("nA", "state")]
    gw.pub(t("nA", "ack"), cbor.dumps({"up": 1}))
    gw.pub(t("nA", "config"), b"cfg")
    assert a.until(t("nA", "config")) == [t("nA", "ack"), t("nA", "config")]


def test_node_cannot_publish_as_another_node_or_outside_its_topics(site):
    gw, a = site["login"]("gateway"), site["login"]("nA")
    gw.sub(f"fogline/{SITE}/#", "fogline/#", "#")
    forbidden = [t("nB", "up"), t("nB", "alert"), t("nB", "state"), t("nA", "ack"), t("nA", "config"),
                 t("nB", "config"), "fogline/other/nA/up", f"fogline/{SITE}/summary", "homeassistant/x"]
    for topic in forbidden:
        a.pub(topic, b"spoof")
    a.pub(t("nA", "up"), b"marker")  # same connection, so it arrives after anything let through
    seen = gw.until(t("nA", "up"))
    assert seen == [t("nA", "up")], f"denied publishes leaked: {seen}"


def test_node_cannot_subscribe_to_other_nodes_or_the_site(site):
    gw, a, b = site["login"]("gateway"), site["login"]("nA"), site["login"]("nB")
    a.sub("fogline/#", f"fogline/{SITE}/+/ack", t("nB", "ack"), t("nB", "config"), t("nB", "up"), "#")
    a.sub(t("nA", "ack"))
    b.pub(t("nB", "up"), b"b-reading")
    b.pub(t("nB", "state"), b"b-state")
    gw.pub(t("nB", "ack"), b"b-ack")
    gw.pub(t("nB", "config"), b"b-cfg")
    gw.pub(t("nA", "ack"), b"marker")
    seen = a.until(t("nA", "ack"))
    assert seen == [t("nA", "ack")], f"node A received other nodes' traffic: {seen}"
    # A retained config for B is not handed to A either (new subscription after the fact).
    gw.c.publish(t("nB", "config"), b"retained", qos=1, retain=True).wait_for_publish(WAIT)
    a.sub(t("nB", "config"), "fogline/#")
    gw.pub(t("nA", "ack"), b"marker2")
    assert a.until(t("nA", "ack")) == [t("nA", "ack")]


def test_wrong_password_unknown_user_and_anonymous_are_refused(site):
    s = site["secrets"]
    for user, pw in (("nA", "wrong"), ("nA", s["nodes"]["nB"]["password"]), ("gateway", s["nodes"]["nA"]["password"]),
                     ("nobody", "x"), (None, None)):
        rc = Client(site["port"], user, pw).connect()
        assert rc is not None and rc.is_failure, f"{user} got in"
        assert rc.value in (4, 5, 134, 135), rc  # bad user name or password / not authorised


def test_gateway_sees_everything_and_writes_only_ack_and_config(site):
    gw, a, b = site["login"]("gateway"), site["login"]("nA"), site["login"]("nB")
    gw.sub(f"fogline/{SITE}/#")
    for node, c in (("nA", a), ("nB", b)):
        for kind in ("up", "alert", "state"):
            c.pub(t(node, kind), b"x")
    want = {t(n, k) for n in ("nA", "nB") for k in ("up", "alert", "state")}
    got: set[str] = set()
    while not want <= got:
        got.add(gw.msgs.get(timeout=WAIT)[0])
    assert got == want
    # The gateway cannot forge node traffic: its publish to a node's up is dropped, ack goes through.
    gw.pub(t("nA", "up"), b"forged")
    gw.pub(t("nA", "ack"), b"ok")
    assert gw.until(t("nA", "ack")) == [t("nA", "ack")]


def test_rerun_keeps_secrets_and_rotate_renews_them(tmp_path):
    out = tmp_path / "p"
    r1 = prov.provision(out, SITE, ["n1", "n2"])
    before = {f: (out / f).read_bytes() for f in ("secrets.json", "mosquitto/fogline/passwd",
                                                  "mosquitto/fogline/acl", "gateway_keys.json", "nodes/n1.json")}
    # The user fills in Wi-Fi; a re-run must keep it.
    cfg = json.loads((out / "nodes/n1.json").read_text())
    cfg["wifi"] = {"ssid": "home", "password": "pw"}
    (out / "nodes/n1.json").write_text(json.dumps(cfg))
    r2 = prov.provision(out, SITE, ["n1", "n2"])
    assert r1.created == ["n1", "n2"] and r2.created == [] and r2.rotated == []
    for f in ("secrets.json", "mosquitto/fogline/passwd", "mosquitto/fogline/acl", "gateway_keys.json"):
        assert (out / f).read_bytes() == before[f], f
    assert json.loads((out / "nodes/n1.json").read_text())["wifi"] == {"ssid": "home", "password": "pw"}
    # Adding a node keeps the others.
    r3 = prov.provision(out, SITE, ["n3"])
    assert r3.created == ["n3"] and r3.nodes == ["n1", "n2", "n3"]
    old = json.loads(before["secrets.json"])
    new = json.loads((out / "secrets.json").read_text())
    assert new["nodes"]["n1"] == old["nodes"]["n1"]
    # Rotate n1: new password/keys for n1 and the gateway, n2 untouched, passwd follows.
    r4 = prov.provision(out, SITE, ["n1"], rotate=True)
    rot = json.loads((out / "secrets.json").read_text())
    assert r4.rotated == ["n1"]
    for k in ("password", "auth_key", "bind_key"):
        assert rot["nodes"]["n1"][k] != old["nodes"]["n1"][k]
    assert rot["nodes"]["n2"] == old["nodes"]["n2"]
    assert rot["gateway"]["password"] != old["gateway"]["password"]
    n1 = json.loads((out / "nodes/n1.json").read_text())
    assert n1["wifi"] == {"ssid": "home", "password": "pw"}  # the user's edits survive a rotation
    assert n1["mqtt"]["password"] == rot["nodes"]["n1"]["password"] and n1["auth_key"] == rot["nodes"]["n1"]["auth_key"]
    hashes = prov.read_passwd(out / "mosquitto/fogline/passwd")
    assert prov.verify_password(rot["nodes"]["n1"]["password"], hashes["n1"])
    assert not prov.verify_password(old["nodes"]["n1"]["password"], hashes["n1"])
    with pytest.raises(ValueError, match="belongs to site"):
        prov.provision(out, "other", ["n1"])
    for bad in ("a/b", "+", "", "gateway"):
        with pytest.raises(ValueError):
            prov.provision(out, SITE, [bad])
    for f in ("secrets.json", "mosquitto/fogline/passwd", "mosquitto/fogline/acl", "gateway_keys.json",
              "nodes/n1.json", "gateway.toml"):
        assert (out / f).stat().st_mode & 0o077 == 0, f"{f} readable by others"
    gw_toml = (out / "gateway.toml").read_text()
    assert f'password = "{rot["gateway"]["password"]}"' in gw_toml  # follows a rotation


def test_keys_files_agree_between_node_and_gateway(tmp_path):
    res = prov.provision(tmp_path, SITE, ["n1", "n2"])
    keys = prov.load_keys(res.files["gateway_keys"])
    assert set(keys) == {"n1", "n2"}
    for n in ("n1", "n2"):
        cfg = json.loads(res.files[f"node:{n}"].read_text())
        assert cfg["node"] == {"id": n, "site": SITE} and cfg["mqtt"]["user"] == n
        node_key = auth.key_from_hex(cfg["auth_key"])
        assert len(node_key) == 32 and len(bytes.fromhex(cfg["ble"]["bind_key"])) == 16
        assert keys[n].bind_key.hex() == cfg["ble"]["bind_key"]
        pack = cbor.dumps(senml.build_pack(f"{n}/", 1700000000, [("t", "Cel", 20.5, 1700000000)]))
        payload = auth.seal_pack(node_key, n, "up", 1, pack)
        assert auth.open_pack(keys[n].auth_key, n, "up", payload) == (1, pack)
    other = "n2"
    with pytest.raises(ValueError, match="bad tag"):
        auth.open_pack(keys[other].auth_key, "n1", "up",
                       auth.seal_pack(keys["n1"].auth_key, "n1", "up", 1, b"\x80"))
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="bad keys file"):
        prov.load_keys(tmp_path / "bad.json")


@pytest.mark.skipif(not shutil.which("mosquitto_passwd") and not Path("/usr/bin/mosquitto_passwd").exists(),
                    reason="mosquitto_passwd not installed")
def test_password_hash_format_matches_mosquitto_passwd(tmp_path):
    f = tmp_path / "pw"
    exe = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    subprocess.run([exe, "-b", "-c", str(f), "alice", "s3cret"], check=True, capture_output=True)
    h = prov.read_passwd(f)["alice"]
    assert h.startswith("$7$") and prov.verify_password("s3cret", h)
    assert not prov.verify_password("s3creT", h)
    ours = prov.hash_password("s3cret")
    assert ours.split("$")[1:3] == h.split("$")[1:3]  # same scheme and iteration count


def test_cli_provision_prints_paths_not_secrets(tmp_path, capsys):
    rc = cli.main(["provision", "--site", SITE, "--out", str(tmp_path), "--count", "3", "extra", "--json"])
    assert rc == 0
    out = capsys.readouterr().out
    summary = json.loads(out)
    assert summary["nodes"] == ["extra", "node1", "node2", "node3"]
    secrets = json.loads((tmp_path / "secrets.json").read_text())
    for n, s in secrets["nodes"].items():
        for v in s.values():
            assert v not in out
    assert cli.main(["provision", "--site", "bad/site", "--out", str(tmp_path / "x")]) == 2


def test_client_certificates_work_against_mosquitto_tls(tmp_path, mosquitto_factory):
    from cryptography import x509

    res = prov.provision(tmp_path / "p", SITE, ["nA", "nB"], certs=True)
    d = tmp_path / "p" / "certs"
    ca = x509.load_pem_x509_certificate((d / "ca.crt").read_bytes())
    node = x509.load_pem_x509_certificate((d / "nodes" / "nA.crt").read_bytes())
    node.verify_directly_issued_by(ca)
    assert node.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)[0].value == "nA"
    port = free_port()
    conf = (f"listener {port} 127.0.0.1\n{AS_ROOT}cafile {d / 'ca.crt'}\ncertfile {d / 'broker.crt'}\n"
            f"keyfile {d / 'broker.key'}\nrequire_certificate true\nuse_identity_as_username true\n"
            f"allow_anonymous false\nacl_file {res.files['acl']}\n")
    mosquitto_factory("tls", port=port, extra_conf=conf)

    def tls_client(stem: Path) -> Client:
        c = Client(port, None, None, tls={"ca_certs": str(d / "ca.crt"), "certfile": f"{stem}.crt",
                                          "keyfile": f"{stem}.key"})
        rc = c.connect()
        assert rc is not None and not rc.is_failure, rc
        return c

    gw, a = tls_client(d / "gateway-client"), tls_client(d / "nodes" / "nA")
    try:
        gw.sub(f"fogline/{SITE}/#")
        a.sub(f"fogline/{SITE}/#")       # the cert's CN is the ACL user: A reads nothing of others
        a.pub(t("nB", "up"), b"spoof")   # A writing as B: dropped
        a.pub(t("nA", "up"), b"a")
        assert gw.until(t("nA", "up")) == [t("nA", "up")]
        gw.pub(t("nB", "ack"), b"b")
        gw.pub(t("nA", "ack"), b"marker")
        assert a.until(t("nA", "ack")) == [t("nA", "ack")]
    finally:
        a.close()
        gw.close()
    # Without a client certificate the TLS listener refuses the connection.
    c = Client(port, "nA", "x", tls={"ca_certs": str(d / "ca.crt")})
    try:
        rc = c.connect()
    except (ssl.SSLError, OSError):
        rc = None
    c.c.loop_stop()
    assert rc is None or rc.is_failure, "connected without a client certificate"


def test_cli_says_where_the_gateway_password_is_and_warns_on_placeholders(tmp_path, capsys):
    from fogline.gateway import config as config_mod

    assert cli.main(["provision", "--site", SITE, "--out", str(tmp_path / "a"), "n1"]) == 0
    cap = capsys.readouterr()
    gw_toml = tmp_path / "a" / "gateway.toml"
    assert f"gateway: {gw_toml} holds the gateway's MQTT user and password" in cap.out
    assert "WARNING fogline provision: wifi.ssid is 'CHANGE-ME'" in cap.err
    assert "WARNING fogline provision: mqtt.host is '127.0.0.1'" in cap.err
    cfg = config_mod.load(gw_toml)  # a valid gateway config for the site's broker
    secrets = json.loads((tmp_path / "a" / "secrets.json").read_text())
    assert (cfg.site.id, cfg.mqtt.port, cfg.mqtt.username, cfg.mqtt.password) == \
        (SITE, 1884, "gateway", secrets["gateway"]["password"])
    assert cfg.ingest.auth_keys_file == str((tmp_path / "a" / "gateway_keys.json").resolve())
    assert cli.main(["provision", "--site", SITE, "--out", str(tmp_path / "b"), "n1", "--broker-host",
                     "192.168.1.10", "--wifi-ssid", "home", "--wifi-password", "pw"]) == 0
    assert "WARNING" not in capsys.readouterr().err
    assert cli.main(["provision", "--site", SITE, "--out", str(tmp_path / "c"), "n1", "--gateway-port",
                     "1883"]) == 2  # the nodes' and the gateway's listeners must differ
    assert "ports must differ" in capsys.readouterr().err


def test_node_config_problems_name_placeholders_and_loopback_hosts():
    from fogline.gateway.ops.provision_broker import node_config_problems

    good = {"wifi": {"ssid": "home", "password": "pw"}, "mqtt": {"host": "192.168.1.10"}}
    assert node_config_problems(good) == []
    for host in ("127.0.0.1", "localhost", "::1", "127.1.2.3", ""):
        (p,) = node_config_problems({**good, "mqtt": {"host": host}})
        assert p.startswith(f"mqtt.host is {host!r}"), p
    ps = node_config_problems({"wifi": {"ssid": "CHANGE-ME", "password": "CHANGE-ME"}, "mqtt": {"host": "gw.lan"}})
    assert [p.split(" is ")[0] for p in ps] == ["wifi.ssid", "wifi.password"]
    assert len(node_config_problems({})) == 3


def test_gateway_warns_when_its_config_with_a_password_is_readable_by_others(tmp_path, caplog):
    from fogline.gateway import config as config_mod
    from fogline.gateway.commands.serve import warn_if_secrets_readable

    prov.provision(tmp_path, SITE, ["n1"])
    path = tmp_path / "gateway.toml"
    cfg = config_mod.load(path)
    assert not warn_if_secrets_readable(str(path), cfg)  # as provisioned: 0600
    os.chmod(path, 0o644)
    with caplog.at_level("WARNING"):
        assert warn_if_secrets_readable(str(path), cfg)
    assert "event=config_secrets_readable" in caplog.text and "chmod 600" in caplog.text
    assert not warn_if_secrets_readable(str(path), config_mod.from_dict({}))  # no password: nothing to hide
