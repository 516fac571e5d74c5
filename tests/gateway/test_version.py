"""One version: pyproject.toml's, which the gateway, `fogline --version`, the firmware and its mip package report."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

import fogline.gateway
from fogline.tools import deploy

REPO = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def test_gateway_reports_the_pyproject_version():
    assert fogline.gateway.__version__ == VERSION


def test_firmware_and_its_package_json_carry_the_same_version():
    # firmware/app.py runs on MicroPython (no importlib.metadata there): its literal is checked here instead
    fw = re.search(r'^FW = "([^"]+)"$', (REPO / "firmware" / "app.py").read_text(), re.M)
    assert fw is not None and fw.group(1) == VERSION
    assert json.loads((REPO / "firmware" / "package.json").read_text())["version"] == VERSION
    assert deploy.package_json()["version"] == VERSION


def test_fogline_version_prints_it():
    out = subprocess.run([sys.executable, "-m", "fogline.tools.cli", "--version"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"fogline {VERSION}"
