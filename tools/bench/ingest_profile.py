"""Where the gateway's CPU goes per reading: py-spy samples the in-process gateway draining a queued load.

Same drain case as tools/bench/gateway_ingest.py (mosquitto, persistent session, --nodes nodes, packs of
--pack readings, paho in this process); py-spy (pip install py-spy) records every thread of this process
while the gateway drains. Prints the top functions by self time as microseconds of CPU per reading
(share of samples x the gateway's CPU per reading), then one JSON line.

Usage: python tools/bench/ingest_profile.py [--nodes 20] [--msgs 500] [--pack 10] [--top 10] [--worker]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests")]  # tests/harness: the kits benches share with tests
sys.path.insert(0, str(REPO / "tools" / "bench"))


def top_functions(raw: Path, n: int) -> tuple[list[tuple[str, int]], int]:
    """(function, self samples) of the n busiest functions in a py-spy raw (collapsed) file, and all samples."""
    self_t: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        leaf = stack.split(";")[-1]
        name, _, where = leaf.partition(" (")
        fn = where.split(":")[0].replace(str(REPO) + "/", "")
        fn = fn.split("site-packages/")[-1]
        self_t[f"{name} ({fn})"] += int(count)
        total += int(count)
    return self_t.most_common(n), total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=20)
    ap.add_argument("--msgs", type=int, default=500, help="messages per node")
    ap.add_argument("--pack", type=int, default=10)
    ap.add_argument("--top", type=int, default=10)
    ap.add_argument("--worker", action="store_true", help="[mqtt] worker_process = true (paho not sampled)")
    ap.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    args = ap.parse_args()
    spy_bin = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if spy_bin is None:
        print("py-spy not found: pip install py-spy", file=sys.stderr)
        return 2
    import gateway_ingest as gi
    from harness.broker import Mosquitto

    with tempfile.TemporaryDirectory(prefix="fogline-prof-") as td:
        tmp = Path(td)
        broker = Mosquitto(tmp / "mq", max_queued_messages=0).start()
        raw = tmp / "spy.txt"
        spy: list[subprocess.Popen] = []
        from fogline.gateway.app import Gateway
        real_start = Gateway.start
        starts = [0]

        async def start_and_spy(self):  # the second start is the measured drain (the first makes the session)
            starts[0] += 1
            if starts[0] == 2:
                spy.append(subprocess.Popen([spy_bin, "record", "--pid", str(os.getpid()), "-r", str(args.rate),
                                             "-f", "raw", "-o", str(raw)], stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL))
                time.sleep(1.0)  # py-spy attaches
            await real_start(self)
        Gateway.start = start_and_spy  # type: ignore[method-assign]
        try:
            res = gi.drain_gateway(broker.port, args.nodes, args.msgs, args.pack, tmp, worker=args.worker)
        finally:
            Gateway.start = real_start  # type: ignore[method-assign]
            for p in spy:
                p.send_signal(signal.SIGINT)
                p.wait(60)
            broker.stop()
        top, total = top_functions(raw, args.top) if raw.exists() else ([], 0)
    us_per_reading = res["gateway_cpu_s"] * 1e6 / res["readings_sent"]
    print(f"{args.nodes} nodes, packs of {args.pack}: {res['readings_per_s']:.0f} readings/s, "
          f"{us_per_reading:.1f} us CPU per reading, {total} samples")
    print(f"{'us/reading':>10} {'share':>6}  function (self time)")
    rows = []
    for name, n in top:
        share = n / total if total else 0.0
        rows.append({"function": name, "share": round(share, 4), "us_per_reading": round(share * us_per_reading, 3)})
        print(f"{share * us_per_reading:10.2f} {share:6.1%}  {name}")
    print(json.dumps({"nodes": args.nodes, "pack": args.pack, "worker": args.worker,
                      "readings_per_s": round(res["readings_per_s"]), "cpu_us_per_reading": round(us_per_reading, 2),
                      "loss": res["loss"], "all_acked": res["all_acked"], "samples": total, "top": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
