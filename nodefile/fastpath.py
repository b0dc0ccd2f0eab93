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

# What try_noop saw when the record did not match: (root, canonical argv, cwd, record,
# paths, the current stats packed and joined). The build that follows uses it
# instead of statting everything again (changed_since_record, write_record).
PENDING = None
# When try_noop began (time.time_ns()): a folder the build lists (globs, import
# resolution) but does not hash, changed since then, may have changed after it was
# listed, so write_record records it as racy.
STARTED_NS = None


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


STAT = 32  # bytes of one packed stat: (mtime_ns, size, inode, ctime_ns)
_MISSING = (-1, -1, -1, -1)
_RACY = (-2, -2, -2, -2)  # recorded for a file too fresh to trust its stat: never matches


def _read(root: str, argv, cwd: str):
    import marshal
    try:
        with open(record_path(root, argv, cwd), "rb") as f:
            rec = marshal.load(f)
    except (OSError, EOFError, ValueError, TypeError):
        return None
    if not isinstance(rec, tuple) or len(rec) != 8 or rec[0] != VERSION or rec[1] != canonical(argv) \
            or rec[2] != cwd or not isinstance(rec[7], tuple):
        return None
    return rec


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


def try_noop(argv: list[str]) -> str | None:
    """The message to print when the command is a known no-op, else None."""
    import time
    global PENDING, STARTED_NS
    PENDING = None  # never the stats of an earlier command in this process
    STARTED_NS = time.time_ns()
    t0 = time.perf_counter()
    cwd = os.getcwd()
    root = _root(cwd)
    if root is None:
        return None
    rec = _read(root, argv, cwd)
    if rec is None:
        return None
    _, _, _, count, joined, packed, _, sources = rec
    # one \0-joined string and one packed byte string: they load at memcpy speed,
    # where 20,000 path strings and stat tuples cost as much as the stats themselves
    paths = joined.split("\0")
    now = _stamps(root, [paths[i] for i in sources])
    if any(s != packed[STAT * i:STAT * i + STAT] for s, i in zip(now, sources)):
        # a Nodefile or template changed: the build checks the whole project whatever
        # else changed, so the other stats are not taken (20,000 at 10,000 nodes)
        PENDING = (root, canonical(argv), cwd, rec, paths, None)
        return None
    current = _stamps(root, paths)
    joined_now = b"".join(current)
    if joined_now != packed:
        PENDING = (root, canonical(argv), cwd, rec, paths, joined_now)
        return None
    ms = (time.perf_counter() - t0) * 1000
    return f"nothing to do: {count} node(s) up to date ({ms:.0f}ms)"


def recorded_paths(root: str, argv, cwd: str) -> list[str]:
    seen = pending(root, argv, cwd)
    if seen is not None:
        return seen[4]
    rec = _read(root, argv, cwd)
    return rec[4].split("\0") if rec is not None else []


def changed_since_record(root: str, argv, cwd: str, limit: int = 1000) -> set[str] | None:
    """The recorded paths whose stat changed since the last all-up-to-date build of
    this command line, or None when there is no usable record (or too much changed)."""
    seen = pending(root, argv, cwd)
    if seen is not None:
        rec, paths, joined = seen[3], seen[4], seen[5]
        if joined is None:
            return None  # a Nodefile or template changed (try_noop): a full check
    else:
        rec = _read(root, argv, cwd)
        if rec is None:
            return None
        paths = rec[4].split("\0")
        joined = b"".join(_stamps(root, paths))
    if len(joined) != len(rec[5]):
        return None
    at = differing(joined, rec[5], limit + 1)
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


def pending(root: str, argv, cwd: str):
    """try_noop's stats of this command line's record, when it just took them."""
    if PENDING is not None and PENDING[:3] == (root, canonical(argv), cwd):
        return PENDING
    return None


def write_record(root: str, argv, cwd: str, paths, count: int, fresh=None, digest=None, prior=(),
                 hashed=None, sources=()) -> bool:
    """Record the stats of `paths` and `prior` (project-relative or absolute) for try_noop.

    fresh: when given, only these paths (what the build read or wrote) are statted
    again, with those that differed from the record; the others keep the stats
    try_noop took before the build (equal to the record's, so as trustworthy). A file that changed during the build after
    being statted keeps its old stat here: the next run sees a difference and checks
    it, so reuse can cost a check but never hides a change. digest: the parsed
    project the record is for (the node index, write_index). prior: paths recorded
    before (the record try_noop checked: then only `paths` is looked up in it).
    hashed: path -> (size, mtime_ns, ino, ctime_ns, dev, is_dir) when the build hashed it (None:
    missing then), Hasher.stats. Such a path is recorded with that stat, not one
    taken now: an input edited after its node ran, while the build went on, must
    differ next time (a stat taken now would hide the edit for good). sources: the
    project's Nodefiles and templates among paths; try_noop stats them first."""
    import marshal
    import struct
    import time
    from .fsclock import racy_ns
    clock = time.time_ns()
    pack = struct.Struct("qqqq").pack

    def fresh_stamp(p: str):
        """The packed stat of p as the build hashed it (else now); RACY when it is too
        fresh to trust (its mtime is within its filesystem's racy window of now: an edit
        later in the same tick would keep the stat) and, for a path not hashed (a folder
        that was listed), when it changed since the command began. RACY never matches a
        stat, so the next run checks p."""
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
            if STARTED_NS is not None:
                since = min(clock, STARTED_NS)
        if max(mtime, ctime) > since - racy_ns(dev):
            return pack(*_RACY)
        return pack(mtime, size, ino, ctime)

    paths = paths if isinstance(paths, (set, frozenset)) else set(paths)
    seen = pending(root, argv, cwd) if fresh is not None else None
    if seen is not None and seen[5] is None:
        seen = None  # try_noop stopped at a changed Nodefile: nothing to reuse
    every = None
    if seen is not None:  # the same paths as the record try_noop checked?
        plist = seen[4]
        if prior is plist or prior == plist:
            same = _within(plist, paths)
        else:
            every = paths.union(prior)
            same = len(every) == len(plist) and _within(plist, every)
        if not same:
            seen = None
    if seen is not None:
        # the same paths as the record try_noop checked (sorted, checked): keep its
        # stats but for what the build read or wrote, and those that differed from the
        # record (their new stat may be within the racy window of try_noop's). A stat
        # equal to the record's is as trustworthy as when the record was written.
        buf = bytearray(seen[5])
        redo = set(differing(seen[5], seen[3][5], len(plist)))
        redo.update(i for i in (_position(plist, p) for p in fresh) if i >= 0)
        for i in sorted(redo):
            buf[STAT * i:STAT * i + STAT] = fresh_stamp(plist[i])
        packed, joined = bytes(buf), seen[3][4]
    else:
        plist = sorted(every if every is not None else paths.union(prior))
        if any("\0" in p for p in plist):
            return False
        packed, joined = b"".join([fresh_stamp(p) for p in plist]), "\0".join(plist)
    path = record_path(root, argv, cwd)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        src = tuple(i for i in (_position(plist, s) for s in sources) if i >= 0)
        marshal.dump((VERSION, canonical(argv), cwd, count, joined, packed, digest, src), f)
    os.replace(tmp, path)
    return True


def _position(plist: list, p: str) -> int:
    """The index of p in the sorted list plist, or -1."""
    import bisect
    i = bisect.bisect_left(plist, p)
    return i if i < len(plist) and plist[i] == p else -1


def _within(plist: list, items) -> bool:
    """Whether every item is in the sorted list plist."""
    return all(_position(plist, p) >= 0 for p in items)


# -- the node index: rebuild a few nodes without loading the whole project ---------------
def index_path(root: str, argv, cwd: str) -> str:
    return record_path(root, argv, cwd) + ".nodes"


def _index_head(f):
    """An index file's header: (VERSION, the digest of the project it was written
    for, the size of the body that follows), or None."""
    import marshal
    head = marshal.load(f)
    return head if isinstance(head, tuple) and len(head) == 3 and head[0] == VERSION else None


def read_index(root: str, argv, cwd: str, digest):
    """The index written for the project with this digest, or None. Its "blob" (every
    node pickled, megabytes at 10,000 nodes) is not read: `blob(start, end)` reads
    the slices the few rebuilt nodes need from the open file."""
    import marshal
    try:
        f = open(index_path(root, argv, cwd), "rb")
    except OSError:
        return None
    try:
        head = _index_head(f)
        if digest is None or head is None or head[1] != digest:
            f.close()
            return None
        body = marshal.loads(f.read(head[2]))  # one read: marshal.load(f) reads object by object
        base = f.tell()
    except Exception:  # partial or from another version: no shortcut
        f.close()
        return None

    def blob(start: int, end: int) -> bytes:
        f.seek(base + start)
        return f.read(end - start)

    body["blob"] = blob
    body["close"] = f.close
    return body


def index_digest(root: str, argv, cwd: str):
    """The digest of the project the index on disk was written for (its header only)."""
    try:
        with open(index_path(root, argv, cwd), "rb") as f:
            head = _index_head(f)
            return head[1] if head is not None else None
    except Exception:
        return None


def write_index(root: str, argv, cwd: str, digest, body: dict) -> None:
    """body["blob"] (bytes) is written raw after the rest, for read_index to slice."""
    import marshal
    path = index_path(root, argv, cwd)
    tmp = f"{path}.{os.getpid()}.tmp"
    rest = {k: v for k, v in body.items() if k != "blob"}
    try:
        data = marshal.dumps(rest)
        with open(tmp, "wb") as f:
            marshal.dump((VERSION, digest, len(data)), f)
            f.write(data)
            f.write(body.get("blob", b""))
        os.replace(tmp, path)
    except (OSError, ValueError):
        pass  # an optimisation: never a reason to fail


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
