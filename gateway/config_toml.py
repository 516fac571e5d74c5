"""TOML text of config defaults: `example_toml()` (every registered section) and `toml_value()`."""

from __future__ import annotations

import dataclasses
from typing import Any


def example_toml() -> str:
    """Every registered section with its defaults, as TOML text (documentation/examples)."""
    from fogline.gateway.config import SECTIONS
    lines: list[str] = []
    for name, cls in SECTIONS.items():
        _example_table(lines, name, cls())
    return "\n".join(lines)


def _example_table(lines: list[str], name: str, obj: Any) -> None:
    lines.append(f"[{name}]")
    nested = []
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if dataclasses.is_dataclass(v):
            nested.append((f"{name}.{f.name}", v))
            continue
        lines.append(f"{'# ' if v is None else ''}{f.name} = {toml_value(v)}")
    lines.append("")
    for sub, v in nested:
        _example_table(lines, sub, v)


def toml_value(v: Any) -> str:
    """A default value in TOML syntax (None as an empty string marked unset)."""
    if v is None:
        return '""  # unset'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f'"{k}" = {toml_value(x)}' for k, x in v.items()) + "}"
    return repr(v)
