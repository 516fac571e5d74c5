"""Federated learning across gateways: maths, protocol and refusals, in-process (tools/fedsim.py data)."""

from __future__ import annotations

import json
from pathlib import Path

import cbor2
import numpy as np
import pytest

from fogline.gateway.federation import avg as fedavg, local as fedlocal, wire as fedwire
from fogline.gateway.federation.bus import InProcessBus
from fogline.gateway.federation.coord import run_round
from fogline.gateway.federation.core import FederationConfig, Member, load_bytes, registry_installer
from fogline.gateway.inference.registry import ModelRegistry
from fogline.tools import fedsim

ALLOWED = {
    "start": {"t", "round", "base", "base_sha", "deadline_s"},
    "update": {"t", "round", "gw", "base", "base_sha", "n", "steps", "tensors"},
    "model": {"t", "round", "base", "version", "manifest", "model", "used", "refused"},
    "result": {"t", "round", "gw", "version", "adopted", "score_current", "score_candidate"},
}


@pytest.fixture(scope="module")
def world():
    """Three gateways' local data, the union test mix and the weak v1 starting model."""
    sites = [fedsim.gateway_data(g, 4, 12, fedsim.TRAIN_SEED) for g in fedsim.GATEWAYS]
    return sites, fedsim.union_test(2, 8), fedsim.base_model()


def _cfg(**kw) -> FederationConfig:
    c = FederationConfig(**{"max_steps": 50, "expected_updates": 3, "round_timeout_s": 30, "lr": 0.002, **kw})
    c.validate()
    return c


def _bodies(published):
    for topic, payload in published:
        env = cbor2.loads(payload)
        assert set(env) == {"body", "by", "tag"} and len(env["tag"]) == 16
        yield topic, env["by"], cbor2.loads(env["body"])


def test_federated_beats_local_only_and_no_raw_data_leaves(world, tmp_path):
    sites, union, base = world
    cfg = _cfg(aggregator="trimmed_mean")
    bus = InProcessBus()
    coord, members = fedsim.build(cfg, sites, base, {k: bus for k in [*fedsim.GATEWAYS, "coordinator"]}, tmp_path)
    rounds = 10
    try:
        for r in range(1, rounds + 1):
            res = run_round(coord, [bus], r, members)
            assert res.version == r + 1 and res.used == sorted(fedsim.GATEWAYS) and not res.refused
            assert set(res.results) == set(fedsim.GATEWAYS)
    finally:
        for m in members:
            m.close()
    for s, m in zip(sites, members):
        local = fedsim.f1(fedsim.local_only(base, s, cfg, rounds), union)
        fed = fedsim.f1(m.serving, union)
        assert fed > local + 0.03, (s.gw, local, fed)
        # adopted models went through the registry: CURRENT is the serving version
        cur = ModelRegistry(tmp_path / s.gw).current_dir()
        assert cur is not None and json.loads((cur / "manifest.json").read_text())["version"] == \
            m.serving.manifest["version"] > 1
        assert m.counters["rounds_trained"] == rounds
    # what crossed gateways: only the four message kinds, only their metadata fields and deltas
    assert len(bus.published) == rounds * (1 + 3 + 1 + 3)
    private = fedsim.private_triples([s.stats.reshape(-1, 6) for s in sites] + [s.data.X for s in sites])
    assert len(private) > 10000
    shapes = [list(p.shape) for p in fedlocal.params(fedlocal.net_from_onnx(base[1]))]
    for topic, by, body in _bodies(bus.published):
        rnd, kind, gw = fedwire.parse_topic(cfg.topic_prefix, topic)
        assert set(body) == ALLOWED[kind], (kind, set(body))
        if kind == "update":
            assert by == gw == body["gw"] and body["tensors"]["shapes"] == shapes
            leak = fedsim.leaked(cbor2.dumps({"body": cbor2.dumps(body)}), private)
            assert not leak, leak[:5]
        if kind == "model":
            man = json.loads(body["manifest"])
            assert man["training"]["federated"]["gateways"] == sorted(fedsim.GATEWAYS)
            assert set(man["training"]["federated"]) == {"round", "method", "base_version", "gateways", "samples"}


def _update(key, gw, base, rnd, deltas, n=100, base_version=None):
    body = {"round": rnd, "gw": gw, "base": base[0]["version"] if base_version is None else base_version,
            "base_sha": base[0]["sha256"], "n": n, "steps": 1, "tensors": fedwire.pack_tensors(deltas)}
    return fedwire.topic("fogline/fed", rnd, "update", gw), fedwire.seal(key, gw, "update", body)


def test_poisoned_forged_and_stale_updates_are_refused(world, tmp_path):
    sites, _union, base = world
    cfg = _cfg(aggregator="fedavg", expected_updates=0, max_steps=20)
    keys = fedsim.keys()
    bus = InProcessBus()
    coord, members = fedsim.build(cfg, sites, base, {k: bus for k in [*fedsim.GATEWAYS, "coordinator"]}, tmp_path,
                                  threaded=False)
    bad = {g: (g.encode() * 4)[:32] for g in ("gw-nan", "gw-inf", "gw-scaled", "gw-old")}
    coord.keys.update(bad)
    shapes = coord.lineage.shapes
    rng = np.random.default_rng(0)

    def attack(topic, _payload):
        rnd = fedwire.parse_topic("fogline/fed", topic)[0]
        small = [rng.normal(0, 1e-3, s) for s in shapes]
        nan = [d.copy() for d in small]
        nan[0][0, 0] = np.nan
        inf = [d.copy() for d in small]
        inf[-1][0] = np.inf
        for msg in (_update(bad["gw-nan"], "gw-nan", base, rnd, nan),
                    _update(bad["gw-inf"], "gw-inf", base, rnd, inf),
                    _update(bad["gw-scaled"], "gw-scaled", base, rnd, [d * 1e4 for d in small], n=10**6),
                    _update(bad["gw-old"], "gw-old", base, rnd, small, base_version=99),
                    _update(b"wrong key wrong key wrong key!!!", "gw-hot", base, rnd, small),  # forged as gw-hot
                    _update(b"unknown gateway key unknown gw!!", "gw-nobody", base, rnd, small)):
            bus.publish(*msg)

    bus.subscribe("fogline/fed/+/start", attack)
    res = run_round(coord, [bus], 1, members)
    assert res.used == sorted(fedsim.GATEWAYS) and res.version == 2
    assert "non-finite" in res.refused["gw-nan"] and "non-finite" in res.refused["gw-inf"]
    assert "norm" in res.refused["gw-scaled"]  # screened out before FedAvg could be pulled by it
    assert "base" in res.refused["gw-old"]
    assert "bad tag" in res.refused["gw-hot"]
    assert "unknown signer" in res.refused["gw-nobody"]
    new = load_bytes(coord.lineage.manifest, coord.lineage.data)  # finite, loadable, registry-grade
    assert all(np.all(np.isfinite(p)) for p in fedlocal.params(fedlocal.net_from_onnx(coord.lineage.data)))
    assert new.manifest["version"] == 2 and keys["coordinator"]


def test_robust_aggregators_neutralise_a_scaled_update():
    rng = np.random.default_rng(1)
    honest = [fedavg.Update(f"g{i}", [rng.normal(0.01, 0.002, (8, 4)), rng.normal(0, 0.002, 4)], 100 + i)
              for i in range(4)]
    poison = fedavg.Update("evil", [d * -500.0 for d in honest[0].deltas], 10**6)
    lo = [np.min(np.stack([u.deltas[k] for u in honest]), axis=0) for k in range(2)]
    hi = [np.max(np.stack([u.deltas[k] for u in honest]), axis=0) for k in range(2)]
    plain = fedavg.aggregate(honest + [poison], "fedavg")
    assert np.abs(plain[0]).max() > 1.0  # what a naive FedAvg would ship
    for method in ("median", "trimmed_mean"):
        agg = fedavg.aggregate(honest + [poison], method, trim=0.2)
        for k in range(2):
            assert np.all(agg[k] >= lo[k] - 1e-12) and np.all(agg[k] <= hi[k] + 1e-12), method
    kept, dropped = fedavg.screen(honest + [poison], 5.0)
    assert [u.gateway for u in kept] == [u.gateway for u in honest] and dropped[0][0] == "evil"
    w = fedavg.aggregate(honest, "fedavg")  # weighted by sample counts
    n = np.array([u.samples for u in honest], float)
    assert np.allclose(w[0], sum(u.deltas[0] * c for u, c in zip(honest, n)) / n.sum())
    for bad in (np.nan, np.inf, -np.inf):
        d = [x.copy() for x in honest[0].deltas]
        d[1][2] = bad
        with pytest.raises(fedavg.UpdateRefused, match="non-finite"):
            fedavg.check_update(fedavg.Update("x", d, 10), [(8, 4), (4,)])
    with pytest.raises(fedavg.UpdateRefused, match="shapes"):
        fedavg.check_update(fedavg.Update("x", [np.zeros((4, 8)), np.zeros(4)], 10), [(8, 4), (4,)])
    with pytest.raises(fedavg.UpdateRefused, match="sample count"):
        fedavg.check_update(fedavg.Update("x", honest[0].deltas, 0), [(8, 4), (4,)])


def test_wire_signatures():
    k = b"k" * 16
    p = fedwire.seal(k, "gw-a", "update", {"round": 1, "gw": "gw-a"})
    assert fedwire.open_({"gw-a": k}, p, "update")[1]["gw"] == "gw-a"
    env = cbor2.loads(p)
    for tamper in ({**env, "body": env["body"].replace(b"gw-a", b"gw-b")}, {**env, "by": "gw-b"}):
        with pytest.raises(fedwire.FedRefused):
            fedwire.open_({"gw-a": k, "gw-b": b"x" * 16}, cbor2.dumps(tamper), "update")
    with pytest.raises(fedwire.FedRefused, match="bad tag"):  # a signed update cannot pass as a model
        fedwire.open_({"gw-a": k}, p, "model")
    for junk in (b"", b"\xff\x00", cbor2.dumps([1, 2]), b"x" * (fedwire.MAX_PAYLOAD + 1)):
        with pytest.raises(fedwire.FedRefused):
            fedwire.open_({"gw-a": k}, junk, "update")
    t = [np.linspace(-0.01, 0.01, 12).reshape(3, 4), np.array([1e6, -2.5e-3])]
    h, f = fedwire.pack_tensors(t, "float16"), fedwire.pack_tensors(t)
    assert sum(map(len, h["data"])) * 2 == sum(map(len, f["data"]))
    back = fedwire.unpack_tensors(cbor2.loads(cbor2.dumps(h)))
    assert np.allclose(back[0], t[0], atol=1e-5) and back[1][0] == 65504.0  # clipped, not inf
    with pytest.raises(fedwire.FedRefused, match="dtype"):
        fedwire.unpack_tensors({**h, "dtype": "int8"})
    with pytest.raises(fedwire.FedRefused, match="size"):
        fedwire.unpack_tensors({"shapes": [[2, 2]], "data": [b"\x00" * 12]})


def _member(world, tmp_path, **kw):
    sites, _union, base = world
    keys = fedsim.keys()
    bus = InProcessBus()
    reg = ModelRegistry(tmp_path / "reg")
    m = Member(_cfg(**kw), "gw-mild", keys["gw-mild"], {"coordinator": keys["coordinator"]}, sites[2].data, base,
               bus, install=registry_installer(reg), threaded=False)
    return m, bus, reg, base, keys


def test_member_refuses_forged_or_stale_messages_and_gates_worse_models(world, tmp_path):
    m, bus, reg, base, keys = _member(world, tmp_path)
    man, data = base
    # start on another base version: no training, nothing sent
    bus.publish("fogline/fed/1/start", fedwire.seal(keys["coordinator"], "coordinator", "start",
                                                    {"round": 1, "base": 7, "base_sha": "00"}))
    bus.pump_once()
    assert m.counters["refused"] == 1 and m.counters["rounds_trained"] == 0
    assert [t for t, _ in bus.published] == ["fogline/fed/1/start"]
    # a worse candidate (output layer negated: scores inverted), properly signed: evaluated, not adopted
    net = fedlocal.net_from_onnx(data)
    net.W[-1] = -net.W[-1]
    net.b[-1] = -net.b[-1]
    wman, wdata = fedlocal.export(net, man, 2, {"method": "test"})
    body = {"round": 2, "base": 1, "version": 2, "manifest": json.dumps(wman), "model": wdata, "used": [],
            "refused": {}}
    forged = fedwire.seal(b"not the coordinator's key!!!!!!!", "coordinator", "model", body)
    m.on_message("fogline/fed/2/model", forged)
    assert m.counters["refused"] == 2 and reg.current_dir() is None and m.lineage.version == 1
    m.on_message("fogline/fed/2/model", fedwire.seal(keys["coordinator"], "coordinator", "model", body))
    assert m.results[2]["adopted"] is False and m.results[2]["score_candidate"] < m.results[2]["score_current"]
    assert reg.current_dir() is None and m.serving.manifest["version"] == 1
    assert m.lineage.version == 2  # the next round trains from the global model anyway
    # the same model again (replay) does not increase the version: refused
    m.on_message("fogline/fed/2/model", fedwire.seal(keys["coordinator"], "coordinator", "model", body))
    assert m.counters["refused"] == 3 and "base" in m.last_error


def test_local_round_is_bounded(world):
    sites, _union, base = world
    net = fedlocal.net_from_onnx(base[1])
    x, y = sites[1].data.X, sites[1].data.y
    from fogline.gateway.inference.features import normalise
    xn = normalise(x, base[0]["normalisation"]["mean"], base[0]["normalisation"]["std"])
    d, info = fedlocal.fine_tune(net, xn, y, max_steps=5, max_seconds=60, max_samples=300, batch=32)
    assert info["steps"] == 5 and info["samples"] == 300
    assert [a.shape for a in d] == [p.shape for p in fedlocal.params(net)] and fedavg.norm(d) > 0
    d0, info0 = fedlocal.fine_tune(net, xn, y, max_steps=10**6, max_seconds=1e-9, max_samples=10**6)
    assert info0["steps"] == 0 and fedavg.norm(d0) == 0.0
    shipped = fedlocal.net_from_onnx(Path(fedsim.BUNDLED_DIR) / "fogline-anomaly-v1.onnx")
    assert shipped.masks is not None  # pruned shipped model: fine-tuning keeps pruned weights at zero
    d2, _ = fedlocal.fine_tune(shipped, xn, y, max_steps=3, max_seconds=60, max_samples=500)
    assert all(np.all(dw[m == 0] == 0) for dw, m in zip(d2[0::2], shipped.masks))


def test_config_section_and_cli(tmp_path, capsys):
    from fogline.gateway import config as gconfig
    from fogline.tools.cli import main

    p = tmp_path / "gw.toml"
    p.write_text('[federation]\naggregator = "median"\npeer_keys = { gw-b = "00112233445566778899aabbccddeeff" }\n')
    fc = gconfig.load(p).section("federation")
    assert isinstance(fc, FederationConfig) and fc.aggregator == "median" and "gw-b" in fc.peer_keys
    p.write_text('[federation]\naggregator = "mean-ish"\n')
    with pytest.raises(ValueError, match="federation.aggregator"):
        gconfig.load(p)
    assert main(["federate", "--simulate", "--rounds", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["version"] for r in out["rounds"]] == [2, 3] and set(out["f1_federated"]) == set(fedsim.GATEWAYS)


def test_adopted_model_is_hot_swapped_into_the_inference_engine(world, tmp_path):
    from fogline.gateway.federation.coord import Coordinator
    from fogline.gateway.federation.core import engine_installer
    from fogline.gateway.inference.core import InferenceConfig, InferenceEngine
    from fogline.tools import datagen

    sites, _union, base = world
    keys = fedsim.keys()
    eng = InferenceEngine(InferenceConfig(registry_dir=str(tmp_path / "models")), data_dir=tmp_path)
    eng.start()
    bus = InProcessBus()
    cfg = _cfg(expected_updates=1, min_updates=1, adopt_margin=1.0)  # margin 1: adopt whatever comes
    coord = Coordinator(cfg, "coordinator", keys["coordinator"], {"gw-mild": keys["gw-mild"]}, base, bus)
    m = Member(cfg, "gw-mild", keys["gw-mild"], {"coordinator": keys["coordinator"]}, sites[2].data, base, bus,
               install=engine_installer(eng), threaded=False)
    res = run_round(coord, [bus], 1, [m])
    assert res.version == 2 and m.results[1]["adopted"] is True
    assert eng.model.ident == "fogline-anomaly@v2" and eng.model.manifest["variant"] == "fed-trimmed_mean"
    assert eng.registry.current_dir().name.startswith("fogline-anomaly-v2-")
    ds = datagen.make_split("test", quick=True)
    decisions = eng.submit_many([w for ws in datagen.window_sets(ds)[:50] for w in ws])
    assert decisions and all(d.model == "fogline-anomaly@v2" for d in decisions)


def test_signed_but_malformed_messages_are_refused_not_raised(world, tmp_path):
    from fogline.gateway.federation import bus as fedbus
    from fogline.gateway.federation.coord import Coordinator

    m, bus, reg, base, keys = _member(world, tmp_path)
    coord = Coordinator(_cfg(), "coordinator", keys["coordinator"], {"gw-mild": keys["gw-mild"]}, base, bus)
    coord.start_round(1)
    ok = fedwire.pack_tensors([np.zeros(s) for s in coord.lineage.shapes])
    weird = [None, "x", 3.5, [], {}, {"shapes": "x", "data": 1}, {"shapes": [[2]], "data": ["x"]}, [[1]]]
    sent = 0
    for w in weird:
        for field in ("tensors", "n", "base_sha", "steps"):
            body = {"round": 1, "gw": "gw-mild", "base": 1, "base_sha": base[0]["sha256"], "n": 5, "steps": 1,
                    "tensors": ok, field: w}
            bus.publish("fogline/fed/1/update/gw-mild", fedwire.seal(keys["gw-mild"], "gw-mild", "update", body))
            sent += 1
        for field in ("manifest", "model", "base"):
            body = {"round": 2, "base": 1, "version": 2, "manifest": json.dumps(w), "model": b"x", "used": [],
                    "refused": {}, field: w}
            bus.publish("fogline/fed/2/model", fedwire.seal(keys["coordinator"], "coordinator", "model", body))
            sent += 1
    before = fedbus.handler_errors
    bus.pump_once()
    assert fedbus.handler_errors == before  # every one was refused by the handlers themselves
    # every forged-shape update refused; only the member's own real update (sent on start) went in
    assert coord.counters["refused"] == len(weird) * 4 and coord.counters["updates"] == 1
    assert m.counters["refused"] == len(weird) * 3 and reg.current_dir() is None
