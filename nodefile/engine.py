"""build(project, targets, options, reporter) -> Summary, and the read-only views
(status, explain, touch) that share its notion of a node's key.

Steps of a build: resolve targets -> closure in topological order -> take the
project lock -> schedule: when a node's inputs are done, compute its key and
verdict; run its recipes in order until one succeeds; record the result.
"""
from __future__ import annotations

import os
import signal
import time

from . import graph, hashing
from .attempts import move_aside
from .errors import ConfigError, ExitCode
from .interrupts import raise_interrupt
from .model import Outcome, Project, Summary
from .runner import Runner
from .session import Options, ProjectLock, Session, resolve_targets


def limits_for(options: Options, project: Project) -> dict:
    jobs = min(options.jobs or project.jobs or os.cpu_count() or 1, 2 ** 31)  # -j 10**400: no float overflow
    limits = {"cores": float(jobs), "transfers": float(max(4, jobs)), "mem_gb": _memory_gb()}
    for k, v in options.resources.items():
        limits[k] = float(v)
    return limits


def _memory_gb() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    except (ValueError, OSError, AttributeError):
        return float("inf")


_ORIGIN = {"mem_gb": "this machine's memory", "transfers": "max(4, -j)"}  # limits not given by --resources


def check_resources(project: Project, names, limits: dict, given=(), cluster: bool = False) -> None:
    """given: the resources --resources set (the others' limits are the machine's)."""
    problems = []
    for n in names:
        for r in project.nodes[n].recipes:
            for k, v in r.resources:
                if k == "cores":
                    continue  # more cores than -j allows runs alone rather than never
                if k not in limits and cluster:
                    problems.append(f"node '{n}' recipe '{r.name}' asks for {k} = {v:g}, but no Dask worker "
                                    f"offers {k} (start workers with `dask worker ... --resources {k}=N`)")
                elif k not in limits:
                    problems.append(f"node '{n}' recipe '{r.name}' asks for {k} = {v:g}, but no {k} limit "
                                    f"is given (use --resources {k}=N)")
                elif k in limits and v > limits[k]:
                    whence = ("--resources" if k in given else f"{_ORIGIN.get(k, 'the default')}; "
                              f"--resources {k}=N sets another")
                    problems.append(f"node '{n}' recipe '{r.name}' asks for {k} = {v:g}, more than the "
                                    f"limit {k} = {round(limits[k], 1):g} ({whence})")
    if problems:
        raise ConfigError("\n".join(problems))


def check_missing(project: Project, order) -> None:
    """A missing source blocks only the nodes that need it: an error (exit 2, naming
    the file and every node needing it) when the build needs one of them."""
    if not project.missing:
        return
    inside = set(order)
    hit = [msg for _, needers, msg in project.missing if inside.intersection(needers)]
    if hit:
        from .errors import Problem
        raise ConfigError([Problem(m) for m in hit])


def check_recipe_kind(project: Project, order, options: Options) -> None:
    """`--recipe KIND` that no node of the build has (as a kind or a recipe name) is a
    usage error, said before anything runs; a node that lacks it fails in the build."""
    k = options.recipe_kind
    if not k:
        return
    have = {"load"} if project.cache else set()
    for n in order:
        for r in project.nodes[n].recipes:
            have.update((r.kind, r.name))
    if k not in have:
        raise ConfigError(f"--recipe {k}: no recipe of kind '{k}' (nor one named so) in the nodes "
                          f"to build; they have: {', '.join(sorted(have)) or 'no recipes'}")


def build(project: Project, targets, options: Options, reporter) -> Summary:
    t0 = time.monotonic()
    names = resolve_targets(project, targets)
    order = graph.closure(project.nodes, names)
    check_missing(project, order)
    limits = limits_for(options, project)
    kind, address = executor_choice(options, project)
    if kind == "dask" and not options.dry_run:
        check_recipe_kind(project, order, options)
        executor = dask_executor(project, order, options, address)
        limits = cluster_limits(limits, executor.offer())
        try:
            check_resources(project, order, limits, cluster=True)
        except ConfigError:
            executor.close()
            raise
        return _run(project, names, order, limits, options, reporter, t0, executor=executor)
    check_resources(project, order, limits, options.resources)
    check_recipe_kind(project, order, options)
    if options.dry_run:
        return dry_run(project, order, options, reporter, t0)
    return _run(project, names, order, limits, options, reporter, t0)


def executor_choice(options: Options, project: Project) -> tuple[str, str | None]:
    """(kind, address): --executor / --dask, else the Nodefile's [executor], else local."""
    kind = options.executor or project.executor[0]
    address = options.dask_address or (project.executor[1] if project.executor[0] == "dask" else None)
    if options.dask_address and kind != "dask":
        raise ConfigError("--dask ADDRESS goes with --executor dask")
    return kind, address


def dask_executor(project: Project, order, options: Options, address: str | None):
    """Connect to (or start) the Dask cluster; a clear error when it cannot be used."""
    try:
        from .executors.cluster import ClusterError, DaskExecutor
    except ImportError as e:
        raise ConfigError(f"--executor dask needs Dask distributed: pip install 'nodefile[dask]' ({e})") from None
    jobs = options.jobs or project.jobs or os.cpu_count() or 1
    try:
        return DaskExecutor(address, jobs, os.path.join(project.root, ".nodefile"))
    except ClusterError as e:
        raise ConfigError(str(e)) from None


IN_FLIGHT = 4  # attempts in flight per worker thread on a cluster (bench/dask_overhead.py)


def cluster_limits(limits: dict, offer) -> dict:
    """The build's limits on a cluster (an executors.Offer): its workers' threads and
    resources. A few more attempts than threads are kept in flight, so a worker that
    finishes one finds the next already queued on the scheduler (no round trip to the driver)."""
    cores = offer.resources.get("cores", 1.0)
    out = {"cores": cores * IN_FLIGHT, "transfers": limits["transfers"], "mem_gb": float("inf")}
    out.update({k: v for k, v in offer.resources.items() if k != "cores"})
    return out


def build_incremental(options: Options, reporter) -> Summary | None:
    """`node build` when try_noop found a few recorded files changed: build only the
    nodes downstream of them, read from the node index (incremental.partial_build).
    None when the shortcut does not apply: then the normal build runs."""
    t0 = time.monotonic()
    if (options.noop is None or options.always_make or options.dry_run or options.recipe_kind or options.force
            or options.executor == "dask"):
        return None
    from .incremental import partial_build
    found = partial_build(options.noop)
    if found is None:
        return None
    project, order, partial = found
    limits = limits_for(options, project)
    check_resources(project, order, limits, options.resources)
    return _run(project, order, order, limits, options, reporter, t0, partial)


def _run(project: Project, names, order, limits, options: Options, reporter, t0: float,
         partial=None, executor=None) -> Summary:  # partial: an incremental.Partial (a few nodes)
    """Run a build: the steps below, inside the project lock, in the project folder."""
    lock, session = _open(project, options, reporter, partial)
    here = os.getcwd()
    try:
        os.chdir(project.root)  # recipes run here (posix_spawn cannot chdir); restored below
        runner = _begin(session, names, options, reporter)
        if project.scans and partial is None:
            drop_removed_instances(session, reporter)
        prior_paths: list[str] = []
        if partial is not None:
            prior_paths = partial.paths
        elif options.noop is not None and not options.always_make:
            from .fastpath import recorded_paths
            from .incremental import unaffected
            prior_paths = recorded_paths(options.noop, project.root)
            runner.known_up_to_date = unaffected(project, order, options.noop)
        executor = _executor(session, order, limits, options, reporter, executor)
        if options.on_runner is not None:
            options.on_runner(runner, executor)
        status = _schedule(session, order, limits, options, reporter, runner, executor)
        executor.close()
        runner.wait_uploads()
        summary, status = _conclude(project, order, runner, reporter, partial, status)
        _end_build(session, runner, status, reporter)
        if options.noop is not None and status == ExitCode.OK and not summary.skipped and not volatile(project, order):
            # every node is up to date now: record it (nodes skipped as unaffected were
            # checked through the previous record, so its paths are part of this one)
            count = partial.count if partial is not None else sum(1 for n in order if not project.nodes[n].is_alias)
            from .incremental import record_noop
            record_noop(session, order, options.noop, count, prior_paths, partial)
        summary.elapsed = time.monotonic() - t0
        return summary
    finally:
        if executor is not None and executor.name == "dask":
            executor.close()  # also when the build stopped early: no cluster left behind
        try:
            session.close()
        finally:
            lock.release()
            os.chdir(here)


def _open(project: Project, options: Options, reporter, partial) -> tuple[ProjectLock, Session]:
    """Take the project lock, then open the state (a damaged one is moved aside)."""
    from .state import state_dir
    lock = ProjectLock(state_dir(project.root))
    lock.acquire(options.wait_for_lock, on_wait=reporter.info)  # before the state: a damaged one is moved
    try:
        session = Session(project, lazy=partial is not None, recover=True)
    except BaseException:
        lock.release()
        raise
    return lock, session


def _begin(session: Session, names, options: Options, reporter) -> Runner:
    """Record the build's start; its Runner."""
    if session.state.recovered:
        why, kept = session.state.recovered
        reporter.warn(f"the state database was damaged ({why}): kept as {_rel(kept)}; starting afresh")
    build_id = session.state.start_build(names)
    _remove_tree(os.path.join(session.dir, "tmp"))  # partial fetches of a killed build
    return Runner(session, options, reporter, build_id)


def _executor(session: Session, order, limits, options: Options, reporter, executor):
    """The build's executor: the one given (Dask), or a local one, with warm workers."""
    from .executors import LocalExecutor
    from .executors.local import end_orphans
    run_log = os.path.join(session.dir, "running.log")
    if end_orphans(run_log):  # a build killed with -9 left recipes running: they must not
        reporter.warn("ended recipes left running by a build that was killed")  # write now
    if executor is None:
        executor = LocalExecutor(run_log, jobs=int(limits.get("cores", 1)))
        if options.workers is not None:  # node watch: workers that outlive this build
            executor.workers = options.workers
            executor.owns_workers = False
            options.workers.begin_build()
        elif not options.cold and session.project.warm:
            executor.workers = _workers(session, run_log, executor.token, order)
    session.building, session.workers = True, getattr(executor, "workers", None)
    return executor


def _scheduler(session: Session, order, limits, options: Options, reporter, runner, executor):
    """The Scheduler of the build, its priorities (the node's own, then the critical
    path by expected durations), and the reporter's ETA."""
    from .scheduler import Scheduler
    project = session.project

    def expected(m) -> tuple[float, bool]:
        """(expected seconds, measured?) of a stale node: its chosen order once decided."""
        node = project.nodes[m]
        if node.is_alias:
            return 0.0, True
        choice = runner.choice_of(m)  # decided: the expected cost of its chosen order
        if choice is None:
            choice = session.learner.estimate(m, node.recipes, warm_of=session.warm_of(options, m))
        return choice.expected_duration, choice.known

    def weight(m):
        return expected(m)[0]
    levels = graph.LazyLevels(order, project.nodes, weight)  # a no-op build weighs nothing
    deps = {n: project.nodes[n].deps for n in order}
    reporter.build_started(order, deps, expected, limits.get("cores", 1.0))

    def priority(n):
        return (-project.nodes[n].priority, -levels[n])
    if executor.name == "dask":  # Dask runs higher numbers first
        executor.priority = lambda n: int(project.nodes[n].priority * 10 ** 9 + levels[n] * 1000)
    return Scheduler(order, deps, priority, limits, executor, runner, keep_going=options.keep_going)


def _schedule(session: Session, order, limits, options: Options, reporter, runner, executor) -> ExitCode:
    """Run the scheduler; on Ctrl-C (or SIGTERM) end what runs and record it."""
    sched = _scheduler(session, order, limits, options, reporter, runner, executor)
    status = ExitCode.OK
    old = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        try:
            sched.run()
        finally:
            runner.flush()
    except BaseException as e:
        if not isinstance(e, KeyboardInterrupt):
            executor.cancel_all()  # a full disk, a damaged database: no recipe left running
            raise
        runner.summary.interrupted = True
        # a second Ctrl-C must not cut the clean-up short (recipes left running)
        prev_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            executor.cancel_all()
        finally:
            signal.signal(signal.SIGINT, prev_int)
        runner.record_interrupted()
        status = ExitCode.INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, old)
    return status


def _conclude(project: Project, order, runner, reporter, partial, status) -> tuple[Summary, ExitCode]:
    """The build's summary and exit status: nodes never started count as skipped."""
    summary = runner.summary
    summary.up_to_date = [n for n in summary.up_to_date if n not in summary.built]
    if partial is not None:
        summary.up_to_date += partial.unchanged
    if not summary.interrupted:
        ran = set(summary.built) | set(summary.up_to_date) | set(summary.failed) | set(summary.skipped)
        blocked = [n for n in order if n not in ran and not project.nodes[n].is_alias]
        summary.skipped += blocked
        if blocked and summary.failed:
            reporter.info(f"not started: {', '.join(blocked[:5])}{' …' if len(blocked) > 5 else ''} (blocked: "
                          "the build stops at a failure; -k builds what does not need the failed node)")
        status = ExitCode.FAILED if summary.failed or summary.skipped else ExitCode.OK
    return summary, status


def _end_build(session: Session, runner, status, reporter) -> None:
    """Record the build's end (and the learner's lists)."""
    session.end_learning()
    session.state.end_build(runner.build_id, status)
    if session.state.recovered:
        _report_restored(session, runner, reporter)


def drop_removed_instances(session: Session, reporter) -> list[str]:
    """Instances from files (`matrix = "books/{book}.txt"`) whose file is gone: their
    outputs are moved to .nodefile/previous/NODE/removed/ (nothing is lost) and their
    records dropped, as the rule that listed them no longer does."""
    import json
    from types import SimpleNamespace
    from .config.filematrix import instance_values
    from .config.patterns import fill_paths
    project = session.project
    dropped = []
    records = session.records()
    for name, pattern, _, _, wild in project.scans:
        for rname in records:
            if not rname.startswith(name + "[") or rname in project.nodes:
                continue
            values = instance_values(rname, name, list(wild))
            if values is None or os.path.lexists(os.path.join(project.root, fill_paths(pattern, values))):
                continue  # not an instance of this rule, or its file is there (a constraint left it out)
            try:
                outputs = tuple(p for p in json.loads(records[rname].outputs)
                                if not p.startswith(("/", "../", ".nodefile/")))
            except (TypeError, ValueError, AttributeError):
                outputs = ()
            move_aside(session, SimpleNamespace(name=rname, output_paths=outputs), "previous", "removed")
            dropped.append(rname)
            reporter.info(f"drop {rname}: {fill_paths(pattern, values)} is gone (its outputs are kept in "
                          f".nodefile/previous/)")
    if dropped:
        session.state.forget(dropped)
    return dropped


def volatile(project: Project, order) -> bool:
    """Whether a node of `order` has `always = true`: a build that needs it is never a no-op."""
    return any(project.nodes[n].always for n in order)


def _remove_tree(path: str) -> None:
    if os.path.isdir(path):
        import shutil
        shutil.rmtree(path, ignore_errors=True)


def _rel(path: str) -> str:
    return os.path.relpath(path) if os.path.isabs(path) else path


def _report_restored(session, runner, reporter) -> None:
    """After starting afresh from a damaged state: how much came back from the cache."""
    loads = sum(1 for a in session.state.attempts(build_id=runner.build_id)
                if a.kind == "load" and a.outcome == Outcome.OK)
    ran = len(runner.summary.built) - loads
    reporter.warn(f"started afresh: {loads} node(s) restored from the local cache, {ran} rebuilt")


def _workers(session, run_log: str, token: str, order=()):
    """The build's warm workers: started when a recipe first asks for one, or, for a
    language with at least EARLY_WORKER recipe nodes in the build, at its first recipe."""
    from .recipes import warm_language
    from .workers.pool import Workers
    from .workers.preload import find
    project = session.project
    extra = dict(project.preload)
    workers = Workers(session.dir, run_log, token,
                      lambda lang: find(project, lang, session.closure, extra.get(lang, ())))
    def early():  # counted when the first recipe runs: a no-op build pays nothing
        counts: dict = {}
        for n in order:
            for lang in {warm_language(project, r) for r in project.nodes[n].recipes} - {None}:
                counts[lang] = counts.get(lang, 0) + 1
        return tuple(lang for lang, k in counts.items() if k >= EARLY_WORKER)
    workers.early = early
    return workers


EARLY_WORKER = 8  # recipe nodes of one language in a build that start its worker with the build's first recipe


def dry_run(project: Project, order, options: Options, reporter, t0) -> Summary:
    session = Session(project, readonly=True)
    session.on_store_wait = reporter.waiting
    try:
        plan = session.plan(order, forced=options.always_make, force=options.force)
        summary = Summary()
        for n in order:
            v = plan[n]
            node = project.nodes[n]
            if node.is_alias:
                continue
            if v.stale:
                from .model import ReasonKind
                via = ("decided after its inputs" if any(r.kind is ReasonKind.UPSTREAM for r in v.reasons)
                       else session.source_of(n, v.key, options)[0])
                reporter.print(f"would run  {n}  ({via}): {'; '.join(str(r) for r in v.reasons)}")
                summary.built.append(n)
            else:
                summary.up_to_date.append(n)
        summary.elapsed = time.monotonic() - t0
        for problem in session.store_problems():
            reporter.warn(problem)
        if not summary.built:
            reporter.print(f"nothing to do: {len(summary.up_to_date)} node(s) up to date")
        else:
            reporter.print(f"{len(summary.built)} node(s) would run, {len(summary.up_to_date)} up to date")
        return summary
    finally:
        session.close()


def expand_aliases(project: Project, names) -> list[str]:
    """Node names with aliases (pattern and [use] names, alias nodes) replaced by their members."""
    out: list[str] = []
    seen: set[str] = set()
    todo = list(reversed(names))  # a stack: members are expanded where their alias stood
    while todo:
        n = todo.pop()
        node = project.nodes[n]
        if node.is_alias:
            todo.extend(reversed(node.deps))
        elif n not in seen:
            seen.add(n)
            out.append(n)
    return out


def touch(project: Project, targets, noop=None) -> list[str]:
    """Accept the current outputs of the targets (not their inputs) as up to date for
    their current key. All or nothing: every output must exist before any is accepted.
    noop: the build (a fastpath.Pending: its argv and cwd) to record as a no-op when the
    touch covered every node that build needs (`node touch` then `node build` is then
    a no-op at the cost of its stats, not a full check)."""
    names = expand_aliases(project, resolve_targets(project, targets))
    session = Session(project)
    lock = ProjectLock(session.dir)
    try:
        lock.acquire(True)
        records = []
        for n in names:
            outs = session.output_hashes(n)
            missing = [p for p, h in outs.items() if h is None]
            if missing:
                raise ConfigError(f"cannot touch '{n}': output missing: {', '.join(missing)} (nothing was accepted)")
            parts = session.parts(n)
            records.append((n, hashing.key_of(parts), parts, outs))
        with session.state.batch():  # all or nothing, and one commit for any number of nodes
            for n, key, parts, outs in records:
                session.state.put_record(n, key, parts, outs, "touch", None)
        if noop is not None:
            order = graph.closure(project.nodes, resolve_targets(project, noop.argv[1:]))
            real = [n for n in order if not project.nodes[n].is_alias]
            if set(real) <= set(names) and not volatile(project, order):  # every node that build needs is accepted
                from .incremental import record_noop
                record_noop(session, order, noop, len(real))
        return names
    finally:
        session.close()
        lock.release()
