"""The no-op fast path: `node build` when nothing changed costs one stat per file.

After a build in which every node was up to date, the build records the stat
(size, mtime_ns, inode, ctime_ns) of every file its decision read: the Nodefile and
templates, scripts and the files they import, inputs, outputs, and the folders
whose listing matters (globs, import resolution). The same command line run
again in the same folder only re-stats that list; when every stat matches it
says "nothing to do" without loading the project, the state store or any
module beyond the standard library's os and marshal.

Safety: any write to node records deletes every such record (state.py); a listed
file whose mtime is within its filesystem's racy window (fsclock.py) of the moment
of writing (a same-tick edit could hide) is recorded as "racy", which matches no
stat, so the next run checks it. Any difference, a missing file or an unreadable
record falls back to the build (of the nodes owning what differs).
"""
from __future__ import annotations

import os

VERSION = 8  # 8: the ctime joined the stat. Bump with the key format (model.FORMAT_VERSION) or the record layout


class NoopRecord:
    """A no-op record as stored: marshal of the tuple (VERSION, canonical argv, cwd,
    count, joined, packed, digest, sources), in that order."""
    __slots__ = ("version", "argv", "cwd", "count", "joined", "packed", "digest", "sources")

    def __init__(self, version, argv, cwd, count, joined, packed, digest, sources):
        self.version, self.argv, self.cwd = version, argv, cwd
        self.count = count  # the nodes it covers
        self.joined = joined  # the paths, sorted, one \0-joined string
        self.packed = packed  # their stats, STAT bytes each, one byte string
        self.digest = digest  # the parsed project it is for (the node index's key), or None
        self.sources = sources  # the positions of the Nodefiles and templates among the paths


class Pending:
    """A `node build` that try_noop did not answer: its command line (argv, cwd), to be
    recorded as a no-op when the build leaves every node up to date, and what
    try_noop saw, which the build uses instead of statting everything again
    (changed_since_record, write_record).

    started_ns: when the command began (time.time_ns()), or None: a folder the build
    lists (globs, import resolution) but does not hash, changed since then, may have
    changed after it was listed, so write_record records it as racy. root, record,
    paths: the project and the record try_noop read (record None: none was read);
    stats: the current stats packed and joined, or None when a Nodefile or template
    differed (then the other files were not statted)."""
    __slots__ = ("argv", "cwd", "started_ns", "root", "record", "paths", "stats")

    def __init__(self, argv, cwd: str, started_ns: int | None = None, root: str | None = None,
                 record: NoopRecord | None = None, paths: list | None = None, stats: bytes | None = None):
        self.argv, self.cwd, self.started_ns = list(argv), cwd, started_ns
        self.root, self.record, self.paths, self.stats = root, record, paths, stats

    def afresh(self) -> Pending:
        """The same command, without what try_noop saw (a build that starts again after
        a damaged state was set aside must stat afresh)."""
        return Pending(self.argv, self.cwd, self.started_ns)


def find_root(start: str) -> str | None:
    """The nearest folder from `start` (absolute) up that holds a Nodefile.toml."""
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


STAT = 32  # bytes of one packed stat: (mtime_ns, size, inode, ctime_ns)
_MISSING = (-1, -1, -1, -1)
_RACY = (-2, -2, -2, -2)  # recorded for a file too fresh to trust its stat: never matches


def _read(root: str, argv, cwd: str) -> NoopRecord | None:
    import marshal
    try:
        with open(record_path(root, argv, cwd), "rb") as f:
            rec = marshal.load(f)
    except (OSError, EOFError, ValueError, TypeError):
        return None
    if not isinstance(rec, tuple) or len(rec) != 8 or rec[0] != VERSION or rec[1] != canonical(argv) \
            or rec[2] != cwd or not isinstance(rec[7], tuple):
        return None
    return NoopRecord(*rec)


def _stat_all(paths, out: list) -> None:
    import struct
    pack = struct.Struct("qqqq").pack
    stat = os.stat
    missing = pack(*_MISSING)
    append = out.append
    for p in paths:
        try:
            st = stat(p)
        except OSError:
            append(missing)
            continue
        append(pack(st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns))


def _stamps(root: str, paths: list[str]) -> list[bytes]:
    """The packed (mtime_ns, size, inode, ctime_ns) of each path, statted relative to root, in
    this thread. (Two threads were tried: on this 2-core machine their GIL hand-offs
    made the no-op at 10,000 nodes slower one run in four, up to 2x, and cost twice
    the CPU; docs/decisions.md.)"""
    here = os.getcwd()
    os.chdir(root)  # relative paths: shorter lookups in the kernel
    try:
        out: list = []
        _stat_all(paths, out)
        return out
    finally:
        os.chdir(here)


def try_noop(argv: list[str]) -> str | Pending:
    """The message to print when the command is a known no-op, else the Pending build."""
    import time
    noop = Pending(argv, os.getcwd(), time.time_ns())
    t0 = time.perf_counter()
    cwd = noop.cwd
    root = find_root(cwd)
    if root is None:
        return noop
    rec = _read(root, argv, cwd)
    if rec is None:
        return noop
    noop.root, noop.record = root, rec
    # one \0-joined string and one packed byte string: they load at memcpy speed,
    # where 20,000 path strings and stat tuples cost as much as the stats themselves
    paths = noop.paths = rec.joined.split("\0")
    packed, sources = rec.packed, rec.sources
    now = _stamps(root, [paths[i] for i in sources])
    if any(s != packed[STAT * i:STAT * i + STAT] for s, i in zip(now, sources)):
        # a Nodefile or template changed: the build checks the whole project whatever
        # else changed, so the other stats are not taken (20,000 at 10,000 nodes)
        return noop
    current = _stamps(root, paths)
    joined_now = b"".join(current)
    if joined_now != packed:
        noop.stats = joined_now
        return noop
    ms = (time.perf_counter() - t0) * 1000
    return f"nothing to do: {rec.count} node(s) up to date ({ms:.0f}ms)"


def _seen(noop: Pending, root: str) -> Pending | None:
    """noop, when try_noop read its record in this project."""
    return noop if noop.record is not None and noop.root == root else None


def recorded_paths(noop: Pending, root: str) -> list[str]:
    seen = _seen(noop, root)
    if seen is not None:
        return seen.paths
    rec = _read(root, noop.argv, noop.cwd)
    return rec.joined.split("\0") if rec is not None else []


def changed_since_record(noop: Pending, root: str, limit: int = 1000) -> set[str] | None:
    """The recorded paths whose stat changed since the last all-up-to-date build of
    this command line, or None when there is no usable record (or too much changed)."""
    seen = _seen(noop, root)
    if seen is not None:
        rec, paths, joined = seen.record, seen.paths, seen.stats
        if joined is None:
            return None  # a Nodefile or template changed (try_noop): a full check
    else:
        rec = _read(root, noop.argv, noop.cwd)
        if rec is None:
            return None
        paths = rec.joined.split("\0")
        joined = b"".join(_stamps(root, paths))
    if len(joined) != len(rec.packed):
        return None
    at = differing(joined, rec.packed, limit + 1)
    return None if len(at) > limit else {paths[i] for i in at}


def differing(a: bytes, b: bytes, limit: int, size: int = STAT, block: int = 256) -> list[int]:
    """The indices of the size-byte entries in which a and b (of equal length) differ,
    up to limit + 1 of them: blocks of entries are compared at memcmp speed and only
    a differing block is looked into."""
    out: list[int] = []
    span = size * block
    n = len(a)
    for lo in range(0, n, span):
        hi = min(lo + span, n)
        if a[lo:hi] == b[lo:hi]:
            continue
        for at in range(lo, hi, size):
            if a[at:at + size] != b[at:at + size]:
                out.append(at // size)
                if len(out) >= limit:
                    return out
    return out


def write_record(noop: Pending, root: str, paths, count: int, fresh=None, digest=None, prior=(),
                 hashed=None, sources=()) -> bool:
    """Record the stats of `paths` and `prior` (project-relative or absolute) for try_noop.

    fresh: when given, only these paths (what the build read or wrote) are statted
    again, with those that differed from the record; the others keep the stats
    try_noop took before the build (equal to the record's, so as trustworthy). A file that changed during the build after
    being statted keeps its old stat here: the next run sees a difference and checks
    it, so reuse can cost a check but never hides a change. digest: the parsed
    project the record is for (the node index, incremental.write_index). prior: paths recorded
    before (the record try_noop checked: then only `paths` is looked up in it).
    hashed: path -> (size, mtime_ns, ino, ctime_ns, dev, is_dir) when the build hashed it (None:
    missing then), Hasher.stats. Such a path is recorded with that stat, not one
    taken now: an input edited after its node ran, while the build went on, must
    differ next time (a stat taken now would hide the edit for good). sources: the
    project's Nodefiles and templates among paths; try_noop stats them first."""
    import marshal
    stamp = _stamper(root, hashed, noop.started_ns)
    paths = paths if isinstance(paths, (set, frozenset)) else set(paths)
    seen = _seen(noop, root) if fresh is not None else None
    if seen is not None and seen.stats is None:
        seen = None  # try_noop stopped at a changed Nodefile: nothing to reuse
    every = None
    if seen is not None:  # the same paths as the record try_noop checked?
        plist = seen.paths
        if prior is plist or prior == plist:
            same = _within(plist, paths)
        else:
            every = paths.union(prior)
            same = len(every) == len(plist) and _within(plist, every)
        if not same:
            seen = None
    if seen is not None:
        packed, joined = _restamped(seen, fresh, stamp), seen.record.joined
    else:
        plist = sorted(every if every is not None else paths.union(prior))
        if any("\0" in p for p in plist):
            return False
        packed, joined = b"".join([stamp(p) for p in plist]), "\0".join(plist)
    path = record_path(root, noop.argv, noop.cwd)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        src = tuple(i for i in (_position(plist, s) for s in sources) if i >= 0)
        marshal.dump((VERSION, canonical(noop.argv), noop.cwd, count, joined, packed, digest, src), f)  # a NoopRecord
    os.replace(tmp, path)
    return True


def _restamped(seen: Pending, fresh, stamp) -> bytes:
    """The stats try_noop took for the record it checked (the same paths, sorted,
    checked), but for what the build read or wrote, and those that differed from the
    record (their new stat may be within the racy window of try_noop's), which are
    stamped again. A stat equal to the record's is as trustworthy as when the record
    was written."""
    plist = seen.paths
    buf = bytearray(seen.stats)
    redo = set(differing(seen.stats, seen.record.packed, len(plist)))
    redo.update(i for i in (_position(plist, p) for p in fresh) if i >= 0)
    for i in sorted(redo):
        buf[STAT * i:STAT * i + STAT] = stamp(plist[i])
    return bytes(buf)


def _stamper(root: str, hashed, started_ns: int | None):
    """stamp(p): the packed stat of p as the build hashed it (else now); RACY when it is
    too fresh to trust (its mtime is within its filesystem's racy window of now: an
    edit later in the same tick would keep the stat) and, for a path not hashed (a
    folder that was listed), when it changed since the command began (started_ns).
    RACY never matches a stat, so the next run checks p."""
    import struct
    import time
    from .fsclock import racy_ns
    clock = time.time_ns()
    pack = struct.Struct("qqqq").pack

    def stamp(p: str):
        since = clock
        if hashed is not None and p in hashed:
            seen = hashed[p]
            if seen is None:
                return pack(*_MISSING)
            size, mtime, ino, ctime, dev, _ = seen  # model.FILE_STAT
        else:
            try:
                st = os.stat(os.path.join(root, p))
            except OSError:
                return pack(*_MISSING)
            mtime, size, ino, dev, ctime = st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev, st.st_ctime_ns
            if started_ns is not None:
                since = min(clock, started_ns)
        if max(mtime, ctime) > since - racy_ns(dev):
            return pack(*_RACY)
        return pack(mtime, size, ino, ctime)
    return stamp


def _position(plist: list, p: str) -> int:
    """The index of p in the sorted list plist, or -1."""
    import bisect
    i = bisect.bisect_left(plist, p)
    return i if i < len(plist) and plist[i] == p else -1


def _within(plist: list, items) -> bool:
    """Whether every item is in the sorted list plist."""
    return all(_position(plist, p) >= 0 for p in items)


def invalidate(root: str) -> None:
    """Delete every no-op record (node indexes stay: they are checked by digest)."""
    d = os.path.join(root, ".nodefile", "noop")
    try:
        names = os.listdir(d)
    except OSError:
        return
    for n in names:
        if n.endswith(".nodes"):
            continue
        try:
            os.remove(os.path.join(d, n))
        except OSError:
            pass
