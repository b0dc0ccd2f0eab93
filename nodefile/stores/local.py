"""A store in a local folder (OsFS) and the project's own cache (LocalCache), with
the copies they make: a reflink where the filesystem offers one, never a hardlink.
"""
from __future__ import annotations

import errno
import fcntl
import itertools
import os
import stat

from ..model import FailureClass
from .artifacts import ArtifactStore
from .manifests import MAX_MANIFEST, EntryError, StoreError

_TMP_SEQ = itertools.count()  # temporary names: pid + sequence (unique per process, no syscall)


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
