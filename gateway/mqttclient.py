"""The one paho client factory: credentials, TLS, reconnect back-off, session and protocol set in one place.

Every MQTT connection of the gateway and the cloud service (site ingest, the ingest worker, the cluster
link, the cloud relay, federation, the cloud consumer) is built here, from its config section
(`from_config`) or from explicit settings (`make_client`). Callbacks stay with the caller: paho runs
them on its own thread, so each caller hands them to its event loop with `call_soon_threadsafe`.
"""

from __future__ import annotations

import ssl
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion


def make_client(client_id: str, *, username: str | None = None, password: str | None = None, tls: bool = False,
                ca_file: str | None = None, cert_file: str | None = None, key_file: str | None = None,
                tls_insecure: bool = False, reconnect_min_s: float = 0.5, reconnect_max_s: float = 30.0,
                clean_session: bool = True, protocol: str = "3.1.1", manual_ack: bool = False,
                max_inflight: int | None = None, will: tuple[str, bytes] | None = None,
                client_class: type[mqtt.Client] | None = None) -> mqtt.Client:
    """A configured, unconnected paho 2.x client (callback API v2); TLS verifies the broker's certificate.

    protocol "5" uses MQTT 5 (clean_session then belongs to connect()); will is a retained QoS 1 last will."""
    v5 = protocol == "5"
    c = (client_class or mqtt.Client)(CallbackAPIVersion.VERSION2, client_id=client_id,
                                      clean_session=None if v5 else clean_session, manual_ack=manual_ack,
                                      protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311)
    if username is not None:
        c.username_pw_set(username, password)
    if tls:
        c.tls_set(ca_certs=ca_file, certfile=cert_file, keyfile=key_file, cert_reqs=ssl.CERT_REQUIRED,
                  tls_version=ssl.PROTOCOL_TLS_CLIENT)
        if tls_insecure:
            c.tls_insecure_set(True)
    if will is not None:
        c.will_set(will[0], will[1], qos=1, retain=True)
    c.reconnect_delay_set(reconnect_min_s, reconnect_max_s)  # type: ignore[arg-type]
    if max_inflight is not None:
        c.max_inflight_messages_set(max(1, max_inflight))
    return c


def settings(cfg: Any) -> dict[str, Any]:
    """make_client's connection settings from a config section: [mqtt], [cloud] or the cloud service's broker."""
    s: dict[str, Any] = {"username": cfg.username or None, "password": cfg.password, "tls": bool(cfg.tls),
                         "ca_file": cfg.ca_file, "cert_file": cfg.cert_file, "key_file": cfg.key_file,
                         "tls_insecure": bool(getattr(cfg, "tls_insecure", False)),
                         "reconnect_max_s": cfg.reconnect_max_s}
    # the cloud service's consumers have no minimum: they resubscribe fast after a broker restart
    s["reconnect_min_s"] = getattr(cfg, "reconnect_min_s", min(0.2, cfg.reconnect_max_s))
    if hasattr(cfg, "protocol"):
        s["protocol"] = cfg.protocol
    return s


def from_config(cfg: Any, client_id: str, **kw: Any) -> mqtt.Client:
    """make_client with cfg's connection settings; kw (clean_session, max_inflight, will, ...) as make_client."""
    return make_client(client_id, **{**settings(cfg), **kw})
