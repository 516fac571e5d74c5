"""Device twin: desired node configs from a watched TOML file, pushed retained, reconciled with `state`.

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

import asyncio
import hashlib
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable

from fogline.gateway.ingest.validate import brief
from fogline.shared import cbor, topics
from fogline.shared import config as node_config
from fogline.gateway.twin.config import TwinConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

log = logging.getLogger(__name__)
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


def _board_fragment(board: str | None) -> dict[str, Any]:
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
    full = node_config.merge(node_config.DEFAULTS, _board_fragment(board), frag)
    if board:
        full = node_config.merge(full, {"node": {"board": board}})
    try:
        node_config.validate_config(full)
    except ValueError as e:
        return str(e)
    except Exception as e:  # a validator bug is a refusal, not a crash
        return f"validate: {type(e).__name__}: {e}"
    return None


Publish = Callable[[str, bytes, int, bool], Awaitable[Any]]


class Twin:
    """Desired configs in, retained pushes out, node reports reconciled. Also a gateway component."""

    def __init__(self, cfg: TwinConfig, site: str, publish: Publish | None = None,
                 data_dir: str | Path = "fogline-data", key_for: Callable[[str], bytes | None] | None = None):
        cfg.validate()
        self.cfg = cfg
        self.site = topics.check_id(site, "site")
        self.publish = publish
        self.key_for = key_for
        self.nodes: dict[str, NodeTwin] = {}
        self.bases: dict[str, dict[str, Any]] = {}  # desired fragment per node from the file / cloud document
        self.overlays: dict[str, dict[str, Any]] = {}  # placement fragments merged over it, version auto-bumped
        self.state_path = Path(cfg.state_file) if cfg.state_file else Path(data_dir) / "twin_state.json"
        self.report_path = self.state_path.with_name("twin_report.json")  # read by `fogline status`
        self.gw: Any = None
        self._dirty = True
        self.file_error: str | None = None
        self._stamp: tuple[float, int] | None = None
        self._task: asyncio.Task | None = None
        self.counters = {"loads": 0, "load_errors": 0, "published": 0, "publish_errors": 0, "invalid": 0,
                         "states": 0, "bad_states": 0, "rejections": 0}
        self._load_state()

    # -- gateway component -------------------------------------------------------------------
    def on_cloud_document(self, _topic: str, payload: bytes) -> None:
        """Cloud-link handler: a CBOR desired document; applied on the loop, errors reported like file errors."""
        try:
            doc = cbor.loads(payload)
            if not isinstance(doc, dict):
                raise ValueError("twin: cloud document must be a CBOR map")
        except ValueError as e:
            self.file_error = f"cloud document: {e}"
            self.counters["load_errors"] += 1
            self._dirty = True
            log.error("event=twin_cloud_document_error error=%s", e)
            return
        asyncio.ensure_future(self.apply_document(doc, source="cloud"))

    async def start(self, gw: Any = None) -> None:
        """Attach to a Gateway (publish + on_state) if given, push the file, then watch it."""
        if gw is not None:
            self.gw = gw
            self.publish = self.publish or gw.publish
            gw.on_state(lambda node, st, _dev=None: self.on_state(node, st))
        if self.cfg.file:
            await self.reload()
            self._task = asyncio.create_task(self._watch(), name="twin-watch")
        self.export()

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._dirty = True
        self.export()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.poll_s)
            try:
                st = os.stat(self.cfg.file)
                stamp = (st.st_mtime, st.st_size)
            except OSError:
                stamp = None
            if stamp != self._stamp:
                await self.reload()
            self.export()

    # -- desired side ------------------------------------------------------------------------
    async def reload(self) -> None:
        """Re-read the file; on error keep the previous desired configs and report the error."""
        try:
            st = os.stat(self.cfg.file)
            self._stamp = (st.st_mtime, st.st_size)  # a broken file is retried when it changes again
            doc = load_document(self.cfg.file)
        except (OSError, ValueError) as e:
            self.file_error = str(e)
            self.counters["load_errors"] += 1
            log.error("event=twin_file_error file=%s error=%s", self.cfg.file, e)
            return
        await self.apply_document(doc, source=self.cfg.file)

    async def apply_document(self, doc: dict[str, Any], source: str = "api") -> None:
        """Take a whole desired document (file or cloud), validate each node, push what changed."""
        try:
            desired = resolve(doc, self.site)
        except ValueError as e:
            self.file_error = str(e)
            self.counters["load_errors"] += 1
            log.error("event=twin_document_error source=%s error=%s", source, e)
            return
        self.file_error = None
        self._dirty = True
        self.counters["loads"] += 1
        for node, frag in desired.items():
            nt = self.nodes.setdefault(node, NodeTwin(node))
            self.bases[node] = frag
            self._compose(nt)
            await self._push(nt)
        for node, nt in self.nodes.items():
            if node not in desired:
                self.bases.pop(node, None)
                if self.overlays.get(node):
                    self._compose(nt)
                    continue
                nt.desired = None
                nt.desired_version = None
                nt.invalid = None
        self._save_state()

    def _compose(self, nt: NodeTwin) -> None:
        """Desired = base (file/cloud) < overlay; with an overlay the version goes up whenever the content changes."""
        base = self.bases.get(nt.node)
        ov = self.overlays.get(nt.node)
        if not ov:
            nt.desired = base
            nt.desired_version = base.get("version") if base and isinstance(base.get("version"), int) else None
            nt.digest = hashlib.sha256(cbor.dumps(base)).hexdigest() if base is not None else ""
            return
        frag = node_config.merge(base or {}, ov, {"node": {"id": nt.node, "site": self.site}})
        bv = frag.pop("version", None)
        content = hashlib.sha256(cbor.dumps(frag)).hexdigest()
        prev = self._published.get(nt.node)
        if prev and prev.get("content") == content:
            v = prev["version"]
        else:
            # machine-made change: above the file's version, anything published and what the node runs
            v = max(bv if isinstance(bv, int) else 0, (prev["version"] + 1) if prev else 1,
                    (nt.reported_version or 0) + 1)
        frag["version"] = v
        nt.desired = frag
        nt.desired_version = v
        nt.digest = hashlib.sha256(cbor.dumps(frag)).hexdigest()
        nt.content = content

    async def set_overlay(self, node: str, frag: dict[str, Any] | None) -> NodeTwin:
        """Merge frag over node's desired config (None: remove) and push it if it changed (placement's lever)."""
        nt = self.nodes.setdefault(topics.check_id(node, "node"), NodeTwin(node))
        if frag:
            self.overlays[node] = frag
        else:
            self.overlays.pop(node, None)
        self._compose(nt)
        self._dirty = True
        if nt.desired is not None:
            await self._push(nt)
        self._save_state()
        return nt

    async def _push(self, nt: NodeTwin, force: bool = False) -> None:
        assert nt.desired is not None
        reason = check_desired(nt.desired, nt.board)
        prev = self._published.get(nt.node)
        if reason is None and prev and prev["digest"] != nt.digest and nt.desired_version is not None \
                and nt.desired_version <= prev["version"]:
            reason = f"version: {nt.desired_version} must be above published {prev['version']} when the config changes"
        nt.invalid = reason
        if reason:
            self.counters["invalid"] += 1
            log.warning("event=twin_invalid node=%s reason=%s", nt.node, reason)
            return
        if not force and prev and prev["digest"] == nt.digest and nt.published_version == nt.desired_version:
            return  # already pushed this exact config in this run
        key = self.key_for(nt.node) if (self.key_for and self.cfg.sign) else None
        if key:
            from fogline.shared import auth
            payload = auth.seal_config(key, nt.desired)
        else:
            payload = cbor.dumps(nt.desired)
        if len(payload) > self.cfg.max_push_bytes:
            nt.invalid = f"oversized: {len(payload)} bytes > twin.max_push_bytes {self.cfg.max_push_bytes}"
            self.counters["invalid"] += 1
            log.warning("event=twin_invalid node=%s reason=%s", nt.node, nt.invalid)
            return
        if self.publish is None:
            return
        try:
            await self.publish(topics.node(self.site, nt.node, "config"), payload, 1, True)
        except Exception as e:
            self.counters["publish_errors"] += 1
            log.error("event=twin_publish_failed node=%s error=%s", nt.node, e)
            return
        nt.published_version = nt.desired_version
        self._published[nt.node] = {"version": nt.desired_version, "digest": nt.digest}
        if nt.content and self.overlays.get(nt.node):
            self._published[nt.node]["content"] = nt.content
        self.counters["published"] += 1
        log.info("event=twin_published node=%s version=%s bytes=%d", nt.node, nt.desired_version, len(payload))

    # -- reported side -----------------------------------------------------------------------
    def on_state(self, node: str, state: Any) -> None:
        """A node's `state` (CBOR-decoded dict, or raw bytes): record version / rejection."""
        if isinstance(state, (bytes, bytearray)):
            try:
                state = cbor.loads(bytes(state))
            except ValueError as e:
                self.counters["bad_states"] += 1
                log.warning("event=twin_bad_state node=%s error=%s", node, e)
                return
        if not isinstance(state, dict):
            self.counters["bad_states"] += 1
            return
        self.counters["states"] += 1
        self._dirty = True
        nt = self.nodes.setdefault(node, NodeTwin(node))
        v = state.get("version")
        nt.reported_version = v if isinstance(v, int) and not isinstance(v, bool) else None
        rej = state.get("config_rejected")
        board = state.get("board")
        if isinstance(board, str) and board != nt.board:
            nt.board = board
            if nt.desired is not None and nt.invalid:
                asyncio.ensure_future(self._push(nt))  # the board may make it valid now
        # the node's reason is untrusted: a bounded text, never the object formatted whole
        why = (rej if len(rej) <= 200 else rej[:197] + "...") if isinstance(rej, str) else brief(rej) if rej else None
        if why and why != nt.rejected:
            self.counters["rejections"] += 1
            log.warning("event=twin_rejected node=%s version=%s desired=%s reason=%s", node, nt.reported_version,
                        nt.desired_version, why)
        nt.rejected = why

    def report(self) -> list[dict[str, Any]]:
        """One row per node: status, desired/published/reported versions, reason."""
        return [self.nodes[n].row() for n in sorted(self.nodes)]

    def stats(self) -> dict[str, Any]:
        by: dict[str, int] = {}
        for nt in self.nodes.values():
            by[nt.status] = by.get(nt.status, 0) + 1
        return {"nodes": by, "file_error": self.file_error, **self.counters,
                "out_of_date": [r for r in self.report() if r["status"] != IN_SYNC]}

    def export(self) -> None:
        """Status counts into gw.metrics (twin_nodes{status}) and the report file, when something changed."""
        if not self._dirty:
            return
        self._dirty = False
        st = self.stats()
        m = getattr(self.gw, "metrics", None)
        if m is not None:
            for status in (IN_SYNC, PENDING, REJECTED, AHEAD, INVALID):
                m.set("twin_nodes", st["nodes"].get(status, 0), status=status)
            m.set("twin_file_error", 1 if self.file_error else 0)
        try:
            self.report_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.report_path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"file": self.cfg.file, "file_error": self.file_error,
                                       "nodes": self.report()}, indent=1))
            os.replace(tmp, self.report_path)
        except OSError as e:
            log.error("event=twin_report_write_failed path=%s error=%s", self.report_path, e)

    # -- persistence of what was published (versions must only go up) ---------------------
    def _load_state(self) -> None:
        try:
            self._published: dict[str, dict[str, Any]] = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            self._published = {}
        for n, p in self._published.items():
            self.nodes.setdefault(n, NodeTwin(n)).published_version = None  # re-pushed once per run

    def _save_state(self) -> None:
        try:
            self.state_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.state_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self._published, sort_keys=True))
            os.replace(tmp, self.state_path)
        except OSError as e:
            log.error("event=twin_state_save_failed path=%s error=%s", self.state_path, e)
