"""Child process for the kill -9 test: a relay that accepts items and prints each id once durable.

Run: python tests/gateway/relay_child.py OUTBOX_PATH CLOUD_PORT CA_FILE N
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fogline.gateway.relay.bandwidth import BandwidthConfig, BandwidthPolicy  # noqa: E402
from fogline.gateway.relay.cloud import CloudConfig, CloudLink  # noqa: E402
from fogline.gateway.relay.outbox import LANES, Outbox, OutboxConfig  # noqa: E402
from fogline.gateway.relay.core import Relay  # noqa: E402


async def main(path: str, port: int, ca: str, n: int) -> None:
    ob = Outbox(OutboxConfig(path=path, synchronous="NORMAL"), "gw1")
    link = CloudLink(CloudConfig(host="127.0.0.1", port=port, client_id="fogline-gw1", ca_file=ca,
                                 username="gw1", password="gw-secret", reconnect_min_s=0.1, reconnect_max_s=0.5))
    relay = Relay(ob, link, "site1", bandwidth=BandwidthPolicy(BandwidthConfig(initial_mode="high", low_kbps=0.001, high_kbps=0.002)))
    await relay.start()
    await link.wait_connected(10)
    print("connected", flush=True)
    for i in range(n):
        lane = LANES[i % 4]
        rid = relay.submit(lane, {"i": i, "pad": "x" * 200})
        print(f"accepted {rid} {lane} {i}", flush=True)  # durable: the INSERT committed
        if i % 5 == 0:
            await asyncio.sleep(0.001)
    await asyncio.sleep(30)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])))
