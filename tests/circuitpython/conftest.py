"""CircuitPython adapter tests on CPython: simulated CircuitPython 9.2 modules (tools/sim_cpy) first on
sys.path, the adapter's shims installed, and everything undone afterwards (sys.modules, sys.path,
patched attributes), so other tests in the same worker see a clean interpreter."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SIM_CPY = REPO / "tools" / "sim_cpy"
SIM_MP = REPO / "tools" / "sim"  # sim_sensors.py (register-level chips) is plain Python


def _ours(mod) -> bool:
    """Modules to forget after a test: ours (they bound the shims); third-party ones stay loaded."""
    f = getattr(mod, "__file__", None) or ""
    return f.startswith(str(REPO)) or mod is None


@pytest.fixture
def cpy(monkeypatch):
    """Namespace of the simulated CircuitPython modules with the adapter installed."""
    before = dict(sys.modules)
    old_path = list(sys.path)
    sys.path[:0] = [str(SIM_CPY), str(REPO)]
    for name in ("board", "microcontroller", "digitalio", "analogio", "busio", "wifi", "socketpool", "_bleio",
                 "aesio", "storage", "supervisor", "alarm", "watchdog", "micropython", "simctl", "sim_sensors"):
        sys.modules.pop(name, None)
    import simctl
    simctl.reset()
    undo = simctl.install_runtime()
    from firmware.cpy import compat
    compat.install()
    ns = types.SimpleNamespace(simctl=simctl, compat=compat)
    for name in ("board", "microcontroller", "digitalio", "busio", "wifi", "_bleio", "storage"):
        setattr(ns, name, __import__(name))
    spec = importlib.util.spec_from_file_location("sim_sensors", SIM_MP / "sim_sensors.py")
    ns.sim_sensors = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ns.sim_sensors)
    try:
        yield ns
    finally:
        compat.uninstall()
        simctl.uninstall_runtime(undo)
        for name in list(sys.modules):
            if name not in before and _ours(sys.modules[name]):
                del sys.modules[name]
                # A package imported before (e.g. `firmware`, which the gateway's placement runner uses on
                # CPython) keeps its submodule as an attribute, and `from firmware import app` would reuse it.
                parent, _, child = name.rpartition(".")
                if parent in before and child in getattr(before[parent], "__dict__", {}):
                    delattr(before[parent], child)
        for name, mod in before.items():
            if sys.modules.get(name) is not mod:
                sys.modules[name] = mod
        sys.path[:] = old_path
