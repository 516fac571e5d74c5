"""Virtual board: the MicroPython unix port on a pty, its flash a LittleFS image, resets like a real board.

The host side (mpremote, a terminal) talks to the slave end of one pty; a relay thread copies bytes to
and from a `micropython -i tools/vboard_boot.py` process on a second pty. The unix port ends the
process on a soft reset (Ctrl-D), so the relay restarts it and prints `soft reboot`, re-entering the
raw REPL when the reset came from there (as a real board does, without running main.py). Any other
exit (machine.reset(), Ctrl-D at the friendly prompt, main.py ending) is a hard reset: the new
interpreter boots main.py from the flash. Ctrl-C from the host interrupts running code with SIGINT
(only while code runs: at a prompt it is passed on as a byte). FOGLINE_VBOARD_TRACE=file logs the relay.
"""

from __future__ import annotations

import argparse
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
import tty
from pathlib import Path

from fogline.tools import hostemu
from fogline.tools.boardinfo import FS_DEFAULTS, MCU_ARCH, board_info  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)

REPO = hostemu.REPO
BOOT = Path(__file__).resolve().parent / "vboard_boot.py"
RAW_HEADER = b"raw REPL; CTRL-B to exit\r\n"


class VirtualBoard:
    """A MicroPython unix port behind a pty that mpremote can drive like a USB serial board."""

    def __init__(self, flash: str | os.PathLike, board: str = "pico_w", env: dict[str, str] | None = None,
                 heapsize: str | None = None, run_main_first: bool = True, echo_to=None,
                 runtime: str = "micropython"):
        self.flash = Path(flash).resolve()
        self.runtime = runtime  # tools/hostemu.py: "board" = the 32-bit single-precision port
        self.hostdir = self.flash.with_name(self.flash.name + ".host")
        self.info = board_info(board)
        self.extra_env = dict(env or {})
        # default: the board's heap (boards/<board>.json heap_bytes); "none" = the unix port's default
        self.heapsize = heapsize if heapsize is not None else self.info.get("heapsize")
        if self.heapsize == "none":
            self.heapsize = None
        self.run_main_first = run_main_first
        self.echo_to = echo_to  # optional binary stream that also receives the board's output
        self.master = self.slave = -1
        self.port = ""
        self.proc: subprocess.Popen | None = None
        self._cm = self._cs = -1
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.resets = {"soft": 0, "hard": 0}
        self._tail = b""
        self._raw = False
        self._soft_pending = False
        self._suppress_until_raw = False
        self._eot = 2
        self._typed = 0
        trace = os.environ.get("FOGLINE_VBOARD_TRACE")
        self._tracef = open(trace, "a") if trace else None

    # -- interpreter -------------------------------------------------------------------------
    def _spawn(self, run_main: bool) -> None:
        self._cm, self._cs = os.openpty()
        tty.setraw(self._cs)  # no echo, no line discipline: bytes pass as on a USB CDC port
        env = hostemu.mp_env()
        env["MICROPYPATH"] = hostemu.micropypath()
        env.update({
            "FOGLINE_VBOARD_FLASH": str(self.flash),
            "FOGLINE_VBOARD_BLOCK_SIZE": str(self.info["block_size"]),
            "FOGLINE_VBOARD_BLOCKS": str(self.info["blocks"]),
            "FOGLINE_VBOARD_PROGSIZE": str(self.info["progsize"]),
            "FOGLINE_VBOARD_HOSTLIB": str(hostemu.SIM_DIR),
            "FOGLINE_VBOARD_RUN_MAIN": "1" if run_main else "0",
            "FOGLINE_BOARD": self.info["board"],
            # host-side board state (reset cause) lives in <flash>.host/, seen by the board as /_host
            "FOGLINE_VBOARD_HOSTDIR": str(self.hostdir),
            "FOGLINE_SIM_STATE": "/_host/reset_cause",
        })
        env.update(self.extra_env)
        # the board-like port's plain build has no raw REPL (mpremote's protocol): use its REPL variant
        cmd = [hostemu.find_micropython("board-repl" if self.runtime == "board" else self.runtime)]
        if self.heapsize:
            cmd += ["-X", f"heapsize={self.heapsize}"]
        cmd += ["-i", str(BOOT)]
        self.proc = subprocess.Popen(cmd, stdin=self._cs, stdout=self._cs, stderr=self._cs,
                                     env=env, cwd=str(self.flash.parent), close_fds=True,
                                     start_new_session=True)
        os.close(self._cs)
        self._cs = -1
        self._tail = b""

    def _reap(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(5)
        if self._cm >= 0:
            os.close(self._cm)
            self._cm = -1

    # -- relay ----------------------------------------------------------------------------------
    def start(self) -> str:
        """Start the interpreter and the relay; return the pty path to connect to."""
        size = self.info["blocks"] * self.info["block_size"]
        if not self.flash.exists():
            # erased NOR flash reads 0xff; the board formats it with LittleFS at its first boot
            self.flash.parent.mkdir(parents=True, exist_ok=True)
            with open(self.flash, "wb") as f:
                f.write(b"\xff" * size)
        elif self.flash.stat().st_size != size:
            raise ValueError(f"{self.flash}: {self.flash.stat().st_size} bytes, board {self.info['board']} "
                             f"needs {size} ({self.info['blocks']} x {self.info['block_size']})")
        self.hostdir.mkdir(exist_ok=True)
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.port = os.ttyname(self.slave)
        self._spawn(self.run_main_first)
        self._thread = threading.Thread(target=self._relay, name="vboard-relay", daemon=True)
        self._thread.start()
        return self.port

    def _trace(self, what: str, data: bytes = b"") -> None:
        if self._tracef is not None:
            self._tracef.write(f"{time.monotonic():.3f} {what} {data!r}\n")
            self._tracef.flush()

    def _to_host(self, data: bytes) -> None:
        if not data:
            return
        os.write(self.master, data)
        if self.echo_to is not None:
            try:
                self.echo_to.write(data)
                self.echo_to.flush()
            except (OSError, ValueError):
                pass

    def _from_child(self, data: bytes) -> None:
        self._trace("child", data)
        self._tail = (self._tail + data)[-64:]
        self._eot += data.count(b"\x04")
        if data.endswith(b">"):
            self._typed = 0  # a prompt: nothing of the host's is pending
        if RAW_HEADER in self._tail:
            self._raw = True
        elif self._tail.endswith(b">>> "):
            self._raw = False  # the interpreter itself left the raw REPL (Ctrl-B processed)
        if self._suppress_until_raw:
            # after a soft reset in raw mode the board re-enters the raw REPL without a banner
            self._buf += data
            i = self._buf.find(RAW_HEADER)
            if i < 0:
                return
            data = self._buf[i:]
            self._buf = b""
            self._suppress_until_raw = False
        self._to_host(data)

    def _idle(self) -> bool:
        """True when the interpreter sits at a prompt (a Ctrl-C then must not become SIGINT)."""
        t = self._tail
        if self._raw and self._eot >= 2:
            return True  # raw REPL: stdout and stderr both ended (\x04 \x04), the prompt is on its way
        return t.endswith(b">>> ") or t.endswith(b"\x04>") or t.endswith(RAW_HEADER + b">") or t.endswith(b"\r\n>")

    def _from_host(self, data: bytes) -> None:
        self._trace(f"host idle={self._idle()} raw={self._raw}", data)
        if self._raw and data.endswith(b"\x04") and (data != b"\x04" or self._typed):
            self._eot = 0  # code submitted: running until the child sends its two end markers
        self._typed += len(data)
        if data == b"\x04" and self._raw and self._idle() and self._typed == len(data):
            self._soft_pending = True  # Ctrl-D at the raw prompt: soft reset
        if b"\x03" in data and not self._idle() and self.proc and self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
            data = data.replace(b"\x03", b"")
        if data and self._cm >= 0:
            try:
                os.write(self._cm, data)
            except OSError:
                pass

    def _soft_cause(self) -> bool:
        """machine.soft_reset() ended the interpreter (the sim records cause 5 = SOFT_RESET)."""
        f = self.hostdir / "reset_cause"
        try:  # only a cause written by the interpreter that just ended counts
            return time.time() - f.stat().st_mtime < 2.0 and f.read_text().strip() == "5"
        except OSError:
            return False

    def _restart(self) -> None:
        # Ctrl-D at the raw prompt, or machine.soft_reset() run from the raw REPL: a real board stays
        # in the raw REPL and skips main.py; anything else reboots like a hard reset into main.py
        soft = self._soft_pending or (self._raw and self._soft_cause())
        self._trace(f"restart soft={soft} pending={self._soft_pending} raw={self._raw}")
        self._soft_pending = False
        self._reap()
        if self._stop.is_set():
            return
        if soft:
            self.resets["soft"] += 1
            self._to_host(b"soft reboot\r\n")
            self._buf = b""
            self._suppress_until_raw = True
            self._spawn(run_main=False)
            os.write(self._cm, b"\r\x01")
        else:
            self.resets["hard"] += 1
            time.sleep(0.1)  # a board that crash-loops must not spin the host
            self._raw = False
            self._spawn(run_main=True)
        log.info("event=vboard_reset kind=%s port=%s", "soft" if soft else "hard", self.port)

    def _relay(self) -> None:
        self._buf = b""
        while not self._stop.is_set():
            fds = [self.master] + ([self._cm] if self._cm >= 0 else [])
            try:
                r, _, _ = select.select(fds, [], [], 0.1)
            except (OSError, ValueError):
                break
            if self._cm >= 0 and self._cm in r:
                try:
                    data = os.read(self._cm, 4096)
                except OSError:
                    data = b""
                if data:
                    self._from_child(data)
                elif self.proc is not None:
                    self.proc.wait(5)
                    self._restart()
                    continue
            elif self.proc is not None and self.proc.poll() is not None:
                self._restart()
                continue
            if self.master in r:
                try:
                    data = os.read(self.master, 4096)
                except OSError:
                    data = b""
                if data:
                    self._from_host(data)

    def stop(self) -> None:
        """Stop the relay and the interpreter; the flash image stays."""
        self._stop.set()
        if self._thread:
            self._thread.join(5)
        self._reap()
        for fd in (self.master, self.slave):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.master = self.slave = -1

    def __enter__(self) -> "VirtualBoard":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options shared by `python tools/vboard.py` and `fogline vboard`."""
    p.add_argument("--board", default="pico_w", help="board name (boards/<board>.json); default pico_w")
    p.add_argument("--flash", default="node1.img", help="flash image file (created and formatted if missing)")
    p.add_argument("--heapsize", default=None,
                   help="micropython -X heapsize (default: the board's heap_bytes, e.g. 190000w for pico_w; "
                        "'none' = the unix port's 2 MB)")
    p.add_argument("--no-main", action="store_true", help="do not run main.py at the first boot")
    p.add_argument("--runtime", choices=("micropython", "board"), default="micropython",
                   help="interpreter: the wheel's unix port, or the board-like 32-bit single-precision port")
    p.add_argument("--echo", action="store_true", help="also copy the board's output to stdout")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="environment for the simulated HAL (e.g. FOGLINE_SCENARIO=spikes), repeatable")
    p.add_argument("--link", default=None, metavar="PATH",
                   help="also make a stable symlink to the pty, e.g. /tmp/ttyFOG0 (removed on exit)")


def run(args: argparse.Namespace) -> int:
    """Run a virtual board until Ctrl-C or SIGTERM; prints the pty path first."""
    env = {}
    for kv in args.env:
        if "=" not in kv:
            print(f"vboard: --env wants KEY=VALUE, got {kv!r}", file=sys.stderr)
            return 2
        k, v = kv.split("=", 1)
        env[k] = v
    try:
        vb = VirtualBoard(args.flash, board=args.board, env=env, heapsize=args.heapsize,
                          run_main_first=not args.no_main,
                          echo_to=sys.stdout.buffer if args.echo else None, runtime=args.runtime)
        port = vb.start()
    except (ValueError, hostemu.NoMicroPython, OSError) as e:
        print(f"vboard: {e}", file=sys.stderr)
        return 1
    info = vb.info
    link = Path(args.link) if args.link else None
    if link is not None:
        try:
            if link.is_symlink():
                link.unlink()
            link.symlink_to(port)
            port = str(link)
        except OSError as e:
            print(f"vboard: --link {link}: {e}", file=sys.stderr)
            link = None
    print(port, flush=True)
    print(f"vboard: board={info['board']} flash={vb.flash} ({info['blocks']} x {info['block_size']} B LittleFS); "
          f"connect with: mpremote connect {port}", file=sys.stderr, flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        vb.stop()
        if link is not None and link.is_symlink():
            link.unlink()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
