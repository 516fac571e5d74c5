#!/usr/bin/env bash
# One command: set up (first run) and run every test. Arguments go to pytest.
# Without mosquitto the test files that start a broker are skipped (and named); the rest run.
source "$(dirname "$0")/_venv.sh" test
skip=()
if [ -n "${FOGLINE_MOSQUITTO+x}" ]; then
  [ -x "${FOGLINE_MOSQUITTO}" ] && have_mosquitto=1 || have_mosquitto=0
elif command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; then
  have_mosquitto=1
else
  have_mosquitto=0
fi
if [ "$have_mosquitto" = 0 ]; then
  # a test file needs the broker when it uses the mosquitto fixtures or a kit that starts one
  mapfile -t need < <(grep -rlE 'mosquitto|harness\.broker|from harness import .*broker|cloudkit|clusterkit|sitekit|tls_cloud_broker|cloud_broker' \
                      tests --include='test_*.py' | sort)
  echo "fogline: mosquitto not found (sudo apt-get install mosquitto); skipping ${#need[@]} test files that need it:" >&2
  for f in "${need[@]}"; do
    echo "  skipped: $f" >&2
    skip+=(--ignore "$f")
  done
fi
# The MicroPython tests also run on a board-like 32-bit port, built once from ../shared/micropython.
if [[ ",${FOGLINE_RUNTIMES:-board}," == *",board,"* ]]; then
  python -m fogline.tools.hostemu board >/dev/null || exit 3
fi
exec python -m pytest -n "${FOGLINE_TEST_WORKERS:-2}" --durations=15 "${skip[@]}" "$@"
