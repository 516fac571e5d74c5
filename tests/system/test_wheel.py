"""The built wheel on its own: `pip wheel --no-deps` of a clean copy of the tree, `pip install <wheel>[tools]`
into a fresh venv outside the checkout (its dependencies from pip's cache, as for a user), then, from a
directory outside the repo with no PYTHONPATH, `fogline demo --headless --duration 10` and `fogline deploy`
to a virtual board, with every module, firmware file and board file coming from the venv's site-packages.

The fresh venv is made --without-pip and the test venv's pip installs into it (`pip --python`): the install
is the real one (resolver, dependencies, entry points), only bootstrapping a second copy of pip is skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cbor2
import paho.mqtt.client as mqtt
import pytest

from fogline.shared import senml
from fogline.tools import hostemu
from fogline.tools.vboard import VirtualBoard

pytestmark = pytest.mark.timeout(900)
REPO = hostemu.REPO
# what a build must not copy from a working tree: setuptools' build/ keeps files deleted from the source
NOT_SOURCE = (".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis",
              "fogline-data", ".fogline", "*.img")


def _run(cmd: list[str], timeout: float, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    assert p.returncode == 0, f"{cmd[:4]} exited {p.returncode}:\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
    return p


def _clean_env(venv: Path) -> dict[str, str]:
    """The environment of a user's shell with only the venv on PATH: nothing that points at the checkout."""
    env = {k: v for k, v in os.environ.items() if k in ("HOME", "LANG", "LC_ALL", "TMPDIR", "USER", "TERM")}
    env["PATH"] = os.pathsep.join([str(venv / "bin"), "/usr/local/bin", "/usr/bin", "/bin"])
    if os.environ.get("FOGLINE_MICROPYTHON"):  # an interpreter chosen for this host (no wheel port for it)
        env["FOGLINE_MICROPYTHON"] = os.environ["FOGLINE_MICROPYTHON"]
    return env


def _wheel_names(whl: Path) -> list[str]:
    """Member names from `python -m zipfile -l` (one per line after the header; names have no spaces)."""
    out = _run([sys.executable, "-m", "zipfile", "-l", str(whl)], 60).stdout.splitlines()
    assert out and out[0].split()[:2] == ["File", "Name"], out[:2]
    return [ln.split()[0] for ln in out[1:] if ln.strip()]


def _checkout_files(pkg: str) -> set[str]:
    """The shipped files of one top-level folder of the checkout, as wheel names (fogline/<pkg>/...)."""
    return {"fogline/" + str(p.relative_to(REPO)) for p in (REPO / pkg).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix in (".py", ".json")}


class UpListener:
    """Collects the `up` messages of one node from the site broker."""

    def __init__(self, port: int, topic: str):
        self.got: list[bytes] = []
        self.lock = threading.Lock()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.c.on_message = self._on
        self.c.connect("127.0.0.1", port)
        self.c.subscribe(topic, qos=1)
        self.c.loop_start()

    def _on(self, _c, _u, m) -> None:
        with self.lock:
            self.got.append(m.payload)

    def first(self, timeout: float) -> bytes | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if self.got:
                    return self.got[0]
            time.sleep(0.1)
        return None

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def test_wheel_installs_and_runs_demo_and_deploy_outside_the_checkout(tmp_path, mosquitto, record_property):
    try:
        hostemu.find_micropython()  # the virtual board below runs on the test venv's port
    except hostemu.NoMicroPython as e:
        pytest.skip(str(e))
    took: dict[str, float] = {}
    src, dist, venv, away = tmp_path / "src", tmp_path / "dist", tmp_path / "venv", tmp_path / "elsewhere"
    away.mkdir()
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(*NOT_SOURCE))

    t = time.monotonic()
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(src)], 600, cwd=away)
    took["wheel_build_s"] = time.monotonic() - t
    (whl,) = dist.glob("fogline-*.whl")

    # the wheel holds one package and its metadata, and every firmware, shared and board file of the tree
    names = _wheel_names(whl)
    tops = {n.split("/")[0] for n in names}
    assert tops == {"fogline", whl.name.split("-py")[0] + ".dist-info"}, sorted(tops)
    for pkg in ("firmware", "shared", "boards"):
        missing = _checkout_files(pkg) - set(names)
        assert not missing, f"{pkg}/ files not in the wheel: {sorted(missing)[:10]}"
    for need in ("fogline/tools/sim/machine.py", "fogline/tools/demo_node.py", "fogline/tools/vboard_boot.py",
                 "fogline/gateway/models/manifest.json", "fogline/gateway/examples/gateway.toml"):
        assert need in names, need
    assert not [n for n in names if n.startswith(("fogline/tests/", "fogline/tools/bench/"))]

    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], 120)
    t = time.monotonic()
    _run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
          f"{whl}[tools]"], 900, cwd=away)
    took["pip_install_s"] = time.monotonic() - t
    env = _clean_env(venv)

    # imports resolve inside the venv, and the checkout's top-level folders are not importable names
    probe = ("import json, fogline, fogline.tools, fogline.tools.hostemu as h, fogline.gateway.app as g\n"
             "bad = []\n"
             "for n in ('gateway', 'tools', 'shared', 'firmware', 'boards'):\n"
             "    try:\n        __import__(n); bad.append(n)\n"
             "    except ImportError:\n        pass\n"
             "try:\n    h.find_micropython('board'); board = 'built'\n"
             "except h.NoMicroPython as e:\n    board = str(e)\n"
             "print(json.dumps({'path': list(fogline.__path__), 'tools': fogline.tools.__file__, 'app': g.__file__,"
             " 'repo': str(h.REPO), 'checkout': h.CHECKOUT, 'importable': bad, 'board': board}))")
    got = json.loads(_run([str(venv / "bin" / "python"), "-c", probe], 120, cwd=away, env=env).stdout)
    site = venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    assert [Path(p) for p in got["path"]] == [site / "fogline"], got
    for k in ("tools", "app", "repo"):
        assert Path(got[k]).is_relative_to(site) and not Path(got[k]).is_relative_to(REPO), got
    assert got["checkout"] is False and got["importable"] == [], got
    # what only a checkout has fails with a clear error, and nothing is written into site-packages
    assert "checkout's ../shared/micropython" in got["board"] and "FOGLINE_BOARD_MICROPYTHON" in got["board"], got
    assert not (site / "fogline" / "build").exists()
    fogline = str(venv / "bin" / "fogline")
    pkg_json = (site / "fogline" / "firmware" / "package.json").read_bytes()
    p = subprocess.run([fogline, "deploy", "--write-package-json"], capture_output=True, text=True, timeout=120,
                       cwd=away, env=env)
    assert p.returncode == 2 and "installed at" in p.stderr, (p.returncode, p.stderr)
    assert (site / "fogline" / "firmware" / "package.json").read_bytes() == pkg_json

    # the demo, from the installed package only
    demo_dir = tmp_path / "demo"
    t = time.monotonic()
    demo = subprocess.Popen([fogline, "demo", "--headless", "--duration", "10", "--workdir", str(demo_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=away, env=env,
                            start_new_session=True)
    try:
        out, err = demo.communicate(timeout=420)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait(10)
    took["demo_s"] = time.monotonic() - t
    assert demo.returncode == 0, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    s = json.loads(out)
    assert s["nodes"]["started"] == 5 and s["nodes"]["failed"] == {}, s["nodes"]
    assert s["components"]["gateway"] == "on" and ".mpy" in s["components"]["nodes"], s["components"]
    assert all(n["final_report"] for n in s["per_node"]), s["per_node"]
    assert s["consistent"] is True and s["sampled"] > 0 and s["stored"] > 0, s
    spec = json.loads((demo_dir / "nodes" / "node1" / "spec.json").read_text())
    assert Path(spec["boards_dir"]) == site / "fogline" / "boards"

    # deploy the installed firmware to a virtual board; the node it boots publishes to mosquitto
    vb = VirtualBoard(tmp_path / "node.img", board="pico_w", run_main_first=False)
    vb.start()
    listener = UpListener(mosquitto.port, "fogline/lab/wh1/up")
    try:
        cfg = tmp_path / "site.toml"
        cfg.write_text(f'sample_ms = 250\n[node]\nid = "wh1"\nsite = "lab"\n'
                       f'[mqtt]\nhost = "127.0.0.1"\nport = {mosquitto.port}\nkeepalive = 10\n')
        t = time.monotonic()
        p = _run([fogline, "deploy", "--board", "pico_w", "--port", vb.port, "--site-config", str(cfg)], 300,
                 cwd=away, env=env)
        took["deploy_s"] = time.monotonic() - t
        report = json.loads(p.stdout.strip().splitlines()[-1])
        assert report["verified"] == report["files"] > 10 and report["reset"] is True, report
        up = listener.first(90)
        assert up is not None, f"no up message from the deployed node; board resets={vb.resets}"
        first_seq, pack = cbor2.loads(up)[:2]
        assert first_seq >= 1 and {r[0] for r in senml.resolve(pack)} & {"wh1/temperature", "wh1/humidity"}
    finally:
        listener.close()
        vb.stop()
    record_property("timings", json.dumps({k: round(v, 1) for k, v in took.items()}))
    print("wheel timings:", json.dumps({k: round(v, 1) for k, v in took.items()}))
