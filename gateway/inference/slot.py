"""The inference engine's model slot: start from the registry or the bundled model, verify, install, swap.

A model that fails verification is refused (ModelError, counted, logged) and the current one keeps
serving; a swap happens under the engine's lock, so every window set is scored by exactly one model.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from fogline.gateway.inference import signing as model_sign
from fogline.gateway.inference.registry import BUNDLED_DIR, LoadedModel, ModelError, check_manifest, fetch, load_model

log = logging.getLogger(__name__)


class ModelSlot:
    """Mixin of InferenceEngine: the serving model and how it changes (uses the engine's cfg, registry, locks)."""

    def start(self) -> LoadedModel:
        """Load the registry's CURRENT model, else cfg.model_dir / the bundled one; then cfg.model_url."""
        try:
            removed = self.registry.cleanup(self.cfg.keep_versions)
            if removed:
                log.info("event=model_registry_cleanup removed=%d", removed)
        except OSError as e:
            log.warning("event=model_registry_cleanup_failed error=%s", e)
        cur = self.registry.current_dir()
        candidates = ([cur] if cur else []) + [Path(self.cfg.model_dir) if self.cfg.model_dir else BUNDLED_DIR]
        for d in candidates:
            try:
                self.load(d)
                break
            except ModelError as e:
                log.error("event=model_start_refused dir=%s error=%s", d, e)
        if self.cfg.model_url:
            try:
                self.install(*fetch(self.cfg.model_url))
            except ModelError as e:
                self._refused(e)
        if self.model is None:
            raise ModelError(f"no usable model (last error: {self.last_error})")
        return self.model

    def load(self, model_dir: str | Path) -> LoadedModel:
        """Verify a model dir and switch to it; on failure raise ModelError and keep the current model."""
        with self._load_lock:
            try:
                new = load_model(model_dir)
            except ModelError as e:
                self._refused(e)
                raise
            with self._lock:
                old = self.model
                if old is None or old.manifest.get("features") != new.manifest.get("features") \
                        or old.manifest["input"]["features"] != new.manifest["input"]["features"]:
                    self._features.clear()  # a different feature definition: context restarts
                self.model = new
                self.counters["model_loads"] += 1
            log.info("event=model_loaded model=%s variant=%s sha256=%s previous=%s", new.ident,
                     new.manifest.get("variant"), new.manifest["sha256"][:12], old.ident if old else None)
            return new

    def install(self, manifest: dict[str, Any], model_bytes: bytes, authenticated: bool = False) -> LoadedModel:
        """Verify (signature too, unless the caller authenticated the source), store, switch, make CURRENT."""
        cur = self.model
        if cur is not None and not self.cfg.allow_downgrade:
            v = manifest.get("version") if isinstance(manifest, dict) else None
            if isinstance(v, int) and v <= cur.manifest["version"]:
                if v == cur.manifest["version"] and manifest.get("sha256") == cur.manifest["sha256"]:
                    return cur  # the same model again (e.g. a retained message): nothing to do
                e = ModelError(f"model version {v} is not newer than the running {cur.ident}")
                self._refused(e)
                raise e
        try:
            check_manifest(manifest)
            if getattr(self, "_trusted", None) is None:
                self._trusted = model_sign.load_public(self.cfg.model_keys)
            model_sign.verify(manifest, self._trusted, self.cfg.require_signed_models and not authenticated)
            d = self.registry.install(manifest, model_bytes)
        except ModelError as e:
            self._refused(e)
            raise
        m = self.load(d)
        self.registry.activate(d)
        return m

    def handle_model_message(self, payload: bytes) -> bool:
        """A cloud model message: CBOR map {"manifest": map or JSON text, "model": bytes}. True if switched."""
        import cbor2

        if not self.cfg.accept_cloud_models:
            log.warning("event=model_message_ignored reason=accept_cloud_models_false")
            return False
        try:
            try:
                msg = cbor2.loads(payload)
            except Exception as e:
                raise ModelError(f"model message: not CBOR ({e})") from None
            if not isinstance(msg, dict) or "manifest" not in msg or "model" not in msg:
                raise ModelError("model message: expected a map with 'manifest' and 'model'")
            man = msg["manifest"]
            if isinstance(man, (str, bytes)):
                man = json.loads(man)
            before = self.model
            now = self.install(man, msg["model"])
            return now is not before
        except ModelError as e:
            if self.last_error != str(e):
                self._refused(e)
            return False
        except ValueError as e:
            self._refused(ModelError(f"model message: bad manifest JSON ({e})"))
            return False

    def _refused(self, e: Exception) -> None:
        self.counters["model_rejected"] += 1
        self.last_error = str(e)
        log.error("event=model_refused error=%s serving=%s", e, self.model.ident if self.model else None)

