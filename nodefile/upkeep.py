"""The commands that keep artifacts and storage: `node push` and `node pull` (stores),
`node gc` (the local cache, logs, records of removed nodes, a damaged store)."""
from __future__ import annotations

import json
import os

from .commands import names_of, project_of
from .engine import Options, Session, build
from .errors import ConfigError, ExitCode


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def cmd_push(args, rep) -> int:
    """Upload the current outputs of up-to-date nodes to stores."""
    from .stores import describe_outputs
    project = project_of(args)
    if args.store and args.store not in project.stores:
        raise ConfigError(f"--store {args.store}: no such store" + _dym(args.store, project.stores))
    names = [n for n in names_of(project, args.targets) if not project.nodes[n].is_alias]
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


def _dym(word, choices) -> str:
    from .config.schema import did_you_mean
    return did_you_mean(word, choices)


def cmd_pull(args, rep) -> int:
    """Restore stale nodes from the local cache or the stores; never run a recipe."""
    project = project_of(args)
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
    project = project_of(args, check_sources=False)
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
    try:
        again = project_of(args, check_sources=False, requests=tuple(requests))
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
