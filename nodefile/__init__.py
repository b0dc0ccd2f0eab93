"""nodefile: a Make-like build tool for data projects in Python and R.

The public API: build, status, job, load_project, NodefileError, BuildError.
Imports are lazy so that `nodefile.job()` inside a recipe costs almost nothing.
"""
from __future__ import annotations

from .interrupts import install_early

install_early()  # the CLI: a Ctrl-C from here on exits 130 without a traceback (interrupts.py)

from .errors import BuildError, ConfigError, NodefileError  # noqa: E402

__version__ = "0.1.0"
__all__ = ["build", "status", "job", "load_project", "NodefileError", "BuildError", "ConfigError"]


def job(*args, **kwargs):
    """The job manifest of the running recipe (nodefile.jobctx.job)."""
    from .jobctx import job as _job  # named jobctx so that importing it never shadows this function
    return _job(*args, **kwargs)


def load_project(path: str | None = None, params: dict | None = None):
    from .config import load_project as _load
    return _load(path, params)


def build(targets=None, jobs: int | None = None, path: str | None = None, keep_going: bool = False,
          always_make: bool = False, params: dict | None = None, quiet: bool = True):
    """Build targets; return a Summary (built, up_to_date, failed, durations).
    Raises BuildError (with .summary) when a node fails."""
    from .engine import Options, build as _build
    from .report.console import Console
    project = load_project(path, params)
    rep = Console(verbosity=-1 if quiet else 0)
    summary = _build(project, list(targets or []), Options(jobs=jobs, keep_going=keep_going,
                                                           always_make=always_make), rep)
    if not summary.ok:
        raise BuildError(f"build failed: {', '.join(summary.failed or summary.skipped) or 'interrupted'}", summary)
    return summary


def status(targets=None, path: str | None = None) -> dict:
    """node name -> Verdict (status and reasons), as `node status` shows them."""
    from . import graph
    from .engine import Session, resolve_targets
    project = load_project(path)
    wanted = resolve_targets(project, list(targets)) if targets else list(project.nodes)
    names = graph.closure(project.nodes, wanted)
    session = Session(project, readonly=True)
    try:
        return session.plan(names)
    finally:
        session.close()
