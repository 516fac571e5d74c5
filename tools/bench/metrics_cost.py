"""Metrics cost: one counter increment (the ingest hot path) and one Prometheus scrape.

    python tools/bench/metrics_cost.py [--series 90]

Increments are plain dict updates under a lock; prometheus_client only runs at scrape time, so the scrape
figure includes the process collector reading /proc. Best of several repeats (a shared machine slows single
runs). Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import timeit

from fogline.gateway.ops.metrics import Metrics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, default=90, help="counters and gauges each, for the scrape")
    ap.add_argument("--number", type=int, default=200_000)
    args = ap.parse_args()
    m = Metrics()
    n = args.number
    plain = min(timeit.repeat(lambda: m.inc("commits"), number=n, repeat=7)) / n * 1e9
    labelled = min(timeit.repeat(lambda: m.inc("readings_in", 5, lane="up"), number=n, repeat=7)) / n * 1e9
    s = Metrics()
    for i in range(args.series):
        s.inc(f"c{i}", lane="up")
        s.set(f"g{i}", 1.0, node="n1")
    scrape = min(timeit.repeat(s.render_prometheus, number=200, repeat=5)) / 200 * 1e6
    print(json.dumps({"inc_ns": round(plain), "inc_labelled_ns": round(labelled),
                      "scrape_us": round(scrape), "scrape_series": 2 * args.series,
                      "scrape_bytes": len(s.render_prometheus())}))


if __name__ == "__main__":
    main()
