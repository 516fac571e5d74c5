"""Device twin: desired node configs (fogline.gateway.twin.doc) pushed retained, reconciled with `state`.

A gateway component (`start(services)`): publishes on the site broker, hears node `state`, seals pushed
configs with the node's auth key (`Services.node_key`) and exports twin_nodes{status} into the metrics.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Awaitable, Callable

from fogline.gateway.ingest.validate import brief
from fogline.gateway.twin.config import TwinConfig
from fogline.gateway.twin.doc import (AHEAD, BOARDS, IN_SYNC, INVALID, PENDING, REJECTED, NodeTwin,  # noqa: F401
                                      board_fragment, check_desired, load_document, resolve)
from fogline.shared import cbor, topics
from fogline.shared import config as node_config
from fogline.gateway.aio import cancel_and_wait

log = logging.getLogger(__name__)


Publish = Callable[[str, bytes, int, bool], Awaitable[Any]]


class Twin:
    name = "twin"
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
        self.metrics: Any = None  # the gateway's Metrics once started as a component
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

    async def start(self, services: Any = None) -> None:
        """Attach to a gateway's Services (publish, on_state, node keys) if given, push the file, then watch it."""
        if services is not None:
            from fogline.gateway import services as services_mod
            svc = services_mod.of(services)
            self.metrics = svc.metrics
            self.publish = self.publish or svc.publish
            self.key_for = self.key_for or svc.node_key
            svc.on_state(lambda node, st, _dev=None: self.on_state(node, st))
        if self.cfg.file:
            await self.reload()
            self._task = asyncio.create_task(self._watch(), name="twin-watch")
        self.export()

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
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
        m = self.metrics
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


def twin_of(gw: Any, cfg: Any | None = None) -> Twin:
    """The gateway's one Twin (`gw.twin`), built and added as a component on first use."""
    if gw.twin is None:
        cfg = cfg or gw.config
        tw = cfg.section("twin")
        if isinstance(tw, dict):
            tw = TwinConfig(**tw)
        gw.twin = Twin(tw, cfg.site.id, data_dir=cfg.site.data_dir)  # its node keys come with the services
        gw.add_component(gw.twin)
    return gw.twin
