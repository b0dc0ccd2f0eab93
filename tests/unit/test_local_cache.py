"""stores.LocalCache: the project's own cache answers lookups from memory while it
can know the answer (a first build), and from disk otherwise."""
from __future__ import annotations

from nodefile.hashing import hash_bytes
from nodefile.stores import local_cache


def _entries(root, name: str, data: bytes) -> list[dict]:
    (root / name).write_bytes(data)
    return [{"path": name, "type": "file", "hash": hash_bytes(data), "size": len(data)}]


def test_a_first_build_finds_what_it_put_and_nothing_else(tmp_path):
    cache = local_cache(str(tmp_path))
    assert cache.manifest("k1") is None  # no cache folder yet
    cache.put("a", "k1", str(tmp_path), _entries(tmp_path, "a.txt", b"A"))
    assert cache.manifest("k1")["outputs"][0]["hash"] == hash_bytes(b"A")
    assert cache.manifest("k2") is None
    # another process (the next build) reads the disk: what was put is there
    again = local_cache(str(tmp_path))
    assert again.manifest("k1")["node"] == "a" and again.manifest("k2") is None


def test_a_cache_that_exists_is_read_from_disk(tmp_path):
    first = local_cache(str(tmp_path))
    first.put("a", "k1", str(tmp_path), _entries(tmp_path, "a.txt", b"A"))
    reader = local_cache(str(tmp_path))
    assert reader.manifest("k2") is None
    writer = local_cache(str(tmp_path))  # a manifest written after the reader first looked
    writer.put("b", "k2", str(tmp_path), _entries(tmp_path, "b.txt", b"B"))
    assert reader.manifest("k2")["node"] == "b"
