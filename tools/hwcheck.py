"""`fogline hwcheck`: deploy the firmware to a board and run an on-board self-test, printed as a table.

Checks on the board (tools/hwcheck_board.py, sent with `mpremote run`): the config and board file load;
every configured sensor reads through the board file's buses; FlashLog appends and syncs; after a torn
write (a power cut mid-append) it reopens with every record intact; the frame CRC-32 matches a vector
computed here and refuses a flipped bit; a BTHome advert is built (encrypted with the configured bind
key); with --broker, an MQTT connect and one QoS 1 pack acknowledged by the broker. Then the board's
free heap and flash. Exit status 0 when every check passed, 1 otherwise, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from fogline.tools import deploy

BOARD_SCRIPT = Path(__file__).resolve().parent / "hwcheck_board.py"


def crc_vector() -> str:
    """The frame of b"123456789" (u16 length, CRC-32 LE over length + body) computed with binascii."""
    import binascii
    import struct
    body = b"123456789"
    lenb = struct.pack("<H", len(body))
    return (lenb + struct.pack("<I", binascii.crc32(body, binascii.crc32(lenb)) & 0xFFFFFFFF) + body).hex()


def parse_broker(s: str | None) -> tuple[str, int] | None:
    """host:port -> (host, port); ValueError if malformed."""
    if not s:
        return None
    host, sep, port = s.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--broker wants host:port, got {s!r}")
    return host, int(port)


def run_on_board(port: str, board: str, broker: tuple[str, int] | None, timeout: float = 180) -> dict:
    """Send the self-test with mpremote run; returns its parsed HWCHECK report."""
    args = {"board": board, "broker": list(broker) if broker else None, "crc_vector": crc_vector()}
    with tempfile.NamedTemporaryFile("w", suffix=".py", prefix="fogline-hwcheck-", delete=False) as f:
        f.write(f"ARGS = {json.dumps(args)}\n" + BOARD_SCRIPT.read_text())
        script = f.name
    try:
        out = deploy._run([*deploy.mpremote_cmd(), "connect", port, "run", script], timeout, "mpremote run")
    finally:
        Path(script).unlink(missing_ok=True)
    for line in reversed(out.splitlines()):
        if line.startswith("HWCHECK "):
            return json.loads(line[8:])
    raise deploy.DeployError("the self-test printed no result:\n" + out[-2000:])


def table(report: dict) -> str:
    """Pass/fail table of the checks plus the board's heap and flash."""
    rows = [f"{'check':<18} {'result':<6} {'ms':>6}  detail"]
    for c in report["checks"]:
        rows.append(f"{c['name']:<18} {'PASS' if c['ok'] else 'FAIL':<6} {c['ms']:>6}  {c['detail']}")
    b = report["board"]

    def kb(n):
        return "?" if n is None else f"{n / 1024:.1f} KiB"
    rows.append(f"board: {b['platform']} MicroPython {b['version']}, {b['word_bits']}-bit, "
                f"{'single' if b['float32'] else 'double'}-precision floats")
    rows.append(f"heap: {kb(b['heap_free'])} free ({b['heap_free']} B), {kb(b['heap_used'])} used;"
                f" flash: {kb(b['flash_free'])} free of {kb(b['flash_total'])}")
    return "\n".join(rows)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `fogline hwcheck`."""
    p.add_argument("--board", default="pico_w", help="board name (boards/<board>.json)")
    p.add_argument("--port", required=True, help="serial port (/dev/ttyACM0) or a virtual board's pty")
    p.add_argument("--broker", default=None, metavar="HOST:PORT", help="also connect and publish one acked pack")
    p.add_argument("--site-config", type=Path, default=None, help="site config (TOML or JSON) deployed first")
    p.add_argument("--no-deploy", action="store_true", help="test the firmware already on the board")
    p.add_argument("--allow-placeholders", action="store_true", help="as for `fogline deploy`")


def run(args: argparse.Namespace) -> int:
    """`fogline hwcheck`: deploy, self-test, print the table and a JSON last line."""
    try:
        broker = parse_broker(args.broker)
    except ValueError as e:
        print(f"hwcheck: {e}", file=sys.stderr)
        return 2
    try:
        dep = None
        if not args.no_deploy:
            dep = deploy.Deployer(args.port, args.board, site_config=args.site_config, reset=False,
                                  allow_placeholders=args.allow_placeholders).run()
        report = run_on_board(args.port, args.board, broker)
    except (deploy.DeployError, OSError, subprocess.SubprocessError) as e:
        print(f"hwcheck: {e}", file=sys.stderr)
        return 1
    print(table(report))
    ok = all(c["ok"] for c in report["checks"])
    summary = {"ok": ok, "board": args.board, "port": args.port, "deployed": dep is not None,
               "passed": sum(c["ok"] for c in report["checks"]), "checks": len(report["checks"]),
               "failed": [c["name"] for c in report["checks"] if not c["ok"]], **report["board"]}
    print(json.dumps(summary))
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
