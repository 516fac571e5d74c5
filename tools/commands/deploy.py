"""`fogline deploy`: precompile the firmware with mpy-cross, copy it to a board with mpremote, verify, reset
(or, with --runtime circuitpython --drive PATH, copy .py sources to a CIRCUITPY drive and verify)."""

from __future__ import annotations

import argparse


def add_parser(sub) -> argparse.ArgumentParser:
    """Register `fogline deploy`."""
    from fogline.tools import deploy

    p = sub.add_parser("deploy", help="flash the node firmware to a board (or a virtual board) with mpremote, "
                                      "or copy it to a CircuitPython CIRCUITPY drive (--runtime circuitpython)",
                       description=deploy.__doc__)
    deploy.add_arguments(p)
    return p


def run(args: argparse.Namespace) -> int:
    """Deploy and print a JSON report."""
    from fogline.tools import deploy

    return deploy.run(args)
