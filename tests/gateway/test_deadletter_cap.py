"""Dead-letter hard cap: enforced at insert (never above the cap, even between maintenance runs),
newest rows kept, per-reason totals exact and persistent."""

from __future__ import annotations

import threading
import time

from fogline.gateway.store.core import DeadLetter, Store
from tests.gateway.ingest_helpers import GatewayThread, db_rows, gw_config, wait_for


def _rows(s: Store) -> list[tuple[str, str]]:
    return s.con.execute("SELECT reason, detail FROM dead_letters ORDER BY id").fetchall()


def test_cap_holds_at_every_commit_and_totals_stay_exact_across_restart(tmp_path):
    db = tmp_path / "s.sqlite"
    s = Store(db, dead_letter_max=5)
    sent = []
    for k in range(6):
        batch = [DeadLetter("too_large" if i % 2 else "cbor", f"d{k}-{i}") for i in range(3)]
        sent += batch
        s.commit_batch([], batch)
        assert len(_rows(s)) == min(5, len(sent))
        assert _rows(s) == [(d.reason, d.detail) for d in sent[-5:]]  # the oldest went, the newest stay
    big = [DeadLetter("unknown_device", f"big-{i}") for i in range(12)]  # one batch larger than the cap
    s.commit_batch([], big)
    sent += big
    assert _rows(s) == [("unknown_device", f"big-{i}") for i in range(7, 12)]
    want = {"cbor": 12, "too_large": 6, "unknown_device": 12}
    assert s.dead_letter_totals() == want
    assert s.dead_letter_counts() == {"unknown_device": 5}
    s.close()
    s = Store(db, dead_letter_max=2)  # restart with a smaller cap: totals persist, the cap applies at once
    assert s.dead_letter_totals() == want
    s.commit_batch([], [DeadLetter("cbor", "after")])
    assert _rows(s) == [("unknown_device", "big-11"), ("cbor", "after")]
    assert s.dead_letter_totals() == {**want, "cbor": 13}
    s.close()
    s = Store(db, dead_letter_max=0)  # cap 0: nothing kept, everything counted
    s.commit_batch([], [DeadLetter("cbor", "x"), DeadLetter("structure", "y")])
    assert _rows(s) == [] and s.dead_letter_totals() == {**want, "cbor": 14, "structure": 1}
    s.close()


def test_gateway_never_exceeds_the_cap_under_a_burst_of_garbage(tmp_path, mosquitto):
    import paho.mqtt.client as mqtt

    cap = 20
    cfg = gw_config(tmp_path, mosquitto.port, ingest={"dead_letter_max_rows": cap},
                    tiers={"maintenance_s": 3600.0})  # no maintenance prune: the cap alone must hold
    data = tmp_path / "data"
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            if (data / "ingest.sqlite").exists():
                peak[0] = max(peak[0], db_rows(data, "SELECT COUNT(*) FROM dead_letters")[0][0])
            stop.wait(0.005)

    with GatewayThread(cfg) as g:
        t = threading.Thread(target=sample, daemon=True)
        t.start()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="garbage")
        c.connect("127.0.0.1", mosquitto.port)
        c.loop_start()
        n = 600
        for i in range(n):
            c.publish(f"fogline/site1/junk{i % 7}/up", b"\xff\xfe not cbor", qos=1)
            if i % 100 == 99:
                time.sleep(0.02)
        assert wait_for(lambda: g.gw.metrics.total("dead_letters") >= n, 60)
        g.flush()
        c.loop_stop()
        c.disconnect()
        totals = g.call(g.gw.run_store(lambda st: st.dead_letter_totals()))
        stop.set()
        t.join(2)
    assert sum(totals.values()) == n == g.gw.metrics.total("dead_letters")
    assert db_rows(data, "SELECT COUNT(*) FROM dead_letters")[0][0] == cap
    assert 0 < peak[0] <= cap, peak
    from fogline.gateway.commands import status
    st = status.collect(data / "ingest.sqlite", data / "metrics.json")
    assert st["dead_letter_totals"] == totals and sum(st["dead_letters"].values()) == cap
