"""The local cache and backup stores: artifacts keyed by node key.

Layout, the same for the local cache (.nodefile/cache) and every store:
    manifests/<key[:2]>/<key>.json   {"node", "key", "created", "outputs": [...]}
    blobs/<hash[:2]>/<hash>          file contents, addressed by their xxh3-128

An output entry is {"path", "type": "file", "hash", "size"} or, for a directory
output, {"path": "plots/", "type": "dir", "hash": tree hash, "files": [{"rel",
"hash", "size"}]}. Blobs are shared between keys, so switching a branch back
and forth costs no space and no rebuild.

A restore never trusts a store: every file is written to a temporary name in
.nodefile/tmp, its hash checked against the manifest, and only then renamed
over the declared output path. A manifest naming any path other than the
node's declared outputs is rejected, so a store can never write elsewhere.

A store is untrusted input (SPEC §9): every manifest field is checked before it
is used (check_manifest), a store entry is read only when it is a regular file
whose real path lies inside the store, never past its declared size, and a
client never deletes or rewrites an entry of a store it does not push to (a
damaged blob is remembered, and repaired only by this client's own push).
Remote stores answer within their timeout or are marked down for the build.
"""
from __future__ import annotations

import errno
import fcntl
import itertools
import json
import os
import posixpath
import stat
import threading
import time

from .hashing import compact_json, hash_file_content, tree_hash
from .model import FailureClass


_TMP_SEQ = itertools.count()  # temporary names: pid + sequence (unique per process, no syscall)
HASH_LEN = 32  # xxh3-128, lowercase hex: blob names and node keys
_HEX = "0123456789abcdef"
MAX_MANIFEST = 64 << 20  # bytes: a manifest larger than this is rejected unread
DEFAULT_TIMEOUT = 10.0  # seconds a remote store may stay silent (connect, or one read)
CHUNK = 8 << 20  # a remote blob is read in ranges of this size, each with its own deadline
MIN_RATE = 1 << 20  # bytes/s a transfer may be slow at before its chunk counts as silent
WAIT_NOTICE = 2.0  # seconds of waiting on a remote store before a line says so
ORPHAN_CHECK = 1 << 30  # node gc --store: an unreferenced blob larger than this is not read


class StoreError(Exception):
    """A failed transfer. `failure` is unavailable | transient | recipe error (corrupt)."""

    def __init__(self, message: str, failure: str = FailureClass.TRANSIENT):
        super().__init__(message)
        self.failure = failure


class EntryError(Exception):
    """A store entry that must not be used: outside the store, not a regular file,
    larger or smaller than declared. ArtifactStore names the store and rejects it."""


def is_hash(h) -> bool:
    return type(h) is str and len(h) == HASH_LEN and not h.strip(_HEX)


def _is_size(n) -> bool:
    return type(n) is int and n >= 0


def check_manifest(m, key: str) -> str | None:
    """Why a parsed manifest cannot be used for `key`, or None. Checks every field a
    restore reads: the key, output paths and types, hashes (lowercase hex of the
    right length), sizes (non-negative integers), a directory's relative paths."""
    if not isinstance(m, dict):
        return "is not a JSON object"
    if m.get("key") != key:
        return "is for another key"
    outputs = m.get("outputs")
    if not isinstance(outputs, list) or not outputs:
        return "lists no outputs"
    paths = set()
    for o in outputs:
        why = _check_output(o)
        if why:
            return why
        if o["path"] in paths:
            return f"names output '{o['path']}' twice"
        paths.add(o["path"])
    return None


def _check_output(o) -> str | None:
    if not isinstance(o, dict) or type(o.get("path")) is not str or not o["path"]:
        return "has an output without a path"
    path, kind = o["path"], o.get("type")
    if not is_hash(o.get("hash")):
        return f"has a bad hash for '{path[:200]}'"
    if kind == "file" and not path.endswith("/"):
        return None if _is_size(o.get("size")) else f"has a bad size for '{path[:200]}'"
    if kind != "dir" or not path.endswith("/") or not isinstance(o.get("files"), list):
        return f"has a bad type for '{path[:200]}'"
    rels = set()
    for f in o["files"]:
        if not isinstance(f, dict) or type(f.get("rel")) is not str:
            return f"has a file without a path in '{path[:200]}'"
        rel = f["rel"]
        if not _safe_rel(rel):
            return f"has file '{rel[:200]}' in directory output '{path[:200]}' that escapes it"
        if not is_hash(f.get("hash")) or not _is_size(f.get("size")):
            return f"has a bad hash or size for '{path[:200]}{rel[:200]}'"
        if rel in rels:
            return f"names '{path[:200]}{rel[:200]}' twice"
        rels.add(rel)
    return None


# -- filesystems -------------------------------------------------------------------------
class OsFS:
    """A local folder. Files are written to a temporary name and renamed.

    confined (a store, not the project's own cache): an entry is used only when its
    real path (symlinks resolved) lies inside the store's real folder."""

    down = None  # a local folder is never marked down by a timeout

    def __init__(self, base: str, atomic: bool = True, confined: bool = True):
        self.base = base
        self._dirs: set[str] = set()  # folders known to exist
        # atomic: small files (manifests) too go through a temporary name. The local
        # cache writes them in place: it has one writer (the project lock), and a
        # manifest cut short by a crash is not valid JSON, so a reader rejects it
        self.atomic = atomic
        self.confined = confined
        self._real: str | None = None

    def _p(self, rel: str) -> str:
        return os.path.join(self.base, rel)

    def _real_base(self) -> str:
        if self._real is not None:
            return self._real
        real = os.path.realpath(self.base)
        if os.path.isdir(real):
            self._real = real  # once it exists, it stays where it is
        return real

    def _resolve(self, rel: str) -> str:
        """The path to open for rel: its real path, which must lie inside the store."""
        path = self._p(rel)
        if not self.confined:
            return path
        real = os.path.realpath(path)
        if not real.startswith(self._real_base() + os.sep):
            raise EntryError(f"leads outside the store (to {real})")
        return real

    def _open(self, rel: str) -> tuple[int, int] | None:
        """(fd, size) of the regular file rel, or None when it is missing. Never
        blocks: a FIFO is opened non-blocking and refused after fstat."""
        path = self._resolve(rel)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise EntryError("is a symbolic link") from None
            raise
        try:
            st = os.fstat(fd)
        except OSError:
            os.close(fd)
            raise
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise EntryError(f"is not a regular file ({_kind(st.st_mode)})")
        return fd, st.st_size

    def _tmp_for(self, path: str) -> str:
        d = os.path.dirname(path)
        if d not in self._dirs:
            os.makedirs(d, exist_ok=True)
            if self.confined:
                real = os.path.realpath(d)
                if real != self._real_base() and not real.startswith(self._real_base() + os.sep):
                    raise StoreError(f"folder {os.path.relpath(d, self.base)} leads outside the store "
                                     f"(to {real}); nothing written", FailureClass.RECIPE_ERROR)
            self._dirs.add(d)
        return f"{path}.tmp-{os.getpid()}-{next(_TMP_SEQ)}"

    def read_bytes(self, rel: str, limit: int = MAX_MANIFEST) -> bytes | None:
        got = self._open(rel)
        if got is None:  # the usual answer for a stale node's key: no exception
            return None
        fd, size = got
        try:
            if size > limit:
                raise EntryError(f"is larger than {limit} bytes")
            parts = []
            left = limit + 1
            while left > 0:
                b = os.read(fd, min(left, 1 << 20))
                if not b:
                    break
                parts.append(b)
                left -= len(b)
        finally:
            os.close(fd)
        if left <= 0:
            raise EntryError(f"is larger than {limit} bytes")
        return b"".join(parts)

    def exists(self, rel: str) -> bool:
        return os.access(self._p(rel), os.F_OK)

    def size(self, rel: str) -> int | None:
        """The size of rel when it is a regular file inside the store, else None."""
        try:
            got = self._open(rel)
        except (EntryError, OSError):
            return None
        if got is None:
            return None
        os.close(got[0])
        return got[1]

    def write_bytes(self, rel: str, data: bytes) -> None:
        path = self._p(rel)
        if not self.atomic:
            write_file(path, data)
            return
        tmp = self._tmp_for(path)
        try:
            _write_new(tmp, data)
        except FileNotFoundError:  # the folder went away (gc, a user): make it again
            self._dirs.discard(os.path.dirname(path))
            tmp = self._tmp_for(path)
            _write_new(tmp, data)
        os.replace(tmp, path)

    def put_file(self, local: str, rel: str, size: int = 0) -> None:
        path = self._p(rel)
        tmp = self._tmp_for(path)
        try:
            copy_file(local, tmp)
        except FileNotFoundError:
            if not os.path.exists(local):
                raise
            self._dirs.discard(os.path.dirname(path))
            tmp = self._tmp_for(path)
            copy_file(local, tmp)
        os.replace(tmp, path)

    def get_file(self, rel: str, local: str, size: int) -> None:
        """Copy the blob rel to local: exactly `size` bytes, or an EntryError."""
        got = self._open(rel)
        if got is None:
            raise EntryError("is missing")
        fd, actual = got
        try:
            if actual != size:
                raise EntryError(f"has {actual} bytes where the manifest says {size}")
            copy_bounded(fd, local, size)
        finally:
            os.close(fd)

    def list(self, rel: str) -> list[tuple[str, int, float]]:
        out = []
        for d, _, files in os.walk(self._p(rel)):
            for f in files:
                full = os.path.join(d, f)
                st = os.lstat(full)
                out.append((os.path.relpath(full, self.base).replace(os.sep, "/"), st.st_size, st.st_mtime))
        return out

    def scan(self, rel: str) -> list[tuple[str, str, int]]:
        """(path, kind, size) of every entry two levels under rel (the store layout),
        never following a symlink: kind is file, link, dir or other (a FIFO, a
        device); an entry that is not a folder one level down is listed as it is."""
        out = []
        top = self._p(rel)
        try:
            level1 = list(os.scandir(top))
        except (FileNotFoundError, NotADirectoryError):
            return out
        for e1 in level1:
            r1 = f"{rel}/{e1.name}"
            if e1.is_symlink() or not e1.is_dir(follow_symlinks=False):
                out.append((r1, _entry_kind(e1), _lsize(e1)))
                continue
            for e2 in os.scandir(e1.path):
                out.append((f"{r1}/{e2.name}", _entry_kind(e2), _lsize(e2)))
        return out

    def rm(self, rel: str) -> None:
        path = self._p(rel)
        if os.path.isdir(path) and not os.path.islink(path):
            import shutil
            shutil.rmtree(path)  # never follows a symlink inside it
            return
        try:
            os.remove(path)  # a symlink itself, never what it points to
        except FileNotFoundError:
            pass


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a file"


def _entry_kind(e) -> str:
    if e.is_symlink():
        return "link"
    if e.is_dir(follow_symlinks=False):
        return "dir"
    return "file" if e.is_file(follow_symlinks=False) else "other"


def _lsize(e) -> int:
    try:
        return e.stat(follow_symlinks=False).st_size
    except OSError:
        return 0


def copy_bounded(fd: int, dst: str, size: int) -> None:
    """Copy exactly `size` bytes from the open regular file fd to a new file dst
    (a reflink where it is offered, else an in-kernel copy, else a read loop);
    an EntryError when the source has fewer, and never more than size bytes."""
    out = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.ioctl(out, _FICLONE, fd)
            if os.fstat(out).st_size == size:
                return
            os.ftruncate(out, 0)  # it grew or shrank since fstat: copy by hand
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.EXDEV, errno.EINVAL, errno.ENOTTY, errno.EBADF, errno.ENOSYS):
                raise
        done = 0
        try:
            while done < size:
                n = os.copy_file_range(fd, out, size - done, done, done)
                if not n:
                    break
                done += n
        except (OSError, AttributeError):  # not Linux, or not between these filesystems
            pass
        os.lseek(out, done, os.SEEK_SET)
        while done < size:
            b = os.pread(fd, min(size - done, 1 << 20), done)
            if not b:
                break
            view = memoryview(b)
            while view:
                view = view[os.write(out, view):]
            done += len(b)
        if done < size:
            raise EntryError(f"has only {done} of its {size} bytes")
    finally:
        os.close(out)


def write_file(path: str, data: bytes) -> None:
    """Write a small file, making its folder only when it is missing (right even if
    .nodefile/ was removed meanwhile)."""
    try:
        _write_new(path, data)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        _write_new(path, data)


def _write_new(path: str, data: bytes) -> None:
    """Write a small file on a bare fd (an io object costs four more syscalls)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


class FsspecFS:
    """Any fsspec URL (s3://, gs://, memory://, file://...).

    Every request runs in a daemon thread and is waited for at most `timeout`
    seconds (plus time for the bytes it moves at MIN_RATE): a store that does not
    answer in time is marked down (`down` holds why) and is not asked again by this
    process. A line (on_wait) names the store while a request waits."""

    def __init__(self, url: str, options: dict | None = None, name: str = "", timeout: float | None = None):
        import fsspec
        self.name = name
        self.timeout = float(timeout) if timeout else DEFAULT_TIMEOUT
        options = client_timeouts(fsspec.core.split_protocol(url)[0], dict(options or {}), self.timeout)
        self.fs, self.base = fsspec.core.url_to_fs(url, **options)
        if isinstance(getattr(self.fs, "retries", None), int):
            self.fs.retries = min(self.fs.retries, 2)  # s3fs's own loop around each request
        self.base = self.base.rstrip("/")
        self.down: str | None = None
        self.on_wait = None  # callable(text): a transfer is waiting on this store
        self._told: set[str] = set()

    def _p(self, rel: str) -> str:
        return f"{self.base}/{rel}"

    def _call(self, what: str, fn, *args, moves: int = 0, **kw):
        """fn(*args, **kw) within the store's deadline; exceptions pass through."""
        if self.down:
            raise StoreError(self.down, FailureClass.TRANSIENT)
        box: list = []
        done = threading.Event()

        def work():
            try:
                box.append((True, fn(*args, **kw)))
            except BaseException as e:  # handed to the waiting thread
                box.append((False, e))
            finally:
                done.set()

        threading.Thread(target=work, daemon=True, name=f"nodefile-store-{self.name}").start()
        limit = self.timeout + moves / MIN_RATE
        if not done.wait(min(WAIT_NOTICE, limit)):
            if self.on_wait is not None and what not in self._told:
                self._told.add(what)
                self.on_wait(f"waiting for store '{self.name}' ({what}; gives up after {limit:g}s)")
            if not done.wait(max(0.0, limit - WAIT_NOTICE)):
                self.down = (f"store '{self.name}' is unreachable: no answer within {limit:g}s ({what}); "
                             "not asked again in this build")
                raise StoreError(self.down, FailureClass.TRANSIENT)
        ok, value = box[0]
        if ok:
            return value
        raise value

    def read_bytes(self, rel: str, limit: int = MAX_MANIFEST) -> bytes | None:
        try:
            data = self._call(rel, self.fs.cat_file, self._p(rel), start=0, end=limit + 1)
        except FileNotFoundError:
            return None
        if len(data) > limit:
            raise EntryError(f"is larger than {limit} bytes")
        return data

    def exists(self, rel: str) -> bool:
        return self._call(rel, self.fs.exists, self._p(rel))

    def size(self, rel: str) -> int | None:
        try:
            return self._call(rel, self.fs.size, self._p(rel))
        except FileNotFoundError:
            return None

    def write_bytes(self, rel: str, data: bytes) -> None:
        self._call(rel, self.fs.pipe_file, self._p(rel), data, moves=len(data))

    def put_file(self, local: str, rel: str, size: int = 0) -> None:
        self._call(rel, self.fs.put_file, local, self._p(rel), moves=size)

    def get_file(self, rel: str, local: str, size: int) -> None:
        """Read the blob rel into local in ranges of CHUNK bytes: exactly `size`
        bytes, or an EntryError."""
        p = self._p(rel)
        try:
            actual = self._call(rel, self.fs.size, p)
        except FileNotFoundError:
            raise EntryError("is missing") from None
        if actual != size:
            raise EntryError(f"has {actual} bytes where the manifest says {size}")
        fd = os.open(local, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            for start in range(0, size, CHUNK):
                end = min(size, start + CHUNK)
                data = self._call(rel, self.fs.cat_file, p, start=start, end=end, moves=end - start)
                if len(data) != end - start:
                    raise EntryError(f"changed while it was read ({len(data)} bytes at {start})")
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
        finally:
            os.close(fd)

    def list(self, rel: str) -> list[tuple[str, int, float]]:
        out = []
        try:
            found = self._call(rel, self.fs.find, self._p(rel), detail=True)
        except FileNotFoundError:
            return out
        for path, info in found.items():
            mtime = info.get("mtime") or info.get("LastModified") or 0
            if hasattr(mtime, "timestamp"):
                mtime = mtime.timestamp()
            out.append((path[len(self.base) + 1:], info.get("size") or 0, float(mtime)))
        return out

    def scan(self, rel: str) -> list[tuple[str, str, int]]:
        return [(path, "file", size) for path, size, _ in self.list(rel)]

    def rm(self, rel: str) -> None:
        try:
            self._call(rel, self.fs.rm, self._p(rel))
        except FileNotFoundError:
            pass


def client_timeouts(protocol: str, options: dict, timeout: float) -> dict:
    """Storage options with the store's timeout as the client's own connect and read
    timeouts and few retries (s3fs), where the Nodefile's options do not set them:
    the client then gives up by itself, not only nodefile's wait."""
    if protocol not in ("s3", "s3a"):
        return options
    config = dict(options.get("config_kwargs") or {})
    config.setdefault("connect_timeout", timeout)
    config.setdefault("read_timeout", timeout)
    config.setdefault("retries", {"max_attempts": 2})
    options["config_kwargs"] = config
    return options


_FICLONE = 0x40049409


def copy_file(src: str, dst: str) -> None:
    """Copy with a reflink where the filesystem offers one (a copy-on-write clone:
    a later in-place edit of either file cannot change the other), else a copy.
    Never a hardlink: editing an output in place would corrupt the cache."""
    with open(src, "rb") as fs, open(dst, "wb") as fd:
        try:
            fcntl.ioctl(fd.fileno(), _FICLONE, fs.fileno())
            return
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.EXDEV, errno.EINVAL, errno.ENOTTY, errno.EBADF, errno.ENOSYS):
                raise
        try:  # an in-kernel copy: no buffer in Python, no bytes object per block
            while os.copy_file_range(fs.fileno(), fd.fileno(), 1 << 30):
                pass
            return
        except (OSError, AttributeError):  # not Linux, or not between these filesystems
            pass
        import shutil
        shutil.copyfileobj(fs, fd, 1 << 20)  # from where the kernel copy stopped


# -- artifacts ---------------------------------------------------------------------------
def manifest_path(key: str) -> str:
    return f"manifests/{key[:2]}/{key}.json"


def blob_path(h: str) -> str:
    return f"blobs/{h[:2]}/{h}"


def describe_outputs(root: str, paths, hasher) -> list[dict]:
    """The manifest entries of a node's current outputs."""
    out = []
    for p in paths:
        if p.endswith("/"):
            full = os.path.join(root, p.rstrip("/"))
            files = []
            for d, dirs, names in os.walk(full):
                dirs.sort()
                for n in sorted(names):
                    f = os.path.join(d, n)
                    rel = os.path.relpath(f, full).replace(os.sep, "/")
                    h = hasher.hash(f"{p.rstrip('/')}/{rel}")
                    files.append({"rel": rel, "hash": h, "size": os.path.getsize(f)})
            out.append({"path": p, "type": "dir", "hash": hasher.hash(p), "files": files})
        else:
            out.append({"path": p, "type": "file", "hash": hasher.hash(p), "size": hasher.size(p)})
    return out


def manifest_size(m: dict) -> int:
    return sum(o.get("size", 0) if o["type"] == "file" else sum(f["size"] for f in o["files"])
               for o in m["outputs"])


class ArtifactStore:
    def __init__(self, name: str, fs, push: bool = False):
        self.name = name
        self.fs = fs
        self.push_enabled = push
        self._have: set[tuple[str, int]] = set()  # (hash, size) of blobs put or found in this process
        self.damaged: set[str] = set()  # blobs found damaged: left alone, repaired by our own push
        self.problems: list[str] = []  # every rejection and outage, for status and the summary
        self._down: str | None = None

    @property
    def down(self) -> str | None:
        """Why this store is not asked again in this process (unreachable), or None."""
        return self._down or self.fs.down

    def _reject(self, what: str, why) -> StoreError:
        text = f"store '{self.name}': {what} {why}; rejected"
        self.problems.append(text)
        return StoreError(text, FailureClass.RECIPE_ERROR)

    def _unreachable(self, e: Exception) -> StoreError:
        if isinstance(e, StoreError):
            if self.fs.down and self.fs.down not in self.problems:
                self.problems.append(self.fs.down)
            return e
        self._down = f"store '{self.name}' is unreachable: {_why(e)}"
        self.problems.append(self._down)
        return StoreError(self._down, FailureClass.TRANSIENT)

    def manifest(self, key: str) -> dict | None:
        if self.down:
            raise StoreError(self.down, FailureClass.TRANSIENT)
        rel = manifest_path(key)
        try:
            data = self.fs.read_bytes(rel, MAX_MANIFEST)
        except EntryError as e:
            raise self._reject(f"manifest {rel}", e) from None
        except Exception as e:  # network and permission errors of any backend
            raise self._unreachable(e) from None
        if data is None:
            return None
        try:
            m = json.loads(data)
        except (ValueError, RecursionError) as e:
            raise self._reject(f"manifest {rel}", f"is corrupt: not valid JSON ({_why(e)})") from None
        why = check_manifest(m, key)
        if why:
            raise self._reject(f"manifest {rel}", why)
        return m

    def put(self, node_name: str, key: str, root: str, outputs: list[dict]) -> int:
        """Upload blobs first, the manifest last: a reader never sees a manifest
        whose blobs are not all there. A blob this process found damaged is
        uploaded again. Returns bytes uploaded."""
        sent = 0
        for o in outputs:
            items = [(o["path"], o["hash"], o["size"])] if o["type"] == "file" else \
                [(o["path"].rstrip("/") + "/" + f["rel"], f["hash"], f["size"]) for f in o["files"]]
            for path, h, size in items:
                if (h, size) in self._have:  # many outputs share content (empty files, copies)
                    continue
                if h in self.damaged or self.fs.size(blob_path(h)) != size:  # missing, or damaged: (re)upload
                    self.fs.put_file(os.path.join(root, path), blob_path(h), size)
                    self.damaged.discard(h)
                    sent += size
                self._have.add((h, size))
        m = {"node": node_name, "key": key, "created": time.time(), "outputs": outputs}
        self.fs.write_bytes(manifest_path(key), compact_json(m).encode())
        return sent

    def restore(self, m: dict, declared: tuple[str, ...], root: str, tmpdir: str) -> tuple[dict, int]:
        """Fetch every output into tmpdir, verify, then rename into place. m has
        passed check_manifest. Returns ({declared path: hash}, bytes)."""
        entries = {o["path"]: o for o in m["outputs"]}
        if set(entries) != set(declared):
            extra = sorted(set(entries) - set(declared))
            raise self._reject(f"manifest for node '{str(m.get('node'))[:200]}'", "names "
                               + (f"paths outside its outputs ({', '.join(p[:200] for p in extra)})" if extra
                                  else "a different set of outputs"))
        os.makedirs(tmpdir, exist_ok=True)
        staged: list[tuple[str, str]] = []
        got = 0
        try:
            for path in declared:
                o = entries[path]
                import uuid
                tmp = os.path.join(tmpdir, uuid.uuid4().hex)
                staged.append((path, tmp))  # before it exists: a failure removes it
                if o["type"] == "dir":
                    got += self._fetch_tree(o, path, tmp)
                else:
                    got += self._fetch_blob(o["hash"], o["size"], tmp, path)
        except BaseException:
            for _, tmp in staged:
                _remove(tmp)
            raise
        for path, tmp in staged:
            dst = os.path.join(root, path.rstrip("/"))
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            if os.path.lexists(dst):
                _remove(dst)
            os.replace(tmp, dst)
        return {p: entries[p]["hash"] for p in declared}, got

    def _fetch_tree(self, o: dict, path: str, tmp: str) -> int:
        os.makedirs(tmp)
        got = 0
        pairs = []
        for f in o["files"]:
            rel = f["rel"]
            dst = os.path.join(tmp, rel)
            try:
                os.makedirs(os.path.dirname(dst), exist_ok=True)
            except OSError:  # "a" and "a/b" both listed as files
                raise self._reject(f"directory output '{path}'", f"lists '{rel}' inside another file") from None
            got += self._fetch_blob(f["hash"], f["size"], dst, f"{path}{rel}")
            pairs.append((rel, f["hash"]))
        if tree_hash(sorted(pairs)) != o["hash"]:
            raise self._reject(f"directory '{path}'", "does not match its manifest hash")
        return got

    def _fetch_blob(self, h: str, size: int, dst: str, label: str) -> int:
        if self.down:
            raise StoreError(self.down, FailureClass.TRANSIENT)
        rel = blob_path(h)
        try:
            self.fs.get_file(rel, dst, size)
        except EntryError as e:
            raise self._reject(f"blob {rel} of '{label}'", e) from None
        except StoreError as e:
            raise self._unreachable(e) from None
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG) or e.filename == dst:
                # our side (a full disk): a failed attempt, the store is not to blame
                raise StoreError(f"cannot write '{label}' to {os.path.dirname(dst)}: {e.strerror}") from None
            raise self._unreachable(e) from None
        except Exception as e:
            raise self._unreachable(e) from None
        got = hash_file_content(dst, size)
        if got != h:
            self.damaged.add(h)  # left in the store: only our own push or `node gc --store` replaces it
            raise self._reject(f"'{label}'", f"does not match its manifest hash (expected {h[:12]}, got {got[:12]})")
        return size

    def gc(self, keep_node, older_than: float | None) -> tuple[int, int]:
        """Drop manifests whose node fails keep_node(name) or older than the limit,
        then every blob no manifest references. Returns (entries, bytes) freed."""
        now = time.time()
        self._have.clear()
        live: set[str] = set()
        entries = freed = 0
        for rel, size, mtime in self.fs.list("manifests"):
            try:
                m = json.loads(self.fs.read_bytes(rel) or b"{}")
            except (ValueError, RecursionError, EntryError, OSError):
                m = {}
            if not isinstance(m, dict) or check_manifest(m, m.get("key")):
                m = {}
            created = m.get("created", mtime)
            if type(created) not in (int, float):
                created = mtime
            if not keep_node(m.get("node")) or (older_than is not None and now - created > older_than):
                self.fs.rm(rel)
                entries += 1
                freed += size
                continue
            for o in m["outputs"]:
                if o["type"] == "dir":
                    live.update(f["hash"] for f in o["files"])
                else:
                    live.add(o["hash"])
        for rel, size, _ in self.fs.list("blobs"):
            if posixpath.basename(rel) not in live:
                self.fs.rm(rel)
                freed += size
        return entries, freed

    def remove_damaged(self, tmpdir: str) -> tuple[int, int, list[tuple[str, str]]]:
        """`node gc --store NAME`: check every entry of the store and remove the
        damaged ones: symlinks, FIFOs and other non-files, blobs whose bytes do not
        hash to their name or whose size is not the one their manifests declare,
        and manifests that are invalid or name a blob that is missing or damaged.
        A blob is read only up to its declared size (an unreferenced one only up to
        ORPHAN_CHECK bytes, larger ones are left alone, as are the temporary files
        of a push under way). Returns (manifests checked, blobs checked,
        [(entry, why) removed])."""
        removed: list[tuple[str, str]] = []
        found: dict[str, dict | str] = {}  # manifest -> its content, or why it is damaged
        declared: dict[str, set[int]] = {}  # blob hash -> the sizes manifests give it
        for rel, kind, _ in self.fs.scan("manifests"):
            if ".tmp-" not in rel:
                found[rel] = m = self._read_manifest(rel, kind)
                for h, size in _blobs_of(m) if isinstance(m, dict) else ():
                    declared.setdefault(h, set()).add(size)
        blobs: dict[str, int | None] = {}  # hash -> size of every good blob (None: a damaged one)
        nblobs = 0
        for rel, kind, size in self.fs.scan("blobs"):
            if ".tmp-" in rel:
                continue
            nblobs += 1
            h = posixpath.basename(rel)
            why = self._blob_damage(rel, kind, size, tmpdir, declared.get(h))
            if why:
                removed.append((rel, why))
            blobs[h] = None if why else size
        for rel, m in found.items():
            why = m if isinstance(m, str) else self._missing_blob(m, blobs)
            if why:
                removed.append((rel, why))
        for rel, _ in removed:
            self.fs.rm(rel)
        return len(found), nblobs, removed

    def _blob_damage(self, rel: str, kind: str, size: int, tmpdir: str, sizes: set | None) -> str | None:
        if kind != "file":
            return f"is {_scan_kind(kind)}"
        h = posixpath.basename(rel)
        if not is_hash(h) or rel != blob_path(h):
            return "is not named by a hash in its folder"
        if sizes is not None and size not in sizes:
            return f"has {size} bytes where its manifests say {', '.join(map(str, sorted(sizes)))}"
        if sizes is None and size > ORPHAN_CHECK:
            return None  # no manifest uses it (yet): not worth reading
        import uuid
        os.makedirs(tmpdir, exist_ok=True)
        tmp = os.path.join(tmpdir, uuid.uuid4().hex)
        try:
            self.fs.get_file(rel, tmp, size)
            got = hash_file_content(tmp, size)
        except EntryError as e:
            return str(e)
        finally:
            _remove(tmp)
        return None if got == h else f"does not match its name (its bytes hash to {got[:12]})"

    def _read_manifest(self, rel: str, kind: str) -> dict | str:
        """The checked manifest at rel, or why it is damaged."""
        if kind != "file":
            return f"is {_scan_kind(kind)}"
        name = posixpath.basename(rel)
        key = name[:-5] if name.endswith(".json") else ""
        if not is_hash(key) or rel != manifest_path(key):
            return "is not named by a key in its folder"
        try:
            m = json.loads(self.fs.read_bytes(rel, MAX_MANIFEST) or b"")
        except EntryError as e:
            return str(e)
        except (ValueError, RecursionError):
            return "is not valid JSON"
        return check_manifest(m, key) or m

    def _missing_blob(self, m: dict, blobs: dict) -> str | None:
        for h, size in _blobs_of(m):
            if blobs.get(h, -1) is None or (blobs.get(h) != size and self.fs.size(blob_path(h)) != size):
                # damaged, or missing even now (a blob pushed since the scan is fine)
                return f"names blob {blob_path(h)}, which is missing or damaged"
        return None


def _blobs_of(m: dict) -> list[tuple[str, int]]:
    """(hash, size) of every blob a checked manifest names."""
    return [pair for o in m["outputs"] for pair in
            ([(f["hash"], f["size"]) for f in o["files"]] if o["type"] == "dir" else [(o["hash"], o["size"])])]


def _scan_kind(kind: str) -> str:
    return {"link": "a symbolic link", "dir": "a folder"}.get(kind, "not a regular file")


def _safe_rel(rel: str) -> bool:
    if not rel or rel.startswith("/") or "\\" in rel:
        return False
    return all(part not in ("", ".", "..") for part in rel.split("/"))


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        import shutil
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass


def _why(e: Exception) -> str:
    text = str(e) or type(e).__name__
    return text.splitlines()[0][:200]


def open_store(store) -> ArtifactStore:
    """An ArtifactStore for a model.Store (local folder or fsspec URL)."""
    url = store.url
    if "://" not in url or url.startswith("file://"):
        path = url[7:] if url.startswith("file://") else url
        return ArtifactStore(store.name, OsFS(path), store.push)
    return ArtifactStore(store.name, FsspecFS(url, dict(store.options), store.name, store.timeout), store.push)


class LocalCache(ArtifactStore):
    """The project's own cache, .nodefile/cache. Builds write it under the project
    lock, so while this process holds it nobody else adds to it: when there was no
    manifests folder at the first lookup (a project's first build), the only keys it
    can hold are the ones put since, and asking for any other key needs no syscall
    (a first build asks once for every node)."""

    def __init__(self, root: str):
        super().__init__("cache", OsFS(os.path.join(root, ".nodefile", "cache"), atomic=False, confined=False))
        self._looked = False
        self._only: set[str] | None = None  # every key it can hold, when known

    def manifest(self, key: str) -> dict | None:
        if not self._looked:
            self._looked = True
            if not os.path.isdir(os.path.join(self.fs.base, "manifests")):
                self._only = set()
        if self._only is not None and key not in self._only:
            return None
        return super().manifest(key)

    def put(self, node_name: str, key: str, root: str, outputs: list[dict]) -> int:
        if self._only is not None:
            self._only.add(key)  # before the write: a lookup must never miss what is there
        return super().put(node_name, key, root, outputs)


def local_cache(root: str) -> ArtifactStore:
    return LocalCache(root)
