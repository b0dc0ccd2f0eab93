"""nodefile.scheduler with a fake executor (virtual clock) and a fake runner: no processes."""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import pytest

from nodefile.executors.base import Executor, Finished, Offer
from nodefile.graph import bottom_levels
from nodefile.model import NodeResult, Outcome
from nodefile.scheduler import Scheduler


@dataclass
class Spec:
    node: str
    resources: dict
    duration: float = 1.0
    fail: bool = False
    attempt: int = 1


class FakeExecutor(Executor):
    """Runs specs on a virtual clock; records starts, ends and resource use. It
    implements the executor contract (executors/base.py); it declines successors."""
    name = "fake"
    successors = False

    def __init__(self):
        self.clock = 0.0
        self.next = 0
        self.running: dict[int, tuple[float, Spec]] = {}  # handle -> (end, spec)
        self.use: dict[str, float] = {}
        self.peak: dict[str, float] = {}
        self.launched: list[str] = []
        self.start: dict[str, float] = {}
        self.end: dict[str, float] = {}
        self.max_parallel = 0
        self.reports: list[Finished] = []  # ended without running to their end (cancelled, held)

    def offer(self):
        return Offer(self.name, 1, {"cores": 1.0}, shared_filesystem=True, successors=self.successors)

    def submit_after(self, spec, earlier):
        return None

    def withdraw(self, handle):
        pass

    def cancel(self, handle):
        if handle in self.running:
            _, spec = self.running.pop(handle)
            for k, v in spec.resources.items():
                self.use[k] -= v
            self.reports.append(Finished(handle, None, 0.0, cancelled=True))

    def cancel_all(self):
        for h in list(self.running):
            self.cancel(h)
        done, self.reports = self.reports, []
        return done

    def wake(self):
        pass

    def close(self):
        pass

    def submit(self, spec):
        self.next += 1
        self._start(self.next, spec)
        return self.next

    def _start(self, handle, spec):
        self.running[handle] = (self.clock + spec.duration, spec)
        self.launched.append(spec.node)
        self.start.setdefault(spec.node, self.clock)
        for k, v in spec.resources.items():
            self.use[k] = self.use.get(k, 0.0) + v
            self.peak[k] = max(self.peak.get(k, 0.0), self.use[k])
        self.max_parallel = max(self.max_parallel, len(self.running))

    def wait(self, timeout):
        if self.reports:
            out, self.reports = self.reports, []
            return out
        assert self.running, "the scheduler waited with nothing running"
        t = min(end for end, _ in self.running.values())
        self.clock = t
        done = []
        for h, (end, spec) in sorted(self.running.items()):
            if end == t:
                del self.running[h]
                self.end[spec.node] = t
                for k, v in spec.resources.items():
                    self.use[k] -= v
                done.append(Finished(h, 1 if spec.fail else 0, spec.duration))
        return done


@dataclass
class FakeRunner:
    durations: dict = field(default_factory=dict)
    failing: set = field(default_factory=set)
    resources: dict = field(default_factory=dict)
    up_to_date: set = field(default_factory=set)
    retries: dict = field(default_factory=dict)  # node -> number of failing attempts before success
    decided: list = field(default_factory=list)
    started_specs: list = field(default_factory=list)
    done_results: list = field(default_factory=list)
    ticks: int = 0

    def spec(self, name, attempt=1):
        fail = name in self.failing or attempt <= self.retries.get(name, 0)
        return Spec(name, dict(self.resources.get(name, {"cores": 1.0})), self.durations.get(name, 1.0), fail,
                    attempt)

    def decide(self, name):
        self.decided.append(name)
        if name in self.up_to_date:
            return NodeResult(name, Outcome.UP_TO_DATE)
        return self.spec(name)

    def finished(self, name, spec, fin):
        if fin.exit_code == 0:
            return NodeResult(name, Outcome.OK, "fake", spec.duration)
        if spec.attempt <= self.retries.get(name, 0):
            return self.spec(name, spec.attempt + 1)
        return NodeResult(name, Outcome.FAILED, "fake", spec.duration, message="exit 1")

    def started(self, spec):
        self.started_specs.append(spec)

    def done(self, result):
        self.done_results.append(result)

    def tick(self, running, done, total):
        self.ticks += 1


class FakeChainExecutor(FakeExecutor):
    """FakeExecutor with successors (LocalExecutor.submit_after): a successor starts at
    the instant its predecessor ends with exit 0, and is reported held otherwise."""
    successors = True

    def __init__(self):
        super().__init__()
        self.after: dict[int, tuple[int, Spec]] = {}  # predecessor handle -> (handle, spec)
        self.chained: list[str] = []
        self.withdrawn: list[str] = []

    def submit_after(self, spec, earlier):
        if earlier not in self.running or earlier in self.after:
            return None
        self.next += 1
        self.after[earlier] = (self.next, spec)
        self.chained.append(spec.node)
        return self.next

    def withdraw(self, handle):
        for earlier, (h, spec) in list(self.after.items()):
            if h == handle:
                del self.after[earlier]
                self.withdrawn.append(spec.node)
                self.reports.append(Finished(h, None, 0.0, cancelled=True))  # never started

    def wait(self, timeout):
        out = []
        for fin in super().wait(timeout):
            out.append(fin)
            nxt = self.after.pop(fin.handle, None)
            if nxt is not None:
                if fin.exit_code == 0:
                    self._start(*nxt)
                else:
                    out.append(Finished(nxt[0], None, 0.0))  # held: never started
        return out


def run(deps, runner=None, limits=None, priority=None, keep_going=False, order=None, executor=None):
    order = list(order or deps)
    runner = runner or FakeRunner()
    ex = executor or FakeExecutor()
    if priority is None:
        priority = lambda n: (0,)  # noqa: E731
    s = Scheduler(order, deps, priority, limits or {"cores": 1.0}, ex, runner, keep_going=keep_going,
                  tick_every=0.0)
    results = s.run()
    return results, ex, runner


def outcomes(results):
    return {n: r.outcome for n, r in results.items()}


# -- dependencies -------------------------------------------------------------------------

def test_everything_runs_once_in_dependency_order():
    deps = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}
    results, ex, runner = run(deps, FakeRunner(durations={"a": 1, "b": 3, "c": 1, "d": 1}),
                              limits={"cores": 4.0})
    assert outcomes(results) == dict.fromkeys(deps, Outcome.OK)
    assert sorted(ex.launched) == sorted(deps)
    for n, ds in deps.items():
        for d in ds:
            assert ex.start[n] >= ex.end[d], (d, n)
    assert ex.start["b"] == ex.start["c"] == 1.0  # both ready after a: run in parallel
    assert ex.end["d"] == 5.0
    assert [r.node for r in runner.done_results] == ["a", "c", "b", "d"]
    assert runner.ticks >= 1


def test_dependencies_outside_the_order_are_ignored():
    results, ex, _ = run({"a": ["elsewhere"], "b": ["a"]})
    assert ex.launched == ["a", "b"] and outcomes(results)["b"] is Outcome.OK


def test_up_to_date_nodes_are_not_launched_and_release_their_dependents():
    deps = {"a": [], "b": ["a"], "c": ["b"]}
    results, ex, runner = run(deps, FakeRunner(up_to_date={"a", "b"}))
    assert ex.launched == ["c"]
    assert outcomes(results) == {"a": Outcome.UP_TO_DATE, "b": Outcome.UP_TO_DATE, "c": Outcome.OK}


def test_empty_order():
    results, ex, _ = run({})
    assert results == {} and ex.launched == []


# -- resources ------------------------------------------------------------------------------

def test_never_exceeds_the_cores_limit():
    deps = {f"n{i}": [] for i in range(12)}
    res = {f"n{i}": {"cores": float(1 + i % 3)} for i in range(12)}
    dur = {f"n{i}": 1.0 + (i * 7 % 5) for i in range(12)}
    results, ex, _ = run(deps, FakeRunner(durations=dur, resources=res), limits={"cores": 4.0})
    assert all(r.outcome is Outcome.OK for r in results.values())
    assert ex.peak["cores"] <= 4.0


def test_uses_every_slot():
    deps = {f"n{i}": [] for i in range(6)}
    results, ex, _ = run(deps, limits={"cores": 3.0})
    assert ex.max_parallel == 3 and ex.clock == 2.0


def test_other_resources_are_limited_too():
    deps = {"g1": [], "g2": [], "cpu": []}
    res = {"g1": {"cores": 1.0, "gpu": 1.0}, "g2": {"cores": 1.0, "gpu": 1.0}, "cpu": {"cores": 1.0}}
    results, ex, _ = run(deps, FakeRunner(resources=res), limits={"cores": 8.0, "gpu": 1.0})
    assert ex.peak["gpu"] == 1.0
    assert {ex.start["g1"], ex.start["g2"]} == {0.0, 1.0}


def test_a_node_waiting_for_a_gpu_does_not_hold_back_nodes_that_need_none():
    # -j 8 and one GPU: g2 waits for the GPU, but `cpu` needs no GPU and 7 cores are idle.
    # Holding `cpu` back behind g2 only delays the build (no starvation to prevent: cpu
    # takes nothing g2 is waiting for).
    deps = {"g1": [], "g2": [], "cpu": []}
    res = {"g1": {"cores": 1.0, "gpu": 1.0}, "g2": {"cores": 1.0, "gpu": 1.0}, "cpu": {"cores": 1.0}}
    results, ex, _ = run(deps, FakeRunner(resources=res), limits={"cores": 8.0, "gpu": 1.0})
    assert ex.start["cpu"] == 0.0


def test_a_request_larger_than_the_machine_runs_alone_instead_of_deadlocking():
    deps = {"big": [], "small": []}
    res = {"big": {"cores": 16.0}, "small": {"cores": 1.0}}
    results, ex, _ = run(deps, FakeRunner(resources=res), limits={"cores": 4.0},
                         priority=lambda n: (0 if n == "big" else 1,))
    assert outcomes(results) == {"big": Outcome.OK, "small": Outcome.OK}
    assert ex.launched == ["big", "small"] and ex.start["small"] == 1.0


# -- priority -----------------------------------------------------------------------------------

def test_dispatches_by_priority_smallest_key_first():
    # build.py passes (-user priority, -critical path): the smallest tuple is the most urgent
    deps = {n: [] for n in "abcde"}
    level = {"a": 1, "b": 5, "c": 3, "d": 5, "e": 2}
    results, ex, _ = run(deps, limits={"cores": 1.0}, priority=lambda n: (-level[n],))
    assert ex.launched == ["b", "d", "c", "e", "a"]  # ties keep declaration order


def test_critical_path_goes_first():
    # chain a -> b -> c (3 units each) and two short independent nodes x, y (1 unit)
    from types import SimpleNamespace
    deps = {"x": [], "y": [], "a": [], "b": ["a"], "c": ["b"]}
    dur = {"a": 3, "b": 3, "c": 3, "x": 1, "y": 1}
    nodes = {n: SimpleNamespace(deps=tuple(d)) for n, d in deps.items()}
    levels = bottom_levels(["x", "y", "a", "b", "c"], nodes, dur.__getitem__)
    assert levels == {"x": 1, "y": 1, "a": 9, "b": 6, "c": 3}
    results, ex, _ = run(deps, FakeRunner(durations=dur), limits={"cores": 2.0},
                         priority=lambda n: (-levels[n],))
    assert ex.launched[0] == "a"
    assert ex.clock == 9.0  # the lower bound: the chain never waits for the short nodes


def test_user_priority_sorts_before_critical_path():
    deps = {"long": [], "urgent": []}
    prio = {"long": (0, -10), "urgent": (-1, -1)}
    _, ex, _ = run(deps, FakeRunner(durations={"long": 10, "urgent": 1}), priority=prio.__getitem__)
    assert ex.launched == ["urgent", "long"]


def test_head_of_queue_waits_for_resources_rather_than_being_overtaken():
    # `wide` is the most urgent and needs the whole machine: narrower nodes do not jump ahead
    deps = {"first": [], "wide": [], "narrow": []}
    res = {"first": {"cores": 1.0}, "wide": {"cores": 2.0}, "narrow": {"cores": 1.0}}
    prio = {"first": (0,), "wide": (1,), "narrow": (2,)}
    _, ex, _ = run(deps, FakeRunner(resources=res, durations={"first": 2}), limits={"cores": 2.0},
                   priority=prio.__getitem__)
    assert ex.launched == ["first", "wide", "narrow"]
    assert ex.start["wide"] == 2.0


# -- failures -----------------------------------------------------------------------------------

def test_dependents_of_a_failure_are_skipped_transitively():
    deps = {"a": [], "b": ["a"], "c": ["b"]}
    results, ex, _ = run(deps, FakeRunner(failing={"a"}), keep_going=True)
    assert outcomes(results) == {"a": Outcome.FAILED, "b": Outcome.SKIPPED, "c": Outcome.SKIPPED}
    assert "a" in results["b"].message and ex.launched == ["a"]


def test_stops_launching_after_a_failure_without_keep_going():
    deps = {"bad": [], "slow": [], "later": [], "after_slow": ["slow"]}
    prio = {"bad": (0,), "slow": (1,), "later": (2,), "after_slow": (3,)}
    results, ex, runner = run(deps, FakeRunner(failing={"bad"}, durations={"bad": 1, "slow": 5}),
                              limits={"cores": 2.0}, priority=prio.__getitem__)
    assert ex.launched == ["bad", "slow"]
    assert results["bad"].outcome is Outcome.FAILED
    assert results["slow"].outcome is Outcome.OK  # already running: allowed to finish
    assert "later" not in results or results["later"].outcome is not Outcome.OK
    assert "after_slow" not in results or results["after_slow"].outcome is not Outcome.OK
    assert "later" not in ex.launched and "after_slow" not in ex.launched


def test_keep_going_builds_everything_not_downstream_of_a_failure():
    deps = {"bad": [], "child": ["bad"], "grandchild": ["child"], "ok1": [], "ok2": ["ok1"],
            "mixed": ["ok2", "bad"]}
    results, ex, _ = run(deps, FakeRunner(failing={"bad"}), limits={"cores": 1.0}, keep_going=True)
    assert outcomes(results) == {"bad": Outcome.FAILED, "child": Outcome.SKIPPED, "grandchild": Outcome.SKIPPED,
                                 "ok1": Outcome.OK, "ok2": Outcome.OK, "mixed": Outcome.SKIPPED}
    assert sorted(ex.launched) == ["bad", "ok1", "ok2"]


def test_a_retry_is_requeued_and_succeeds():
    deps = {"flaky": [], "next": ["flaky"]}
    results, ex, runner = run(deps, FakeRunner(retries={"flaky": 2}))
    assert ex.launched == ["flaky", "flaky", "flaky", "next"]
    assert outcomes(results) == {"flaky": Outcome.OK, "next": Outcome.OK}
    assert [s.attempt for s in runner.started_specs if s.node == "flaky"] == [1, 2, 3]
    assert [r.node for r in runner.done_results] == ["flaky", "next"]  # done once per node


def test_a_retry_after_the_build_stopped_is_not_launched():
    # `bad` fails at t=1 and stops the build; `flaky` fails at t=2 and asks for a retry
    deps = {"bad": [], "flaky": []}
    results, ex, _ = run(deps, FakeRunner(failing={"bad"}, retries={"flaky": 1},
                                          durations={"bad": 1, "flaky": 2}),
                         limits={"cores": 2.0})
    assert ex.launched.count("flaky") == 1
    assert results["flaky"].outcome is Outcome.FAILED and "stopped" in results["flaky"].message


def test_decide_is_not_called_for_skipped_nodes():
    deps = {"a": [], "b": ["a"]}
    _, _, runner = run(deps, FakeRunner(failing={"a"}), keep_going=True)
    assert runner.decided == ["a"]


@pytest.mark.parametrize("keep_going", [False, True])
def test_every_settled_node_reported_once(keep_going):
    deps = {"a": [], "b": ["a"], "c": [], "d": ["c"]}
    results, _, runner = run(deps, FakeRunner(failing={"c"}), limits={"cores": 2.0}, keep_going=keep_going)
    names = [r.node for r in runner.done_results]
    assert len(names) == len(set(names)) and set(names) == set(results)


# -- successors (a waiting recipe handed to the executor behind a running one) -------------

def test_successors_fill_every_slot_and_never_exceed_the_limits():
    deps = {f"n{i}": [] for i in range(10)}
    res = {f"n{i}": ({"cores": 1.0, "gpu": 1.0} if i % 4 == 0 else {"cores": 1.0}) for i in range(10)}
    ex = FakeChainExecutor()
    results, ex, runner = run(deps, FakeRunner(resources=res), limits={"cores": 2.0, "gpu": 1.0}, executor=ex)
    assert outcomes(results) == dict.fromkeys(deps, Outcome.OK)
    assert ex.chained, "no recipe was handed over as a successor"
    assert ex.peak["cores"] <= 2.0 and ex.peak["gpu"] <= 1.0
    assert sorted(ex.launched) == sorted(deps)  # each once
    assert sorted(s.node for s in runner.started_specs) == sorted(deps)  # started() once each, when it starts
    assert ex.clock == 5.0  # ten one-second recipes on two slots, no slot ever idle


def test_a_failure_stops_the_build_before_a_waiting_successor_starts():
    deps = {f"n{i}": [] for i in range(6)}
    ex = FakeChainExecutor()
    results, ex, _ = run(deps, FakeRunner(failing={"n0"}), limits={"cores": 2.0},
                         priority=lambda n: (int(n[1:]),), executor=ex)  # the queue pops the smallest
    # n0 and n1 start at 0, n2 waits behind n0 and n3 behind n1. At 1, n0 fails: n2 is
    # held back and dropped; n3 had started in n1's place and runs on; nothing else starts
    assert ex.chained[:2] == ["n2", "n3"]
    assert ex.start == {"n0": 0.0, "n1": 0.0, "n3": 1.0}, ex.start
    assert outcomes(results) == {"n0": Outcome.FAILED, "n1": Outcome.OK, "n3": Outcome.OK}


def test_with_keep_going_a_successor_held_back_by_a_failure_runs_later():
    deps = {f"n{i}": [] for i in range(6)}
    ex = FakeChainExecutor()
    results, ex, _ = run(deps, FakeRunner(failing={"n0"}), limits={"cores": 2.0}, keep_going=True,
                         priority=lambda n: (int(n[1:]),), executor=ex)
    assert {n for n, o in outcomes(results).items() if o is Outcome.OK} == set(deps) - {"n0"}
    assert sorted(ex.launched) == sorted(deps) and ex.peak["cores"] <= 2.0


def test_a_failure_withdraws_the_successors_still_waiting_behind_other_recipes():
    # n0 fails at 1 while n1 runs until 3 with n3 waiting behind it: n3 must never start
    deps = {f"n{i}": [] for i in range(5)}
    ex = FakeChainExecutor()
    results, ex, _ = run(deps, FakeRunner(failing={"n0"}, durations={"n1": 3.0}), limits={"cores": 2.0},
                         priority=lambda n: (int(n[1:]),), executor=ex)
    assert ex.chained[:2] == ["n2", "n3"]
    assert ex.withdrawn == ["n3"]
    assert ex.launched == ["n0", "n1"] and ex.clock == 3.0
    assert outcomes(results) == {"n0": Outcome.FAILED, "n1": Outcome.OK}


# -- the executor contract (executors/base.py) ----------------------------------------------

def test_the_local_and_dask_executors_and_the_fakes_implement_the_contract():
    from nodefile.executors import LocalExecutor
    from nodefile.executors.cluster import DaskExecutor  # imports dask only when one is made
    local = LocalExecutor(None, jobs=3)
    try:
        assert isinstance(local, Executor)
        assert local.offer() == Offer("local", 3, {"cores": 3.0}, shared_filesystem=True, successors=True)
    finally:
        local.close()
    for fake in (FakeExecutor(), FakeChainExecutor(), DeadlineExecutor()):
        assert isinstance(fake, Executor)
    assert FakeChainExecutor().offer().successors and not FakeExecutor().offer().successors
    assert issubclass(DaskExecutor, Executor) and not DaskExecutor.__abstractmethods__
    dask = object.__new__(DaskExecutor)  # no cluster needed to ask: it declines every successor
    assert dask.submit_after(Spec("a", {"cores": 1.0}), 1) is None


def test_an_executor_missing_a_call_of_the_contract_cannot_be_made():
    class NoWake(FakeExecutor):
        wake = Executor.wake  # abstract again

    with pytest.raises(TypeError, match="wake"):
        NoWake()


def test_finished_is_frozen_and_changed_by_replace():
    from nodefile.records import FrozenInstanceError, replace
    fin = Finished(7, 0, 1.5, payload=({}, 0))
    with pytest.raises(FrozenInstanceError):
        fin.exit_code = 1
    bad = replace(fin, exit_code=1, error="restored outputs changed while being written", failure="transient")
    assert (bad.handle, bad.exit_code, bad.duration, bad.failure) == (7, 1, 1.5, "transient")
    assert fin.exit_code == 0 and not fin.error


def test_a_cancelled_attempt_is_reported_and_decided_again():
    # the runner cancels a running recipe (watch mode: its inputs changed); the fake
    # reports it ended, cancelled, and the runner's answer (a fresh attempt) runs
    class CancellingRunner(FakeRunner):
        def should_cancel(self, spec):
            return spec.node == "a" and spec.attempt == 1

        def finished(self, name, spec, fin):
            if fin.cancelled:
                return self.spec(name, spec.attempt + 1)
            return super().finished(name, spec, fin)

    results, ex, runner = run({"a": [], "b": []}, CancellingRunner(durations={"a": 3.0}), limits={"cores": 2.0})
    assert outcomes(results) == {"a": Outcome.OK, "b": Outcome.OK}
    assert [s.attempt for s in runner.started_specs if s.node == "a"] == [1, 2]
    assert ex.use["cores"] == 0.0 and ex.end["a"] == 4.0  # cancelled at 1 (b's end), then 3 s


# -- bounded probes: the learner and the scheduler on the virtual clock ------------------------

@dataclass(frozen=True)
class Recipe:
    name: str
    kind: str = "shell"
    target: str = ""


@dataclass
class ProbeSpec:
    node: str
    recipe: Recipe
    index: int
    duration: float  # what the recipe truly takes
    timeout: float | None = None  # a bounded probe's deadline
    resources: dict = field(default_factory=lambda: {"cores": 1.0})
    attempt: int = 1


class DeadlineExecutor(FakeExecutor):
    """FakeExecutor that stops a spec at its timeout (as the local executor ends the
    process group): it ends at min(duration, timeout), reported timed out."""

    def _start(self, handle, spec):
        super()._start(handle, spec)
        end = self.clock + (spec.duration if spec.timeout is None else min(spec.duration, spec.timeout))
        self.running[handle] = (end, spec)
        self.began = getattr(self, "began", {})
        self.began[handle] = self.clock

    def wait(self, timeout):
        if self.reports:
            out, self.reports = self.reports, []
            return out
        t = min(end for end, _ in self.running.values())
        self.clock = t
        done = []
        for h, (end, spec) in sorted(self.running.items()):
            if end == t:
                del self.running[h]
                for k, v in spec.resources.items():
                    self.use[k] -= v
                stopped = spec.timeout is not None and spec.duration > spec.timeout
                done.append(Finished(h, None if stopped else 0, t - self.began[h], stopped))
        return done


class LearningRunner:
    """The runner's contract over a real Learner: each stale node's recipes in the learned
    order, a bounded probe with its deadline; a probe stopped at it is observed as
    censored and the next recipe (the incumbent) runs."""

    def __init__(self, learner, recipes, true):
        self.learner, self.recipes, self.true = learner, recipes, true
        self.choices, self.attempts, self.built_by = {}, [], {}

    def decide(self, name):
        self.choices[name] = self.learner.choose(name, self.recipes[name])
        return self.spec(name, 0)

    def spec(self, name, idx):
        choice = self.choices[name]
        r = choice.recipes[idx]
        deadline = choice.deadline if idx == 0 and choice.probe == r.name else None
        return ProbeSpec(name, r, idx, self.true[name][r.name], deadline)

    def finished(self, name, spec, fin):
        self.attempts.append((name, spec.recipe.name, fin.duration, spec.timeout, fin.timed_out))
        if fin.timed_out:
            self.learner.observe(name, spec.recipe, False, spec.timeout, censored=True)
            return self.spec(name, spec.index + 1)
        self.learner.observe(name, spec.recipe, True, fin.duration)
        self.built_by[name] = spec.recipe.name
        return NodeResult(name, Outcome.OK, spec.recipe.name, fin.duration)

    def started(self, spec):
        pass

    def done(self, result):
        pass

    def tick(self, running, done, total):
        pass


def learned_builds(recipes, true, deps, builds, jobs=2):
    """`builds` builds of every node (all stale each time) with one learner."""
    import sqlite3

    from nodefile.learn import Learner
    learner = Learner(sqlite3.connect(":memory:"))
    history = []
    for _ in range(builds):
        learner.begin_build()
        runner = LearningRunner(learner, recipes, true)
        results, ex, _ = run(deps, runner, limits={"cores": float(jobs)}, executor=DeadlineExecutor())
        assert all(r.outcome is Outcome.OK for r in results.values())
        learner.end_build()
        history.append((runner, ex.clock))
    return learner, history


SLOW, FAST = Recipe("slow", target="slow.sh"), Recipe("fast", target="fast.sh")


def test_an_untried_faster_recipe_listed_second_is_chosen_from_the_second_build_on():
    deps = {"prep": [], "model": ["prep"], "other": [], "report": ["model", "other"]}
    recipes = {n: [SLOW, FAST] for n in deps}
    true = {n: {"slow": 1.0, "fast": 0.2} for n in deps}
    learner, history = learned_builds(recipes, true, deps, builds=10)
    assert history[0][0].built_by == dict.fromkeys(deps, "slow")  # build 1: the Nodefile order
    for runner, _ in history[1:]:
        assert runner.built_by == dict.fromkeys(deps, "fast")
    second = history[1][0]
    assert {(n, r) for n, r, *_ in second.attempts} == {(n, "fast") for n in deps}  # one probe each, no stop
    assert all(deadline == pytest.approx(1.5 * 1.0) for *_, deadline, _ in second.attempts)
    for runner, _ in history[2:]:
        assert all(deadline is None for *_, deadline, _ in runner.attempts)  # measured now: no probe
    assert [round(clock, 6) for _, clock in history[1:]] == [0.6] * 9  # 3 levels x 0.2 s at -j 2
    assert [p[2] for p in learner.probes()] == ["fast"] * 4 and all(p[5] for p in learner.probes())


def test_a_slower_probe_costs_its_deadline_and_no_more_and_is_retried_on_the_back_off():
    deps = {"a": [], "b": ["a"]}
    recipes = {n: [FAST, SLOW] for n in deps}
    true = {n: {"fast": 0.2, "slow": 5.0} for n in deps}
    learner, history = learned_builds(recipes, true, deps, builds=16, jobs=1)
    probes = []
    for k, (runner, clock) in enumerate(history, 1):
        assert runner.built_by == dict.fromkeys(deps, "fast")
        stopped = [a for a in runner.attempts if a[4]]
        for node, recipe, duration, deadline, _ in stopped:
            assert recipe == "slow" and deadline == pytest.approx(1.5 * 0.2)
            assert duration <= deadline + 1e-9  # a probe never costs more than its deadline
        if stopped:
            probes.append(k)
            assert clock == pytest.approx(2 * (0.3 + 0.2))  # each node: the stopped probe, then fast
        else:
            assert clock == pytest.approx(2 * 0.2)
    assert probes == [2, 6, 14]  # never measured, then due after 4 and 8 builds
    st = learner.stats("a", "slow")
    assert st.cens == pytest.approx(0.3) and st.n_ok == 0 and st.p == 0.5  # censored: not a failure
    learner.begin_build()
    choice = learner.choose("a", [FAST, SLOW])
    assert choice.order == ("fast", "slow") and choice.probe is None
    assert choice.estimates[1].duration >= 0.3 and choice.estimates[1].shown == "≥300ms"


def test_no_probe_without_a_measured_incumbent_or_when_turned_off():
    import sqlite3

    from nodefile.learn import Learner
    learner = Learner(sqlite3.connect(":memory:"))
    learner.begin_build()
    first = learner.choose("n", [SLOW, FAST])  # nothing measured: no deadline to set
    assert first.order == ("slow", "fast") and first.probe is None and first.deadline is None
    learner.observe("n", SLOW, True, 1.0)
    learner.end_build()
    learner.begin_build()
    assert learner.choose("n", [SLOW, FAST], probes=False).probe is None  # --no-probe
    fetch = Recipe("fetch", "fetch", "store")
    learner.observe("n2", fetch, True, 0.1)
    learner.end_build()
    learner.begin_build()
    assert learner.choose("n2", [fetch, FAST]).probe is None  # restored, not rebuilt: nothing to probe
    choice = learner.choose("n", [SLOW, FAST])
    assert (choice.probe, choice.deadline, choice.order) == ("fast", 1.5, ("fast", "slow"))
    assert choice.explain()[0].startswith("fast probed first (never measured), deadline 1.5s = 1.5 × slow's "
                                          "expected 1.0s")
