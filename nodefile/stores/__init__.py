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

The package: manifests.py (layout, checks, errors), artifacts.py (ArtifactStore),
local.py (OsFS, LocalCache, copies), remote.py (FsspecFS, imported only for a
remote store); open_store picks one.
"""
from __future__ import annotations

from .artifacts import ORPHAN_CHECK, ArtifactStore
from .local import LocalCache, OsFS, copy_bounded, copy_file, local_cache, write_file
from .manifests import (HASH_LEN, MAX_MANIFEST, EntryError, StoreError, blob_path, check_manifest, describe_outputs,
                        is_hash, manifest_path, manifest_size)

__all__ = ["ArtifactStore", "CHUNK", "DEFAULT_TIMEOUT", "EntryError", "FsspecFS", "HASH_LEN", "LocalCache",
           "MAX_MANIFEST", "MIN_RATE", "ORPHAN_CHECK", "OsFS", "StoreError", "WAIT_NOTICE", "blob_path",
           "check_manifest", "client_timeouts", "copy_bounded", "copy_file", "describe_outputs", "is_hash",
           "local_cache", "manifest_path", "manifest_size", "open_store", "write_file"]

REMOTE = ("CHUNK", "DEFAULT_TIMEOUT", "MIN_RATE", "WAIT_NOTICE", "FsspecFS", "client_timeouts")  # in remote.py


def __getattr__(name: str):
    """remote.py's names, imported when first asked for: a build without a remote
    store never loads it."""
    if name in REMOTE:
        from . import remote
        return getattr(remote, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_store(store) -> ArtifactStore:
    """An ArtifactStore for a model.Store (local folder or fsspec URL)."""
    url = store.url
    if "://" not in url or url.startswith("file://"):
        path = url[7:] if url.startswith("file://") else url
        return ArtifactStore(store.name, OsFS(path), store.push)
    from .remote import FsspecFS
    return ArtifactStore(store.name, FsspecFS(url, dict(store.options), store.name, store.timeout), store.push)
