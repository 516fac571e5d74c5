"""The cloud side of a system test: a TLS + password mosquitto, `fogline cloud` on PostgreSQL, an uplink proxy.

`Cloud` is what the chaos and failover runs reconcile against: `rec` (the cloud database read back as
envelope rows), optionally `netem` (a NetEm proxy the gateways' uplink goes through, for degrading it)
and `tap` (a wire subscriber: which gateway sent each envelope, for summaries sent twice).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from harness.cloudkit import CloudSubscriber, make_pki, tls_cloud_broker
from harness.cloudrecord import CloudRecord
from harness.ledger import latest_windows, reconcile_cloud, reconcile_summaries, stored_by_lane
from harness.netem import NetEm

CLOUD_USER, CLOUD_PASSWORD = "cloud", "cloud-secret"


class Cloud:
    """TLS cloud mosquitto (persistent, no queue limit) with `fogline cloud` consuming it, for one site.

    shared=False: one consumer on a plain subscription, for runs that restart the cloud mosquitto
    (mosquitto 2.0 does not restore shared subscriptions from its persistence; see README, the cloud tier)."""

    def __init__(self, tmp: Path, site: str, gw_user: str = "gw", gw_password: str = "gw-secret",
                 netem: bool = False, tap: bool = False, shared: bool = True):
        self.site, self.gw_user, self.gw_password = site, gw_user, gw_password
        self.pki = make_pki(tmp / "pki")
        self.broker = tls_cloud_broker(tmp / "cloud", self.pki, {gw_user: gw_password,
                                                                 CLOUD_USER: CLOUD_PASSWORD}).start()
        self.netem = NetEm(self.broker.port).start() if netem else None  # gateway -> netem -> cloud broker
        self.rec = CloudRecord(self.broker.port, self.pki.ca, CLOUD_USER, CLOUD_PASSWORD, site, shared=shared)
        self.tap = CloudSubscriber(self.broker.port, self.pki, CLOUD_USER, CLOUD_PASSWORD,
                                   topic=f"fogline/{site}/#").start() if tap else None

    def toml(self, summary_s: float, forward_readings: bool) -> str:
        """The gateways' [cloud] section: TLS with the test CA (via the proxy if any), one summary window,
        fast reconnects, high bandwidth mode throughout (a loaded machine's measured rate must not make the
        relay withhold lanes: the bandwidth policy has its own tests), a short breaker backoff."""
        port = self.netem.port if self.netem is not None else self.broker.port
        fwd = "forward_readings = true\n" if forward_readings else ""
        return (f'\n[cloud]\nenabled = true\nhost = "127.0.0.1"\nport = {port}\n'
                f'ca_file = "{self.pki.ca}"\nusername = "{self.gw_user}"\npassword = "{self.gw_password}"\n'
                f'reconnect_min_s = 0.2\nreconnect_max_s = 1.0\nsummary_windows_s = [{summary_s}]\n{fwd}\n'
                f'[cloud.bandwidth]\ninitial_mode = "high"\nlow_kbps = 0.001\nhigh_kbps = 0.002\n\n[cloud.breaker]\nbackoff_max_s = 2.0\n')

    def reconcile(self, dbs: dict[str, Path], forward_readings: bool,
                  summary_s: float | None = None) -> dict[str, Any]:
        """harness.ledger.reconcile_cloud of the cloud database against what the gateways stored; with
        summary_s (one gateway) also reconcile_summaries of its windows."""
        items = self.rec.snapshot()
        rep = reconcile_cloud(stored_by_lane(dbs), items, self.rec.bad, forward_readings,
                              deliveries=self.tap.snapshot() if self.tap is not None else None)
        if summary_s is not None:
            (db,) = dbs.values()
            rep.update(reconcile_summaries(db, latest_windows(items), summary_s))
        rep["db_duplicates"] = self.rec.db_duplicates()
        rep["absorbed_by_keys"] = self.rec.absorbed()
        return rep

    def settle(self, dbs: dict[str, Path], forward_readings: bool, timeout: float,
               summary_s: float | None = None) -> dict[str, Any]:
        """reconcile() until everything stored that the relay sends is in the cloud (and, with summary_s,
        every stored reading is in a matching final window), or until timeout; settle_s says how long."""
        t0 = time.monotonic()
        while True:
            rep = self.reconcile(dbs, forward_readings, summary_s)
            done = not rep["missing"] and rep["summaries"] and (
                summary_s is None or (not rep["stored_in_no_summary"] and not rep["windows_mismatch"]))
            if done or time.monotonic() - t0 > timeout:
                rep["settle_s"] = round(time.monotonic() - t0, 1)
                return rep
            time.sleep(0.5)

    def close(self) -> None:
        if self.tap is not None:
            self.tap.stop()
        self.rec.stop()
        if self.netem is not None:
            self.netem.stop()
        self.broker.stop()
