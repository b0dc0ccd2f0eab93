"""`Workers.runs_warm`: how the build's warm workers will run a recipe that asks now,
which the learner's estimate follows (a recipe measured warm that will run cold is
expected to pay its start-up). No worker process is started here: the pool's
bookkeeping alone decides."""
from __future__ import annotations

from nodefile.workers.pool import START_AT, WAIT_FOR_BOOT, Workers


class FakeWorker:
    def __init__(self, ready=False, dead=False):
        self.ready, self.dead = ready, dead


def pool(tmp_path, early=()):
    w = Workers(str(tmp_path), None, "token", lambda lang: ())
    w.early = lambda: early
    w.wait = 0.0
    return w


def test_the_first_recipe_of_a_language_in_a_small_build_runs_cold(tmp_path):
    w = pool(tmp_path)
    assert START_AT == 2
    assert not w.runs_warm("python", "a", "python")  # nobody asked yet: it would run cold
    w.asked["python"] = 1  # the first recipe asked: the second starts the worker and waits for it
    assert w.runs_warm("python", "b", "python")


def test_a_language_started_with_the_build_runs_warm_from_its_first_recipe(tmp_path):
    w = pool(tmp_path, early=("r",))
    assert w.runs_warm("r", "a", "r")
    assert not w.runs_warm("python", "a", "python")


def test_a_live_worker_decides_and_a_slow_start_is_not_waited_for(tmp_path):
    w = pool(tmp_path)
    w.live["python"] = FakeWorker(ready=True)
    assert w.runs_warm("python", "a", "python")
    w.live["python"] = FakeWorker(ready=False)  # starting
    assert w.runs_warm("python", "a", "python")
    w.boots["python"] = WAIT_FOR_BOOT + 1  # its last start took too long: recipes do not wait
    assert not w.runs_warm("python", "a", "python")
    w.live["python"] = FakeWorker(dead=True)
    assert not w.runs_warm("python", "a", "python")


def test_a_language_or_a_recipe_that_runs_cold_does(tmp_path):
    w = pool(tmp_path)
    w.asked["python"] = 5
    w.cold_only.add(("a", "python"))
    assert not w.runs_warm("python", "a", "python")
    assert w.runs_warm("python", "b", "python")
    w.reasons["python"] = "the python worker process died"
    assert not w.runs_warm("python", "b", "python")
