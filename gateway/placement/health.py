"""A gateway's own capabilities and health: CPU, memory, disk and load, read from /proc and the data dir."""

from __future__ import annotations

import os
import resource
import shutil
import time
from pathlib import Path
from typing import Any


def _meminfo() -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                name, _, rest = line.partition(":")
                parts = rest.split()
                if parts and parts[0].isdigit():
                    out[name] = int(parts[0]) * 1024
    except OSError:
        pass  # not Linux: the fields are reported as 0 and placement treats them as unknown
    return out


def _rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def snapshot(data_dir: str | Path = ".", now: float | None = None) -> dict[str, Any]:
    """Capabilities and load of this gateway host as a flat dict (bytes, percent, seconds)."""
    cores = os.cpu_count() or 1
    try:
        load1 = os.getloadavg()[0]
    except OSError:
        load1 = 0.0
    mem = _meminfo()
    path = Path(data_dir)
    while not path.exists() and path != path.parent:
        path = path.parent  # the data dir may not exist yet: report the disk it will live on
    try:
        du = shutil.disk_usage(path)
        disk_total, disk_free = du.total, du.free
    except OSError:
        disk_total = disk_free = 0
    return {"cores": cores, "load1": round(load1, 2), "cpu_pct": round(min(100.0, 100.0 * load1 / cores), 1),
            "mem_total": mem.get("MemTotal", 0), "mem_avail": mem.get("MemAvailable", 0), "rss": _rss(),
            "disk_total": disk_total, "disk_free": disk_free, "ts": round(time.time() if now is None else now, 3)}
