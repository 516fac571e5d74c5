"""`fogline federate`: federated learning rounds across gateways (on demand or on a schedule).

    fogline federate --config gateway.toml --rounds 3            # coordinator (+ member) over MQTT
    fogline federate --config gateway.toml --serve                # member: answer rounds until stopped
    fogline federate --simulate --rounds 10                       # three simulated gateways in-process

Progress is printed one line per step (updates in, aggregation, each gateway's adoption decision).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `fogline federate`."""
    p = sub.add_parser("federate", help="run federated-learning rounds with other gateways")
    p.add_argument("--config", help="gateway TOML ([federation] section; [cloud] broker by default)")
    p.add_argument("--rounds", type=int, default=1, help="rounds to run as coordinator (default 1)")
    p.add_argument("--schedule", action="store_true", help="repeat rounds every federation.schedule_s until stopped")
    p.add_argument("--serve", action="store_true", help="member only: answer rounds until stopped (or --duration)")
    p.add_argument("--duration", type=float, default=0.0, help="stop --serve/--schedule after this many seconds")
    p.add_argument("--broker", help="host:port of the exchange broker (overrides the config)")
    p.add_argument("--simulate", action="store_true", help="three simulated gateways in-process (demo)")
    p.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    p.add_argument("--keygen", metavar="DIR", help="write this gateway's Ed25519 federation key pair to DIR "
                                                   "(federation.key/.pub: signing_key and the peers' peer_public_keys)")
    return p


def _say(s: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {s}", flush=True)


def _simulate(args: argparse.Namespace) -> dict[str, Any]:
    import tempfile

    from fogline.gateway.federation.bus import InProcessBus
    from fogline.gateway.federation.coord import run_round
    from fogline.gateway.federation.core import FederationConfig, load_bytes
    from fogline.tools import fedsim

    cfg = FederationConfig(max_steps=50, expected_updates=len(fedsim.GATEWAYS), round_timeout_s=60, lr=fedsim.WEAK_LR)
    _say("simulate: generating three gateways' local data (nothing of it is published)")
    sites = [fedsim.gateway_data(g, 4, 12, fedsim.TRAIN_SEED) for g in fedsim.GATEWAYS]
    union = fedsim.union_test(2, 8)
    base = fedsim.base_model()
    bus = InProcessBus()
    with tempfile.TemporaryDirectory(prefix="fogline-fed-sim-") as tmp:
        coord, members = fedsim.build(cfg, sites, base, {k: bus for k in [*fedsim.GATEWAYS, "coordinator"]}, Path(tmp))
        rounds = []
        try:
            for r in range(1, max(1, args.rounds) + 1):
                res = run_round(coord, [bus], r, members, progress=_say)
                rounds.append({"round": r, "version": res.version, "seconds": res.seconds, "bytes": res.bytes})
        finally:
            for m in members:
                m.close()
        local = {s.gw: fedsim.f1(fedsim.local_only(base, s, cfg, len(rounds)), union) for s in sites}
        fed = {m.id: fedsim.f1(m.serving, union) for m in members}
    _say(f"base model F1 on the union test mix {fedsim.f1(load_bytes(*base), union):.3f}")
    for g in fed:
        _say(f"{g}: local-only F1 {local[g]:.3f}  federated F1 {fed[g]:.3f}")
    return {"rounds": rounds, "f1_local": local, "f1_federated": fed}


def _setup(cfg_all: Any, args: argparse.Namespace):
    """(fed cfg, bus, member or None, coordinator or None) for this gateway."""
    import numpy as np

    from fogline.gateway.federation import local as fedlocal, wire as fedwire
    from fogline.gateway.inference.decisions import model_topic
    from fogline.gateway.federation.bus import MqttBus
    from fogline.gateway.federation.coord import Coordinator
    from fogline.gateway.federation.core import Lineage, Member, rollout_installer
    from fogline.gateway.inference.registry import BUNDLED_DIR, ModelRegistry, load_model
    from fogline.shared.auth import key_from_hex

    fc = cfg_all.section("federation")
    gw = fc.gateway_id or cfg_all.site.gateway_id
    key: Any = fedwire.load_private(fc.signing_key) if fc.signing_key else key_from_hex(fc.key)
    if key is None:
        raise ValueError("federation.signing_key: set this gateway's Ed25519 key (fogline federate --keygen DIR), "
                         "or federation.key (a shared HMAC key)")
    peers: dict[str, Any] = {g: key_from_hex(h) for g, h in fc.peer_keys.items()}
    peers.update({g: fedwire.load_public(p) for g, p in fc.peer_public_keys.items()})  # they win over HMAC keys
    coord_id = fc.coordinator or gw
    data_dir = cfg_all.data_dir
    inf = cfg_all.section("inference")
    reg_dir = Path(inf.registry_dir)
    reg = ModelRegistry(reg_dir if reg_dir.is_absolute() else data_dir / reg_dir)
    cur = reg.current_dir() or (Path(inf.model_dir) if inf.model_dir else BUNDLED_DIR)
    serving = load_model(cur)
    state = data_dir / fc.state_dir
    start = (serving.manifest, serving.path.read_bytes())
    broker = args.broker or fc.broker
    if broker:
        host, _, port = broker.rpartition(":")
        bus = MqttBus(host or "127.0.0.1", int(port), f"fogline-fed-{gw}")
    else:
        cc = cfg_all.section("cloud")
        bus = MqttBus(cc.host, cc.port, f"fogline-fed-{gw}", cc.username, cc.password, tls=cc.tls, ca_file=cc.ca_file)
    member = coord = None
    if fc.member:
        db = data_dir / cfg_all.store.db_file
        since = time.time() - fc.history_hours * 3600
        data = fedlocal.data_from_store(db, serving, since, inf.window_s, inf.metric_aliases) if db.exists() \
            else fedlocal.LocalData(np.zeros((0, len(serving.manifest["input"]["features"]))), np.zeros(0, np.int8))
        base = Lineage.restore(state / "member") or start
        _say(f"member {gw}: {len(data)} local windows (last {fc.history_hours:g} h), base v{base[0]['version']}")
        keys = {coord_id: key if coord_id == gw else peers.get(coord_id)}
        if keys[coord_id] is None:
            raise ValueError(f"federation.peer_keys: no key for coordinator {coord_id!r}")
        install = rollout_installer(reg, bus.publish, model_topic(cfg_all.site.id))
        member = Member(fc, gw, key, keys, data, base, bus, install=install,
                        serving=(serving.manifest, serving.path.read_bytes()), state_dir=state / "member")
    if coord_id == gw and not args.serve:
        mkeys = dict(peers)
        if fc.member:
            mkeys[gw] = key
        coord = Coordinator(fc, gw, key, mkeys, Lineage.restore(state) or start, bus, state_dir=state)
    return fc, bus, member, coord


def _next_round(state: Path) -> int:
    p = state / "round"
    try:
        return int(p.read_text()) + 1
    except (OSError, ValueError):
        return 1


def run(args: argparse.Namespace) -> int:
    """0 ok, 1 a round failed or was refused, 2 configuration error."""
    if args.keygen:
        from fogline.gateway.inference.registry import ModelError
        from fogline.gateway.inference.signing import keygen
        try:
            priv, pub = keygen(args.keygen, "federation")
        except ModelError as e:
            print(f"fogline federate: {e}", file=sys.stderr)
            return 2
        print(f"wrote {priv} ([federation] signing_key) and {pub} (the others' peer_public_keys)")
        return 0
    if args.simulate:
        out = _simulate(args)
        if args.json:
            print(json.dumps(out))
        return 0
    from fogline.gateway import config as gconfig
    from fogline.gateway.federation.coord import run_round

    try:
        cfg_all = gconfig.load(args.config)
        fc, bus, member, coord = _setup(cfg_all, args)
    except (gconfig.ConfigError, ValueError, OSError) as e:
        print(f"federate: {e}", file=sys.stderr)
        return 2
    if args.schedule and (not fc.enabled or fc.schedule_s <= 0):
        print("federate: --schedule needs federation.enabled = true and federation.schedule_s > 0", file=sys.stderr)
        if member is not None:
            member.close()
        bus.close()
        return 2
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    end = time.monotonic() + args.duration if args.duration else float("inf")
    results = []
    try:
        if coord is None:
            _say("serving rounds (Ctrl-C to stop)")
            while not stop and time.monotonic() < end:
                if not bus.pump_once():
                    time.sleep(0.05)
            return 0
        state = cfg_all.data_dir / fc.state_dir
        n = 0
        while not stop and time.monotonic() < end:
            rnd = _next_round(state)
            res = run_round(coord, [bus], rnd, [member] if member else [], progress=_say)
            state.mkdir(parents=True, exist_ok=True)
            (state / "round").write_text(str(rnd))
            results.append({"round": rnd, "version": res.version, "used": res.used, "refused": res.refused,
                            "seconds": res.seconds, "bytes": res.bytes})
            n += 1
            if not args.schedule and n >= args.rounds:
                break
            if args.schedule:
                wait_until = time.monotonic() + max(fc.schedule_s, 1.0)
                while not stop and time.monotonic() < min(wait_until, end):
                    if member is not None:
                        bus.pump_once()
                    time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    except ConnectionError as e:  # the exchange broker went away mid-round
        print(f"federate: {e}", file=sys.stderr)
        results.append({"round": None, "version": None, "error": str(e)})
    finally:
        if member is not None:
            member.close()
        bus.close()
    if args.json:
        print(json.dumps({"rounds": results}))
    return 0 if results and all(r["version"] is not None for r in results) else 1
