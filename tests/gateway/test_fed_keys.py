"""Federation with Ed25519 keys: each participant signs with its own private key and holds only the
others' public keys, so a member can neither forge the coordinator nor another member (with the
shared HMAC keys every member holds the coordinator's key and can)."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fogline.gateway.federation import local as fedlocal, wire as fedwire
from fogline.gateway.federation.bus import InProcessBus
from fogline.gateway.federation.coord import Coordinator, run_round
from fogline.gateway.federation.core import FederationConfig, Member, registry_installer
from fogline.gateway.inference.registry import ModelRegistry
from fogline.tools import fedsim


@pytest.fixture(scope="module")
def world():
    sites = [fedsim.gateway_data(g, 4, 12, fedsim.TRAIN_SEED) for g in fedsim.GATEWAYS]
    return sites, fedsim.base_model()


def _cfg(**kw) -> FederationConfig:
    c = FederationConfig(**{"max_steps": 50, "expected_updates": 2, "min_updates": 1, "round_timeout_s": 30,
                            "lr": 0.002, "adopt_margin": 1.0, **kw})
    c.validate()
    return c


def _model_body(base, version=2):
    man, data = base
    wman, wdata = fedlocal.export(fedlocal.net_from_onnx(data), man, version, {"method": "test"})
    return {"round": 2, "base": 1, "version": version, "manifest": json.dumps(wman), "model": wdata, "used": [],
            "refused": {}}


def test_a_member_cannot_forge_the_coordinator_or_another_member(world, tmp_path):
    sites, base = world
    sk = {g: Ed25519PrivateKey.generate() for g in ("coordinator", "gw-mild", "gw-evil")}
    pub = {g: k.public_key() for g, k in sk.items()}
    bus = InProcessBus()
    reg = ModelRegistry(tmp_path / "reg")
    cfg = _cfg()
    m = Member(cfg, "gw-mild", sk["gw-mild"], {"coordinator": pub["coordinator"]}, sites[2].data, base, bus,
               install=registry_installer(reg), threaded=False)
    body = _model_body(base)
    # gw-evil signs a model as the coordinator with the only private key it has: its own
    m.on_message("fogline/fed/2/model", fedwire.seal(sk["gw-evil"], "coordinator", "model", body))
    assert m.counters["refused"] == 1 and "bad tag" in m.last_error and reg.current_dir() is None
    # ...and a public key cannot sign at all
    with pytest.raises(ValueError, match="public key cannot sign"):
        fedwire.seal(pub["coordinator"], "coordinator", "model", body)
    # gw-evil sends an update as gw-mild: the coordinator, holding only public keys, refuses it
    coord = Coordinator(cfg, "coordinator", sk["coordinator"], {"gw-mild": pub["gw-mild"], "gw-evil": pub["gw-evil"]},
                        base, bus)
    upd = {"round": 1, "gw": "gw-mild", "base": 1, "base_sha": base[0]["sha256"], "n": 100, "steps": 1,
           "tensors": fedwire.pack_tensors([])}
    with pytest.raises(fedwire.FedRefused, match="bad tag"):
        fedwire.open_(coord.keys, fedwire.seal(sk["gw-evil"], "gw-mild", "update", upd), "update")
    # the real coordinator's model is accepted and its signature is a 64-byte Ed25519 one
    good = fedwire.seal(sk["coordinator"], "coordinator", "model", body)
    assert len(__import__("cbor2").loads(good)["tag"]) == 64
    m.on_message("fogline/fed/2/model", good)
    assert 2 in m.results and m.counters["refused"] == 1


def test_hmac_keys_let_a_member_forge_the_coordinator(world, tmp_path):
    # The legacy shared-key mode, kept for existing sites: documents why Ed25519 is the default advice.
    sites, base = world
    keys = fedsim.keys()
    m = Member(_cfg(), "gw-mild", keys["gw-mild"], {"coordinator": keys["coordinator"]}, sites[2].data, base,
               InProcessBus(), install=registry_installer(ModelRegistry(tmp_path / "reg")), threaded=False)
    member_copy_of_coord_key = keys["coordinator"]  # every HMAC member holds it to verify
    m.on_message("fogline/fed/2/model", fedwire.seal(member_copy_of_coord_key, "coordinator", "model",
                                                     _model_body(base)))
    assert m.counters["refused"] == 0 and 2 in m.results


def test_a_round_with_ed25519_keys(world, tmp_path):
    sites, base = world
    sk = {g: Ed25519PrivateKey.generate() for g in ("coordinator", "gw-mild", "gw-hot")}
    pub = {g: k.public_key() for g, k in sk.items()}
    bus = InProcessBus()
    cfg = _cfg()
    coord = Coordinator(cfg, "coordinator", sk["coordinator"], {"gw-mild": pub["gw-mild"], "gw-hot": pub["gw-hot"]},
                        base, bus)
    members = [Member(cfg, g, sk[g], {"coordinator": pub["coordinator"]}, sites[i].data, base, bus,
                      install=registry_installer(ModelRegistry(tmp_path / g)), threaded=False)
               for i, g in ((2, "gw-mild"), (1, "gw-hot"))]
    res = run_round(coord, [bus], 1, members)
    assert res.version == 2 and sorted(res.used) == ["gw-hot", "gw-mild"] and not res.refused
    assert all(mm.results[1]["adopted"] for mm in members)


def test_config_and_keygen(tmp_path, capsys):
    from fogline.tools.cli import main
    assert main(["federate", "--keygen", str(tmp_path / "k")]) == 0
    k = fedwire.load_private(tmp_path / "k" / "federation.key")
    p = fedwire.load_public(tmp_path / "k" / "federation.pub")
    assert k.public_key().public_bytes_raw() == p.public_bytes_raw()
    assert main(["federate", "--keygen", str(tmp_path / "k")]) == 2  # never overwrites a key


def test_federate_command_with_ed25519_keys_over_mosquitto(mosquitto, tmp_path, capsys):
    from fogline.tools.cli import main
    from tests.gateway.test_federation_mqtt import _store_with_windows
    assert main(["federate", "--keygen", str(tmp_path / "k")]) == 0
    _store_with_windows(tmp_path / "ingest.sqlite")
    cfg = tmp_path / "gw.toml"
    cfg.write_text(f'[site]\ndata_dir = "{tmp_path}"\ngateway_id = "gw-x"\n[federation]\n'
                   f'signing_key = "{tmp_path / "k" / "federation.key"}"\nexpected_updates = 1\nmin_updates = 1\n'
                   'max_steps = 20\nhistory_hours = 100000.0\nround_timeout_s = 20.0\n')
    seen: list[bytes] = []
    import paho.mqtt.client as mqtt
    spy = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="spy")
    spy.on_message = lambda c, u, m: seen.append(m.payload)
    spy.connect("127.0.0.1", mosquitto.port)
    spy.subscribe("fogline/fed/#", 1)
    spy.loop_start()
    try:
        assert main(["federate", "--config", str(cfg), "--broker", f"127.0.0.1:{mosquitto.port}", "--json"]) == 0
    finally:
        spy.loop_stop()
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [(r["round"], r["version"], r["used"]) for r in out["rounds"]] == [(1, 2, ["gw-x"])]
    import cbor2
    assert seen and all(len(cbor2.loads(p)["tag"]) == 64 for p in seen)  # every message Ed25519-signed
