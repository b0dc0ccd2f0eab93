"""The learner keeps a recipe's warm and cold durations apart (issue 20 item 4): a warm
run (a fork of a preloaded worker) skips the interpreter's start and its imports, so
its duration says little of a cold run, and the other way round."""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass

import pytest

from nodefile.learn import LEARNED, Learner
from nodefile.learn.stats import COLD_RUNS, START_DEFAULT, WARM_RUNS


@dataclass(frozen=True)
class R:
    name: str
    kind: str
    target: str


FIT = R("fit", "python", "tasks/fit.py")
SH = R("sh", "shell", "sh fit.sh")


def observe_builds(learner, node, recipe, *durations, warm):
    for d in durations:
        learner.begin_build()
        learner.observe(node, recipe, True, d, warm=warm)
        learner.end_build()


def estimate(learner, recipes, warm):
    return learner.estimate("n", recipes, warm_of=lambda r: warm and r.kind == "python")


def test_cold_durations_do_not_move_the_warm_estimate():
    learner = Learner(sqlite3.connect(":memory:"))
    observe_builds(learner, "n", FIT, 0.05, 0.05, 0.05, warm=True)
    before = estimate(learner, [FIT], warm=True).estimates[0]
    assert before.source == LEARNED and before.duration == pytest.approx(0.05)
    observe_builds(learner, "n", FIT, 0.9, 1.1, 1.0, warm=False)  # --cold runs: start R or Python, import
    after = estimate(learner, [FIT], warm=True).estimates[0]
    assert after.duration == pytest.approx(0.05)  # unmoved
    cold = estimate(learner, [FIT], warm=False).estimates[0]
    assert cold.source == LEARNED and 0.9 < cold.duration < 1.2
    assert (learner.stats("n", "fit").n, learner.stats("n", "fit", warm=True).n) == (3, 3)


def test_a_cold_first_run_does_not_inflate_the_warm_estimate():
    learner = Learner(sqlite3.connect(":memory:"))
    observe_builds(learner, "n", FIT, 1.0, warm=False)  # the first build: the worker was still starting
    # measured only cold: that is the estimate of a warm run until one is measured (not unknown)
    first = estimate(learner, [FIT], warm=True).estimates[0]
    assert first.source == COLD_RUNS and first.duration == pytest.approx(1.0) and first.known
    observe_builds(learner, "n", FIT, 0.05, warm=True)
    assert estimate(learner, [FIT], warm=True).estimates[0].duration == pytest.approx(0.05)
    # and the other way: a --cold run of a recipe only measured warm
    other = Learner(sqlite3.connect(":memory:"))
    observe_builds(other, "n", FIT, 0.05, warm=True)
    est = estimate(other, [FIT], warm=False).estimates[0]
    # plus the start-up a warm run skips (assumed until measured: see below)
    assert est.source == WARM_RUNS and est.duration == pytest.approx(0.05 + START_DEFAULT)
    assert "start-up (assumed)" in str(est)


def test_a_cold_run_estimated_from_warm_runs_pays_the_learned_start_up():
    """A recipe measured only warm (4 ms, a fork of a preloaded worker) that will run
    cold - the first Python recipe of a small build - is not expected to take 4 ms: a
    cold run starts the interpreter and imports again. The start-up of its kind is
    learned from recipes measured both ways, and keeps the cache's 5 ms restore first."""
    learner = Learner(sqlite3.connect(":memory:"))
    for node, cold, warm in (("a", 0.30, 0.010), ("b", 0.26, 0.006)):
        observe_builds(learner, node, FIT, cold, warm=False)
        observe_builds(learner, node, FIT, warm, warm=True)
    observe_builds(learner, "n", FIT, 0.004, warm=True)
    est = estimate(learner, [FIT], warm=False).estimates[0]
    assert est.source == WARM_RUNS and 0.2 < est.duration < 0.35
    assert "start-up (learned)" in str(est)
    assert estimate(learner, [FIT], warm=True).estimates[0].duration == pytest.approx(0.004)
    load = R("load", "load", "cache")
    learner.begin_build()
    learner.observe("n", load, True, 0.005, size=100)
    learner.end_build()
    assert learner.estimate("n", [FIT, load], warm_of=lambda r: False).order[0] == "load"
    assert learner.estimate("n", [FIT, load], warm_of=lambda r: r.kind == "python").order[0] == "fit"
    # kept with the other learned tables
    again = Learner(learner.db)
    assert again.estimate("n", [FIT], warm_of=lambda r: False).estimates[0].duration == pytest.approx(est.duration)


def test_the_choice_uses_the_durations_of_how_the_recipe_runs_now():
    """A python recipe that is quick warm and slow cold, against a shell recipe: warm,
    python is first; with --cold (or warm = false), the shell recipe is."""
    learner = Learner(sqlite3.connect(":memory:"))
    observe_builds(learner, "n", FIT, 0.1, 0.1, warm=True)
    observe_builds(learner, "n", FIT, 1.5, 1.5, warm=False)
    observe_builds(learner, "n", SH, 0.5, 0.5, warm=False)
    learner.begin_build()
    warm = learner.choose("n", [FIT, SH], warm_of=lambda r: r.kind == "python")
    assert warm.order == ("fit", "sh") and warm.recipes[0] is FIT  # the caller's objects and names
    assert warm.estimates[0].recipe == "fit" and warm.estimates[0].duration == pytest.approx(0.1)
    cold = learner.choose("n", [FIT, SH])
    assert cold.order == ("sh", "fit")
    assert [line.split(":")[0].strip() for line in cold.explain()[1:]] == ["1. sh", "2. fit"]


def test_a_probe_run_warm_is_observed_under_its_own_name():
    """A bounded probe of a recipe never measured, run warm: its observation ends the
    probe (its back-off, the learner's probe record) like a cold one."""
    learner = Learner(sqlite3.connect(":memory:"))
    slow = R("slow", "python", "tasks/slow.py")
    observe_builds(learner, "n", slow, 1.0, warm=True)
    learner.begin_build()
    choice = learner.choose("n", [slow, FIT], warm_of=lambda r: True)
    assert choice.probe == "fit" and choice.recipes[0] is FIT and choice.deadline == pytest.approx(1.5)
    learner.observe("n", FIT, True, 0.2, warm=True)
    learner.end_build()
    assert [(p[2], p[3], p[5]) for p in learner.probes()] == [("fit", 1, 1)]
    learner.begin_build()
    assert learner.choose("n", [slow, FIT], warm_of=lambda r: True).order == ("fit", "slow")


def test_old_rows_load_as_cold_and_warm_rows_reload():
    """A state store written before warm and cold were kept apart has one row per recipe:
    it loads as the recipe's cold statistics. Warm rows survive a reload."""
    db = sqlite3.connect(":memory:")
    learner = Learner(db)
    observe_builds(learner, "n", FIT, 1.0, warm=False)
    observe_builds(learner, "n", FIT, 0.05, warm=True)
    assert sorted(r[0] for r in db.execute("SELECT recipe FROM recipe_stats")) == ["fit", "fit (warm)"]
    again = Learner(db)
    assert again.stats("n", "fit").mean == pytest.approx(1.0)
    assert again.stats("n", "fit", warm=True).mean == pytest.approx(0.05)
