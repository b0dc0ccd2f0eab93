"""stores: a store is untrusted input (SPEC §9). check_manifest, bounded reads,
and an fsspec store (memory://) that reads its blobs in ranges."""
from __future__ import annotations

import json
import os

import pytest

from nodefile.hashing import hash_bytes
from nodefile.stores import (ArtifactStore, FsspecFS, OsFS, StoreError, blob_path, check_manifest,
                             manifest_path)

KEY = "ab" * 16
H = hash_bytes(b"payload")


def good() -> dict:
    return {"node": "n", "key": KEY, "created": 1.0, "outputs": [
        {"path": "out.txt", "type": "file", "hash": H, "size": 7},
        {"path": "d/", "type": "dir", "hash": H, "files": [{"rel": "a/b.txt", "hash": H, "size": 7}]}]}


def test_a_good_manifest_passes():
    assert check_manifest(good(), KEY) is None


@pytest.mark.parametrize("change, why", [
    (lambda m: m.update(key="cd" * 16), "another key"),
    (lambda m: m.update(outputs={}), "no outputs"),
    (lambda m: m["outputs"][0].update(hash="../victim.txt"), "bad hash"),
    (lambda m: m["outputs"][0].update(hash=H.upper()), "bad hash"),
    (lambda m: m["outputs"][0].update(hash=H + "0"), "bad hash"),
    (lambda m: m["outputs"][0].update(size=-1), "bad size"),
    (lambda m: m["outputs"][0].update(size=True), "bad size"),
    (lambda m: m["outputs"][0].update(size=7.0), "bad size"),
    (lambda m: m["outputs"][0].update(type="fifo"), "bad type"),
    (lambda m: m["outputs"][0].update(path=7), "without a path"),
    (lambda m: m["outputs"].append(dict(m["outputs"][0])), "twice"),
    (lambda m: m["outputs"][1]["files"][0].update(rel="../x"), "escapes it"),
    (lambda m: m["outputs"][1]["files"][0].update(rel="/etc/x"), "escapes it"),
    (lambda m: m["outputs"][1]["files"][0].update(hash="x" * 32), "bad hash or size"),
    (lambda m: m["outputs"][1]["files"].append(dict(m["outputs"][1]["files"][0])), "twice"),
    (lambda m: m["outputs"][1].update(files=None), "bad type"),
])
def test_every_field_a_restore_reads_is_checked(change, why):
    m = good()
    change(m)
    assert why in (check_manifest(m, KEY) or "")


def test_a_local_store_reads_no_blob_past_its_declared_size(tmp_path):
    store = ArtifactStore("team", OsFS(str(tmp_path / "store")))
    (tmp_path / "out.txt").write_bytes(b"payload")
    entries = [{"path": "out.txt", "type": "file", "hash": H, "size": 7}]
    store.put("n", KEY, str(tmp_path), entries)
    with open(tmp_path / "store" / blob_path(H), "ab") as f:
        f.write(b"more")
    m = store.manifest(KEY)
    with pytest.raises(StoreError, match=r"store 'team': blob blobs/\S+ of 'out.txt' has 11 bytes where the "
                                         r"manifest says 7; rejected"):
        store.restore(m, ("out.txt",), str(tmp_path / "B"), str(tmp_path / "tmp"))
    assert os.listdir(tmp_path / "tmp") == []
    assert store.problems and "has 11 bytes" in store.problems[0]


def test_a_memory_store_round_trips_and_rejects_a_damaged_blob_without_deleting_it(tmp_path):
    import fsspec
    url = f"memory://nodefile-test-{os.getpid()}-{id(tmp_path)}"
    store = ArtifactStore("mem", FsspecFS(url, {}, "mem", 2))
    (tmp_path / "out.txt").write_bytes(b"payload")
    entries = [{"path": "out.txt", "type": "file", "hash": H, "size": 7}]
    assert store.put("n", KEY, str(tmp_path), entries) == 7
    reader = ArtifactStore("mem", FsspecFS(url, {}, "mem", 2))
    m = reader.manifest(KEY)
    got, size = reader.restore(m, ("out.txt",), str(tmp_path / "B"), str(tmp_path / "tmp"))
    assert got == {"out.txt": H} and size == 7 and (tmp_path / "B" / "out.txt").read_bytes() == b"payload"

    fs = fsspec.filesystem("memory")
    fs.pipe_file(f"{url}/{blob_path(H)}", b"PAYLOAD")  # same size, other bytes
    with pytest.raises(StoreError, match="does not match its manifest hash"):
        reader.restore(m, ("out.txt",), str(tmp_path / "C"), str(tmp_path / "tmp"))
    assert fs.cat_file(f"{url}/{blob_path(H)}") == b"PAYLOAD"  # left alone
    assert not (tmp_path / "C").exists() and os.listdir(tmp_path / "tmp") == []
    assert store.put("n", KEY, str(tmp_path), entries) == 0  # the pusher does not know it is damaged
    reader.push_enabled = True
    assert reader.put("n", KEY, str(tmp_path), entries) == 7  # the one that found it repairs it
    assert fs.cat_file(f"{url}/{blob_path(H)}") == b"payload"

    fs.pipe_file(f"{url}/{manifest_path(KEY)}", json.dumps({**m, "outputs": "x"}).encode())
    with pytest.raises(StoreError, match=r"store 'mem': manifest manifests/\S+ lists no outputs; rejected"):
        reader.manifest(KEY)
    fs.rm(url, recursive=True)
