"""A cache of the parsed, validated project, keyed by what it was made from.

Parsing a large Nodefile is the main fixed cost of every command (tomllib is
pure Python: ~1 s for 10,000 nodes); unpickling the Project costs a fraction.
An entry is trusted only when every Nodefile and template it was read from has
the same stat (size, mtime_ns, inode; never written while one is within the
racy window), the overrides (--set) and requested targets are the same, the
nodefile version is the same, and every glob input still matches the same
files. A source file that disappeared is still caught, at build time ("input
missing"); `node check` never uses the cache.

An entry is two pickles in one file: a small header (the key and the sources'
stats) and the body (the glob inputs and the Project). An edited Nodefile is
seen from the header alone, without unpickling a project that is about to be
parsed again (2.5 s of 30 at 100,000 nodes).
"""
from __future__ import annotations

import contextlib
import gc
import io
import os
import pickle
import time

from ..fsclock import racy_ns
from ..model import FORMAT_VERSION

VERSION = 5  # 2: header and body pickled apart; 3: warm options; 4: [executor]; 5: both


def _path(root: str, key: str) -> str:
    import zlib
    return os.path.join(root, ".nodefile", "projects", f"{zlib.crc32(key.encode()):08x}.pickle")


def _stamp(path: str):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)  # ctime: a cp -p over it shows


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


@contextlib.contextmanager
def gc_paused(freeze: bool):
    """The cyclic garbage collector off while a project is parsed or unpickled and,
    with freeze, what exists then frozen (gc.freeze: never traversed again) before it
    is back on.
    A parse makes millions of objects and no garbage cycles (a 10,000-node parse
    leaves 11 cyclic objects, the Project none), and the Project lives as long as
    the command: with the collector on, its passes over the growing heap took 40 %
    of parsing 100,000 nodes, and a full pass over the parsed project cost 0.5 s
    each time the build's own objects triggered one. So a one-shot command freezes
    (commands.load_project); `node watch` reloads the project for as long as it
    runs, and a program using the Python API may too: they do not, so that cyclic
    garbage of their earlier cycles is never frozen with the new project."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            if freeze:
                gc.freeze()
            gc.enable()


_ERRORS = (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError, TypeError, ValueError,
           KeyError, IndexError)


def load(root: str, key: str, freeze: bool = False):
    try:
        with open(_path(root, key), "rb") as f:
            data = f.read()
        buf = io.BytesIO(data)
        head = pickle.load(buf)
        if not isinstance(head, dict) or head.get("key") != key:
            return None
        for path, stamp in head["sources"]:
            if _stamp(path) != stamp:
                return None
        with gc_paused(freeze):
            body = pickle.load(buf)
        project = body["project"]
        if project.scans and not _same_listings(root, project.scans):
            return None  # a file added or removed: other instances
        if project.missing and any(os.path.lexists(os.path.join(root, m[0])) for m in project.missing):
            return None  # a missing source is there now
        if body["globs"]:
            from .resolve import glob_matches
            for pattern, matched in body["globs"]:
                if glob_matches(root, pattern, project.producers) != matched:
                    return None
    except _ERRORS:
        return None
    _remember(project, data)
    return project


def _same_listings(root: str, scans) -> bool:
    from .filematrix import listing
    return all(listing(root, scan[2]) == tuple(scan[3]) for scan in scans)


def store(project, key: str) -> None:
    now = time.time_ns()
    sources = []
    for path in project.sources:
        st = _stamp(path)
        if st is None or st[1] > now - racy_ns(os.stat(path).st_dev):
            return  # too fresh to trust a stat comparison later
        sources.append((path, st))
    from .schema import norm
    globs = sorted({(norm(e.source, n.cwd), tuple(e.paths)) for n in project.nodes.values() for e in n.inputs
                    if e.kind == "glob" and ", " not in e.source})
    if any(e.kind == "glob" and ", " in e.source for n in project.nodes.values() for e in n.inputs):
        return  # several globs in one entry: not worth tracking, parse each time
    path = _path(project.root, key)
    try:
        from .. import statedir
        statedir.make(os.path.join(project.root, ".nodefile"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        data = pickle.dumps({"key": key, "sources": sources}, protocol=pickle.HIGHEST_PROTOCOL) + \
            pickle.dumps({"globs": [(g, list(m)) for g, m in globs], "project": project},
                         protocol=pickle.HIGHEST_PROTOCOL)
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        _remember(project, data)
    except OSError:
        pass  # a cache: never a reason to fail
