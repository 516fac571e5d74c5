"""Model registry and reload: bad models refused with the previous one serving; downloads; hot reload."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import http.server
import json
import shutil
import threading
from pathlib import Path

import cbor2
import numpy as np
import pytest

from fogline.gateway.aggregate.core import Window
from fogline.gateway.inference.core import Decision, InferenceConfig, InferenceEngine, model_topic
from fogline.gateway.inference import signing as model_sign
from fogline.gateway.inference.registry import BUNDLED_DIR, ModelError, load_model
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

onnx = pytest.importorskip("onnx")


SIGNING = Ed25519PrivateKey.generate()  # the model publisher's key; engines trust its public half


def signing_pub(tmp_path: Path) -> str:
    p = tmp_path / "model-signing.pub"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(SIGNING.public_key().public_bytes(serialization.Encoding.PEM,
                                                    serialization.PublicFormat.SubjectPublicKeyInfo))
    return str(p)


def copy_model(dst: Path, version: int | None = None, signed: bool = True) -> Path:
    shutil.copytree(BUNDLED_DIR, dst)
    man = json.loads((dst / "manifest.json").read_text())
    if version is not None:
        man["version"] = version
    if signed:
        man = model_sign.sign(man, SIGNING)
    (dst / "manifest.json").write_text(json.dumps(man))
    return dst


def rewrite(d: Path, data: bytes, fix_hash: bool = True, **changes) -> Path:
    man = json.loads((d / "manifest.json").read_text())
    (d / man["file"]).write_bytes(data)
    if fix_hash:
        man["sha256"] = hashlib.sha256(data).hexdigest()
    man.update(changes)
    (d / "manifest.json").write_text(json.dumps(man))
    return d


def tiny_graph(n_in: int, n_out: int) -> bytes:
    from onnx import TensorProto, helper, numpy_helper
    w = numpy_helper.from_array(np.full((n_in, n_out), 0.01, np.float32), "W")
    g = helper.make_graph([helper.make_node("MatMul", ["features", "W"], ["z"]),
                           helper.make_node("Sigmoid", ["z"], ["score"])], "bad",
                          [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", n_in])],
                          [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N", n_out])], initializer=[w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m.SerializeToString()


def sets(node: str, n: int, start0: float = 0.0):
    for k in range(n):
        s = start0 + 60.0 * k
        yield [Window(node, m, s, s + 60.0, 60, v - 0.2, v + 0.2, v, v, sd) for m, v, sd in
               (("temperature", 21.0, 0.07), ("humidity", 45.0, 0.3), ("pressure", 1012.0, 0.05),
                ("vibration", 0.2, 0.008))]


def started(tmp_path, out=None, **kw) -> InferenceEngine:
    kw.setdefault("model_keys", [signing_pub(tmp_path)])
    e = InferenceEngine(InferenceConfig(registry_dir=str(tmp_path / "reg"), **kw),
                        sink=(out.extend if out is not None else None))
    e.start()
    return e


BAD = {
    "missing_manifest": (lambda d: (d / "manifest.json").unlink(), "missing manifest.json"),
    "hash_mismatch": (lambda d: rewrite(d, (d / json.loads((d / "manifest.json").read_text())["file"])
                                        .read_bytes()[:-1] + b"\x00", fix_hash=False), "sha256 mismatch"),
    "corrupt_file": (lambda d: rewrite(d, b"\x08\x07garbage-not-onnx" * 20), "onnxruntime refused"),
    "wrong_output_shape": (lambda d: rewrite(d, tiny_graph(36, 2)), "output shape"),
    "wrong_input_shape": (lambda d: rewrite(d, tiny_graph(5, 1)), "input shape"),
    "model_file_missing": (lambda d: (d / json.loads((d / "manifest.json").read_text())["file"]).unlink(),
                           "is missing"),
    "manifest_not_json": (lambda d: (d / "manifest.json").write_text("{nope"), "not valid JSON"),
    "manifest_field_missing": (lambda d: rewrite(d, (d / json.loads((d / "manifest.json").read_text())["file"])
                                                 .read_bytes(), threshold=None) and _drop(d, "threshold"),
                               "missing field"),
}


def _drop(d: Path, key: str) -> Path:
    man = json.loads((d / "manifest.json").read_text())
    man.pop(key)
    (d / "manifest.json").write_text(json.dumps(man))
    return d


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_model_is_refused_and_previous_keeps_serving(tmp_path, case):
    out: list[Decision] = []
    e = started(tmp_path, out)
    before = e.model
    bad = copy_model(tmp_path / "bad", version=2)
    breaker, msg = BAD[case]
    breaker(bad)
    with pytest.raises(ModelError, match=msg):
        e.load(bad)
    assert e.model is before and e.counters["model_rejected"] == 1 and msg.split()[0] in e.last_error
    for s in sets("n", 3):
        e.submit_many(s)
    e.flush(force=True)
    assert len(out) == 3 and {d.model for d in out} == {"fogline-anomaly@v1"}


def test_install_switches_current_and_survives_restart(tmp_path):
    e = started(tmp_path)
    v2 = copy_model(tmp_path / "v2", version=2)
    e.install(*_fetch(v2))
    assert e.model.ident == "fogline-anomaly@v2"
    assert (tmp_path / "reg" / "CURRENT").read_text().strip().startswith("fogline-anomaly-v2-")
    assert started(tmp_path).model.ident == "fogline-anomaly@v2"  # a restart loads CURRENT
    with pytest.raises(ModelError, match="not newer"):
        e.install(*_fetch(copy_model(tmp_path / "v1b", version=1)))
    assert e.model.ident == "fogline-anomaly@v2"


def _fetch(d: Path):
    man = json.loads((d / "manifest.json").read_text())
    return man, (d / man["file"]).read_bytes()


def test_model_message_cbor(tmp_path):
    e = started(tmp_path)
    man, data = _fetch(copy_model(tmp_path / "v3", version=3))
    assert e.handle_model_message(b"\xff\x00 not cbor") is False
    assert e.handle_model_message(cbor2.dumps({"manifest": man})) is False
    assert e.handle_model_message(cbor2.dumps({"manifest": man, "model": data[:-3]})) is False  # hash
    assert e.model.ident == "fogline-anomaly@v1" and e.counters["model_rejected"] == 3
    assert e.handle_model_message(cbor2.dumps({"manifest": json.dumps(man), "model": data})) is True
    assert e.model.ident == "fogline-anomaly@v3"
    assert e.handle_model_message(cbor2.dumps({"manifest": man, "model": data})) is False  # same again: no-op
    assert e.counters["model_rejected"] == 3


def test_model_from_url_at_start(tmp_path):
    served = copy_model(tmp_path / "www", version=4)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a: None  # type: ignore[assignment]
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/manifest.json"
        e = started(tmp_path, model_url=url)
        assert e.model.ident == "fogline-anomaly@v4"
        bad = started(tmp_path / "other", model_url=f"http://127.0.0.1:{srv.server_address[1]}/nope/")
        assert bad.model.ident == "fogline-anomaly@v1" and "download failed" in bad.last_error
    finally:
        srv.shutdown()


def test_model_published_on_the_cloud_topic_is_installed(tmp_path, mosquitto):
    import paho.mqtt.client as mqtt
    from fogline.gateway.relay.cloud import CloudConfig, CloudLink

    e = started(tmp_path)
    man, data = _fetch(copy_model(tmp_path / "v5", version=5))

    async def main() -> None:
        link = CloudLink(CloudConfig(host="127.0.0.1", port=mosquitto.port, tls=False, allow_plaintext=True,
                                     client_id="gw-model-test"))
        link.subscribe(model_topic("site1"), lambda _t, p: e.handle_model_message(p))
        await link.start()
        assert await link.wait_connected(10)
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="cloud-side")
        pub.connect("127.0.0.1", mosquitto.port)
        pub.loop_start()
        pub.publish(model_topic("site1"), cbor2.dumps({"manifest": man, "model": data}), qos=1, retain=True).wait_for_publish(5)
        for _ in range(200):
            if e.model.ident.endswith("v5"):
                break
            await asyncio.sleep(0.02)
        pub.loop_stop()
        pub.disconnect()
        await link.stop()

    asyncio.run(main())
    assert e.model.ident == "fogline-anomaly@v5"


def test_hot_reload_under_load_scores_every_set_exactly_once(tmp_path):
    out: list[Decision] = []
    lock = threading.Lock()

    def sink(ds):
        with lock:
            out.extend(ds)

    e = InferenceEngine(InferenceConfig(registry_dir=str(tmp_path / "reg"), model_keys=[signing_pub(tmp_path)]),
                        sink=sink)
    e.start()
    dirs = [copy_model(tmp_path / f"v{v}", version=v) for v in (2, 3)]
    bad = copy_model(tmp_path / "bad", version=9)
    rewrite(bad, b"corrupt" * 50)
    nodes, per_node = 24, 50
    done = threading.Event()
    loads = {"ok": 0, "refused": 0}

    def feeder(names):
        for name in names:
            for s in sets(name, per_node):
                e.submit_many(s[:2])
                e.submit_many(s[2:])

    def reloader():
        k = 0
        while not done.is_set():
            try:
                e.load(dirs[k % 2] if k % 3 else bad)
                loads["ok"] += 1
            except ModelError:
                loads["refused"] += 1
            k += 1

    names = [f"n{i}" for i in range(nodes)]
    feeders = [threading.Thread(target=feeder, args=(names[i::2],)) for i in range(2)]
    r = threading.Thread(target=reloader)
    r.start()
    for f in feeders:
        f.start()
    for f in feeders:
        f.join(600)  # a generous cap: a loaded host is slow, a hang is what this catches
    done.set()
    r.join(120)
    assert not any(t.is_alive() for t in (*feeders, r)), "feeding or reloading hung"
    e.flush(force=True)
    keys = [(d.node, d.start) for d in out]
    assert len(keys) == len(set(keys)) == nodes * per_node, "a set was skipped or scored twice"
    assert all(len(d.windows) == 4 for d in out)
    assert e.counters["windows_late"] == 0 and e.counters["windows_duplicate"] == 0
    assert loads["ok"] >= 2 and loads["refused"] >= 1, loads
    assert len({d.model for d in out}) >= 2, "reloads happened while scoring"


def test_registry_cleanup_removes_torn_installs_and_old_versions(tmp_path):
    e = started(tmp_path, keep_versions=2)
    for v in (2, 3, 4):
        e.install(*_fetch(copy_model(tmp_path / f"v{v}", version=v)))
    reg = tmp_path / "reg"
    (reg / ".incoming-crashed").mkdir()
    (reg / ".incoming-crashed" / "half.onnx").write_bytes(b"\x00" * 10)
    again = started(tmp_path, keep_versions=2)  # a restart cleans up
    assert again.model.ident == "fogline-anomaly@v4"
    names = sorted(p.name.split("-")[2] for p in reg.glob("fogline-anomaly-v*"))
    assert names == ["v3", "v4"] and not list(reg.glob(".incoming-*"))


def test_unsigned_forged_or_untrusted_models_are_refused(tmp_path):
    # A model from the cloud topic or a URL needs a signature by a trusted model key (the sha256 in the
    # manifest only proves the file matches the manifest, not who made it).
    e = started(tmp_path)
    cases = {"unsigned": _fetch(copy_model(tmp_path / "u", version=6, signed=False)),
             "untrusted": (model_sign.sign(_fetch(copy_model(tmp_path / "o", version=6, signed=False))[0],
                                           Ed25519PrivateKey.generate()), _fetch(tmp_path / "o")[1])}
    man, data = _fetch(copy_model(tmp_path / "f", version=6))
    cases["forged"] = (dict(man, threshold=0.99), data)                     # changed after signing
    want = {"unsigned": "not signed", "untrusted": "not a trusted model key", "forged": "does not verify"}
    for why, (m, d) in cases.items():
        assert e.handle_model_message(cbor2.dumps({"manifest": m, "model": d})) is False, why
        assert want[why] in e.last_error, (why, e.last_error)
    assert e.model.ident == "fogline-anomaly@v1" and e.counters["model_rejected"] == 3
    assert e.handle_model_message(cbor2.dumps({"manifest": man, "model": data})) is True
    opt_out = started(tmp_path / "optout", require_signed_models=False)     # an operator's explicit choice
    assert opt_out.handle_model_message(cbor2.dumps({"manifest": cases["unsigned"][0], "model": data})) is True


@pytest.mark.parametrize("name", ["../../escaped", "a/b", "..", ".hidden", "", "x" * 65, 7])
def test_model_name_cannot_leave_the_registry(tmp_path, name):
    from fogline.gateway.inference.registry import ModelRegistry
    man, data = _fetch(copy_model(tmp_path / "m", version=2, signed=False))
    reg = ModelRegistry(tmp_path / "reg")
    with pytest.raises(ModelError, match="manifest.name"):
        reg.install(dict(man, name=name), data)
    assert list(tmp_path.parent.glob("escaped*")) == []  # where reg/../../escaped would land
    e = started(tmp_path / "e")
    signed = model_sign.sign(dict(man, name=name), SIGNING)
    assert e.handle_model_message(cbor2.dumps({"manifest": signed, "model": data})) is False
    assert "manifest.name" in e.last_error and list(tmp_path.rglob("escaped*")) == []


def test_cli_keygen_sign_install(tmp_path, capsys):
    from fogline.tools.cli import main
    keys = tmp_path / "keys"
    assert main(["model", "keygen", "--out", str(keys)]) == 0
    assert (keys / "model-signing.key").stat().st_mode & 0o077 == 0
    d = copy_model(tmp_path / "m", version=7, signed=False)
    data_dir = tmp_path / "data"
    assert main(["model", "install", str(d), "--data-dir", str(data_dir)]) == 1       # unsigned: refused
    assert "not signed" in capsys.readouterr().err
    assert main(["model", "sign", str(d), "--key", str(keys / "model-signing.key")]) == 0
    assert main(["model", "install", str(d), "--data-dir", str(data_dir)]) == 1       # key not trusted
    assert main(["model", "install", str(d), "--data-dir", str(data_dir), "--key", str(keys / "model-signing.pub")]) == 0
    assert (data_dir / "models" / "CURRENT").read_text().startswith("fogline-anomaly-v7-")
