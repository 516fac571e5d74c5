"""The demo's virtual nodes: one `micropython` process each, running the real firmware app (tools/demo_node.py)
with the simulated HAL, its own LittleFS flash image and a scenario; control by file, reports on stdout."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fogline.tools import hostemu

log = logging.getLogger(__name__)
RUNNER = hostemu.REPO / "tools" / "demo_node.py"
# MQTT node scenarios in order; the last node of a fleet of 2+ is BLE-only.
SCENARIOS = ("spikes", "drift", "dies", "wifi_loss", "hot", "normal", "stuck")
BLE_SCENARIO = "normal"
BLE_INTERVAL_MS = 1000  # a BLE node advertises its latest values this often
LATE_FAULT_S = 130  # node seconds: past the first whole window, however the start falls in the minute
# every demo node's rules: an over-temperature alert driving the relay, and a stale-sensor alert
RULES = (
    {"name": "temp_high", "sensor": "temperature", "type": "above", "threshold": 30.0, "hysteresis": 1.0,
     "actuator": "relay", "source": "raw"},
    {"name": "temp_stale", "sensor": "temperature", "type": "stale", "missing_ms": 3000},
)


@dataclass
class VNode:
    """One virtual node process and what it last reported."""
    id: str
    scenario: str
    ble_only: bool
    dir: Path
    mac: str = ""
    proc: subprocess.Popen | None = None
    stat: dict[str, Any] = field(default_factory=dict)
    final: dict[str, Any] | None = None
    error: str | None = None
    started: float = 0.0
    signals: dict[str, Any] = field(default_factory=dict)  # the scenario's signal specs (ground truth)

    @property
    def control(self) -> Path:
        return self.dir / "control"

    @property
    def truth_log(self) -> Path:
        """Every sensor read of the node with its scenario flags (tools/demo_node.py writes it)."""
        return self.dir / "truth.log"

    @property
    def ble_log(self) -> Path:
        return self.dir / "ble.log"

    @property
    def latest(self) -> dict[str, Any]:
        return self.final or self.stat


def scenario_spec(name: str, seed: int) -> dict[str, Any]:
    """Signals of a demo scenario on a real daily cycle (tools/sim/scenario.py presets use 10-minute
    cycles, which the gateway's model rightly calls drift). Spikes, drift, the dying sensor and the Wi-Fi
    outage start in the first seconds (the node's alerts show them at once); the step and the stuck
    sensor come at LATE_FAULT_S, after the gateway has seen a whole normal 60 s window of the node, so the
    model has the node's normal level and spread to compare with."""
    t: dict[str, Any] = {"base": 21.0, "amplitude": 3.0, "period_s": 86400, "phase_s": 20000, "noise": 0.05}
    h: dict[str, Any] = {"base": 45.0, "amplitude": 8.0, "period_s": 86400, "phase_s": 30000, "noise": 0.3,
                         "lo": 0.0, "hi": 100.0}
    p: dict[str, Any] = {"base": 101325.0, "amplitude": 150.0, "period_s": 86400, "noise": 3.0}
    outages: list[list[float]] = []
    if name == "spikes":
        t.update(spike_rate=0.1, spike_size=15.0)  # per sample: ~6 a minute at 1 Hz
    elif name == "drift":
        t.update(drift_per_h=360.0, drift_start_s=5)  # 0.1 degC/s: a failing sensor, not the weather
    elif name == "dies":
        for s in (t, h, p):
            s["dies_at_s"] = 8
    elif name == "wifi_loss":
        outages = [[5, 13]]
    elif name == "hot":
        t["step"] = [LATE_FAULT_S, 15.0]
    elif name == "stuck":
        t["stuck"] = [LATE_FAULT_S, 3600]
    elif name != "normal":
        raise ValueError(f"unknown demo scenario {name!r}")
    return {"seed": seed, "signals": {"temperature": t, "humidity": h, "pressure": p}, "wifi_outages": outages}


def node_config(node_id: str, site: str, host: str, port: int, sample_ms: int, ble_only: bool) -> dict[str, Any]:
    """Site config of a demo node: board sensors (pressure scaled to hPa, humidity clamped), an
    over-temperature alert driving the relay, and a stale-sensor alert."""
    return {
        "version": 1,
        "node": {"id": node_id, "site": site, "board": "pico_w"},
        "sample_ms": sample_ms,
        "mqtt": {"host": host, "port": port, "keepalive": 10},
        "sensors": [
            {"name": "temperature", "driver": "bme280", "field": "temperature", "unit": "Cel", "addr": 118},
            # no deadband on a metric the model scores: the model reads a varying count of readings
            # per window as a sensor losing samples (count_ratio), so a deadband means false anomalies
            {"name": "humidity", "driver": "bme280", "field": "humidity", "unit": "%RH", "addr": 118,
             "filters": [{"type": "clamp", "min": 0.0, "max": 100.0}]},
            # the BME280 reads Pa; the gateway's model (and people) think in hPa
            {"name": "pressure", "driver": "bme280", "field": "pressure", "unit": "hPa", "addr": 118,
             "filters": [{"type": "multiply", "value": 0.01}]},
        ],
        "rules": [dict(r) for r in RULES],
        "ble": {"enabled": ble_only, "interval_ms": BLE_INTERVAL_MS},
    }


def validate_node_config(cfg: dict[str, Any]) -> str | None:
    """Check a node config on CPython with the shared validator; the error text or None."""
    try:
        from fogline.shared import config as sc
        board = json.loads((hostemu.REPO / "boards" / f"{cfg['node']['board']}.json").read_text())
        sc.validate_config(sc.merge(sc.DEFAULTS, board, cfg))
    except ImportError as e:
        return f"fogline.shared.config unavailable: {e}"
    except (ValueError, OSError) as e:
        return str(e)
    return None


class Fleet:
    """Start, watch and stop the demo's virtual nodes."""

    def __init__(self, workdir: Path, site: str, host: str, port: int, n: int = 5, seed: int = 1,
                 sample_ms: int = 250, time_scale: float = 1.0, heapsize: str | None = None):
        self.workdir = Path(workdir)
        self.site, self.host, self.port = site, host, port
        self.seed, self.sample_ms, self.time_scale, self.heapsize = seed, sample_ms, time_scale, heapsize
        self.nodes: list[VNode] = []
        for i in range(n):
            ble = n >= 2 and i == n - 1
            scen = BLE_SCENARIO if ble else SCENARIOS[i % len(SCENARIOS)]
            nid = f"ble{i + 1}" if ble else f"node{i + 1}"
            self.nodes.append(VNode(nid, scen, ble, self.workdir / "nodes" / nid, mac=f"a4c1380000{i + 1:02x}"))
        self.lock = threading.Lock()
        self.heap_used: str | None = None
        self.mpy_dir: Path | None = None

    def ble_logs(self) -> list[Path]:
        return [v.ble_log for v in self.nodes if v.ble_only]

    def ble_names(self) -> dict[str, str]:
        """MAC -> node id for the gateway's [ble] names."""
        return {":".join(v.mac[i:i + 2] for i in range(0, 12, 2)).upper(): v.id for v in self.nodes if v.ble_only}

    def precompile(self) -> Path | None:
        """firmware/ and shared/ as .mpy (what `fogline deploy` puts on a board), so nodes import them
        within the board's heap; None (sources, unix-port heap) when mpy-cross is unavailable."""
        out = self.workdir / "mpy"
        try:
            from fogline.tools.deploy import Deployer
            Deployer("-", "pico_w").stage(out, "x64")
        except Exception as e:  # mpy-cross missing or failing: run from sources
            log.warning("event=demo_precompile_failed error=%s", e)
            return None
        return out

    def start(self) -> None:
        """Write configs and launch every node; a node that cannot start is marked, not fatal."""
        mp = hostemu.find_micropython()
        mpy = self.precompile()
        heap = self.heapsize
        if heap is None and mpy is not None:
            from fogline.tools.boardinfo import board_info
            heap = board_info("pico_w").get("heapsize")  # a Pico W's free heap
        if heap == "none":
            heap = None
        self.heap_used = heap
        self.mpy_dir = mpy
        for i, v in enumerate(self.nodes):
            v.dir.mkdir(parents=True, exist_ok=True)
            cfg = node_config(v.id, self.site, self.host, self.port, self.sample_ms, v.ble_only)
            err = validate_node_config(cfg)
            if err and not err.startswith("fogline.shared.config unavailable"):
                v.error = f"config rejected: {err}"
                continue
            (v.dir / "config.json").write_text(json.dumps(cfg))
            v.control.write_text("")
            sspec = scenario_spec(v.scenario, self.seed * 100 + i)
            v.signals = sspec["signals"]
            spec = {"node": v.id, "config": str(v.dir / "config.json"), "boards_dir": str(hostemu.REPO / "boards"),
                    "scenario": v.scenario, "scenario_spec": sspec,
                    "seed": self.seed * 100 + i, "time_scale": self.time_scale,
                    "flash": str(v.dir / "flash.img"), "blocks": 212, "control": str(v.control),
                    "ble_only": v.ble_only, "mac": v.mac, "drain_ms": 6000, "parent_pid": os.getpid(),
                    "truth": str(v.truth_log)}
            (v.dir / "spec.json").write_text(json.dumps(spec))
            cmd = [mp] + (["-X", f"heapsize={heap}"] if heap else []) + [str(RUNNER), str(v.dir / "spec.json")]
            env = hostemu.mp_env(FOGLINE_REPO=str(hostemu.REPO), FOGLINE_SIM_WDT="0",
                                 FOGLINE_SIM_STATE=str(v.dir / "reset_cause"))
            if mpy is not None:  # compiled packages first, as on a deployed board
                env["MICROPYPATH"] = ":".join([str(hostemu.SIM_DIR), str(mpy), str(hostemu.REPO), ".frozen"])
            if v.ble_only:
                env["FOGLINE_BLE_LOG"] = str(v.ble_log)
            # own session: a Ctrl-C in the terminal reaches the demo only, which stops nodes cleanly
            v.proc = subprocess.Popen(cmd, env=env, cwd=str(v.dir), stdout=subprocess.PIPE,
                                      stderr=open(v.dir / "stderr.log", "wb"), text=True, bufsize=1,
                                      start_new_session=True)
            v.started = time.time()
            threading.Thread(target=self._reader, args=(v,), name=f"node-{v.id}", daemon=True).start()

    def _reader(self, v: VNode) -> None:
        assert v.proc is not None and v.proc.stdout is not None
        with open(v.dir / "stdout.log", "w") as out:
            for line in v.proc.stdout:
                out.write(line)
                kind, _, rest = line.partition(" ")
                if kind in ("STAT", "FINAL", "FATAL"):
                    try:
                        d = json.loads(rest)
                    except ValueError:
                        continue
                    with self.lock:
                        if kind == "STAT":
                            v.stat = d
                        elif kind == "FINAL":
                            v.final = d
                        else:
                            v.error = d.get("error", "fatal")
        rc = v.proc.wait()
        if v.final is None and v.error is None:
            tail = (v.dir / "stderr.log").read_text(errors="replace")[-300:] if (v.dir / "stderr.log").exists() else ""
            v.error = f"exited {rc} without a final report {tail.strip()}"

    def set_wifi(self, node_id: str, up: bool) -> None:
        """Switch one node's simulated access point (beside the scenario's own outages)."""
        for v in self.nodes:
            if v.id == node_id:
                v.control.write_text("" if up else "wifi 0\n")

    def stop(self, timeout: float = 12.0) -> None:
        """Ask every node to stop sampling and drain; kill what is still running after timeout."""
        for v in self.nodes:
            if v.proc and v.proc.poll() is None:
                try:
                    v.control.write_text("stop\n")
                except OSError:
                    pass
        deadline = time.monotonic() + timeout
        for v in self.nodes:
            if v.proc is None:
                continue
            try:
                v.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                v.proc.kill()
                v.proc.wait(5)
                v.error = v.error or "killed after stop timeout"
        time.sleep(0.1)  # let reader threads take the last lines

    def kill(self) -> None:
        for v in self.nodes:
            if v.proc and v.proc.poll() is None:
                v.proc.kill()
