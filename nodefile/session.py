"""A session on a project: the project, its state store, a hasher, the code
closure, the learner, the cache and stores; the options of a build; targets;
the project lock; and the candidate recipes of a stale node. Shared by build,
status, explain, touch and watch.
"""
from __future__ import annotations

import fcntl
import json
import os
import time
from .records import field, record

from . import hashing, stale
from .errors import LockError, UnknownTargetError
from .model import Project, Reason, ReasonKind, Recipe, Status, Verdict
from .plan import Plan
from .state import State


@record
class Options:
    jobs: int | None = None
    keep_going: bool = False
    dry_run: bool = False
    always_make: bool = False
    recipe_kind: str | None = None
    retries: int = 0
    executor: str | None = None  # local | dask; None: the Nodefile's [executor], else local
    dask_address: str | None = None  # --dask ADDRESS
    cold: bool = False  # --cold: no warm workers for this run
    workers: object = None  # warm workers shared by successive builds (node watch); None: the build's own
    resources: dict = field(default_factory=dict)
    wait_for_lock: bool = True
    transfers_only: bool = False  # node pull: restore from the cache or stores, never rebuild
    probe: bool = True  # bounded probes of recipes never measured (--no-probe: off for one run)
    on_runner: object = None  # called with the Runner once a build starts (watch mode uses it)
    noop: object = None  # fastpath.Pending: the command line to record as a no-op, and what try_noop saw
    force: frozenset = frozenset()  # node build --force: these nodes' recipes run (not a restore)


# -- targets ----------------------------------------------------------------------------
def resolve_targets(project: Project, targets, cwd: str | None = None) -> list[str]:
    """Node names for targets given as node names or file paths."""
    from .config.schema import did_you_mean, norm
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
        under = [] if owner is not None else sorted(
            {n for p, n in project.producers.items() if p.startswith(rel.rstrip("/") + "/")} if rel else
            set(project.producers.values()))
        if owner is not None:
            out.append(owner)
        elif under:
            under = set(under)
            out.extend(n for n in project.nodes if n in under)  # a folder: every node writing into it
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

    def __init__(self, project: Project, readonly: bool = False, lazy: bool = False, recover: bool = False):
        self.project = project
        self.lazy = lazy  # a few nodes of a big project: read their records and stamps one by one
        # recover (a build): a damaged state database is moved aside and started afresh
        self.state = State(project.root, readonly=readonly, lazy=lazy, recover=recover)
        self.hasher = hashing.Hasher(project.root, self.state)
        self.dir = self.state.dir
        self._records = None
        self._stores: dict = {}
        self.on_store_wait = None  # callable(text): a line while a transfer waits on a remote store
        self._cache = None
        self._closure = None
        self._learner = None
        self._cold_langs: frozenset | None = None  # languages whose warm worker could not start
        # during a build: its warm workers (workers.pool.Workers; None: every recipe runs cold)
        self.building, self.workers = False, None

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
            self._learner = Learner(self.state.db, lazy=self.lazy)
        return self._learner

    def flush_learning(self) -> None:
        """Write what the learner observed since its last flush (nothing if it never ran)."""
        if self._learner is not None:
            self._learner.flush()

    def end_learning(self) -> None:
        """At a build's end: the learner's medians' lists, for the next lazy build."""
        if self._learner is not None:
            self._learner.end_build()

    def choose(self, node, key: str, parts: dict | None, options, negative=(), probe: bool = False):
        """The learned order of a stale node's candidate recipes (a learn.Choice)."""
        cands = candidates(self, node, key, options, set(negative), probe=probe)
        parts = parts or {}
        return self.learner.choose(node.name, cands, force_kind=options.recipe_kind, probes=options.probe,
                                   script_of=lambda r: parts.get(f"script:{r.label or r.script}") if r.script else None,
                                   warm_of=self.warm_of(options, node.name))

    def warm_of(self, options, node: str = ""):
        """Will a recipe of `node` run in a warm worker? (The learner estimates it from its
        warm runs then, else from its cold ones.) Not with --cold or `warm = false`, nor in
        a language whose worker could not start in the last build (`status -v`). During a
        build, as its workers will run it now (`Workers.runs_warm`: the first recipe of a
        language in a small build runs cold); without workers (Dask), never."""
        if options.cold or not self.project.warm:
            return None
        from .recipes import warm_language
        if self.building:
            pool = self.workers
            if pool is None:
                return None

            def runs_warm(r) -> bool:
                lang = warm_language(self.project, r)
                return lang is not None and pool.runs_warm(lang, node, r.name)
            return runs_warm
        if self._cold_langs is None:
            from .workers.pool import read_state
            self._cold_langs = frozenset(read_state(self.dir).get("reasons", {})) | {None}
        return lambda r: warm_language(self.project, r) not in self._cold_langs

    def store(self, name: str):
        if name not in self._stores:
            from .stores import open_store
            st = self._stores[name] = open_store(self.project.stores[name])
            if hasattr(st.fs, "on_wait"):
                st.fs.on_wait = self._store_wait
        return self._stores[name]

    def _store_wait(self, text: str) -> None:
        if self.on_store_wait is not None:
            self.on_store_wait(text)

    def store_problems(self) -> list[str]:
        """What the stores asked so far rejected or failed on, each once, in order."""
        return list(dict.fromkeys(p for st in self._stores.values() for p in st.problems))

    def source_of(self, name: str, key: str | None, options: Options | None = None) -> tuple[str, object]:
        """Where a stale node would come from (cache, store NAME, or a rebuild recipe)
        and the learner's Estimate of that recipe (its `.shown` is what users see:
        "1.2s", "≥1.5s" after a stopped probe, "unknown" when never measured)."""
        node = self.project.nodes[name]
        choice = self.choose(node, key or "", None, options or Options(), probe=True)
        if not choice.recipes:
            return "nothing can make it", None
        r, expected = choice.recipes[0], choice.estimates[0]
        if r.kind == "load":
            return "cache", expected
        if r.kind == "fetch":
            return f"store {r.target}", expected
        return f"rebuild ({r.name})", expected

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
        return hashing.key_parts(self.project.nodes[name], self.hasher, closure=self._closure_of, code=self._code_of)

    def _closure_of(self, node, recipe) -> list[str]:
        return self.closure(node, recipe)  # made when a script first asks (shell recipes never do)

    def _code_of(self, node, recipe) -> dict:
        return self.closure.code(node, recipe)  # a function recipe's code, per function

    def output_hashes(self, name: str) -> dict:
        return {p: self.hasher.hash(p) for p in self.project.nodes[name].output_paths}

    def verdict(self, name: str, forced: bool | str = False, building: bool = False) -> tuple[Verdict, dict]:
        """building: for a build, which runs a node never built whatever its outputs
        are, so they are not looked at (its verdict says STALE, never MISSING).
        forced: why the node runs whatever its record says (-B, --force); a node with
        `always = true` is always forced."""
        if not forced and self.project.nodes[name].always:
            forced = "always = true"
        parts = self.parts(name)
        key = hashing.key_of(parts)
        rec = self.state.record(name) if self.lazy else self.records().get(name)
        if building and rec is None:
            return Verdict(name, Status.STALE, (Reason(ReasonKind.NEVER_BUILT),), key), parts
        return stale.check(name, parts, key, rec, self.output_hashes(name), forced), parts

    def plan(self, names: list[str], forced: bool = False, force=frozenset()) -> dict[str, Verdict]:
        """Verdicts for every node in `names` (topological), as a dry run sees them
        (Plan.preview: a node whose input will be rebuilt is stale because of it).
        force: nodes named to `--force`."""
        nodes = self.project.nodes

        def verdict_of(n: str) -> Verdict | None:
            if nodes[n].is_alias:
                return None
            return self.verdict(n, "--force" if n in force else forced)[0]
        return Plan(names, {n: nodes[n].deps for n in names}).preview(verdict_of)


# -- the lock -------------------------------------------------------------------------
class ProjectLock:
    """One build per project at a time; a second one waits and says who holds it."""

    def __init__(self, state_dir: str):
        from . import statedir
        statedir.make(state_dir)
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
        data = json.dumps({"pid": os.getpid(), "since": time.time(), "argv": " ".join(os.sys.argv)}).encode()
        os.pwrite(self.fd, data, 0)  # over the last holder's, then cut to length: never empty
        os.ftruncate(self.fd, len(data))

    def holder(self) -> str:
        """Who holds the lock, from what it wrote there. A holder that has just taken it
        may not have written yet (or be half-way): read again for a moment."""
        for _ in range(20):
            try:
                with open(self.path) as f:
                    h = json.load(f)
                since = time.strftime('%H:%M:%S', time.localtime(h['since']))
                return f"pid {h['pid']}, `{h.get('argv', '?')}`, since {since}"
            except (OSError, ValueError, KeyError, TypeError):
                time.sleep(0.01)
        return "another process"

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


# -- running nodes ---------------------------------------------------------------------------

TRANSFERS = ("load", "fetch")
LOAD = Recipe(kind="load", target="cache", name="load")


def implicit_fetches(session: Session, node, key: str, negative: set, always: bool) -> list:
    """`node pull`: a fetch from every store the node declares no fetch recipe for, in
    the Nodefile's order (as `dvc pull` restores by key what `dvc push` sent)."""
    if always or not key:
        return []
    declared = {r.target for r in node.recipes if r.kind == "fetch"}
    return [Recipe(kind="fetch", target=s, name=f"fetch:{s}") for s in session.project.stores
            if s not in declared and (s, key) not in negative and (s, "*") not in negative]


def candidates(session: Session, node, key: str, options: Options, negative: set, probe: bool = False) -> list:
    """The recipes to try for a stale node, in order: the local cache when it holds
    the key, then the Nodefile's recipes (fetches whose store is known not to hold
    the key are left out). With probe, a fetch is kept only if its store has the key."""
    out = []
    always = options.always_make or node.always or node.name in options.force  # run the recipe itself
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
        out = [r for r in out if r.kind in TRANSFERS] + implicit_fetches(session, node, key, negative, always)
    if options.recipe_kind:
        k = options.recipe_kind
        out = [r for r in out if r.kind == k or r.name == k]
    return out
