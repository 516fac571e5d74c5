"""Embedded MQTT broker (amqtt, in-process) for the demo: no mosquitto needed on a fresh machine."""

from __future__ import annotations

import asyncio
import logging
import socket
import warnings
from urllib.parse import urlparse

log = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on host that is free right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def parse_url(url: str) -> tuple[str, int]:
    """(host, port) of mqtt://host:port (port 1883 when absent); ValueError otherwise."""
    u = urlparse(url if "://" in url else "mqtt://" + url)
    if u.scheme not in ("mqtt", "tcp") or not u.hostname:
        raise ValueError(f"broker URL must look like mqtt://host:port, got {url!r}")
    return u.hostname, u.port or 1883


class EmbeddedBroker:
    """amqtt broker on 127.0.0.1 (anonymous, no $SYS chatter), started and stopped on the running loop."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None, name: str = "site"):
        self.host = host
        self.port = port or free_port(host)
        self.name = name
        self._broker = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    async def start(self) -> "EmbeddedBroker":
        """Start listening; RuntimeError with the reason if amqtt is missing or the port is taken."""
        try:
            from amqtt.broker import Broker
        except ImportError as e:  # pragma: no cover - amqtt is a runtime dependency
            raise RuntimeError(f"amqtt is not installed ({e}); pass --broker mqtt://host:port") from e
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.ERROR)
        cfg = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}", "max_connections": 500}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            self._broker = Broker(cfg)
            try:
                await self._broker.start()
            except Exception as e:
                self._broker = None
                raise RuntimeError(f"embedded broker {self.name} on {self.host}:{self.port}: {e}") from e
        log.info("event=broker_started name=%s url=%s", self.name, self.url)
        return self

    async def stop(self) -> None:
        """Shut down (idempotent); errors during shutdown are logged, not raised."""
        b, self._broker = self._broker, None
        if b is None:
            return
        try:
            await asyncio.wait_for(b.shutdown(), 5)
        except Exception as e:  # amqtt may complain about half-closed sessions at shutdown
            log.warning("event=broker_stop_error name=%s error=%s", self.name, e)
