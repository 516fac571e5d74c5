"""The real firmware (FlashLog + Uplink + MQTT client on the MicroPython unix port) against the real gateway.

The node's harness (tests/node/uplink_node.py, F-LINK) counts until every reading and alert it
produced was acknowledged by the gateway; the gateway is restarted mid-stream.
"""

from __future__ import annotations

import json
import subprocess
import threading

from tests.gateway.ingest_helpers import GatewayThread, db_rows, gw_config, stored_seqs, wait_for
from tools import hostemu

NODE_SCRIPT = hostemu.REPO / "tests" / "node" / "uplink_node.py"
T0 = 1764150000


def test_firmware_node_drains_into_the_gateway_across_a_gateway_restart(mosquitto, tmp_path):
    n = 400
    cfg = gw_config(tmp_path, mosquitto.port, site={"id": "s1"},
                    ingest={"max_age_s": 10 * 365 * 86400.0},  # the harness's clock is T0 = 2025-11-26
                    tiers={"compress_after_s": 20 * 365 * 86400.0})
    ctl = tmp_path / "ctl"
    ctl.write_text("wifi 1")
    g = GatewayThread(cfg).start()
    proc = subprocess.Popen(hostemu.mp_command(NODE_SCRIPT, str(mosquitto.port), str(n), "3", str(ctl)),
                            env=hostemu.mp_env(), cwd=str(hostemu.REPO), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    t = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    t.start()
    try:
        assert wait_for(lambda: len(stored_seqs(tmp_path / "data", "node1")) >= n // 3, timeout=60)
        g.stop()                                   # the gateway goes away mid-stream...
        g = GatewayThread(cfg).start()             # ...and comes back on the same data dir
        proc.wait(90)
    finally:
        if proc.poll() is None:
            proc.kill()
        g.stop()
    t.join(5)
    done = [json.loads(ln[5:]) for ln in lines if ln.startswith("DONE ")]
    assert proc.returncode == 0 and done, (proc.stderr.read(), lines[-3:])
    assert done[0]["acked_up"] == n and done[0]["depth_up"] == 0
    data = tmp_path / "data"
    assert stored_seqs(data, "node1") == list(range(1, n + 1))
    vals = db_rows(data, "SELECT seq, v, t FROM readings WHERE lane=0 ORDER BY seq")
    assert all(v == s * 0.25 and tt == T0 + s for s, v, tt in vals)
    assert stored_seqs(data, "node1", lane=1) == list(range(1, n // 40 + 1))
    assert db_rows(data, "SELECT COUNT(*) FROM dead_letters") == [(0,)]
