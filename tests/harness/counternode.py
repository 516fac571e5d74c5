"""The counter node: firmware FlashLog + Uplink + MQTT client under micropython (tests/node/uplink_node.py).

Reading i has seq i, value i * 0.25 and time T0 + i, so every test knows exactly what must arrive;
options (KEY=VALUE) as the script's header lists them. `CounterNode` runs it in the background and
collects its STAT lines and DONE; `run_counter_node` runs it to the end.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable

from fogline.tools import hostemu

SCRIPT = hostemu.REPO / "tests" / "node" / "uplink_node.py"
T0 = 1764150000  # the script's clock: reading i is dated T0 + i (2025-11-26)


def command(port: int, n: int, period_ms: int, ctl: Path, *opts: str) -> list[str]:
    """The micropython command line of a counter node producing n readings every period_ms."""
    return hostemu.mp_command(SCRIPT, str(port), str(n), str(period_ms), str(ctl), *opts)


def run_counter_node(port: int, n: int, period_ms: int, ctl: Path, *opts: str,
                     timeout: float = 120) -> tuple[subprocess.CompletedProcess, dict | None]:
    """Run a counter node until it exits (Wi-Fi on); the process and its DONE dict (None if it printed none)."""
    ctl.write_text("wifi 1")
    proc = subprocess.run(command(port, n, period_ms, ctl, *opts), env=hostemu.mp_env(), cwd=str(hostemu.REPO),
                          capture_output=True, text=True, timeout=timeout)
    done = [json.loads(ln[5:]) for ln in proc.stdout.splitlines() if ln.startswith("DONE ")]
    return proc, done[0] if done else None


class CounterNode:
    """A counter node in a micropython subprocess (Wi-Fi on at start); collects its STAT lines and DONE."""

    def __init__(self, port: int, n: int, period_ms: int, ctl: Path, *opts: str):
        self.ctl, self.n = ctl, n
        ctl.write_text("wifi 1")
        self.proc = subprocess.Popen(command(port, n, period_ms, ctl, *opts), env=hostemu.mp_env(),
                                     cwd=str(hostemu.REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.stats: list[dict[str, Any]] = []
        self.done: dict[str, Any] | None = None
        self.lines: list[str] = []
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self) -> None:
        assert self.proc.stdout
        for line in self.proc.stdout:
            self.lines.append(line)
            if line.startswith("STAT "):
                self.stats.append(json.loads(line[5:]))
            elif line.startswith("DONE "):
                self.done = json.loads(line[5:])

    def stat(self) -> dict[str, Any]:
        """The last STAT dict ({} before the first)."""
        return self.stats[-1] if self.stats else {}

    def wait_stat(self, pred: Callable[[dict], bool], what: str, timeout: float = 120) -> None:
        """Wait until the last STAT line satisfies pred (AssertionError naming `what` if not in time)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.stats and pred(self.stats[-1]):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"node never reached: {what}: {self.tail()}")

    def wait_produced(self, k: int, timeout: float = 120) -> None:
        self.wait_stat(lambda s: s["produced"] >= k, f"{k} readings", timeout)

    def sensed_while_offline(self, k: int, what: str) -> list[dict]:
        """Wait until the node has taken k readings while reporting its MQTT link down; those STAT lines.

        A sensing loop that waited on the network would take none: the proof is by count, not by time.
        """
        self.wait_stat(lambda s: not s["connected"], f"link down ({what})")
        i = len(self.stats) - 1
        start = self.stats[i]["produced"]
        self.wait_stat(lambda s: s["connected"] or s["produced"] >= min(start + k, self.n),
                       f"{k} readings while the link is down ({what})")
        return [s for s in self.stats[i:] if not s["connected"]]

    def wifi(self, up: bool) -> None:
        self.ctl.write_text("wifi 1" if up else "wifi 0")

    def finish(self, timeout: float = 300) -> dict:
        """Wait for the node to exit (killed after timeout); its DONE dict, asserting it exited cleanly."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.t.join(2)
        err = self.proc.stderr.read() if self.proc.stderr else ""
        assert self.proc.returncode == 0 and self.done, f"node failed rc={self.proc.returncode}\n{err}\n{self.tail()}"
        return self.done

    def tail(self) -> str:
        return "".join(self.lines[-5:])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
