"""Components see the gateway through one typed Services object; an enabled component that fails stops the gateway."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from fogline.gateway import config as config_mod
from fogline.gateway import service_components
from fogline.gateway.app import Gateway
from fogline.gateway.services import ComponentError, Services

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_fogline_gateway_exits_naming_an_enabled_component_that_fails_to_start(tmp_path):
    """[metrics] http_port on a port already taken: the gateway stops with exit 3, naming the component."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        conf = tmp_path / "gateway.toml"
        conf.write_text(f'[site]\ndata_dir = "{tmp_path / "data"}"\n[mqtt]\nport = {_free_port()}\n'
                        f'[metrics]\nhttp_port = {port}\n[inference]\nenabled = false\n')
        p = subprocess.run([sys.executable, "-m", "fogline.tools.cli", "gateway", "--config", str(conf)],
                           cwd=REPO, capture_output=True, text=True, timeout=120)
    assert p.returncode == 3, (p.returncode, p.stderr[-2000:])
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("fogline gateway: component metrics_http failed to start: OSError"), last
    assert "event=gateway_stopped" in p.stderr  # the store was closed on the way out


def test_an_enabled_component_that_cannot_be_built_raises_naming_it(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    cfg = config_mod.from_dict({"site": {"data_dir": str(tmp_path / "data")}, "inference": {"enabled": False},
                                "cloud": {"enabled": True, "host": "127.0.0.1", "tls": False,
                                          "allow_plaintext": True},
                                "outbox": {"path": str(blocker / "outbox.sqlite")}})
    with pytest.raises(ComponentError) as e:
        service_components.attach(Gateway(cfg))
    assert e.value.component == "relay" and str(e.value).startswith("component relay failed to start: "), e.value


def test_a_component_failing_in_start_stops_the_gateway_and_the_ones_after_it_never_start(tmp_path):
    events: list[str] = []

    class Ok:
        name = "ok"

        async def start(self, services):
            events.append("ok.start")

        async def stop(self):
            events.append("ok.stop")

    class Broken(Ok):
        name = "broken"

        async def start(self, services):
            raise ValueError("no such model")

    class Later(Ok):
        name = "later"

        async def start(self, services):
            events.append("later.start")

    async def main():
        gw = Gateway(config_mod.from_dict({"site": {"data_dir": str(tmp_path)}, "mqtt": {"port": _free_port()}}))
        for c in (Ok(), Broken(), Later()):
            gw.add_component(c)
        with pytest.raises(ComponentError) as e:
            await gw.start()
        return e.value, gw

    err, gw = asyncio.run(main())
    assert err.component == "broken" and "ValueError: no such model" in str(err)
    assert "later.start" not in events and events[0] == "ok.start" and "ok.stop" in events
    assert gw.store is not None and not gw._running


def test_disabled_components_are_not_imported(tmp_path):
    code = ("import sys, json\n"
            "from fogline.gateway import config, service_components\n"
            "from fogline.gateway.app import Gateway\n"
            f"notes = service_components.attach(Gateway(config.from_dict({{'site': {{'data_dir': {str(tmp_path)!r}}},"
            " 'inference': {'enabled': False}})))\n"
            "mods = ['fogline.gateway.relay.component', 'fogline.gateway.relay.core', 'fogline.gateway.placement.core',"
            " 'fogline.gateway.cluster.service', 'fogline.gateway.ops.http', 'fogline.gateway.inference.core']\n"
            "print(json.dumps({'notes': notes, 'imported': [m for m in mods if m in sys.modules]}))\n")
    p = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert all(v.startswith("off") for v in out["notes"].values()), out
    assert out["imported"] == [], out


def test_components_get_one_services_object_and_share_one_twin_with_the_node_keys(tmp_path):
    from fogline.gateway.ops.provision import provision

    keys = provision(tmp_path / "prov", "site1", ["n1"]).files["gateway_keys"]
    twin_file = tmp_path / "twin.toml"
    twin_file.write_text("[nodes.n1]\nversion = 2\n")
    cfg = config_mod.from_dict({
        "site": {"id": "site1", "data_dir": str(tmp_path / "data")}, "mqtt": {"port": _free_port()},
        "ingest": {"auth_keys_file": str(keys)}, "inference": {"enabled": False},
        "twin": {"file": str(twin_file)},
        "placement": {"enabled": True, "workloads": [{"name": "smooth", "kind": "filter", "node": "n1",
                                                      "sensor": "temperature", "heap_bytes": 2048,
                                                      "filters": [{"type": "median", "window_size": 3}]}]}})

    async def main():
        gw = Gateway(cfg)
        notes = service_components.attach(gw)
        await gw.start()
        try:
            return gw, notes, gw.twin.key_for("n1"), gw.node_key("n1")
        finally:
            await gw.stop()

    gw, notes, twin_key, gw_key = asyncio.run(main())
    assert notes["twin"] == "on" and notes["placement"] == "on", notes
    assert isinstance(gw.services, Services) and gw.services.store is gw.store
    twins = [c for c in gw._components if c.name == "twin"]
    assert twins == [gw.twin] and gw.placement.twin is gw.twin
    assert gw.placement.svc is gw.services
    assert twin_key is not None and twin_key == gw_key  # pushed configs are sealed with the node's auth key
