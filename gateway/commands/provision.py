"""`fogline provision`: per-node credentials, keys, mosquitto password file and ACL for a site."""

from __future__ import annotations

import argparse
import json
import sys


def _node_list(args: argparse.Namespace) -> list[str]:
    nodes = list(args.nodes)
    if args.count:
        nodes += [f"{args.prefix}{i}" for i in range(1, args.count + 1)]
    seen: dict[str, None] = dict.fromkeys(nodes)
    return list(seen)


def add_parser(sub) -> argparse.ArgumentParser:
    """Register `fogline provision`."""
    p = sub.add_parser(
        "provision", help="generate node credentials, keys and the mosquitto ACL for a site",
        description="Create (or update) per-node MQTT users, HMAC auth keys and BTHome bind keys, a mosquitto "
                    "password file + ACL (each node only its own topics), per-node site configs for "
                    "`fogline deploy` and the gateway keys file. Re-running keeps existing secrets unless --rotate.")
    p.add_argument("nodes", nargs="*", help="node ids (letters, digits, _ and -)")
    p.add_argument("--site", required=True, help="site id")
    p.add_argument("--out", default="fogline-data/provision", help="output dir (default: %(default)s)")
    p.add_argument("--count", type=int, default=0, help="also add nodes PREFIX1..PREFIXN")
    p.add_argument("--prefix", default="node", help="prefix for --count (default: %(default)s)")
    p.add_argument("--gateway-user", default="gateway", help="gateway MQTT user (default: %(default)s)")
    p.add_argument("--broker-host", default="127.0.0.1",
                   help="the broker's LAN address written into node configs and the broker cert "
                        "(default %(default)s only suits virtual boards)")
    p.add_argument("--broker-port", type=int, default=1883,
                   help="the nodes' broker port (LAN listener, default: %(default)s)")
    p.add_argument("--gateway-port", type=int, default=1884,
                   help="the gateway's loopback listener (default: %(default)s)")
    p.add_argument("--tls-port", type=int, default=8883, help="TLS listener with --certs (default: %(default)s)")
    p.add_argument("--max-packet-size", type=int, default=65536,
                   help="largest MQTT packet the broker accepts, bytes (default: %(default)s)")
    p.add_argument("--wifi-ssid", default="CHANGE-ME", help="Wi-Fi SSID for node configs (default: a placeholder)")
    p.add_argument("--wifi-password", default="CHANGE-ME",
                   help="Wi-Fi password for node configs (default: a placeholder)")
    p.add_argument("--certs", action="store_true", help="also create a site CA and per-node client certificates")
    p.add_argument("--cert-days", type=int, default=3650, help="certificate validity (default: %(default)s)")
    p.add_argument("--rotate", action="store_true", help="new secrets for the listed nodes and the gateway user")
    p.add_argument("--rotate-ca", action="store_true", help="new site CA (reissues every certificate)")
    p.add_argument("--json", action="store_true", help="print the result as JSON (paths only, no secrets)")
    return p


def run(args: argparse.Namespace) -> int:
    """Provision and print where everything went (never the secrets)."""
    from fogline.gateway.ops.provision import provision

    try:
        res = provision(args.out, args.site, _node_list(args), gateway_user=args.gateway_user,
                        rotate=args.rotate, broker_host=args.broker_host, broker_port=args.broker_port,
                        wifi_ssid=args.wifi_ssid, wifi_password=args.wifi_password, certs=args.certs,
                        rotate_ca=args.rotate_ca, cert_days=args.cert_days, gateway_port=args.gateway_port,
                        tls_port=args.tls_port, max_packet_size=args.max_packet_size)
    except ValueError as e:
        print(f"fogline provision: {e}", file=sys.stderr)
        return 2
    problems = _problems(res)
    summary = {"site": res.site, "out": str(res.out_dir), "nodes": res.nodes, "created": res.created,
               "rotated": res.rotated, "files": {k: str(v) for k, v in sorted(res.files.items())},
               "gateway_password": f"{res.files['gateway_toml']} [mqtt] password", "problems": problems}
    for msg in sorted({p for ps in problems.values() for p in ps}):
        nodes = [n for n, ps in problems.items() if msg in ps]
        print(f"WARNING fogline provision: {msg} (nodes: {', '.join(nodes)}); real boards will not connect",
              file=sys.stderr)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"site {res.site}: {len(res.nodes)} node(s) in {res.out_dir} "
          f"(new: {', '.join(res.created) or '-'}; rotated: {', '.join(res.rotated) or '-'})")
    print(f"  mosquitto: {res.out_dir / 'mosquitto'}/ mirrors /etc/mosquitto (conf.d/fogline.conf; passwd, acl"
          f"{', certs' if args.certs else ''} in fogline/): install it as the README says")
    print(f"  gateway: {res.files['gateway_toml']} holds the gateway's MQTT user and password ([mqtt], loopback "
          f"port {args.gateway_port}) and the keys file; install it 0600 as /etc/fogline/gateway.toml")
    print(f"  gateway keys: {res.files['gateway_keys']}")
    print(f"  node configs: {res.out_dir / 'nodes'}/<node>.json (fill in Wi-Fi, then `fogline deploy`)")
    return 0


def _problems(res) -> dict[str, list[str]]:
    """node -> what stops its config from working on a real board."""
    from fogline.gateway.ops.provision_broker import node_config_problems

    out = {}
    for n in res.nodes:
        ps = node_config_problems(json.loads(res.files[f"node:{n}"].read_text()))
        if ps:
            out[n] = ps
    return out
