"""The learner's tables on the state's connection: loading (everything, or one node
at a time when lazy), writing (grouped into one transaction per flush), the build
counter, and the project-wide medians the priors use (kept as sorted lists)."""
from __future__ import annotations

import bisect
import json
import marshal
import math
import sqlite3

TYPE_CHECKING = False  # typing costs 3 ms at start-up; annotations are strings anyway
if TYPE_CHECKING:
    from .choice import Probe

from ..hashing import compact_json
from ..model import TRANSFER_KINDS
from ..records import fields, record
from ..state import Transaction  # BEGIN IMMEDIATE ... COMMIT, joining a transaction already open
from .family import Family
from .stats import Location, RecipeLike, Stats

_STATS_FIELDS = tuple(f.name for f in fields(Stats))  # stored as a JSON array in this order
_FAMILY_FIELDS = tuple(f.name for f in fields(Family))
_LOCATION_FIELDS = tuple(f.name for f in fields(Location))


@record(frozen=True)
class _FamilySnap:
    members: int  # nodes with a level in the family (a success since their script last changed)
    median_d: float  # median of exp(off): a sibling's D at family level 0
    median_off: float


_SCHEMA = """
CREATE TABLE IF NOT EXISTS recipe_stats(node TEXT, recipe TEXT, data TEXT, PRIMARY KEY(node, recipe));
CREATE TABLE IF NOT EXISTS location_stats(kind TEXT, location TEXT, data TEXT, PRIMARY KEY(kind, location));
CREATE TABLE IF NOT EXISTS family_stats(kind TEXT, target TEXT, data TEXT, PRIMARY KEY(kind, target));
CREATE TABLE IF NOT EXISTS learn_probes(build INTEGER, node TEXT, recipe TEXT, ok INTEGER, duration REAL, better INTEGER);
CREATE TABLE IF NOT EXISTS learn_meta(k TEXT PRIMARY KEY, v INTEGER);
"""


def _median_sorted(v, f=None) -> float:
    """statistics.median of f(x) for x in the sorted list v (f increasing)."""
    n = len(v)
    mid = n // 2
    if f is None:
        return v[mid] if n % 2 else (v[mid - 1] + v[mid]) / 2
    return f(v[mid]) if n % 2 else (f(v[mid - 1]) + f(v[mid])) / 2


class Store:
    """The learner's state and its tables: what `Learner` chooses and observes with."""

    def __init__(self, db: sqlite3.Connection, lazy: bool = False):
        self.db = db
        # lazy: read one node's statistics when it is asked about (a build of a few
        # nodes in a big project), and the project-wide medians from their stored lists
        self.lazy = lazy
        self._loaded_nodes: set[str] = set()
        self._all_loaded = False
        self._lists: tuple[dict, dict] | None = None  # the sorted values behind _snapshot
        self._lists_dirty = False
        self._stats: dict[str, dict[str, Stats]] | None = None  # node -> recipe -> Stats
        self._locations: dict[tuple[str, str], Location] = {}
        self._families: dict[tuple[str, str], Family] = {}
        self._counter = 0  # builds committed so far
        self._committed = False  # has this build taken its number yet
        self._tables = False
        self._aggregates: tuple[dict, float | None, dict] | None = None
        self._probes: dict[str, Probe] = {}
        self._family_probes: dict[tuple[str, str], str] = {}  # family -> the node probing it this build
        self.observations = 0  # attempts observed by this learner: a choice older than one may be stale
        self._pending: dict = {}  # statistics, family and location rows changed since the last flush

    # -- builds ---------------------------------------------------------------------
    def begin_build(self) -> None:
        """Start a new build: its number is taken on its first observation (no I/O here)."""
        self._committed = False
        self._aggregates = None
        self._probes.clear()
        self._family_probes.clear()

    @property
    def build(self) -> int:
        self._load()
        return self._counter if self._committed else self._counter + 1

    def _commit_build(self) -> int:
        if not self._committed:
            self._ensure_tables()
            with Transaction(self.db):
                self.db.execute("INSERT OR IGNORE INTO learn_meta VALUES ('builds', 0)")
                self.db.execute("UPDATE learn_meta SET v = v + 1 WHERE k = 'builds'")
                self._counter = int(self.db.execute("SELECT v FROM learn_meta WHERE k = 'builds'").fetchone()[0])
            self._committed = True
        return self._counter

    # -- the project-wide medians ---------------------------------------------------
    def _snapshot(self) -> tuple[dict, float | None, dict]:
        """Median D per (kind, script) and over every rebuild recipe, and the families'
        members and median levels, once per build."""
        if self._aggregates is None:
            groups, offs = self._value_lists()
            groups = {k: v for k, v in groups.items() if v}
            offs = {k: v for k, v in offs.items() if v}
            every = sorted(d for ds in groups.values() for d in ds) if len(groups) > 1 else \
                next(iter(groups.values()), [])
            # the lists are sorted (_value_lists): their medians without sorting again;
            # exp is increasing, so the middle of the exp'ed list is exp of the middle
            families = {k: _FamilySnap(len(v), _median_sorted(v, math.exp), _median_sorted(v))
                        for k, v in offs.items()}
            self._aggregates = ({k: _median_sorted(v) for k, v in groups.items()},
                                _median_sorted(every) if every else None, families)
        return self._aggregates

    def _value_lists(self) -> tuple[dict, dict]:
        """Every node's contribution to the medians (D of rebuild recipes, family offsets),
        as sorted lists per (kind, target): kept up to date by observe, stored at the end
        of a build (end_build) for the next lazy learner."""
        if self._lists is None:
            if self.lazy and not self._all_loaded:
                self._lists = self._stored_lists()
            if self._lists is None:
                self._load_all()
                groups: dict = {}
                offs: dict = {}
                for recipes in self._stats.values():
                    for st in recipes.values():
                        g, o = contribution(st)
                        if g is not None:
                            groups.setdefault(g[0], []).append(g[1])
                        if o is not None:
                            offs.setdefault(o[0], []).append(o[1])
                for lists in (groups, offs):
                    for v in lists.values():
                        v.sort()
                self._lists = (groups, offs)
                self._lists_dirty = True
        return self._lists

    def _update_lists(self, old, new) -> None:
        if self._lists is None or old == new:
            return
        for i, (was, now) in enumerate(zip(old, new)):
            lists = self._lists[i]
            if was is not None:
                v = lists.get(was[0], [])
                j = bisect.bisect_left(v, was[1])
                if j < len(v) and v[j] == was[1]:
                    del v[j]
            if now is not None:
                bisect.insort(lists.setdefault(now[0], []), now[1])
        self._lists_dirty = True

    def _stored_lists(self):
        try:
            row = self.db.execute("SELECT tag, data FROM learn_lists WHERE k = 'values'").fetchone()
        except sqlite3.OperationalError:
            return None
        if row is None or row[0] != self._counter:
            return None  # written before the last observations: recompute
        try:
            groups, offs = marshal.loads(row[1])
            return ({tuple(k): list(v) for k, v in groups}, {tuple(k): list(v) for k, v in offs})
        except (ValueError, TypeError, EOFError):
            return None

    def end_build(self) -> None:
        """Write what is pending; store the median lists for the next build's lazy
        learner (tagged with the build counter: any later observation makes them stale)."""
        self.flush()
        if self._lists is None or not self._lists_dirty or not self._tables:
            return
        data = marshal.dumps(tuple(tuple((list(k), v) for k, v in lists.items()) for lists in self._lists))
        try:
            with Transaction(self.db):
                self.db.execute("CREATE TABLE IF NOT EXISTS learn_lists(k TEXT PRIMARY KEY, tag INTEGER, data BLOB)")
                self.db.execute("INSERT OR REPLACE INTO learn_lists VALUES ('values', ?, ?)", (self._counter, data))
            self._lists_dirty = False
        except sqlite3.OperationalError:
            pass  # read-only: the next build recomputes them

    # -- reading --------------------------------------------------------------------
    def location(self, kind: str, location: str) -> Location:
        self._load()
        return self._location(kind, location)

    def _location(self, kind: str, location: str) -> Location:
        loc = self._locations.get((kind, location))
        if loc is None:
            loc = self._locations[(kind, location)] = Location(kind=kind)
        return loc

    def probes(self) -> list[tuple]:
        """Every probe observed: (build, node, recipe, ok, duration, better), oldest first."""
        self._load()
        try:
            return [tuple(r) for r in self.db.execute(
                "SELECT build, node, recipe, ok, duration, better FROM learn_probes ORDER BY rowid")]
        except sqlite3.OperationalError:
            return []

    # -- storage --------------------------------------------------------------------
    def _load(self) -> None:
        """The small tables (locations, families, the build counter), and every node's
        statistics unless lazy."""
        if self._stats is not None:
            return
        self._stats = {}
        try:
            for kind, location, data in self.db.execute("SELECT kind, location, data FROM location_stats"):
                loc = _row(Location, data)
                if loc is not None:
                    self._locations[(kind, location)] = loc
            row = self.db.execute("SELECT v FROM learn_meta WHERE k = 'builds'").fetchone()
            self._counter = int(row[0]) if row else 0
            self._tables = True
        except sqlite3.OperationalError:  # no tables yet: nothing learned
            pass
        try:  # a table added later: created with the others on the next write
            for kind, target, data in self.db.execute("SELECT kind, target, data FROM family_stats"):
                fam = _row(Family, data)
                if fam is not None:
                    self._families[(kind, target)] = fam
        except sqlite3.OperationalError:
            self._tables = False
        if not self.lazy:
            self._load_all()

    def _load_all(self) -> None:
        if self._all_loaded:
            return
        self._all_loaded = True
        try:
            rows = self.db.execute("SELECT node, recipe, data FROM recipe_stats").fetchall()
        except sqlite3.OperationalError:
            return
        for node, recipe, data in rows:
            if node in self._loaded_nodes:
                continue  # already read (and maybe changed in memory since)
            st = _row(Stats, data)
            if st is not None:
                self._stats.setdefault(node, {})[recipe] = st

    def _node(self, node: str) -> dict:
        """node -> recipe -> Stats for one node (read now if lazy)."""
        recipes = self._stats.get(node)
        if recipes is None:
            recipes = self._stats[node] = {}
            if self.lazy and not self._all_loaded:
                try:
                    for recipe, data in self.db.execute("SELECT recipe, data FROM recipe_stats WHERE node = ?",
                                                        (node,)):
                        st = _row(Stats, data)
                        if st is not None:
                            recipes[recipe] = st
                except sqlite3.OperationalError:
                    pass
        self._loaded_nodes.add(node)
        return recipes

    def _ensure_tables(self) -> None:
        if not self._tables:
            with Transaction(self.db):
                for stmt in _SCHEMA.strip().split(";\n"):
                    self.db.execute(stmt)
            self._tables = True

    def _write(self, node: str, recipe: RecipeLike, st: Stats, location: Location | None,
               family: Family, probed: tuple | None) -> None:
        if probed is not None:
            with Transaction(self.db):
                self.db.execute("INSERT INTO learn_probes VALUES (?, ?, ?, ?, ?, ?)", probed)
        self._pending[("stats", node, recipe.name)] = st
        key = (recipe.kind, recipe.target)
        self._pending[("family",) + key] = family
        if location is not None:
            self._changed_location(key, location)

    def _changed_location(self, key: tuple[str, str], location: Location) -> None:
        """A (kind, location) row to write at the next flush."""
        self._pending[("location",) + key] = location

    def flush(self) -> None:
        """Write the statistics, family and location rows changed since the last flush."""
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        with Transaction(self.db):
            self.db.executemany("INSERT OR REPLACE INTO recipe_stats VALUES (?, ?, ?)",
                                [(k[1], k[2], _dump(st, _STATS_FIELDS)) for k, st in pending.items() if k[0] == "stats"])
            for (what, kind, target), obj in pending.items():
                if what == "stats":
                    continue
                if what == "family":
                    self.db.execute("INSERT OR REPLACE INTO family_stats VALUES (?, ?, ?)",
                                    (kind, target, _dump(obj, _FAMILY_FIELDS)))
                else:
                    self.db.execute("INSERT OR REPLACE INTO location_stats VALUES (?, ?, ?)",
                                    (kind, target, _dump(obj, _LOCATION_FIELDS)))


def _row(cls, data: str):
    """A stored row as cls, or None when it is unreadable (another version's layout):
    learning must never break a build, so such a row counts as nothing learned."""
    try:
        return cls(*json.loads(data))
    except (TypeError, ValueError):
        return None


def contribution(st: Stats | None):
    """What a recipe's statistics add to the project-wide medians: ((kind, target), D)
    for a rebuild recipe that succeeded, and ((kind, target), offset) for a family member."""
    if st is None or not st.n_ok:
        return None, None
    g = ((st.kind, st.target), st.mean) if st.kind not in TRANSFER_KINDS else None
    o = ((st.kind, st.target), st.off) if st.off is not None else None
    return g, o


def _dump(obj, names: tuple[str, ...]) -> str:
    """The fields as a JSON array: compact and quick to load. New fields go at the end
    of their record class, so that older rows still load (missing ones take defaults)."""
    return compact_json([getattr(obj, n) for n in names])
