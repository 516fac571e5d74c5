"""The gateway and cloud service configs: unknown sections and keys are refused naming them, old key names
are read with a warning, and loading a config imports none of the heavy dependencies."""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from fogline.gateway import config
from fogline.gateway.cloudsvc import config as cloud_config
from fogline.tools.cli import main as cli

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("numpy", "onnxruntime", "onnx", "paho", "cryptography", "cbor2", "bleak", "psycopg")


def _load(tmp_path: Path, text: str) -> config.Config:
    p = tmp_path / "gateway.toml"
    p.write_text(text)
    return config.load(p)


def test_an_unknown_section_is_refused_naming_it(tmp_path):
    with pytest.raises(config.ConfigError, match=r"^\[clod\]: unknown section \(did you mean \[cloud\]\?\)$"):
        _load(tmp_path, "[clod]\nenabled = true\n")
    with pytest.raises(config.ConfigError, match=r"^\[zzz\]: unknown section \(known: \[site\], \[mqtt\]"):
        _load(tmp_path, "[zzz]\nx = 1\n")
    with pytest.raises(config.ConfigError, match=r"^\[infrence\]: unknown section \(did you mean \[inference\]\?\)$"):
        config.from_dict({"infrence": {}})


def test_the_gateway_command_refuses_an_unknown_section_and_says_which(tmp_path, capsys):
    p = tmp_path / "gateway.toml"
    p.write_text(f'[site]\ndata_dir = "{tmp_path / "data"}"\n[clod]\nenabled = true\n')
    assert cli(["gateway", "--config", str(p)]) == 2
    assert "config error: [clod]: unknown section (did you mean [cloud]?)" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()


def test_an_unknown_key_is_refused_naming_it(tmp_path):
    with pytest.raises(config.ConfigError, match=r"^inference\.enabld: unknown key \(did you mean enabled\?\)$"):
        _load(tmp_path, "[inference]\nenabld = true\n")
    with pytest.raises(config.ConfigError, match=r"^cloud\.bandwidth\.low_kpbs: unknown key \(did you mean low_kbps\?\)"):
        _load(tmp_path, "[cloud.bandwidth]\nlow_kpbs = 5\n")
    with pytest.raises(config.ConfigError, match=r"^cluster\.zzz: unknown key \(known: enabled, heartbeat_s"):
        _load(tmp_path, "[cluster]\nzzz = 1\n")


def test_a_section_check_failing_is_a_config_error_naming_the_field(tmp_path):
    # the sections' own checks raise ValueError; `fogline gateway` reports only ConfigError as a config error
    for text, field in (("[cloud]\nport = 0\n", "cloud.port"), ("[federation]\naggregator = 'mean'\n",
                                                               "federation.aggregator"),
                        ("[outbox.lanes.raw]\nwhen_full = 'drop'\n", "outbox.lanes.raw.when_full"),
                        ("[cluster]\nheartbeat_s = 5\n", "cluster.dead_after_s"),
                        ("[inference]\nwindow_s = 'x'\n", "inference.window_s")):
        with pytest.raises(config.ConfigError, match="^" + field.replace(".", r"\.")):
            _load(tmp_path, text)


def test_without_numpy_an_inference_typo_is_still_refused(tmp_path):
    """The bug this fixes: with numpy missing, [inference] became an unchecked dict and the typo passed."""
    p = tmp_path / "gateway.toml"
    p.write_text("[inference]\nenabld = true\n")
    code = ("import sys\n"
            "for m in ('numpy', 'onnxruntime', 'onnx'): sys.modules[m] = None  # import fails as if absent\n"
            "from fogline.gateway import config\n"
            f"try:\n    config.load({str(p)!r})\nexcept config.ConfigError as e:\n    print('refused:', e)\n"
            "print(type(config.load(None).inference).__name__)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.splitlines() == ["refused: inference.enabld: unknown key (did you mean enabled?)", "InferenceConfig"]


def test_loading_a_config_imports_no_heavy_dependency():
    code = ("import json, sys\n"
            "from fogline.gateway import config\n"
            "from fogline.gateway.cloudsvc import config as cloud_config\n"
            f"cfg = config.load({str(REPO / 'gateway/examples/gateway.toml')!r})\n"
            f"cloud_config.load({str(REPO / 'gateway/examples/cloud.toml')!r})\n"
            "print(json.dumps({'sections': sorted(config.SECTIONS), "
            "'typed': all(not isinstance(cfg.section(n), dict) for n in config.SECTIONS), "
            f"'heavy': sorted(m for m in sys.modules if m.split('.')[0] in {list(HEAVY)!r})}}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    got = json.loads(out.splitlines()[-1])
    assert got["heavy"] == []
    assert got["typed"] and "inference" in got["sections"] and "federation" in got["sections"]


def test_old_key_names_are_read_with_a_warning(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="fogline.gateway.config_check")
    cfg = _load(tmp_path, '[mqtt]\ncertfile = "gw.crt"\nkeyfile = "gw.key"\n[federation]\nmax_seconds = 12\n'
                          '[placement]\ngateway_power = "usb"\n')
    assert (cfg.mqtt.cert_file, cfg.mqtt.key_file, cfg.federation.max_train_s) == ("gw.crt", "gw.key", 12.0)
    assert cfg.placement.gw_power == "usb"
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warned == ["event=config_deprecated_key key=mqtt.certfile use=mqtt.cert_file",
                      "event=config_deprecated_key key=mqtt.keyfile use=mqtt.key_file",
                      "event=config_deprecated_key key=federation.max_seconds use=federation.max_train_s",
                      "event=config_deprecated_key key=placement.gateway_power use=placement.gw_power"]
    caplog.clear()
    assert _load(tmp_path, '[mqtt]\ncert_file = "gw.crt"\n').mqtt.cert_file == "gw.crt"
    assert caplog.records == []
    with pytest.raises(config.ConfigError, match=r"^mqtt\.certfile: deprecated name of cert_file, and both are set"):
        _load(tmp_path, '[mqtt]\ncertfile = "a"\ncert_file = "b"\n')


def test_every_old_name_maps_to_a_current_key_and_is_documented():
    example = (REPO / "gateway" / "examples" / "gateway.toml").read_text()
    for section, renamed in config.RENAMED.items():
        fields = {f.name for f in dataclasses.fields(config.SECTIONS[section])}
        for old, new in renamed.items():
            assert new in fields and old not in fields, (section, old, new)
            assert f"{old} (now {new})" in example.split(f"[{section}]\n", 1)[1].split("\n[", 1)[0]


def test_the_cloud_service_config_follows_the_same_rules(tmp_path):
    with pytest.raises(config.ConfigError, match=r"^\[clod\]: unknown section \(did you mean \[cloud\]\?\)$"):
        cloud_config.from_dict({"clod": {"db": {}}})
    with pytest.raises(config.ConfigError, match=r"^cloud\.db\.dsnn: unknown key \(did you mean dsn\?\)$"):
        cloud_config.from_dict({"cloud": {"db": {"dsnn": "x"}}})
    with pytest.raises(config.ConfigError, match=r"^cloud\.broker\.port: expected an integer, got 'x'$"):
        cloud_config.from_dict({"cloud": {"broker": {"port": "x"}}})
    with pytest.raises(config.ConfigError, match=r"^cloud\.http\.port: out of range$"):
        cloud_config.from_dict({"cloud": {"http": {"port": 70000}}})
    p = tmp_path / "cloud.toml"
    p.write_text("[cloud.htpp]\nport = 1\n")
    with pytest.raises(config.ConfigError, match=r"^cloud\.htpp: unknown key \(did you mean http\?\)$"):
        cloud_config.load(p)


def test_the_cloud_command_refuses_an_unknown_section_and_says_which(tmp_path, capsys):
    p = tmp_path / "cloud.toml"
    p.write_text(f'[clod.db]\ndata_dir = "{tmp_path / "data"}"\n')
    assert cli(["cloud", "--config", str(p)]) == 2
    assert "fogline cloud: config error: [clod]: unknown section (did you mean [cloud]?)" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()
