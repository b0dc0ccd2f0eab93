"""A store behind an fsspec URL (s3://, gs://, memory://...): each request within the
store's timeout, or the store is marked down for the build.
"""
from __future__ import annotations

import os
import threading

from ..model import FailureClass
from .manifests import MAX_MANIFEST, EntryError, StoreError

DEFAULT_TIMEOUT = 10.0  # seconds a remote store may stay silent (connect, or one read)
CHUNK = 8 << 20  # a remote blob is read in ranges of this size, each with its own deadline
MIN_RATE = 1 << 20  # bytes/s a transfer may be slow at before its chunk counts as silent
WAIT_NOTICE = 2.0  # seconds of waiting on a remote store before a line says so


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
