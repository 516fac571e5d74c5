"""One log-event scheme: every logger is its module (__name__), every message `event=<name> key=value ...`."""

from __future__ import annotations

import ast
import json
import logging
from pathlib import Path

from fogline.gateway.commands.serve import _JsonFormatter, log_fields

REPO = Path(__file__).resolve().parents[2]
LEVELS = {"debug", "info", "warning", "error", "exception", "critical"}


def _sources() -> list[Path]:
    return sorted(p for top in ("gateway", "tools") for p in (REPO / top).rglob("*.py") if "__pycache__" not in p.parts)


def _log_calls(tree: ast.AST):
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in LEVELS
                and isinstance(node.func.value, ast.Name) and node.func.value.id in ("log", "logger")
                and node.args):
            yield node


def test_every_log_message_is_an_event_with_fields():
    bad = []
    for p in _sources():
        for call in _log_calls(ast.parse(p.read_text(), str(p))):
            first = call.args[0]
            if isinstance(first, ast.JoinedStr):
                bad.append(f"{p.relative_to(REPO)}:{call.lineno}: f-string (pass the values as arguments)")
            elif isinstance(first, ast.Constant) and isinstance(first.value, str):
                name = first.value.split(" ", 1)[0]
                if not name.startswith("event=") or not name[6:].replace("_", "").replace("%s", "").isalnum():
                    bad.append(f"{p.relative_to(REPO)}:{call.lineno}: {first.value[:60]!r}")
    assert not bad, "\n".join(bad)


def test_loggers_are_named_by_their_module():
    bad = []
    for p in _sources():
        for node in ast.walk(ast.parse(p.read_text(), str(p))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "getLogger"
                    and node.args and isinstance(node.args[0], ast.Constant)
                    and str(node.args[0].value).split(".")[0] in ("fogline", "gateway", "tools")):
                bad.append(f"{p.relative_to(REPO)}:{node.lineno}: getLogger({node.args[0].value!r}), not __name__")
    assert not bad, "\n".join(bad)


def test_json_lines_carry_the_pairs_as_fields():
    assert log_fields("event=config_secrets_readable path=/etc/x mode=644 hint='holds a password: chmod 600 x'") == {
        "event": "config_secrets_readable", "path": "/etc/x", "mode": "644", "hint": "holds a password: chmod 600 x"}
    assert log_fields('event=a why="two words" n=3 odd=\'x') == {"event": "a", "why": "two words", "n": "3", "odd": "'x"}
    rec = logging.LogRecord("fogline.gateway.app", logging.INFO, __file__, 1, "event=mqtt_connected host=%s port=%d",
                            ("127.0.0.1", 1883), None)
    d = json.loads(_JsonFormatter().format(rec))
    assert d["event"] == "mqtt_connected" and d["host"] == "127.0.0.1" and d["port"] == "1883"
    assert d["logger"] == "fogline.gateway.app" and d["level"] == "INFO"
    assert d["msg"] == "event=mqtt_connected host=127.0.0.1 port=1883"
