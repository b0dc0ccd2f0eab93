"""Timed runs and output checks shared by the benchmarks."""
from __future__ import annotations

import os
import resource
import statistics
import subprocess
import time


class RunFailed(Exception):
    pass


def timed(argv, cwd=None, env=None, timeout=None, stdin=subprocess.DEVNULL) -> tuple[float, float]:
    """Run argv; (wall seconds, CPU seconds of the whole child tree). Raises RunFailed on a
    non-zero exit or a timeout."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    try:
        r = subprocess.run(argv, cwd=cwd, env=env, stdin=stdin, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RunFailed(f"timed out after {timeout:g} s: {' '.join(map(str, argv))}") from None
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    if r.returncode:
        tail = r.stderr.decode("utf-8", "replace")[-1500:]
        raise RunFailed(f"exit {r.returncode}: {' '.join(map(str, argv))}\n{tail}")
    return wall, cpu


def snapshot(d: str) -> dict:
    """name -> (mtime_ns, inode) of every entry of d/out."""
    out = {}
    with os.scandir(os.path.join(d, "out")) as it:
        for e in it:
            st = e.stat(follow_symlinks=False)
            out[e.name] = (st.st_mtime_ns, st.st_ino)
    return out


def changed(before: dict, after: dict) -> set:
    return {k for k in set(before) | set(after) if before.get(k) != after.get(k)}


def median(xs):
    return statistics.median(xs) if xs else None


def describe_set(got: set, want: set, limit: int = 5) -> str:
    extra = sorted(got - want)
    lost = sorted(want - got)
    parts = []
    if lost:
        parts.append(f"{len(lost)} missing (e.g. {', '.join(lost[:limit])})")
    if extra:
        parts.append(f"{len(extra)} unexpected (e.g. {', '.join(extra[:limit])})")
    return "; ".join(parts) or "same set"
