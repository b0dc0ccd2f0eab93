"""The recipe-choice policy changes of issue 21's regret work: a regime change is believed
after one sample, and a probe's deadline is tied to the expected time to make the node
without it (the incumbent, and what runs when the incumbent fails)."""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass

import pytest

from nodefile.learn import Learner


@dataclass(frozen=True)
class R:
    name: str
    kind: str
    target: str


FETCH = R("fetch", "shell", "sh fetch.sh")
REBUILD = R("rebuild", "shell", "sh rebuild.sh")
QUICK = R("quick", "shell", "sh quick.sh")


def build(learner, node, outcomes, **kw):
    """One build: choose, then run the order until a success. `outcomes[name] = seconds`
    (negative: fails after -seconds). Returns the choice."""
    learner.begin_build()
    choice = learner.choose(node, outcomes and [r for r in (FETCH, REBUILD, QUICK) if r.name in outcomes], **kw)
    for r in choice.recipes:
        d = outcomes[r.name]
        if choice.probe == r.name and choice.deadline is not None and abs(d) > choice.deadline:
            learner.observe(node, r, False, choice.deadline, censored=True)
            continue
        learner.observe(node, r, d >= 0, abs(d))
        if d >= 0:
            break
    learner.end_build()
    return choice


def test_a_recipe_that_becomes_five_times_slower_is_left_after_one_build():
    """A store slowing down 5x: the EWMA alone (weight 0.3) would need two or three slow
    fetches to believe it; a sample more than twice off its usual duration is a regime
    change, and one is enough."""
    learner = Learner(sqlite3.connect(":memory:"))
    for fetch, rebuild in [(0.1, None), (0.1, None), (None, 0.3), (None, 0.3), (0.1, None), (0.1, None)]:
        learner.begin_build()  # both measured (the rebuild while the store lacked the file)
        learner.observe("n", FETCH if fetch else REBUILD, True, fetch or rebuild)
        learner.end_build()
    assert build(learner, "n", {"fetch": 0.5, "rebuild": 0.3}).order[0] == "fetch"  # nobody knew
    assert build(learner, "n", {"fetch": 0.5, "rebuild": 0.3}).order[0] == "rebuild"
    fetch = learner.stats("n", "fetch")
    assert fetch.mean > 0.3


def test_ordinary_noise_moves_the_estimate_as_before():
    learner = Learner(sqlite3.connect(":memory:"))
    for d in (1.0, 1.0, 1.0, 1.0):
        build(learner, "n", {"rebuild": d})
    build(learner, "n", {"rebuild": 1.3})  # 30 % off: noise, not a jump
    assert learner.stats("n", "rebuild").mean == pytest.approx(1.0 * (1.3 ** 0.3), rel=0.05)


def test_a_probe_deadline_covers_the_recipe_that_runs_when_the_incumbent_fails():
    """The incumbent fails one build in four (a flaky store, 0.1 s) and the rebuild behind
    it takes 1 s: without the probe, the node takes about 0.35 s; a never-measured `quick` is
    probed with 1.5 x that, not 1.5 x the fetch's 0.1 s (which would stop it before it
    could show that it beats the chain)."""
    learner = Learner(sqlite3.connect(":memory:"))
    for i in range(8):
        learner.begin_build()
        if i % 4 == 3:  # the store lacks it: the rebuild runs after the failed fetch
            learner.observe("n", FETCH, False, 0.1)
            learner.observe("n", REBUILD, True, 1.0)
        else:
            learner.observe("n", FETCH, True, 0.1)
        learner.end_build()
    learner.begin_build()
    choice = learner.choose("n", [FETCH, REBUILD, QUICK])
    assert choice.probe == "quick"
    est = {e.recipe: e for e in choice.estimates}
    fetch, rebuild = est["fetch"], est["rebuild"]
    assert choice.order[1:] == ("fetch", "rebuild")
    without = fetch.cost + (1 - fetch.p) * rebuild.duration
    assert without > 2 * fetch.duration
    assert choice.deadline == pytest.approx(1.5 * without)
    assert "the expected time without it (fetch, then rebuild)" in choice.explain()[0]


def test_a_reliable_incumbent_alone_sets_the_deadline_as_before():
    learner = Learner(sqlite3.connect(":memory:"))
    slow, fast = R("slow", "python", "slow.py"), R("fast", "python", "fast.py")
    learner.begin_build()
    learner.observe("n", slow, True, 1.0)
    learner.end_build()
    learner.begin_build()
    choice = learner.choose("n", [slow, fast])
    assert choice.probe == "fast" and choice.deadline == pytest.approx(1.5)
    assert "deadline 1.5s = 1.5 × slow's expected 1.0s" in choice.explain()[0], choice.explain()


def _slow_spell(learner, node="n"):
    """The fetch measured at 0.1 s (its best), the rebuild at 0.3 s, then the store slow
    (0.8 s): the learner leaves the fetch after one slow build."""
    for fetch, rebuild in [(0.1, None), (0.1, None), (None, 0.3), (None, 0.3), (0.1, None), (0.1, None)]:
        learner.begin_build()
        learner.observe(node, FETCH if fetch else REBUILD, True, fetch or rebuild)
        learner.end_build()
    build(learner, node, {"fetch": 0.8, "rebuild": 0.3})
    assert build(learner, node, {"fetch": 0.8, "rebuild": 0.3}).order[0] == "rebuild"


def test_a_re_probe_asks_is_it_back_to_its_best_and_is_stopped_soon_if_not():
    """A store slow for a while: the re-probe of its fetch is stopped at 1.5 x the fetch's
    best (0.15 s), not at 1.5 x the rebuild's 0.3 s: back at its best it would be done by
    then; a probe that finds the store still slow costs half as much (issue 21)."""
    learner = Learner(sqlite3.connect(":memory:"))
    _slow_spell(learner)
    probes = []
    for _ in range(12):
        choice = build(learner, "n", {"fetch": 0.8, "rebuild": 0.3})
        if choice.probe:
            probes.append(choice)
    assert probes, "the slow fetch was never checked again"
    for choice in probes:
        assert choice.order[0] == "fetch"
        assert choice.deadline == pytest.approx(0.15, rel=0.05)
        head = choice.explain()[0]
        assert "1.5 × its best" in head and "stopped and rebuild runs" in head
    # still slow: the fetch stays behind the rebuild, its estimate no lower than the deadline
    est = {e.recipe: e for e in learner.estimate("n", [FETCH, REBUILD]).estimates}
    assert est["fetch"].duration >= 0.15


def test_a_re_probe_that_finds_it_back_switches_at_once():
    learner = Learner(sqlite3.connect(":memory:"))
    _slow_spell(learner)
    for _ in range(12):
        choice = build(learner, "n", {"fetch": 0.1, "rebuild": 0.3})  # the store is back
        if choice.probe:
            break
    assert choice.probe == "fetch"
    assert build(learner, "n", {"fetch": 0.1, "rebuild": 0.3}).order[0] == "fetch"


def test_in_an_outage_one_node_per_build_tries_the_store_again():
    """Both nodes' fetches failed in the last build (the store is down, each waited for
    the time-out): in the next build the first node to ask tries the fetch again and the
    other puts it behind its rebuild, saying who checks; once the store is back, both
    fetch again."""
    learner = Learner(sqlite3.connect(":memory:"))
    for i in range(6):
        learner.begin_build()
        for node in ("a", "b"):
            if i == 2:
                learner.observe(node, REBUILD, True, 1.0)
            learner.observe(node, FETCH, True, 0.1)
        learner.end_build()
    learner.begin_build()  # the outage: both fetches time out, the rebuilds run
    for node in ("a", "b"):
        learner.observe(node, FETCH, False, 0.3)
        learner.observe(node, REBUILD, True, 1.0)
    learner.end_build()
    learner.begin_build()
    first = learner.choose("a", [FETCH, REBUILD])
    second = learner.choose("b", [FETCH, REBUILD])
    assert first.order[0] == "fetch"
    assert second.order == ("rebuild", "fetch")
    assert "a tries it again this build" in "\n".join(second.explain())
    learner.observe("a", FETCH, True, 0.1)  # the store is back
    learner.observe("b", REBUILD, True, 1.0)
    learner.end_build()
    learner.begin_build()
    assert learner.choose("a", [FETCH, REBUILD]).order[0] == "fetch"
    assert learner.choose("b", [FETCH, REBUILD]).order[0] == "fetch"


def test_a_fetch_that_failed_in_a_new_project_is_tried_again_when_due():
    """A new project: the store is empty, so every fetch fails at once and the rebuilds
    run. Nothing but a guess stands for the fetch's duration then, and no sibling ever
    succeeded with it: without a bounded re-probe when due it would never run again,
    and a store filled later would never be used."""
    learner = Learner(sqlite3.connect(":memory:"))
    nodes = ("a", "b")
    learner.begin_build()
    for node in nodes:
        learner.observe(node, FETCH, False, 0.02)  # "not in the store", in 20 ms
        learner.observe(node, REBUILD, True, 0.2)
    learner.end_build()
    probed_at = None
    for k in range(2, 10):  # the store is full now: a fetch takes 0.05 s
        learner.begin_build()
        for node in nodes:
            choice = learner.choose(node, [FETCH, REBUILD])
            if choice.probe == "fetch":
                assert choice.order[0] == "fetch" and choice.deadline == pytest.approx(1.5 * 0.2, rel=0.1)
                assert "failed here" in choice.explain()[0]
                probed_at = probed_at or k
            for r in choice.recipes:
                learner.observe(node, r, True, 0.05 if r is FETCH else 0.2)
                break
        learner.end_build()
    assert probed_at is not None and probed_at <= 6  # due 4 builds after the failure
    learner.begin_build()
    assert all(learner.choose(node, [FETCH, REBUILD]).order[0] == "fetch" for node in nodes)
