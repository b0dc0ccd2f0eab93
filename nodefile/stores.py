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
"""
from __future__ import annotations

import errno
import fcntl
import itertools
import json
import os
import posixpath
import time

from .hashing import compact_json, hash_file_content, tree_hash


_TMP_SEQ = itertools.count()  # temporary names: pid + sequence (unique per process, no syscall)


class StoreError(Exception):
    """A failed transfer. `failure` is unavailable | transient | recipe error (corrupt)."""

    def __init__(self, message: str, failure: str = "transient"):
        super().__init__(message)
        self.failure = failure


# -- filesystems -------------------------------------------------------------------------
class OsFS:
    """A local folder. Files are written to a temporary name and renamed."""

    def __init__(self, base: str, atomic: bool = True):
        self.base = base
        self._dirs: set[str] = set()  # folders known to exist
        # atomic: small files (manifests) too go through a temporary name. The local
        # cache writes them in place: it has one writer (the project lock), and a
        # manifest cut short by a crash is not valid JSON, so a reader rejects it
        self.atomic = atomic

    def _p(self, rel: str) -> str:
        return os.path.join(self.base, rel)

    def _tmp_for(self, path: str) -> str:
        d = os.path.dirname(path)
        if d not in self._dirs:
            os.makedirs(d, exist_ok=True)
            self._dirs.add(d)
        return f"{path}.tmp-{os.getpid()}-{next(_TMP_SEQ)}"

    def read_bytes(self, rel: str) -> bytes | None:
        path = self._p(rel)
        if not os.access(path, os.F_OK):  # the usual answer for a stale node's key: no exception
            return None
        try:
            with open(path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def exists(self, rel: str) -> bool:
        return os.access(self._p(rel), os.F_OK)

    def size(self, rel: str) -> int | None:
        try:
            return os.path.getsize(self._p(rel))
        except OSError:
            return None

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

    def put_file(self, local: str, rel: str) -> None:
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

    def get_file(self, rel: str, local: str) -> None:
        try:
            copy_file(self._p(rel), local)
        except FileNotFoundError:
            raise StoreError(f"blob {rel} is missing", "recipe error") from None

    def list(self, rel: str) -> list[tuple[str, int, float]]:
        out = []
        for d, _, files in os.walk(self._p(rel)):
            for f in files:
                full = os.path.join(d, f)
                st = os.stat(full)
                out.append((os.path.relpath(full, self.base).replace(os.sep, "/"), st.st_size, st.st_mtime))
        return out

    def rm(self, rel: str) -> None:
        try:
            os.remove(self._p(rel))
        except FileNotFoundError:
            pass


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
    """Any fsspec URL (s3://, gs://, memory://, file://...)."""

    def __init__(self, url: str, options: dict | None = None):
        import fsspec
        self.fs, self.base = fsspec.core.url_to_fs(url, **(options or {}))
        self.base = self.base.rstrip("/")

    def _p(self, rel: str) -> str:
        return f"{self.base}/{rel}"

    def read_bytes(self, rel: str) -> bytes | None:
        try:
            return self.fs.cat_file(self._p(rel))
        except FileNotFoundError:
            return None

    def exists(self, rel: str) -> bool:
        return self.fs.exists(self._p(rel))

    def size(self, rel: str) -> int | None:
        try:
            return self.fs.size(self._p(rel))
        except FileNotFoundError:
            return None

    def write_bytes(self, rel: str, data: bytes) -> None:
        self.fs.pipe_file(self._p(rel), data)

    def put_file(self, local: str, rel: str) -> None:
        self.fs.put_file(local, self._p(rel))

    def get_file(self, rel: str, local: str) -> None:
        try:
            self.fs.get_file(self._p(rel), local)
        except FileNotFoundError:
            raise StoreError(f"blob {rel} is missing", "recipe error") from None

    def list(self, rel: str) -> list[tuple[str, int, float]]:
        out = []
        try:
            found = self.fs.find(self._p(rel), detail=True)
        except FileNotFoundError:
            return out
        for path, info in found.items():
            mtime = info.get("mtime") or info.get("LastModified") or 0
            if hasattr(mtime, "timestamp"):
                mtime = mtime.timestamp()
            out.append((path[len(self.base) + 1:], info.get("size") or 0, float(mtime)))
        return out

    def rm(self, rel: str) -> None:
        try:
            self.fs.rm(self._p(rel))
        except FileNotFoundError:
            pass


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

    def manifest(self, key: str) -> dict | None:
        try:
            data = self.fs.read_bytes(manifest_path(key))
        except StoreError:
            raise
        except Exception as e:  # network and permission errors of any backend
            raise StoreError(f"store '{self.name}' is unreachable: {_why(e)}", "transient") from None
        if data is None:
            return None
        try:
            m = json.loads(data)
            if m.get("key") != key or not isinstance(m.get("outputs"), list):
                raise ValueError("wrong key or no outputs")
        except ValueError as e:
            raise StoreError(f"store '{self.name}': manifest for {key[:12]} is corrupt ({e})", "recipe error")
        return m

    def put(self, node_name: str, key: str, root: str, outputs: list[dict]) -> int:
        """Upload blobs first, the manifest last: a reader never sees a manifest
        whose blobs are not all there. Returns bytes uploaded."""
        sent = 0
        for o in outputs:
            items = [(o["path"], o["hash"], o["size"])] if o["type"] == "file" else \
                [(o["path"].rstrip("/") + "/" + f["rel"], f["hash"], f["size"]) for f in o["files"]]
            for path, h, size in items:
                if (h, size) in self._have:  # many outputs share content (empty files, copies)
                    continue
                if self.fs.size(blob_path(h)) != size:  # missing, or damaged: (re)upload
                    self.fs.put_file(os.path.join(root, path), blob_path(h))
                    sent += size
                self._have.add((h, size))
        m = {"node": node_name, "key": key, "created": time.time(), "outputs": outputs}
        self.fs.write_bytes(manifest_path(key), compact_json(m).encode())
        return sent

    def restore(self, m: dict, declared: tuple[str, ...], root: str, tmpdir: str) -> tuple[dict, int]:
        """Fetch every output into tmpdir, verify, then rename into place.
        Returns ({declared path: hash}, bytes)."""
        entries = {o.get("path"): o for o in m["outputs"]}
        if set(entries) != set(declared):
            extra = sorted(set(entries) - set(declared))
            raise StoreError(f"store '{self.name}': manifest for node '{m.get('node')}' names "
                             + (f"paths outside its outputs ({', '.join(map(str, extra))})" if extra
                                else "a different set of outputs") + "; rejected", "recipe error")
        os.makedirs(tmpdir, exist_ok=True)
        staged: list[tuple[str, str]] = []
        got = 0
        try:
            for path in declared:
                o = entries[path]
                import uuid
                tmp = os.path.join(tmpdir, uuid.uuid4().hex)
                if o.get("type") == "dir" and path.endswith("/"):
                    os.makedirs(tmp)
                    pairs = []
                    for f in o.get("files", []):
                        rel = f.get("rel", "")
                        if not _safe_rel(rel):
                            raise StoreError(f"store '{self.name}': file '{rel}' in directory output "
                                             f"'{path}' escapes it; rejected", "recipe error")
                        dst = os.path.join(tmp, rel)
                        os.makedirs(os.path.dirname(dst), exist_ok=True)
                        got += self._fetch_blob(f["hash"], dst, f"{path}{rel}")
                        pairs.append((rel, f["hash"]))
                    tree = tree_hash(sorted(pairs))
                    if tree != o.get("hash"):
                        raise StoreError(f"store '{self.name}': directory '{path}' does not match its "
                                         f"manifest hash; rejected", "recipe error")
                elif o.get("type") == "file" and not path.endswith("/"):
                    got += self._fetch_blob(o["hash"], tmp, path)
                else:
                    raise StoreError(f"store '{self.name}': output '{path}' has the wrong type in the manifest",
                                     "recipe error")
                staged.append((path, tmp))
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

    def _fetch_blob(self, h: str, dst: str, label: str) -> int:
        try:
            self.fs.get_file(blob_path(h), dst)
        except StoreError:
            raise
        except Exception as e:
            raise StoreError(f"store '{self.name}' is unreachable: {_why(e)}", "transient") from None
        got = hash_file_content(dst, os.path.getsize(dst))
        if got != h:
            _remove(dst)
            try:
                self.fs.rm(blob_path(h))  # a damaged blob: drop it so the next push repairs it
            except Exception:
                pass
            raise StoreError(f"store '{self.name}': '{label}' does not match its manifest hash "
                             f"(expected {h[:12]}, got {got[:12]}); rejected", "recipe error")
        return os.path.getsize(dst)

    def gc(self, keep_node, older_than: float | None) -> tuple[int, int]:
        """Drop manifests whose node fails keep_node(name) or older than the limit,
        then every blob no manifest references. Returns (entries, bytes) freed."""
        now = time.time()
        self._have.clear()
        live: set[str] = set()
        entries = freed = 0
        for rel, size, mtime in self.fs.list("manifests"):
            data = self.fs.read_bytes(rel)
            try:
                m = json.loads(data or b"{}")
            except ValueError:
                m = {}
            created = m.get("created", mtime)
            if not keep_node(m.get("node")) or (older_than is not None and now - created > older_than):
                self.fs.rm(rel)
                entries += 1
                freed += size
                continue
            for o in m.get("outputs", []):
                if o.get("type") == "dir":
                    live.update(f["hash"] for f in o.get("files", []))
                else:
                    live.add(o.get("hash"))
        for rel, size, _ in self.fs.list("blobs"):
            if posixpath.basename(rel) not in live:
                self.fs.rm(rel)
                freed += size
        return entries, freed


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
    return ArtifactStore(store.name, FsspecFS(url, dict(store.options)), store.push)


class LocalCache(ArtifactStore):
    """The project's own cache, .nodefile/cache. Builds write it under the project
    lock, so while this process holds it nobody else adds to it: when there was no
    manifests folder at the first lookup (a project's first build), the only keys it
    can hold are the ones put since, and asking for any other key needs no syscall
    (a first build asks once for every node)."""

    def __init__(self, root: str):
        super().__init__("cache", OsFS(os.path.join(root, ".nodefile", "cache"), atomic=False))
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
