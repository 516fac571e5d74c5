"""Model directories with a manifest: verify, load into onnxruntime, install new versions atomically.

A model directory holds `manifest.json` and the ONNX file it names. Loading checks, in order: the
manifest exists and has the required fields, the file exists, its sha256 matches, onnxruntime can
build a session (1 intra-op thread), the input/output shapes match the manifest's feature schema,
and a probe batch gives finite scores of shape (N, 1). Any failure raises ModelError with the
reason; the caller keeps whatever model it had.

Installed versions live under `<root>/<name>-v<version>-<sha8>/`; `<root>/CURRENT` names the active
one and is replaced atomically (write + fsync + rename), so a crash never leaves half a model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

BUNDLED_DIR = Path(__file__).resolve().parents[1] / "models"
REQUIRED = ("name", "version", "file", "sha256", "input", "output", "normalisation", "threshold", "features")
MAX_MODEL_BYTES = 16 << 20
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class ModelError(Exception):
    """A model (directory, manifest or bytes) was refused; the message says why."""


@dataclass
class LoadedModel:
    """A verified model ready to score normalised feature rows."""

    manifest: dict[str, Any]
    path: Path
    session: Any
    input_name: str
    n_features: int
    mean: np.ndarray
    std: np.ndarray
    threshold: float
    confidence_min: float

    @property
    def ident(self) -> str:
        """name@vVERSION, what decisions and metrics report."""
        return f"{self.manifest['name']}@v{self.manifest['version']}"

    def run(self, x: np.ndarray) -> np.ndarray:
        """Scores (N,) of normalised float32 rows (N, F)."""
        return self.session.run(None, {self.input_name: x})[0][:, 0]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_manifest(man: Any) -> dict[str, Any]:
    """Return the manifest if it has the required fields and a sane schema, else raise ModelError."""
    if not isinstance(man, dict):
        raise ModelError("manifest: not a JSON object")
    missing = [k for k in REQUIRED if k not in man]
    if missing:
        raise ModelError(f"manifest: missing field(s) {', '.join(missing)}")
    name = man["name"]
    # The name becomes a directory under the registry: no separators, no dot names, no traversal.
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ModelError("manifest.name: must be 1-64 of A-Z a-z 0-9 . _ - starting with a letter or digit")
    if not isinstance(man["version"], int) or isinstance(man["version"], bool) or man["version"] < 0:
        raise ModelError("manifest.version: must be a non-negative integer")
    f = man["file"]
    if not isinstance(f, str) or not _NAME.fullmatch(f):
        raise ModelError("manifest.file: must be a plain file name")
    names = man["input"].get("features") if isinstance(man["input"], dict) else None
    if not isinstance(names, list) or not names:
        raise ModelError("manifest.input.features: must be a non-empty list of feature names")
    norm = man["normalisation"]
    if (not isinstance(norm, dict) or len(norm.get("mean", [])) != len(names)
            or len(norm.get("std", [])) != len(names)):
        raise ModelError("manifest.normalisation: mean and std must have one entry per feature")
    if any(not isinstance(s, (int, float)) or s <= 0 for s in norm["std"]):
        raise ModelError("manifest.normalisation.std: entries must be > 0")
    thr = man["threshold"]
    if not isinstance(thr, (int, float)) or not 0.0 < thr < 1.0:
        raise ModelError("manifest.threshold: must be in (0, 1)")
    return man


def read_manifest(model_dir: Path) -> dict[str, Any]:
    p = Path(model_dir) / "manifest.json"
    if not p.is_file():
        raise ModelError(f"{model_dir}: missing manifest.json")
    try:
        return check_manifest(json.loads(p.read_text()))
    except (ValueError, UnicodeDecodeError) as e:
        raise ModelError(f"{p}: not valid JSON ({e})") from None


def load_model(model_dir: str | Path) -> LoadedModel:
    """Verify and load a model directory; ModelError on any problem."""
    import onnxruntime as ort

    model_dir = Path(model_dir)
    man = read_manifest(model_dir)
    path = model_dir / man["file"]
    if not path.is_file():
        raise ModelError(f"{model_dir}: model file {man['file']} named by the manifest is missing")
    data = path.read_bytes()
    digest = sha256_bytes(data)
    if digest != man["sha256"]:
        raise ModelError(f"{path}: sha256 mismatch (manifest {str(man['sha256'])[:12]}.., file {digest[:12]}..)")
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 4
    try:
        sess = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises several private exception types
        raise ModelError(f"{path}: onnxruntime refused the model ({type(e).__name__}: {str(e)[:200]})") from None
    n = len(man["input"]["features"])
    ins = sess.get_inputs()
    if len(ins) != 1 or len(ins[0].shape) != 2 or (isinstance(ins[0].shape[1], int) and ins[0].shape[1] != n):
        raise ModelError(f"{path}: input shape {[i.shape for i in ins]} does not match {n} features")
    probe = np.zeros((3, n), dtype=np.float32)
    try:
        out = sess.run(None, {ins[0].name: probe})[0]
    except Exception as e:
        raise ModelError(f"{path}: probe inference failed ({type(e).__name__}: {str(e)[:200]})") from None
    if not isinstance(out, np.ndarray) or out.shape != (3, 1):
        raise ModelError(f"{path}: output shape {getattr(out, 'shape', None)} for a batch of 3, expected (3, 1)")
    if not np.all(np.isfinite(out)):
        raise ModelError(f"{path}: probe inference gave non-finite scores")
    cm = float(man.get("confidence_min", 0.5))
    return LoadedModel(man, path, sess, ins[0].name, n, np.asarray(man["normalisation"]["mean"], dtype=np.float64),
                       np.asarray(man["normalisation"]["std"], dtype=np.float64), float(man["threshold"]), cm)


class ModelRegistry:
    """Installed model versions under `root`, with an atomically switched CURRENT pointer."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def current_dir(self) -> Path | None:
        """Directory named by CURRENT, if any."""
        p = self.root / "CURRENT"
        if not p.is_file():
            return None
        d = self.root / p.read_text().strip()
        return d if d.is_dir() else None

    def install(self, manifest: dict[str, Any], model_bytes: bytes) -> Path:
        """Verify (manifest, bytes) fully, store them as a new version dir and return it.

        Does not switch CURRENT: call `activate()` after the engine accepted the model.
        """
        check_manifest(manifest)
        if not isinstance(model_bytes, (bytes, bytearray)) or not model_bytes:
            raise ModelError("model bytes: empty or not bytes")
        if len(model_bytes) > MAX_MODEL_BYTES:
            raise ModelError(f"model bytes: {len(model_bytes)} > {MAX_MODEL_BYTES}")
        if sha256_bytes(bytes(model_bytes)) != manifest["sha256"]:
            raise ModelError("model bytes: sha256 does not match the manifest")
        self.root.mkdir(parents=True, exist_ok=True)
        name = f"{manifest['name']}-v{manifest['version']}-{manifest['sha256'][:8]}"
        final = self.root / name
        if final.resolve().parent != self.root.resolve():  # check_manifest already refuses such names
            raise ModelError(f"manifest.name: {manifest['name']!r} leaves the registry")
        if final.is_dir():
            load_model(final)  # already installed: still verify it
            return final
        tmp = Path(tempfile.mkdtemp(prefix=".incoming-", dir=self.root))
        try:
            (tmp / manifest["file"]).write_bytes(bytes(model_bytes))
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
            load_model(tmp)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    def activate(self, model_dir: Path) -> None:
        """Point CURRENT at model_dir (atomic rename)."""
        tmp = self.root / ".CURRENT.tmp"
        with open(tmp, "w") as fh:
            fh.write(Path(model_dir).name + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.root / "CURRENT")

    def versions(self) -> list[Path]:
        """Installed version dirs, oldest install first."""
        return sorted((p for p in self.root.glob("*-v*-*") if p.is_dir()), key=lambda p: (p.stat().st_mtime, p.name))

    def cleanup(self, keep: int = 3) -> int:
        """Remove half-written installs (a crash mid-install) and all but the newest `keep` versions
        (never CURRENT); returns how many dirs were removed."""
        if not self.root.is_dir():
            return 0
        n = 0
        for p in self.root.glob(".incoming-*"):
            shutil.rmtree(p, ignore_errors=True)
            n += 1
        cur = self.current_dir()
        old = [p for p in self.versions() if cur is None or p.resolve() != cur.resolve()]
        for p in old[:max(0, len(old) - max(keep - 1, 0))]:
            shutil.rmtree(p, ignore_errors=True)
            n += 1
        return n


def fetch(url: str, timeout: float = 30.0) -> tuple[dict[str, Any], bytes]:
    """(manifest, model bytes) from a local model dir / manifest path, file:// or http(s):// URL.

    For a URL the manifest is fetched from <url> (a manifest.json) and the model from the file it
    names next to it.
    """
    if "://" not in url:
        p = Path(url)
        d = p.parent if p.name == "manifest.json" else p
        man = read_manifest(d)
        f = d / man["file"]
        if not f.is_file():
            raise ModelError(f"{d}: model file {man['file']} is missing")
        return man, f.read_bytes()
    if not url.startswith(("http://", "https://", "file://")):
        raise ModelError(f"{url}: only http(s)://, file:// or a local path")
    base = url if url.endswith("manifest.json") else url.rstrip("/") + "/manifest.json"
    try:
        with urllib.request.urlopen(base, timeout=timeout) as r:
            man = check_manifest(json.loads(r.read(1 << 20)))
        with urllib.request.urlopen(base.rsplit("/", 1)[0] + "/" + man["file"], timeout=timeout) as r:
            data = r.read(MAX_MODEL_BYTES + 1)
    except (OSError, ValueError) as e:
        raise ModelError(f"{url}: download failed ({e})") from None
    return man, data


def window_mismatch(manifest: dict[str, Any], window_s: float, aggregated: Any = ()) -> str | None:
    """Why [inference] window_s does not fit this model (trained on manifest features.window_s) or is not
    one of the [aggregate] windows_s; None when it fits."""
    trained = (manifest.get("features") or {}).get("window_s")
    if isinstance(trained, (int, float)) and abs(float(trained) - float(window_s)) > 1e-6:
        return (f"inference.window_s = {window_s:g} but the model {manifest.get('name')}@v{manifest.get('version')} "
                f"was trained on {float(trained):g} s windows: its features would not mean what it learned "
                f"(set window_s = {float(trained):g}, or build a model for {window_s:g} s)")
    if aggregated and not any(abs(float(a) - float(window_s)) <= 1e-6 for a in aggregated):
        return (f"inference.window_s = {window_s:g} is not one of aggregate.windows_s {list(aggregated)}: "
                "no window set will ever be scored")
    return None
