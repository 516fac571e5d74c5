"""`fogline hwcheck`: deploy to a board and run the on-board self-test (tools/hwcheck.py)."""

from __future__ import annotations

import argparse


def add_parser(sub) -> argparse.ArgumentParser:
    """Register `fogline hwcheck`."""
    from fogline.tools import hwcheck

    p = sub.add_parser("hwcheck", help="deploy, then self-test a board: sensors, flash log, CRC, BTHome, MQTT",
                       description=hwcheck.__doc__)
    hwcheck.add_arguments(p)
    return p


def run(args: argparse.Namespace) -> int:
    """Print the pass/fail table; exit 0 only when every check passed."""
    from fogline.tools import hwcheck

    return hwcheck.run(args)
