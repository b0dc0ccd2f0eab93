"""A store's layout and its manifests: where a key's manifest and a blob live, the
manifest entries of a node's outputs (describe_outputs), and the check that makes a
manifest read from a store usable (check_manifest). The two errors a store raises.
"""
from __future__ import annotations

import os

from ..model import FailureClass

HASH_LEN = 32  # xxh3-128, lowercase hex: blob names and node keys
_HEX = "0123456789abcdef"
MAX_MANIFEST = 64 << 20  # bytes: a manifest larger than this is rejected unread


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


def _safe_rel(rel: str) -> bool:
    if not rel or rel.startswith("/") or "\\" in rel:
        return False
    return all(part not in ("", ".", "..") for part in rel.split("/"))


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
