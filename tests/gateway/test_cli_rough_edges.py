"""Operator CLI edges: `fogline status` without data, `fogline model build` help and its default --out."""

from __future__ import annotations

import pytest

from fogline.tools.cli import main as cli
from fogline.gateway.inference.registry import BUNDLED_DIR


def test_status_without_a_data_dir_says_so_and_fails(tmp_path, capsys):
    for extra in ([], ["--json"]):
        assert cli(["status", "--data-dir", str(tmp_path / "nothing-here"), *extra]) == 1
        cap = capsys.readouterr()
        assert "no gateway data in" in cap.err and "--data-dir" in cap.err and cap.out == ""


def test_model_build_documents_its_options_and_never_overwrites_the_shipped_model(capsys):
    with pytest.raises(SystemExit):
        cli(["model", "build", "--help"])
    out = capsys.readouterr().out
    for opt, word in (("--quick", "seconds"), ("--seed", "default: 7"), ("--version", "manifest"),
                      ("--out", "default: fogline-data/models/build")):
        assert opt in out and word in out, (opt, word)
    before = {p.name: p.read_bytes() for p in BUNDLED_DIR.iterdir() if p.is_file()}
    assert cli(["model", "build", "--quick", "--out", str(BUNDLED_DIR)]) == 2
    assert "--replace-bundled" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in BUNDLED_DIR.iterdir() if p.is_file()} == before


def test_model_build_default_out_is_outside_the_repo_model(tmp_path, monkeypatch, capsys):
    before = {p.name: p.read_bytes() for p in BUNDLED_DIR.iterdir() if p.is_file()}
    monkeypatch.chdir(tmp_path)
    assert cli(["model", "build", "--quick"]) == 0
    out = tmp_path / "fogline-data" / "models" / "build"
    assert (out / "manifest.json").is_file()
    assert {p.name: p.read_bytes() for p in BUNDLED_DIR.iterdir() if p.is_file()} == before
    assert cli(["model", "verify", str(out)]) == 0
