"""Pytest plugin: tests/shared run on CPython and MicroPython, tests/firmware on MicroPython only.

A MicroPython test is a top-level `test_*` function run by tests/mp_runner.py in
its own interpreter process (the real unix port, simulated HAL first on the
path), once per runtime: `[micropython]` (the wheel's 64-bit, double-float port)
and `[board]` (the board-like 32-bit, single-float port; tools/hostemu.py builds
it on first use), so a failure names the runtime. FOGLINE_RUNTIMES=micropython
(or =board) runs one of them only.
A module can set `MP_HEAPSIZE = "64K"`, `MP_TIMEOUT = 300` and `MP_RUNTIMES = ("board",)`
(literals), and a first-lines comment `# cpython-only` keeps a tests/shared module off MicroPython.
A CPython test taking a `runtime` argument runs once per MicroPython runtime.
"""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest

from fogline.tools import hostemu

TESTS = Path(__file__).resolve().parent
RUNNER = TESTS / "mp_runner.py"
_MARK = "FOGLINE-RESULT"


def _mp_plan(path: Path) -> tuple[list[str], dict[str, object]]:
    src = path.read_text()
    if "# cpython-only" in "\n".join(src.splitlines()[:5]):
        return [], {}
    tree = ast.parse(src)
    names: list[str] = []
    consts: dict[str, object] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
            names.append(node.name)
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id in ("MP_HEAPSIZE", "MP_TIMEOUT", "MP_RUNTIMES"):
                consts[node.targets[0].id] = ast.literal_eval(node.value)
    return names, consts


class MicroPythonFailure(Exception):
    """A test function failed (or crashed the interpreter) on MicroPython."""


class MicroPythonItem(pytest.Item):
    def __init__(self, *, fname: str, consts: dict[str, object], runtime: str, **kw):
        super().__init__(**kw)
        self.fname = fname
        self.consts = consts
        self.runtime = runtime
        self.add_marker("micropython")
        self.add_marker(runtime)

    def runtest(self) -> None:
        timeout = float(self.consts.get("MP_TIMEOUT", 120))  # type: ignore[arg-type]
        heap = self.consts.get("MP_HEAPSIZE")
        try:
            proc = hostemu.run_mp(RUNNER, str(self.path), self.fname, heapsize=heap,  # type: ignore[arg-type]
                                  timeout=timeout, cwd=str(hostemu.REPO), runtime=self.runtime)
        except hostemu.NoMicroPython as e:
            raise MicroPythonFailure(f"no interpreter for runtime {self.runtime}: {e}")
        except subprocess.TimeoutExpired as e:
            raise MicroPythonFailure(f"timed out after {timeout:.0f} s on {self.runtime}\n{e.stdout or ''}")
        if f"{_MARK} {self.fname} ok" not in proc.stdout:
            raise MicroPythonFailure(
                f"failed on {self.runtime} (exit {proc.returncode})\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, MicroPythonFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, None, f"{self.name} ({_PORT_NAMES[self.runtime]})"


_PORT_NAMES = {"micropython": "MicroPython unix port", "board": "board-like 32-bit single-float MicroPython port"}


def _mp_items(parent, path: Path):
    names, consts = _mp_plan(path)
    wanted = consts.get("MP_RUNTIMES", hostemu.RUNTIMES)
    for rt in hostemu.runtimes():
        if rt not in wanted:  # type: ignore[operator]
            continue
        for n in names:
            yield MicroPythonItem.from_parent(parent, name=f"{n}[{rt}]", fname=n, consts=consts, runtime=rt)


class MicroPythonModule(pytest.File):
    def collect(self):
        yield from _mp_items(self, self.path)


class DualRuntimeModule(pytest.Module):
    def collect(self):
        yield from super().collect()
        yield from _mp_items(self, self.path)


def pytest_pycollect_makemodule(module_path: Path, parent):
    try:
        top = module_path.resolve().relative_to(TESTS).parts[0]
    except ValueError:
        return None
    if top == "firmware":
        return MicroPythonModule.from_parent(parent, path=module_path)
    if top == "shared":
        return DualRuntimeModule.from_parent(parent, path=module_path)
    return None


def pytest_configure(config):
    config.addinivalue_line("markers", "micropython: runs on a MicroPython unix port (either runtime)")
    config.addinivalue_line("markers", "board: runs on the board-like 32-bit single-float port")
    config.addinivalue_line("markers", "slow: long-running (soak) tests, off unless --soak")


def pytest_addoption(parser):
    parser.addoption("--soak", action="store_true", default=False, help="run long soak variants")


def pytest_generate_tests(metafunc):
    if "runtime" in metafunc.fixturenames:
        rts = list(hostemu.runtimes())
        metafunc.parametrize("runtime", rts, ids=[f"vs-{r}" for r in rts])


def pytest_collection_modifyitems(config, items):
    if config.getoption("--soak"):
        return
    skip = pytest.mark.skip(reason="soak test: run with --soak")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter):
    counts: dict[str, dict[str, int]] = {"cpython": {}, "micropython": {}, "board": {}}
    for outcome in ("passed", "failed", "error", "skipped"):
        for rep in terminalreporter.stats.get(outcome, []):
            if getattr(rep, "when", "call") not in ("call", "setup"):
                continue
            if outcome == "passed" and rep.when != "call":
                continue
            rt = next((r for r in hostemu.RUNTIMES if rep.nodeid.endswith(f"[{r}]")), "cpython")
            counts[rt][outcome] = counts[rt].get(outcome, 0) + 1
    parts = []
    for rt, c in counts.items():
        if c:
            parts.append(rt + ": " + ", ".join(f"{v} {k}" for k, v in sorted(c.items())))
    if parts:
        terminalreporter.write_line("runtimes -> " + " | ".join(parts))


@pytest.fixture
def mosquitto(tmp_path):
    """A real mosquitto on a free 127.0.0.1 port, stopped after the test."""
    from harness.broker import Mosquitto

    b = Mosquitto(tmp_path / "mosquitto").start()
    yield b
    b.stop()


@pytest.fixture
def mosquitto_factory(tmp_path):
    """Start more brokers (own ports, optional extra config); all stopped after the test."""
    from harness.broker import Mosquitto

    made: list[Mosquitto] = []

    def make(name: str = "broker", **kw) -> Mosquitto:
        b = Mosquitto(tmp_path / name, **kw).start()
        made.append(b)
        return b

    yield make
    for b in made:
        b.stop()
