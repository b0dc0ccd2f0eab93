"""The lazy learner (a build of a few nodes in a big project) reads one node's statistics
at a time and the project-wide medians from stored lists; it must choose exactly what
the full learner chooses from the same database."""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from nodefile.learn import Learner


@dataclass(frozen=True)
class R:
    name: str
    kind: str
    target: str


FETCH = R("fetch", "fetch", "backup")
REBUILD = R("rebuild", "python", "tasks/train.py")
RECIPES = [FETCH, REBUILD]
NODES = [f"n{i}" for i in range(12)]


def run_build(learner: Learner, nodes, seconds) -> dict:
    """Every node chooses, then its first recipe runs (fetch fails for odd nodes)."""
    learner.begin_build()
    out = {}
    for n in nodes:
        choice = learner.choose(n, RECIPES)
        out[n] = choice
        for r in choice.recipes:
            ok = not (r.name == "fetch" and int(n[1:]) % 2)
            learner.observe(n, r, ok, seconds(n, r), size=1000 * (1 + int(n[1:])))
            if ok:
                break
    learner.end_build()
    return out


def same(a, b) -> None:
    assert a.recipes == b.recipes
    assert [(e.recipe, round(e.duration, 9), round(e.p, 9), e.source, e.note) for e in a.estimates] == \
        [(e.recipe, round(e.duration, 9), round(e.p, 9), e.source, e.note) for e in b.estimates]


def test_a_lazy_learner_chooses_what_the_full_one_chooses(tmp_path):
    db = sqlite3.connect(str(tmp_path / "s.db"), isolation_level=None)
    secs = lambda n, r: (0.5 if r.name == "fetch" else 2.0) * (1 + int(n[1:]) / 10)  # noqa: E731
    for _ in range(3):
        run_build(Learner(db), NODES, secs)
    # a node seen before, and a new node whose estimate is a prior from its siblings
    for node in ("n3", "n4", "new"):
        full, lazy = Learner(db), Learner(db, lazy=True)
        full.begin_build()
        lazy.begin_build()
        same(full.choose(node, RECIPES), lazy.choose(node, RECIPES))
    assert not Learner(db, lazy=True)._all_loaded  # and it did not read every node


def test_lazy_builds_in_a_row_keep_the_medians_exact(tmp_path):
    db = sqlite3.connect(str(tmp_path / "s.db"), isolation_level=None)
    run_build(Learner(db), NODES, lambda n, r: 1.0 + int(n[1:]))
    for k in range(3):  # a few nodes rebuilt, lazily, with new durations each time
        lazy = Learner(db, lazy=True)
        run_build(lazy, ["n1", "n2"], lambda n, r: 0.1 * (k + 1))
        assert not lazy._all_loaded
    full, lazy = Learner(db), Learner(db, lazy=True)
    full.begin_build()
    lazy.begin_build()
    same(full.choose("new", RECIPES), lazy.choose("new", RECIPES))
    assert full._snapshot() == lazy._snapshot()


def test_stale_stored_medians_are_recomputed(tmp_path):
    db = sqlite3.connect(str(tmp_path / "s.db"), isolation_level=None)
    run_build(Learner(db), NODES, lambda n, r: 1.0)
    other = Learner(db)  # a build that observes without storing the lists (killed before its end)
    other.begin_build()
    other.observe("n0", REBUILD, True, 50.0)
    full, lazy = Learner(db), Learner(db, lazy=True)
    full.begin_build()
    lazy.begin_build()
    same(full.choose("new", RECIPES), lazy.choose("new", RECIPES))
    assert lazy._all_loaded  # it noticed and read everything


def test_an_unreadable_statistics_row_is_ignored_not_fatal(tmp_path):
    db = sqlite3.connect(str(tmp_path / "s.db"), isolation_level=None)
    run_build(Learner(db), NODES, lambda n, r: 1.0)
    db.execute("UPDATE recipe_stats SET data = '[1, 2]' WHERE node = 'n0'")  # another version's layout
    db.execute("UPDATE family_stats SET data = 'not json'")
    for lazy in (False, True):
        learner = Learner(db, lazy=lazy)
        learner.begin_build()
        choice = learner.choose("n0", RECIPES)
        assert set(choice.recipes) == set(RECIPES)
