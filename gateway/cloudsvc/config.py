"""`fogline cloud` config: one TOML file, sections [cloud.broker], [cloud.db], [cloud.http] (defaults below).

Checked like the gateway's (`fogline.gateway.config_check`): typed values, unknown tables and keys refused
naming them, errors as ConfigError (a ValueError) naming the field.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fogline.gateway.config_check import ConfigError, build_section, unknown_section

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

LANES = ("alert", "anomaly", "summary", "raw")


@dataclass
class BrokerConfig:
    """[cloud.broker] the cloud MQTT broker the gateways relay to; consumers share its subscriptions."""

    host: str = "127.0.0.1"
    port: int = 1883
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    username: str | None = None
    password: str | None = None
    group: str = "fogline-cloud"  # shared subscription group: $share/<group>/fogline/+/<lane>
    shared: bool = True  # false: plain subscriptions (one consumer gets everything)
    client_id: str = ""  # fixed per process (persistent session); "" = <group>-<hostname>-<pid>
    protocol: str = "5"  # "5" (receive_maximum honoured) or "3.1.1"
    receive_maximum: int = 1000  # QoS 1 messages the broker may have unacked at this consumer (MQTT 5)
    keepalive: int = 30
    reconnect_max_s: float = 1.0  # back off at most this long: after a broker restart, resubscribe quickly
    session_expiry_s: int = 86400  # MQTT 5: the session (and its unacked messages) outlives a crash this long
    lanes: list[str] = field(default_factory=lambda: list(LANES))

    def check(self) -> None:
        if self.protocol not in ("3.1.1", "5"):
            raise ValueError('cloud.broker.protocol: must be "3.1.1" or "5"')
        if not (0 < self.port < 65536):
            raise ValueError("cloud.broker.port: out of range")
        bad = [x for x in self.lanes if x not in LANES]
        if bad or not self.lanes:
            raise ValueError(f"cloud.broker.lanes: each of {LANES}")
        if self.receive_maximum < 1 or self.receive_maximum > 65535:
            raise ValueError("cloud.broker.receive_maximum: 1..65535")
        if not self.group or any(c in self.group for c in "/+#"):
            raise ValueError("cloud.broker.group: a non-empty name without / + #")


@dataclass
class DbConfig:
    """[cloud.db] where the cloud record lives: PostgreSQL with a dsn, else SQLite in data_dir."""

    dsn: str = ""  # e.g. "host=db port=5432 dbname=fogline user=fogline"; "" = embedded SQLite
    data_dir: str = "fogline-cloud-data"  # SQLite file cloud.sqlite here when dsn is empty
    batch_max: int = 500  # MQTT messages per transaction at most (a batch is whatever arrived meanwhile)
    retention_days: float = 0.0  # readings older than this are dropped (a partition drop on PostgreSQL); 0 = keep
    partition_days: int = 1  # PostgreSQL readings partition width (by reading time)
    retry_min_s: float = 0.2  # database down: retry the same batch with backoff (nothing is acked meanwhile)
    retry_max_s: float = 5.0

    def check(self) -> None:
        if self.batch_max < 1:
            raise ValueError("cloud.db.batch_max: must be >= 1")
        if self.retention_days < 0 or self.partition_days < 1:
            raise ValueError("cloud.db.retention_days >= 0 and partition_days >= 1")

    @property
    def sqlite_path(self) -> Path:
        return Path(self.data_dir) / "cloud.sqlite"


@dataclass
class HttpConfig:
    """[cloud.http] the query API; tokens: site id -> bearer token (a token reads only its own site)."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8780  # 0 = any free port
    tokens: dict[str, str] = field(default_factory=dict)
    max_points: int = 100000  # per /v1/readings answer

    def check(self) -> None:
        if not (0 <= self.port < 65536):
            raise ValueError("cloud.http.port: out of range")
        if len(set(self.tokens.values())) != len(self.tokens):
            raise ValueError("cloud.http.tokens: each site needs its own token")


@dataclass
class ServiceConfig:
    """The whole `fogline cloud` config."""

    broker: BrokerConfig = field(default_factory=BrokerConfig)
    db: DbConfig = field(default_factory=DbConfig)
    http: HttpConfig = field(default_factory=HttpConfig)

    def check(self) -> None:
        self.broker.check()
        self.db.check()
        self.http.check()


def from_dict(raw: dict[str, Any]) -> ServiceConfig:
    """Config from a parsed TOML document (one [cloud] table); ConfigError names the bad field."""
    for name in raw:
        if name != "cloud":
            raise unknown_section(name, ["cloud", "cloud.broker", "cloud.db", "cloud.http"])
    return build_section("cloud", ServiceConfig, raw.get("cloud"))


def load(path: str | os.PathLike[str] | None) -> ServiceConfig:
    """Read a cloud.toml (None = every default)."""
    if path is None:
        return from_dict({})
    try:
        with open(path, "rb") as f:
            return from_dict(tomllib.load(f))
    except OSError as e:
        raise ConfigError(f"config file {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: {e}") from None
