"""Child process for the relay-feed crash tests: a real gateway (Gateway + relay_component.attach) on a TOML config.

Run: python tests/gateway/relayfeed_child.py CONFIG [crash-before-outbox]
Prints "started" once the site broker and the cloud link are connected; SIGTERM stops it cleanly.
With crash-before-outbox, the process kills itself (SIGKILL) the first time the relay feed hands
readings to the outbox: the ingest commit is durable, the outbox write never happens.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fogline.gateway import config  # noqa: E402
from fogline.gateway.app import Gateway  # noqa: E402
from fogline.gateway.relay.core import Relay  # noqa: E402
from fogline.gateway.relay.component import attach  # noqa: E402


async def main(conf: str, crash: bool) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if crash:
        def die(self, items):  # noqa: ARG001 - the crash lands before the outbox INSERT
            os.kill(os.getpid(), signal.SIGKILL)
        Relay.submit_many = die  # type: ignore[method-assign]
    gw = Gateway(config.load(conf))
    comps = attach(gw)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await gw.start()
    ok = await gw.wait_connected(20) and await comps[0].relay.link.wait_connected(20)
    print("started" if ok else "not-connected", flush=True)
    await stop.wait()
    await gw.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], len(sys.argv) > 2 and sys.argv[2] == "crash-before-outbox"))
