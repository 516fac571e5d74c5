"""fogline.gateway.placement.health.snapshot reads this host's real /proc and disk figures."""

import os
import shutil

from fogline.gateway.placement import health


def test_snapshot_reports_this_hosts_resources(tmp_path):
    s = health.snapshot(tmp_path, now=123.0)
    assert s["cores"] == os.cpu_count()
    assert s["ts"] == 123.0
    du = shutil.disk_usage(tmp_path)
    assert s["disk_total"] == du.total
    assert abs(s["disk_free"] - du.free) < 64 << 20  # other writers on the disk meanwhile
    assert 0 < s["mem_avail"] <= s["mem_total"]
    assert 0 < s["rss"] < s["mem_total"]
    assert 0.0 <= s["cpu_pct"] <= 100.0


def test_missing_data_dir_reports_the_disk_it_will_live_on(tmp_path):
    s = health.snapshot(tmp_path / "not" / "yet", now=1.0)
    assert s["disk_total"] == shutil.disk_usage(tmp_path).total


def test_rss_grows_with_a_large_allocation(tmp_path):
    before = health.snapshot(tmp_path)["rss"]
    blob = bytearray(64 << 20)
    blob[::4096] = b"\x01" * len(blob[::4096])  # touch every page so it is resident
    after = health.snapshot(tmp_path)["rss"]
    assert after - before >= 48 << 20
    del blob
