"""A virtual site's moving parts for system tests and benchmarks: processes with captured output, and
virtual nodes running the real firmware (tools/demo_node.py under the MicroPython unix port) on their own
flash images, with power cuts, simulated Wi-Fi and per-incarnation STAT/FINAL figures.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from pathlib import Path

from fogline.tools import hostemu

REPO = hostemu.REPO
NODE_SCRIPT = REPO / "tools" / "demo_node.py"
HEAP = "384wK"  # the virtual node's fixed heap (-X heapsize): MemoryError beyond it, as on a board


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

    def __init__(self, d: Path, name: str, config: Path, scenario: str, seed: int, runtime: str = "micropython"):
        d.mkdir(parents=True, exist_ok=True)
        self.name, self.control = name, d / "control"
        self.control.write_text("")
        self.cfg = effective_config(config)
        spec = {"node": name, "config": str(config), "boards_dir": str(REPO / "boards"), "scenario": scenario,
                "seed": seed, "flash": str(d / "flash.img"), "control": str(self.control), "time_scale": 5.0,
                "drain_ms": 15000}
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
