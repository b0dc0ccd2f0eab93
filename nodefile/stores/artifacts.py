"""ArtifactStore: artifacts keyed by node key in one store (any filesystem: OsFS,
FsspecFS): a manifest looked up and checked, outputs put (blobs first, the manifest
last) and restored (fetched, verified, renamed into place), gc, and `node gc --store`'s
check of every entry.
"""
from __future__ import annotations

import errno
import json
import os
import posixpath
import time

from ..hashing import compact_json, hash_file_content, tree_hash
from ..model import FailureClass
from .manifests import MAX_MANIFEST, EntryError, StoreError, blob_path, check_manifest, is_hash, manifest_path

ORPHAN_CHECK = 1 << 30  # node gc --store: an unreferenced blob larger than this is not read


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
