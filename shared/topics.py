"""MQTT topic names: build and parse, one definition for both sides (README "Wire format")."""

ROOT = "fogline"
NODE_KINDS = ("up", "alert", "ack", "config", "state")
CLOUD_KINDS = ("summary", "anomaly", "alert", "raw", "model", "twin")  # model, twin: cloud -> gateway
_ALLOWED = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
MAX_ID = 64
# Largest signed config push (the whole `config` payload) a node takes: its default MQTT packet buffer.
# The gateway's twin refuses larger pushes, so a node never sees one it must reject for size.
# Here rather than in shared/config.py so the node's config link does not keep the validator in RAM.
MAX_PUSH_BYTES = 3072
GATEWAY_KINDS = ("health", "lease", "placement")  # gateway <-> gateway on the site broker
_GW = "_gw"  # 5-level topics: node filters fogline/<site>/+/<kind> never match them


def check_id(s, what="id"):
    """Return s if it is a valid site or node id, else raise ValueError."""
    if not isinstance(s, str) or not s or len(s) > MAX_ID:
        raise ValueError("topics: %s must be 1..%d characters" % (what, MAX_ID))
    for c in s:
        if c not in _ALLOWED:
            raise ValueError("topics: %s %r has a character outside [A-Za-z0-9_-]" % (what, s))
    return s


def node(site, node_id, kind):
    """Topic of a node-level message, e.g. fogline/site/node1/up."""
    if kind not in NODE_KINDS:
        raise ValueError("topics: unknown node topic kind %r" % (kind,))
    return "%s/%s/%s/%s" % (ROOT, check_id(site, "site"), check_id(node_id, "node"), kind)


def cloud(site, kind):
    """Topic of a gateway-to-cloud message, e.g. fogline/site/summary."""
    if kind not in CLOUD_KINDS:
        raise ValueError("topics: unknown cloud topic kind %r" % (kind,))
    return "%s/%s/%s" % (ROOT, check_id(site, "site"), kind)


def node_filter(site, kind):
    """Subscription filter for one kind from every node of a site."""
    if kind not in NODE_KINDS:
        raise ValueError("topics: unknown node topic kind %r" % (kind,))
    return "%s/%s/+/%s" % (ROOT, check_id(site, "site"), kind)


def parse_node(topic):
    """Return (site, node, kind) of a node topic; ValueError if it has another shape."""
    parts = topic.split("/")
    if len(parts) != 4 or parts[0] != ROOT or parts[3] not in NODE_KINDS:
        raise ValueError("topics: not a node topic: %r" % (topic,))
    return check_id(parts[1], "site"), check_id(parts[2], "node"), parts[3]


def parse_cloud(topic):
    """Return (site, kind) of a cloud topic; ValueError if it has another shape."""
    parts = topic.split("/")
    if len(parts) != 3 or parts[0] != ROOT or parts[2] not in CLOUD_KINDS:
        raise ValueError("topics: not a cloud topic: %r" % (topic,))
    return check_id(parts[1], "site"), parts[2]


def gateway(site, gw_id, kind):
    """Topic of a gateway-level message, e.g. fogline/site/_gw/gw1/health."""
    if kind not in GATEWAY_KINDS:
        raise ValueError("topics: unknown gateway topic kind %r" % (kind,))
    return "%s/%s/%s/%s/%s" % (ROOT, check_id(site, "site"), _GW, check_id(gw_id, "gateway"), kind)


def gateway_filter(site, kind):
    """Subscription filter for one kind from every gateway of a site."""
    if kind not in GATEWAY_KINDS:
        raise ValueError("topics: unknown gateway topic kind %r" % (kind,))
    return "%s/%s/%s/+/%s" % (ROOT, check_id(site, "site"), _GW, kind)


def parse_gateway(topic):
    """Return (site, gateway id, kind) of a gateway topic; ValueError if it has another shape."""
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != ROOT or parts[2] != _GW or parts[4] not in GATEWAY_KINDS:
        raise ValueError("topics: not a gateway topic: %r" % (topic,))
    return check_id(parts[1], "site"), check_id(parts[3], "gateway"), parts[4]
