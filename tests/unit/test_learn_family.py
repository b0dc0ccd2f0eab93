"""Recipe families: what one node learns about a recipe shared with its siblings (the
same kind and script, command template or store) informs the others.

Recorded histories on an in-memory SQLite database, no processes. Every node has a
`fetch` from one store and a `rebuild` running one script; each test checks a
behaviour against a control that does not share the recipe, so that it can fail.
"""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass

import pytest

from nodefile.learn import LEARNED, PREVIOUS_SCRIPT, Learner


@dataclass(frozen=True)
class R:
    name: str
    kind: str
    target: str


FETCH = R("fetch", "shell", "sh fetch.sh {node} {outputs}")  # one command template: one family
REBUILD = R("rebuild", "shell", "sh rebuild.sh {node} {outputs}")
RECIPES = [FETCH, REBUILD]
NODES = ("a", "b", "c", "d", "e")
FETCH_S = {"a": 0.05, "b": 0.10, "c": 0.20, "d": 0.30, "e": 0.40}  # a is the cheapest to probe
REBUILD_S = {n: 5 * FETCH_S[n] for n in NODES}  # fetch is best for every node while the store works
TIMEOUT = 1.0  # a fetch from a store that is down fails after this


def new_learner() -> Learner:
    return Learner(sqlite3.connect(":memory:"))


def build(learner, nodes, fetch, rebuild=None, recipes=RECIPES):
    """One build: every node in turn chooses, then tries its recipes in order until one
    works. `fetch(node)` / `rebuild(node)`: (ok, seconds). Returns {node: Choice}."""
    rebuild = rebuild or (lambda n: (True, REBUILD_S[n]))
    learner.begin_build()
    choices = {}
    for n in nodes:
        choice = choices[n] = learner.choose(n, recipes)
        for r in choice.recipes:
            ok, secs = (fetch if r.name == "fetch" else rebuild)(n)
            learner.observe(n, r, ok, secs)
            if ok:
                break
    learner.end_build()  # as the engine does: the family rows are written at the end of a build
    return choices


def healthy(n):
    return True, FETCH_S[n]


def down(n):
    return False, TIMEOUT


def history(learner, nodes=NODES, recipes=RECIPES):
    """Ten builds in which every node rebuilt once (the first) and fetched from a healthy
    store (the others)."""
    fetch, rebuild = recipes
    for k in range(10):
        learner.begin_build()
        for n in nodes:
            if k == 0:
                learner.observe(n, rebuild, True, REBUILD_S[n], script_hash="v1")
            else:
                learner.observe(n, fetch, True, FETCH_S[n])


def first(choice) -> str:
    return choice.order[0]


# -- sharing --------------------------------------------------------------------------------------
def test_the_family_is_learned_and_fetch_is_best_everywhere():
    learner = new_learner()
    history(learner)
    learner.begin_build()
    for n in NODES:
        choice = learner.choose(n, RECIPES)
        assert choice.order == ("fetch", "rebuild") and choice.probe is None
        assert choice.estimates[0].duration == pytest.approx(FETCH_S[n], rel=0.01)
        assert choice.estimates[0].source == LEARNED
    fam = learner.family("shell", FETCH.target)
    assert fam is not None and fam.level == pytest.approx(0, abs=1e-9)


def test_an_outage_seen_by_the_first_nodes_demotes_the_store_for_their_siblings_in_the_same_build():
    learner = new_learner()
    history(learner)
    learner.begin_build()
    assert first(learner.choose("a", RECIPES)) == "fetch"
    learner.observe("a", FETCH, False, TIMEOUT)  # the store is down
    learner.observe("a", REBUILD, True, REBUILD_S["a"])
    for n in ("b", "c"):  # decided after a, in the same build
        choice = learner.choose(n, RECIPES)
        assert first(choice) == "rebuild", n
        fetch = dict(zip(choice.order, choice.estimates))["fetch"]
        assert "failing for its siblings" in fetch.note
        assert fetch.fail_cost == pytest.approx(TIMEOUT)  # an outage's time to fail, not a quick miss
    # the control: the same failure of a fetch from another store (another family) changes nothing
    other = new_learner()
    own = R("fetch", "shell", "sh fetch.sh a {outputs}")  # a's own command: a family of its own
    history(other, recipes=[own, REBUILD])
    other.begin_build()
    other.choose("a", [own, REBUILD])
    other.observe("a", own, False, TIMEOUT)
    other.observe("a", REBUILD, True, REBUILD_S["a"])
    assert first(other.choose("b", [FETCH, REBUILD])) == "fetch"
    assert first(other.choose("c", [FETCH, REBUILD])) == "fetch"


def test_one_node_failing_alone_is_not_an_outage():
    learner = new_learner()
    history(learner)
    learner.begin_build()
    for n in NODES:
        choice = learner.choose(n, RECIPES)
        ok = n != "b"  # b's artifact is missing from the store; the others fetch as always
        learner.observe(n, FETCH, ok, FETCH_S[n] if ok else TIMEOUT)
        if not ok:
            learner.observe(n, REBUILD, True, REBUILD_S[n])
    learner.begin_build()
    for n in ("a", "c", "d", "e"):
        choice = learner.choose(n, RECIPES)
        assert first(choice) == "fetch" and not choice.estimates[0].note


def test_the_outage_is_over_when_one_probe_finds_the_store_back_and_all_siblings_follow():
    learner = new_learner()
    history(learner)
    outage = build(learner, NODES, down)
    # a fails first; b and c skip the store; d (a 1.5 s rebuild) still tries: one failure in
    # one sibling is p = 1/2, and 0.3 s + 1 s timeout < 1.5 s; after it, e skips the store
    assert [first(outage[n]) for n in NODES] == ["fetch", "rebuild", "rebuild", "fetch", "rebuild"]
    probes = []
    for _ in range(12):  # still down: only rebuilds, and now and then a probe of the store
        choices = build(learner, NODES, down)
        probing = [n for n, c in choices.items() if c.probe]
        assert len(probing) <= 1  # one probe per family and build, not every node at once
        assert all(first(c) == "rebuild" for n, c in choices.items() if n not in probing)
        probes += probing
    assert probes and set(probes) <= {"a", "b", "c"}  # the cheaper half probes for the family
    backoffs = {n: learner.stats(n, "fetch").backoff for n in set(probes)}
    assert all(b >= 8 for b in backoffs.values())  # failed probes still double the back-off

    # the store is back: the next probe finds it, and every sibling decided after it fetches
    learner.begin_build()
    order = []
    for _ in range(40):
        choices = build(learner, NODES, healthy)
        probing = [n for n, c in choices.items() if c.probe]
        if probing:
            break
    else:
        pytest.fail("the store was never probed again")
    prober = probing[0]
    after = NODES[NODES.index(prober) + 1:]
    assert after, "the prober was the last node: nothing to check"
    assert all(first(choices[n]) == "fetch" for n in after)
    learner.begin_build()
    for n in NODES:
        order.append(first(learner.choose(n, RECIPES)))
    assert order == ["fetch"] * len(NODES)
    assert [p[1] for p in learner.probes()] == probes + [prober]  # recorded in learn_probes


def test_a_store_slowing_down_for_everyone_moves_every_sibling_but_one_slow_node_does_not():
    learner = new_learner()
    history(learner)
    learner.begin_build()
    for n in ("a", "b", "c"):  # three nodes see the store 10x slower
        learner.choose(n, RECIPES)
        learner.observe(n, FETCH, True, 10 * FETCH_S[n])
    est = {e.recipe: e for e in learner.choose("d", RECIPES).estimates}
    # three agreeing siblings move the level 3/4 of the way (n/(n+1)): x5.6 of 10
    assert 5 * FETCH_S["d"] < est["fetch"].duration < 10 * FETCH_S["d"]
    assert "family shift ×" in est["fetch"].note and "3 siblings" in est["fetch"].note
    assert first(learner.choose("e", RECIPES)) == "rebuild"  # x5.6 of 0.4 s > its 2 s rebuild
    assert "family shift" in learner.choose("e", RECIPES).explain()[2]

    # control: only one node of five is slow (its own artifact grew): the others keep their estimates
    other = new_learner()
    history(other)
    other.begin_build()
    for n in NODES:
        other.choose(n, RECIPES)
        other.observe(n, FETCH, True, FETCH_S[n] * (10 if n == "a" else 1))
    other.begin_build()
    for n in ("b", "c", "d", "e"):
        e = other.choose(n, RECIPES).estimates[0]
        assert (e.recipe, e.note) == ("fetch", "") and e.duration == pytest.approx(FETCH_S[n], rel=0.05)


def test_a_silently_faster_rebuild_seen_by_the_nodes_that_rebuild_re_ranks_the_others():
    learner = new_learner()
    history(learner)
    # d and e rebuild (their fetch got slow); the rebuild script then silently gets 20x faster
    slow = {"d", "e"}
    for _ in range(3):
        build(learner, NODES, lambda n: (True, FETCH_S[n] * (20 if n in slow else 1)))
    faster = lambda n: (True, REBUILD_S[n] / 20)  # noqa: E731
    learner.begin_build()
    for n in ("e", "d"):
        assert first(learner.choose(n, RECIPES)) == "rebuild"
        learner.observe(n, REBUILD, True, faster(n)[1])
    for n in ("a", "b", "c"):  # a quarter of the fetch now: rebuild first, without any probe
        choice = learner.choose(n, RECIPES)
        assert first(choice) == "rebuild" and choice.probe is None


# -- the rules that stay ------------------------------------------------------------------------
def test_same_history_same_choices_and_after_a_reload():
    def play():
        db = sqlite3.connect(":memory:")
        learner = Learner(db)
        history(learner)
        out = []
        for k in range(25):
            fetch = down if 3 <= k < 10 else (lambda n: (True, 6 * FETCH_S[n])) if k >= 18 else healthy
            out.append(build(learner, NODES, fetch))
        return db, learner, out

    db, live, first_run = play()
    _, _, second_run = play()
    assert first_run == second_run
    reloaded = Learner(db)
    live.begin_build()
    for n in NODES:
        assert reloaded.choose(n, RECIPES) == live.choose(n, RECIPES)
    assert reloaded.family("shell", FETCH.target) == live.family("shell", FETCH.target)


def test_a_changed_script_still_resets_a_member_of_a_family():
    learner = new_learner()
    history(learner)
    old = learner.stats("c", "rebuild").mean
    learner.begin_build()
    choice = learner.choose("c", RECIPES, script_of=lambda r: "v2" if r is REBUILD else None)
    est = dict(zip(choice.order, choice.estimates))["rebuild"]
    assert est.source == PREVIOUS_SCRIPT and est.duration == pytest.approx(old)
    st = learner.stats("c", "rebuild")
    assert (st.n, st.n_ok, st.backoff, st.off) == (0, 0, 0, None)
    assert learner.stats("d", "rebuild").n_ok == 1  # its siblings keep theirs


def test_backoff_of_a_family_probe_still_grows():
    learner = new_learner()
    history(learner)
    for _ in range(3):
        build(learner, NODES, down)
    seen = []
    for _ in range(120):
        choices = build(learner, NODES, down)
        for n, c in choices.items():
            if c.probe:
                seen.append((learner.build, n, learner.stats(n, "fetch").backoff))
    by_node: dict = {}
    for b, n, backoff in seen:
        by_node.setdefault(n, []).append((b, backoff))
    for n, runs in by_node.items():
        backoffs = [b for _, b in runs]
        assert backoffs == sorted(backoffs) and backoffs[-1] > backoffs[0], (n, runs)
        gaps = [b2 - b1 for (b1, _), (b2, _) in zip(runs, runs[1:])]
        assert all(g >= 8 for g in gaps), (n, gaps)  # 4, then 8, 16, ... builds between its probes
    assert len(seen) < 20  # over 120 builds of an outage: a few cheap probes, not one per node and build
