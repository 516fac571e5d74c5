"""Hostile uplinks and `state` messages against a running gateway and mosquitto (tests/harness/hostile.py): every
CBOR major type and tag, deep and wide nesting, shared-reference bombs, huge declared lengths.

Afterwards a valid pack must still be acked (the bench figure is the latency, tools/bench/fuzz_ingest.py;
the deadline here is loose because CI hosts are busy), no message may hit an ingest bug (dead letter
`internal`), and the gateway's memory growth (VmRSS of this process, which hosts the whole gateway with
worker_process = false) stays under RSS_GROWTH_BOUND_MB. Short in CI (20,000 messages); long
(FOGLINE_FUZZ_MESSAGES, default 200,000) with FOGLINE_FUZZ_LONG=1 or with --soak.
"""

from __future__ import annotations

import json
import os

import pytest

from harness.hostile import RSS_GROWTH_BOUND_MB, fuzz_gateway

SHORT = 20_000
LONG = int(os.environ.get("FOGLINE_FUZZ_MESSAGES", "200000"))


def _check(res: dict) -> None:
    print(json.dumps(res))
    assert res["acked"], res
    assert res["internal"] == 0, res
    assert res["messages_in"] > 0
    assert res["rss_growth_mb"] < RSS_GROWTH_BOUND_MB, res
    assert sum(res["sent"][k] for k in ("uplink", "state", "cbor", "topic")) == res["messages"]


def test_fuzz_hostile_uplinks_and_states(mosquitto, tmp_path):
    _check(fuzz_gateway(mosquitto.port, tmp_path, LONG if os.environ.get("FOGLINE_FUZZ_LONG") else SHORT))


@pytest.mark.slow
def test_fuzz_hostile_uplinks_and_states_long(mosquitto, tmp_path):
    _check(fuzz_gateway(mosquitto.port, tmp_path, LONG, seed=7))
