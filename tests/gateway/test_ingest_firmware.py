"""The real firmware (FlashLog + Uplink + MQTT client on the MicroPython unix port) against the real gateway.

The counter node (tests/harness/counternode.py: tests/node/uplink_node.py) counts until every reading
and alert it produced was acknowledged by the gateway; the gateway is restarted mid-stream.
"""

from __future__ import annotations

from tests.gateway.ingest_helpers import GatewayThread, db_rows, gw_config, stored_seqs, wait_for
from harness.counternode import T0, CounterNode, run_counter_node


def test_firmware_node_drains_into_the_gateway_across_a_gateway_restart(mosquitto, tmp_path):
    n = 400
    cfg = gw_config(tmp_path, mosquitto.port, site={"id": "s1"},
                    ingest={"max_age_s": 10 * 365 * 86400.0},  # the harness's clock is T0 = 2025-11-26
                    tiers={"compress_after_s": 20 * 365 * 86400.0})
    g = GatewayThread(cfg).start()
    node = CounterNode(mosquitto.port, n, 3, tmp_path / "ctl")
    try:
        assert wait_for(lambda: len(stored_seqs(tmp_path / "data", "node1")) >= n // 3, timeout=60)
        g.stop()                                   # the gateway goes away mid-stream...
        g = GatewayThread(cfg).start()             # ...and comes back on the same data dir
        done = node.finish(90)                     # asserts a clean exit with its DONE line
    finally:
        node.kill()
        g.stop()
    assert done["acked_up"] == n and done["depth_up"] == 0
    data = tmp_path / "data"
    assert stored_seqs(data, "node1") == list(range(1, n + 1))
    vals = db_rows(data, "SELECT seq, v, t FROM readings WHERE lane=0 ORDER BY seq")
    assert all(v == s * 0.25 and tt == T0 + s for s, v, tt in vals)
    assert stored_seqs(data, "node1", lane=1) == list(range(1, n // 40 + 1))
    assert db_rows(data, "SELECT COUNT(*) FROM dead_letters") == [(0,)]


def test_firmware_unreadable_and_misdated_records_are_dead_lettered_alone(mosquitto, tmp_path):
    """One bad record no longer costs its pack: the node's placeholder for a record it cannot read back
    and a reading dated years ahead are dead-lettered one by one, every good reading is stored, all is acked."""
    n, bad_every, badtime_every = 200, 17, 23
    cfg = gw_config(tmp_path, mosquitto.port, site={"id": "s1"},
                    ingest={"max_age_s": 10 * 365 * 86400.0, "numeric_only": True},
                    tiers={"compress_after_s": 20 * 365 * 86400.0})
    g = GatewayThread(cfg).start()
    try:
        proc, done = run_counter_node(mosquitto.port, n, 2, tmp_path / "ctl", f"bad_every={bad_every}",
                                      f"badtime_every={badtime_every}")
        g.flush()
    finally:
        g.stop()
    assert proc.returncode == 0 and done, (proc.stderr, proc.stdout.splitlines()[-3:])
    assert done["acked_up"] == n and done["depth_up"] == 0
    assert done["uplink"]["bad_records"] >= n // bad_every
    unreadable = [s for s in range(1, n + 1) if s % bad_every == 0]
    misdated = [s for s in range(1, n + 1) if s % badtime_every == 0 and s % bad_every]
    data = tmp_path / "data"
    assert stored_seqs(data, "node1") == [s for s in range(1, n + 1) if s not in unreadable + misdated]
    vals = db_rows(data, "SELECT seq, v, t FROM readings WHERE lane=0 ORDER BY seq")
    assert all(v == s * 0.25 and tt == T0 + s for s, v, tt in vals)
    dl = db_rows(data, "SELECT reason, detail FROM dead_letters ORDER BY id")
    assert sorted(int(d.split(":")[0][4:]) for r, d in dl if r == "bad_record") == unreadable  # "seq N: ..."
    assert sorted(int(d.split(":")[0][4:]) for r, d in dl if r == "time") == misdated
    assert len(dl) == len(unreadable) + len(misdated)  # each exactly once
    m = g.gw.metrics
    assert m.get("dead_letters", reason="bad_record") == len(unreadable)
    assert m.get("records_refused", lane="up") == len(unreadable) + len(misdated)
