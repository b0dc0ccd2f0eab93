"""The commands that look back at what was built: `node log` (a node's attempts and
their output), `node graph` (the DAG in dot, mermaid, JSON, SVG or HTML) and `node
report` (the HTML report: DAG, a build's timeline, learned estimates)."""
from __future__ import annotations

import os

from . import graph
from .commands import emit, names_of, project_of, rounded
from .engine import Session, resolve_targets
from .errors import ConfigError, ExitCode, UnknownTargetError
from .model import AttemptRow, Outcome


def cmd_log(args, rep) -> int:
    project = project_of(args, check_sources=False)
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
            "duration_seconds": rounded(a.duration), "key": a.key, "log": a.log, "text": text}


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
    project = project_of(args)
    names = names_of(project, args.targets)
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


def cmd_report(args, rep) -> int:
    """Write an HTML report: the DAG, a build's timeline (the last that ran recipes, or
    --build N), learned estimates."""
    from .report.html import last_durations, render
    project = project_of(args)
    names = names_of(project, [])
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
