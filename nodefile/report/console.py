"""The console reporter: a live progress line on a terminal, plain lines otherwise.

Plain ANSI rather than rich: importing rich costs ~40 ms, a large share of a
no-op build's budget (see docs/decisions.md).
"""
from __future__ import annotations

import os
import sys
import time

from ..model import NodeResult, Outcome, Summary


def fmt_seconds(s: float) -> str:
    if s < 1:
        return f"{s * 1000:.0f}ms"
    if s < 60:
        return f"{s:.1f}s"
    m, s = divmod(int(s), 60)
    return f"{m}m{s:02d}s" if m < 60 else f"{m // 60}h{m % 60:02d}m"


def _seconds_env(name: str, default: float) -> float:
    try:
        return max(0.0, float(os.environ.get(name, default)))
    except ValueError:
        return default


class Console:
    def __init__(self, verbosity: int = 0, out=None, err=None, tty: bool | None = None):
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.verbosity = verbosity
        self.tty = self.err.isatty() if tty is None else tty
        if os.environ.get("NODEFILE_PROGRESS") == "plain":
            self.tty = False
        self._line = False
        self.live = self.tty  # flush every line (watch mode sets it: output is read as it comes)
        self._flushed = 0.0
        self.started_at: dict[str, float] = {}
        self.expected: dict[str, float | None] = {}  # node -> its first recipe's seconds (None: unknown)
        self.eta = None  # report.eta.Eta of the build, set by build
        # plain progress lines (not on a terminal): one every this many seconds of a long build
        self.plain_every = _seconds_env("NODEFILE_PROGRESS_EVERY", 10.0)
        self._plain_at = time.monotonic()

    # -- plumbing ------------------------------------------------------------------------
    def _clear(self) -> None:
        if self._line:
            self.err.write("\r\x1b[2K")
            self.err.flush()
            self._line = False

    def print(self, text: str = "") -> None:
        self._clear()
        self.out.write(text + "\n")
        # every line on a terminal; otherwise (CI logs, pipes) at most every 0.2 s:
        # a flush per line of a 1,000-node build costs half a second
        now = time.monotonic()
        if self.live or now - self._flushed >= 0.2:
            self.out.flush()
            self._flushed = now

    def info(self, text: str) -> None:
        if self.verbosity >= 0:
            self.print(text)

    def detail(self, text: str) -> None:
        if self.verbosity > 0:
            self.print(text)

    def warn(self, text: str) -> None:
        self._clear()
        self.err.write(f"warning: {text}\n")
        self.err.flush()

    def error(self, text: str) -> None:
        self._clear()
        self.err.write(f"error: {text}\n")
        self.err.flush()

    # -- build events ----------------------------------------------------------------
    def started(self, spec) -> None:
        self.started_at[spec.node] = time.monotonic()
        if not self.tty and self.verbosity >= 0:
            r = spec.recipe
            what = r.target if r.kind != "shell" else "shell"
            self.print(f"run  {spec.node}  ({r.kind} {what})" if r.kind != "shell" else f"run  {spec.node}  (shell)")

    def done(self, result: NodeResult) -> None:
        if self.eta is not None:
            self.eta.settle(result.node)
        o = result.outcome
        if o is Outcome.OK:
            if self.verbosity >= 0:
                via = f" via {result.recipe}" if result.recipe else ""
                self.print(f"ok   {result.node}  {fmt_seconds(result.duration)}{via}")
        elif o is Outcome.FAILED:
            self._clear()
            self.err.write(f"FAILED {result.node}: {result.message}\n")
            self.err.flush()
        elif o is Outcome.SKIPPED:
            if self.verbosity >= 0:
                self.print(f"skip {result.node}  ({result.message})")
        elif o is Outcome.UP_TO_DATE and self.verbosity > 0:
            self.print(f"     {result.node}  up to date")

    def progress(self, running, done: int, total: int, now: float) -> str:
        """`[done/total] running: node elapsed/expected, ...  ETA left`: an expected time
        never measured is "?", an ETA with such nodes left is a lower bound ("≥")."""
        parts = []
        for spec in running[:4]:
            el = now - self.started_at.get(spec.node, now)
            shown = ""
            if spec.node in self.expected:
                exp = self.expected[spec.node]
                shown = "/?" if exp is None else f"/{fmt_seconds(exp)}"
            parts.append(f"{spec.node} {fmt_seconds(el)}{shown}")
        more = f" +{len(running) - 4}" if len(running) > 4 else ""
        eta = ""
        if self.eta is not None:
            left, known = self.eta.left({s.node: now - self.started_at.get(s.node, now) for s in running})
            eta = "  ETA ?" if left is None else f"  ETA {'' if known else '≥'}{fmt_seconds(left)}"
        return f"[{done}/{total}] running: {', '.join(parts)}{more}{eta}"

    def tick(self, running, done: int, total: int) -> None:
        if self.verbosity < 0:
            return
        now = time.monotonic()
        if not self.tty:
            if now - self._plain_at >= self.plain_every and running:
                self._plain_at = now
                self.err.write(self.progress(running, done, total, now) + "\n")
                self.err.flush()
            return
        line = self.progress(running, done, total, now)
        width = 200
        try:
            width = os.get_terminal_size(self.err.fileno()).columns - 1
        except (OSError, ValueError):
            pass
        self.err.write("\r\x1b[2K" + line[:width])
        self.err.flush()
        self._line = True

    def flush(self) -> None:
        self.out.flush()

    def summary(self, s: Summary, dry_run: bool = False) -> None:
        self._clear()
        self.live = True
        if self.verbosity < 0 and s.ok:
            return
        if not s.built and not s.failed and not s.skipped and not s.interrupted:
            self.print(f"nothing to do: {len(s.up_to_date)} node(s) up to date ({fmt_seconds(s.elapsed)})")
            return
        bits = [f"built {len(s.built)}"]
        if s.up_to_date:
            bits.append(f"up to date {len(s.up_to_date)}")
        if s.failed:
            bits.append(f"failed {len(s.failed)}")
        if s.skipped:
            bits.append(f"not built {len(s.skipped)}")
        tail = " (interrupted)" if s.interrupted else ""
        self.print(f"{', '.join(bits)} in {fmt_seconds(s.elapsed)}{tail}")
