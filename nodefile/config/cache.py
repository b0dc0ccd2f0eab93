"""A cache of the parsed, validated project, keyed by what it was made from.

Parsing a large Nodefile is the main fixed cost of every command (tomllib is
pure Python: ~1 s for 10,000 nodes); unpickling the Project costs a fraction.
An entry is trusted only when every Nodefile and template it was read from has
the same stat (size, mtime_ns, inode; never written while one is within the
racy window), the overrides (--set) and requested targets are the same, the
nodefile version is the same, and every glob input still matches the same
files. A source file that disappeared is still caught, at build time ("input
missing"); `node check` never uses the cache.
"""
from __future__ import annotations

import os
import pickle
import time

from ..fsclock import racy_ns
from ..model import FORMAT_VERSION

VERSION = 1


def _path(root: str, key: str) -> str:
    import zlib
    return os.path.join(root, ".nodefile", "projects", f"{zlib.crc32(key.encode()):08x}.pickle")


def _stamp(path: str):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def cache_key(nodefile: str, overrides: dict, requests, cwd: str) -> str:
    from .. import __version__
    return repr((VERSION, FORMAT_VERSION, __version__, nodefile, sorted(overrides.items(), key=repr),
                 tuple(requests), cwd if requests else ""))


# the last project loaded from or stored to the cache, and the digest of that entry
# (one only: a long `node watch` reloads the project many times)
_LAST: tuple = (None, None)


def _remember(project, data: bytes) -> None:
    global _LAST
    _LAST = (project, _digest(data))


def digest_of(project):
    """An identity of this exact parsed project (its cache entry's bytes), or None when
    it is not cached: the fast path's node index is only trusted for the same digest."""
    return _LAST[1] if _LAST[0] is project else None


def _digest(data: bytes) -> str:
    import zlib
    return f"{len(data):x}-{zlib.crc32(data):08x}-{zlib.adler32(data):08x}"


def load(root: str, key: str):
    try:
        with open(_path(root, key), "rb") as f:
            data = f.read()
        entry = pickle.loads(data)
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError, TypeError, ValueError):
        return None
    if not isinstance(entry, dict) or entry.get("key") != key:
        return None
    for path, stamp in entry["sources"]:
        if _stamp(path) != stamp:
            return None
    if entry["globs"]:
        from .load import _Builder
        for pattern, matched in entry["globs"]:
            if _Builder._glob_static(root, pattern, entry["project"].producers) != matched:
                return None
    _remember(entry["project"], data)
    return entry["project"]


def store(project, key: str) -> None:
    now = time.time_ns()
    sources = []
    for path in project.sources:
        st = _stamp(path)
        if st is None or st[1] > now - racy_ns(os.stat(path).st_dev):
            return  # too fresh to trust a stat comparison later
        sources.append((path, st))
    from .load import norm
    globs = sorted({(norm(e.source, n.cwd), tuple(e.paths)) for n in project.nodes.values() for e in n.inputs
                    if e.kind == "glob" and ", " not in e.source})
    if any(e.kind == "glob" and ", " in e.source for n in project.nodes.values() for e in n.inputs):
        return  # several globs in one entry: not worth tracking, parse each time
    path = _path(project.root, key)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        data = pickle.dumps({"key": key, "sources": sources, "globs": [(g, list(m)) for g, m in globs],
                             "project": project}, protocol=pickle.HIGHEST_PROTOCOL)
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        _remember(project, data)
    except OSError:
        pass  # a cache: never a reason to fail
