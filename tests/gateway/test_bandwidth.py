"""Bandwidth: meter, token bucket, mode policy; a throttling TCP proxy at 50 / 500 kbit/s / unthrottled."""

from __future__ import annotations

import asyncio
import collections
import random
import time

import pytest

from fogline.gateway.relay.bandwidth import (HIGH, LOW, MIDDLE, BandwidthConfig, BandwidthPolicy, ThroughputMeter,
                               TokenBucket)
from fogline.gateway.relay.cloud import CloudConfig, CloudLink
from fogline.gateway.relay.outbox import Outbox, OutboxConfig
from fogline.gateway.relay.core import Relay
from harness.cloudkit import CloudSubscriber
from harness.netem import NetEm


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_meter_takes_tightest_lower_bound_of_busy_periods():
    m = ThroughputMeter(window_s=100)
    m.sent(0.0)
    m.acked(100, 0.01)  # 100 B in 10 ms: the link does at least 80 kbit/s
    assert m.kbps() == pytest.approx(80.0)
    m.sent(50.0)  # a long idle gap must not dilute the rate
    m.acked(10_000, 50.1)  # 10 kB in 100 ms: at least 800 kbit/s
    assert m.kbps() == pytest.approx(800.0)
    m.sent(60.0)
    m.sent(60.0)  # two in flight overlap: one busy period
    m.acked(5_000, 60.02)
    m.acked(5_000, 60.04)
    assert m.kbps() == pytest.approx(2000.0)
    assert m.kbps(now=500.0) is None  # all outside the window
    m.sent(501.0)
    m.failed(502.0)
    assert m.kbps(now=502.0) is None and m.inflight == 0
    assert m.saturated(60.1, 1000, 0.05) and not m.saturated(500.0, 1000, 0.05)
    m.sent(600.0)
    m.acked(100, 601.0)  # a small, slow period: a low bound, but no evidence the link is slow
    assert m.kbps(601.0) == pytest.approx(0.8) and not m.saturated(601.0, 100, 0.05)
    assert m.saturated(601.0, 10, 0.05)  # 100 B is 80 ms at 10 kbit/s: evidence enough


def test_policy_modes_with_hysteresis_and_hold():
    clk = Clock()
    p = BandwidthPolicy(BandwidthConfig(low_kbps=100, high_kbps=1000, hold_s=1.0, window_s=1.0, evidence_s=0.001,
                                        initial_mode=MIDDLE), clock=clk)

    def feed(kbps: float) -> str:
        clk.t += 2.0
        p.meter.sent(clk.t)
        clk.t += 0.1
        p.meter.acked(int(kbps * 1000 / 8 * 0.1), clk.t)
        return p.update()

    assert feed(50) == LOW and p.lanes() == ("alert", "anomaly")
    assert feed(110) == LOW  # inside hysteresis band (needs >= 115)
    assert feed(120) == MIDDLE and p.batching() and "raw" not in p.lanes()
    assert feed(5000) == HIGH and p.lanes() == ("alert", "anomaly", "summary", "raw") and not p.batching()
    assert feed(900) == HIGH  # needs < 850 to drop
    assert feed(800) == MIDDLE
    assert p.switches == 4
    with pytest.raises(ValueError, match="low_kbps"):
        BandwidthConfig.from_dict({"low_kbps": 10, "high_kbps": 5})


def test_token_bucket_caps_rate():
    now = [100.0]
    b = TokenBucket(kbps=80, burst_bytes=1000, clock=lambda: now[0])  # 10 kB/s, on an injected clock
    assert b.wait_s(1000) == 0
    b.debit(1000)
    assert b.wait_s(500) == pytest.approx(0.05)
    now[0] += 0.02  # 200 bytes back
    assert b.wait_s(500) == pytest.approx(0.03)
    b.debit(2000)  # alerts may go into debt...
    assert b.wait_s(100) == pytest.approx(0.19)  # ...which later sends pay back
    now[0] += 10  # refills to the burst, never above
    assert b.wait_s(1000) == 0 and b.wait_s(1001) == 0  # more than the burst waits only for a full bucket
    b.debit(1000)
    assert b.wait_s(1000) == pytest.approx(0.1)

    b = TokenBucket(kbps=80, burst_bytes=1000)  # the real clock: take() really waits (a lower bound)
    b.debit(2000)  # 1000 in debt: five takes of 1000 need 6000 bytes of refill, 0.6 s at least

    async def spend():
        t0 = time.monotonic()
        for _ in range(5):
            await b.take(1000)
        return time.monotonic() - t0

    assert asyncio.run(spend()) >= 0.59
    assert TokenBucket(None).wait_s(10**9) == 0


def test_throttled_link_switches_modes_and_alerts_get_through(tmp_path, mosquitto):
    sub = CloudSubscriber(mosquitto.port, None, "x", "y", client_id="cloud-bw").start()
    phases: dict[str, tuple[float, float]] = {}

    async def main():
        proxy = NetEm(mosquitto.port).start()
        proxy.set_mode("throttle", rate=50 * 125)  # 50 kbit/s in bytes/s
        ob = Outbox(OutboxConfig(path=str(tmp_path / "ob.sqlite"), synchronous="NORMAL"), "gw1")
        link = CloudLink(CloudConfig(host="127.0.0.1", port=proxy.port, tls=False, allow_plaintext=True,
                                     client_id="fogline-gw1"))
        bw = BandwidthPolicy(BandwidthConfig(low_kbps=100, high_kbps=1000, hold_s=0.5, window_s=2.0,
                                             probe_s=0.5, linger_s=0.5, initial_mode=MIDDLE))
        relay = Relay(ob, link, "site1", bandwidth=bw)
        await relay.start()
        assert await link.wait_connected(10)
        stop = asyncio.Event()
        submitted = collections.Counter()

        rnd = random.Random(5)

        async def load():
            i = 0
            while not stop.is_set():
                relay.submit("alert", {"i": i, "t": time.monotonic()}, critical=True)
                relay.submit("anomaly", {"i": i, "score": 0.9})
                for j in range(10):  # noisy values: compressed bundles stay near their real size
                    relay.submit("summary", {"i": i, "j": j, "mean": rnd.gauss(21, 2), "min": rnd.gauss(19, 2),
                                             "max": rnd.gauss(23, 2), "sd": rnd.random()})
                for j in range(2):
                    relay.submit("raw", {"i": i, "j": j, "v": [20.0 + k / 100 for k in range(100)]})
                submitted.update(["alert", "anomaly"])
                i += 1
                await asyncio.sleep(0.2)

        async def phase(name: str, kbps: float | None, want: str, linger: float = 1.5) -> None:
            if kbps:
                proxy.set_mode("throttle", rate=kbps * 125)
            else:
                proxy.set_mode("pass")
            t0 = time.monotonic()
            while bw.mode != want and time.monotonic() - t0 < 60:
                await asyncio.sleep(0.05)
            assert bw.mode == want, f"{name}: mode {bw.mode}, measured {bw.meter.kbps(time.monotonic())} kbit/s"
            ts = time.monotonic()
            await asyncio.sleep(linger)
            phases[name] = (ts, time.monotonic())
            assert bw.mode == want, f"{name}: mode left {want} ({bw.mode}, {bw.meter.kbps(time.monotonic())} kbit/s)"

        gen = asyncio.create_task(load())
        await phase("50k", 50, LOW)
        await phase("500k", 500, MIDDLE)
        await phase("unthrottled", None, HIGH)
        stop.set()
        await gen
        t0 = time.monotonic()
        while sum(d["rows"] for d in ob.depth().values()) and time.monotonic() - t0 < 120:
            await asyncio.sleep(0.05)
        st = relay.stats()
        await relay.stop()
        proxy.stop()
        return submitted, st

    submitted, st = asyncio.run(main())
    time.sleep(0.3)
    sub.stop()
    items = sub.snapshot()

    def lanes_in(name: str) -> collections.Counter:
        a, b = phases[name]
        return collections.Counter(i["lane"] for i in items if a <= i["_t"] <= b)

    low, mid, high = lanes_in("50k"), lanes_in("500k"), lanes_in("unthrottled")
    assert low["alert"] > 0 and low["anomaly"] > 0 and low["raw"] == 0
    assert mid["summary"] > 0 and mid["raw"] == 0 and mid["alert"] > 0
    assert high["raw"] > 0 and high["alert"] > 0
    got = collections.Counter(i["lane"] for i in items)
    assert got["alert"] >= submitted["alert"] and got["anomaly"] >= submitted["anomaly"]  # nothing lost
    by_mode = st["bandwidth"]["bytes_by_mode"]
    assert all(by_mode[m] > 0 for m in (LOW, MIDDLE, HIGH)), by_mode
    assert st["relay"]["bundles"] > 0
    print("bytes by mode:", by_mode, "msgs:", st["bandwidth"]["msgs_by_mode"])
    for name in phases:  # reported, not asserted (timing belongs in benchmarks)
        a, b = phases[name]
        lat = sorted((i["_t"] - i["body"]["t"]) * 1000 for i in items if i["lane"] == "alert" and a <= i["_t"] <= b)
        print(f"alert latency {name}: p50 {lat[len(lat) // 2]:.1f} ms, max {lat[-1]:.1f} ms over {len(lat)} alerts")


def test_hard_cap_bounds_bytes_on_the_link_but_not_alerts(tmp_path, mosquitto):
    """cap_kbps = 80 (10 kB/s), burst 2 kB: after ~1 s at most burst + 1 s of cap + one bundle went out."""

    async def main():
        ob = Outbox(OutboxConfig(path=str(tmp_path / "ob.sqlite"), synchronous="NORMAL"), "gw1")
        link = CloudLink(CloudConfig(host="127.0.0.1", port=mosquitto.port, tls=False, allow_plaintext=True,
                                     client_id="fogline-cap"))
        bw = BandwidthPolicy(BandwidthConfig(initial_mode=HIGH, hold_s=1e9, cap_kbps=80, cap_burst_bytes=2000,
                                             bundle_max_bytes=1500))
        relay = Relay(ob, link, "site1", bandwidth=bw)
        await relay.start()
        assert await link.wait_connected(10)
        rnd = random.Random(2)
        # ~200 kB of incompressible summaries: 20 s of cap, so some are still held back even when a loaded
        # host takes many seconds to get the alerts out
        for i in range(1000):
            relay.submit("summary", {"i": i, "blob": rnd.randbytes(200)})
        t0 = time.monotonic()
        await asyncio.sleep(1.0)
        for i in range(20):
            relay.submit("alert", {"i": i})  # alerts never wait for tokens
        t_alert = time.monotonic()
        while ob.depth()["alert"]["rows"] and time.monotonic() - t_alert < 120:  # generous: slow, not wrong
            await asyncio.sleep(0.01)
        elapsed = time.monotonic() - t0
        st = relay.stats()
        await relay.stop()
        return st, elapsed

    st, elapsed = asyncio.run(main())
    sent = st["bandwidth"]["acked_bytes"]
    assert st["outbox"]["depth"]["alert"]["rows"] == 0
    assert sent <= 2000 + 10_000 * elapsed + 1600 + 20 * 200, (sent, elapsed)  # cap holds (alerts on top)
    assert st["outbox"]["depth"]["summary"]["rows"] > 0  # the cap really held data back
