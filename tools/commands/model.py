"""`fogline model`: build, inspect, verify and install the gateway's anomaly model."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fogline.gateway.inference import signing as model_sign
from fogline.gateway.inference.registry import (BUNDLED_DIR, ModelError, ModelRegistry, check_manifest, fetch, load_model,
                                     read_manifest, sha256_bytes)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `fogline model {build,info,verify,install}`."""
    p = sub.add_parser("model", help="build, inspect, verify or install the anomaly model")
    msub = p.add_subparsers(dest="model_cmd", metavar="ACTION")
    b = msub.add_parser("build", help="train + export + measure variants (tools/build_model.py)",
                        description="Train the anomaly model on seeded generated data, export the variants "
                                    "(FP32, INT8, pruned, distilled) to ONNX, measure them and write the chosen "
                                    "one with its manifest. Install the result with `fogline model install DIR`.")
    b.add_argument("--quick", action="store_true", help="small data and few epochs: seconds, for a smoke test")
    b.add_argument("--seed", type=int, default=7, help="seed of the generated data and training (default: %(default)s)")
    b.add_argument("--version", type=int, default=1, help="model version in the manifest (default: %(default)s)")
    b.add_argument("--out", default="fogline-data/models/build",
                   help="model dir to write (default: %(default)s; the model shipped in gateway/models is "
                        "only replaced with --out gateway/models --replace-bundled)")
    b.add_argument("--replace-bundled", action="store_true",
                   help="allow --out to be the shipped model dir (maintainers regenerating it)")
    i = msub.add_parser("info", help="show a model dir's manifest summary")
    i.add_argument("dir", nargs="?", default=None, help="model dir (default: registry CURRENT, else bundled)")
    i.add_argument("--data-dir", default="./fogline-data")
    i.add_argument("--json", action="store_true")
    v = msub.add_parser("verify", help="check hashes and load the model with onnxruntime")
    v.add_argument("dir", nargs="?", default=str(BUNDLED_DIR))
    n = msub.add_parser("install", help="verify and install a signed model (dir, manifest path or URL) as CURRENT")
    n.add_argument("source")
    n.add_argument("--data-dir", default="./fogline-data")
    n.add_argument("--key", action="append", default=[], help="trusted model-signing public key (PEM; repeatable)")
    n.add_argument("--allow-unsigned", action="store_true", help="install a model no trusted key signed")
    k = msub.add_parser("keygen", help="make an Ed25519 model-signing key (<out>/model-signing.key/.pub)")
    k.add_argument("--out", default="fogline-data/model-keys")
    s = msub.add_parser("sign", help="sign a model dir's manifest with a model-signing key")
    s.add_argument("dir")
    s.add_argument("--key", required=True, help="private key (PEM) from `fogline model keygen`")
    return p


def _pick_dir(args: argparse.Namespace) -> Path:
    if args.dir:
        return Path(args.dir)
    cur = ModelRegistry(Path(args.data_dir) / "models").current_dir()
    return cur or BUNDLED_DIR


def run(args: argparse.Namespace) -> int:
    """Dispatch the model action; 0 ok, 1 refused/failed, 2 usage."""
    cmd = getattr(args, "model_cmd", None)
    try:
        if cmd == "build":
            from fogline.tools import build_model
            if Path(args.out).resolve() == BUNDLED_DIR.resolve() and not args.replace_bundled:
                print(f"fogline model build: --out {args.out} is the shipped model; pass --replace-bundled to "
                      "overwrite it, or another --out", file=sys.stderr)
                return 2
            argv = ["--seed", str(args.seed), "--version", str(args.version), "--out", args.out]
            return build_model.main(argv + (["--quick"] if args.quick else []))
        if cmd == "info":
            d = _pick_dir(args)
            man = read_manifest(d)
            if args.json:
                print(json.dumps(man, indent=1))
                return 0
            ev = man.get("eval", {})
            print(f"dir        {d}")
            print(f"model      {man['name']}@v{man['version']} ({man.get('variant')}) file {man['file']}")
            print(f"sha256     {man['sha256']}")
            print(f"input      {man['input']['name']} [N, {len(man['input']['features'])}] float32; "
                  f"metrics {', '.join(man['features']['metrics'])}; window {man['features'].get('window_s')} s")
            print(f"threshold  {man['threshold']}  confidence_min {man.get('confidence_min')}")
            if ev:
                print(f"test       {json.dumps(ev.get('test'))}")
                print(f"latency_us {json.dumps(ev.get('latency_us'))}")
            return 0
        if cmd == "verify":
            d = Path(args.dir)
            m = load_model(d)
            bad = 0
            for alt in m.manifest.get("alternates", []):
                f = d / alt["file"]
                ok = f.is_file() and sha256_bytes(f.read_bytes()) == alt["sha256"]
                bad += not ok
                print(f"alternate {alt['file']}: {'ok' if ok else 'HASH MISMATCH OR MISSING'}")
            print(f"ok: {m.ident} {m.manifest['file']} sha256 {m.manifest['sha256'][:16]}.. "
                  f"{m.n_features} features" if not bad else "alternates failed")
            return 1 if bad else 0
        if cmd == "keygen":
            priv, pub = model_sign.keygen(args.out)
            print(f"wrote {priv} (keep it off the gateway) and {pub} (list it in [inference] model_keys)")
            return 0
        if cmd == "sign":
            d = Path(args.dir)
            load_model(d)  # never sign something that does not verify
            man = model_sign.sign(read_manifest(d), model_sign.load_private(args.key))
            (d / "manifest.json").write_text(json.dumps(man, indent=1) + "\n")
            print(f"signed {man['name']}@v{man['version']} with key {man['signature']['key']}")
            return 0
        if cmd == "install":
            reg = ModelRegistry(Path(args.data_dir) / "models")
            man, data = fetch(args.source)
            check_manifest(man)
            model_sign.verify(man, model_sign.load_public(args.key), not args.allow_unsigned)
            d = reg.install(man, data)
            reg.activate(d)
            print(f"installed {man['name']}@v{man['version']} -> {d} (CURRENT)")
            return 0
    except ModelError as e:
        print(f"model refused: {e}", file=sys.stderr)
        return 1
    print("usage: fogline model {build,info,verify,install,keygen,sign} ...", file=sys.stderr)
    return 2
