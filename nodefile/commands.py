"""One function per CLI command: args + reporter -> exit status."""
from __future__ import annotations

import json
import os
import time

from . import graph
from .engine import Options, Session, build, resolve_targets, touch
from .errors import ConfigError, ExitCode, UnknownTargetError
from .model import AttemptRow, Outcome


def load_project(*args, freeze: bool = True, **kwargs):
    """config.load_project for a one-shot command: what exists after the load is
    frozen for the garbage collector (cache.gc_paused); node watch passes freeze=False."""
    from .config import load_project as load  # the Nodefile parser: not needed by a small rebuild
    return load(*args, freeze=freeze, **kwargs)


def _project(args, check_sources: bool = True, freeze: bool = True):
    from .cli import parse_set
    overrides = parse_set(getattr(args, "set", []) or [])
    return load_project(args.file, overrides, check_sources=check_sources,
                        requests=tuple(getattr(args, "targets", None) or ()), freeze=freeze)


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
        project = _project(args)
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


def _names(project, targets) -> list[str]:
    if targets:
        return graph.closure(project.nodes, resolve_targets(project, targets))
    return graph.closure(project.nodes, list(project.nodes))


def cmd_status(args, rep) -> int:
    project = _project(args)
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


def _round(x):
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
    project = _project(args)
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
                doc["estimates"] = [{"recipe": e.recipe, "kind": e.kind, "seconds": _round(e.duration),
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
    project = _project(args)
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
    project = _project(args)
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
    project = _project(args, check_sources=False)
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


def cmd_log(args, rep) -> int:
    project = _project(args, check_sources=False)
    if len(args.targets) != 1:
        raise UnknownTargetError("log needs exactly one TARGET")
    (name,) = resolve_targets(project, args.targets)
    if args.follow:
        from .logs import follow
        code = follow(project, name, rep)
        if code is not None:
            return code
        rep.print(f"== {name}: no build is running; the logs of its last build:")
    session = Session(project, readonly=True)
    try:
        attempts = session.state.attempts(node=name)
    finally:
        session.close()
    last = max((a.build_id for a in attempts), default=None)
    shown = [a for a in attempts if a.build_id == last]
    maker = _maker(attempts, shown)
    if args.json:
        emit("log", {"node": name, "build_id": last, "attempts": [_attempt_doc(project, a) for a in shown],
                     "restored": maker is not None,
                     "built_by": _attempt_doc(project, maker) if maker else None})
        return ExitCode.OK
    if not shown:
        rep.print(f"{name}: no attempts recorded")
        return ExitCode.OK
    for a in shown:
        _print_attempt(project, name, a, rep)
    if maker is not None:
        where = "the cache" if shown[-1].kind == "load" else f"store {shown[-1].recipe}"
        rep.print(f"== {name}: restored from {where}; the artifact was built in build {maker.build_id}:")
        _print_attempt(project, name, maker, rep)
    elif shown[-1].kind in ("load", "fetch") and shown[-1].outcome == Outcome.OK:
        rep.print(f"== {name}: restored; the attempt that built it is not recorded here (built elsewhere, "
                  "or before nodefile kept its key)")
    return ExitCode.OK


def _maker(attempts: list[AttemptRow], shown: list[AttemptRow]) -> AttemptRow | None:
    """After a restore, the attempt (of an earlier build) that built the restored key."""
    if not shown or shown[-1].kind not in ("load", "fetch") or shown[-1].outcome != Outcome.OK:
        return None
    key = shown[-1].key
    made = [a for a in attempts if key and a.key == key and a.outcome == Outcome.OK
            and a.kind not in ("load", "fetch")]
    return made[-1] if made else None


def _attempt_doc(project, a: AttemptRow) -> dict:
    text = None
    if a.log:
        try:
            with open(os.path.join(project.root, a.log), errors="replace") as f:
                text = f.read()
        except OSError:
            pass
    return {"build_id": a.build_id, "attempt": a.attempt, "recipe": a.recipe, "kind": a.kind,
            "outcome": a.outcome, "message": a.message, "exit_code": a.exit_code,
            "duration_seconds": _round(a.duration), "key": a.key, "log": a.log, "text": text}


def _print_attempt(project, name: str, a: AttemptRow, rep) -> None:
    what = f"recipe {a.recipe} ({a.kind})" if a.recipe else "the build was interrupted"
    rep.print(f"== {name}: attempt {a.attempt}, {what}: {a.outcome}"
              + (f" - {a.message}" if a.message else "") + f", {a.duration:.2f}s")
    if a.log:
        path = os.path.join(project.root, a.log)
        rep.print(f"   {a.log}")
        try:
            with open(path, errors="replace") as f:
                text = f.read()
            rep.print(text.rstrip("\n")) if text else rep.print("   (empty)")
        except OSError:
            rep.print("   (log file is gone: node gc keeps the logs of the last 20 builds)")
    elif a.recipe and a.kind not in ("load", "fetch"):
        rep.print("   (no output)")  # a quiet attempt that succeeded leaves no log file


def cmd_graph(args, rep) -> int:
    project = _project(args)
    names = _names(project, args.targets)
    session = Session(project, readonly=True)
    try:
        plan = session.plan(names)
        attempts = session.state.attempts() if args.format in ("svg", "html") else []
    finally:
        session.close()
    color = {"up to date": "palegreen", "stale": "gold", "missing": "lightcoral", "blocked": "lightgrey"}
    blocked = graph.blocked(project, names)

    def status(n):
        return "blocked" if n in blocked else plan[n].status.value

    if args.format in ("svg", "html"):
        from .report.html import dag_svg, graph_page, last_durations
        durations = last_durations(attempts)
        why = {n: blocked.get(n) or "; ".join(str(r) for r in plan[n].reasons[:3]) for n in names}
        svg = dag_svg(names, project.nodes, {n: "alias" if project.nodes[n].is_alias else status(n) for n in names},
                      why, durations)
        rep.print(graph_page(f"nodefile graph: {project.name}", svg) if args.format == "html" else svg)
    elif args.format == "json" or args.json:
        from .fncall import returns_entry

        def value(n):  # the output holding a function node's return value
            e = returns_entry(project.nodes[n])
            return None if e is None else e.paths[0]
        emit("graph", {"nodes": [{"name": n, "status": status(n), **({"reason": blocked[n]} if n in blocked else {}),
                                  "alias": project.nodes[n].is_alias, "value": value(n),
                                  "outputs": list(project.nodes[n].output_paths),
                                  "deps": list(project.nodes[n].deps)} for n in names],
                       "edges": [[d, n] for n in names for d in project.nodes[n].deps]})
    elif args.format == "mermaid":
        rep.print("graph LR")
        ids = {n: f"n{i}" for i, n in enumerate(names)}
        for n in names:
            rep.print(f'  {ids[n]}["{n}"]:::{status(n).replace(" ", "_")}')
        for n in names:
            for d in project.nodes[n].deps:
                rep.print(f"  {ids[d]} --> {ids[n]}")
        rep.print("  classDef up_to_date fill:#9f9\n  classDef stale fill:#fd0\n  classDef missing fill:#f99"
                  "\n  classDef blocked fill:#ccc")
    else:
        rep.print("digraph nodefile {\n  rankdir=LR;\n  node [shape=box, style=filled];")
        for n in names:
            tip = ', tooltip="' + blocked[n].replace('"', '\\"') + '"' if n in blocked else ""
            rep.print(f'  "{n}" [fillcolor={color[status(n)]}{tip}];')
        for n in names:
            for d in project.nodes[n].deps:
                rep.print(f'  "{d}" -> "{n}";')
        rep.print("}")
    return ExitCode.OK


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
    watcher = Watcher(lambda: _project(args, freeze=False), find_nodefile(args.file), args.targets, opts, rep,
                      poll=args.poll, debounce=args.debounce)  # not frozen: a long-running process (cache.gc_paused)
    return watcher.run()




def cmd_report(args, rep) -> int:
    """Write an HTML report: the DAG, a build's timeline (the last that ran recipes, or
    --build N), learned estimates."""
    from .report.html import last_durations, render
    project = _project(args)
    names = _names(project, [])
    session = Session(project, readonly=True)
    try:
        plan = session.plan(names)
        builds: dict[int, list] = {}
        every = session.state.attempts()
        for a in every:
            builds.setdefault(a.build_id, []).append(a)
        wanted = getattr(args, "build", None)
        if wanted is not None and wanted not in builds:
            have = f"recorded builds: {min(builds)}-{max(builds)}" if builds else "no build recorded yet"
            raise ConfigError(f"--build {wanted}: no attempts recorded for that build ({have})")
        if wanted is None:  # the last build that ran a recipe (not one that only restored outputs)
            ran = [b for b, atts in builds.items() if any(a.kind not in ("load", "fetch") and a.recipe
                                                          for a in atts)]
            wanted = max(ran or builds, default=None)
        attempts = builds.get(wanted, [])
        estimates = {}
        from .engine import Options
        for n in names:
            node = project.nodes[n]
            if node.recipes:
                choice = session.choose(node, plan[n].key or "", None, Options())
                if choice.estimates:
                    estimates[n] = choice.explain()[0]
    finally:
        session.close()
    out = args.output or os.path.join(project.root, ".nodefile", "report.html")
    with open(out, "w") as f:
        f.write(render(project, names, plan, attempts, estimates, wanted, last_durations(every),
                       graph.blocked(project, names)))
    rep.print(f"wrote {os.path.relpath(out)}")
    return ExitCode.OK


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def cmd_push(args, rep) -> int:
    """Upload the current outputs of up-to-date nodes to stores."""
    from .stores import describe_outputs
    project = _project(args)
    if args.store and args.store not in project.stores:
        raise ConfigError(f"--store {args.store}: no such store" + _dym(args.store, project.stores))
    names = [n for n in _names(project, args.targets) if not project.nodes[n].is_alias]
    targets = [args.store] if args.store else [s.name for s in project.stores.values() if s.push]
    if not targets:
        raise ConfigError("no store to push to: give --store NAME or set push = true on a store")
    session = Session(project)
    pushed = sent = skipped = 0
    failed = []
    try:
        plan = session.plan(names)
        for n in names:
            if plan[n].stale:
                skipped += 1
                continue
            entries = describe_outputs(project.root, project.nodes[n].output_paths, session.hasher)
            for t in targets:
                try:
                    sent += session.store(t).put(n, plan[n].key, project.root, entries)
                    pushed += 1
                except Exception as e:
                    failed.append(f"{n} -> {t}: {str(e).splitlines()[0][:200]}")
    finally:
        session.close()
    for f in failed:
        rep.error(f"push failed: {f}")
    rep.print(f"pushed {pushed} artifact(s) to {', '.join(targets)} ({_fmt_bytes(sent)} sent)"
              + (f"; {skipped} stale node(s) not pushed (build them first)" if skipped else ""))
    return ExitCode.FAILED if failed else ExitCode.OK


def cmd_import(args, rep) -> int:
    from .doit_import import import_dodo  # imports doit, an optional extra
    return import_dodo(args.dodo, args.output, args.strict, args.force, rep)


def _dym(word, choices) -> str:
    from .config.schema import did_you_mean
    return did_you_mean(word, choices)


def cmd_pull(args, rep) -> int:
    """Restore stale nodes from the local cache or the stores; never run a recipe."""
    project = _project(args)
    opts = Options(jobs=None, keep_going=True, transfers_only=True)
    summary = build(project, args.targets or list(project.nodes), opts, rep)
    from .report.console import made_counts
    how = f" ({', '.join(made_counts(summary))})" if summary.built else ""
    rep.print(f"pulled {len(summary.built)} node(s){how}; {len(summary.up_to_date)} already up to date"
              + (f"; {len(summary.failed)} not found in any store" if summary.failed else ""))
    return ExitCode.OK if not summary.failed else ExitCode.FAILED


def cmd_gc(args, rep) -> int:
    """Drop cache entries and state of nodes no longer in the Nodefile, and cache
    entries older than --older-than DAYS."""
    from .session import ProjectLock
    project = _project(args, check_sources=False)
    if getattr(args, "store", None):
        if args.older_than is not None:
            raise ConfigError("--older-than applies to the local cache, not with --store")
        return _gc_store(project, args.store, rep)
    session = Session(project)
    lock = ProjectLock(session.dir)
    try:
        lock.acquire(True, on_wait=rep.info)  # never prune what a running build is writing
        older = args.older_than * 86400 if args.older_than is not None else None
        entries = freed = 0
        from .pipeline import value_path
        kept = set(project.nodes) | _requested_instances(args, project, session.records())

        def alive(n):  # a Pipeline's function node is not in the Nodefile: kept while its value is there
            return n in kept or os.path.exists(os.path.join(project.root, value_path(n)))
        if session.cache is not None:
            entries, freed = session.cache.gc(alive, older)
        gone = [n for n in session.records() if not alive(n)]
        session.state.forget(gone)
        freed += _prune_logs(session, keep=20)
        from .pathsafe import safe_filename
        for where in ("previous", "failed"):
            base = os.path.join(session.dir, where)
            if not os.path.isdir(base):
                continue
            for d in os.listdir(base):
                if d not in {safe_filename(n) for n in kept}:
                    freed += _du(os.path.join(base, d))
                    import shutil
                    shutil.rmtree(os.path.join(base, d), ignore_errors=True)
    finally:
        session.close()
        lock.release()
    rep.print(f"gc: removed {entries} cache entr{'y' if entries == 1 else 'ies'} and the records of "
              f"{len(gone)} node(s) no longer in the Nodefile; freed {_fmt_bytes(freed)}")
    return ExitCode.OK


def _gc_store(project, name: str, rep) -> int:
    """`node gc --store NAME`: remove the store's damaged entries (an explicit act:
    a build never deletes anything in a store it only reads)."""
    if name not in project.stores:
        raise ConfigError(f"--store {name}: no such store" + _dym(name, project.stores))
    from .stores import StoreError, open_store
    store = open_store(project.stores[name])
    store.fs.on_wait = rep.waiting
    import uuid
    tmpdir = os.path.join(project.root, ".nodefile", "tmp", f"gc-{uuid.uuid4().hex}")
    try:
        manifests, blobs, removed = store.remove_damaged(tmpdir)
    except (StoreError, OSError) as e:
        rep.error(f"gc --store {name}: {str(e).splitlines()[0][:200]}")
        return ExitCode.FAILED
    finally:
        import shutil
        shutil.rmtree(tmpdir, ignore_errors=True)
    for rel, why in removed:
        rep.print(f"removed {rel}: {why}")
    rep.print(f"gc --store {name}: checked {manifests} manifest(s) and {blobs} blob(s); removed {len(removed)} "
              f"damaged entr{'y' if len(removed) == 1 else 'ies'}")
    return ExitCode.OK


def _requested_instances(args, project, records: dict) -> set[str]:
    """The recorded nodes that are instances of a pattern node still in the Nodefile:
    made when a build asked for one of their outputs (`node build fits/lin.json`), they
    are in the project only when asked for. The project is loaded again with the
    recorded outputs of every node not in it as requests: those it then holds stay."""
    recorded = {}
    for name, rec in records.items():
        if name in project.nodes:
            continue
        try:
            recorded[name] = list(json.loads(rec.outputs or "{}"))
        except (ValueError, TypeError):
            continue
    if not recorded:
        return set()
    requests = sorted({os.path.join(project.root, p) for outs in recorded.values() for p in outs})
    from .cli import parse_set
    try:
        again = load_project(args.file, parse_set(getattr(args, "set", []) or []), check_sources=False,
                             requests=tuple(requests))
    except ConfigError:
        return set(recorded)  # cannot tell: keep them (gc never drops what may be in use)
    return {n for n in recorded if n in again.nodes}


def _prune_logs(session, keep: int) -> int:
    """Keep the logs of the last `keep` builds (logs/<build id>/)."""
    base = os.path.join(session.dir, "logs")
    try:
        builds = sorted(d for d in os.listdir(base) if d.isdigit())
    except OSError:
        return 0
    freed = 0
    for d in builds[:-keep]:
        freed += _du(os.path.join(base, d))
        import shutil
        shutil.rmtree(os.path.join(base, d), ignore_errors=True)
    return freed


def _du(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
