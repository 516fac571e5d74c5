"""Board facts the host tools need: filesystem geometry, mpy-cross arch, heap (boards/<board>.json, else the defaults below)."""

from __future__ import annotations

import json

from fogline.tools.hostemu import REPO

# mpy-cross -march per MCU family (RP2040: Cortex-M0+; ESP32/ESP32-S3: Xtensa windowed ABI).
MCU_ARCH = {"rp2040": "armv6m", "rp2350": "armv7emsp", "esp32": "xtensawin", "esp32s3": "xtensawin",
            "esp32-s3": "xtensawin", "esp32_s3": "xtensawin", "esp32s2": "xtensawin", "esp32c3": "rv32imc"}

# Filesystem geometry per board when boards/<board>.json does not say (MicroPython's port defaults).
FS_DEFAULTS = {
    "pico_w": {"fs_bytes": 848 * 1024, "block_size": 4096, "progsize": 256, "arch": "armv6m"},
    "pico": {"fs_bytes": 1408 * 1024, "block_size": 4096, "progsize": 256, "arch": "armv6m"},
    "esp32_devkitc": {"fs_bytes": 2 * 1024 * 1024, "block_size": 4096, "progsize": 32, "arch": "xtensawin"},
    "esp32": {"fs_bytes": 2 * 1024 * 1024, "block_size": 4096, "progsize": 32, "arch": "xtensawin"},
    "esp32_s3": {"fs_bytes": 2 * 1024 * 1024, "block_size": 4096, "progsize": 32, "arch": "xtensawin"},
    "esp32s3": {"fs_bytes": 2 * 1024 * 1024, "block_size": 4096, "progsize": 32, "arch": "xtensawin"},
}


def _find(d: object, *keys: str) -> object | None:
    """First value found under any of keys, searching nested dicts (board files vary in shape)."""
    if isinstance(d, dict):
        for k in keys:
            if k in d and not isinstance(d[k], dict):
                return d[k]
        for v in d.values():
            r = _find(v, *keys)
            if r is not None:
                return r
    return None


def board_info(board: str) -> dict:
    """Geometry and arch of a board: boards/<board>.json where it says, else the defaults above."""
    info = dict(FS_DEFAULTS.get(board, FS_DEFAULTS["pico_w"]))
    info["board"] = board
    path = REPO / "boards" / f"{board}.json"
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except ValueError as e:
            raise ValueError(f"boards/{board}.json: {e}") from e
        info["file"] = data
        size = _find(data, "fs_bytes", "fs_size", "filesystem_bytes", "partition_bytes", "fs_size_bytes")
        if isinstance(size, int) and size > 0:
            info["fs_bytes"] = size
        heap = _find(data, "heap_bytes")
        if isinstance(heap, int) and heap > 0:
            # the board's free heap, scaled to 64-bit objects ("w": x word size / 4)
            info["heapsize"] = f"{heap}w"
        bs = _find(data, "block_size", "erase_block")
        if isinstance(bs, int) and bs > 0:
            info["block_size"] = bs
        arch = _find(data, "mpy_arch", "arch", "march")
        mcu = _find(data, "mcu")
        if isinstance(arch, str) and arch:
            info["arch"] = arch
        elif isinstance(mcu, str) and mcu.lower() in MCU_ARCH:
            info["arch"] = MCU_ARCH[mcu.lower()]
        if isinstance(mcu, str) and mcu.lower().startswith("esp32"):
            info["progsize"] = 32
    elif board not in FS_DEFAULTS:
        raise ValueError(f"unknown board {board!r}: no boards/{board}.json and no built-in geometry")
    info["blocks"] = info["fs_bytes"] // info["block_size"]
    return info
