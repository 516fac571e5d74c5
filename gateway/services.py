"""What a gateway component may use of the gateway: the typed `Services` object, its one builder, the start rule.

Components (relay, twin, inference, placement, cluster, discovery, metrics HTTP) get `start(services)`
and use only these fields, never the Gateway's internals. `Gateway.start` builds it with `build(gw)` once
the store is open; a component whose start raises stops the gateway with a `ComponentError` naming it.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable

Hook = Callable[..., Any]


class ComponentError(RuntimeError):
    """An enabled component could not be built or started: the gateway must not run without it."""

    def __init__(self, component: str, cause: BaseException | str):
        self.component = component
        self.cause = cause
        super().__init__(f"component {component} failed to start: {cause}")


def _none(*_a: Any, **_k: Any) -> None:
    return None


async def _no_publish(topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
    raise RuntimeError("no site broker to publish on")


@dataclass
class Services:
    """The gateway as its components see it (fields are the gateway's public API, bound once)."""

    config: Any = None
    site: str = ""
    gateway_id: str = ""
    data_dir: Path = Path(".")
    metrics: Any = None  # fogline.gateway.ops.metrics.Metrics
    registry: Any = None  # fogline.gateway.ingest.devices.DeviceRegistry
    store: Any = None  # fogline.gateway.store.core.Store: touch it only on the store thread (run_store)
    publish: Callable[..., Awaitable[None]] = _no_publish  # (topic, payload, qos=1, retain=False) on the site broker
    connected: bool = True  # whether a site broker connection exists at all (publish works)
    on_window: Callable[[Hook], None] = _none
    on_alert: Callable[[Hook], None] = _none
    on_readings: Callable[[Hook], None] = _none
    on_state: Callable[[Hook], None] = _none
    may_relay: Callable[..., bool] = staticmethod(lambda node, since=None: True)  # type: ignore[assignment]
    query_hot: Callable[..., list[tuple[float, float]]] | None = None
    run_store: Callable[..., Awaitable[Any]] | None = None  # await run_store(fn, *args): fn(store, *args)
    store_call_soon: Callable[..., "concurrent.futures.Future[Any]"] | None = None
    mark_relayed: Callable[..., Awaitable[None]] | None = None
    node_key: Callable[[str], bytes | None] = staticmethod(lambda node: None)  # type: ignore[assignment]
    accept: Hook | None = None  # ingest core, for the cluster's held messages: accept(Message)
    reject: Hook | None = None
    ack_payload: Hook | None = None
    primary_of: Callable[[str], str | None] = staticmethod(lambda node: None)  # type: ignore[assignment]
    # ^ the gateway serving node in a [cluster] (None: no cluster, or no view yet)


def build(gw: Any) -> Services:
    """The Services of a started Gateway (the one place that reads the Gateway for its components)."""
    cfg = gw.config
    return Services(config=cfg, site=gw.site, gateway_id=cfg.site.gateway_id, data_dir=gw.data_dir,
                    metrics=gw.metrics, registry=gw.registry, store=gw.store, publish=gw.publish,
                    connected=gw.mqtt is not None, on_window=gw.on_window, on_alert=gw.on_alert,
                    on_readings=gw.on_readings, on_state=gw.on_state, may_relay=gw.may_relay,
                    query_hot=gw.query_hot, run_store=gw.run_store, store_call_soon=gw.store_call_soon,
                    mark_relayed=gw.mark_relayed, node_key=gw.node_key, accept=gw.accept, reject=gw.reject,
                    ack_payload=gw.ack_payload, primary_of=_primary_of(gw))


def _primary_of(host: Any) -> Callable[[str], str | None]:
    # looked up per call: the cluster service may be attached (or replaced) after the services are built
    def primary(node: str) -> str | None:
        cl = getattr(host, "cluster", None)
        return cl.primary(node) if cl is not None else None
    return primary


def of(host: Any) -> Services | None:
    """`host` as Services: itself, a Gateway's (built), or a stand-in object's same-named attributes (tests)."""
    if host is None or isinstance(host, Services):
        return host
    from fogline.gateway.app import Gateway
    if isinstance(host, Gateway):
        return host.services if host.services is not None else build(host)
    found = {f.name: getattr(host, f.name) for f in dataclasses.fields(Services) if hasattr(host, f.name)}
    found.setdefault("connected", getattr(host, "mqtt", None) is not None)
    found.setdefault("primary_of", _primary_of(host))
    return Services(**found)


async def start_all(components: list[Any], services: Services) -> None:
    """Start each component in order; the first that raises becomes a ComponentError naming it.

    The ones after it are dropped from `components` (never started, so never stopped)."""
    for i, c in enumerate(components):
        try:
            await c.start(services)
        except Exception as e:
            del components[i + 1:]
            raise ComponentError(component_name(c), f"{type(e).__name__}: {e}") from e


def component_name(c: Any) -> str:
    """A component's name for logs and errors: its `name` attribute, else its class name."""
    return str(getattr(c, "name", None) or type(c).__name__)
