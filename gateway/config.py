"""Gateway configuration: one TOML file, one typed dataclass per section, documented defaults.

Every section is registered in `SECTIONS` below. Each section's dataclass lives in a light module of
its concern (standard library and `fogline.shared` only), so loading a config imports no numpy,
onnxruntime, paho or cryptography, and every section is checked whatever is installed. Unknown
sections and keys are errors naming them (with the closest known name as a hint); the old spellings
in `RENAMED` are still read, with a warning. Components read their section as `cfg.mqtt` or
`cfg.section("inference")`. A new section: a dataclass (every field with a default and a comment,
which `tools/example_config.py` copies into gateway/examples/gateway.toml) and one line in SECTIONS.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fogline.gateway.cluster.core import ClusterConfig
from fogline.gateway.config_check import ConfigError, build_section, unknown_section
from fogline.gateway.federation.config import FederationConfig
from fogline.gateway.inference.config import InferenceConfig
from fogline.gateway.ops.discovery import HomeAssistantConfig
from fogline.gateway.placement.workload import PlacementConfig
from fogline.gateway.relay.cloud_config import CloudConfig
from fogline.gateway.relay.outbox_config import OutboxConfig
from fogline.gateway.twin.config import TwinConfig
from fogline.shared import topics

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["Config", "ConfigError", "RENAMED", "SECTIONS", "build_section", "example_toml", "from_dict", "load",
           "register_section", "toml_value"]


@dataclass
class SiteConfig:
    """[site] who this gateway is and where it keeps its data."""
    id: str = "site1"                 # site id used in every topic fogline/<site>/...
    gateway_id: str = "gw1"           # this gateway's id (idempotency keys, client ids)
    data_dir: str = "./fogline-data"  # SQLite files, metrics snapshot, outbox live here


@dataclass
class MqttConfig:
    """[mqtt] the site broker the nodes publish to."""
    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    client_id: str = ""               # default: fogline-<site>-<gateway_id>
    keepalive: int = 30               # seconds
    clean_session: bool = False       # persistent session: broker queues QoS 1 while we restart
    reconnect_min_s: float = 0.5      # first reconnect delay; doubles up to reconnect_max_s
    reconnect_max_s: float = 30.0
    tls: bool = False
    ca_file: str | None = None        # CA of the broker's certificate (None = system trust store)
    cert_file: str | None = None      # client certificate (a listener that requires one) ...
    key_file: str | None = None       # ... and its key
    worker_process: bool = True       # paho client in a child process: its per-message cost runs on
                                      # another core (false: a paho thread in the gateway process)


@dataclass
class IngestConfig:
    """[ingest] decode and validation policy."""
    max_payload_bytes: int = 16384    # larger messages are dead-lettered unread
    max_records: int = 1024           # readings per pack
    max_depth: int = 8                # CBOR nesting accepted
    unknown_devices: str = "auto_register"  # or "quarantine" (dead-letter until listed in known_devices)
    known_devices: list[str] = field(default_factory=list)
    max_devices: int = 10000          # auto_register stops here (a flood of invented node ids is refused)
    max_future_s: float = 300.0       # reading timestamps this far ahead of gateway clock are refused
    max_age_s: float = 30 * 86400.0   # ...and this far in the past
    numeric_only: bool = True         # readings must carry a numeric value (v)
    units: list[str] = field(default_factory=lambda: list(DEFAULT_UNITS))  # accepted SenML units
    extra_units: list[str] = field(default_factory=list)  # added to `units`
    queue_max: int = 100000           # messages waiting for commit before MQTT callbacks back off
    dead_letter_max_rows: int = 100000  # hard cap on kept dead-letter rows: the oldest go at insert
                                      # (per-reason totals stay exact in dead_letter_totals)
    auth_keys_file: str | None = None # gateway_keys.json from `fogline provision`: check pack authenticators
    require_auth: bool = True         # with auth_keys_file: refuse nodes without a key / unsigned packs
    gap_skip_s: float = 120.0         # a seq gap the node keeps resending above for this long was
                                      # dropped on the node (policy): skip it so acks can advance; 0 = never
    max_series_per_node: int = 64     # distinct metrics per node; readings of more are dead-lettered
    max_series: int = 20000           # distinct (node, metric) series in all (each holds a hot ring + windows)


@dataclass
class StoreConfig:
    """[store] durable store (SQLite WAL) and group commit."""
    db_file: str = "ingest.sqlite"    # relative to site.data_dir
    batch_max: int = 2000             # commit when this many readings are waiting...
    batch_ms: float = 5.0             # ...or this long after the first one arrived
    synchronous: str = "FULL"         # SQLite synchronous (WAL): FULL fsyncs every commit, so an ack
                                      # survives power loss; NORMAL survives only process crashes
    wal_checkpoint_pages: int = 10000  # WAL pages (4 KiB) before they are copied into the database file
                                       # (SQLite's default 1000 recopies the same hot pages almost every
                                       # commit at many nodes); the WAL file grows to about 40 MiB


@dataclass
class AggregateConfig:
    """[aggregate] tumbling windows per node and metric."""
    windows_s: list[float] = field(default_factory=lambda: [10.0, 60.0, 900.0])
    watermark_s: float = 5.0          # a window fires when the node's newest reading time passes
                                      # end + watermark_s (out-of-order slack before the first delivery)
    idle_close_s: float = 30.0        # close a node's open windows after this long (wall clock) without data
    allowed_lateness_s: list[float] = field(default_factory=list)  # per windows_s entry (one value = all;
                                      # [] = max(length, 60 s)): a fired window stays in memory this far past
                                      # the watermark, corrected by late readings; later ones re-open it from
                                      # the store. Either way the cloud gets a new revision of the window.
    flush_on_stop: bool = False       # deliver partial windows on clean shutdown (they are then final);
                                      # False: open windows are rebuilt from the store on the next start


@dataclass
class TiersConfig:
    """[tiers] hot (memory ring), warm (SQLite), cold (relayed then pruned)."""
    hot_points: int = 1024            # raw readings kept in memory per series
    compress_after_s: float = 3600.0  # raw rows older than this are packed into zlib blocks (warm)
    retention_s: float = 7 * 86400.0  # relayed data older than this is pruned (cold = cloud only)
    maintenance_s: float = 60.0       # how often compaction/pruning runs


@dataclass
class BleConfig:
    """[ble] BTHome v2 adverts via bleak."""
    enabled: bool = False
    bind_keys: dict[str, str] = field(default_factory=dict)  # MAC "AA:BB:.." -> 32 hex chars
    names: dict[str, str] = field(default_factory=dict)      # MAC -> node id (default: mac without colons)
    require_encryption: bool = True   # a plaintext advert from a MAC with a bind key is refused
    stall_s: float = 60.0             # restart the scanner after this long without any advert
    adapter: str | None = None        # e.g. "hci0"
    counter_restart_min_s: float = 86400.0  # a falling encryption counter (node flash erased) is accepted
    counter_restart_below: int = 256        # ...once per this long per MAC, and only if it restarts below this
    max_unknown: int = 256            # MACs without bind key or name tracked and registered (LRU; beyond: refused)


@dataclass
class MetricsConfig:
    """[metrics] counters; snapshot file for `fogline status`; optional HTTP endpoint (OPS)."""
    snapshot_s: float = 5.0           # write <data_dir>/metrics.json this often
    http_host: str = "127.0.0.1"
    http_port: int | None = None      # Prometheus endpoint port; None = off


DEFAULT_UNITS = (
    "Cel", "K", "%RH", "%", "/", "Pa", "hPa", "kPa", "bar", "m", "m/s", "m/s2", "g", "kg",
    "V", "A", "W", "Wh", "J", "Hz", "lx", "cd", "s", "ms", "dB", "dBm", "ppm", "ppb",
    "ug/m3", "count", "rad", "deg", "mm", "l", "l/s", "%EL", "EL", "1/s", "beat/min",
    "rpm", "m3", "m3/s", "Ohm", "S", "F", "C", "Wb", "T", "H", "Cel/s", "mA", "mV",
)

# Every section of gateway.toml, in the order of the example file.
SECTIONS: dict[str, Any] = {
    "site": SiteConfig,
    "mqtt": MqttConfig,
    "ingest": IngestConfig,
    "store": StoreConfig,
    "aggregate": AggregateConfig,
    "tiers": TiersConfig,
    "ble": BleConfig,
    "metrics": MetricsConfig,
    "outbox": OutboxConfig,
    "cloud": CloudConfig,
    "twin": TwinConfig,
    "homeassistant": HomeAssistantConfig,
    "inference": InferenceConfig,
    "federation": FederationConfig,
    "placement": PlacementConfig,
    "cluster": ClusterConfig,
}

# Old key names still read as the new ones, with a warning: table -> {deprecated key: key}.
RENAMED: dict[str, dict[str, str]] = {
    "mqtt": {"certfile": "cert_file", "keyfile": "key_file"},  # as [cloud] and the cloud service spell them
    "federation": {"max_seconds": "max_train_s"},  # every duration is *_s
    "placement": {"gateway_power": "gw_power"},  # as its other gw_* limits
}


def register_section(name: str, cls: Any) -> None:
    """Add a section dataclass (an embedding application's own table); call before load()."""
    SECTIONS[name] = cls


class Config:
    """All sections: attribute access (`cfg.mqtt`) or `cfg.section(name)`."""

    def __init__(self, raw: dict[str, Any] | None = None, path: Path | None = None):
        self.raw = dict(raw or {})
        self.path = path
        for name in self.raw:
            if name not in SECTIONS:
                raise unknown_section(name, SECTIONS)
        self._sections = {name: build_section(name, cls, self.raw.get(name), RENAMED)
                          for name, cls in SECTIONS.items()}
        _validate_core(self)

    def section(self, name: str) -> Any:
        """The typed section (KeyError for a name that is not registered)."""
        if name not in self._sections and name in SECTIONS:
            self._sections[name] = build_section(name, SECTIONS[name], self.raw.get(name), RENAMED)
        if name not in self._sections:
            raise KeyError(f"no config section [{name}]")
        return self._sections[name]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self.section(name)
        except KeyError:
            raise AttributeError(name) from None

    @property
    def data_dir(self) -> Path:
        """Data dir as a Path (a relative path is relative to the working directory)."""
        return Path(self.site.data_dir)

    def mqtt_client_id(self) -> str:
        return self.mqtt.client_id or f"fogline-{self.site.id}-{self.site.gateway_id}"


def _validate_core(cfg: Config) -> None:
    try:
        topics.check_id(cfg.site.id, "site")
    except ValueError as e:
        raise ConfigError(f"site.id: {e}") from None
    if cfg.ingest.unknown_devices not in ("auto_register", "quarantine"):
        raise ConfigError("ingest.unknown_devices: must be 'auto_register' or 'quarantine'")
    if cfg.store.synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
        raise ConfigError("store.synchronous: must be OFF, NORMAL, FULL or EXTRA")
    if cfg.store.batch_max < 1 or cfg.store.batch_ms < 0:
        raise ConfigError("store.batch_max/batch_ms: must be positive")
    if cfg.store.wal_checkpoint_pages < 1:
        raise ConfigError("store.wal_checkpoint_pages: must be >= 1")
    if not cfg.aggregate.windows_s or any(w <= 0 for w in cfg.aggregate.windows_s):
        raise ConfigError("aggregate.windows_s: needs one or more positive lengths")
    lat = cfg.aggregate.allowed_lateness_s
    if any(x < 0 for x in lat) or len(lat) not in (0, 1, len(cfg.aggregate.windows_s)):
        raise ConfigError("aggregate.allowed_lateness_s: values >= 0, one for all lengths or one per windows_s entry")
    if cfg.tiers.hot_points < 1:
        raise ConfigError("tiers.hot_points: must be >= 1")
    if cfg.ingest.dead_letter_max_rows < 0:
        raise ConfigError("ingest.dead_letter_max_rows: must be >= 0")
    for mac, key in cfg.ble.bind_keys.items():
        try:
            if len(bytes.fromhex(key)) != 16:
                raise ValueError
        except ValueError:
            raise ConfigError(f"ble.bind_keys.{mac}: must be 32 hex characters") from None


def load(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Load a TOML file (None = all defaults), apply {section: {key: value}} overrides."""
    raw: dict[str, Any] = {}
    p = Path(path) if path else None
    if p is not None:
        try:
            raw = tomllib.loads(p.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {p}") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{p}: {e}") from None
    for sec, vals in (overrides or {}).items():
        raw.setdefault(sec, {}).update(vals)
    return Config(raw, p)


def from_dict(raw: dict[str, Any]) -> Config:
    """Config from a dict shaped like the TOML file (tests, demo)."""
    return Config(raw)


from fogline.gateway.config_toml import example_toml, toml_value  # noqa: E402,F401  (public here; no cycle)
