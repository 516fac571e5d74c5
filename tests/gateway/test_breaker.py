"""Circuit breaker: opens on error rate / latency / link loss, probes with backoff, closes on recovery."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from fogline.gateway.relay.breaker import CLOSED, HALF_OPEN, OPEN, Breaker, BreakerConfig
from fogline.gateway.relay.cloud import CloudConfig, CloudLink
from fogline.gateway.relay.outbox import Outbox, OutboxConfig
from fogline.gateway.relay.core import Relay
from fogline.gateway.relay.bandwidth import BandwidthConfig, BandwidthPolicy


def brk(**kw) -> Breaker:
    return Breaker(BreakerConfig(**{"jitter": 0.0, **kw}), rng=random.Random(1))


def test_opens_at_error_rate_only_after_min_calls():
    b = brk(window=10, min_calls=4, error_rate=0.5)
    b.failure(0.0)
    b.failure(0.1)
    b.success(0.2)
    assert b.state == CLOSED  # 3 outcomes < min_calls
    b.failure(0.3)
    assert b.state == OPEN and b.stats()["state_code"] == 2 and b.counters["opened"] == 1
    assert not b.allow(0.4)


def test_slow_acks_count_as_failures():
    b = brk(window=4, min_calls=4, error_rate=0.5, slow_s=1.0)
    for t in range(3):
        b.success(float(t), latency_s=0.1)
    b.success(3.0, latency_s=2.0)
    assert b.state == CLOSED
    b.success(4.0, latency_s=2.5)
    assert b.state == OPEN and b.counters["slow"] == 2


def test_half_open_single_probe_backoff_doubles_then_closes():
    b = brk(backoff_s=1.0, backoff_max_s=3.0)
    b.trip(10.0, "link_down")
    assert b.state == OPEN and b.retry_in(10.0) == pytest.approx(1.0)
    assert not b.allow(10.9)
    assert b.allow(11.0) and b.state == HALF_OPEN
    assert not b.allow(11.0)  # only one probe in flight
    b.failure(11.5)  # probe failed: backoff 2 s
    assert b.state == OPEN and b.retry_in(11.5) == pytest.approx(2.0)
    assert b.allow(13.5)
    b.failure(13.6)  # backoff 4 s capped at 3 s
    assert b.retry_in(13.6) == pytest.approx(3.0)
    assert b.allow(16.6)
    b.success(16.7, 0.05)
    assert b.state == CLOSED and b.counters["closed"] == 1 and b.counters["probes"] == 3
    assert b.allow(16.8) and b.allow(16.8)  # closed: no limit
    b.trip(20.0, "again")
    assert b.retry_in(20.0) == pytest.approx(1.0)  # backoff reset after recovery


def test_config_validation():
    with pytest.raises(ValueError, match="cloud.breaker"):
        BreakerConfig.from_dict({"error_rate": 0})
    with pytest.raises(ValueError, match="unknown key"):
        BreakerConfig.from_dict({"errors": 1})


def test_relay_keeps_storing_while_open_and_recovers(tmp_path, mosquitto):
    """No broker at first: breaker opens, outbox accepts; broker appears: probe, close, drain."""

    async def main():
        port = mosquitto.port
        mosquitto.stop()
        ob = Outbox(OutboxConfig(path=str(tmp_path / "ob.sqlite"), synchronous="NORMAL"), "gw1")
        link = CloudLink(CloudConfig(host="127.0.0.1", port=port, tls=False, allow_plaintext=True,
                                     client_id="fogline-gw1", reconnect_min_s=0.1, reconnect_max_s=0.3))
        relay = Relay(ob, link, "site1", bandwidth=BandwidthPolicy(BandwidthConfig(initial_mode="high", low_kbps=0.001, high_kbps=0.002)),
                      breaker=Breaker(BreakerConfig(backoff_s=0.2, backoff_max_s=0.5)))
        await relay.start()
        t0 = time.monotonic()  # the failed connects open it: waited for, however slow the host
        while relay.breaker.state != OPEN and time.monotonic() - t0 < 60:
            await asyncio.sleep(0.02)
        assert relay.breaker.state == OPEN and relay.breaker.counters["opened"] == 1
        ids = [relay.submit("alert", {"i": i}) for i in range(20)]
        assert None not in ids and ob.depth()["alert"]["rows"] == 20
        await asyncio.to_thread(mosquitto.start)
        t0 = time.monotonic()
        while ob.depth()["alert"]["rows"] and time.monotonic() - t0 < 15:
            await asyncio.sleep(0.05)
        st = relay.stats()
        await relay.stop()
        return st

    st = asyncio.run(main())
    assert st["outbox"]["depth"]["alert"]["rows"] == 0
    assert st["breaker"]["state"] == CLOSED and st["breaker"]["closed"] >= 1 and st["breaker"]["probes"] >= 1
