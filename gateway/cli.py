"""`fogline` command: one subcommand per module, each with add_parser(sub) and run(args)."""

from __future__ import annotations

import argparse
import importlib
import sys

from gateway import __version__

# (subcommand, module) in help order; a module provides add_parser(subparsers) and run(args) -> int.
SUBCOMMANDS = [
    ("demo", "gateway.commands.demo"),
    ("gateway", "gateway.commands.serve"),
    ("status", "gateway.commands.status"),
    ("devices", "gateway.commands.devices"),
    ("query", "gateway.commands.query"),
    ("vboard", "gateway.commands.vboard"),
    ("deploy", "gateway.commands.deploy"),
    ("hwcheck", "gateway.commands.hwcheck"),
    ("provision", "gateway.commands.provision"),
    ("model", "gateway.commands.model"),
    ("federate", "gateway.commands.federate"),
    ("placement", "gateway.commands.placement"),
    ("cloud", "gateway.commands.cloud"),
]


def build_parser() -> argparse.ArgumentParser:
    """Parser with every available subcommand registered."""
    p = argparse.ArgumentParser(prog="fogline", description="Fogline fog gateway and tools")
    p.add_argument("--version", action="version", version=f"fogline {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, modname in SUBCOMMANDS:
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as e:
            if e.name == modname:
                continue  # subcommand not built yet
            raise
        sp = mod.add_parser(sub)
        sp.set_defaults(_run=mod.run)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `fogline` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
