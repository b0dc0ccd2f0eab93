"""build(project, targets, options, reporter) -> Summary, and the read-only views
(status, explain, touch) that share its notion of a node's key.

Steps of a build: resolve targets -> closure in topological order -> take the
project lock -> schedule: when a node's inputs are done, compute its key and
verdict; run its recipes in order until one succeeds; record the result.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import time
from dataclasses import dataclass, field

from . import graph, hashing, stale
from .errors import ConfigError, LockError, UnknownTargetError
from .model import NodeResult, Outcome, Project, Reason, ReasonKind, Recipe, Status, Summary, Verdict
from .state import State


@dataclass
class Options:
    jobs: int | None = None
    keep_going: bool = False
    dry_run: bool = False
    always_make: bool = False
    recipe_kind: str | None = None
    retries: int = 0
    executor: str = "local"
    resources: dict = field(default_factory=dict)
    wait_for_lock: bool = True
    transfers_only: bool = False  # node pull: restore from the cache or stores, never rebuild
    on_runner: object = None  # called with the Runner once a build starts (watch mode uses it)
    noop_record: tuple | None = None  # (argv, cwd): record a no-op for the fast path (fastpath.py)


# -- targets ----------------------------------------------------------------------------
def resolve_targets(project: Project, targets, cwd: str | None = None) -> list[str]:
    """Node names for targets given as node names or file paths."""
    from .config.load import did_you_mean, norm
    if not targets:
        return list(project.default)
    out = []
    problems = []
    for t in targets:
        if t in project.nodes:
            out.append(t)
            continue
        absolute = os.path.abspath(os.path.join(cwd or os.getcwd(), t))
        rel = norm(os.path.relpath(absolute, project.root).replace(os.sep, "/"))
        owner = project.producers.get(rel.rstrip("/"))
        if owner is None:
            for d, n in project.dir_outputs:
                if rel.startswith(d):
                    owner = n
                    break
        if owner is not None:
            out.append(owner)
        elif os.path.exists(absolute) and not rel.startswith("../"):
            problems.append(f"'{t}' is a source file: no node produces it")
        else:
            problems.append(f"unknown target '{t}' (not a node name or an output path)"
                            f"{did_you_mean(t, project.nodes)}")
    if problems:
        raise UnknownTargetError("\n".join(problems))
    return list(dict.fromkeys(out))


# -- a session on a project's state ------------------------------------------------------------
class Session:
    """The project, its state store and a hasher: what every command works with."""

    def __init__(self, project: Project, readonly: bool = False):
        self.project = project
        self.state = State(project.root, readonly=readonly)
        self.hasher = hashing.Hasher(project.root, self.state)
        self.dir = self.state.dir
        self._records = None
        self._stores: dict = {}
        self._cache = None
        self._closure = None
        self._learner = None

    @property
    def cache(self):
        if self._cache is None and self.project.cache:
            from .stores import local_cache
            self._cache = local_cache(self.project.root)
        return self._cache

    @property
    def learner(self):
        if self._learner is None:
            from .learn import Learner
            self._learner = Learner(self.state.db)
        return self._learner

    def choose(self, node, key: str, parts: dict | None, options, negative=(), probe: bool = False):
        """The learned order of a stale node's candidate recipes (a learn.Choice)."""
        cands = candidates(self, node, key, options, set(negative), probe=probe)
        parts = parts or {}
        return self.learner.choose(node.name, cands, force_kind=options.recipe_kind,
                                   script_of=lambda r: parts.get(f"script:{r.label or r.script}") if r.script else None)

    def store(self, name: str):
        if name not in self._stores:
            from .stores import open_store
            self._stores[name] = open_store(self.project.stores[name])
        return self._stores[name]

    def source_of(self, name: str, key: str | None, options: Options | None = None) -> str:
        """Where a stale node would come from: cache, store NAME, or a rebuild recipe."""
        node = self.project.nodes[name]
        choice = self.choose(node, key or "", None, options or Options(), probe=True)
        for r in choice.recipes:
            if r.kind == "load":
                return "cache"
            if r.kind == "fetch":
                return f"store {r.target}"
            return f"rebuild ({r.name})"
        return "nothing can make it"

    def close(self) -> None:
        if self._closure is not None:
            self._closure.save()
        self.state.close()

    def records(self) -> dict:
        if self._records is None:
            self._records = self.state.records()
        return self._records

    @property
    def closure(self):
        if self._closure is None:
            from .closure import Closure
            self._closure = Closure(self.project.root, self.hasher, self.state.db)
        return self._closure

    def parts(self, name: str) -> dict:
        return hashing.key_parts(self.project.nodes[name], self.hasher, closure=self.closure)

    def output_hashes(self, name: str) -> dict:
        return {p: self.hasher.hash(p) for p in self.project.nodes[name].output_paths}

    def verdict(self, name: str, forced: bool = False) -> tuple[Verdict, dict]:
        parts = self.parts(name)
        key = hashing.key_of(parts)
        rec = self.records().get(name)
        return stale.check(name, parts, key, rec, self.output_hashes(name), forced), parts

    def plan(self, names: list[str], forced: bool = False) -> dict[str, Verdict]:
        """Verdicts for every node in `names` (topological), as a dry run sees them:
        a node whose input will be rebuilt is stale because of it."""
        out: dict[str, Verdict] = {}
        for n in names:
            node = self.project.nodes[n]
            up = [d for d in node.deps if d in out and out[d].stale]
            if node.is_alias:
                status = Status.STALE if up else Status.UP_TO_DATE
                out[n] = Verdict(n, status, tuple(Reason(ReasonKind.UPSTREAM, d) for d in up))
                continue
            v, _ = self.verdict(n, forced)
            if up:
                reasons = tuple(r for r in v.reasons if r.kind not in (
                    ReasonKind.INPUT_CHANGED, ReasonKind.INPUT_MISSING, ReasonKind.INPUT_ADDED))
                reasons = tuple(Reason(ReasonKind.UPSTREAM, d) for d in up) + reasons
                v = Verdict(n, Status.MISSING if v.status is Status.MISSING else Status.STALE, reasons, v.key)
            out[n] = v
        return out


# -- the lock -------------------------------------------------------------------------
class ProjectLock:
    """One build per project at a time; a second one waits and says who holds it."""

    def __init__(self, state_dir: str):
        os.makedirs(state_dir, exist_ok=True)
        self.path = os.path.join(state_dir, "lock")
        self.fd = None

    def acquire(self, wait: bool, on_wait=None) -> None:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self.holder()
            if not wait:
                os.close(self.fd)
                self.fd = None
                raise LockError(f"another build holds the project lock ({holder}); try again when it ends")
            if on_wait:
                on_wait(f"waiting for the project lock, held by {holder}")
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, json.dumps({"pid": os.getpid(), "since": time.time(),
                                       "argv": " ".join(os.sys.argv)}).encode(), 0)

    def holder(self) -> str:
        try:
            with open(self.path) as f:
                h = json.load(f)
            return f"pid {h['pid']}, `{h.get('argv', '?')}`, since {time.strftime('%H:%M:%S', time.localtime(h['since']))}"
        except (OSError, ValueError, KeyError):
            return "another process"

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


# -- running nodes ---------------------------------------------------------------------------
def _safe_name(name: str) -> str:
    return name.replace("/", "_")


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


def _move_aside(session: Session, node, where: str, stamp: str) -> None:
    """Move the node's existing outputs under .nodefile/<where>/ so a recipe
    starts from a clean slate and nothing is lost."""
    base = os.path.join(session.dir, where, node.name.replace("/", "_"), stamp)
    for p in node.output_paths:
        src = os.path.join(session.project.root, p.rstrip("/"))
        if not os.path.lexists(src):
            continue
        dst = os.path.join(base, p.rstrip("/"))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if os.path.lexists(dst):
            shutil.rmtree(dst) if os.path.isdir(dst) and not os.path.islink(dst) else os.remove(dst)
        try:
            os.replace(src, dst)
        except OSError:
            shutil.move(src, dst)
    session.hasher.invalidate(node.output_paths)


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
        self.uploads = None  # a one-thread pool for cache puts and pushes
        # watch mode: paths reported changed while recipes run (set from another thread)
        import threading
        self._changed_lock = threading.Lock()
        self._changed: dict[str, int] = {}  # path -> sequence number of its latest change
        self._seq = 0
        self._decided_at: dict[str, int] = {}  # node -> sequence number when its attempt was prepared
        self.requeued: list[str] = []
        self._made: set[str] = set()
        self.choices: dict = {}
        self.queued_work = 0.0
        self.limits: dict = {}
        self._started: set[str] = set()

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
        real = {r.label: r.script for r in node.recipes if r.script and r.label}  # template scripts
        paths = {k: real.get(k.split(":", 1)[1], k.split(":", 1)[1])
                 for k in parts if k.startswith(("input:", "script:", "import:"))}
        self.s.hasher.invalidate(list(paths.values()))
        return [p for k, p in paths.items() if self.s.hasher.hash(p) != parts[k]]

    # recipes in the order to try them (one function: learning plugs in here)
    def recipe_order(self, node, key: str, parts: dict) -> list:
        choice = self.s.choose(node, key, parts, self.o, self.negative)
        self.choices[node.name] = choice
        if choice.estimates:
            self.rep.expected[node.name] = choice.estimates[0].duration
            self.queued_work += choice.expected_duration
        return list(choice.recipes)

    def observe(self, name: str, spec, ok: bool, duration: float, size: int | None, script_hash) -> None:
        try:
            self.s.learner.observe(name, spec.recipe, ok, duration, script_hash=script_hash, size=size)
        except Exception as e:  # learning must never break a build
            self.rep.warn(f"could not record statistics for {name}: {e}")

    def eta(self, running, now: float) -> float | None:
        left = 0.0
        for spec in running:
            exp = self.rep.expected.get(spec.node)
            if exp is not None:
                left = max(left, exp - (now - self.rep.started_at.get(spec.node, now)))
        jobs = max(1.0, self.limits.get("cores", 1.0))
        return max(left, 0.0) + self.queued_work / jobs

    def decide(self, name: str):
        node = self.s.project.nodes[name]
        if node.is_alias:
            return NodeResult(name, Outcome.UP_TO_DATE)
        verdict, parts = self.s.verdict(name, forced=self.o.always_make)
        missing = [k[6:] for k, v in parts.items() if k.startswith("input:") and v is None]
        missing += [k[7:] for k, v in parts.items() if k.startswith("script:") and v is None]
        if missing:
            return NodeResult(name, Outcome.FAILED, message=f"input missing: {', '.join(missing)}")
        if not verdict.stale:
            self.summary.up_to_date.append(name)
            return NodeResult(name, Outcome.UP_TO_DATE)
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
        except OSError as e:
            self.summary.failed.append(name)
            where = f" ({e.filename})" if getattr(e, "filename", None) else ""
            return NodeResult(name, Outcome.FAILED, message=f"cannot prepare its outputs: {e.strerror or e}{where}")

    def _prepare(self, name: str, idx: int):
        from . import recipes
        node = self.s.project.nodes[name]
        with self._changed_lock:
            self._decided_at[name] = self._seq
        recipe = self.order[name][idx]
        n = self.attempt_no.get(name, 0) + 1
        self.attempt_no[name] = n
        _move_aside(self.s, node, "previous", "last")
        for p in node.output_paths:
            self.makedirs(os.path.dirname(os.path.join(self.s.project.root, p.rstrip("/"))))
        log = os.path.join(self.s.dir, "logs", f"{self.build_id:05d}",
                           f"{_safe_name(name)}.{n}.{recipe.name.replace('#', '_')}.log")
        if recipe.kind in TRANSFERS:
            return self._transfer_spec(node, recipe, n, log, idx)
        return recipes.prepare(self.s.project, node, recipe, n, log, self.jobdir, index=idx)

    def _transfer_spec(self, node, recipe, n, log, idx):
        from .recipes import Spec
        from .stores import StoreError
        key = self.keys[node.name][0]
        store = self.s.store(recipe.target) if recipe.kind == "fetch" else self.s.cache
        root, tmpdir = self.s.project.root, self.tmpdir

        def transfer():
            m = store.manifest(key)
            if m is None:
                raise StoreError(f"not in store '{store.name}'", "unavailable")
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
                fin.exit_code, fin.error, fin.failure = 1, "restored outputs changed while being written", "transient"
        os.makedirs(os.path.dirname(spec.log), exist_ok=True)
        with open(spec.log, "a") as f:
            f.write((f"{spec.recipe.kind} from {store}: " + ("ok" if fin.exit_code == 0 else fin.error)) + "\n")
        self.s.state.add_attempt(build_id=self.build_id, node=name, recipe=spec.recipe.name, kind=spec.recipe.kind,
                                 attempt=spec.attempt, start_ns=time.time_ns() - int(fin.duration * 1e9),
                                 duration=fin.duration, outcome="ok" if fin.exit_code == 0 else "failed",
                                 failure=fin.failure, bytes=size, log=os.path.relpath(spec.log, self.s.project.root),
                                 exit_code=fin.exit_code, message=fin.error or None, script_hash=store)
        self.observe(name, spec, fin.exit_code == 0, fin.duration, size or None, None)
        if fin.exit_code == 0:
            self.s.state.put_record(name, key, parts, outputs, spec.recipe.name, self.build_id)
            self.summary.built.append(name)
            self.summary.durations[name] = fin.duration
            if spec.recipe.kind == "fetch":
                self._after_rebuild(node, key, outputs, stores=False)  # keep a local copy
            return NodeResult(name, Outcome.OK, spec.recipe.name, fin.duration, log=spec.log)
        if fin.failure == "transient" and "unreachable" in (fin.error or ""):
            self.negative.add((store, "*"))  # down: not asked again in this build
        if fin.failure == "unavailable":
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
        """Put fresh outputs in the local cache and push them to `push = true` stores,
        in a background thread; a failed push is a warning, never a failed build."""
        stores = [st for st in self.s.project.stores.values() if st.push] if stores else []
        for st in [st for st in stores if (st.name, "*") in self.negative]:
            self.rep.warn(f"{node.name}: could not push to store '{st.name}': it was unreachable earlier in this build")
        stores = [st for st in stores if (st.name, "*") not in self.negative]
        if not (self.s.cache or stores):
            return
        from .stores import describe_outputs
        try:
            entries = describe_outputs(self.s.project.root, node.output_paths, self.s.hasher)
        except OSError as e:
            self.rep.warn(f"{node.name}: cannot describe outputs for the cache: {e}")
            return
        if self.uploads is None:
            from concurrent.futures import ThreadPoolExecutor
            self.uploads = ThreadPoolExecutor(1, thread_name_prefix="nodefile-upload")
        targets = ([self.s.cache] if self.s.cache else []) + [self.s.store(st.name) for st in stores]
        root, rep = self.s.project.root, self.rep

        def upload():
            for t in targets:
                try:
                    t.put(node.name, key, root, entries)
                except Exception as e:  # any backend error: warn, keep building
                    rep.warn(f"{node.name}: could not push to store '{t.name}': {str(e).splitlines()[0][:200]}")

        self.uploads.submit(upload)

    def wait_uploads(self) -> None:
        if self.uploads is not None:
            self.uploads.shutdown(wait=True)

    def finished(self, name: str, spec, fin):
        if spec.func is not None:
            return self._finished_transfer(name, spec, fin)
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
            problem = f"exited with status {fin.exit_code}"
        else:
            problem = self._check_outputs(node)
        key, parts = self.keys[name]
        changed = self._inputs_changed(name, parts)
        if changed or fin.cancelled:
            # never record a result computed from inputs that changed while it ran
            self.rep.info(f"     {name}: {', '.join(changed) or 'an input'} changed while it ran; running it again")
            self.s.state.add_attempt(build_id=self.build_id, node=name, recipe=spec.recipe.name,
                                     kind=spec.recipe.kind, attempt=spec.attempt,
                                     start_ns=time.time_ns() - int(fin.duration * 1e9), duration=fin.duration,
                                     outcome="cancelled", failure="transient",
                                     log=os.path.relpath(spec.log, self.s.project.root), exit_code=fin.exit_code,
                                     message="inputs changed while it ran")
            _move_aside(self.s, node, "failed", f"{self.build_id:05d}-{spec.attempt}")
            self.requeued.append(name)
            return self.decide(name)
        outcome = "ok" if not problem else ("cancelled" if fin.cancelled else "failed")
        failure = None if not problem else ("unavailable" if fin.error else
                                            "transient" if fin.timed_out else "recipe error")
        size = 0
        outputs = {}
        if not problem:
            self.s.hasher.invalidate(node.output_paths)
            outputs = {p: self.s.hasher.hash(p) for p in node.output_paths}
            size = sum(_size(os.path.join(self.s.project.root, p)) for p in node.output_paths)
        script_hash = parts.get(f"script:{spec.recipe.script}") if spec.recipe.script else None
        self.s.state.add_attempt(build_id=self.build_id, node=name, recipe=spec.recipe.name, kind=spec.recipe.kind,
                                 attempt=spec.attempt, start_ns=time.time_ns() - int(fin.duration * 1e9),
                                 duration=fin.duration, outcome=outcome, failure=failure, bytes=size,
                                 log=os.path.relpath(spec.log, self.s.project.root), exit_code=fin.exit_code,
                                 message=problem or None, script_hash=script_hash)
        self.observe(name, spec, not problem, fin.duration, size or None, script_hash)
        if not problem:
            self.s.state.put_record(name, key, parts, outputs, spec.recipe.name, self.build_id)
            self.summary.built.append(name)
            self.summary.durations[name] = fin.duration
            self._after_rebuild(node, key, outputs)
            return NodeResult(name, Outcome.OK, spec.recipe.name, fin.duration, log=spec.log)
        _move_aside(self.s, node, "failed", f"{self.build_id:05d}-{spec.attempt}")
        what = f"{spec.recipe.kind} {spec.recipe.target}" if spec.recipe.kind != "shell" else "shell recipe"
        rel_log = os.path.relpath(spec.log)
        detail = f"{what} {problem}\n{_tail(spec.log)}\n  log: {rel_log}"
        if fin.cancelled:
            return NodeResult(name, Outcome.CANCELLED, spec.recipe.name, fin.duration, "cancelled", spec.log)
        retries = max(spec.recipe.retries, self.o.retries)
        used = self.tries.get((name, idx), 0)
        if used < retries:
            self.tries[(name, idx)] = used + 1
            self.rep.warn(f"{name}: {what} {problem}; retrying ({used + 1}/{retries})")
            return self._next_spec(name, idx)
        if idx + 1 < len(self.order[name]):
            self.rep.warn(f"{name}: {what} {problem}; trying the next recipe (log: {rel_log})")
        return self._fallback(name, spec, detail, what, fin) if idx + 1 < len(self.order[name]) else \
            self._fail(name, spec, detail, fin)

    def _fail(self, name, spec, detail, fin):
        self.summary.failed.append(name)
        return NodeResult(name, Outcome.FAILED, spec.recipe.name, fin.duration, detail, spec.log)

    def _check_outputs(self, node) -> str:
        bad = []
        for p in node.output_paths:
            kind = self.s.hasher.kind(p)
            if kind is None:
                bad.append(f"did not write declared output '{p}'")
            elif p.endswith("/") and kind != "dir":
                bad.append(f"declared directory output '{p}' is a file")
            elif not p.endswith("/") and kind == "dir":
                bad.append(f"declared file output '{p}' is a directory (declare it as '{p}/')")
        return "; ".join(bad)

    def started(self, spec) -> None:
        if spec.node not in self._started:
            self._started.add(spec.node)
            choice = self.choices.get(spec.node)
            if choice is not None:
                self.queued_work = max(0.0, self.queued_work - choice.expected_duration)
        self.rep.started(spec)

    def done(self, result: NodeResult) -> None:
        if result.outcome is Outcome.SKIPPED:
            self.summary.skipped.append(result.node)
        elif result.outcome is Outcome.FAILED and result.node not in self.summary.failed:
            self.summary.failed.append(result.node)
        self.rep.done(result)

    def tick(self, running, done, total) -> None:
        self.rep.tick(running, done, total)


TRANSFERS = ("load", "fetch")
LOAD = Recipe(kind="load", target="cache", name="load")


def candidates(session: Session, node, key: str, options: Options, negative: set, probe: bool = False) -> list:
    """The recipes to try for a stale node, in order: the local cache when it holds
    the key, then the Nodefile's recipes (fetches whose store is known not to hold
    the key are left out). With probe, a fetch is kept only if its store has the key."""
    out = []
    always = options.always_make
    if session.cache is not None and not always and key:
        try:
            if session.cache.manifest(key) is not None:
                out.append(LOAD)
        except Exception:
            pass
    for r in node.recipes:
        if r.kind == "fetch":
            if always or (r.target, key) in negative or (r.target, "*") in negative:
                continue
            if probe:
                try:
                    if session.store(r.target).manifest(key) is None:
                        continue
                except Exception:
                    continue
        out.append(r)
    if options.transfers_only:
        out = [r for r in out if r.kind in TRANSFERS]
    if options.recipe_kind:
        k = options.recipe_kind
        out = [r for r in out if r.kind == k or r.name == k]
    return out


def _size(path: str) -> int:
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def limits_for(options: Options, project: Project) -> dict:
    jobs = options.jobs or project.jobs or os.cpu_count() or 1
    limits = {"cores": float(jobs), "transfers": float(max(4, jobs))}
    for k, v in options.resources.items():
        limits[k] = float(v)
    return limits


def check_resources(project: Project, names, limits: dict) -> None:
    problems = []
    for n in names:
        for r in project.nodes[n].recipes:
            for k, v in r.resources:
                if k == "cores":
                    continue  # more cores than -j allows runs alone rather than never
                if k not in limits and k != "mem_gb":
                    problems.append(f"node '{n}' recipe '{r.name}' asks for {k} = {v:g}, but no {k} limit "
                                    f"is given (use --resources {k}=N)")
                elif k in limits and v > limits[k]:
                    problems.append(f"node '{n}' recipe '{r.name}' asks for {k} = {v:g}, more than the "
                                    f"limit {limits[k]:g}")
    if problems:
        raise ConfigError("\n".join(problems))


def build(project: Project, targets, options: Options, reporter) -> Summary:
    from .scheduler import Scheduler
    t0 = time.monotonic()
    names = resolve_targets(project, targets)
    order = graph.closure(project.nodes, names)
    limits = limits_for(options, project)
    check_resources(project, order, limits)
    if options.dry_run:
        return dry_run(project, order, options, reporter, t0)
    session = Session(project)
    lock = ProjectLock(session.dir)
    here = os.getcwd()
    try:
        os.chdir(project.root)  # recipes run here (posix_spawn cannot chdir); restored below
        lock.acquire(options.wait_for_lock, on_wait=reporter.info)
        build_id = session.state.start_build(names)
        shutil.rmtree(os.path.join(session.dir, "tmp"), ignore_errors=True)  # partial fetches of a killed build
        runner = Runner(session, options, reporter, build_id)
        from .executors import LocalExecutor
        executor = LocalExecutor()
        if options.on_runner is not None:
            options.on_runner(runner, executor)
        runner.limits = limits
        reporter.eta = runner.eta
        levels: dict = {}

        def priority(n):
            if not levels:  # computed on first use: a no-op build never reads statistics
                def weight(m):
                    node = project.nodes[m]
                    return 0.0 if node.is_alias else session.learner.expected_duration(m, node.recipes)
                levels.update(graph.bottom_levels(order, project.nodes, weight))
            return (-project.nodes[n].priority, -levels[n])

        sched = Scheduler(order, {n: project.nodes[n].deps for n in order}, priority, limits, executor, runner,
                          keep_going=options.keep_going)
        status = 0
        old = signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            sched.run()
        except KeyboardInterrupt:
            runner.summary.interrupted = True
            # a second Ctrl-C must not cut the clean-up short (recipes left running)
            prev_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                executor.cancel_all()
            finally:
                signal.signal(signal.SIGINT, prev_int)
            _record_cancelled(session, runner, executor)
            status = 130
        finally:
            signal.signal(signal.SIGTERM, old)
        runner.wait_uploads()
        summary = runner.summary
        summary.up_to_date = [n for n in summary.up_to_date if n not in summary.built]
        if not summary.interrupted:
            ran = set(summary.built) | set(summary.up_to_date) | set(summary.failed) | set(summary.skipped)
            summary.skipped += [n for n in order if n not in ran and not project.nodes[n].is_alias]
            status = 1 if summary.failed or summary.skipped else 0
        session.state.end_build(build_id, status)
        if options.noop_record and status == 0 and not summary.built:
            _record_noop(session, order, options.noop_record, len(summary.up_to_date))
        summary.elapsed = time.monotonic() - t0
        return summary
    finally:
        session.close()
        lock.release()
        os.chdir(here)


def _record_noop(session: Session, order, argv_cwd, count: int) -> None:
    from .fastpath import write_record
    project = session.project
    paths = set(session.hasher.seen)
    paths.update(os.path.relpath(p, project.root) for p in project.sources)
    for n in order:
        node = project.nodes[n]
        for e in node.inputs:
            if e.kind == "glob":  # a new file matching the glob changes its folder
                pat = e.source
                paths.add(os.path.dirname(pat.split("*")[0].split("?")[0].split("[")[0]) or ".")
        for s in node.script_inputs:
            paths.add(os.path.dirname(s) or ".")  # a new module there could change import resolution
    write_record(project.root, argv_cwd[0], argv_cwd[1], paths, count)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _record_cancelled(session, runner, executor) -> None:
    """Nodes that were running when the build was interrupted: move their partial
    outputs aside; their records stay marked incomplete."""
    for name in list(runner.keys):
        if name in runner.summary.built or name in runner.summary.failed:
            continue
        node = session.project.nodes[name]
        _move_aside(session, node, "failed", f"{runner.build_id:05d}-interrupted")
        session.state.add_attempt(build_id=runner.build_id, node=name, recipe=None, kind=None,
                                  attempt=runner.attempt_no.get(name), start_ns=time.time_ns(), duration=0.0,
                                  outcome="cancelled", failure="transient", message="interrupted")


def dry_run(project: Project, order, options: Options, reporter, t0) -> Summary:
    session = Session(project, readonly=True)
    try:
        plan = session.plan(order, forced=options.always_make)
        summary = Summary()
        for n in order:
            v = plan[n]
            node = project.nodes[n]
            if node.is_alias:
                continue
            if v.stale:
                via = session.source_of(n, v.key, options)
                reporter.print(f"would run  {n}  ({via}): {'; '.join(str(r) for r in v.reasons)}")
                summary.built.append(n)
            else:
                summary.up_to_date.append(n)
        summary.elapsed = time.monotonic() - t0
        if not summary.built:
            reporter.print(f"nothing to do: {len(summary.up_to_date)} node(s) up to date")
        else:
            reporter.print(f"{len(summary.built)} node(s) would run, {len(summary.up_to_date)} up to date")
        return summary
    finally:
        session.close()


def touch(project: Project, targets) -> list[str]:
    """Accept the current outputs of the targets as up to date for their current key."""
    names = resolve_targets(project, targets)
    session = Session(project)
    lock = ProjectLock(session.dir)
    done = []
    try:
        lock.acquire(True)
        for n in graph.closure(project.nodes, names):
            node = project.nodes[n]
            if node.is_alias:
                continue
            outs = session.output_hashes(n)
            missing = [p for p, h in outs.items() if h is None]
            if missing:
                raise ConfigError(f"cannot touch '{n}': output missing: {', '.join(missing)}")
            parts = session.parts(n)
            session.state.put_record(n, hashing.key_of(parts), parts, outs, "touch", None)
            done.append(n)
        return done
    finally:
        session.close()
        lock.release()
