"""`fogline` command: one subcommand per module, each with add_parser(sub) and run(args)."""

from __future__ import annotations

import argparse
import importlib
import sys

from fogline.gateway import __version__

# (subcommand, module) in help order; a module provides add_parser(subparsers) and run(args) -> int.
SUBCOMMANDS = [
    ("demo", "fogline.tools.commands.demo"),
    ("gateway", "fogline.gateway.commands.serve"),
    ("status", "fogline.gateway.commands.status"),
    ("devices", "fogline.gateway.commands.devices"),
    ("query", "fogline.gateway.commands.query"),
    ("vboard", "fogline.tools.commands.vboard"),
    ("deploy", "fogline.tools.commands.deploy"),
    ("hwcheck", "fogline.tools.commands.hwcheck"),
    ("provision", "fogline.gateway.commands.provision"),
    ("model", "fogline.tools.commands.model"),
    ("federate", "fogline.tools.commands.federate"),
    ("placement", "fogline.gateway.commands.placement"),
    ("cloud", "fogline.gateway.commands.cloud"),
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
