"""Config from the gateway: validate, persist atomically, apply live, report on `state`."""

import asyncio
import gc
import json
import os
from time import ticks_ms, ticks_diff
from shared import auth, cbor, topics

MAX_CONFIG_BYTES = topics.MAX_PUSH_BYTES  # shared.config (the validator) is imported only for a push
_FIXED = (("node", "id"), ("node", "site"))  # topics depend on them: never changed remotely


def merge(base, over):
    """Deep copy of base with over merged in (dicts merge, everything else replaces)."""
    out = {}
    for k in base:
        out[k] = base[k]
    for k in over:
        v = over[k]
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def save_atomic(path, cfg):
    """Write cfg as JSON to path via a temp file + rename (all old or all new after a power cut)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(json.dumps(cfg))
    try:
        os.rename(tmp, path)
    except OSError:
        # Some filesystems refuse to rename over an existing file.
        os.remove(path)
        os.rename(tmp, path)


def _default_validate(cfg):
    from shared.config import validate_config
    return validate_config(cfg)


class RemoteConfig:
    """Handles retained `.../config` pushes and publishes the retained `.../state` report."""

    def __init__(self, client, cfg, path="/config.json", apply=None, status=None, key=None,
                 validate=None, max_bytes=MAX_CONFIG_BYTES, state_ms=60000, fw="0"):
        self.client = client
        self.cfg = cfg
        self.path = path
        self.apply = apply
        self.status = status
        self.key = key
        self.validate = validate or _default_validate
        self.max_bytes = max_bytes
        self.state_ms = state_ms
        self.fw = fw
        site, node_id = cfg["node"]["site"], cfg["node"]["id"]
        self.config_topic = topics.node(site, node_id, "config")
        self.state_topic = topics.node(site, node_id, "state")
        self.rejected = None
        self.last_error = None
        self.stats = {"pushes": 0, "applied": 0, "rejected": 0, "same_version": 0, "states": 0}
        self._t0 = ticks_ms()
        self._pending = None
        self._has_pending = False
        self._wake = asyncio.Event()
        self._dirty = True
        self.on_applied = []  # callables(cfg) run after a push was applied (e.g. link settings)
        self.extra = []  # callables() -> dict merged into `state` (e.g. the uplink's oldest seqs)

    @property
    def version(self):
        return self.cfg.get("version", 0)

    def on_config(self, topic, payload, retained):
        """MQTT callback: keep only the newest push; the task handles it."""
        self._pending = payload
        self._has_pending = True
        self._wake.set()

    def handle(self, payload):
        """Validate and apply one pushed config; returns (ok, reason). The old config stays on error."""
        self.stats["pushes"] += 1
        ok, reason = self._handle(payload)
        if ok:
            if reason != "same version":
                self.stats["applied"] += 1
                self.rejected = None
        else:
            self.stats["rejected"] += 1
            self.rejected = reason
        self._dirty = True
        return ok, reason

    def _handle(self, payload):
        if payload is None:
            return False, "oversized: over the MQTT packet limit of %d bytes" % self.client.rx.max_packet
        if len(payload) > self.max_bytes:
            return False, "oversized: %d bytes > %d" % (len(payload), self.max_bytes)
        try:
            pushed = auth.open_config(self.key, payload)
        except ValueError as e:
            return False, str(e)
        ver = pushed["version"]
        if ver == self.version:
            # Retained re-delivery after a reconnect: nothing to do.
            self.stats["same_version"] += 1
            return True, "same version"
        if ver < self.version:
            return False, "version: %d is not above running %d" % (ver, self.version)
        new = merge(self.cfg, pushed)
        for a, b in _FIXED:
            if new.get(a, {}).get(b) != self.cfg.get(a, {}).get(b):
                return False, "%s.%s: cannot be changed remotely" % (a, b)
        try:
            new = self.validate(new)
        except ValueError as e:
            return False, str(e)
        except Exception as e:  # a validator bug must not take the node down
            return False, "validate: %r" % (e,)
        old = self.cfg
        if self.apply is not None:
            try:
                ok, why = self.apply(new)
            except Exception as e:
                ok, why = False, "apply: %r" % (e,)
            if not ok:
                try:
                    self.apply(old)
                except Exception:
                    pass
                return False, why or "apply failed"
        self.cfg = new
        for fn in self.on_applied:
            try:
                fn(new)
            except Exception as e:
                self.last_error = "config hook: %r" % (e,)
        if self.path:
            try:
                save_atomic(self.path, new)
            except Exception as e:
                # Running on the new config; it is re-delivered (retained) after a reboot.
                self.last_error = "config save: %r" % (e,)
        return True, None

    def state(self):
        """The `state` map: app status fields plus config version and rejection."""
        st = {}
        if self.status is not None:
            try:
                st = dict(self.status())
            except Exception as e:
                self.last_error = "status: %r" % (e,)
        for fn in self.extra:
            try:
                st.update(fn())
            except Exception as e:
                self.last_error = "state: %r" % (e,)
        st["version"] = self.version
        st["config_rejected"] = self.rejected
        st.setdefault("fw", self.fw)
        st.setdefault("board", self.cfg.get("node", {}).get("board"))
        st.setdefault("heap_free", gc.mem_free())
        st.setdefault("uptime_s", ticks_diff(ticks_ms(), self._t0) // 1000)
        if st.get("last_error") is None:
            st["last_error"] = self.last_error or (self.client.last_error if self.client else None)
        return st

    async def publish_state(self):
        """Publish `state` retained at QoS 1."""
        await self.client.publish(self.state_topic, cbor.dumps(self.state()), 1, True)
        self.stats["states"] += 1
        self._dirty = False

    async def run(self):
        """Forever: subscribe, handle pushes, report state on change, on reconnect and periodically."""
        await self.client.subscribe(self.config_topic, 1, self.on_config)
        last = ticks_ms()
        connects = -1
        while True:
            if self._has_pending:
                p = self._pending
                self._pending = None
                self._has_pending = False
                self.handle(p)
            if self.client.connected:
                if self.client.stats["connects"] != connects:
                    connects = self.client.stats["connects"]
                    self._dirty = True
                if self._dirty or ticks_diff(ticks_ms(), last) >= self.state_ms:
                    try:
                        await self.publish_state()
                        last = ticks_ms()
                    except OSError:
                        pass
            self._wake.clear()
            try:
                await asyncio.wait_for_ms(self._wake.wait(), 200)
            except asyncio.TimeoutError:
                pass
