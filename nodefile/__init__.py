"""nodefile: a Make-like build tool for data projects in Python and R.

The public API: build, status, job, load_project, NodefileError, BuildError.
Imports are lazy so that `nodefile.job()` inside a recipe costs almost nothing.
"""
from __future__ import annotations

from .interrupts import install_early

install_early()  # the CLI: a Ctrl-C from here on exits 130 without a traceback (interrupts.py)

import os  # noqa: E402

from .errors import BuildError, ConfigError, NodefileError  # noqa: E402

__version__ = "0.1.0"
__all__ = ["build", "status", "job", "load_project", "Pipeline", "NodefileError", "BuildError", "ConfigError"]


def __getattr__(name: str):
    if name == "Pipeline":  # function nodes (pipeline.py), imported when first used
        from .pipeline import Pipeline
        return Pipeline
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def job(*args, **kwargs):
    """The job manifest of the running recipe (nodefile.jobctx.job)."""
    from .jobctx import job as _job  # named jobctx so that importing it never shadows this function
    return _job(*args, **kwargs)


def load_project(path: str | None = None, params: dict | None = None):
    from .config import load_project as _load
    return _load(path, params)


def build(targets=None, jobs: int | None = None, path: str | None = None, keep_going: bool = False,
          always_make: bool = False, params: dict | None = None, quiet: bool = True):
    """Build targets (a list of names or paths; a string is one target; None: the
    default targets); return a Summary (built, up_to_date, failed, durations).
    Raises BuildError (with .summary) when a node fails."""
    from .engine import Options, build as _build
    from .report.console import Console
    project = load_project(path, params)
    rep = Console(verbosity=-1 if quiet else 0)
    summary = _build(project, _targets(targets), Options(jobs=jobs, keep_going=keep_going,
                                                           always_make=always_make), rep)
    if not summary.ok:
        raise BuildError(f"build failed: {', '.join(summary.failed or summary.skipped) or 'interrupted'}", summary)
    return summary


def _targets(targets) -> list:
    """A string (or path) is one target, not a sequence of one-letter targets."""
    items = [targets] if isinstance(targets, (str, os.PathLike)) else list(targets or [])
    return [os.fspath(t) for t in items]


def status(targets=None, path: str | None = None) -> dict:
    """node name -> Verdict (status and reasons), as `node status` shows them: the
    targets (a string is one) and what they need; by default the default targets'."""
    from . import graph
    from .engine import Session, resolve_targets
    project = load_project(path)
    wanted = resolve_targets(project, _targets(targets))
    names = graph.closure(project.nodes, wanted)
    session = Session(project, readonly=True)
    try:
        return session.plan(names)
    finally:
        session.close()
