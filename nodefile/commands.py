"""One function per CLI command: args + reporter -> exit status."""
from __future__ import annotations

import json
import os
import time

from . import graph
from .engine import Options, Session, build, resolve_targets, touch
from .errors import ConfigError, UnknownTargetError


def load_project(*args, **kwargs):
    from .config import load_project as load  # the Nodefile parser: not needed by a small rebuild
    return load(*args, **kwargs)


def _project(args, check_sources: bool = True):
    from .cli import parse_set
    overrides = parse_set(getattr(args, "set", []) or [])
    return load_project(args.file, overrides, check_sources=check_sources,
                        requests=tuple(getattr(args, "targets", None) or ()))


def cmd_build(args, rep) -> int:
    from .cli import parse_resources
    opts = Options(jobs=args.jobs, keep_going=args.keep_going, dry_run=args.dry_run,
                   always_make=args.always_make, recipe_kind=args.recipe, retries=args.retries,
                   executor=args.executor, resources=parse_resources(args.resources),
                   wait_for_lock=not args.no_wait,
                   noop_record=(getattr(args, "_argv", None), os.getcwd()) if getattr(args, "_argv", None) else None)
    if opts.jobs is not None and opts.jobs < 1:
        raise ConfigError("-j must be at least 1")
    try:
        summary = _build(args, opts, rep)
    except Exception as e:  # the state database found malformed mid-build: once afresh
        from .errors import StateDamaged
        from .state import translate_error
        err = translate_error(e)
        if not isinstance(err, StateDamaged):
            raise
        summary = build(_project(args), args.targets, opts, rep)
    if args.dry_run:
        return 0
    rep.summary(summary)
    if summary.interrupted:
        return 130
    return 0 if summary.ok else 1


def _build(args, opts, rep):
    from .engine import build_incremental
    summary = build_incremental(opts, rep)  # a few nodes changed: without loading the project
    if summary is None:
        summary = build(_project(args), args.targets, opts, rep)
    return summary


def cmd_check(args, rep) -> int:
    from .cli import parse_set
    project = load_project(args.file, parse_set(args.set or []), use_cache=False)
    rep.print(f"{os.path.relpath(project.file)}: ok ({len(project.nodes)} nodes)")
    return 0


def _names(project, targets) -> list[str]:
    if targets:
        return graph.closure(project.nodes, resolve_targets(project, targets))
    return graph.closure(project.nodes, list(project.nodes))


def cmd_status(args, rep) -> int:
    project = _project(args)
    names = _names(project, args.targets)
    from .model import ReasonKind
    from .report.console import fmt_seconds
    session = Session(project, readonly=True)
    rows = []
    try:
        plan = session.plan(names)
        sources: dict[str, tuple[str, float | None]] = {}
        for n in names:
            node = project.nodes[n]
            if not plan[n].stale or node.is_alias:
                continue
            if any(r.kind is ReasonKind.UPSTREAM for r in plan[n].reasons):
                # its key is known only once its inputs are rebuilt: no store is asked
                est = session.choose(node, "", None, Options()).estimates
                sources[n] = ("after its inputs", est[0].duration if est else None)
            else:
                sources[n] = session.source_of(n, plan[n].key)
    finally:
        session.close()
    for n in names:
        v = plan[n]
        node = project.nodes[n]
        where, expected = sources.get(n, ("", None))
        reason = "; ".join(str(r) for r in v.reasons[:2]) + (" …" if len(v.reasons) > 2 else "")
        rows.append((n, v.status.value if not node.is_alias else ("alias" if not v.stale else "stale"),
                     where, fmt_seconds(expected) if expected is not None else "", reason))
    head = ("node", "status", "from", "expected", "reason")
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(4)]
    for r in [head] + rows:
        rep.print(("  ".join(f"{r[i]:<{widths[i]}}" for i in range(4)) + f"  {r[4]}").rstrip())
    stale = sum(1 for n in names if plan[n].stale and not project.nodes[n].is_alias)
    rep.print(f"{stale} of {sum(1 for n in names if not project.nodes[n].is_alias)} node(s) stale")
    return 0


def cmd_explain(args, rep) -> int:
    project = _project(args)
    if not args.targets:
        raise UnknownTargetError("explain needs a TARGET")
    targets = resolve_targets(project, args.targets)
    names = graph.closure(project.nodes, targets)
    session = Session(project, readonly=True)
    try:
        plan = session.plan(names)
        for t in targets:
            v = plan[t]
            node = project.nodes[t]
            rec = session.records().get(t)
            rep.print(f"{t}: {v.status.value}")
            if v.key:
                rep.print(f"  key {v.key}" + (f" (recorded {rec['key']})" if rec and rec["key"] != v.key else ""))
            for r in v.reasons:
                rep.print(f"  - {r}")
            if not v.stale:
                rep.print("  every input, script, param and output matches the last build")
            if node.recipes:
                parts = session.parts(t)
                from .engine import Options
                choice = session.choose(node, v.key or "", parts, Options(), probe=True)
                rep.print("  recipes, in the order they would be tried (learned estimates):"
                          if v.stale else "  recipes, in the order they would be tried if it were stale:")
                for line in choice.explain():
                    rep.print("    " + line)
                skipped = [r.name for r in node.recipes if r not in choice.recipes]
                if skipped:
                    rep.print(f"    not available for this key: {', '.join(skipped)}")
    finally:
        session.close()
    return 0


def cmd_touch(args, rep) -> int:
    from . import fastpath
    fastpath.STARTED_NS = time.time_ns()  # a folder listed from now on may change before the record
    project = _project(args)
    # `node touch` of the default targets of the Nodefile here, as written: record a plain
    # `node build` in this folder as a no-op when it is one
    plain = not args.targets and not getattr(args, "set", None) and not getattr(args, "file", None)
    record = (["build"], os.getcwd()) if plain else None
    done = touch(project, args.targets or list(project.default), noop_record=record)
    rep.print(f"accepted current outputs of {len(done)} node(s): {', '.join(done)}")
    return 0


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
    return 0


def cmd_clean(args, rep) -> int:
    project = _project(args, check_sources=False)
    from .engine import expand_aliases
    names = expand_aliases(project, resolve_targets(project, args.targets) if args.targets else list(project.nodes))
    removed = 0
    for n in names:
        for p in project.nodes[n].output_paths:
            full = os.path.join(project.root, p.rstrip("/"))
            if os.path.isdir(full) and not os.path.islink(full):
                import shutil
                shutil.rmtree(full)
                removed += 1
            elif os.path.lexists(full):
                os.remove(full)
                removed += 1
    rep.print(f"removed {removed} output(s) of {len(names)} node(s)")
    return 0


def cmd_log(args, rep) -> int:
    project = _project(args, check_sources=False)
    if len(args.targets) != 1:
        raise UnknownTargetError("log needs exactly one TARGET")
    (name,) = resolve_targets(project, args.targets)
    session = Session(project, readonly=True)
    try:
        attempts = session.state.attempts(node=name)
    finally:
        session.close()
    if not attempts:
        rep.print(f"{name}: no attempts recorded")
        return 0
    last = max(a["build_id"] for a in attempts)
    for a in [a for a in attempts if a["build_id"] == last]:
        what = f"recipe {a['recipe']} ({a['kind']})" if a["recipe"] else "the build was interrupted"
        rep.print(f"== {name}: attempt {a['attempt']}, {what}: {a['outcome']}"
                  + (f" - {a['message']}" if a["message"] else "") + f", {a['duration']:.2f}s")
        if a["log"]:
            path = os.path.join(project.root, a["log"])
            rep.print(f"   {a['log']}")
            try:
                with open(path, errors="replace") as f:
                    text = f.read()
                rep.print(text.rstrip("\n")) if text else rep.print("   (empty)")
            except OSError:
                rep.print("   (log file is gone)")
        elif a["recipe"] and a["kind"] not in ("load", "fetch"):
            rep.print("   (no output)")  # a quiet attempt that succeeded leaves no log file
    return 0


def cmd_graph(args, rep) -> int:
    project = _project(args)
    names = _names(project, args.targets)
    session = Session(project, readonly=True)
    try:
        plan = session.plan(names)
    finally:
        session.close()
    color = {"up to date": "palegreen", "stale": "gold", "missing": "lightcoral"}
    if args.format == "json":
        rep.print(json.dumps({"nodes": [{"name": n, "status": plan[n].status.value,
                                         "outputs": list(project.nodes[n].output_paths)} for n in names],
                              "edges": [[d, n] for n in names for d in project.nodes[n].deps]}, indent=1))
    elif args.format == "mermaid":
        rep.print("graph LR")
        ids = {n: f"n{i}" for i, n in enumerate(names)}
        for n in names:
            rep.print(f'  {ids[n]}["{n}"]:::{plan[n].status.name.lower()}')
        for n in names:
            for d in project.nodes[n].deps:
                rep.print(f"  {ids[d]} --> {ids[n]}")
        rep.print("  classDef up_to_date fill:#9f9\n  classDef stale fill:#fd0\n  classDef missing fill:#f99")
    else:
        rep.print("digraph nodefile {\n  rankdir=LR;\n  node [shape=box, style=filled];")
        for n in names:
            rep.print(f'  "{n}" [fillcolor={color[plan[n].status.value]}];')
        for n in names:
            for d in project.nodes[n].deps:
                rep.print(f'  "{d}" -> "{n}";')
        rep.print("}")
    return 0


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
    opts = Options(jobs=args.jobs, keep_going=args.keep_going)
    from .config import cache
    cache.FREEZE = False  # a long-running process: see cache.gc_paused
    watcher = Watcher(lambda: _project(args), find_nodefile(args.file), args.targets, opts, rep,
                      poll=args.poll, debounce=args.debounce)
    return watcher.run()




def cmd_report(args, rep) -> int:
    """Write an HTML report: the DAG, the last build's timeline, learned estimates."""
    from .report.html import render
    project = _project(args)
    names = _names(project, [])
    session = Session(project, readonly=True)
    try:
        plan = session.plan(names)
        builds = [a for a in session.state.attempts()]
        last = max((a["build_id"] for a in builds), default=None)
        attempts = [a for a in builds if a["build_id"] == last]
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
        f.write(render(project, names, plan, attempts, estimates))
    rep.print(f"wrote {os.path.relpath(out)}")
    return 0


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
    return 1 if failed else 0


def _dym(word, choices) -> str:
    from .config.load import did_you_mean
    return did_you_mean(word, choices)


def cmd_pull(args, rep) -> int:
    """Restore stale nodes from the local cache or the stores; never run a recipe."""
    project = _project(args)
    opts = Options(jobs=None, keep_going=True, transfers_only=True)
    summary = build(project, args.targets or list(project.nodes), opts, rep)
    rep.print(f"pulled {len(summary.built)} node(s); {len(summary.up_to_date)} already up to date"
              + (f"; {len(summary.failed)} not found in any store" if summary.failed else ""))
    return 0 if not summary.failed else 1


def cmd_gc(args, rep) -> int:
    """Drop cache entries and state of nodes no longer in the Nodefile, and cache
    entries older than --older-than DAYS."""
    from .session import ProjectLock
    project = _project(args, check_sources=False)
    session = Session(project)
    lock = ProjectLock(session.dir)
    try:
        lock.acquire(True, on_wait=rep.info)  # never prune what a running build is writing
        older = args.older_than * 86400 if args.older_than is not None else None
        entries = freed = 0
        kept = set(project.nodes) | _requested_instances(args, project, session.records())
        if session.cache is not None:
            entries, freed = session.cache.gc(lambda n: n in kept, older)
        gone = [n for n in session.records() if n not in kept]
        session.state.forget(gone)
        freed += _prune_logs(session, keep=20)
        for where in ("previous", "failed"):
            base = os.path.join(session.dir, where)
            if not os.path.isdir(base):
                continue
            for d in os.listdir(base):
                if d not in {n.replace("/", "_") for n in kept}:
                    freed += _du(os.path.join(base, d))
                    import shutil
                    shutil.rmtree(os.path.join(base, d), ignore_errors=True)
    finally:
        session.close()
        lock.release()
    rep.print(f"gc: removed {entries} cache entr{'y' if entries == 1 else 'ies'} and the records of "
              f"{len(gone)} node(s) no longer in the Nodefile; freed {_fmt_bytes(freed)}")
    return 0


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
            recorded[name] = list(json.loads(rec["outputs"] or "{}"))
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
