"""The Runner: what the scheduler calls for a build. It decides each node when
its inputs are done (key, verdict), prepares attempts (recipes in learned
order; transfers in threads), checks and records their outcomes, feeds the
learner, the cache and stores, and cancels attempts whose inputs change
(watch mode).
"""
from __future__ import annotations

import os
import time

from . import recipes
from .stores import describe_outputs, manifest_size
from .model import FailureClass, NodeResult, Outcome, ReasonKind, Summary
from .report.console import fmt_seconds
from .pathsafe import OutputGuard, UnsafeOutput, safe_filename
from .session import TRANSFERS, Options, Session, move_aside


def _tail(path: str | None, n: int = 12) -> str:
    if not path:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 8192))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    return "\n".join("    " + line for line in lines[-n:])


def signal_name(n: int) -> str:
    import signal
    try:
        return signal.Signals(n).name
    except ValueError:
        return f"signal {n}"


def exit_problem(code: int, kind: str = "") -> str:
    """"killed by SIGKILL" for a recipe a signal ended (a negative status); a shell's
    128 + N says which signal ended a command in it."""
    if code < 0:
        return f"killed by {signal_name(-code)}"
    if kind == "shell" and 128 < code <= 128 + 64 and not signal_name(code - 128).startswith("signal"):
        return f"exited with status {code} (a command in it was killed by {signal_name(code - 128)})"
    return f"exited with status {code}"


MAX_RERUNS = 3  # re-runs of a node whose inputs changed while it ran, before it fails
INLINE_CACHE_BYTES = 1 << 20  # outputs up to this size are cached in the build thread
GROUP_COMMIT = 0.05  # seconds of finished attempts recorded in one transaction


class Runner:
    """What the scheduler calls: decide, finished, and progress hooks."""

    def __init__(self, session: Session, options: Options, reporter, build_id: int):
        self.s = session
        self.o = options
        self.rep = reporter
        self.build_id = build_id
        self.keys: dict[str, tuple[str, dict]] = {}
        self.order: dict[str, list] = {}
        self.attempt_no: dict[str, int] = {}
        self.tries: dict[tuple, int] = {}
        self.summary = Summary()
        self.jobdir = os.path.join(session.dir, "jobs")
        self.tmpdir = os.path.join(session.dir, "tmp")
        self.negative: set[tuple[str, str]] = set()  # (store, key): not there, for this build
        self._push_skipped: set[str] = set()  # stores down: their skipped pushes were reported
        self.uploads = None  # a one-thread pool for cache puts and pushes
        # watch mode: paths reported changed while recipes run (set from another thread)
        import threading
        self._changed_lock = threading.Lock()
        self._changed: dict[str, int] = {}  # path -> sequence number of its latest change
        self._seq = 0
        self._decided_at: dict[str, int] = {}  # node -> sequence number when its attempt was prepared
        self.requeued: list[str] = []
        self._made: set[str] = set()
        self.guard = OutputGuard(session.project.root)  # outputs stay in the project (pathsafe.py)
        self.reruns: dict[str, int] = {}
        self.known_up_to_date: set[str] = set()
        self.choices: dict = {}
        self.limits: dict = {}
        self.base_env = dict(os.environ)  # decoded once per build, copied per recipe
        session.on_store_wait = getattr(reporter, "waiting", None)
        self._chosen_at: dict[str, int] = {}  # node -> learner.observations when its order was chosen
        self.probing: dict[str, tuple] = {}  # node -> (recipe, attempt, deadline) of its bounded probe

    def makedirs(self, path: str) -> None:
        if path not in self._made:
            os.makedirs(path, exist_ok=True)
            self._made.add(path)

    def notify_changed(self, paths) -> None:
        """Thread-safe: these project-relative paths changed (watch mode)."""
        with self._changed_lock:
            self._seq += 1
            for p in paths:
                self._changed[p.rstrip("/")] = self._seq

    def should_cancel(self, spec) -> bool:
        """A running recipe whose inputs or script changed is cancelled and re-queued."""
        if not self._changed:
            return False
        node = self.s.project.nodes[spec.node]
        since = self._decided_at.get(spec.node, 0)
        watched = [p.rstrip("/") for p in node.input_paths] + list(node.script_inputs)
        with self._changed_lock:
            # only changes after the attempt was prepared: an earlier one was already read
            return any(self._changed.get(p, 0) > since for p in watched)

    def _inputs_changed(self, name: str, parts: dict) -> list[str]:
        """Inputs (and scripts) whose bytes differ from what the run started with."""
        node = self.s.project.nodes[name]
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
        hasher = self.s.hasher
        hasher.invalidate(paths.values())
        return [p for k, p in paths.items() if hasher.hash(p) != parts[k]]

    # recipes in the order to try them (one function: learning plugs in here)
    def recipe_order(self, node, key: str, parts: dict) -> list:
        choice = self.s.choose(node, key, parts, self.o, self.negative)
        self.choices[node.name] = choice
        self._chosen_at[node.name] = self.s.learner.observations
        if choice.estimates:
            first = choice.estimates[0]
            self.rep.expected[node.name] = first.duration if first.known and not first.floor else None
        eta = getattr(self.rep, "eta", None)
        if eta is not None:
            eta.decided(node.name)
        return list(choice.recipes)

    def refresh(self, name: str, spec):
        """Just before a node's first attempt starts: if the learner observed attempts
        since its recipes were ordered (a sibling found the store down, or back), order
        them again, and start the new first recipe instead. Nodes decided in the same
        instant thus use each other's news within the build, not only the next one."""
        if spec.index != 0 or spec.attempt != 1 or self.o.recipe_kind or len(self.order.get(name, ())) < 2:
            return spec
        if self._chosen_at.get(name) == self.s.learner.observations:
            return spec
        node = self.s.project.nodes[name]
        key, parts = self.keys[name]
        try:
            order = self.recipe_order(node, key, parts)
        except Exception as e:  # learning must never break a build: keep the first order
            self.rep.warn(f"could not re-order the recipes of {name}: {e}")
            return spec
        if not order or order[0] == spec.recipe:
            if order:
                self.order[name] = order
            return spec
        self.order[name] = order
        self.attempt_no[name] = self.attempt_no.get(name, 1) - 1  # the prepared attempt never ran
        self.rep.detail(f"     {name}: {order[0].name} first now (news from its siblings)")
        return self._next_spec(name, 0)

    def observe(self, name: str, spec, ok: bool, duration: float, size: int | None, script_hash,
                censored: bool = False, warm: bool = False) -> None:
        try:
            self.s.learner.observe(name, spec.recipe, ok, duration, script_hash=script_hash, size=size,
                                   censored=censored, warm=warm)
        except Exception as e:  # learning must never break a build
            self.rep.warn(f"could not record statistics for {name}: {e}")

    def decide(self, name: str):
        node = self.s.project.nodes[name]
        if node.is_alias:
            return NodeResult(name, Outcome.UP_TO_DATE)
        if name in self.known_up_to_date:  # engine.unaffected: nothing it reads moved
            self.summary.up_to_date.append(name)
            return NodeResult(name, Outcome.UP_TO_DATE)
        forced = "--force" if name in self.o.force else self.o.always_make
        verdict, parts = self.s.verdict(name, forced=forced, building=True)
        if None in parts.values():  # rare: look for what is missing only then
            missing = [k[6:] for k, v in parts.items() if k.startswith("input:") and v is None]
            missing += [k[7:] for k, v in parts.items() if k.startswith("script:") and v is None]
            if missing:
                return NodeResult(name, Outcome.FAILED, message=f"input missing: {', '.join(missing)}")
        if not verdict.stale:
            self.summary.up_to_date.append(name)
            return NodeResult(name, Outcome.UP_TO_DATE)
        if getattr(self.rep, "verbosity", 1) > 0:  # the reasons as text only when shown
            self.rep.detail(f"     {name}: {'; '.join(str(r) for r in verdict.reasons)}")
        self.keys[name] = (verdict.key, parts)
        self.order[name] = self.recipe_order(node, verdict.key, parts)
        if not self.order[name]:
            why = f"no recipe of kind '{self.o.recipe_kind}'" if self.o.recipe_kind else "no recipe can produce it"
            return NodeResult(name, Outcome.FAILED, message=why)
        if verdict.reasons[0].kind is not ReasonKind.NEVER_BUILT:
            self.s.state.mark_incomplete(name)
        return self._next_spec(name, 0)

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
        node = self.s.project.nodes[name]
        with self._changed_lock:
            self._decided_at[name] = self._seq
        recipe = self.order[name][idx]
        n = self.attempt_no.get(name, 0) + 1
        self.attempt_no[name] = n
        self.guard.check(node.output_paths)  # at the moment of writing: a symlink may be new
        move_aside(self.s, node, "previous", "last")
        for p in node.output_paths:
            self.makedirs(os.path.dirname(os.path.join(self.s.project.root, p.rstrip("/"))))
        log = os.path.join(self.s.dir, "logs", f"{self.build_id:05d}",
                           f"{safe_filename(name)}.{n}.{safe_filename(recipe.name.replace('#', '_'))}.log")
        if recipe.kind in TRANSFERS:
            return self._transfer_spec(node, recipe, n, log, idx)
        spec = recipes.prepare(self.s.project, node, recipe, n, log, self.jobdir, index=idx, base_env=self.base_env)
        choice = self.choices.get(name)
        if idx == 0 and choice is not None and choice.deadline is not None and choice.probe == recipe.name:
            # a bounded probe: stopped at its deadline (or at the recipe's own timeout, if sooner)
            from .records import replace
            deadline = choice.deadline if not spec.timeout else min(spec.timeout, choice.deadline)
            self.probing[name] = (recipe.name, n, deadline)
            self.rep.info(f"probe {name}: {recipe.name} ({choice.why}), stopped after {fmt_seconds(deadline)} "
                          f"unless done; then {choice.order[1]} (expected {fmt_seconds(choice.estimates[1].duration)})")
            spec = replace(spec, timeout=deadline)
        return spec

    def _transfer_spec(self, node, recipe, n, log, idx):
        from .recipes import Spec
        from .stores import StoreError
        key = self.keys[node.name][0]
        store = self.s.store(recipe.target) if recipe.kind == "fetch" else self.s.cache
        root, tmpdir = self.s.project.root, self.tmpdir

        def transfer():
            m = store.manifest(key)
            if m is None:
                raise StoreError(f"not in store '{store.name}'", FailureClass.UNAVAILABLE)
            return store.restore(m, node.output_paths, root, tmpdir)

        return Spec(node.name, recipe, (), {}, root, log, "", None, {"transfers": 1.0}, n, idx, transfer)

    def _finished_transfer(self, name, spec, fin):
        node = self.s.project.nodes[name]
        key, parts = self.keys[name]
        store = spec.recipe.target if spec.recipe.kind == "fetch" else "cache"
        outputs, size = fin.payload if fin.exit_code == 0 else ({}, 0)
        if fin.exit_code == 0:
            self.s.hasher.invalidate(node.output_paths)
            current = {p: self.s.hasher.hash(p) for p in node.output_paths}
            if current != outputs:
                from .records import replace
                fin = replace(fin, exit_code=1, error="restored outputs changed while being written", failure=FailureClass.TRANSIENT)
        os.makedirs(os.path.dirname(spec.log), exist_ok=True)
        with open(spec.log, "a") as f:
            f.write((f"{spec.recipe.kind} from {store}: " + ("ok" if fin.exit_code == 0 else fin.error)) + "\n")
        self.s.state.add_attempt(build_id=self.build_id, node=name, recipe=spec.recipe.name, kind=spec.recipe.kind,
                                 attempt=spec.attempt, start_ns=_start_ns(fin),
                                 duration=fin.duration, outcome=Outcome.OK if fin.exit_code == 0 else Outcome.FAILED,
                                 failure=fin.failure, bytes=size, log=os.path.relpath(spec.log, self.s.project.root),
                                 exit_code=fin.exit_code, message=fin.error or None, script_hash=store, key=key)
        self.observe(name, spec, fin.exit_code == 0, fin.duration, size or None, None)
        if fin.exit_code == 0:
            self.s.state.put_record(name, key, parts, outputs, spec.recipe.name, self.build_id)
            self.summary.built.append(name)
            self.summary.restored[name] = spec.recipe.target if spec.recipe.kind == "fetch" else None
            self.summary.durations[name] = fin.duration
            if spec.recipe.kind == "fetch":
                self._after_rebuild(node, key, outputs, stores=False)  # keep a local copy
            return NodeResult(name, Outcome.OK, spec.recipe.name, fin.duration, log=spec.log)
        st = self.s.store(store) if spec.recipe.kind == "fetch" else self.s.cache
        known_down = (store, "*") in self.negative
        if st.down or (fin.failure == FailureClass.TRANSIENT and "unreachable" in (fin.error or "")):
            self.negative.add((store, "*"))  # down: not asked again in this build
            self.summary.down.setdefault(store, st.down or fin.error)
        if fin.failure == FailureClass.RECIPE_ERROR:
            self.summary.rejected.append(f"{name}: {fin.error}")
        if fin.failure == FailureClass.UNAVAILABLE or known_down:
            if fin.failure == FailureClass.UNAVAILABLE:
                self.negative.add((store, key))
            self.rep.detail(f"     {name}: {fin.error}")
        else:
            self.rep.warn(f"{name}: {fin.error}; trying the next recipe")
        return self._fallback(name, spec, fin.error, spec.recipe.kind + " from " + store, fin)

    def _fallback(self, name, spec, problem, what, fin):
        if spec.index + 1 < len(self.order[name]):
            return self._next_spec(name, spec.index + 1)
        self.summary.failed.append(name)
        return NodeResult(name, Outcome.FAILED, spec.recipe.name, fin.duration, f"{what}: {problem}", spec.log)

    def _after_rebuild(self, node, key: str, outputs: dict, stores: bool = True) -> None:
        """Put fresh outputs in the local cache (here when they are small, else in the
        upload thread) and push them to `push = true` stores (in the upload thread);
        a failed push is a warning, never a failed build."""
        stores = [st for st in self.s.project.stores.values() if st.push] if stores and self.s.project.stores else []
        if stores:
            for st in [st for st in stores if (st.name, "*") in self.negative]:
                say = self.rep.detail if st.name in self._push_skipped else self.rep.warn
                self._push_skipped.add(st.name)  # said once per store, then only with -v
                say(f"{node.name}: could not push to store '{st.name}': it was unreachable earlier in this build")
            stores = [st for st in stores if (st.name, "*") not in self.negative]
        if not (self.s.cache or stores):
            return
        try:
            entries = describe_outputs(self.s.project.root, node.output_paths, self.s.hasher)
        except OSError as e:
            self.rep.warn(f"{node.name}: cannot describe outputs for the cache: {e}")
            return
        targets = ([self.s.cache] if self.s.cache else []) + [self.s.store(st.name) for st in stores]
        root, rep = self.s.project.root, self.rep

        def upload(targets):
            for t in targets:
                try:
                    t.put(node.name, key, root, entries)
                except Exception as e:  # any backend error: warn, keep building
                    rep.warn(f"{node.name}: could not push to store '{t.name}': {str(e).splitlines()[0][:200]}")

        if self.s.cache and manifest_size({"outputs": entries}) <= INLINE_CACHE_BYTES:
            # small outputs go into the local cache right here: cheaper than handing
            # them to the upload thread (whose GIL hand-offs cost more than the copy)
            upload(targets[:1])
            targets = targets[1:]
        if not targets:
            return
        if self.uploads is None:
            from concurrent.futures import ThreadPoolExecutor
            self.uploads = ThreadPoolExecutor(1, thread_name_prefix="nodefile-upload")
        self.uploads.submit(upload, targets)

    def wait_uploads(self) -> None:
        if self.uploads is not None:
            self.uploads.shutdown(wait=True)

    def finished(self, name: str, spec, fin):
        """Record one ended attempt. Writes are grouped: one transaction stays open
        over the attempts that end within GROUP_COMMIT seconds (one commit per
        group, not per node); tick() and flush() commit it, so a build killed with
        -9 loses at most that window of records (those nodes rebuild next time)."""
        with self.s.state.grouped(GROUP_COMMIT):
            if spec.func is not None and spec.recipe.kind in TRANSFERS:  # not a Pipeline function
                return self._finished_transfer(name, spec, fin)
            return self._finished_run(name, spec, fin)

    def flush(self) -> None:
        """Commit the open group of records (before waiting long, and at the end)."""
        if self.s._learner is not None:
            try:
                self.s._learner.flush()  # the family rows of the attempts observed since the last flush
            except Exception as e:  # learning must never break a build
                self.rep.warn(f"could not record statistics: {e}")
        self.s.state.commit()

    def _finished_run(self, name: str, spec, fin):
        node = self.s.project.nodes[name]
        idx = spec.index
        problem = ""
        if fin.error:
            problem = fin.error
        elif fin.cancelled:
            problem = "cancelled"
        elif fin.timed_out:
            problem = f"timed out after {spec.timeout:g}s"
        elif fin.exit_code != 0:
            problem = exit_problem(fin.exit_code, spec.recipe.kind)
        else:
            self.s.hasher.invalidate(node.output_paths)
            problem = self._check_outputs(node)
        key, parts = self.keys[name]
        changed = self._inputs_changed(name, parts)
        if changed or fin.cancelled:
            return self._rerun(name, spec, fin, changed)
        probe = self.probing.pop(name, None)
        if probe is not None and (probe[0], probe[1]) != (spec.recipe.name, spec.attempt):
            probe = None
        if probe is not None and fin.timed_out and not fin.cancelled:
            return self._probe_stopped(name, spec, fin, probe[2], parts)
        outcome = Outcome.OK if not problem else (Outcome.CANCELLED if fin.cancelled else Outcome.FAILED)
        failure = None if not problem else (FailureClass.UNAVAILABLE if fin.error else
                                            FailureClass.TRANSIENT if fin.timed_out else FailureClass.RECIPE_ERROR)
        size = 0
        outputs = {}
        if not problem:  # hashed by _check_outputs
            outputs = {p: self.s.hasher.hash(p) for p in node.output_paths}
            size = sum(self.s.hasher.size(p) if not p.endswith("/") else _size(os.path.join(self.s.project.root, p))
                       for p in node.output_paths)
        script_hash = parts.get(f"script:{spec.recipe.script}") if spec.recipe.script else None
        # an attempt that printed nothing and succeeded has no log file
        log = os.path.relpath(spec.log, self.s.project.root) if problem or fin.output_bytes else None
        if problem and not fin.output_bytes and not os.path.exists(spec.log):
            _touch(spec.log, fin.error)  # the log of a failed attempt always exists (a quiet one: empty)
        self.s.state.add_attempt(build_id=self.build_id, node=name, recipe=spec.recipe.name, kind=spec.recipe.kind,
                                 attempt=spec.attempt, start_ns=_start_ns(fin),
                                 duration=fin.duration, outcome=outcome, failure=failure, bytes=size,
                                 log=log, exit_code=fin.exit_code,
                                 message=problem or None, script_hash=script_hash, key=key)
        self.observe(name, spec, not problem, fin.duration, size or None, script_hash, warm=fin.warm)
        if not problem:
            self.s.state.put_record(name, key, parts, outputs, spec.recipe.name, self.build_id)
            self.summary.built.append(name)
            self.summary.durations[name] = fin.duration
            self._after_rebuild(node, key, outputs)
            return NodeResult(name, Outcome.OK, spec.recipe.name, fin.duration, log=spec.log, warm=fin.warm,
                              worker=fin.worker)
        move_aside(self.s, node, "failed", f"{self.build_id:05d}-{spec.attempt}")
        what = f"{spec.recipe.kind} {spec.recipe.target}" if spec.recipe.kind != "shell" else "shell recipe"
        rel_log = os.path.relpath(spec.log)
        detail = (f"{what}: {problem}\n  log: {rel_log}" if fin.error  # did not start: the log says only that
                  else f"{what} {problem}\n{_tail(spec.log)}\n  log: {rel_log}")
        if fin.cancelled:
            return NodeResult(name, Outcome.CANCELLED, spec.recipe.name, fin.duration, "cancelled", spec.log)
        retries = max(spec.recipe.retries, self.o.retries) if probe is None else 0  # a failed probe: the incumbent
        used = self.tries.get((name, idx), 0)
        if used < retries:
            self.tries[(name, idx)] = used + 1
            self.rep.warn(f"{name}: {what} {problem}; retrying ({used + 1}/{retries})")
            return self._next_spec(name, idx)
        if idx + 1 < len(self.order[name]):
            self.rep.warn(f"{name}: {what} {problem}; trying the next recipe (log: {rel_log})")
        return self._fallback(name, spec, detail, what, fin) if idx + 1 < len(self.order[name]) else \
            self._fail(name, spec, detail, fin)

    def _rerun(self, name, spec, fin, changed):
        """Its inputs changed while it ran (or it was cancelled for that): run it again,
        up to MAX_RERUNS times, then fail."""
        node = self.s.project.nodes[name]
        self.reruns[name] = self.reruns.get(name, 0) + 1
        if self.reruns[name] > MAX_RERUNS:
            move_aside(self.s, node, "failed", f"{self.build_id:05d}-{spec.attempt}")
            self.summary.failed.append(name)
            return NodeResult(name, Outcome.FAILED, spec.recipe.name, fin.duration,
                              f"its inputs changed during each of {MAX_RERUNS + 1} runs "
                              f"({', '.join(changed) or 'cancelled'}); does the recipe write to its own input?",
                              spec.log)
        # never record a result computed from inputs that changed while it ran
        self.rep.info(f"     {name}: {', '.join(changed) or 'an input'} changed while it ran; running it again")
        self.s.state.add_attempt(build_id=self.build_id, node=name, recipe=spec.recipe.name,
                                 kind=spec.recipe.kind, attempt=spec.attempt,
                                 start_ns=_start_ns(fin), duration=fin.duration,
                                 outcome=Outcome.CANCELLED, failure=FailureClass.TRANSIENT,
                                 log=os.path.relpath(spec.log, self.s.project.root), exit_code=fin.exit_code,
                                 message="inputs changed while it ran")
        move_aside(self.s, node, "failed", f"{self.build_id:05d}-{spec.attempt}")
        self.requeued.append(name)
        return self.decide(name)

    def _probe_stopped(self, name, spec, fin, deadline, parts):
        """A bounded probe passed its deadline: its process group was stopped. The
        learner records "slower than the deadline" (censored, neither success nor
        failure), its partial outputs go where a failed attempt's go, and the next
        recipe (the incumbent) runs."""
        node = self.s.project.nodes[name]
        script_hash = parts.get(f"script:{spec.recipe.script}") if spec.recipe.script else None
        message = f"probe stopped at its {fmt_seconds(deadline)} deadline (slower than that)"
        if not fin.output_bytes and not os.path.exists(spec.log):
            _touch(spec.log, message)
        self.s.state.add_attempt(build_id=self.build_id, node=name, recipe=spec.recipe.name, kind=spec.recipe.kind,
                                 attempt=spec.attempt, start_ns=_start_ns(fin),
                                 duration=fin.duration, outcome=Outcome.STOPPED, failure=FailureClass.PROBE,
                                 log=os.path.relpath(spec.log, self.s.project.root), exit_code=fin.exit_code,
                                 message=message, script_hash=script_hash)
        self.observe(name, spec, False, deadline, None, script_hash, censored=True, warm=fin.warm)
        move_aside(self.s, node, "failed", f"{self.build_id:05d}-{spec.attempt}")
        nxt = self.order[name][spec.index + 1] if spec.index + 1 < len(self.order[name]) else None
        self.rep.info(f"     {name}: probe of {spec.recipe.name} stopped at its {fmt_seconds(deadline)} deadline"
                      + (f"; running {nxt.name}" if nxt is not None else ""))
        if nxt is None:
            return self._fail(name, spec, message, fin)
        return self._next_spec(name, spec.index + 1)

    def _fail(self, name, spec, detail, fin):
        self.summary.failed.append(name)
        return NodeResult(name, Outcome.FAILED, spec.recipe.name, fin.duration, detail, spec.log)

    def _check_outputs(self, node) -> str:
        bad = []
        for p in node.output_paths:
            self.s.hasher.hash(p)  # one stat and the hash, which the record needs anyway
            kind = self.s.hasher.kind(p)
            if kind is None:
                bad.append(f"did not write declared output '{p}'")
            elif p.endswith("/") and kind != "dir":
                bad.append(f"declared directory output '{p}' is a file")
            elif not p.endswith("/") and kind == "dir":
                bad.append(f"declared file output '{p}' is a directory (declare it as '{p}/')")
        return "; ".join(bad)

    def started(self, spec) -> None:
        self.rep.started(spec)

    def done(self, result: NodeResult) -> None:
        if result.outcome is Outcome.SKIPPED:
            self.summary.skipped.append(result.node)
        elif result.outcome is Outcome.FAILED and result.node not in self.summary.failed:
            self.summary.failed.append(result.node)
        self.rep.done(result)

    def tick(self, running, done, total) -> None:
        self.flush()
        self.rep.tick(running, done, total)


def _start_ns(fin) -> int:
    """When the attempt's process (or transfer) started, on the wall clock: its real
    lifetime ended when the executor reaped it."""
    end = fin.ended_ns or time.time_ns()
    return end - int(fin.duration * 1e9)


def _touch(path: str, text: str = "") -> None:
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "a") as f:
            if text:
                f.write(text + "\n")
    except OSError:
        pass


def _size(path: str) -> int:
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
