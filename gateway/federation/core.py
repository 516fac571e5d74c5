"""Federated learning across gateways: local rounds, signed update exchange, robust aggregation, gated adoption.

    bus = fedbus.MqttBus(host, port, client_id)   # or fedbus.InProcessBus() for tests of the maths
    member = Member(cfg, gw_id, key, {coord_id: coord_key}, data, base, bus, install=registry_installer(reg))
    coord = fedcoord.Coordinator(cfg, coord_id, coord_key, member_keys, base, bus)  # the aggregator
    result = fedcoord.run_round(coord, [bus], rnd)   # start -> updates -> aggregate -> model -> results

A round: the coordinator publishes `start` (base version + sha256). Each member fine-tunes that
base on its own training windows in a worker thread (bounded: steps, seconds, samples) and
publishes an `update`: weight deltas, sample count, base version, gateway id, signed with its own
key. The coordinator refuses forged updates (unknown signer or bad tag), updates on another base
version, wrong shapes, duplicates and NaN/inf; screens norm outliers; aggregates (fogline.gateway.federation.avg);
exports the result as ONNX with version base+1 and a manifest; publishes it signed as `model`.
Each member then scores the candidate and its serving model on its own held-back windows and
installs the candidate through the model registry only if it is not worse by more than
`adopt_margin`; either way the candidate becomes the base of the next round. No window, feature
row or label is ever published: only deltas and metadata.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from fogline.gateway.federation import avg as fedavg, local as fedlocal, wire as fedwire
from fogline.gateway.federation.config import FederationConfig
from fogline.gateway.inference.features import normalise
from fogline.gateway.inference.registry import LoadedModel, ModelError, ModelRegistry, check_manifest, load_model, sha256_bytes

log = logging.getLogger(__name__)
TRAIN_NICE = 10  # nice value of the local-training thread


def load_bytes(manifest: dict[str, Any], data: bytes) -> LoadedModel:
    """Verify (manifest, ONNX bytes) exactly as the registry does and load them (temp dir)."""
    check_manifest(manifest)
    with tempfile.TemporaryDirectory(prefix="fogline-fed-") as d:
        (Path(d) / manifest["file"]).write_bytes(data)
        (Path(d) / "manifest.json").write_text(json.dumps(manifest))
        return load_model(d)


def registry_installer(reg: ModelRegistry) -> Callable[[dict[str, Any], bytes], None]:
    """Install hook: verify + store in the registry and make CURRENT; refuses non-increasing versions."""
    def install(manifest: dict[str, Any], data: bytes) -> None:
        cur = reg.current_dir()
        if cur is not None:
            v = json.loads((cur / "manifest.json").read_text())["version"]
            if manifest["version"] <= v:
                raise ModelError(f"federation: version {manifest['version']} is not newer than installed v{v}")
        reg.activate(reg.install(manifest, data))
    return install


class Lineage:
    """The global model a round starts from: manifest, bytes and its weights."""

    def __init__(self, manifest: dict[str, Any], data: bytes, state_dir: Path | None = None) -> None:
        self.state_dir = state_dir
        self.set(manifest, data)

    def set(self, manifest: dict[str, Any], data: bytes) -> None:
        net = fedlocal.net_from_onnx(data)  # ModelError before anything changes if not trainable
        self.manifest, self.data, self.net = manifest, data, net
        self.shapes = [p.shape for p in fedlocal.params(net)]
        if self.state_dir is not None:  # survive a restart mid-federation (restore checks the sha256)
            self.state_dir.mkdir(parents=True, exist_ok=True)
            for name, blob in (("base.onnx", data), ("base.json", json.dumps(manifest).encode())):
                tmp = self.state_dir / f".{name}.tmp"
                tmp.write_bytes(blob)
                os.replace(tmp, self.state_dir / name)

    @property
    def version(self) -> int:
        return int(self.manifest["version"])

    @property
    def sha(self) -> str:
        return str(self.manifest["sha256"])

    @staticmethod
    def restore(state_dir: Path) -> tuple[dict[str, Any], bytes] | None:
        """(manifest, bytes) saved by set(), or None if absent or torn (bytes not matching the manifest)."""
        try:
            man, data = json.loads((state_dir / "base.json").read_text()), (state_dir / "base.onnx").read_bytes()
        except (OSError, ValueError):
            return None
        if not isinstance(man, dict) or man.get("sha256") != sha256_bytes(data):
            log.warning("event=fed_lineage_torn dir=%s", state_dir)
            return None
        return man, data


def rollout_installer(reg: ModelRegistry, publish: Callable[[str, bytes], None], topic: str,
                      ) -> Callable[[dict[str, Any], bytes], None]:
    """Registry install, then the inference model-download message (CBOR {"manifest", "model"}) on
    `topic` (fogline/<site>/model), so a running gateway's InferenceEngine hot-swaps to it."""
    import cbor2

    inner = registry_installer(reg)

    def install(manifest: dict[str, Any], data: bytes) -> None:
        inner(manifest, data)
        publish(topic, cbor2.dumps({"manifest": manifest, "model": data}))
    return install


def engine_installer(engine: Any) -> Callable[[dict[str, Any], bytes], None]:
    """Install hook through a running fogline.gateway.inference.core.InferenceEngine (registry + hot swap + CURRENT)."""
    def install(manifest: dict[str, Any], data: bytes) -> None:
        engine.install(manifest, data, authenticated=True)  # the round's bundle was checked by the federation
    return install


def _lower_priority() -> None:
    """Nice the training thread (Linux threads have their own nice value) so ingest keeps the CPU."""
    try:
        tid = threading.get_native_id()
        if os.getpriority(os.PRIO_PROCESS, tid) < TRAIN_NICE:
            os.setpriority(os.PRIO_PROCESS, tid, TRAIN_NICE)
    except (AttributeError, OSError):  # not Linux, or not permitted: bounded steps/seconds still apply
        pass


class Member:
    """A gateway taking part in rounds: trains on its own windows, sends deltas, gates adoption."""

    def __init__(self, cfg: FederationConfig, gw_id: str, key: bytes, coord_keys: dict[str, bytes],
                 data: fedlocal.LocalData, base: tuple[dict[str, Any], bytes], bus: Any,
                 install: Callable[[dict[str, Any], bytes], None] | None = None,
                 serving: tuple[dict[str, Any], bytes] | None = None, threaded: bool = True,
                 state_dir: Path | None = None) -> None:
        self.cfg, self.id, self.key, self.coord_keys = cfg, gw_id, key, coord_keys
        self.bus, self.install = bus, install
        self.lineage = Lineage(*base, state_dir=state_dir)
        self.serving = load_bytes(*(serving or base))
        self.train, self.holdout = fedlocal.split_holdout(data, cfg.holdout_ratio, seed=len(data))
        self.counters = {"rounds_trained": 0, "refused": 0, "adopted": 0, "not_adopted": 0, "train_errors": 0}
        self.last_error: str | None = None
        self.results: dict[int, dict[str, Any]] = {}
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="fed-train") if threaded else None
        self._busy = threading.Lock()
        p = cfg.topic_prefix
        bus.subscribe(f"{p}/+/start", self.on_message)
        bus.subscribe(f"{p}/+/model", self.on_message)

    def _refuse(self, why: str) -> None:
        self.counters["refused"] += 1
        self.last_error = why
        log.warning("event=fed_refused gateway=%s reason=%s", self.id, why)

    def on_message(self, topic: str, payload: bytes) -> None:
        """Handle a start or model message (refusals are counted and logged, never raised)."""
        parsed = fedwire.parse_topic(self.cfg.topic_prefix, topic)
        if parsed is None:
            return
        rnd, kind, _gw = parsed
        try:
            _by, body = fedwire.open_(self.coord_keys, payload, kind)
            if body.get("round") != rnd:
                raise fedwire.FedRefused("round in body does not match the topic")
            if kind == "start":
                self._on_start(rnd, body)
            elif kind == "model":
                self._on_model(rnd, body)
        except (fedwire.FedRefused, fedavg.UpdateRefused, ModelError) as e:
            self._refuse(f"{kind} round {rnd}: {e}")
        except (TypeError, KeyError, ValueError, AttributeError, IndexError) as e:  # signed but malformed
            self._refuse(f"{kind} round {rnd}: malformed ({type(e).__name__}: {e})")

    def _on_start(self, rnd: int, body: dict[str, Any]) -> None:
        if body.get("base") != self.lineage.version or body.get("base_sha") != self.lineage.sha:
            raise fedwire.FedRefused(f"round base v{body.get('base')} is not our base v{self.lineage.version}")
        if not self._busy.acquire(blocking=False):
            raise fedwire.FedRefused("still training the previous round")
        if self._pool is None:
            self._train_and_send(rnd)
            return
        try:
            self._pool.submit(self._train_and_send, rnd)
        except RuntimeError:  # pool shut down (closing)
            self._busy.release()
            raise fedwire.FedRefused("member is closing") from None

    def _train_and_send(self, rnd: int) -> None:
        if self._pool is not None:
            _lower_priority()
        try:
            c, m = self.cfg, self.lineage
            man, net, version, sha = m.manifest, m.net, m.version, m.sha  # a model message may swap them meanwhile
            x = normalise(self.train.X, man["normalisation"]["mean"], man["normalisation"]["std"])
            deltas, info = fedlocal.fine_tune(net, x, self.train.y, max_steps=c.max_steps,
                                              max_seconds=c.max_train_s, max_samples=c.max_samples,
                                              batch=c.batch, lr=c.lr, seed=rnd)
            body = {"round": rnd, "gw": self.id, "base": version, "base_sha": sha, "n": info["samples"],
                    "steps": info["steps"], "tensors": fedwire.pack_tensors(deltas, c.update_dtype)}
            self.bus.publish(fedwire.topic(c.topic_prefix, rnd, "update", self.id),
                             fedwire.seal(self.key, self.id, "update", body))
            self.counters["rounds_trained"] += 1
            log.info("event=fed_update_sent gateway=%s round=%d samples=%d steps=%d seconds=%s", self.id, rnd,
                     info["samples"], info["steps"], info["seconds"])
        except Exception as e:  # a failed local round must not take the gateway down
            self.counters["train_errors"] += 1
            self.last_error = f"training round {rnd}: {e}"
            log.exception("event=fed_train_failed gateway=%s round=%d", self.id, rnd)
        finally:
            self._busy.release()

    def _on_model(self, rnd: int, body: dict[str, Any]) -> None:
        if body.get("base") != self.lineage.version:
            raise fedwire.FedRefused(f"model built on v{body.get('base')}, our base is v{self.lineage.version}")
        try:
            man = json.loads(body["manifest"])
            data = body["model"]
        except (KeyError, TypeError, ValueError) as e:
            raise fedwire.FedRefused(f"model message fields ({e})") from None
        if not isinstance(data, bytes) or sha256_bytes(data) != man.get("sha256"):
            raise fedwire.FedRefused("model bytes do not match the manifest sha256")
        if not isinstance(man.get("version"), int) or man["version"] <= self.lineage.version:
            raise fedwire.FedRefused("model version does not increase")
        cand = load_bytes(man, data)
        cur_s, cand_s = self.evaluate(self.serving), self.evaluate(cand)
        adopt = cand_s >= cur_s - self.cfg.adopt_margin
        self.lineage.set(man, data)  # the next round starts from the global model either way
        if adopt and self.install is not None:
            try:
                self.install(man, data)
            except ModelError as e:
                adopt = False
                self._refuse(f"install v{man['version']}: {e}")
        if adopt:
            self.serving = cand
        self.counters["adopted" if adopt else "not_adopted"] += 1
        res = {"round": rnd, "gw": self.id, "version": man["version"], "adopted": adopt,
               "score_current": round(cur_s, 4), "score_candidate": round(cand_s, 4)}
        self.results[rnd] = res
        log.info("event=fed_model gateway=%s round=%d version=%d adopted=%s current=%.4f candidate=%.4f",
                 self.id, rnd, man["version"], adopt, cur_s, cand_s)
        self.bus.publish(fedwire.topic(self.cfg.topic_prefix, rnd, "result", self.id),
                         fedwire.seal(self.key, self.id, "result", res))

    def evaluate(self, model: LoadedModel) -> float:
        """Gate score of a model on this gateway's held-back windows."""
        x = normalise(self.holdout.X, model.mean, model.std)
        return fedlocal.gate_score(self.holdout.y, fedlocal.scores_of(model, x), model.threshold)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)


