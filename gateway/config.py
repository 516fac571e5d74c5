"""Gateway configuration: one TOML file, one typed dataclass per section, documented defaults.

Each component reads its own section (`cfg.mqtt`, `cfg.section("inference")`, ...).
Adding a section is a small additive edit: define a dataclass (every field with a
default, documented in a comment) and register it, either with one line in
`SECTIONS` below (a "module:Class" string, imported lazily so there are no import
cycles) or by calling `register_section("name", Class)` from your own module
before `load()` runs. Unknown keys inside a known section are errors (typos must
not silently fall back to defaults); sections nobody registered are kept as plain
dicts and logged.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """Invalid gateway configuration; the message names the field (section.key)."""


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
    ca_file: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
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

# name -> dataclass or "module:Class" (lazy). Add one line for a new section.
SECTIONS: dict[str, Any] = {
    "site": SiteConfig,
    "mqtt": MqttConfig,
    "ingest": IngestConfig,
    "store": StoreConfig,
    "aggregate": AggregateConfig,
    "tiers": TiersConfig,
    "ble": BleConfig,
    "metrics": MetricsConfig,
    "outbox": "fogline.gateway.relay.outbox:OutboxConfig",  # G-RELAY
    "cloud": "fogline.gateway.relay.cloud:CloudConfig",  # G-RELAY
    "twin": "fogline.gateway.twin.core:TwinConfig",  # G-RELAY
    "homeassistant": "fogline.gateway.ops.discovery:HomeAssistantConfig",  # OPS
    "inference": "fogline.gateway.inference.core:InferenceConfig",  # G-INFER
    "federation": "fogline.gateway.federation.core:FederationConfig",  # G-FED
    "placement": "fogline.gateway.placement.score:PlacementConfig",  # PLACEMENT (issue 11)
    "cluster": "fogline.gateway.cluster.core:ClusterConfig",  # CLUSTER: multi-gateway sites, failover, relay leases
}


def register_section(name: str, cls: Any) -> None:
    """Register a config section dataclass (idempotent); call before load()."""
    SECTIONS[name] = cls


def _section_class(name: str) -> Any | None:
    ref = SECTIONS.get(name)
    if isinstance(ref, str):
        mod, _, attr = ref.partition(":")
        try:
            ref = getattr(importlib.import_module(mod), attr)
        except (ImportError, AttributeError) as e:
            log.warning("config section=%s class=%s unavailable: %s", name, SECTIONS[name], e)
            return None
        SECTIONS[name] = ref
    return ref


def _check(path: str, tp: Any, v: Any) -> Any:
    """Check v against annotation tp; ints are accepted where floats are expected."""
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
                return _check(path, a, v)
            except ConfigError as e:
                errs.append(str(e))
        raise ConfigError(errs[0] if errs else f"{path}: bad value")
    if origin is list:
        if not isinstance(v, list):
            raise ConfigError(f"{path}: expected a list, got {type(v).__name__}")
        return [_check(f"{path}[{i}]", args[0] if args else Any, x) for i, x in enumerate(v)]
    if origin is dict:
        if not isinstance(v, dict):
            raise ConfigError(f"{path}: expected a table, got {type(v).__name__}")
        kt, vt = args if args else (Any, Any)
        return {_check(f"{path}.key", kt, k): _check(f"{path}.{k}", vt, x) for k, x in v.items()}
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
        return build_section(path, tp, v)
    return v


def build_section(name: str, cls: Any, raw: dict[str, Any] | None) -> Any:
    """Build dataclass cls from a TOML table; ConfigError names the bad field."""
    raw = raw or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{name}: expected a table")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(f"{name}.{unknown[0]}: unknown key (known: {', '.join(sorted(names))})")
    kw = {k: _check(f"{name}.{k}", hints[k], v) for k, v in raw.items()}
    obj = cls(**kw)
    post = getattr(obj, "validate", None)
    if callable(post):
        post()
    return obj


class Config:
    """All sections: attribute access (`cfg.mqtt`) or `cfg.section(name)`."""

    def __init__(self, raw: dict[str, Any] | None = None, path: Path | None = None):
        self.raw = dict(raw or {})
        self.path = path
        self._sections: dict[str, Any] = {}
        for name in list(SECTIONS):
            self._sections[name] = self._build(name)
        for name in self.raw:
            if name not in self._sections:
                if _section_class(name) is None and name not in SECTIONS:
                    log.info("config section=%s not registered; kept as a dict", name)
                self._sections[name] = self._build(name)
        _validate_core(self)

    def _build(self, name: str) -> Any:
        cls = _section_class(name)
        if cls is None:
            return dict(self.raw.get(name, {}))
        return build_section(name, cls, self.raw.get(name))

    def section(self, name: str) -> Any:
        """Typed section (registered now if it was registered after load)."""
        if name not in self._sections or (isinstance(self._sections[name], dict) and _section_class(name)):
            self._sections[name] = self._build(name)
        return self._sections[name]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self.section(name)
        except KeyError:  # pragma: no cover
            raise AttributeError(name) from None

    @property
    def data_dir(self) -> Path:
        """Data dir as a Path (a relative path is relative to the working directory)."""
        return Path(self.site.data_dir)

    def mqtt_client_id(self) -> str:
        return self.mqtt.client_id or f"fogline-{self.site.id}-{self.site.gateway_id}"


def _validate_core(cfg: Config) -> None:
    from fogline.shared import topics
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
