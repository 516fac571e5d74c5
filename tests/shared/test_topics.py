# Topic names (shared/topics.py); runs on CPython and MicroPython.
from shared import topics


def test_build_and_parse_node_topics():
    for kind in ("up", "alert", "ack", "config", "state"):
        t = topics.node("site-1", "node_07", kind)
        assert t == "fogline/site-1/node_07/" + kind
        assert topics.parse_node(t) == ("site-1", "node_07", kind)
    assert topics.node_filter("s", "up") == "fogline/s/+/up"


def test_cloud_topics():
    for kind in ("summary", "anomaly", "alert", "raw", "model", "twin"):
        assert topics.parse_cloud(topics.cloud("s", kind)) == ("s", kind)


def test_bad_topics_and_ids_raise_value_error():
    bad_topics = ["fogline/s/n", "fogline/s/n/up/x", "other/s/n/up", "fogline/s/n/nope", "fogline//n/up",
                  "fogline/s/+/up", "fogline/s/#/up", "fogline/s/n\x00/up", "fogline/s/" + "n" * 65 + "/up"]
    for t in bad_topics:
        try:
            topics.parse_node(t)
        except ValueError:
            continue
        raise AssertionError("parsed " + t)
    for bad_id in ("", "a/b", "a+b", "a#", "a b", "x" * 65, None, 5):
        try:
            topics.node("s", bad_id, "up")
        except ValueError:
            continue
        raise AssertionError("accepted id %r" % (bad_id,))
    try:
        topics.node("s", "n", "upp")
        raise AssertionError("accepted kind")
    except ValueError:
        pass


def test_gateway_topics_round_trip_and_stay_apart_from_node_topics():
    for kind in ("health", "lease", "placement"):
        t = topics.gateway("s", "gw-1", kind)
        assert t == "fogline/s/_gw/gw-1/" + kind
        assert topics.parse_gateway(t) == ("s", "gw-1", kind)
        assert topics.gateway_filter("s", kind) == "fogline/s/_gw/+/" + kind
        try:
            topics.parse_node(t)
            raise AssertionError("a gateway topic parsed as a node topic")
        except ValueError:
            pass
    for bad in ("fogline/s/_gw/gw/nope", "fogline/s/gw/gw1/health", "fogline/s/_gw/health", "fogline/s/_gw/a+b/lease"):
        try:
            topics.parse_gateway(bad)
        except ValueError:
            continue
        raise AssertionError("parsed " + bad)
    try:
        topics.gateway("s", "g", "up")
        raise AssertionError("accepted kind")
    except ValueError:
        pass
