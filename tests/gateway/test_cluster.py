"""Cluster, pure parts: node -> (primary, standby) assignment, load classes, relay lease rules, message decoding."""

from __future__ import annotations

import collections

import pytest

from fogline.gateway import config as config_mod
from fogline.gateway.cluster.core import (ClusterConfig, GatewayView, assign, decode_health, decode_lease, load_class,
                             may_take_lease, must_yield_lease, rank, rendezvous)

NODES = [f"n{i}" for i in range(200)]


def mqtt_view(*gws: str, load: dict[str, int] | None = None) -> dict[str, GatewayView]:
    return {g: GatewayView({n: 0.0 for n in NODES}, (load or {}).get(g, 0)) for g in gws}


def test_spread_over_equal_gateways():
    a = assign(mqtt_view("gw1", "gw2", "gw3"))
    counts = collections.Counter(p for p, _ in a.values())
    assert set(counts) == {"gw1", "gw2", "gw3"}
    assert all(40 <= c <= 95 for c in counts.values()), counts  # ~67 each
    assert all(s is not None and s != p for p, s in a.values())


def test_same_view_same_assignment_whatever_the_order():
    v = mqtt_view("gw1", "gw2", "gw3")
    rev = dict(reversed(list(v.items())))
    assert assign(v) == assign(rev)


def test_takeover_when_primary_dies_moves_only_its_nodes_to_their_standby():
    before = assign(mqtt_view("gw1", "gw2", "gw3"))
    after = assign(mqtt_view("gw2", "gw3"))
    for n, (p, s) in before.items():
        if p == "gw1":
            assert after[n][0] == s, (n, before[n], after[n])  # the standby takes over
        else:
            assert after[n][0] == p, (n, before[n], after[n])  # nobody else moves


def test_returning_gateway_gets_exactly_its_nodes_back():
    assert assign(mqtt_view("gw1", "gw2")) == assign(mqtt_view("gw2", "gw1"))
    a2 = assign(mqtt_view("gw1", "gw2"))
    a1 = assign(mqtt_view("gw2"))
    assert all(p == "gw2" and s is None for p, s in a1.values())
    assert sum(p == "gw1" for p, _ in a2.values()) > 60


def test_link_quality_wins_then_load():
    v = {"near": GatewayView({"ble1": -55.0}), "far": GatewayView({"ble1": -85.0})}
    assert rank("ble1", v) == ["near", "far"]
    # heavy load (3 classes, 1 bucket each by default) outweighs a 1-bucket quality edge only
    v = {"a": GatewayView({"x": -60.0}, load=3), "b": GatewayView({"x": -66.0}, load=0)}
    assert rank("x", v)[0] == "b"
    v = {"a": GatewayView({"x": -60.0}, load=0), "b": GatewayView({"x": -90.0}, load=0)}
    assert rank("x", v)[0] == "a"
    # a gateway that does not hear a node is never its primary while one that does is live
    v = {"a": GatewayView({"x": -90.0}), "b": GatewayView({"y": 0.0})}
    assert assign(v)["x"] == ("a", None)


def test_load_moves_mqtt_nodes_to_the_idle_gateway():
    a = assign(mqtt_view("gw1", "gw2", load={"gw1": 2}))
    assert all(p == "gw2" for p, _ in a.values())


def test_rssi_jitter_within_a_bucket_does_not_move_nodes():
    cfg = ClusterConfig()
    for jitter in (-2.0, 0.0, 2.0):
        v = {"a": GatewayView({"x": -70.0 + jitter}), "b": GatewayView({"x": -70.0})}
        assert rank("x", v, cfg)[0] == rank("x", {"a": GatewayView({"x": -70.0}), "b": GatewayView({"x": -70.0})},
                                            cfg)[0]


def test_unlisted_node_goes_to_the_rendezvous_winner():
    v = mqtt_view("gw1", "gw2")
    r = rank("brand-new", v)
    assert r[0] == max(("gw1", "gw2"), key=lambda g: rendezvous("brand-new", g))


def test_load_class_hysteresis():
    assert load_class(10, None, 25, 5) == 0
    assert load_class(27, 0, 25, 5) == 0      # just past the boundary: keep
    assert load_class(31, 0, 25, 5) == 1
    assert load_class(22, 1, 25, 5) == 1      # just below: keep
    assert load_class(19, 1, 25, 5) == 0
    assert load_class(90, 0, 25, 5) == 3


def test_no_double_lease():
    now = 100.0
    # only the primary takes it, and only when no live peer holds an unexpired one
    assert may_take_lease("x", "gw2", "gw2", {}, now)
    assert not may_take_lease("x", "gw2", "gw1", {}, now)
    assert not may_take_lease("x", "gw2", "gw2", {"gw1": now + 1}, now)
    assert may_take_lease("x", "gw2", "gw2", {"gw1": now - 0.01}, now)   # expired
    assert may_take_lease("x", "gw2", "gw2", {"gw2": now + 5}, now)      # our own renewal
    # views differed and both took it: exactly one keeps it
    assert must_yield_lease("x", "gw2", {"gw1": now + 3}, now)
    assert not must_yield_lease("x", "gw1", {"gw2": now + 3}, now)


def test_every_node_has_exactly_one_lease_holder_through_a_failover():
    """Simulate three gateways taking/yielding leases by the rules over membership changes."""
    holders: dict[str, dict[str, float]] = {g: {} for g in ("gw1", "gw2", "gw3")}
    live = {"gw1", "gw2", "gw3"}
    lease_s = 5.0

    def step(now: float) -> None:
        view = mqtt_view(*sorted(live))
        a = assign(view)
        for g in sorted(live):
            for n in NODES:
                peers = {h: holders[h][n] for h in live if h != g and n in holders[h]}
                if n in holders[g] and (a[n][0] != g or must_yield_lease(n, g, peers, now)):
                    del holders[g][n]
                elif n not in holders[g] and may_take_lease(n, g, a[n][0], peers, now):
                    holders[g][n] = now + lease_s
                elif n in holders[g]:
                    holders[g][n] = now + lease_s

    t = 0.0
    for _ in range(3):
        step(t)
        t += 1
    live.discard("gw1")  # kill -9: its leases stop counting at once
    for _ in range(2):
        step(t)
        t += 1
    live.add("gw1")      # back: its old leases were dropped with it
    holders["gw1"] = {}
    for _ in range(4):
        step(t)
        t += 1
    for n in NODES:
        h = [g for g in live if n in holders[g] and holders[g][n] > t - 1]
        assert len(h) == 1, (n, h)


def test_decode_health_and_lease():
    alive, view, acks = decode_health({"gw": "g", "alive": True, "load": 1, "nodes": {"a": 0.0, "b": -70},
                                       "acks": {"a": {"up": 5, "alert": 2, "junk": "x"}}, "cpu_pct": 3.0})
    assert alive and view.load == 1 and view.nodes == {"a": 0.0, "b": -70.0} and acks == {"a": {"up": 5, "alert": 2}}
    assert decode_health({"gw": "g", "alive": False})[0] is False
    for bad in ({}, [], {"alive": "yes"}, {"alive": True, "nodes": []}, {"alive": True, "load": "x"}):
        with pytest.raises(ValueError):
            decode_health(bad)
    # sender clock 1000 s ahead: the lease still lasts 5 s on the receiver's clock
    got = decode_lease({"ts": 2000.0, "leases": {"a": 2005.0}}, rx=50.0)
    assert got == {"a": 55.0}
    with pytest.raises(ValueError):
        decode_lease({"leases": {}}, 0.0)


def test_config_section_defaults_and_validation():
    cfg = config_mod.load(None)
    c = cfg.section("cluster")
    assert isinstance(c, ClusterConfig) and c.enabled is False and c.heartbeat_s == 1.0
    with pytest.raises(config_mod.ConfigError):
        config_mod.from_dict({"cluster": {"heartbeat_s": 2.0, "dead_after_s": 1.0}})
    with pytest.raises(config_mod.ConfigError):
        config_mod.from_dict({"cluster": {"bogus": 1}})
    assert "[cluster]" in config_mod.example_toml()


def test_lease_book_handoff_yield_and_dead_peers():
    from fogline.gateway.cluster.lease import LeaseBook

    cfg = ClusterConfig(lease_s=5.0, handoff_s=2.0)
    me = LeaseBook("gw2", cfg)
    prim = {"x": "gw2", "y": "gw2"}
    me.on_peer("gw1", {"ts": 1000.0, "leases": {"y": 1004.0}}, rx=10.0)  # gw1 holds y until local 14.0
    me.update(10.0, {"x", "y"}, prim.get, live={"gw1", "gw2"})
    assert set(me.mine) == {"x"}                       # y: a live peer still holds it
    me.update(10.5, {"x", "y"}, prim.get, live={"gw2"})  # gw1 died: its lease no longer counts
    assert set(me.mine) == {"x", "y"}
    assert me.payload(10.5) and me.held("x", 11.0) and not me.held("x", 16.0)  # valid until renewed
    prim["x"] = "gw3"                                  # x moves away: kept handoff_s, then released
    me.update(11.0, {"y"}, prim.get, live={"gw2", "gw3"})
    assert "x" in me.mine
    me.update(13.1, {"y"}, prim.get, live={"gw2", "gw3"})
    assert "x" not in me.mine and me.counters["lease_released"] == 1
    me.on_peer("gw1", {"ts": 2000.0, "leases": {"y": 2005.0}}, rx=14.0)  # both took y (views differed)
    me.update(14.1, {"y"}, prim.get, live={"gw1", "gw2"})
    assert "y" not in me.mine and me.counters["lease_yielded"] == 1  # the lower id keeps it


def test_held_messages_are_bounded_pruned_by_hints_and_replayed_in_order():
    import time as _t

    from fogline.gateway.cluster.takeover import Held
    from fogline.gateway.ingest.validate import Message, Reading

    def msg(lane: str, first: int, n: int = 2) -> Message:
        rs = [Reading("x", lane, first + i, "t", "Cel", 1.0, _t.time()) for i in range(n)]
        return Message("x", lane, first, rs)

    h = Held(per_node=3)
    for first in (1, 3, 5, 7):
        h.hold(msg("up", first))
    h.hold(msg("alert", 1, 1))
    h.hold(Message("x", "ble", 0, []))                 # BLE adverts are not held: the primary hears them too
    assert h.dropped == 2 and h.count() == 3           # per-node bound: the oldest went (the node re-sends)
    assert h.hint("x", "up", 6) and not h.hint("x", "up", 5)
    assert [(m.lane, m.first_seq) for m in h.take("x")] == [("alert", 1), ("up", 7)]
    assert h.take("x") == [] and h.count() == 0
    h.hold(msg("up", 3))                               # already acked elsewhere: not held
    assert h.count() == 0
