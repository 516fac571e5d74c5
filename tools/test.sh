#!/usr/bin/env bash
# One command: set up (first run) and run every test. Arguments go to pytest.
source "$(dirname "$0")/_venv.sh" test
if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
  echo "fogline: mosquitto not found; the broker tests need it: sudo apt-get install mosquitto" >&2
  exit 3
fi
# The MicroPython tests also run on a board-like 32-bit port, built once from ../shared/micropython.
if [[ ",${FOGLINE_RUNTIMES:-board}," == *",board,"* ]]; then
  python -m tools.hostemu board >/dev/null || exit 3
fi
exec python -m pytest -n "${FOGLINE_TEST_WORKERS:-2}" "$@"
