"""[cloud] the gateway's link to the cloud broker: identity, TLS, auth, QoS 1 window, what it relays.

Standard library only (the link itself, with paho, is `fogline.gateway.relay.cloud`), so the config
loads without the MQTT client.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fogline.gateway.config_check import build_section
from fogline.gateway.relay.bandwidth import BandwidthConfig
from fogline.gateway.relay.breaker import BreakerConfig


@dataclass
class CloudConfig:
    """[cloud] the cloud broker: identity, TLS, auth, QoS 1 window; sub-tables bandwidth and breaker."""

    enabled: bool = False  # the relay runs only when true
    host: str = "localhost"
    port: int = 8883
    client_id: str = ""  # fixed (persistent session); "" = fogline-<gateway_id>
    protocol: str = "3.1.1"  # or "5"
    tls: bool = True
    allow_plaintext: bool = False  # must be true to connect without TLS
    ca_file: str | None = None  # None = system trust store
    cert_file: str | None = None  # client certificate (AWS IoT style) ...
    key_file: str | None = None  # ... and its key
    tls_insecure: bool = False  # skip the hostname check (never by default)
    username: str | None = None
    password: str | None = None
    keepalive: int = 30
    session_expiry_s: int = 7 * 86400  # MQTT 5 persistent session lifetime
    max_inflight: int = 20  # QoS 1 messages awaiting PUBACK
    ack_timeout_s: float = 30.0  # no PUBACK by then: a failure, the rows go again (same keys)
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    # Window lengths the relay itself sends as summaries. None = auto: none when [inference] is
    # enabled (its decisions carry the summaries), else [60.0].
    summary_windows_s: list[float] | None = None
    # Relay every stored up-lane reading too (outbox lane "raw", contiguous seqs of one node per
    # message). Alerts are always relayed. Off by default: summaries are what a site usually sends.
    forward_readings: bool = False
    forward_batch: int = 100  # readings per forwarded "raw" message (at most)
    # The gateway's own health (CPU, memory, disk, load, nodes served) to the cloud in the summary lane,
    # body {"kind": "gateway_health", "gw", "health", "nodes"}; 0 = never.
    health_every_s: float = 60.0
    # `fogline query` fetches the ranges only the cloud keeps from the cloud tier's query API
    # (`fogline cloud`), e.g. "https://cloud.example:8780"; "" = only name those ranges. The token is this site's.
    query_url: str = ""
    query_token: str | None = None
    query_timeout_s: float = 10.0
    bandwidth: BandwidthConfig = field(default_factory=BandwidthConfig)
    breaker: BreakerConfig = field(default_factory=BreakerConfig)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "CloudConfig":
        """Build from a TOML table: unknown keys and wrong types refused with the field's name (ConfigError)."""
        return build_section("cloud", cls, d)

    def check(self) -> None:
        if self.protocol not in ("3.1.1", "5"):
            raise ValueError("cloud.protocol: must be \"3.1.1\" or \"5\"")
        if not self.tls and not self.allow_plaintext:
            raise ValueError("cloud.tls: plaintext MQTT refused; set cloud.allow_plaintext = true to allow it")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cloud.cert_file/key_file: give both or neither")
        if not (0 < self.port < 65536):
            raise ValueError("cloud.port: out of range")
        if self.max_inflight < 1 or self.ack_timeout_s <= 0:
            raise ValueError("cloud.max_inflight >= 1 and cloud.ack_timeout_s > 0")
        if self.health_every_s < 0:
            raise ValueError("cloud.health_every_s: must be >= 0 (0 = off)")
        if self.forward_batch < 1:
            raise ValueError("cloud.forward_batch: must be >= 1")

    validate = check
