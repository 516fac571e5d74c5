"""Node memory benchmark: the full node under `micropython -X heapsize=N` for decreasing N.

The node (every filter type, every rule type, FlashLog on a Pico W sized flash image,
demo-like config; see tools/bench/node_run.py) runs SAMPLES samples with a virtual clock.
Modules are precompiled with mpy-cross, as `fogline deploy` puts them on a board.
Two interpreters (--runtime): `board`, the board-like 32-bit single-float port (heap sizes in
real board bytes: the Pico W has about 190 KB free, an ESP32 without PSRAM about 110 KB), and
`micropython`, the wheel's 64-bit port, swept in `K` (bytes there, where objects are twice
their board size) and `wK` (scaled by the word size: N wK approximates an N KB board heap).
Reports, per heap size, whether the samples complete and the peak gc.mem_alloc(); also the
live set after gc.collect() and how much of it is the simulated HAL (machine, network, scenario,
simulated chips, flash device buffers: C or absent on a board), so fw_live = the firmware's own.
--mqtt adds the MQTT client, uplink, remote config and the BTHome advertiser: the full firmware.
--frozen also runs `board-frozen`: the board-like port with firmware/ and shared/ frozen in
(tools/build_board_variant.sh (frozen), about a minute), where module bytecode runs from flash, not the heap.

usage: python tools/bench/node_memory.py [--quick] [--samples N] [--no-store] [--mqtt]
                                         [--runtime board|micropython|both] [--frozen]
Last line: one JSON object (smallest working heap and live peak in bytes per runtime).
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
sys.path[:0] = [str(REPO), str(REPO / "tests")]  # tests/harness: the kits benches share with tests

from fogline.tools import hostemu  # noqa: E402

SIZES = [512, 448, 384, 320, 256, 224, 192, 160, 128, 112, 104, 96, 88, 80, 72, 64, 56, 48]
BOARD_SIZES = [256, 224, 192, 160, 128, 110, 96, 88, 80, 72, 64, 60, 56, 52, 48, 44, 40]  # KB, real board bytes
BOARD_HEAPS = {"pico_w": 190, "esp32": 110}  # KB free for Python on the real boards


def build_tree(dst: Path, runtime: str = "micropython") -> None:
    """Compile firmware/, shared/ and the sim HAL to .mpy under dst (package layout kept)."""
    try:
        mc = hostemu.mpy_cross(runtime)
    except hostemu.NoMicroPython as e:
        raise SystemExit(str(e))
    for pkg in ("firmware", "shared"):
        for src in (REPO / pkg).rglob("*.py"):
            out = dst / src.relative_to(REPO).with_suffix(".mpy")
            out.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([mc, "-o", str(out), str(src)], check=True)
    for src in (REPO / "tools" / "sim").glob("*.py"):
        subprocess.run([mc, "-o", str(dst / src.with_suffix(".mpy").name), str(src)], check=True)
    shutil.copytree(REPO / "boards", dst / "boards")
    shutil.copy(REPO / "tools" / "bench" / "node_run.py", dst / "node_run.py")


FROZEN: dict[str, str] = {}  # path of the frozen-firmware interpreter, once built


def interpreter(runtime: str) -> str:
    return FROZEN["board-frozen"] if runtime == "board-frozen" else hostemu.find_micropython(runtime)


def run(tree: Path, heap: str, samples: int, flash: str, port: int | None = None,
        runtime: str = "micropython") -> dict:
    env = hostemu.mp_env()
    # frozen modules first: the tree then only adds the simulated HAL and the runner
    env["MICROPYPATH"] = f".frozen:{tree}" if runtime == "board-frozen" else f"{tree}:.frozen"
    env["FOGLINE_SIM_WDT"] = "0"
    env["FOGLINE_BLE_LOG"] = "/dev/null"
    argv = [interpreter(runtime), "-X", f"heapsize={heap}", str(tree / "node_run.py"), "mem",
            str(samples), flash]
    if port:
        argv.append(str(port))
    p = subprocess.run(argv, env=env, cwd=str(tree), capture_output=True, text=True, timeout=600)
    for line in reversed(p.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    err = (p.stderr.strip().splitlines() or ["exit %d" % p.returncode])[-1]
    return {"ok": False, "error": err}


def sweep(tree: Path, unit: str, samples: int, flash_dir: Path | None, port: int | None = None,
          runtime: str = "micropython") -> tuple[list[dict], int | None]:
    rows = []
    smallest = None
    sizes = BOARD_SIZES if runtime != "micropython" else SIZES if unit == "K" else SIZES[4:]
    for kb in sizes:
        flash = str(flash_dir / f"node-{runtime}-{unit}{kb}.img") if flash_dir else "-"
        r = run(tree, f"{kb}{unit}", samples, flash, port, runtime)
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
                    help="also run the MQTT client, uplink, remote config and BTHome against mosquitto + an acking gateway")
    ap.add_argument("--runtime", choices=("board", "micropython", "both"), default="both")
    ap.add_argument("--frozen", action="store_true", help="also the board port with the firmware frozen in")
    a = ap.parse_args()
    samples = a.samples or (2000 if a.quick else 10000)
    if a.mqtt and a.no_store:
        raise SystemExit("--mqtt needs the store (the uplink drains FlashLog)")
    with tempfile.TemporaryDirectory() as td:
        broker = gw = None
        port = None
        if a.mqtt:
            from tests.node.gateway_stub import AckingGateway
            from harness.broker import Mosquitto
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
    flash_dir = None if a.no_store else Path(td)
    out: dict = {"samples": samples, "store": not a.no_store, "mqtt": bool(port)}
    print(f"{'runtime':>11} {'heap':>7} {'ok':>5} {'peak_alloc':>11} {'live_peak':>10} {'sim_bytes':>9} {'fw_live':>8}"
          f" {'kept':>6} {'alerts':>6}")
    runtimes = ("board", "micropython") if a.runtime == "both" else (a.runtime,)
    if a.frozen:
        subprocess.run(["bash", str(REPO / "tools" / "build_board_variant.sh"), str(Path(td) / "frozen"), "frozen"],
                       check=True, stdout=subprocess.DEVNULL)
        FROZEN["board-frozen"] = str(Path(td) / "frozen" / "micropython-board-frozen")
        runtimes = ("board-frozen",) + runtimes
    for rt in runtimes:
        tree = Path(td) / f"mpy-{rt}"
        build_tree(tree, "board" if rt == "board-frozen" else rt)
        if rt == "board-frozen":  # firmware/ and shared/ come from the interpreter's frozen modules
            shutil.rmtree(tree / "firmware")
            shutil.rmtree(tree / "shared")
        for unit in (("wK", "K") if rt == "micropython" else ("K",)):
            rows, smallest = sweep(tree, unit, samples, flash_dir, port, rt)
            for r in rows:
                print(f"{rt:>11} {r['heap']:>7} {str(r.get('ok')):>5} {r.get('peak_alloc', '-'):>11}"
                      f" {r.get('live_peak', '-'):>10} {r.get('sim_bytes', '-'):>9}"
                      f" {r.get('firmware_live_peak', '-'):>8} {r.get('kept', '-'):>6} {r.get('alerts', '-'):>6}"
                      + ("" if r.get("ok") else f"  {r.get('error')}"))
            ok = [r for r in rows if r.get("ok")]
            key = rt.replace("-", "_") if unit == "K" else rt + "_word_scaled"
            if unit == "K":  # -X heapsize=N K: N KiB of this interpreter's own bytes
                out[f"smallest_heap_bytes_{key}"] = smallest * 1024 if smallest is not None else None
            else:  # N wK: N KiB of 32-bit words, i.e. 2 N KiB on this 64-bit port
                out[f"smallest_heap_wk_{key}"] = smallest
            out[f"peak_alloc_at_smallest_{key}"] = ok[-1]["peak_alloc"] if ok else None
            out[f"live_peak_bytes_{key}"] = ok[-1]["live_peak"] if ok else None
            out[f"sim_bytes_{key}"] = ok[-1]["sim_bytes"] if ok else None
            out[f"firmware_live_peak_bytes_{key}"] = ok[-1]["firmware_live_peak"] if ok else None
    for key in ("board", "board_frozen"):
        if f"smallest_heap_bytes_{key}" in out:
            sm = out[f"smallest_heap_bytes_{key}"]
            for board, kb in BOARD_HEAPS.items():
                out[f"{key}_fits_{board}_{kb}k"] = sm is not None and sm <= kb * 1024
            out[f"{key}_in_64k"] = sm is not None and sm <= 64 * 1024
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
