# Sourced by tools/demo.sh and tools/test.sh: make .venv (once) with fogline installed, then activate it.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${FOGLINE_VENV:-$REPO/.venv}"
EXTRAS="${1:-test}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "fogline: creating $VENV" >&2
  "$PY" -m venv "$VENV"
fi
STAMP="$VENV/.fogline-$EXTRAS-$(sha1sum "$REPO/pyproject.toml" | cut -c1-12)"
if [ ! -f "$STAMP" ]; then
  echo "fogline: installing fogline[$EXTRAS] into $VENV (first run only)" >&2
  "$VENV/bin/python" -m pip install -q -U pip >&2
  "$VENV/bin/python" -m pip install -q -e "$REPO[$EXTRAS]" >&2
  touch "$STAMP"
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"
cd "$REPO"
