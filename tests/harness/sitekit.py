"""A virtual site for system tests and benchmarks: the provisioned site (`Site`: passwords, ACL, HMAC keys,
its mosquitto, gateway processes), processes with captured output, and virtual nodes (`VNode`) running
the real firmware (tools/demo_node.py under the MicroPython unix port) on their own flash images, with
power cuts, simulated Wi-Fi and battery, and per-incarnation STAT/FINAL figures.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from fogline.gateway.ops.provision import broker_conf, provision
from fogline.tools import hostemu
from harness.broker import Mosquitto, free_port

REPO = hostemu.REPO
NODE_SCRIPT = REPO / "tools" / "demo_node.py"
HEAP = "384wK"  # the virtual node's fixed heap (-X heapsize): MemoryError beyond it, as on a board


def wait_until(cond, timeout: float, every: float = 0.05) -> bool:
    """Poll cond() until it is true or timeout passes (an exception counts as not yet: state still forming)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if cond():
                return True
        except Exception:
            pass
        time.sleep(every)
    return False


class Proc:
    """A subprocess whose stdout/stderr lines are collected by a thread."""

    def __init__(self, argv: list[str], env: dict[str, str] | None, cwd: Path, log: Path):
        self.argv, self.env, self.cwd, self.logp = argv, env, cwd, log
        self.p: subprocess.Popen | None = None
        self.lines: list[str] = []     # current incarnation
        self.history: list[str] = []   # every incarnation, each starting with a "#START" marker
        self.starts = 0

    def start(self) -> None:
        self.lines = []
        self.history.append("#START")
        self.starts += 1
        self.p = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, bufsize=1)
        t = threading.Thread(target=self._pump, args=(self.p, self.lines), daemon=True)
        t.start()

    def _pump(self, p: subprocess.Popen, lines: list[str]) -> None:
        with open(self.logp, "a") as f:
            for line in p.stdout:  # type: ignore[union-attr]
                lines.append(line.rstrip("\n"))
                self.history.append(lines[-1])
                f.write(line)

    def kill(self) -> None:
        if self.p and self.p.poll() is None:
            self.p.send_signal(signal.SIGKILL)
            self.p.wait(10)

    def alive(self) -> bool:
        return bool(self.p and self.p.poll() is None)

    @property
    def pid(self) -> int | None:
        return self.p.pid if self.alive() and self.p else None


class VNode:
    """One virtual node (tools/demo_node.py: firmware.app under micropython) with its own flash image."""

    def __init__(self, d: Path, name: str, config: Path, scenario: str, seed: int, runtime: str = "micropython",
                 **spec_extra: object):
        """spec_extra overrides the runner's spec (tools/demo_node.py: time_scale, drain_ms, blocks ...)."""
        d.mkdir(parents=True, exist_ok=True)
        self.name, self.control = name, d / "control"
        self.control.write_text("")
        self.cfg = effective_config(config)
        spec = {"node": name, "config": str(config), "boards_dir": str(REPO / "boards"), "scenario": scenario,
                "seed": seed, "flash": str(d / "flash.img"), "control": str(self.control), "time_scale": 5.0,
                "drain_ms": 15000, **spec_extra}
        (d / "spec.json").write_text(json.dumps(spec))
        # A fixed heap (384 KiB of 32-bit words; 384 KB on the board-like port, which also compiles the
        # sources on the node) so a leak ends in MemoryError as on a board.
        self.proc = Proc(hostemu.mp_command(NODE_SCRIPT, str(d / "spec.json"), heapsize=HEAP, runtime=runtime),
                         hostemu.mp_env(), REPO,
                         d / "node.log")
        self.restarts = 0
        self.wifi_up = True

    def start(self) -> None:
        self.proc.start()

    def power_cut(self) -> None:
        self.proc.kill()
        self.restarts += 1

    def set_wifi(self, up: bool) -> None:
        """Simulated Wi-Fi on/off (the node polls its control file every 200 ms; survives power cuts)."""
        self.wifi_up = up
        self.control.write_text("" if up else "wifi 0\n")

    def battery_mv(self, mv: int) -> None:
        """Simulated battery voltage (read by the node's power monitor from then on)."""
        self.control.write_text(f"battery_mv {mv}\n")

    def _stats(self) -> list[list[dict]]:
        """STAT/FINAL dicts grouped by incarnation."""
        out: list[list[dict]] = []
        for ln in list(self.proc.history):
            if ln == "#START":
                out.append([])
            elif ln.startswith(("STAT ", "FINAL ")) and out:
                try:
                    out[-1].append(json.loads(ln.split(" ", 1)[1]))
                except ValueError:  # a line cut by the kill
                    pass
        return out

    def peaks(self) -> dict:
        """Lowest free heap, most flash log bytes used, readings sampled (sum of each incarnation's last count)."""
        heap, flash, torn, sampled, alerts = [], [], 0, 0, 0
        oom = sum(1 for ln in list(self.proc.history) if "MemoryError" in ln)
        for inc in self._stats():
            for d in inc:
                heap.append(d.get("heap_free", 0))
                flash.append(d.get("store", {}).get("bytes_used", 0))
                torn = max(torn, d.get("store", {}).get("torn_tail_skipped", 0))
            if inc:
                sampled += int(inc[-1].get("sensing", {}).get("readings", 0))
                alerts += int(inc[-1].get("sensing", {}).get("alerts", 0))
        return {"min_heap_free": min(heap, default=0), "max_flash_used": max(flash, default=0),
                "torn_tail_skipped": torn, "sampled": sampled, "alerts_raised": alerts, "memory_errors": oom,
                "log_capacity": int(self.cfg.get("log", {}).get("capacity_bytes", 0) or 0)}

    def stop(self) -> None:
        """Ask the node to stop sampling, flush and drain its backlog (it then prints FINAL)."""
        self.control.write_text("stop\n")

    def halt(self, timeout: float = 10.0) -> None:
        """stop(), then wait for the process to exit (killed if it does not within timeout)."""
        self.stop()
        if self.proc.p is not None:
            try:
                self.proc.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def final(self, timeout: float) -> dict:
        """The FINAL stats line of the current incarnation (after stop())."""
        deadline = time.monotonic() + timeout
        while True:
            for ln in reversed(self.proc.lines):
                if ln.startswith("FINAL "):
                    return json.loads(ln[6:])
            if not self.proc.alive() or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        raise AssertionError(f"{self.name}: no FINAL line; tail: {self.proc.lines[-5:]}")


def effective_config(site_file: Path) -> dict:
    """The node's config as firmware.app.load_config builds it: DEFAULTS + boards/<board>.json + site file."""
    from fogline.shared import config as config_mod

    site = json.loads(site_file.read_text())
    board = site.get("node", {}).get("board") or config_mod.DEFAULTS["node"]["board"]
    return config_mod.merge(config_mod.DEFAULTS, json.loads((REPO / "boards" / f"{board}.json").read_text()), site)


class Site:
    """A site as `fogline provision` makes it (per-node passwords, ACL, HMAC-signed packs) and its mosquitto.

    Each node config gets the alert rule "too_warm" (temperature above alert_above); edit_node changes more.
    The broker is made, not started; gateway() writes a gateway config for this site and returns its Proc."""

    def __init__(self, tmp: Path, site_id: str, names: list[str], extra_nodes: tuple[str, ...] = (),
                 alert_above: float = 22.0):
        self.tmp, self.id, self.names = tmp, site_id, list(names)
        self.port = free_port()
        self.res = provision(tmp / "prov", site_id, self.names + list(extra_nodes), broker_port=self.port)
        self.files = self.res.files
        self.secrets = json.loads(self.files["secrets"].read_text())
        for n in self.names:
            self.edit_node(n, rules=[{"name": "too_warm", "sensor": "temperature", "type": "above",
                                      "threshold": alert_above, "hysteresis": 0.2}])
        as_root = "user root\n" if os.geteuid() == 0 else ""  # root mosquitto drops to a user that can't read 0600
        self.broker = Mosquitto(tmp / "broker", port=self.port, extra_conf=f"listener {self.port} 127.0.0.1\n"
                                f"{as_root}" + broker_conf(self.files["passwd"], self.files["acl"]))

    def node_config(self, name: str) -> Path:
        return self.files[f"node:{name}"]

    def edit_node(self, name: str, **top: object) -> dict:
        """Set top-level keys of a node's config file; returns the new config."""
        p = self.node_config(name)
        cfg = json.loads(p.read_text())
        cfg.update(top)
        p.write_text(json.dumps(cfg))
        return cfg

    def vnode(self, name: str, scenario: str, seed: int, runtime: str = "micropython", **spec: object) -> VNode:
        return VNode(self.tmp / name, name, self.node_config(name), scenario, seed, runtime, **spec)

    def gateway(self, d: Path, sections: str = "", gateway_id: str | None = None,
                log_level: str = "WARNING") -> Proc:
        """A gateway process (not started) on this site's broker with the provisioned credentials and keys."""
        d.mkdir(parents=True, exist_ok=True)
        gw = self.secrets["gateway"]
        gid = f'gateway_id = "{gateway_id}"\n' if gateway_id else ""
        conf = d / "gateway.toml"
        conf.write_text(f'[site]\nid = "{self.id}"\n{gid}data_dir = "{d / "data"}"\n\n[mqtt]\nhost = "127.0.0.1"\n'
                        f'port = {self.port}\nusername = "{gw["user"]}"\npassword = "{gw["password"]}"\n'
                        f'reconnect_min_s = 0.2\nreconnect_max_s = 1.0\n\n'
                        f'[ingest]\nauth_keys_file = "{self.files["gateway_keys"]}"\nrequire_auth = true\n\n'
                        + sections)
        return Proc([sys.executable, "-m", "fogline.tools.cli", "gateway", "--config", str(conf), "--log-level",
                     log_level], dict(os.environ), REPO, d / "gateway.log")
