"""The timestamp granularity of the filesystem holding a file (the racy window).

A file modified in the same timestamp tick as the moment we read it keeps its
stat, so a stat-keyed hash cache must re-read any file whose mtime lies within
one tick of the read ("racy git"). Local Linux filesystems with nanosecond
timestamps (ext4, xfs, btrfs, tmpfs, f2fs, ...) are stamped from the kernel's
coarse clock: one jiffy, at most 10 ms; 20 ms leaves a margin. Anything else
(FAT's 2 s, HFS+'s 1 s, network filesystems with server clocks, unknown)
gets 2 s. Only os is imported: the no-op fast path uses this too.
"""
from __future__ import annotations

import os

COARSE_NS = 2_000_000_000
FINE_NS = 20_000_000
_FINE = {"ext4", "ext3", "ext2", "xfs", "btrfs", "tmpfs", "f2fs", "zfs", "overlay", "ramfs", "bcachefs", "jfs"}
_by_dev: dict[int, int] = {}
_mounts: dict[tuple[int, int], str] | None = None


def _read_mounts() -> dict[tuple[int, int], str]:
    out: dict[tuple[int, int], str] = {}
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                fields = left.split()
                if len(fields) < 3 or not right:
                    continue
                major, _, minor = fields[2].partition(":")
                out[(int(major), int(minor))] = right.split()[0]
    except (OSError, ValueError):
        pass
    return out


def racy_ns(st_dev: int) -> int:
    """The racy window for files on this device. NODEFILE_TIMESTAMP_GRANULARITY_MS
    overrides it (for a filesystem whose timestamps are coarser than its type says)."""
    w = _by_dev.get(st_dev)
    if w is None and os.environ.get("NODEFILE_TIMESTAMP_GRANULARITY_MS"):
        try:
            w = _by_dev[st_dev] = int(float(os.environ["NODEFILE_TIMESTAMP_GRANULARITY_MS"]) * 1_000_000)
        except ValueError:
            pass
    if w is None:
        global _mounts
        if _mounts is None:
            _mounts = _read_mounts()
        fstype = _mounts.get((os.major(st_dev), os.minor(st_dev)))
        w = _by_dev[st_dev] = FINE_NS if fstype in _FINE else COARSE_NS
    return w
