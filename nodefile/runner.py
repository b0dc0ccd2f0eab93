"""The Runner: what the scheduler calls for a build. It decides each node when
its inputs are done (key, verdict), prepares attempts (recipes in learned
order; transfers in threads), judges their outcomes, retries or falls back to
the next recipe, feeds the learner, and cancels attempts whose inputs change
(watch mode).

Each stale node's state is one `NodeRun`. What an attempt leaves behind (its row,
its log, outputs moved aside) is `attempts.AttemptLog`; fresh outputs go to the
cache and stores through `attempts.Uploads`; what the user sees goes to the
`report.Reporter`.
"""
from __future__ import annotations

import os
import threading

from . import recipes
from .attempts import AttemptLog, Uploads, exit_problem, tail, touch_log
from .model import FailureClass, NodeResult, Outcome, ReasonKind, Summary
from .pathsafe import OutputGuard, UnsafeOutput
from .records import replace
from .report import Reporter
from .report.console import fmt_seconds
from .session import TRANSFERS, Options, Session

MAX_RERUNS = 3  # re-runs of a node whose inputs changed while it ran, before it fails
GROUP_COMMIT = 0.05  # seconds of finished attempts recorded in one transaction


class NodeRun:
    """A stale node in this build. Made when it is first decided stale; decided
    again (its inputs changed while it ran), it keeps its attempt numbers, retries
    and re-runs. A plain class, not a @record: mutable state, not a value (and no
    class made with `exec` on the build's import path)."""
    __slots__ = ("key", "parts", "order", "choice", "chosen_at", "attempts", "tries", "reruns", "decided_at",
                 "probe")

    def __init__(self, key: str, parts: dict):
        self.key = key
        self.parts = parts
        self.order: list = []  # its recipes, in the order to try them
        self.choice = None  # the learner's Choice behind `order`
        self.chosen_at = 0  # learner.observations when `order` was chosen
        self.attempts = 0  # the number of its latest attempt (0: none prepared)
        self.tries: dict[int, int] = {}  # recipe index in `order` -> retries used
        self.reruns = 0  # runs started again because its inputs changed while it ran
        self.decided_at = 0  # `Changes.seq` when its latest attempt was prepared
        self.probe: tuple | None = None  # (recipe name, attempt, deadline) of its bounded probe


class Changes:
    """Watch mode: the paths reported changed while recipes run (from another thread),
    each with the sequence number of its latest change."""

    def __init__(self):
        self.lock = threading.Lock()
        self.seq_of: dict[str, int] = {}
        self.seq = 0

    def add(self, paths) -> None:
        with self.lock:
            self.seq += 1
            for p in paths:
                self.seq_of[p.rstrip("/")] = self.seq

    def now(self) -> int:
        with self.lock:
            return self.seq

    def since(self, seq: int, paths) -> bool:
        """Whether any of these paths changed after `seq`."""
        with self.lock:
            return any(self.seq_of.get(p, 0) > seq for p in paths)


class Runner:
    """What the scheduler calls: decide, finished, and progress hooks."""

    def __init__(self, session: Session, options: Options, reporter: Reporter, build_id: int):
        self.session = session
        self.options = options
        self.reporter = reporter
        self.build_id = build_id
        self.runs: dict[str, NodeRun] = {}
        self.summary = Summary()
        self.jobdir = os.path.join(session.dir, "jobs")
        self.tmpdir = os.path.join(session.dir, "tmp")
        self.negative: set[tuple[str, str]] = set()  # (store, key): not there, for this build
        self.attempts = AttemptLog(session, build_id)
        self.uploads = Uploads(session, reporter, self.negative)
        self.changes = Changes()
        self._made: set[str] = set()
        self.guard = OutputGuard(session.project.root)  # outputs stay in the project (pathsafe.py)
        self.known_up_to_date: set[str] = set()
        self.base_env = dict(os.environ)  # decoded once per build, copied per recipe
        session.on_store_wait = reporter.waiting

    def makedirs(self, path: str) -> None:
        if path not in self._made:
            os.makedirs(path, exist_ok=True)
            self._made.add(path)

    def choice_of(self, name: str):
        """The learner's Choice of the node's recipe order, once it is decided stale."""
        run = self.runs.get(name)
        return run.choice if run is not None else None

    # -- watch mode ----------------------------------------------------------------------
    def notify_changed(self, paths) -> None:
        """Thread-safe: these project-relative paths changed (watch mode)."""
        self.changes.add(paths)

    def should_cancel(self, spec) -> bool:
        """A running recipe whose inputs or script changed is cancelled and re-queued."""
        if not self.changes.seq_of:
            return False
        node = self.session.project.nodes[spec.node]
        run = self.runs.get(spec.node)
        watched = [p.rstrip("/") for p in node.input_paths] + list(node.script_inputs)
        # only changes after the attempt was prepared: an earlier one was already read
        return self.changes.since(run.decided_at if run is not None else 0, watched)

    def _inputs_changed(self, name: str, parts: dict) -> list[str]:
        """Inputs (and scripts) whose bytes differ from what the run started with."""
        node = self.session.project.nodes[name]
        real = None
        paths = {}
        for k in parts:
            kind, sep, p = k.partition(":")
            if kind == "input" or kind == "import":
                paths[k] = p
            elif kind == "script":
                if real is None:
                    real = {r.label: r.script for r in node.recipes if r.script and r.label}  # template scripts
                paths[k] = real.get(p, p)
        hasher = self.session.hasher
        hasher.invalidate(paths.values())
        return [p for k, p in paths.items() if hasher.hash(p) != parts[k]]

    # -- deciding ------------------------------------------------------------------------
    def recipe_order(self, node, run: NodeRun) -> list:
        """The node's recipes in the order to try them (one function: learning plugs in here)."""
        choice = self.session.choose(node, run.key, run.parts, self.options, self.negative)
        run.choice = choice
        run.chosen_at = self.session.learner.observations
        self.reporter.planned(node.name, choice)
        return list(choice.recipes)

    def refresh(self, name: str, spec):
        """Just before a node's first attempt starts: if the learner observed attempts
        since its recipes were ordered (a sibling found the store down, or back), order
        them again, and start the new first recipe instead. Nodes decided in the same
        instant thus use each other's news within the build, not only the next one."""
        run = self.runs.get(name)
        if spec.index != 0 or spec.attempt != 1 or self.options.recipe_kind or run is None or len(run.order) < 2:
            return spec
        if run.chosen_at == self.session.learner.observations:
            return spec
        try:
            order = self.recipe_order(self.session.project.nodes[name], run)
        except Exception as e:  # learning must never break a build: keep the first order
            self.reporter.warn(f"could not re-order the recipes of {name}: {e}")
            return spec
        if order:
            run.order = order
        if not order or order[0] == spec.recipe:
            return spec
        run.attempts -= 1  # the prepared attempt never ran
        self.reporter.detail(f"     {name}: {order[0].name} first now (news from its siblings)")
        return self._next_spec(name, 0)

    def observe(self, name: str, spec, ok: bool, duration: float, size: int | None, script_hash,
                censored: bool = False, warm: bool = False) -> None:
        try:
            self.session.learner.observe(name, spec.recipe, ok, duration, script_hash=script_hash, size=size,
                                         censored=censored, warm=warm)
        except Exception as e:  # learning must never break a build
            self.reporter.warn(f"could not record statistics for {name}: {e}")

    def decide(self, name: str):
        node = self.session.project.nodes[name]
        if node.is_alias:
            return NodeResult(name, Outcome.UP_TO_DATE)
        if name in self.known_up_to_date:  # engine.unaffected: nothing it reads moved
            self.summary.up_to_date.append(name)
            return NodeResult(name, Outcome.UP_TO_DATE)
        forced = "--force" if name in self.options.force else self.options.always_make
        verdict, parts = self.session.verdict(name, forced=forced, building=True)
        if None in parts.values():  # rare: look for what is missing only then
            missing = [k[6:] for k, v in parts.items() if k.startswith("input:") and v is None]
            missing += [k[7:] for k, v in parts.items() if k.startswith("script:") and v is None]
            if missing:
                return NodeResult(name, Outcome.FAILED, message=f"input missing: {', '.join(missing)}")
        if not verdict.stale:
            self.summary.up_to_date.append(name)
            return NodeResult(name, Outcome.UP_TO_DATE)
        if self.reporter.verbosity > 0:  # the reasons as text only when shown
            self.reporter.detail(f"     {name}: {'; '.join(str(r) for r in verdict.reasons)}")
        run = self.runs.get(name)
        if run is None:
            run = self.runs[name] = NodeRun(verdict.key, parts)
        else:
            run.key, run.parts = verdict.key, parts
        run.order = self.recipe_order(node, run)
        if not run.order:
            kind = self.options.recipe_kind
            return NodeResult(name, Outcome.FAILED,
                              message=f"no recipe of kind '{kind}'" if kind else "no recipe can produce it")
        if verdict.reasons[0].kind is not ReasonKind.NEVER_BUILT:
            self.session.state.mark_incomplete(name)
        return self._next_spec(name, 0)

    # -- preparing an attempt ------------------------------------------------------------
    def _next_spec(self, name: str, idx: int):
        """The Spec of the idx-th recipe; a node that cannot even be prepared
        (an output's folder is a file, a disk error) fails, the build goes on."""
        try:
            return self._prepare(name, idx)
        except UnsafeOutput as e:
            self.summary.failed.append(name)
            return NodeResult(name, Outcome.FAILED, message=str(e))
        except OSError as e:
            self.summary.failed.append(name)
            where = f" ({e.filename})" if getattr(e, "filename", None) else ""
            return NodeResult(name, Outcome.FAILED, message=f"cannot prepare its outputs: {e.strerror or e}{where}")

    def _prepare(self, name: str, idx: int):
        node = self.session.project.nodes[name]
        run = self.runs[name]
        run.decided_at = self.changes.now()
        recipe = run.order[idx]
        run.attempts += 1
        n = run.attempts
        self.guard.check(node.output_paths)  # at the moment of writing: a symlink may be new
        self.attempts.move_previous(node)
        root = self.session.project.root
        for p in node.output_paths:
            self.makedirs(os.path.dirname(os.path.join(root, p.rstrip("/"))))
        log = self.attempts.log_path(name, n, recipe)
        if recipe.kind in TRANSFERS:
            return self._transfer_spec(node, recipe, n, log, idx)
        spec = recipes.prepare(self.session.project, node, recipe, n, log, self.jobdir, index=idx,
                               base_env=self.base_env)
        choice = run.choice
        if idx == 0 and choice is not None and choice.deadline is not None and choice.probe == recipe.name:
            return self._probe_spec(name, run, spec)
        return spec

    def _probe_spec(self, name: str, run: NodeRun, spec):
        """A bounded probe: stopped at its deadline (or at the recipe's own timeout, if sooner)."""
        choice = run.choice
        deadline = choice.deadline if not spec.timeout else min(spec.timeout, choice.deadline)
        run.probe = (spec.recipe.name, spec.attempt, deadline)
        self.reporter.info(f"probe {name}: {spec.recipe.name} ({choice.why}), stopped after "
                           f"{fmt_seconds(deadline)} unless done; then {choice.order[1]} "
                           f"(expected {fmt_seconds(choice.estimates[1].duration)})")
        return replace(spec, timeout=deadline)

    def _transfer_spec(self, node, recipe, n: int, log: str, idx: int):
        from .recipes import Spec
        from .stores import StoreError
        key = self.runs[node.name].key
        store = self.session.store(recipe.target) if recipe.kind == "fetch" else self.session.cache
        root, tmpdir = self.session.project.root, self.tmpdir

        def transfer():
            m = store.manifest(key)
            if m is None:
                raise StoreError(f"not in store '{store.name}'", FailureClass.UNAVAILABLE)
            return store.restore(m, node.output_paths, root, tmpdir)

        return Spec(node.name, recipe, (), {}, root, log, "", None, {"transfers": 1.0}, n, idx, transfer)

    # -- an attempt ended ----------------------------------------------------------------
    def finished(self, name: str, spec, fin):
        """Record one ended attempt. Writes are grouped: one transaction stays open
        over the attempts that end within GROUP_COMMIT seconds (one commit per
        group, not per node); tick() and flush() commit it, so a build killed with
        -9 loses at most that window of records (those nodes rebuild next time)."""
        with self.session.state.grouped(GROUP_COMMIT):
            if spec.func is not None and spec.recipe.kind in TRANSFERS:  # not a Pipeline function
                return self._finished_transfer(name, spec, fin)
            return self._finished_run(name, spec, fin)

    def _finished_transfer(self, name: str, spec, fin):
        node = self.session.project.nodes[name]
        run = self.runs[name]
        store = spec.recipe.target if spec.recipe.kind == "fetch" else "cache"
        outputs, size = fin.payload if fin.exit_code == 0 else ({}, 0)
        if fin.exit_code == 0:
            hasher = self.session.hasher
            hasher.invalidate(node.output_paths)
            if {p: hasher.hash(p) for p in node.output_paths} != outputs:
                fin = replace(fin, exit_code=1, error="restored outputs changed while being written",
                              failure=FailureClass.TRANSIENT)
        os.makedirs(os.path.dirname(spec.log), exist_ok=True)
        with open(spec.log, "a") as f:
            f.write((f"{spec.recipe.kind} from {store}: " + ("ok" if fin.exit_code == 0 else fin.error)) + "\n")
        self.attempts.add(name, spec, fin, Outcome.OK if fin.exit_code == 0 else Outcome.FAILED, fin.failure,
                          fin.error or None, size=size, script_hash=store, key=run.key)
        self.observe(name, spec, fin.exit_code == 0, fin.duration, size or None, None)
        if fin.exit_code != 0:
            return self._transfer_failed(name, spec, fin, store, run.key)
        self.session.state.put_record(name, run.key, run.parts, outputs, spec.recipe.name, self.build_id)
        self.summary.built.append(name)
        self.summary.restored[name] = spec.recipe.target if spec.recipe.kind == "fetch" else None
        self.summary.durations[name] = fin.duration
        if spec.recipe.kind == "fetch":
            self.uploads.put(node, run.key, push=False)  # keep a local copy
        return NodeResult(name, Outcome.OK, spec.recipe.name, fin.duration, log=spec.log)

    def _transfer_failed(self, name: str, spec, fin, store: str, key: str):
        """A load or fetch failed: a store found down is not asked again in this build,
        an entry not there is not asked for again; then the next recipe."""
        st = self.session.store(store) if spec.recipe.kind == "fetch" else self.session.cache
        known_down = (store, "*") in self.negative
        if st.down or (fin.failure == FailureClass.TRANSIENT and "unreachable" in (fin.error or "")):
            self.negative.add((store, "*"))  # down: not asked again in this build
            self.summary.down.setdefault(store, st.down or fin.error)
        if fin.failure == FailureClass.RECIPE_ERROR:
            self.summary.rejected.append(f"{name}: {fin.error}")
        if fin.failure == FailureClass.UNAVAILABLE or known_down:
            if fin.failure == FailureClass.UNAVAILABLE:
                self.negative.add((store, key))
            self.reporter.detail(f"     {name}: {fin.error}")
        else:
            self.reporter.warn(f"{name}: {fin.error}; trying the next recipe")
        return self._fallback(name, spec, fin.error, spec.recipe.kind + " from " + store, fin)

    def _finished_run(self, name: str, spec, fin):
        node = self.session.project.nodes[name]
        problem = self._problem(node, spec, fin)
        run = self.runs[name]
        changed = self._inputs_changed(name, run.parts)
        if changed or fin.cancelled:
            return self._rerun(name, spec, fin, changed)
        probe, run.probe = run.probe, None
        if probe is not None and (probe[0], probe[1]) != (spec.recipe.name, spec.attempt):
            probe = None  # the probe of an earlier attempt
        script_hash = run.parts.get(f"script:{spec.recipe.script}") if spec.recipe.script else None
        if probe is not None and fin.timed_out:
            return self._probe_stopped(name, spec, fin, probe[2], script_hash)
        if not problem:
            return self._succeeded(name, node, spec, fin, script_hash)
        return self._failed(name, node, spec, fin, problem, script_hash, probe is not None)

    def _problem(self, node, spec, fin) -> str:
        """What went wrong with the attempt ("" when nothing did)."""
        if fin.error:
            return fin.error
        if fin.cancelled:
            return "cancelled"
        if fin.timed_out:
            return f"timed out after {spec.timeout:g}s"
        if fin.exit_code != 0:
            return exit_problem(fin.exit_code, spec.recipe.kind)
        self.session.hasher.invalidate(node.output_paths)
        return self._check_outputs(node)

    def _check_outputs(self, node) -> str:
        bad = []
        hasher = self.session.hasher
        for p in node.output_paths:
            hasher.hash(p)  # one stat and the hash, which the record needs anyway
            kind = hasher.kind(p)
            if kind is None:
                bad.append(f"did not write declared output '{p}'")
            elif p.endswith("/") and kind != "dir":
                bad.append(f"declared directory output '{p}' is a file")
            elif not p.endswith("/") and kind == "dir":
                bad.append(f"declared file output '{p}' is a directory (declare it as '{p}/')")
        return "; ".join(bad)

    def _succeeded(self, name: str, node, spec, fin, script_hash):
        run = self.runs[name]
        hasher, root = self.session.hasher, self.session.project.root
        outputs = {p: hasher.hash(p) for p in node.output_paths}  # hashed by _check_outputs
        size = sum(hasher.size(p) if not p.endswith("/") else _size(os.path.join(root, p))
                   for p in node.output_paths)
        # an attempt that printed nothing and succeeded has no log file
        log = self.attempts.relative(spec.log) if fin.output_bytes else None
        self.attempts.add(name, spec, fin, Outcome.OK, None, None, size=size, log=log, script_hash=script_hash,
                          key=run.key)
        self.observe(name, spec, True, fin.duration, size or None, script_hash, warm=fin.warm)
        self.session.state.put_record(name, run.key, run.parts, outputs, spec.recipe.name, self.build_id)
        self.summary.built.append(name)
        self.summary.durations[name] = fin.duration
        self.uploads.put(node, run.key)
        return NodeResult(name, Outcome.OK, spec.recipe.name, fin.duration, log=spec.log, warm=fin.warm,
                          worker=fin.worker)

    def _failed(self, name: str, node, spec, fin, problem: str, script_hash, probed: bool):
        """Record a failed attempt, then retry it, run the next recipe, or fail the node."""
        run = self.runs[name]
        if not fin.output_bytes and not os.path.exists(spec.log):
            touch_log(spec.log, fin.error)  # the log of a failed attempt always exists (a quiet one: empty)
        failure = (FailureClass.UNAVAILABLE if fin.error else
                   FailureClass.TRANSIENT if fin.timed_out else FailureClass.RECIPE_ERROR)
        self.attempts.add(name, spec, fin, Outcome.FAILED, failure, problem, size=0, script_hash=script_hash,
                          key=run.key)
        self.observe(name, spec, False, fin.duration, None, script_hash, warm=fin.warm)
        self.attempts.move_failed(node, spec.attempt)
        what = f"{spec.recipe.kind} {spec.recipe.target}" if spec.recipe.kind != "shell" else "shell recipe"
        rel_log = os.path.relpath(spec.log)
        detail = (f"{what}: {problem}\n  log: {rel_log}" if fin.error  # did not start: the log says only that
                  else f"{what} {problem}\n{tail(spec.log)}\n  log: {rel_log}")
        idx = spec.index
        retries = max(spec.recipe.retries, self.options.retries) if not probed else 0  # a failed probe: the incumbent
        used = run.tries.get(idx, 0)
        if used < retries:
            run.tries[idx] = used + 1
            self.reporter.warn(f"{name}: {what} {problem}; retrying ({used + 1}/{retries})")
            return self._next_spec(name, idx)
        if idx + 1 < len(run.order):
            self.reporter.warn(f"{name}: {what} {problem}; trying the next recipe (log: {rel_log})")
            return self._fallback(name, spec, detail, what, fin)
        return self._fail(name, spec, detail, fin)

    def _rerun(self, name: str, spec, fin, changed: list[str]):
        """Its inputs changed while it ran (or it was cancelled for that): run it again,
        up to MAX_RERUNS times, then fail."""
        node = self.session.project.nodes[name]
        run = self.runs[name]
        run.reruns += 1
        if run.reruns > MAX_RERUNS:
            self.attempts.move_failed(node, spec.attempt)
            self.summary.failed.append(name)
            return NodeResult(name, Outcome.FAILED, spec.recipe.name, fin.duration,
                              f"its inputs changed during each of {MAX_RERUNS + 1} runs "
                              f"({', '.join(changed) or 'cancelled'}); does the recipe write to its own input?",
                              spec.log)
        # never record a result computed from inputs that changed while it ran
        self.reporter.info(f"     {name}: {', '.join(changed) or 'an input'} changed while it ran; running it again")
        self.attempts.add(name, spec, fin, Outcome.CANCELLED, FailureClass.TRANSIENT, "inputs changed while it ran")
        self.attempts.move_failed(node, spec.attempt)
        return self.decide(name)

    def _probe_stopped(self, name: str, spec, fin, deadline: float, script_hash):
        """A bounded probe passed its deadline: its process group was stopped. The
        learner records "slower than the deadline" (censored, neither success nor
        failure), its partial outputs go where a failed attempt's go, and the next
        recipe (the incumbent) runs."""
        node = self.session.project.nodes[name]
        order = self.runs[name].order
        message = f"probe stopped at its {fmt_seconds(deadline)} deadline (slower than that)"
        if not fin.output_bytes and not os.path.exists(spec.log):
            touch_log(spec.log, message)
        self.attempts.add(name, spec, fin, Outcome.STOPPED, FailureClass.PROBE, message, script_hash=script_hash)
        self.observe(name, spec, False, deadline, None, script_hash, censored=True, warm=fin.warm)
        self.attempts.move_failed(node, spec.attempt)
        nxt = order[spec.index + 1] if spec.index + 1 < len(order) else None
        self.reporter.info(f"     {name}: probe of {spec.recipe.name} stopped at its {fmt_seconds(deadline)} deadline"
                           + (f"; running {nxt.name}" if nxt is not None else ""))
        if nxt is None:
            return self._fail(name, spec, message, fin)
        return self._next_spec(name, spec.index + 1)

    def _fallback(self, name: str, spec, problem: str, what: str, fin):
        if spec.index + 1 < len(self.runs[name].order):
            return self._next_spec(name, spec.index + 1)
        return self._fail(name, spec, f"{what}: {problem}", fin)

    def _fail(self, name: str, spec, detail: str, fin):
        self.summary.failed.append(name)
        return NodeResult(name, Outcome.FAILED, spec.recipe.name, fin.duration, detail, spec.log)

    # -- progress, and the end of a build ----------------------------------------------------
    def started(self, spec) -> None:
        self.reporter.started(spec)

    def done(self, result: NodeResult) -> None:
        if result.outcome is Outcome.SKIPPED:
            self.summary.skipped.append(result.node)
        elif result.outcome is Outcome.FAILED and result.node not in self.summary.failed:
            self.summary.failed.append(result.node)
        self.reporter.done(result)

    def tick(self, running, done, total) -> None:
        self.flush()
        self.reporter.tick(running, done, total)

    def flush(self) -> None:
        """Commit the open group of records (before waiting long, and at the end)."""
        try:
            self.session.flush_learning()  # the family rows of the attempts observed since the last flush
        except Exception as e:  # learning must never break a build
            self.reporter.warn(f"could not record statistics: {e}")
        self.session.state.commit()

    def wait_uploads(self) -> None:
        self.uploads.wait()

    def record_interrupted(self) -> None:
        """The build was interrupted: the nodes that were running have their partial
        outputs moved aside; their records stay marked incomplete."""
        for name, run in list(self.runs.items()):
            if name in self.summary.built or name in self.summary.failed:
                continue
            self.attempts.interrupted(name, run.attempts or None)


def _size(path: str) -> int:
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
