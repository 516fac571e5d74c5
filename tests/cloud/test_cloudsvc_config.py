"""`fogline cloud` config: the shipped example is every default; bad fields are named."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest

from fogline.tools.cli import main as cli
from fogline.gateway.cloudsvc import config as cfg_mod

EXAMPLE = Path(__file__).resolve().parents[2] / "gateway" / "examples" / "cloud.toml"


def test_example_config_is_the_defaults():
    assert asdict(cfg_mod.load(EXAMPLE)) == asdict(cfg_mod.from_dict({}))


@pytest.mark.parametrize("raw, field", [
    ({"cloud": {"db": {"dsnn": "x"}}}, "cloud.db.dsnn"),
    ({"cloud": {"broker": {"lanes": ["up"]}}}, "cloud.broker.lanes"),
    ({"cloud": {"broker": {"group": "a/b"}}}, "cloud.broker.group"),
    ({"cloud": {"http": {"tokens": {"s1": "t", "s2": "t"}}}}, "cloud.http.tokens"),
    ({"cloud": {"queue": {}}}, "cloud.queue"),
])
def test_bad_fields_are_named(raw, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        cfg_mod.from_dict(raw)


def test_cli_refuses_a_bad_config(tmp_path, capsys):
    p = tmp_path / "cloud.toml"
    p.write_text('[cloud.db]\nbatch_max = 0\n')
    assert cli(["cloud", "--config", str(p)]) == 2
    assert "cloud.db.batch_max" in capsys.readouterr().err
