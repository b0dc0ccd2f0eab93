"""The SQLite state store in .nodefile/state.db (WAL).

Tables: file stamps (the stat cache), node records, builds, attempts. Only the
build process writes node records, one transaction per finished node, so a
killed build loses at most the nodes that were running.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time

from .hashing import dumps

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v TEXT);
CREATE TABLE IF NOT EXISTS files(
  path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, ino INTEGER,
  hash TEXT, recorded_ns INTEGER);
CREATE TABLE IF NOT EXISTS nodes(
  name TEXT PRIMARY KEY, key TEXT, parts TEXT, outputs TEXT, built_ns INTEGER,
  recipe TEXT, build_id INTEGER, incomplete INTEGER DEFAULT 0);
CREATE TABLE IF NOT EXISTS builds(
  id INTEGER PRIMARY KEY AUTOINCREMENT, started_ns INTEGER, ended_ns INTEGER,
  targets TEXT, status INTEGER, pid INTEGER);
CREATE TABLE IF NOT EXISTS attempts(
  id INTEGER PRIMARY KEY AUTOINCREMENT, build_id INTEGER, node TEXT, recipe TEXT,
  kind TEXT, attempt INTEGER, start_ns INTEGER, duration REAL, outcome TEXT,
  failure TEXT, bytes INTEGER, log TEXT, exit_code INTEGER, message TEXT,
  script_hash TEXT, key TEXT);
CREATE INDEX IF NOT EXISTS attempts_node ON attempts(node, build_id);
"""


_ATTEMPT_COLS = ("build_id", "node", "recipe", "kind", "attempt", "start_ns", "duration", "outcome",
                 "failure", "bytes", "log", "exit_code", "message", "script_hash", "key")
_ADD_ATTEMPT = f"INSERT INTO attempts({','.join(_ATTEMPT_COLS)}) VALUES ({','.join('?' * len(_ATTEMPT_COLS))})"


def state_dir(root: str) -> str:
    return os.path.join(root, ".nodefile")


class State:
    def __init__(self, root: str, readonly: bool = False, lazy: bool = False):
        self.root = root
        self.dir = state_dir(root)
        path = os.path.join(self.dir, "state.db")
        self.exists = os.path.exists(path)
        if readonly and not self.exists:
            self.db = sqlite3.connect(":memory:")
            self.db.executescript(_SCHEMA)
        else:
            from . import statedir
            statedir.make(self.dir)
            self.db = sqlite3.connect(path, timeout=60, isolation_level=None)
            self.db.execute("PRAGMA busy_timeout=60000")
            if not self.exists or not readonly:
                self._init_schema()
        self._stamps: dict = {}  # path -> stamp (None: known not recorded), as read or written
        self._all_stamps = False  # has every recorded stamp been read
        self.lazy = lazy  # read stamps one by one (a build of a few nodes in a big project)
        self._dirty_stamps: dict = {}
        self._fast_invalidated = False
        self._group_since = 0.0  # when the open group of writes began (grouped)
        self._grouped = 0  # inside grouped(): node records and attempts wait in these lists
        self._node_rows: list = []  # until the group is written (one executemany per table)
        self._attempt_rows: list = []

    def _records_change(self) -> None:
        """Any change to node records voids every recorded no-op (fastpath.py)."""
        if not self._fast_invalidated:
            from .fastpath import invalidate
            invalidate(self.root)
            self._fast_invalidated = True

    def _init_schema(self) -> None:
        """WAL mode and tables. Switching to WAL can fail at once with "database is
        locked" while another process initialises the same file (the busy timeout
        does not apply to it), so retry for a bounded time."""
        deadline = time.monotonic() + 60
        delay = 0.01
        while True:
            try:
                if self.db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")
                self.db.executescript(_SCHEMA)
                self._add_key_column()
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) and "busy" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.5)

    def _add_key_column(self) -> None:
        """attempts.key (the node key an attempt built: `node log` after a restore finds
        the attempt that made the artifact) in a state.db made before it existed."""
        if any(r[1] == "key" for r in self.db.execute("PRAGMA table_info(attempts)")):
            return
        try:
            self.db.execute("ALTER TABLE attempts ADD COLUMN key TEXT")
        except sqlite3.OperationalError as e:
            if "duplicate column" not in str(e):
                raise

    def close(self) -> None:
        self.flush_stamps()
        self.db.close()

    # -- file stamps -------------------------------------------------------------------
    def stamps(self) -> dict:
        """All recorded stamps, read in one query: path -> (size, mtime_ns, ino, hash, recorded_ns)."""
        if not self._all_stamps:
            known = {p: v for p, v in self._stamps.items() if v is not None}  # newer than the database
            self._stamps = {r[0]: r[1:] for r in self.db.execute(
                "SELECT path, size, mtime_ns, ino, hash, recorded_ns FROM files")}
            self._stamps.update(known)
            self._all_stamps = True
        return self._stamps

    def stamp(self, path: str):
        """One recorded stamp, or None. A lazy state reads them one by one."""
        if self._all_stamps or path in self._stamps:
            return self._stamps.get(path)
        if not self.lazy:
            return self.stamps().get(path)
        r = self.db.execute("SELECT size, mtime_ns, ino, hash, recorded_ns FROM files WHERE path=?",
                            (path,)).fetchone()
        self._stamps[path] = tuple(r) if r else None
        return self._stamps[path]

    def put_stamp(self, path: str, stamp: tuple) -> None:
        self._stamps[path] = stamp
        self._dirty_stamps[path] = stamp

    def flush_stamps(self) -> None:
        self._write_rows()
        if not self._dirty_stamps:
            return
        rows = [(p,) + s for p, s in self._dirty_stamps.items()]
        self._dirty_stamps = {}
        try:
            with self._tx():
                self.db.executemany("INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,?)", rows)
        except sqlite3.OperationalError:
            pass  # a read-only view (status, explain): the cache is only an optimisation

    def _write_rows(self) -> None:
        """Write the records and attempts of the open group (with the stamps seen so
        far), in its transaction: before it commits, and before anything reads them."""
        if not (self._node_rows or self._attempt_rows):
            return
        nodes, self._node_rows = self._node_rows, []
        attempts, self._attempt_rows = self._attempt_rows, []
        rows = [(p,) + s for p, s in self._dirty_stamps.items()]
        self._dirty_stamps = {}
        with self._tx():
            if attempts:
                self.db.executemany(_ADD_ATTEMPT, attempts)
            if nodes:
                self.db.executemany("INSERT OR REPLACE INTO nodes VALUES (?,?,?,?,?,?,?,0)", nodes)
            if rows:
                self.db.executemany("INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,?)", rows)

    # -- node records ----------------------------------------------------------------
    def records(self) -> dict:
        self._write_rows()
        return {r[0]: {"key": r[1], "parts": r[2], "outputs": r[3], "built_ns": r[4], "recipe": r[5],
                       "build_id": r[6], "incomplete": r[7]}
                for r in self.db.execute("SELECT name, key, parts, outputs, built_ns, recipe, build_id, incomplete FROM nodes")}

    def record(self, name: str) -> dict | None:
        self._write_rows()
        r = self.db.execute("SELECT key, parts, outputs, built_ns, recipe, build_id, incomplete FROM nodes WHERE name=?",
                            (name,)).fetchone()
        if not r:
            return None
        return {"key": r[0], "parts": r[1], "outputs": r[2], "built_ns": r[3], "recipe": r[4],
                "build_id": r[5], "incomplete": r[6]}

    def mark_incomplete(self, name: str) -> None:
        self._records_change()
        self._write_rows()
        with self._tx():
            self.db.execute("UPDATE nodes SET incomplete=1 WHERE name=?", (name,))

    def put_record(self, name: str, key: str, parts: dict, outputs: dict, recipe: str | None,
                   build_id: int | None) -> None:
        """One transaction: the node record and the stamps seen so far (inside
        grouped(): the group's transaction, written when it commits)."""
        self._records_change()
        self._node_rows.append((name, key, dumps(parts), dumps(outputs), time.time_ns(), recipe, build_id))
        if not self._grouped:
            self._write_rows()

    def forget(self, names) -> None:
        self._records_change()
        self._write_rows()
        with self._tx():
            self.db.executemany("DELETE FROM nodes WHERE name=?", [(n,) for n in names])

    # -- builds and attempts ---------------------------------------------------------
    def start_build(self, targets) -> int:
        with self._tx():
            cur = self.db.execute("INSERT INTO builds(started_ns, targets, pid) VALUES (?,?,?)",
                                  (time.time_ns(), json.dumps(list(targets)), os.getpid()))
            return cur.lastrowid

    def running_build(self) -> int | None:
        """The id of the build running now (not ended, its process alive), if any."""
        row = self.db.execute("SELECT id, pid, ended_ns FROM builds ORDER BY id DESC LIMIT 1").fetchone()
        if row is None or row[2] is not None:
            return None
        try:
            os.kill(row[1], 0)
        except ProcessLookupError:
            return None  # killed: it never ended
        except (PermissionError, TypeError):
            pass
        return row[0]

    def end_build(self, build_id: int, status: int) -> None:
        self._write_rows()
        with self._tx():
            self.db.execute("UPDATE builds SET ended_ns=?, status=? WHERE id=?", (time.time_ns(), status, build_id))

    def add_attempt(self, **a) -> None:
        self._attempt_rows.append(tuple([a.get(c) for c in _ATTEMPT_COLS]))
        if not self._grouped:
            self._write_rows()

    def attempts(self, node: str | None = None, build_id: int | None = None) -> list[dict]:
        self._write_rows()
        q = "SELECT * FROM attempts"
        cond, args = [], []
        if node is not None:
            cond.append("node=?")
            args.append(node)
        if build_id is not None:
            cond.append("build_id=?")
            args.append(build_id)
        if cond:
            q += " WHERE " + " AND ".join(cond)
        cur = self.db.execute(q + " ORDER BY id", args)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur]

    def _tx(self):
        return _Tx(self.db)

    def batch(self):
        """One transaction for several writes (all or nothing, one commit)."""
        return _Tx(self.db)

    def grouped(self, max_age: float):
        """Writes that join a transaction kept open across calls: it is committed once
        it is max_age seconds old (checked as each call ends), or by commit(). A
        failure rolls the whole open group back."""
        return _Group(self, max_age)

    def commit(self) -> None:
        """Commit the open group, if any."""
        self._write_rows()
        if self.db.in_transaction:
            self.db.execute("COMMIT")


class _Group:
    def __init__(self, state: State, max_age: float):
        self.state = state
        self.max_age = max_age

    def __enter__(self):
        if not self.state.db.in_transaction:
            self.state.db.execute("BEGIN IMMEDIATE")
            self.state._group_since = time.monotonic()
        self.state._grouped += 1

    def __exit__(self, exc_type, *_):
        state = self.state
        state._grouped -= 1
        db = state.db
        if exc_type is not None:
            state._node_rows.clear()  # the whole group is undone, the rows not yet written too
            state._attempt_rows.clear()
            if db.in_transaction:
                db.execute("ROLLBACK")
        elif db.in_transaction and time.monotonic() - state._group_since >= self.max_age:
            state._write_rows()
            db.execute("COMMIT")
        return False


class _Tx:
    """BEGIN IMMEDIATE ... COMMIT; inside an open transaction (State.batch) it joins it."""

    def __init__(self, db):
        self.db = db
        self.own = False

    def __enter__(self):
        if not self.db.in_transaction:
            self.db.execute("BEGIN IMMEDIATE")
            self.own = True

    def __exit__(self, exc_type, *_):
        if self.own:
            self.db.execute("ROLLBACK" if exc_type else "COMMIT")
        return False
