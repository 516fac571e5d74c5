#!/usr/bin/env bash
# Variants of the board-like port (../shared/micropython/build-board-port.sh: 32-bit objects,
# single-precision floats, LittleFS, cryptolib/ssl on axTLS), built the same way from the same source:
#   frozen  Fogline's firmware/ and shared/ frozen in, as a memory-tight board (ESP32 without PSRAM)
#           ships it: frozen bytecode runs from flash, so module code costs no heap
#           (tools/bench/node_memory.py --frozen)  -> OUT_DIR/micropython-board-frozen
#   repl    with MicroPython's own line editor, which brings the raw REPL that mpremote needs (the
#           plain build has neither), for a virtual board (tools/vboard.py --runtime board)
#           -> OUT_DIR/micropython-board-repl
# usage: tools/build_board_variant.sh OUT_DIR frozen|repl      (needs gcc-multilib; about a minute)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
here="$repo/../shared/micropython"
out=$(mkdir -p "$1" && cd "$1" && pwd)
variant=$2
case "$variant" in
  frozen) readline=0 ;;
  repl) readline=1 ;;
  *) echo "usage: $0 OUT_DIR frozen|repl" >&2; exit 2 ;;
esac
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
tar -xJf "$here"/micropython-*-unix.tar.xz -C "$src"
mp=$src/micropython
mkdir -p "$mp/lib/micropython-lib" && touch "$mp/lib/micropython-lib/README.md"
{
  printf 'include("$(MPY_DIR)/extmod/asyncio")\n'
  if [ "$variant" = frozen ]; then
    # the node's modules; firmware/cpy (CircuitPython shims) is not used on MicroPython
    (cd "$repo" && find firmware shared -name '*.py' -not -path 'firmware/cpy/*' | sort) |
      while read -r f; do printf 'freeze("%s", "%s")\n' "$repo" "$f"; done
  fi
} > "$mp/board_manifest.py"
make -C "$mp/mpy-cross" -j"$(nproc)" >"$out/build-mpy-cross.log" 2>&1
make -C "$mp/ports/unix" -j"$(nproc)" VARIANT=standard BUILD=build-board \
  MICROPY_PY_FFI=0 MICROPY_PY_SSL=1 MICROPY_SSL_AXTLS=1 MICROPY_SSL_MBEDTLS=0 MICROPY_PY_BTREE=0 \
  MICROPY_USE_READLINE=$readline FROZEN_MANIFEST="$mp/board_manifest.py" \
  CFLAGS_EXTRA="-m32 -DMICROPY_FLOAT_IMPL=MICROPY_FLOAT_IMPL_FLOAT" LDFLAGS_EXTRA="-m32" \
  >"$out/build-board-$variant.log" 2>&1 || { tail -20 "$out/build-board-$variant.log"; exit 1; }
cp "$mp/ports/unix/build-board/micropython" "$out/micropython-board-$variant"
"$out/micropython-board-$variant" -c "import sys; assert sys.maxsize == 2**31 - 1; print('board-like port ($variant)')"
