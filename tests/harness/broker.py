"""Start and stop a real mosquitto broker on a free loopback port (tests, benchmarks, chaos runs)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(n: int) -> list[int]:
    """n distinct TCP ports on 127.0.0.1, free right now (all held bound at once, so none repeats)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def mosquitto_binary() -> str:
    """Path of mosquitto (FOGLINE_MOSQUITTO overrides the search), or RuntimeError saying how to install it."""
    forced = os.environ.get("FOGLINE_MOSQUITTO")
    if forced is not None:
        if forced and os.path.exists(forced):
            return forced
        raise RuntimeError(f"mosquitto not found (FOGLINE_MOSQUITTO={forced!r}): apt-get install mosquitto")
    for cand in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if cand and os.path.exists(cand):
            return cand
    raise RuntimeError("mosquitto not found: apt-get install mosquitto")


class Mosquitto:
    """A mosquitto process with its own config dir; restartable on the same port."""

    def __init__(self, workdir: Path, port: int | None = None, extra_conf: str = "",
                 max_queued_messages: int | None = None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.extra_conf = extra_conf
        self.max_queued = max_queued_messages
        self.proc: subprocess.Popen | None = None
        self.conf = self.workdir / "mosquitto.conf"
        self.log = self.workdir / "mosquitto.log"

    def write_conf(self) -> None:
        lines = [f"listener {self.port} 127.0.0.1", "allow_anonymous true",
                 "persistence false", f"log_dest file {self.log}", "log_type error", "log_type warning",
                 # Without it small QoS 1 packets wait 40-90 ms on delayed ACKs (measured by the uplink bench).
                 "set_tcp_nodelay true"]
        if self.max_queued is not None:
            lines.append(f"max_queued_messages {self.max_queued}")
        if self.extra_conf:
            # A listener block in extra_conf replaces the default one.
            if "listener " in self.extra_conf:
                lines = [ln for ln in lines if not ln.startswith(("listener ", "allow_anonymous"))]
            lines.append(self.extra_conf)
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self, timeout: float = 10.0) -> "Mosquitto":
        """Start the broker and wait until it accepts TCP connections."""
        self.write_conf()
        self.proc = subprocess.Popen([mosquitto_binary(), "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"mosquitto exited: {err} {self.log.read_text() if self.log.exists() else ''}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"mosquitto did not listen on {self.port}")

    def stop(self) -> None:
        """Terminate the broker (SIGTERM, then SIGKILL)."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)  # a clean stop writes the persistence file; SIGKILL would lose its queues
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL the broker (a crash)."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def restart(self) -> "Mosquitto":
        """Stop and start on the same port."""
        self.stop()
        return self.start()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"
