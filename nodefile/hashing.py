"""xxh3-128 of files behind a stat cache, and the node key.

A file's hash is re-read only when its stat (size, mtime_ns, ctime_ns, inode)
changed, or when its mtime or ctime lies within its filesystem's timestamp granularity of the moment
its hash was recorded (fsclock.racy_ns: 20 ms on ext4/xfs/btrfs/tmpfs, 2 s
elsewhere): a write in the same tick as our read would otherwise go unseen
(git's "racy clean" problem). Such a file is re-hashed until its stamp is old enough.
"""
from __future__ import annotations

import json
import os
import stat as statmod
import threading
import time

import xxhash

from .fsclock import COARSE_NS, racy_ns
from .model import FORMAT_VERSION, Node

RACY_NS = COARSE_NS  # the widest racy window; each file gets its filesystem's (fsclock.py)
CHUNK = 1 << 20  # files up to this size are read in one call
READ = 128 << 10  # larger files in 128 KiB reads: the buffer stays in L2 between the copy and the
                  # hash (measured on this machine: 9.1 GiB/s, against 2.4 with 1 MiB reads)


def hash_bytes(data: bytes) -> str:
    return xxhash.xxh3_128_hexdigest(data)


_buffers = threading.local()


def json_encoder(separators=(", ", ": "), default=None, sort_keys: bool = False):
    """json.dumps with these settings, as a function, its encoder built once: json.dumps
    (and JSONEncoder.encode) build a C encoder on every call, three quarters of the
    cost of dumping a small list (2.2 against 0.55 µs), and a recipe's record, key,
    job file and cache manifest make about ten such dumps. The same text as json.dumps
    (keys are hashed from it); objects must not contain themselves."""
    base = json.JSONEncoder(separators=separators, default=default, sort_keys=sort_keys)
    from json import encoder as je
    make = getattr(je, "c_make_encoder", None)
    if make is None:  # no C accelerator (another Python)
        return base.encode
    enc = make(None, base.default, je.encode_basestring_ascii, None, separators[1], separators[0],
               sort_keys, False, True)

    def dumps(obj) -> str:
        return "".join(enc(obj, 0))
    return dumps


dumps = json_encoder()  # json.dumps(x)
compact_json = json_encoder((",", ":"))  # json.dumps(x, separators=(",", ":"))
_param_json = json_encoder(default=str, sort_keys=True)


def _buffer() -> bytearray:
    """One reusable read buffer per thread (not one per file)."""
    buf = getattr(_buffers, "buf", None)
    if buf is None:
        buf = _buffers.buf = bytearray(READ)
    return buf


PIPELINE = 16 << 20  # files from this size are read and hashed on two cores at once
PIPE_READ = 1 << 20


def _hash_pipelined(f) -> str:
    """Read in 1 MiB blocks while another thread hashes the previous one (xxhash
    releases the GIL): reading and hashing overlap, where one core does one then
    the other. Measured on a 1 GiB file in the page cache: as fast as cat
    (1.0x), against 0.8x for the one-thread loop."""
    import mmap
    import queue
    h = xxhash.xxh3_128()
    full: queue.SimpleQueue = queue.SimpleQueue()
    free: queue.SimpleQueue = queue.SimpleQueue()
    for _ in range(2):
        # an anonymous mmap, not a bytearray: on this machine reads into a freshly
        # malloc'ed 1 MiB bytearray (a private mapping) run at a fifth of the speed
        free.put(mmap.mmap(-1, PIPE_READ))

    def hasher():
        while True:
            item = full.get()
            if item is None:
                return
            buf, n = item
            h.update(memoryview(buf)[:n])
            free.put(buf)

    t = threading.Thread(target=hasher, name="nodefile-hash", daemon=True)
    t.start()
    try:
        while True:
            buf = free.get()
            n = f.readinto(buf)
            if not n:
                break
            full.put((buf, n))
    finally:
        full.put(None)
        t.join()
    return h.hexdigest()


EMPTY = xxhash.xxh3_128_hexdigest(b"")


def hash_file_content(path: str, size: int | None = None) -> str:
    if size == 0:  # an empty file as its stat saw it (stamp files, `touch` outputs): nothing to read
        return EMPTY
    if size is not None and size < CHUNK:  # a small file: one read on a bare fd (no io object)
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = os.read(fd, size + 1)
            if len(data) <= size:
                return xxhash.xxh3_128_hexdigest(data)
        finally:
            os.close(fd)
        # it grew since its stat: hash what is there now
    with open(path, "rb", buffering=0) as f:
        if size is not None and size <= CHUNK:
            return xxhash.xxh3_128_hexdigest(f.read())
        if size is not None and size >= PIPELINE:
            return _hash_pipelined(f)
        h = xxhash.xxh3_128()
        buf = _buffer()
        view = memoryview(buf)
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(view[:n])
        return h.hexdigest()


class Hasher:
    """Content hashes of project files (paths relative to root), memoised per run."""

    def __init__(self, root: str, state):
        self.root = root
        self.state = state
        self.memo: dict[str, str | None] = {}
        self.bytes_read = 0
        self.seen: set[str] = set()  # every path consulted (for the no-op fast path)
        # path -> (size, mtime_ns, ino, ctime_ns, dev, is_dir) as hashed (model.FILE_STAT),
        # None when it was missing: the no-op record keeps these, never a later stat (an
        # edit after the hash must show); size() and kind() answer from them
        self.stats: dict[str, tuple | None] = {}

    def invalidate(self, paths=None) -> None:
        if paths is None:
            self.memo.clear()
            self.stats.clear()
        else:
            for p in paths:
                self.memo.pop(p.rstrip("/"), None)
                self.stats.pop(p.rstrip("/"), None)

    def abspath(self, rel: str) -> str:
        return rel if rel[:1] == "/" else f"{self.root}/{rel}"  # os.path.join, without its checks

    def hash(self, rel: str) -> str | None:
        """The file's (or directory tree's) hash, or None when it does not exist."""
        key = rel.rstrip("/")
        if key in self.memo:
            return self.memo[key]
        self.seen.add(key)
        try:
            st = os.stat(self.abspath(key))
        except (FileNotFoundError, NotADirectoryError):
            self.memo[key] = None
            self.stats[key] = None
            return None
        is_dir = statmod.S_ISDIR(st.st_mode)
        self.stats[key] = (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns, st.st_dev, is_dir)
        h = self._tree(key) if is_dir else self._file(key, st)
        self.memo[key] = h
        return h

    def size(self, rel: str) -> int:
        """The size of a file as hash() saw it (stat-ed again when hash() was not asked)."""
        key = rel.rstrip("/")
        seen = self.stats.get(key)
        if seen is not None:
            size, _, _, _, _, is_dir = seen
            if not is_dir:
                return size
        try:
            return os.path.getsize(self.abspath(key))
        except OSError:
            return 0

    def kind(self, rel: str) -> str | None:
        key = rel.rstrip("/")
        if key in self.memo:  # as hash() saw it
            return None if self.memo[key] is None else "dir" if self.stats[key][5] else "file"  # is_dir
        try:
            st = os.stat(self.abspath(key))
        except OSError:
            return None
        return "dir" if statmod.S_ISDIR(st.st_mode) else "file"

    def _file(self, rel: str, st: os.stat_result) -> str:
        old = self.state.stamp(rel)
        racy = racy_ns(st.st_dev)
        # the ctime too: a same-size rewrite whose mtime was restored (cp -p, rsync -t,
        # touch -r) keeps size, mtime and inode, but the kernel sets its ctime
        if old is not None:
            size, mtime, ino, ctime, known, recorded = old  # model.STAMP
            if size == st.st_size and mtime == st.st_mtime_ns and ino == st.st_ino and ctime == st.st_ctime_ns \
                    and recorded - max(st.st_mtime_ns, st.st_ctime_ns) > racy:
                return known
        now = time.time_ns()
        h = hash_file_content(self.abspath(rel), st.st_size)
        self.bytes_read += st.st_size
        new = (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns, h, now)
        if old is None or old[:5] != new[:5] or old[5] - max(st.st_mtime_ns, st.st_ctime_ns) <= racy:
            self.state.put_stamp(rel, new)
        return h

    def _tree(self, rel: str) -> str:
        items = []
        base = self.abspath(rel)
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            self.seen.add(os.path.relpath(dirpath, self.root).replace(os.sep, "/"))
            for fn in sorted(filenames):
                full = os.path.join(dirpath, fn)
                sub = os.path.relpath(full, base).replace(os.sep, "/")
                child = f"{rel}/{sub}"
                self.seen.add(child)
                try:
                    st = os.stat(full)
                except OSError:
                    continue
                self.stats[child] = (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns, st.st_dev, False)
                items.append((sub, self._file(child, st)))
        items.sort()
        return tree_hash(items)


def tree_hash(items) -> str:
    """A directory's hash from its (relative path, file hash) pairs, sorted by path."""
    return hash_bytes(("dir\0" + "\0".join(f"{rel}\0{h}" for rel, h in items)).encode())


def key_parts(node: Node, hasher: Hasher, closure=None, code=None) -> dict:
    """The components of a node's key, in a fixed order: component id -> value.

    Values are short strings (hashes, JSON of params) so that `node explain`
    can show old -> new per component. `closure(script) -> [paths]` gives the
    local files a script imports or sources (the code closure); `code(node, recipe)`
    the parts of a function recipe (`call`, `r_call`): its code, per function.
    """
    parts: dict[str, str | None] = {"format": str(FORMAT_VERSION)}
    parts["outputs"] = dumps([[e.name, list(e.paths)] for e in node.outputs])
    parts["recipes"] = dumps([r.signature() for r in node.recipes if r.kind != "fetch"])
    for r in node.recipes:
        if r.script:
            parts[f"script:{r.label or r.script}"] = hasher.hash(r.script)
        if code is not None and r.kind in ("call", "r_call"):
            for part, h in code(node, r).items():  # per function, not per file
                parts.setdefault(part, h)
        elif closure is not None and r.script:
            for dep in closure(node, r):
                parts.setdefault(f"import:{dep}", hasher.hash(dep))
    for name, value in sorted(node.params):
        parts[f"param:{name}"] = _param_json(value)
    for name, value in node.wildcards:
        parts[f"wildcard:{name}"] = value
    parts["inputs"] = dumps([[e.name, list(e.paths)] for e in node.inputs])
    for p in node.input_paths:
        parts.setdefault(f"input:{p}", hasher.hash(p))
    return parts


def key_of(parts: dict) -> str:
    return hash_bytes(compact_json(list(parts.items())).encode())
