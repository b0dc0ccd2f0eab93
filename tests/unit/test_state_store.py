"""nodefile.state: the SQLite store (WAL): records, attempts, builds, stamps."""
from __future__ import annotations

import json
import os
import sqlite3

import pytest

from nodefile.model import STAMP, AttemptRow, NodeRecord
from nodefile.state import State, state_dir


@pytest.fixture
def root(tmp_path):
    return str(tmp_path)


@pytest.fixture
def st(root):
    s = State(root)
    yield s
    s.close()


def test_creates_the_database_in_dot_nodefile(root, st):
    assert state_dir(root) == os.path.join(root, ".nodefile")
    assert os.path.isfile(os.path.join(root, ".nodefile", "state.db"))
    assert st.exists is False
    assert State(root).exists is True


def test_wal_mode_is_on(root, st):
    assert st.db.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
    other = sqlite3.connect(os.path.join(root, ".nodefile", "state.db"))
    try:
        assert other.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"  # persistent
    finally:
        other.close()


def test_record_round_trip(root, st):
    parts = {"format": "1", "param:alpha": "0.5", "input:a.csv": None}
    outputs = {"out.csv": "a" * 32}
    st.put_record("clean", "K1", parts, outputs, "python", 3)
    r = st.record("clean")
    assert r.key == "K1" and r.recipe == "python" and r.build_id == 3
    assert json.loads(r.parts) == parts and json.loads(r.outputs) == outputs
    assert r.incomplete == 0 and r.built_ns > 0
    assert st.record("nope") is None
    # visible to another connection (committed)
    s2 = State(root)
    try:
        assert s2.record("clean").key == "K1"
        assert set(s2.records()) == {"clean"}
    finally:
        s2.close()


def test_put_record_replaces(st):
    st.put_record("a", "K1", {}, {}, "python", 1)
    st.put_record("a", "K2", {"x": "1"}, {"o": "h"}, "shell", 2)
    assert st.records()["a"].key == "K2"
    assert len(st.records()) == 1


def test_incomplete_mark_and_clear(st):
    st.put_record("a", "K1", {}, {}, "python", 1)
    st.mark_incomplete("a")
    assert st.record("a").incomplete == 1
    st.put_record("a", "K1", {}, {}, "python", 2)
    assert st.record("a").incomplete == 0


def test_forget(st):
    st.put_record("a", "K", {}, {}, None, None)
    st.put_record("b", "K", {}, {}, None, None)
    st.forget(["a", "zzz"])
    assert set(st.records()) == {"b"}


def test_builds_and_attempts(root, st):
    b1 = st.start_build(["report"])
    st.add_attempt(build_id=b1, node="clean", recipe="fetch", kind="fetch", attempt=1, start_ns=1, duration=0.5,
                   outcome="failed", failure="unavailable", bytes=0, log="l1", exit_code=None, message="down")
    st.add_attempt(build_id=b1, node="clean", recipe="python", kind="python", attempt=1, start_ns=2,
                   duration=2.0, outcome="ok", bytes=10, log="l2", exit_code=0, script_hash="h")
    st.end_build(b1, 0)
    b2 = st.start_build([])
    st.add_attempt(build_id=b2, node="clean", recipe="python", kind="python", attempt=1, start_ns=3,
                   duration=3.0, outcome="ok")
    st.add_attempt(build_id=b2, node="model", recipe="r", kind="r", attempt=1, start_ns=4, duration=9.0,
                   outcome="ok")
    assert b2 > b1
    all_ = st.attempts()
    assert [a.recipe for a in all_] == ["fetch", "python", "python", "r"]
    assert all_[0].failure == "unavailable" and all_[0].message == "down" and all_[0].exit_code is None
    assert [a.duration for a in st.attempts(node="clean")] == [0.5, 2.0, 3.0]
    assert [a.node for a in st.attempts(build_id=b2)] == ["clean", "model"]
    assert [a.recipe for a in st.attempts(node="clean", build_id=b1)] == ["fetch", "python"]
    row = st.db.execute("SELECT targets, status, ended_ns, pid FROM builds WHERE id=?", (b1,)).fetchone()
    assert json.loads(row[0]) == ["report"] and row[1] == 0 and row[2] > 0 and row[3] == os.getpid()


def test_stamps_flush_and_reload(root):
    s = State(root)
    s.put_stamp("a.csv", (5, 100, 7, 300, "h" * 32, 200))
    assert s.stamps()["a.csv"] == (5, 100, 7, 300, "h" * 32, 200)
    other = State(root)
    assert "a.csv" not in other.stamps()  # not flushed yet
    other.close()
    s.flush_stamps()
    assert s._dirty_stamps == {}
    other = State(root)
    assert other.stamps()["a.csv"] == (5, 100, 7, 300, "h" * 32, 200)
    other.close()
    s.close()


def test_close_flushes_stamps(root):
    s = State(root)
    s.put_stamp("b.csv", (1, 2, 3, 5, "h", 4))
    s.close()
    s2 = State(root)
    assert s2.stamps()["b.csv"] == (1, 2, 3, 5, "h", 4)
    s2.close()


def test_put_record_writes_pending_stamps_in_the_same_transaction(root):
    s = State(root)
    s.put_stamp("in.csv", (1, 2, 3, 5, "h", 4))
    s.put_record("n", "K", {}, {}, "python", 1)
    assert s._dirty_stamps == {}
    s2 = State(root)
    assert s2.stamps()["in.csv"] == (1, 2, 3, 5, "h", 4)
    s2.close()
    s.db.close()


def test_put_stamp_replaces(root, st):
    st.put_stamp("a", (1, 1, 1, 1, "x", 1))
    st.flush_stamps()
    st.put_stamp("a", (2, 2, 2, 2, "y", 2))
    st.flush_stamps()
    s2 = State(root)
    assert s2.stamps()["a"] == (2, 2, 2, 2, "y", 2)
    s2.close()


def test_rows_are_typed_and_stored_in_the_same_columns(root, st):
    """Records and attempts read back as NodeRecord and AttemptRow, and a stamp in the
    layout of model.STAMP, each field from its own column of the unchanged tables (a
    stamp's field order is not the files table's: ctime_ns was added to it last)."""
    assert STAMP == ("size", "mtime_ns", "ino", "ctime_ns", "hash", "recorded_ns")
    st.put_stamp("a", (1, 2, 3, 5, "h", 4))
    st.put_record("n", "K", {"p": "1"}, {"o": "h"}, "python", 7)
    b = st.start_build([])
    st.add_attempt(build_id=b, node="n", recipe="python", kind="python", attempt=1, start_ns=9, duration=1.5,
                   outcome="ok", key="K")
    st.flush_stamps()
    db = st.db
    assert db.execute("SELECT size, mtime_ns, ino, hash, recorded_ns, ctime_ns FROM files WHERE path='a'"
                      ).fetchone() == (1, 2, 3, "h", 4, 5)
    assert db.execute("SELECT key, parts, outputs, recipe, build_id, incomplete FROM nodes WHERE name='n'"
                      ).fetchone() == ("K", '{"p": "1"}', '{"o": "h"}', "python", 7, 0)
    r = st.record("n")
    assert type(r) is NodeRecord and r == st.records()["n"]
    assert (r.key, r.parts, r.outputs, r.recipe, r.build_id, r.incomplete) == ("K", '{"p": "1"}', '{"o": "h"}',
                                                                                "python", 7, 0)
    (a,) = st.attempts(node="n")
    assert type(a) is AttemptRow and (a.build_id, a.node, a.start_ns, a.duration, a.key) == (b, "n", 9, 1.5, "K")
    s2 = State(root)
    assert s2.stamps()["a"] == (1, 2, 3, 5, "h", 4) and s2.stamp("a") == (1, 2, 3, 5, "h", 4)
    s2.close()


def test_attempts_of_a_database_without_the_key_column(root):
    """A state.db made before attempts.key existed reads with key None."""
    State(root).close()
    db = sqlite3.connect(os.path.join(root, ".nodefile", "state.db"))
    db.execute("INSERT INTO attempts(build_id, node, recipe, kind, attempt, outcome) VALUES (1, 'n', 'r', 'r', 1, 'ok')")
    db.execute("ALTER TABLE attempts DROP COLUMN key")
    db.commit()
    db.close()
    s = State(root, readonly=True)
    (a,) = s.attempts()
    assert (a.node, a.outcome, a.key) == ("n", "ok", None)
    s.close()


def test_readonly_without_database_creates_nothing(tmp_path):
    s = State(str(tmp_path), readonly=True)
    assert s.records() == {} and s.record("x") is None and s.stamps() == {}
    s.put_stamp("a", (1, 2, 3, 5, "h", 4))
    s.close()
    assert not (tmp_path / ".nodefile").exists()


def test_readonly_reads_an_existing_database(root):
    s = State(root)
    s.put_record("a", "K", {}, {}, "python", 1)
    s.close()
    ro = State(root, readonly=True)
    try:
        assert ro.record("a").key == "K"
    finally:
        ro.close()


def test_failed_transaction_rolls_back(st):
    st.put_record("a", "K", {}, {}, None, None)
    with pytest.raises(RuntimeError):
        with st._tx():
            st.db.execute("DELETE FROM nodes")
            raise RuntimeError("boom")
    assert "a" in st.records()


def test_grouped_writes_are_committed_together_when_old_enough_or_on_commit(root, st):
    other = sqlite3.connect(os.path.join(root, ".nodefile", "state.db"))
    count = lambda: other.execute("SELECT COUNT(*) FROM nodes").fetchone()[0]  # noqa: E731
    with st.grouped(3600):
        st.put_record("a", "k", {}, {}, "r", 1)
    with st.grouped(3600):
        st.put_record("b", "k", {}, {}, "r", 1)
    assert count() == 0  # another reader sees nothing of an open group
    st.commit()
    assert count() == 2
    with st.grouped(0):  # old enough at once: committed as the call ends
        st.put_record("c", "k", {}, {}, "r", 1)
    assert count() == 3
    with st.grouped(3600):
        st.put_record("d", "k", {}, {}, "r", 1)
    with pytest.raises(RuntimeError):
        with st.grouped(3600):
            st.put_record("e", "k", {}, {}, "r", 1)
            raise RuntimeError("a crash while recording")
    st.commit()
    assert count() == 3  # the failed group is rolled back whole: no half-recorded state
    other.close()


def test_a_local_cache_manifest_cut_short_is_rejected_never_taken_for_an_entry(root):
    """The local cache writes manifests in place (no temporary name): a crash in the
    middle leaves a prefix of the JSON, which must read as corrupt, never as an entry."""
    from nodefile.stores import StoreError, local_cache, manifest_path
    src = os.path.join(root, "out.txt")
    with open(src, "w") as f:
        f.write("payload")
    cache = local_cache(root)
    key = "ab" * 16
    from nodefile.hashing import hash_file_content
    h = hash_file_content(src, 7)
    cache.put("n", key, root, [{"path": "out.txt", "type": "file", "hash": h, "size": 7}])
    full = os.path.join(root, ".nodefile", "cache", manifest_path(key))
    data = open(full, "rb").read()
    assert cache.manifest(key)["outputs"][0]["hash"] == h
    for cut in (0, 1, len(data) // 2, len(data) - 1):
        with open(full, "wb") as f:
            f.write(data[:cut])
        with pytest.raises(StoreError, match="corrupt"):
            cache.manifest(key)


# -- a damaged database ----------------------------------------------------------------------
def _garbage(root):
    State(root).close()
    with open(os.path.join(root, ".nodefile", "state.db"), "wb") as f:
        f.write(b"not a database" * 300)


def test_damaged_database_is_refused_when_opened(root):
    from nodefile.errors import StateDamaged
    _garbage(root)
    for readonly in (True, False):
        with pytest.raises(StateDamaged, match="not a SQLite database.*node build"):
            State(root, readonly=readonly)
    assert open(os.path.join(root, ".nodefile", "state.db"), "rb").read(14) == b"not a database"


def test_recover_moves_the_damaged_file_aside_and_starts_afresh(root):
    _garbage(root)
    s = State(root, recover=True)
    why, kept = s.recovered
    assert "not a SQLite database" in why
    assert os.path.basename(kept).startswith("state.db.damaged-")
    assert open(kept, "rb").read(14) == b"not a database"  # kept as it was
    assert s.records() == {}
    s.close()
    assert State(root).recovered is None


def test_a_newer_schema_is_refused_and_a_schema_1_database_migrated(root):
    from nodefile.errors import StateDamaged
    s = State(root)
    s.put_record("n", "k", {}, {}, "r", None)
    s.close()
    db = sqlite3.connect(os.path.join(root, ".nodefile", "state.db"))
    db.execute("ALTER TABLE files DROP COLUMN ctime_ns")
    db.execute("PRAGMA user_version=0")
    db.commit()
    s = State(root, readonly=True)  # schema 1: upgraded, records kept
    assert s.record("n").key == "k"
    s.close()
    db.execute("PRAGMA user_version=7")
    db.commit()
    db.close()
    with pytest.raises(StateDamaged, match="newer nodefile"):
        State(root)


def test_translate_error_words_storage_failures(root):
    import errno
    from nodefile.errors import DiskError
    from nodefile.state import translate_error
    e = translate_error(OSError(errno.ENOSPC, "No space left on device", "out.csv"))
    assert isinstance(e, DiskError) and "cannot write out.csv: the disk is full" in str(e)
    e = translate_error(sqlite3.OperationalError("database or disk is full"))
    assert isinstance(e, DiskError) and "the disk is full" in str(e)
    assert translate_error(ValueError("x")) is None
    assert translate_error(sqlite3.ProgrammingError("a bug")) is None


def test_a_damage_mark_applies_to_its_file_only(root):
    """A query found the database malformed: the next open refuses it, until the file
    is replaced (a backup copied back), which the mark does not name."""
    import shutil
    from nodefile.errors import StateDamaged
    from nodefile.state import translate_error
    State(root).close()
    db = os.path.join(root, ".nodefile", "state.db")
    shutil.copy(db, db + ".backup")
    err = translate_error(sqlite3.DatabaseError("database disk image is malformed"))
    assert isinstance(err, StateDamaged)
    with pytest.raises(StateDamaged, match="a query found it damaged"):
        State(root, readonly=True)
    os.replace(db + ".backup", db)
    State(root, readonly=True).close()
    assert not os.path.exists(os.path.join(root, ".nodefile", "state.db.is-damaged"))


def test_a_column_added_at_the_end_keeps_the_database_compatible(root):
    """Another version may add a column (ALTER TABLE ... ADD COLUMN, at the end):
    the database stays in use, never called damaged."""
    State(root).close()
    db = sqlite3.connect(os.path.join(root, ".nodefile", "state.db"))
    db.execute("ALTER TABLE attempts ADD COLUMN later_attempt TEXT")  # attempts.key is ours already
    db.execute("ALTER TABLE files ADD COLUMN later TEXT")
    db.commit()
    db.close()
    s = State(root)
    s.put_stamp("a", (1, 2, 3, 5, "h", 4))
    s.put_record("n", "k", {}, {}, "r", None)
    s.close()
    s = State(root, readonly=True)
    assert s.stamps()["a"] == (1, 2, 3, 5, "h", 4) and s.record("n").key == "k"
    s.close()
