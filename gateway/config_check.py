"""Typed checking of TOML tables against config dataclasses: unknown names refused, old names renamed.

Used by the gateway config (`fogline.gateway.config`) and the cloud service config
(`fogline.gateway.cloudsvc.config`): every error is a ConfigError naming the field (`section.key`);
a misspelt name gets the closest known one as a hint; a deprecated name is read as its new
name with a warning. Standard library only, so loading a config imports no heavy dependency.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import types
import typing
from typing import Any, Iterable, Mapping

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """Invalid configuration; the message names the field (section.key)."""


def hint(name: str, known: Iterable[str], fmt: str = "{}") -> str:
    """' (did you mean X?)' for the closest known name, else the list of known names."""
    known = list(known)
    best = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if best:
        return f" (did you mean {fmt.format(best[0])}?)"
    return f" (known: {', '.join(fmt.format(k) for k in known)})"


def unknown_section(name: str, known: Iterable[str]) -> ConfigError:
    """The error for a table nobody registered, e.g. `[clod]: unknown section (did you mean [cloud]?)`."""
    return ConfigError(f"[{name}]: unknown section{hint(name, known, '[{}]')}")


def rename_keys(path: str, raw: Mapping[str, Any], renamed: Mapping[str, str]) -> dict[str, Any]:
    """raw with deprecated keys renamed (a warning each); both spellings at once is an error."""
    out = dict(raw)
    for old, new in renamed.items():
        if old not in out:
            continue
        if new in out:
            raise ConfigError(f"{path}.{old}: deprecated name of {new}, and both are set: keep only {new}")
        log.warning("event=config_deprecated_key key=%s.%s use=%s.%s", path, old, path, new)
        out[new] = out.pop(old)
    return out


def check_value(path: str, tp: Any, v: Any, renamed: Mapping[str, Mapping[str, str]] | None = None) -> Any:
    """v checked against annotation tp (ints accepted for floats); nested dataclasses built."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return v
    if origin in (typing.Union, types.UnionType):
        if v is None and type(None) in args:
            return None
        errs = []
        for a in args:
            if a is type(None):
                continue
            try:
                return check_value(path, a, v, renamed)
            except ConfigError as e:
                errs.append(str(e))
        raise ConfigError(errs[0] if errs else f"{path}: bad value")
    if origin is list:
        if not isinstance(v, list):
            raise ConfigError(f"{path}: expected a list, got {type(v).__name__}")
        return [check_value(f"{path}[{i}]", args[0] if args else Any, x) for i, x in enumerate(v)]
    if origin is dict:
        if not isinstance(v, dict):
            raise ConfigError(f"{path}: expected a table, got {type(v).__name__}")
        kt, vt = args if args else (Any, Any)
        return {check_value(f"{path}.key", kt, k): check_value(f"{path}.{k}", vt, x) for k, x in v.items()}
    if tp is float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {v!r}")
        return float(v)
    if tp is int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(f"{path}: expected an integer, got {v!r}")
        return v
    if tp is bool:
        if not isinstance(v, bool):
            raise ConfigError(f"{path}: expected true/false, got {v!r}")
        return v
    if tp is str:
        if not isinstance(v, str):
            raise ConfigError(f"{path}: expected a string, got {v!r}")
        return v
    if dataclasses.is_dataclass(tp):
        return build_section(path, tp, v, renamed)
    return v


def build_section(name: str, cls: Any, raw: Mapping[str, Any] | None,
                  renamed: Mapping[str, Mapping[str, str]] | None = None) -> Any:
    """Dataclass cls from a TOML table, checked and validated; ConfigError names the bad field.

    renamed maps a table's dotted name ("mqtt", "cloud.bandwidth") to {deprecated key: key}."""
    raw = raw if raw is not None else {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{name}: expected a table, got {type(raw).__name__}")
    raw = rename_keys(name, raw, (renamed or {}).get(name, {}))
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        k = unknown[0]
        raise ConfigError(f"{name}.{k}: unknown key{hint(k, names)}")
    kw = {k: check_value(f"{name}.{k}", hints[k], v, renamed) for k, v in raw.items()}
    try:
        obj = cls(**kw)
        post = getattr(obj, "validate", None) or getattr(obj, "check", None)
        if callable(post):
            post()
    except ConfigError:
        raise
    except (ValueError, TypeError) as e:  # the dataclasses' own checks name their field
        raise ConfigError(str(e)) from None
    return obj
