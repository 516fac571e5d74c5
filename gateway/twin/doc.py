"""Twin documents: per-node twin records, the desired-config file, its resolution and checks.

File shape (every table is a fragment of the node config shape of shared/config.py):

    [all]                        # applied to every node listed below
    version = 3
    sample_ms = 1000
    [groups.greenhouse]          # groups apply in file order
    nodes = ["n1", "n2"]
    config = { sample_ms = 500 }
    [nodes.n1]                   # per-node fragment (may be empty: `[nodes.n3]`)
    rules = [...]

Desired(node) = all < groups containing node < nodes.<node>, with node.id/site set. Before a
push the gateway validates DEFAULTS < boards/<board>.json (board from the node's state) <
desired with `fogline.shared.config.validate_config`; an invalid desired config is never published.
The node merges the pushed fragment over its running config and reports `version` and
`config_rejected` in `state`; the twin reports each node as in_sync / pending / rejected /
ahead / invalid, with the reason.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fogline.shared import topics
from fogline.shared import config as node_config

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

BOARDS = Path(__file__).resolve().parents[2] / "boards"  # the repo's boards/, or the installed package data

IN_SYNC, PENDING, REJECTED, AHEAD, INVALID = "in_sync", "pending", "rejected", "ahead", "invalid"


@dataclass
class NodeTwin:
    """What the gateway wants for one node and what the node last said."""

    node: str
    desired: dict[str, Any] | None = None
    desired_version: int | None = None
    digest: str = ""
    invalid: str | None = None  # why desired was not published
    published_version: int | None = None
    reported_version: int | None = None
    rejected: str | None = None  # node's config_rejected
    board: str | None = None
    content: str = ""  # digest without the version (overlay pushes: bump only on a real change)

    @property
    def status(self) -> str:
        if self.invalid:
            return INVALID
        if self.desired_version is None or self.reported_version is None:
            return PENDING
        if self.reported_version == self.desired_version:
            return IN_SYNC
        if self.reported_version > self.desired_version:
            return AHEAD
        return REJECTED if self.rejected else PENDING

    def row(self) -> dict[str, Any]:
        reason = self.invalid or (self.rejected if self.status == REJECTED else None)
        if self.status == AHEAD:
            reason = f"node runs {self.reported_version}, desired is {self.desired_version}: raise the version"
        return {"node": self.node, "status": self.status, "desired": self.desired_version,
                "published": self.published_version, "reported": self.reported_version, "reason": reason}


def load_document(path: str | Path) -> dict[str, Any]:
    """Parse the twin TOML file; ValueError naming the problem."""
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ValueError(f"twin file {path}: {e}") from e
    return doc


def resolve(doc: dict[str, Any], site: str) -> dict[str, dict[str, Any]]:
    """Desired config fragment per node from a twin document; ValueError on a malformed document."""
    unknown = set(doc) - {"all", "groups", "nodes"}
    if unknown:
        raise ValueError(f"twin: unknown top-level table {sorted(unknown)[0]!r} (all, groups, nodes)")
    base = doc.get("all") or {}
    groups = doc.get("groups") or {}
    nodes = doc.get("nodes") or {}
    if not isinstance(base, dict) or not isinstance(groups, dict) or not isinstance(nodes, dict):
        raise ValueError("twin: all, groups and nodes must be tables")
    members: dict[str, list[dict[str, Any]]] = {}
    for g, spec in groups.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("nodes"), list):
            raise ValueError(f"twin: groups.{g}.nodes must be a list of node ids")
        if set(spec) - {"nodes", "config"}:
            raise ValueError(f"twin: groups.{g}: only `nodes` and `config`")
        for n in spec["nodes"]:
            members.setdefault(topics.check_id(n, "node"), []).append(spec.get("config") or {})
    out: dict[str, dict[str, Any]] = {}
    for n in list(members) + [n for n in nodes if n not in members]:
        topics.check_id(n, "node")
        frag = node_config.merge(base, *members.get(n, []), nodes.get(n) or {})
        frag = node_config.merge(frag, {"node": {"id": n, "site": site}})
        out[n] = frag
    return out


def board_fragment(board: str | None) -> dict[str, Any]:
    """The config fragment of boards/<board>.json ({} when unknown)."""
    if not board:
        return {}
    p = BOARDS / f"{board}.json"
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError):
        return {}
    return data.get("config", data) if isinstance(data, dict) else {}


def check_desired(frag: dict[str, Any], board: str | None = None) -> str | None:
    """None if the fragment makes a valid node config, else the validator's reason."""
    if not isinstance(frag.get("version"), int) or isinstance(frag.get("version"), bool):
        return "version: required integer in the desired config"
    full = node_config.merge(node_config.DEFAULTS, board_fragment(board), frag)
    if board:
        full = node_config.merge(full, {"node": {"board": board}})
    try:
        node_config.validate_config(full)
    except ValueError as e:
        return str(e)
    except Exception as e:  # a validator bug is a refusal, not a crash
        return f"validate: {type(e).__name__}: {e}"
    return None
