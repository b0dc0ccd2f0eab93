"""The SQLite state store in .nodefile/state.db (WAL).

Tables: file stamps (the stat cache), node records, builds, attempts. Only the
build process writes node records, one transaction per finished node, so a
killed build loses at most the nodes that were running.

A damaged or incompatible database is detected when it is opened (its header,
its size, its schema version and columns) or when a query finds it malformed
(translate_error marks it damaged for the next open): read-only commands raise
StateDamaged with the fix; a build (recover=True) moves the file aside, kept as
state.db.damaged-<time>, and starts afresh. A schema-1 database (no ctime in the
stat cache) is migrated in place: its stamps then match no stat, so files are
re-hashed once.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time

from .errors import DiskError, StateDamaged
from .hashing import dumps
from .model import STAMP, AttemptRow, NodeRecord

SCHEMA_VERSION = 2  # PRAGMA user_version; 0 in a schema-1 database (which did not set it)
DAMAGED_MARK = "state.db.is-damaged"  # written when a query finds the database malformed

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v TEXT);
CREATE TABLE IF NOT EXISTS files(
  path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, ino INTEGER,
  hash TEXT, recorded_ns INTEGER, ctime_ns INTEGER);
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

# the columns of each table, by schema version (a database is checked against them)
_COLUMNS_1 = {
    "meta": ("k", "v"),
    "files": ("path", "size", "mtime_ns", "ino", "hash", "recorded_ns"),
    "nodes": ("name", "key", "parts", "outputs", "built_ns", "recipe", "build_id", "incomplete"),
    "builds": ("id", "started_ns", "ended_ns", "targets", "status", "pid"),
    "attempts": ("id", "build_id", "node", "recipe", "kind", "attempt", "start_ns", "duration", "outcome",
                 "failure", "bytes", "log", "exit_code", "message", "script_hash"),
}
_COLUMNS = dict(_COLUMNS_1, files=_COLUMNS_1["files"] + ("ctime_ns",))
_STAMP_COLS = ", ".join(STAMP)  # in the order of a stamp (model.STAMP), not that of the table
# columns named: a table may have more (added later, at the end)
_PUT_STAMP = f"INSERT OR REPLACE INTO files(path, {_STAMP_COLS}) VALUES (?,?,?,?,?,?,?)"
_RECORD_COLS = ", ".join(NodeRecord._fields)
_PUT_NODE = ("INSERT OR REPLACE INTO nodes(name, key, parts, outputs, built_ns, recipe, build_id, incomplete) "
             "VALUES (?,?,?,?,?,?,?,0)")


_ATTEMPT_COLS = ("build_id", "node", "recipe", "kind", "attempt", "start_ns", "duration", "outcome",
                 "failure", "bytes", "log", "exit_code", "message", "script_hash", "key")
_ADD_ATTEMPT = f"INSERT INTO attempts({','.join(_ATTEMPT_COLS)}) VALUES ({','.join('?' * len(_ATTEMPT_COLS))})"


def state_dir(root: str) -> str:
    return os.path.join(root, ".nodefile")


OPENED: list[str] = []  # the state folders opened by this process (translate_error names them)


class State:
    """recover: a damaged database is moved aside and a fresh one started (a build);
    self.recovered then says (why, where the old file is kept)."""

    def __init__(self, root: str, readonly: bool = False, lazy: bool = False, recover: bool = False):
        self.root = root
        self.dir = state_dir(root)
        self.path = os.path.join(self.dir, "state.db")
        self.recovered: tuple[str, str] | None = None
        if self.dir not in OPENED:
            OPENED.append(self.dir)
        try:
            self._open(readonly)
        except StateDamaged as e:
            if not recover:
                from .fastpath import invalidate
                invalidate(root)  # `node build` must not say "nothing to do" from a no-op record
                raise
            self.recovered = (e.reason, move_aside(self.dir))
            self._open(readonly)
        self._stamps: dict = {}  # path -> stamp (None: known not recorded), as read or written
        self._all_stamps = False  # has every recorded stamp been read
        self.lazy = lazy  # read stamps one by one (a build of a few nodes in a big project)
        self._dirty_stamps: dict = {}
        self._fast_invalidated = False
        self._group_since = 0.0  # when the open group of writes began (grouped)
        self._grouped = 0  # inside grouped(): node records and attempts wait in these lists
        self._node_rows: list = []  # until the group is written (one executemany per table)
        self._attempt_rows: list = []

    def _open(self, readonly: bool) -> None:
        path = self.path
        self.exists = os.path.exists(path)
        if readonly and not self.exists:
            self.db = sqlite3.connect(":memory:")
            self.db.executescript(_SCHEMA)
            return
        from . import statedir
        statedir.make(self.dir)  # with its .gitignore
        problem = _marked(self.dir) or (_header_problem(path) if self.exists else None)
        if problem:
            raise damaged(self.dir, problem)
        self.db = sqlite3.connect(path, timeout=60, isolation_level=None)
        try:
            self.db.execute("PRAGMA busy_timeout=60000")
            if not self.exists or not self._current():
                self._init_schema()  # create, or migrate (or refuse) an older schema
            elif not readonly:
                self.db.execute("PRAGMA synchronous=NORMAL")  # per connection (WAL mode is in the file)
        except BaseException as e:
            self.db.close()
            raise translate_error(e) or e

    def _columns(self) -> dict:
        return {t: tuple(c for _, c in rows) for t, rows in _group(self.db.execute(
            "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p "
            "WHERE m.type = 'table' ORDER BY m.name, p.cid"))}

    def _current(self) -> bool:
        """Whether the database has this version's schema (else _init_schema migrates or refuses)."""
        if self.db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            return False
        cols = self._columns()
        return all(_fits(cols.get(t), c) for t, c in _COLUMNS.items())

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
                self._migrate()
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

    def _migrate(self) -> None:
        """Create the tables, or bring a schema-1 database to this version, in one
        transaction (another process may do the same: the version is read inside it)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            cols = self._columns()
            problem = _schema_problem(version, cols)
            if problem:
                raise damaged(self.dir, problem)
            if version != SCHEMA_VERSION:
                if "files" in cols and "ctime_ns" not in cols["files"]:
                    self.db.execute("ALTER TABLE files ADD COLUMN ctime_ns INTEGER")
                self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            for stmt in filter(str.strip, _SCHEMA.split(";")):
                self.db.execute(stmt)
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        try:
            self.flush_stamps()
        finally:
            self.db.close()

    # -- file stamps -------------------------------------------------------------------
    def stamps(self) -> dict:
        """All recorded stamps, read in one query: path -> stamp (model.STAMP)."""
        if not self._all_stamps:
            known = {p: v for p, v in self._stamps.items() if v is not None}  # newer than the database
            self._stamps = {r[0]: r[1:] for r in self.db.execute(
                f"SELECT path, {_STAMP_COLS} FROM files")}
            self._stamps.update(known)
            self._all_stamps = True
        return self._stamps

    def stamp(self, path: str):
        """One recorded stamp, or None. A lazy state reads them one by one."""
        if self._all_stamps or path in self._stamps:
            return self._stamps.get(path)
        if not self.lazy:
            return self.stamps().get(path)
        r = self.db.execute(f"SELECT {_STAMP_COLS} FROM files WHERE path=?",
                            (path,)).fetchone()
        self._stamps[path] = tuple(r) if r else None
        return self._stamps[path]

    def put_stamp(self, path: str, stamp: tuple) -> None:
        """stamp: (size, mtime_ns, ino, ctime_ns, hash, recorded_ns), model.STAMP."""
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
                self.db.executemany(_PUT_STAMP, rows)
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
                self.db.executemany(_PUT_NODE, nodes)
            if rows:
                self.db.executemany(_PUT_STAMP, rows)

    # -- node records ----------------------------------------------------------------
    def records(self) -> dict[str, NodeRecord]:
        """Every node record: name -> NodeRecord."""
        self._write_rows()
        new = tuple.__new__  # NodeRecord(*r[1:]), without its __new__ (one row per node)
        return {r[0]: new(NodeRecord, r[1:])
                for r in self.db.execute(f"SELECT name, {_RECORD_COLS} FROM nodes")}

    def record(self, name: str) -> NodeRecord | None:
        self._write_rows()
        r = self.db.execute(f"SELECT {_RECORD_COLS} FROM nodes WHERE name=?", (name,)).fetchone()
        return NodeRecord._make(r) if r else None

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

    def attempts(self, node: str | None = None, build_id: int | None = None) -> list[AttemptRow]:
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
        names = tuple(d[0] for d in cur.description)
        if names == AttemptRow._fields:
            return [AttemptRow._make(r) for r in cur]
        at = [names.index(f) if f in names else None for f in AttemptRow._fields]  # a column missing: None
        return [AttemptRow._make([None if i is None else r[i] for i in at]) for r in cur]

    def _tx(self):
        return Transaction(self.db)

    def batch(self):
        """One transaction for several writes (all or nothing, one commit)."""
        return Transaction(self.db)

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


class Transaction:
    """BEGIN IMMEDIATE ... COMMIT on a connection to the state database; inside an open
    transaction (State.batch, State.grouped) it joins it. The learner's tables use it too."""

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


# -- a damaged or unwritable state ---------------------------------------------------------
def _group(rows):
    import itertools
    return itertools.groupby(rows, key=lambda r: r[0])


def _identity(path: str) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return ""
    return f"{st.st_ino} {st.st_size} {st.st_mtime_ns}"


def _marked(sdir: str) -> str | None:
    """Why an earlier command found the database malformed (translate_error), or None.
    The mark names the file it was written for: a database put back since (a backup
    copied over it) is not that file, and the mark goes."""
    mark = os.path.join(sdir, DAMAGED_MARK)
    try:
        with open(mark) as f:
            why, _, who = f.read().partition("\n")
    except OSError:
        return None
    if who.strip() and who.strip() != _identity(os.path.join(sdir, "state.db")):
        try:
            os.remove(mark)
        except OSError:
            pass
        return None
    return why.strip() or "found malformed by an earlier command"


def _header_problem(path: str) -> str | None:
    """What is wrong with the database file as its header and size show it (cheap:
    100 bytes read), or None. The size is checked only without a write-ahead log,
    which may hold pages the file does not have yet."""
    try:
        with open(path, "rb") as f:
            head = f.read(100)
            size = os.fstat(f.fileno()).st_size
    except OSError:
        return None  # sqlite reports it, with its own words
    if size == 0:
        return None  # a new database
    if len(head) < 100 or not head.startswith(b"SQLite format 3\0"):
        return "it is not a SQLite database"
    page = int.from_bytes(head[16:18], "big")
    page = 65536 if page == 1 else page
    try:
        wal = os.path.getsize(path + "-wal")
    except OSError:
        wal = 0
    if wal == 0 and page >= 512:
        pages = int.from_bytes(head[28:32], "big")
        valid = head[24:28] == head[92:96]  # the in-header page count is trustworthy
        if size % page or (valid and pages * page > size):
            return f"it is truncated ({size} bytes, {pages * page if valid else 'whole pages'} expected)"
    return None


def _schema_problem(version: int, cols: dict) -> str | None:
    """None when the database is empty, of this schema, or of schema 1 (migrated)."""
    if version > SCHEMA_VERSION:
        return f"it was written by a newer nodefile (schema {version}; this one reads up to {SCHEMA_VERSION})"
    want = _COLUMNS if version == SCHEMA_VERSION else _COLUMNS_1 if version == 0 else None
    if want is None:
        return f"it has an unknown schema version {version}"
    for table, have in cols.items():
        if table in want and not _fits(have, want[table]) and not (version == 0 and _fits(have, _COLUMNS[table])):
            return f"its table '{table}' has columns ({', '.join(have)}), not those of schema {version or 1}"
    return None


def _fits(have, want) -> bool:
    """The columns a table has begin with those wanted (a column added later by ALTER
    TABLE, at the end, does not make a database incompatible)."""
    return have is not None and tuple(have[:len(want)]) == tuple(want)


def damaged(sdir: str, why: str) -> StateDamaged:
    """The one-line error of read-only commands: what, and the fix."""
    rel = _rel(os.path.join(sdir, "state.db"))
    return StateDamaged(f"the state database {rel} is damaged or incompatible: {why}. Run `node build` to start "
                        f"afresh: it keeps the damaged file as {rel}.damaged-<time> and restores what it can "
                        f"from the local cache", reason=why)


def move_aside(sdir: str) -> str:
    """Move state.db (with its -wal and -shm) to state.db.damaged-<time>; never delete
    it. The no-op records go (they vouch for node records that are gone)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = os.path.join(sdir, "state.db")
    kept = f"{base}.damaged-{stamp}"
    n = 1
    while os.path.lexists(kept):
        n += 1
        kept = f"{base}.damaged-{stamp}-{n}"
    for suffix in ("", "-wal", "-shm"):
        if os.path.lexists(base + suffix):
            os.rename(base + suffix, kept + suffix)
    try:
        os.remove(os.path.join(sdir, DAMAGED_MARK))
    except OSError:
        pass
    from .fastpath import invalidate
    invalidate(os.path.dirname(sdir))
    return kept


def _rel(path: str) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("../..") else rel


# what SQLite says of a damaged file ("no such table/column" is not among them: the
# schema is checked when the database opens, and anything else would be a bug)
_DAMAGE_WORDS = ("malformed", "not a database", "corrupt")
_ERRNO_WORDS = {"ENOSPC": "the disk is full", "EDQUOT": "the disk quota is exceeded",
                "EROFS": "the filesystem is read-only", "EACCES": "permission denied", "EPERM": "permission denied"}
_FULL = ("ENOSPC", "EDQUOT")


def translate_error(e: BaseException):
    """A NodefileError with one clear line for a storage failure (disk full, read-only,
    no permission) or a damaged database found by a query, or None for anything else.
    A damaged database is marked so that the next command sees it when it opens."""
    import errno
    if isinstance(e, OSError) and e.errno is not None:
        name = errno.errorcode.get(e.errno, "")
        if name not in _ERRNO_WORDS:
            return None
        what = _rel(e.filename) if isinstance(e.filename, str) else "a file"
        verb, fix = ("write", "free some space") if name in _FULL else ("use", "fix its permissions")
        return DiskError(f"cannot {verb} {what}: {_ERRNO_WORDS[name]}. The state is as it was (a node not "
                         f"finished is not recorded): {fix}, then run the command again")
    if not isinstance(e, sqlite3.DatabaseError):
        return None
    sdir = OPENED[-1] if OPENED else ".nodefile"
    rel = _rel(os.path.join(sdir, "state.db"))
    msg = str(e).lower()
    if any(w in msg for w in _DAMAGE_WORDS):
        try:
            with open(os.path.join(sdir, DAMAGED_MARK), "w") as f:
                f.write(f"a query found it damaged ({e})\n{_identity(os.path.join(sdir, 'state.db'))}\n")
            from .fastpath import invalidate
            invalidate(os.path.dirname(sdir))
        except OSError:
            pass
        return damaged(sdir, f"a query found it damaged ({e})")
    if not isinstance(e, sqlite3.OperationalError):
        return None  # a bug, not the disk: its traceback is wanted
    why, fix = {"full": ("the disk is full", "free some space"),
                "i/o": ("a disk I/O error (is the disk full?)", "free some space or check the disk"),
                "locked": ("another process holds it locked", "wait for it to end"),
                "busy": ("another process holds it locked", "wait for it to end")}.get(
        next((w for w in ("full", "i/o", "locked", "busy") if w in msg), ""), (None, None))
    if why is None and any(w in msg for w in ("readonly", "read-only", "unable to open", "permission")):
        why, fix = f"{_rel(sdir)}/ is not writable ({e})", f"make {_rel(sdir)}/ writable"
    if why is None:
        why, fix = str(e), "fix that"
    return DiskError(f"cannot use the state database {rel}: {why}. The state is as it was: "
                     f"{fix}, then run the command again")
