"""Federation exchange over a real mosquitto: three gateways and a coordinator, each on its own connection."""

from __future__ import annotations

import json

import cbor2
import numpy as np

from gateway import fedwire
from gateway.fedbus import MqttBus
from gateway.fedcoord import run_round
from gateway.federation import FederationConfig
from gateway.model_registry import ModelRegistry
from tools import fedsim


def test_rounds_over_mosquitto(mosquitto, tmp_path):
    sites = [fedsim.gateway_data(g, 2, 6, fedsim.TRAIN_SEED) for g in fedsim.GATEWAYS]
    base = fedsim.base_model()
    cfg = FederationConfig(max_steps=30, expected_updates=3, round_timeout_s=20)
    ids = [*fedsim.GATEWAYS, "coordinator"]
    buses = {i: MqttBus("127.0.0.1", mosquitto.port, f"fed-{i}") for i in ids}
    spy = MqttBus("127.0.0.1", mosquitto.port, "fed-spy")
    seen: list[tuple[str, bytes]] = []
    spy.subscribe("fogline/fed/#", lambda t, p: seen.append((t, p)))
    coord, members = fedsim.build(cfg, sites, base, buses, tmp_path)
    try:
        results = [run_round(coord, list(buses.values()), r) for r in (1, 2)]
        # a forged update (gw-hot's name, wrong key) sent through the broker in round 3 is refused
        coord.start_round(3)
        bad = fedwire.seal(b"an attacker's key, not gw-hot's!", "gw-hot", "update",
                           {"round": 3, "gw": "gw-hot", "base": 3, "base_sha": coord.lineage.sha, "n": 5,
                            "steps": 1, "tensors": fedwire.pack_tensors([np.zeros(s) for s in coord.lineage.shapes])})
        spy.publish("fogline/fed/3/update/gw-hot", bad)
        for _ in range(400):
            for b in [*buses.values(), spy]:
                b.pump_once()
            if "gw-hot" in coord.round.refused and len(coord.updates) == 3:
                break
            __import__("time").sleep(0.01)
        spy.pump_once()
    finally:
        for m in members:
            m.close()
        for b in [*buses.values(), spy]:
            b.close()
    assert [r.version for r in results] == [2, 3]
    for r in results:
        assert r.used == sorted(fedsim.GATEWAYS) and set(r.results) == set(fedsim.GATEWAYS) and r.bytes > 0
    assert "bad tag" in coord.round.refused["gw-hot"] and len(coord.updates) == 3  # the real gw-hot update got in
    for m in members:
        adopted = [res["version"] for res in m.results.values() if res["adopted"]]
        cur = ModelRegistry(tmp_path / m.id).current_dir()
        if adopted:
            assert json.loads((cur / "manifest.json").read_text())["version"] == max(adopted)
        else:
            assert cur is None
    # everything the broker carried: signed envelopes of the four kinds, no window values inside
    kinds = [fedwire.parse_topic("fogline/fed", t)[1] for t, _ in seen]
    # rounds 1-3 (round 3 aggregated the three real updates; the forged one is the 10th update seen)
    assert kinds.count("start") == 3 and kinds.count("update") == 10 and kinds.count("model") == 3
    assert kinds.count("result") >= 6
    private = fedsim.private_triples([s.stats.reshape(-1, 6) for s in sites] + [s.data.X for s in sites])
    for t, p in seen:
        env = cbor2.loads(p)
        assert set(env) == {"body", "by", "tag"}
        assert not fedsim.leaked(p, private), t
