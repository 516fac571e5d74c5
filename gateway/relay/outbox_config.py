"""[outbox] configuration: the lanes in priority order (alert > anomaly > summary > raw) and their policies.

Each lane has a TTL, caps on rows and bytes, and what to do when full (reject the new item or overwrite
the oldest); `OutboxConfig.policies()` applies the configured overrides to the defaults field by field.
The queue itself is `fogline.gateway.relay.outbox.Outbox`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fogline.gateway.config_check import build_section

LANES: tuple[str, ...] = ("alert", "anomaly", "summary", "raw")  # priority order
POLICIES = ("reject", "overwrite")


@dataclass
class LanePolicy:
    """Per-lane limits: TTL (None = forever), caps on rows and bytes, and what to do when full."""

    ttl_s: float | None = None
    max_rows: int = 100_000
    max_bytes: int = 64 * 1024 * 1024
    when_full: str = "reject"

    def check(self, lane: str) -> None:
        if self.when_full not in POLICIES:
            raise ValueError(f"outbox.lanes.{lane}.when_full: must be one of {POLICIES}, got {self.when_full!r}")
        if self.max_rows < 1 or self.max_bytes < 1:
            raise ValueError(f"outbox.lanes.{lane}: max_rows and max_bytes must be >= 1")
        if self.ttl_s is not None and self.ttl_s <= 0:
            raise ValueError(f"outbox.lanes.{lane}.ttl_s: must be > 0 or absent")


def _default_lanes() -> dict[str, LanePolicy]:
    # Alerts never expire and are never overwritten; raw windows are the first to go.
    return {
        "alert": LanePolicy(ttl_s=None, max_rows=200_000, max_bytes=128 << 20, when_full="reject"),
        "anomaly": LanePolicy(ttl_s=7 * 86400, max_rows=200_000, max_bytes=128 << 20, when_full="reject"),
        "summary": LanePolicy(ttl_s=3 * 86400, max_rows=500_000, max_bytes=256 << 20, when_full="overwrite"),
        "raw": LanePolicy(ttl_s=86400, max_rows=50_000, max_bytes=256 << 20, when_full="overwrite"),
    }


@dataclass
class OutboxConfig:
    """[outbox] durable priority queue to the cloud."""

    path: str = ""  # SQLite file; "" = <site.data_dir>/outbox.sqlite
    synchronous: str = "FULL"  # FULL survives power loss; NORMAL survives a process kill only
    expire_every_s: float = 60.0  # how often rows past their lane TTL are swept (counted as expired)
    # Per-lane overrides of ttl_s / max_rows / max_bytes / when_full ("reject" | "overwrite"), e.g.
    # [outbox.lanes.raw] when_full = "overwrite". Defaults: alert never expires and rejects when full
    # (200k rows); anomaly 7 d, reject; summary 3 d, overwrite oldest; raw 1 d, overwrite oldest.
    lanes: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "OutboxConfig":
        """Build from a TOML table: unknown keys and wrong types refused with the field's name (ConfigError)."""
        return build_section("outbox", cls, d)

    def policies(self) -> dict[str, LanePolicy]:
        """Lane policies: defaults with the configured overrides applied field by field."""
        lanes = _default_lanes()
        for name, sub in (self.lanes or {}).items():
            if name not in LANES:
                raise ValueError(f"outbox.lanes.{name}: unknown lane (lanes: {', '.join(LANES)})")
            if isinstance(sub, LanePolicy):
                lanes[name] = sub
                continue
            base = dict(lanes[name].__dict__)
            for k, v in sub.items():
                if k not in base:
                    raise ValueError(f"outbox.lanes.{name}.{k}: unknown field (ttl_s, max_rows, max_bytes, when_full)")
                base[k] = v
            lanes[name] = LanePolicy(**base)
        return lanes

    def validate(self) -> None:
        if self.synchronous.upper() not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError("outbox.synchronous: must be FULL, NORMAL or EXTRA")
        if self.expire_every_s <= 0:
            raise ValueError("outbox.expire_every_s: must be > 0")
        for name, pol in self.policies().items():
            pol.check(name)

    check = validate
