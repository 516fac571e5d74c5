"""`fogline vboard`: a virtual board (MicroPython unix port on a pty, LittleFS flash) for mpremote."""

from __future__ import annotations

import argparse


def add_parser(sub) -> argparse.ArgumentParser:
    """Register `fogline vboard`."""
    from fogline.tools import vboard

    p = sub.add_parser("vboard", help="run a virtual board on a pty that mpremote can connect to",
                       description="Run the MicroPython unix port with the simulated HAL on a pty, its root "
                                   "filesystem a LittleFS image the size of the board's; prints the pty path.")
    vboard.add_arguments(p)
    return p


def run(args: argparse.Namespace) -> int:
    """Run until Ctrl-C."""
    from fogline.tools import vboard

    return vboard.run(args)
