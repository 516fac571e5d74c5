"""Federation exchange over a real mosquitto: three gateways and a coordinator, each on its own connection."""

from __future__ import annotations

import json
import time

import cbor2
import numpy as np

from fogline.gateway.federation import wire as fedwire
from fogline.gateway.federation.bus import MqttBus
from fogline.gateway.federation.coord import run_round
from fogline.gateway.federation.core import FederationConfig
from fogline.gateway.inference.registry import ModelRegistry
from fogline.tools import fedsim


def test_rounds_over_mosquitto(mosquitto, tmp_path):
    sites = [fedsim.gateway_data(g, 2, 6, fedsim.TRAIN_SEED) for g in fedsim.GATEWAYS]
    base = fedsim.base_model()
    cfg = FederationConfig(max_steps=30, expected_updates=3, round_timeout_s=20, lr=0.002)
    ids = [*fedsim.GATEWAYS, "coordinator"]
    buses = {i: MqttBus("127.0.0.1", mosquitto.port, f"fed-{i}") for i in ids}
    spy = MqttBus("127.0.0.1", mosquitto.port, "fed-spy")
    seen: list[tuple[str, bytes]] = []
    spy.subscribe("fogline/fed/#", lambda t, p: seen.append((t, p)))
    coord, members = fedsim.build(cfg, sites, base, buses, tmp_path)
    try:
        results = [run_round(coord, list(buses.values()), r) for r in (1, 2)]
        # a forged update (gw-hot's name, wrong key) sent through the broker in round 3 is refused
        coord.start_round(3)
        bad = fedwire.seal(b"an attacker's key, not gw-hot's!", "gw-hot", "update",
                           {"round": 3, "gw": "gw-hot", "base": 3, "base_sha": coord.lineage.sha, "n": 5,
                            "steps": 1, "tensors": fedwire.pack_tensors([np.zeros(s) for s in coord.lineage.shapes])})
        spy.publish("fogline/fed/3/update/gw-hot", bad)
        for _ in range(400):
            for b in [*buses.values(), spy]:
                b.pump_once()
            if "gw-hot" in coord.round.refused and any(t == "fogline/fed/3/model" for t, _ in seen):
                break
            time.sleep(0.01)
    finally:
        for m in members:
            m.close()
        for b in [*buses.values(), spy]:
            b.close()
    assert [r.version for r in results] == [2, 3]
    for r in results:
        assert r.used == sorted(fedsim.GATEWAYS) and set(r.results) == set(fedsim.GATEWAYS) and r.bytes > 0
    assert "bad tag" in coord.round.refused["gw-hot"] and len(coord.updates) == 3  # the real gw-hot update got in
    for m in members:
        adopted = [res["version"] for res in m.results.values() if res["adopted"]]
        cur = ModelRegistry(tmp_path / m.id).current_dir()
        if adopted:
            assert json.loads((cur / "manifest.json").read_text())["version"] == max(adopted)
        else:
            assert cur is None
    # everything the broker carried: signed envelopes of the four kinds, no window values inside
    kinds = [fedwire.parse_topic("fogline/fed", t)[1] for t, _ in seen]
    # rounds 1-3 (round 3 aggregated the three real updates; the forged one is the 10th update seen)
    assert kinds.count("start") == 3 and kinds.count("update") == 10 and kinds.count("model") == 3
    assert kinds.count("result") >= 6
    private = fedsim.private_triples([s.stats.reshape(-1, 6) for s in sites] + [s.data.X for s in sites])
    for t, p in seen:
        env = cbor2.loads(p)
        assert set(env) == {"body", "by", "tag"}
        assert not fedsim.leaked(p, private), t


def _store_with_windows(db, hours: int = 6) -> int:
    """An ingest SQLite store (fogline.gateway.store.core schema) holding two simulated nodes' 60 s windows."""
    import sqlite3

    from fogline.gateway.store import core as store
    from fogline.tools import datagen

    con = sqlite3.connect(db)
    con.executescript(store.SCHEMA)
    n = 0
    for k in range(2):
        p = datagen.gen_node(4242 + k, hours, datagen.TRAIN_MIX)
        con.execute("INSERT INTO nodes(nid, name) VALUES (?, ?)", (k + 1, f"node{k}"))
        for j, m in enumerate(datagen.DEFAULT_METRICS):
            sid = (k + 1) * 10 + j
            con.execute("INSERT INTO series(sid, nid, metric, unit) VALUES (?, ?, ?, ?)", (sid, k + 1, m, None))
            for st, start in zip(p["stats"][:, j, :], p["start"]):
                if np.isfinite(st[0]):
                    con.execute('INSERT INTO windows(sid, length, start, "end", count, min, max, mean, last, stddev) '
                                "VALUES (?,?,?,?,?,?,?,?,?,?)", (sid, 60.0, float(start), float(start) + 60,
                                                                 int(st[0]), *map(float, st[1:])))
                    n += 1
    con.commit()
    con.close()
    return n


def test_federate_command_over_mosquitto(mosquitto, tmp_path, capsys):
    """`fogline federate` as coordinator + member: local data from its store, rounds persist across runs."""
    from fogline.tools.cli import main
    from fogline.gateway.federation.local import data_from_store
    from fogline.gateway.inference.registry import BUNDLED_DIR, load_model

    assert _store_with_windows(tmp_path / "ingest.sqlite") > 1000
    d = data_from_store(tmp_path / "ingest.sqlite", load_model(BUNDLED_DIR), since=0)
    assert len(d) > 500 and 0 < d.y.sum() < len(d)  # pseudo-labelled by the current model's confident calls
    cfg = tmp_path / "gw.toml"
    cfg.write_text(f'[site]\ndata_dir = "{tmp_path}"\ngateway_id = "gw-x"\n[federation]\n'
                   f'key = "{"ab" * 16}"\nexpected_updates = 1\nmin_updates = 1\nmax_steps = 20\n'
                   'history_hours = 100000.0\nround_timeout_s = 20.0\n')
    argv = ["federate", "--config", str(cfg), "--broker", f"127.0.0.1:{mosquitto.port}", "--json"]
    assert main(argv + ["--rounds", "2"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [(r["round"], r["version"], r["used"]) for r in out["rounds"]] == [(1, 2, ["gw-x"]), (2, 3, ["gw-x"])]
    assert main(argv) == 0  # next run continues the lineage: round 3 -> v4
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [(r["round"], r["version"]) for r in out["rounds"]] == [(3, 4)]
    cur = ModelRegistry(tmp_path / "models").current_dir()
    assert cur is None or json.loads((cur / "manifest.json").read_text())["version"] in (2, 3, 4)
    assert main(["federate", "--config", str(tmp_path / "missing.toml")]) == 2
    from harness.broker import free_port
    assert main(["federate", "--config", str(cfg), "--broker", f"127.0.0.1:{free_port()}"]) == 2  # no broker
    assert "federate:" in capsys.readouterr().err


def test_member_process_and_coordinator_process(mosquitto, tmp_path, capsys):
    """A member gateway in its own process (`fogline federate --serve`) and a coordinating gateway."""
    import subprocess
    import sys

    from fogline.tools.cli import main

    kc, km = "c1" * 16, "d2" * 16
    for name, me, key, peer, pkey, extra in (("c", "gw-c", kc, "gw-m", km, "expected_updates = 2\n"),
                                             ("m", "gw-m", km, "gw-c", kc, 'coordinator = "gw-c"\nadopt_margin = 1.0\n')):
        (tmp_path / name).mkdir()
        _store_with_windows(tmp_path / name / "ingest.sqlite", hours=4)
        (tmp_path / f"{name}.toml").write_text(
            f'[site]\ndata_dir = "{tmp_path / name}"\ngateway_id = "{me}"\n[federation]\nkey = "{key}"\n'
            f'peer_keys = {{ {peer} = "{pkey}" }}\nmax_steps = 20\nhistory_hours = 100000.0\n'
            f'round_timeout_s = 20.0\nbroker = "127.0.0.1:{mosquitto.port}"\n{extra}')
    proc = subprocess.Popen([sys.executable, "-m", "fogline.tools.cli", "federate", "--config", str(tmp_path / "m.toml"),
                             "--serve", "--duration", "60"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, cwd=str(__import__("fogline.tools.hostemu").tools.hostemu.REPO))
    try:
        lines = []
        while not any("serving rounds" in ln for ln in lines):
            ln = proc.stdout.readline()
            assert ln, "member exited early:\n" + "".join(lines)
            lines.append(ln)
        # the member's running gateway takes adopted models from fogline/<site>/model (inference download path)
        from fogline.gateway.inference.core import InferenceConfig, InferenceEngine
        # (a member's rollout is not signed with a model-signing key: this gateway opts out of requiring one)
        eng = InferenceEngine(InferenceConfig(registry_dir=str(tmp_path / "svc-models"), require_signed_models=False),
                              data_dir=tmp_path)
        eng.start()
        site = MqttBus("127.0.0.1", mosquitto.port, "svc-m")
        site.subscribe("fogline/site1/model", lambda _t, p: eng.handle_model_message(p))
        assert main(["federate", "--config", str(tmp_path / "c.toml"), "--rounds", "2", "--json"]) == 0
        out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert [(r["version"], r["used"]) for r in out["rounds"]] == [(2, ["gw-c", "gw-m"]), (3, ["gw-c", "gw-m"])]
        deadline = time.monotonic() + 60
        lineage = tmp_path / "m" / "federation" / "member" / "base.json"
        while time.monotonic() < deadline and not (lineage.exists() and json.loads(lineage.read_text())["version"] == 3):
            time.sleep(0.05)
        assert json.loads(lineage.read_text())["version"] == 3  # the member followed both rounds
        while time.monotonic() < deadline and eng.model.manifest["version"] != 3:
            site.pump_once()
            time.sleep(0.05)
        site.close()
        assert eng.model.ident == "fogline-anomaly@v3" and eng.counters["model_rejected"] == 0
        cur = ModelRegistry(tmp_path / "m" / "models").current_dir()  # the member's own registry too
        assert json.loads((cur / "manifest.json").read_text())["version"] == 3
    finally:
        proc.terminate()
        proc.wait(10)


def test_federate_schedule_runs_rounds_until_the_duration(mosquitto, tmp_path, capsys):
    from fogline.tools.cli import main

    _store_with_windows(tmp_path / "ingest.sqlite", hours=3)
    cfg = tmp_path / "gw.toml"
    body = (f'[site]\ndata_dir = "{tmp_path}"\n[federation]\nkey = "{"ef" * 16}"\nexpected_updates = 1\n'
            f'min_updates = 1\nmax_steps = 10\nhistory_hours = 100000.0\nbroker = "127.0.0.1:{mosquitto.port}"\n')
    cfg.write_text(body)
    assert main(["federate", "--config", str(cfg), "--schedule"]) == 2  # not enabled / no schedule_s
    assert "schedule" in capsys.readouterr().err
    cfg.write_text(body + "enabled = true\nschedule_s = 1.0\n")
    assert main(["federate", "--config", str(cfg), "--schedule", "--duration", "2.5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(out["rounds"]) >= 2 and [r["version"] for r in out["rounds"]] == [r["round"] + 1 for r in out["rounds"]]
