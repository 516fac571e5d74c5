"""[inference] the local anomaly model: where it comes from, which window it scores, how it decides.

Standard library only (the engine, with numpy and onnxruntime, is `fogline.gateway.inference.core`).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class InferenceConfig:
    """[inference] local anomaly model and the summary / anomaly / raw-forward decision."""
    enabled: bool = True
    model_dir: str = ""               # model dir to start from; "" = the bundled gateway/models
    registry_dir: str = "models"      # installed versions (relative to site.data_dir unless absolute)
    model_url: str = ""               # install this model at start: a dir, manifest path, file:// or http(s)://
    accept_cloud_models: bool = True  # install models published to fogline/<site>/model (CBOR)
    model_keys: list[str] = field(default_factory=list)  # trusted Ed25519 model-signing public keys (PEM)
    require_signed_models: bool = True  # refuse installing a model no model_keys key signed (inference/signing.py)
    allow_downgrade: bool = False     # refuse a downloaded model whose version is not newer
    window_s: float = 60.0            # the aggregate window scored: the model's manifest window_s (checked at start)
    threshold: float | None = None    # anomaly threshold on the score; None = the manifest's
    confidence_min: float | None = None  # below this confidence the raw window goes to the cloud; None = manifest
    metric_aliases: dict[str, str] = field(default_factory=dict)  # node metric -> model metric, e.g. temp_c = "temperature"
    set_timeout_s: float = 5.0        # score an incomplete set this long (wall clock) after its first window
    max_pending_sets: int = 100000    # oldest incomplete sets are scored early beyond this
    rescore_keep_sets: int = 16       # decided sets per node kept to re-score when late windows correct them
    keep_versions: int = 3            # installed model versions kept in the registry (CURRENT included)
