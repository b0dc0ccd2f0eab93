"""fsclock: the racy window follows the filesystem's timestamp granularity."""
import os

from nodefile import fsclock


def test_unknown_device_gets_the_coarse_window(monkeypatch):
    monkeypatch.setattr(fsclock, "_by_dev", {})
    monkeypatch.setattr(fsclock, "_mounts", {})
    monkeypatch.delenv("NODEFILE_TIMESTAMP_GRANULARITY_MS", raising=False)
    assert fsclock.racy_ns(12345) == fsclock.COARSE_NS


def test_a_fine_local_filesystem_gets_a_short_window(monkeypatch, tmp_path):
    dev = os.stat(tmp_path).st_dev
    monkeypatch.setattr(fsclock, "_by_dev", {})
    monkeypatch.setattr(fsclock, "_mounts", {(os.major(dev), os.minor(dev)): "ext4"})
    monkeypatch.delenv("NODEFILE_TIMESTAMP_GRANULARITY_MS", raising=False)
    assert fsclock.racy_ns(dev) == fsclock.FINE_NS
    monkeypatch.setattr(fsclock, "_by_dev", {})
    monkeypatch.setattr(fsclock, "_mounts", {(os.major(dev), os.minor(dev)): "vfat"})
    assert fsclock.racy_ns(dev) == fsclock.COARSE_NS


def test_the_environment_overrides_it(monkeypatch):
    monkeypatch.setattr(fsclock, "_by_dev", {})
    monkeypatch.setenv("NODEFILE_TIMESTAMP_GRANULARITY_MS", "1500")
    assert fsclock.racy_ns(7) == 1_500_000_000


def test_this_machines_mount_table_is_read():
    assert fsclock._read_mounts()  # /proc/self/mountinfo parses into (major, minor) -> type
