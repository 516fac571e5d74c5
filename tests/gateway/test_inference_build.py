"""Model builder and data generator: reproducible, honest splits, committed model = its manifest."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

pytest.importorskip("onnx")

from fogline.gateway.inference import features as F  # noqa: E402
from fogline.gateway.aggregate.core import Aggregator  # noqa: E402
from fogline.gateway.inference.registry import BUNDLED_DIR, load_model  # noqa: E402
from fogline.tools import build_model, datagen  # noqa: E402


def _digest(v) -> dict:
    return {x.name: (x.threshold, x.val, x.test) for x in v}


def test_quick_build_same_seed_same_metrics_and_bytes(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    v1, _ = build_model.build(7, True, tmp_path / "a", lat_runs=20, log=lambda *a: None)
    v2, _ = build_model.build(7, True, tmp_path / "b", lat_runs=20, log=lambda *a: None)
    assert [x.name for x in v1] == [x.name for x in v2]
    assert _digest(v1) == _digest(v2)
    for a, b in zip(v1, v2):
        if "int8" not in a.name:  # FP32 exports are byte-identical; quantised ones are checked by metrics
            assert a.path.read_bytes() == b.path.read_bytes(), a.name
    names = {x.name for x in v1}
    assert {"mlp-fp32", "mlp-int8dyn", "mlp-int8static", "mlp-pruned70-fp32", "student-fp32", "ae-fp32"} <= names


def test_other_seed_gives_other_weights(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    v1, _ = build_model.build(7, True, tmp_path / "a", lat_runs=10, log=lambda *a: None)
    v2, _ = build_model.build(8, True, tmp_path / "b", lat_runs=10, log=lambda *a: None)
    assert v1[0].path.read_bytes() != v2[0].path.read_bytes()


def test_build_main_writes_a_loadable_model_dir(tmp_path, capsys):
    assert build_model.main(["--quick", "--out", str(tmp_path), "--lat-runs", "20", "--version", "3"]) == 0
    out = capsys.readouterr().out
    assert "<- default" in out and "b1 p99" in out
    json.loads(out.strip().splitlines()[-1])  # last line is the JSON result
    m = load_model(tmp_path)
    assert m.manifest["version"] == 3 and m.ident == "fogline-anomaly@v3"
    assert m.manifest["input"]["features"] == F.feature_names()


def test_committed_model_matches_its_manifest():
    man = json.loads((BUNDLED_DIR / "manifest.json").read_text())
    data = (BUNDLED_DIR / man["file"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == man["sha256"]
    assert len(data) == man["size"] and len(data) < 64 * 1024
    for alt in man.get("alternates", []):
        assert hashlib.sha256((BUNDLED_DIR / alt["file"]).read_bytes()).hexdigest() == alt["sha256"]
    m = load_model(BUNDLED_DIR)
    assert m.manifest["input"]["features"] == F.feature_names()
    assert m.manifest["features"]["metrics"] == list(F.DEFAULT_METRICS)
    assert 0 < m.threshold < 1 and 0 < m.confidence_min <= 1


def test_splits_use_disjoint_seeds_and_test_has_an_unseen_mix():
    spans = {n: range(first, first + nodes) for n, (first, nodes, _h, _m) in datagen.SPLITS.items()}
    assert not set(spans["train"]) & set(spans["test"]) and not set(spans["val"]) & set(spans["test"])
    assert not set(spans["train"]) & set(spans["val"])
    assert "stuck_pair" in datagen.TEST_MIX["weights"] and "stuck_pair" not in datagen.TRAIN_MIX["weights"]
    te = datagen.make_split("test", quick=True)
    tr = datagen.make_split("train", quick=True)
    assert 0 < te.y.mean() < 0.5 and 0 < tr.y.mean() < 0.5
    assert te.X.shape[1] == len(F.feature_names())
    again = datagen.make_split("test", quick=True)
    assert np.array_equal(np.nan_to_num(te.X), np.nan_to_num(again.X)) and np.array_equal(te.y, again.y)


def test_generator_window_stats_equal_the_gateway_aggregator():
    rng = np.random.default_rng(3)
    x = rng.normal(20, 0.5, 600)
    x[rng.random(600) < 0.3] = np.nan  # dropouts
    x[120:180] = np.nan  # one window with no reading at all
    t0 = 1_767_225_600
    got = []
    agg = Aggregator([60.0], 5.0, got.append)
    for i, v in enumerate(x):
        if not np.isnan(v):
            agg.add("n1", "temperature", "Cel", float(v), t0 + i, 0.0)
    agg.flush()
    ref = datagen.window_stats(x.reshape(10, 60))
    by_start = {int(w.start - t0) // 60: w for w in got}
    assert set(by_start) == {i for i in range(10) if not np.isnan(ref[i, 0])}
    for i, w in by_start.items():
        np.testing.assert_allclose(F.window_stats(w), ref[i], rtol=1e-9, atol=1e-12)
