"""One function per CLI command: args + reporter -> exit status. These build and
inspect the project; `history.py` has log, graph and report, `upkeep.py` push, pull
and gc. The helpers the three share (the project of a command line, --json
documents) are here."""
from __future__ import annotations

import json
import os
import time

from . import graph
from .engine import Options, Session, build, resolve_targets, touch
from .errors import ConfigError, ExitCode, UnknownTargetError


def load_project(*args, freeze: bool = True, **kwargs):
    """config.load_project for a one-shot command: what exists after the load is
    frozen for the garbage collector (cache.gc_paused); node watch passes freeze=False."""
    from .config import load_project as load  # the Nodefile parser: not needed by a small rebuild
    return load(*args, freeze=freeze, **kwargs)


def project_of(args, check_sources: bool = True, freeze: bool = True, requests=None):
    """The project a command line names (-f, --set; its targets, or `requests`, as
    requested pattern instances)."""
    from .cli import parse_set
    overrides = parse_set(getattr(args, "set", []) or [])
    if requests is None:
        requests = tuple(getattr(args, "targets", None) or ())
    return load_project(args.file, overrides, check_sources=check_sources, requests=requests, freeze=freeze)


JSON_SCHEMA = 1  # the version of every --json document (docs/nodefile-reference.md, JSON output)


def emit(command: str, doc: dict) -> None:
    """Print one --json document: {"schema": 1, "command": ..., ...} on stdout."""
    import sys
    sys.stdout.write(json.dumps({"schema": JSON_SCHEMA, "command": command, **doc}, indent=1) + "\n")
    sys.stdout.flush()


def reason_doc(r) -> dict:
    return {"kind": r.kind.name.lower(), "subject": r.subject, "old": r.old, "new": r.new, "text": str(r)}


def cmd_build(args, rep) -> int:
    from .cli import parse_resources
    opts = Options(jobs=args.jobs, keep_going=args.keep_going, dry_run=args.dry_run,
                   always_make=args.always_make, recipe_kind=args.recipe, retries=args.retries,
                   executor=args.executor, dask_address=getattr(args, "dask", None),
                   resources=parse_resources(args.resources),
                   wait_for_lock=not args.no_wait, cold=getattr(args, "cold", False),
                   probe=not getattr(args, "no_probe", False),
                   noop=getattr(args, "noop", None))
    if opts.jobs is not None and opts.jobs < 1:
        raise ConfigError("-j must be at least 1")
    opts.dry_run = args.dry_run or args.check  # --check never runs anything
    try:
        summary = _build(args, opts, rep)
    except Exception as e:  # the state database found malformed mid-build: once afresh
        from .errors import StateDamaged
        from .state import translate_error
        if not isinstance(translate_error(e), StateDamaged):
            raise
        if opts.noop is not None:
            opts.noop = opts.noop.afresh()  # its stats predate the state set aside: stat afresh
        summary = _build(args, opts, rep, incremental=False)
    if args.json:
        emit("build", {"dry_run": opts.dry_run, "ok": summary.ok, "interrupted": summary.interrupted,
                       "elapsed_seconds": round(summary.elapsed, 3),
                       "would_run": list(summary.built) if opts.dry_run else [],
                       "built": [] if opts.dry_run else list(summary.built), "up_to_date": list(summary.up_to_date),
                       "failed": list(summary.failed), "skipped": list(summary.skipped),
                       "durations": {n: round(d, 3) for n, d in summary.durations.items()}})
    if opts.dry_run:
        return ExitCode.FAILED if args.check and summary.built else ExitCode.OK
    rep.summary(summary)
    if summary.interrupted:
        return ExitCode.INTERRUPTED
    return ExitCode.OK if summary.ok else ExitCode.FAILED


def _build(args, opts, rep, incremental: bool = True):
    from .engine import build_incremental
    summary = None if args.force or not incremental else build_incremental(opts, rep)  # a few nodes changed
    if summary is None:
        project = project_of(args)
        if args.force:
            from .engine import expand_aliases
            opts.force = frozenset(expand_aliases(project, resolve_targets(project, args.targets)))
        summary = build(project, args.targets, opts, rep)
    return summary


def cmd_check(args, rep) -> int:
    from .cli import parse_set
    try:
        project = load_project(args.file, parse_set(args.set or []), use_cache=False, strict=True)
    except ConfigError as e:
        if args.json:
            emit("check", {"ok": False, "file": None, "nodes": None,
                           "problems": [{"message": p.message, "file": p.file or None, "line": p.line,
                                         "key": p.key or None} for p in e.problems]})
        raise
    if args.json:
        emit("check", {"ok": True, "file": os.path.relpath(project.file), "nodes": len(project.nodes), "problems": []})
        return ExitCode.OK
    rep.print(f"{os.path.relpath(project.file)}: ok ({len(project.nodes)} nodes)")
    return ExitCode.OK


def names_of(project, targets) -> list[str]:
    if targets:
        return graph.closure(project.nodes, resolve_targets(project, targets))
    return graph.closure(project.nodes, list(project.nodes))


def cmd_status(args, rep) -> int:
    project = project_of(args)
    names = graph.closure(project.nodes, resolve_targets(project, args.targets))  # default: what build builds
    from .model import ReasonKind
    session = Session(project, readonly=True)
    session.on_store_wait = rep.waiting
    rows = []
    blocked = graph.blocked(project, names)
    try:
        plan = session.plan(names)
        sources: dict[str, tuple] = {}  # node -> (where from, the learner's Estimate or None)
        for n in names:
            node = project.nodes[n]
            if not plan[n].stale or node.is_alias or n in blocked:
                continue
            if any(r.kind is ReasonKind.UPSTREAM for r in plan[n].reasons):
                # its key is known only once its inputs are rebuilt: no store is asked
                est = session.choose(node, "", None, Options()).estimates
                sources[n] = ("after its inputs", est[0] if est else None)
            else:
                sources[n] = session.source_of(n, plan[n].key)
        for problem in session.store_problems():
            rep.warn(problem)
    finally:
        session.close()
    for n in names:
        v = plan[n]
        node = project.nodes[n]
        where, expected = sources.get(n, ("", None))
        reason = "; ".join(str(r) for r in v.reasons[:2]) + (" …" if len(v.reasons) > 2 else "")
        status = v.status.value if not node.is_alias else ("alias" if not v.stale else "stale")
        if n in blocked:
            status, reason = "blocked", blocked[n]
        rows.append((n, status, where, expected.shown if expected is not None else "", reason))
    stale = sum(1 for n in names if plan[n].stale and not project.nodes[n].is_alias and n not in blocked)
    if args.json:
        emit("status", {"nodes": [{"name": n, "status": rows[i][1], "stale": plan[n].stale,
                                   "from": sources.get(n, (None,))[0],
                                   "expected_seconds": _seconds(sources.get(n, (None, None))[1]),
                                   "reasons": ([{"kind": "blocked", "text": blocked[n]}] if n in blocked else [])
                                   + [reason_doc(r) for r in plan[n].reasons]}
                                  for i, n in enumerate(names)],
                        "stale": stale, "total": sum(1 for n in names if not project.nodes[n].is_alias)})
        return ExitCode.FAILED if args.check and stale else ExitCode.OK
    head = ("node", "status", "from", "expected", "reason")
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(4)]
    for r in [head] + rows:
        rep.print(("  ".join(f"{r[i]:<{widths[i]}}" for i in range(4)) + f"  {r[4]}").rstrip())
    rep.print(f"{stale} of {sum(1 for n in names if not project.nodes[n].is_alias)} node(s) stale"
              + (f"; {len(blocked)} blocked by a missing source" if blocked else ""))
    if getattr(args, "verbose", 0):
        for line in cold_reasons(project, session.dir):
            rep.print(line)
    return ExitCode.FAILED if args.check and stale else ExitCode.OK


def rounded(x):
    return None if x is None else round(x, 3)


def _seconds(est):
    """An estimate's seconds for --json: null when never measured (a guess), the
    lower bound after a stopped probe."""
    return None if est is None or not est.known else round(est.duration, 3)


def cold_reasons(project, state_dir: str) -> list[str]:
    """One line per language whose recipes start cold, and why (`status -v`)."""
    from .workers.pool import read_state
    if not project.warm:
        return ["python and R recipes run cold: [project] warm = false"]
    state = read_state(state_dir)
    name = {"r": "R", "python": "python"}
    lines = [f"{name.get(lang, lang)} recipes run cold: {why}" for lang, why in sorted(state.get("reasons", {}).items())]
    for lang, items in sorted(state.get("skipped", {}).items()):
        lines += [f"the {name.get(lang, lang)} worker could not preload {what}: {why}" for what, why in items]
    return lines


def cmd_explain(args, rep) -> int:
    project = project_of(args)
    if not args.targets:
        raise UnknownTargetError("explain needs a TARGET")
    targets = resolve_targets(project, args.targets)
    names = graph.closure(project.nodes, targets)
    session = Session(project, readonly=True)
    docs = []
    session.on_store_wait = rep.waiting
    try:
        plan = session.plan(names)
        for t in targets:
            v = plan[t]
            node = project.nodes[t]
            rec = session.records().get(t)
            doc = {"name": t, "status": v.status.value, "stale": v.stale, "key": v.key,
                   "recorded_key": rec.key if rec else None, "reasons": [reason_doc(r) for r in v.reasons],
                   "recipes": [], "estimates": [], "unavailable": []}
            docs.append(doc)
            rep.print(f"{t}: {v.status.value}")
            if v.key:
                rep.print(f"  key {v.key}" + (f" (recorded {rec.key})" if rec and rec.key != v.key else ""))
            for r in v.reasons:
                rep.print(f"  - {r}")
            if not v.stale:
                rep.print("  every input, script, param and output matches the last build")
            if node.recipes:
                parts = session.parts(t)
                from .engine import Options
                choice = session.choose(node, v.key or "", parts, Options(), probe=True)
                doc["recipes"] = list(choice.order)
                doc["estimates"] = [{"recipe": e.recipe, "kind": e.kind, "seconds": rounded(e.duration),
                                     "p_success": round(e.p, 3)} for e in choice.estimates]
                doc["unavailable"] = [r.name for r in node.recipes if r not in choice.recipes]
                rep.print("  recipes, in the order they would be tried (learned estimates):"
                          if v.stale else "  recipes, in the order they would be tried if it were stale:")
                for line in choice.explain():
                    rep.print("    " + line)
                skipped = [r.name for r in node.recipes if r not in choice.recipes]
                if skipped:
                    rep.print(f"    not available for this key: {', '.join(skipped)}")
        for problem in session.store_problems():
            rep.warn(problem)
    finally:
        session.close()
    if args.json:
        emit("explain", {"nodes": docs})
    return ExitCode.OK


def cmd_touch(args, rep) -> int:
    from .fastpath import Pending
    started_ns = time.time_ns()  # a folder listed from now on may change before the record
    project = project_of(args)
    # `node touch` of the default targets of the Nodefile here, as written: record a plain
    # `node build` in this folder as a no-op when it is one
    plain = not args.targets and not getattr(args, "set", None) and not getattr(args, "file", None)
    record = Pending(["build"], os.getcwd(), started_ns) if plain else None
    done = touch(project, args.targets or list(project.default), noop=record)
    rep.print(f"accepted current outputs of {len(done)} node(s): {', '.join(done)}")
    _still_stale(project, done, args, rep)
    return ExitCode.OK


def _still_stale(project, done: list[str], args, rep) -> None:
    """Say which touched nodes `status` still calls stale (a stale input upstream), and why."""
    from .model import ReasonKind
    session = Session(project, readonly=True)
    try:
        plan = session.plan(graph.closure(project.nodes, done))
    finally:
        session.close()
    stale = [n for n in done if plan[n].stale]
    if not stale:
        return
    upstream = [n for n in plan if plan[n].stale and n not in done and not project.nodes[n].is_alias]
    roots = [n for n in upstream if any(r.kind is not ReasonKind.UPSTREAM for r in plan[n].reasons)]
    why = "; ".join(f"{n}: {'; '.join(str(r) for r in plan[n].reasons if r.kind is not ReasonKind.UPSTREAM)}"
                    for n in roots[:3]) + (" …" if len(roots) > 3 else "")
    rep.print(f"still stale: {', '.join(stale)}, because a node upstream is stale ({why})")
    sets = " ".join(f"--set {s}" for s in getattr(args, "set", None) or [])
    rep.print(f"  accept those too: node touch {sets + ' ' if sets else ''}{' '.join(upstream + done)}"
              + ("" if sets else "  (or give touch the --set of the build that made them)"))


def cmd_job(args, rep) -> int:
    from . import recipes
    project = project_of(args)
    if len(args.targets) != 1:
        raise UnknownTargetError("job needs exactly one TARGET")
    (name,) = resolve_targets(project, args.targets)
    node = project.nodes[name]
    recipe = next((r for r in node.recipes if r.kind != "fetch"), None)
    if recipe is None:
        raise ConfigError(f"node '{name}' has no recipe to run by hand")
    m = recipes.manifest(project, node, recipe, 1, None)
    mpath, rpath = recipes.write_job(os.path.join(project.root, ".nodefile", "jobs"), m, with_r=True)
    rep.print(f"wrote {os.path.relpath(mpath)}" + (f" and {os.path.relpath(rpath)}" if rpath else ""))
    cwd = os.path.join(project.root, node.cwd)
    if os.path.abspath(cwd) != os.path.abspath(os.getcwd()):
        rep.print(f"from {os.path.relpath(cwd)}, run:")
    else:
        rep.print("run:")
    rep.print("  " + recipes.hand_command(project, node, recipe, mpath, rpath))
    if recipe.kind == "r":
        rep.print(f"or, in an R session: source(\"{os.path.relpath(rpath, cwd)}\") defines `node`; "
                  f"then run {recipe.target}")
    elif recipe.kind == "python":
        rep.print(f"or, in Python: nodefile.job(\"{name}\") gives the same job without the env var")
    return ExitCode.OK


def cmd_clean(args, rep) -> int:
    project = project_of(args, check_sources=False)
    from .engine import expand_aliases
    names = expand_aliases(project, resolve_targets(project, args.targets) if args.targets else list(project.nodes))
    from .pathsafe import OutputGuard
    guard = OutputGuard(project.root)
    removed = refused = 0
    for n in names:
        for p in project.nodes[n].output_paths:
            full = os.path.join(project.root, p.rstrip("/"))
            why = guard.problem(p) if os.path.lexists(full) else None
            if why:  # checked now: a folder may have become a symlink since the check
                rep.error(f"{n}: {why}; not removed")
                refused += 1
            elif os.path.isdir(full) and not os.path.islink(full):
                import shutil
                shutil.rmtree(full)
                removed += 1
            elif os.path.lexists(full):
                os.remove(full)
                removed += 1
    rep.print(f"removed {removed} output(s) of {len(names)} node(s)")
    return ExitCode.FAILED if refused else ExitCode.OK


def cmd_watch(args, rep) -> int:
    """Build, then rebuild on change until Ctrl-C (see nodefile/watch.py, docs/watch.md)."""
    from .config import find_nodefile
    rep.live = True  # each cycle's lines as they come
    from .watch import Watcher
    if args.jobs is not None and args.jobs < 1:
        raise ConfigError("-j must be at least 1")
    if args.poll is not None and args.poll <= 0:
        raise ConfigError("--poll must be a positive number of seconds")
    if args.debounce < 0:
        raise ConfigError("--debounce must not be negative")
    opts = Options(jobs=args.jobs, keep_going=args.keep_going, cold=args.cold)
    watcher = Watcher(lambda: project_of(args, freeze=False), find_nodefile(args.file), args.targets, opts, rep,
                      poll=args.poll, debounce=args.debounce)  # not frozen: a long-running process (cache.gc_paused)
    return watcher.run()


def cmd_import(args, rep) -> int:
    from .doit_import import import_dodo  # imports doit, an optional extra
    return import_dodo(args.dodo, args.output, args.strict, args.force, rep)


