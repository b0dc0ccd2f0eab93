"""The no-op fast path: `node build` when nothing changed costs one stat per file.

After a build in which every node was up to date, the build records the stat
(size, mtime_ns, inode) of every file its decision read: the Nodefile and
templates, scripts and the files they import, inputs, outputs, and the folders
whose listing matters (globs, import resolution). The same command line run
again in the same folder only re-stats that list; when every stat matches it
says "nothing to do" without loading the project, the state store or any
module beyond the standard library's os and marshal.

Safety: any write to node records deletes every such record (state.py), a
record is never written while a listed file's mtime is within its filesystem's
racy window (fsclock.py) of the moment of writing (a same-tick edit could hide), and any difference, a
missing file or an unreadable record falls back to the full path.
"""
from __future__ import annotations

import os

VERSION = 4  # bump with the key format (model.FORMAT_VERSION) or the record layout


def _root(start: str) -> str | None:
    d = start
    while True:
        if os.path.isfile(os.path.join(d, "Nodefile.toml")):
            return d
        parent = os.path.dirname(d)
        if parent == d:
            return None
        d = parent


def canonical(argv) -> list[str]:
    """The command line without options that cannot change what is up to date
    (-q, -k, -j N): `build` and `build -q -j 4` share one record."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in ("-q", "--quiet", "-k", "--keep-going"):
            continue
        elif a in ("-j", "--jobs"):
            skip = True
        elif a.startswith("-j") or a.startswith("--jobs="):
            continue
        else:
            out.append(a)
    return out


def record_path(root: str, argv, cwd: str) -> str:
    import zlib
    h = zlib.crc32(repr((canonical(argv), cwd)).encode())
    return os.path.join(root, ".nodefile", "noop", f"{h:08x}")


_MISSING = (-1, -1, -1)


def _read(root: str, argv, cwd: str):
    import marshal
    try:
        with open(record_path(root, argv, cwd), "rb") as f:
            rec = marshal.load(f)
    except (OSError, EOFError, ValueError, TypeError):
        return None
    if not isinstance(rec, tuple) or len(rec) != 6 or rec[0] != VERSION or rec[1] != canonical(argv) \
            or rec[2] != cwd:
        return None
    return rec


def _stamps(root: str, paths: list[str]) -> list[bytes]:
    """The packed (mtime_ns, size, inode) of each path, statted relative to root."""
    import struct
    pack = struct.Struct("qqq").pack
    stat = os.stat
    missing = pack(*_MISSING)
    out = []
    append = out.append
    here = os.getcwd()
    os.chdir(root)  # relative paths: shorter lookups in the kernel
    try:
        for p in paths:
            try:
                st = stat(p)
            except OSError:
                append(missing)
                continue
            append(pack(st.st_mtime_ns, st.st_size, st.st_ino))
    finally:
        os.chdir(here)
    return out


def try_noop(argv: list[str]) -> str | None:
    """The message to print when the command is a known no-op, else None."""
    import time
    t0 = time.perf_counter()
    cwd = os.getcwd()
    root = _root(cwd)
    if root is None:
        return None
    rec = _read(root, argv, cwd)
    if rec is None:
        return None
    _, _, _, count, joined, packed = rec
    # one \0-joined string and one packed byte string: they load at memcpy speed,
    # where 20,000 path strings and stat tuples cost as much as the stats themselves
    if b"".join(_stamps(root, joined.split("\0"))) != packed:
        return None
    ms = (time.perf_counter() - t0) * 1000
    return f"nothing to do: {count} node(s) up to date ({ms:.0f}ms)"


def recorded_paths(root: str, argv, cwd: str) -> list[str]:
    rec = _read(root, argv, cwd)
    return rec[4].split("\0") if rec is not None else []


def changed_since_record(root: str, argv, cwd: str, limit: int = 1000) -> set[str] | None:
    """The recorded paths whose stat changed since the last all-up-to-date build of
    this command line, or None when there is no usable record (or too much changed)."""
    rec = _read(root, argv, cwd)
    if rec is None:
        return None
    paths = rec[4].split("\0")
    packed = rec[5]
    changed = set()
    for i, cur in enumerate(_stamps(root, paths)):
        if cur != packed[24 * i:24 * i + 24]:
            changed.add(paths[i])
            if len(changed) > limit:
                return None
    return changed


def write_record(root: str, argv, cwd: str, paths, count: int) -> bool:
    """Record the stats of `paths` (project-relative or absolute) for try_noop."""
    import marshal
    import struct
    import time
    from .fsclock import racy_ns
    now = time.time_ns()
    pack = struct.Struct("qqq").pack
    plist, packed = [], []
    for p in sorted(set(paths)):
        if "\0" in p:
            return False
        try:
            st = os.stat(os.path.join(root, p))
        except OSError:
            plist.append(p)
            packed.append(pack(*_MISSING))
            continue
        window = racy_ns(st.st_dev)
        if st.st_mtime_ns > now - window:
            wait = (st.st_mtime_ns - (now - window)) / 1e9
            if wait > 0.05:
                return False  # too fresh to trust a stat comparison next time
            time.sleep(wait + 0.001)  # a fine-grained filesystem: wait out one tick
            now = time.time_ns()
        plist.append(p)
        packed.append(pack(st.st_mtime_ns, st.st_size, st.st_ino))
    path = record_path(root, argv, cwd)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        marshal.dump((VERSION, canonical(argv), cwd, count, "\0".join(plist), b"".join(packed)), f)
    os.replace(tmp, path)
    return True


def invalidate(root: str) -> None:
    d = os.path.join(root, ".nodefile", "noop")
    try:
        names = os.listdir(d)
    except OSError:
        return
    for n in names:
        try:
            os.remove(os.path.join(d, n))
        except OSError:
            pass
