"""nodefile.plan.Plan and the scheduler's ResourcePool, Queue and pick(): pure, no processes.
The builds here run on the fake executor of test_scheduler_fake.py (a virtual clock)."""
from __future__ import annotations

from test_scheduler_fake import FakeChainExecutor, FakeExecutor, FakeRunner, Spec

from nodefile.model import NodeResult, Outcome, Reason, ReasonKind, Status, Verdict
from nodefile.plan import Plan
from nodefile.scheduler import LOOKAHEAD, Queue, Queued, ResourcePool, Scheduler, pick

DIAMOND = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}


def ok(name):
    return NodeResult(name, Outcome.OK)


# -- Plan: waiting, ready, settle --------------------------------------------------------------

def test_ready_holds_the_nodes_with_nothing_to_wait_for():
    plan = Plan(["x", "a", "b"], {"x": [], "a": ["outside"], "b": ["a"]})
    assert plan.ready == ["x", "a"]  # an input outside the plan is not waited for
    assert plan.waiting == {"x": 0, "a": 0, "b": 1}
    assert plan.users == {"x": [], "a": ["b"], "b": []}


def test_a_node_is_ready_once_every_input_has_settled():
    plan = Plan(list(DIAMOND), DIAMOND)
    assert plan.ready == ["a"]
    plan.ready.pop()
    assert plan.settle("a", ok("a")) == ["b", "c"]
    assert plan.ready == ["b", "c"]
    plan.ready.clear()
    assert plan.settle("b", ok("b")) == []  # d still waits for c
    assert plan.settle("c", ok("c")) == ["d"]
    assert plan.ready == ["d"] and plan.results == {"a": ok("a"), "b": ok("b"), "c": ok("c")}


def test_settle_before_anything_asked_for_ready_does_not_list_a_node_twice():
    plan = Plan(list(DIAMOND), DIAMOND)
    plan.settle("a", ok("a"))
    assert plan.ready == ["a", "b", "c"]


# -- Plan: the skip cascade --------------------------------------------------------------------

def test_a_node_whose_input_failed_is_skipped_and_so_are_the_nodes_after_it():
    plan = Plan(["fit", "plot", "report", "other"],
                {"fit": [], "plot": ["fit"], "report": ["plot"], "other": []})
    assert plan.skip_reason("fit") is None
    plan.settle("fit", NodeResult("fit", Outcome.FAILED))
    assert plan.skip_reason("plot") == "needs fit, which failed"
    plan.settle("plot", NodeResult("plot", Outcome.SKIPPED))
    assert plan.skip_reason("report") == "needs plot, which was skipped (fit failed)"
    assert plan.skip_reason("other") is None


def test_a_cancelled_input_skips_its_users():
    plan = Plan(["a", "b"], {"a": [], "b": ["a"]})
    plan.settle("a", NodeResult("a", Outcome.CANCELLED))
    assert plan.skip_reason("b") == "needs a, which was cancelled"


def test_an_input_up_to_date_or_built_skips_nothing():
    plan = Plan(["a", "b", "c"], {"a": [], "b": [], "c": ["a", "b"]})
    plan.settle("a", NodeResult("a", Outcome.UP_TO_DATE))
    plan.settle("b", ok("b"))
    assert plan.skip_reason("c") is None


def test_the_build_reports_the_cascade_through_the_plan():
    deps = {"a": [], "b": ["a"], "c": ["b"], "d": []}
    runner = FakeRunner(failing={"a"})
    s = Scheduler(list(deps), deps, lambda n: (0,), {"cores": 1.0}, FakeExecutor(), runner,
                  keep_going=True, tick_every=0.0)
    results = s.run()
    assert results["c"].message == "needs b, which was skipped (a failed)"
    assert results is s.plan.results and results["d"].outcome is Outcome.OK


# -- Plan.preview: what -n, status and explain show -----------------------------------------

def verdicts(own: dict):
    """verdict_of over a table name -> (Status, reasons) or None (an alias)."""
    def verdict_of(n):
        if own[n] is None:
            return None
        status, reasons = own[n]
        return Verdict(n, status, tuple(reasons), f"key-{n}")
    return verdict_of


def test_a_node_whose_input_will_be_rebuilt_is_stale_because_of_it():
    deps = {"a": [], "b": ["a"], "c": ["b"], "side": []}
    own = {"a": (Status.STALE, [Reason(ReasonKind.SCRIPT_CHANGED, "a.py")]),
           "b": (Status.STALE, [Reason(ReasonKind.INPUT_CHANGED, "a.csv"), Reason(ReasonKind.PARAM_CHANGED)]),
           "c": (Status.UP_TO_DATE, []), "side": (Status.UP_TO_DATE, [])}
    out = Plan(list(deps), deps).preview(verdicts(own))
    assert list(out) == ["a", "b", "c", "side"]
    assert out["a"].reasons == (Reason(ReasonKind.SCRIPT_CHANGED, "a.py"),)
    # the input's own change gives way to "a will be rebuilt"; its other reasons stay
    assert out["b"].reasons == (Reason(ReasonKind.UPSTREAM, "a"), Reason(ReasonKind.PARAM_CHANGED))
    assert out["c"].status is Status.STALE and out["c"].reasons == (Reason(ReasonKind.UPSTREAM, "b"),)
    assert out["c"].key == "key-c"
    assert not out["side"].stale


def test_a_missing_output_stays_missing_with_an_upstream_reason():
    deps = {"a": [], "b": ["a"]}
    own = {"a": (Status.STALE, [Reason(ReasonKind.NEVER_BUILT)]),
           "b": (Status.MISSING, [Reason(ReasonKind.OUTPUT_MISSING, "b.txt")])}
    out = Plan(list(deps), deps).preview(verdicts(own))
    assert out["b"].status is Status.MISSING
    assert out["b"].reasons == (Reason(ReasonKind.UPSTREAM, "a"), Reason(ReasonKind.OUTPUT_MISSING, "b.txt"))


def test_an_alias_is_stale_exactly_when_a_member_is():
    deps = {"a": [], "b": [], "all": ["a", "b"], "done": ["b"]}
    own = {"a": (Status.STALE, [Reason(ReasonKind.NEVER_BUILT)]), "b": (Status.UP_TO_DATE, []),
           "all": None, "done": None}
    out = Plan(list(deps), deps).preview(verdicts(own))
    assert out["all"] == Verdict("all", Status.STALE, (Reason(ReasonKind.UPSTREAM, "a"),))
    assert out["done"] == Verdict("done", Status.UP_TO_DATE, ())


def test_the_preview_ignores_inputs_outside_the_plan():
    deps = {"b": ["a"]}
    out = Plan(["b"], deps).preview(verdicts({"b": (Status.UP_TO_DATE, [])}))
    assert not out["b"].stale


# -- ResourcePool ------------------------------------------------------------------------------

def test_the_pool_gives_what_it_has_and_says_what_is_short():
    pool = ResourcePool({"cores": 4.0, "gpu": 1.0})
    assert pool.fits({"cores": 4.0, "gpu": 1.0})
    pool.take({"cores": 3.0, "gpu": 1.0})
    assert pool.fits({"cores": 1.0}) and not pool.fits({"cores": 2.0})
    assert pool.blocking({"cores": 2.0, "gpu": 1.0, "mem_gb": 100.0}) == {"cores", "gpu"}  # no limit: no wait
    assert pool.blocking({"cores": 1.0}) == set()
    pool.give({"cores": 3.0, "gpu": 1.0})
    assert pool.used == {"cores": 0.0, "gpu": 0.0} and pool.fits({"cores": 4.0, "gpu": 1.0})


def test_fractions_that_add_up_to_the_limit_fit():
    pool = ResourcePool({"cores": 1.0})
    for _ in range(9):
        pool.take({"cores": 0.1})
    assert pool.fits({"cores": 0.1})


def test_every_resource_is_given_back_after_failures_retries_and_successors():
    deps = {f"n{i}": ([f"n{i - 3}"] if i >= 3 else []) for i in range(12)}
    res = {n: {"cores": 1.0, "gpu": 1.0} if n in ("n1", "n4") else {"cores": 1.0} for n in deps}
    for ex in (FakeExecutor(), FakeChainExecutor()):
        runner = FakeRunner(resources=res, failing={"n5"}, retries={"n2": 1})
        s = Scheduler(list(deps), deps, lambda n: (0,), {"cores": 2.0, "gpu": 1.0}, ex, runner,
                      keep_going=True, tick_every=0.0)
        s.run()
        assert s.pool.used == {"cores": 0.0, "gpu": 0.0}, type(ex).__name__
        assert s.plan.results["n8"].outcome is Outcome.SKIPPED and not s.running


# -- Queue and pick(): the lookahead backfill ---------------------------------------------------

def queued(queue, name, resources, prio=0):
    spec = Spec(name, resources)
    queue.push(Queued((prio, len(queue)), name, spec, frozenset(k for k, v in resources.items() if v > 0)))


def names(items):
    return [i.name for i in items]


def test_the_queue_gives_the_best_first():
    q = Queue()
    queued(q, "low", {"cores": 1.0}, prio=1)
    queued(q, "high", {"cores": 1.0}, prio=-1)
    queued(q, "gpu", {"gpu": 1.0}, prio=0)
    assert q.head().name == "high" and len(q) == 3
    assert not q.waits_on({"gpu"}) and q.waits_on({"gpu", "cores"})
    assert [q.pop().name for _ in range(3)] == ["high", "gpu", "low"]
    assert not q and q.kinds == {}


def take_all(queue, pool, running, refreshed=lambda item: item):
    """pick() as the scheduler uses it: each item started (its resources taken) before the next."""
    out = []
    for item in pick(queue, pool, running, refreshed):
        pool.take(item.spec.resources)
        running[len(out)] = item
        out.append(item)
    return out


def test_pick_starts_by_priority_while_they_fit():
    q, pool = Queue(), ResourcePool({"cores": 3.0})
    for i in range(5):
        queued(q, f"n{i}", {"cores": 1.0})
    assert names(take_all(q, pool, {})) == ["n0", "n1", "n2"]
    assert names(q.heap) and sorted(names(q.heap)) == ["n3", "n4"]  # still queued


def test_pick_goes_past_a_head_that_waits_for_a_resource_in_use():
    q, pool = Queue(), ResourcePool({"cores": 8.0, "gpu": 1.0})
    pool.take({"cores": 1.0, "gpu": 1.0})  # g1 runs on the GPU
    queued(q, "g2", {"cores": 1.0, "gpu": 1.0})
    queued(q, "g3", {"cores": 1.0, "gpu": 1.0})
    queued(q, "cpu", {"cores": 1.0})
    assert names(take_all(q, pool, {"g1": None})) == ["cpu"]
    assert names(sorted(q.heap)) == ["g2", "g3"]  # queued again, in their order


def test_pick_looks_no_further_than_lookahead():
    q, pool = Queue(), ResourcePool({"cores": 8.0, "gpu": 1.0})
    pool.take({"gpu": 1.0})
    for i in range(LOOKAHEAD):
        queued(q, f"g{i}", {"gpu": 1.0, "cores": float(i % 2)})  # two kinds: waits_on cannot stop early
    queued(q, "cpu", {"cores": 1.0})
    assert take_all(q, pool, {"g": None}) == [] and len(q) == LOOKAHEAD + 1


def test_pick_stops_when_everything_queued_waits_for_what_is_in_use():
    q, pool = Queue(), ResourcePool({"cores": 1.0})
    pool.take({"cores": 1.0})
    for i in range(3):
        queued(q, f"n{i}", {"cores": 1.0})
    seen = []
    assert take_all(q, pool, {"x": None}, lambda item: seen.append(item.name) or item) == []
    assert seen == ["n0"]  # the others were not even looked at


def test_with_nothing_running_a_request_larger_than_the_machine_starts():
    q, pool = Queue(), ResourcePool({"cores": 2.0})
    queued(q, "huge", {"cores": 16.0})
    queued(q, "small", {"cores": 1.0})
    assert names(take_all(q, pool, {})) == ["huge"]


def test_an_item_that_settles_on_refresh_is_dropped_and_a_refreshed_one_starts_as_refreshed():
    q, pool = Queue(), ResourcePool({"cores": 4.0})
    queued(q, "gone", {"cores": 1.0})
    queued(q, "moved", {"cores": 1.0})

    def refreshed(item):
        if item.name == "gone":
            return None
        spec = Spec(item.name, {"cores": 2.0})
        return item._replace(spec=spec, needs=frozenset({"cores"}))
    out = take_all(q, pool, {}, refreshed)
    assert names(out) == ["moved"] and out[0].spec.resources == {"cores": 2.0}
    assert pool.used == {"cores": 2.0} and not q
