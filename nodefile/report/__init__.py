"""Reporters: the only code that writes to the terminal.

`Reporter` is what the engine, the runner, the commands and `node watch` call on a
reporter (`console.Console` is the one in use; `--json` and `-q` are a Console that
prints less). Lines: `print`, `info` (not with -q), `detail` (only with -v), `warn`,
`error`, `waiting` (a transfer waits on a slow store). Build events, in order:

  build_started(order, deps, weight, slots)  the nodes of a build (for the ETA:
                                  `weight(name) -> (seconds, measured?)`, `slots`: -j)
  planned(name, choice)           a stale node's recipes were ordered (`learn.Choice`)
  started(spec)                   an attempt started
  done(result)                    a node settled (`model.NodeResult`)
  tick(running, done, total)      twice a second while recipes run
  summary(summary)                the build's `model.Summary`

The build events do nothing unless a reporter shows them. Here, not a
typing.Protocol: a method a reporter leaves out is a no-op, never a
`getattr(reporter, ...)` probe at the call. The ETA is computed here too
(`eta.Eta`), never by the runner or the engine.
"""
from __future__ import annotations

from abc import ABC, abstractmethod


class Reporter(ABC):
    """What a build and the commands tell the user: see the module docstring."""
    verbosity = 0  # -1: -q, 0: default, 1+: -v
    live = False  # every line flushed as it is written (node watch)

    @abstractmethod
    def print(self, text: str = "") -> None:
        """A line of a command's output."""

    @abstractmethod
    def info(self, text: str) -> None:
        """A line shown unless -q."""

    @abstractmethod
    def detail(self, text: str) -> None:
        """A line shown with -v."""

    @abstractmethod
    def warn(self, text: str) -> None:
        """`warning: ...` on stderr."""

    @abstractmethod
    def error(self, text: str) -> None:
        """`error: ...` on stderr."""

    def waiting(self, text: str) -> None:
        """A transfer waits on a slow store (called from a transfer thread)."""

    def build_started(self, order, deps: dict, weight, slots: float) -> None:
        """A build of `order` (its nodes, topologically) begins."""

    def planned(self, name: str, choice) -> None:
        """A stale node's recipes were ordered: `choice` (learn.Choice) says how long
        its first one is expected to take."""

    def started(self, spec) -> None:
        """An attempt started."""

    def done(self, result) -> None:
        """A node settled: built, up to date, failed or skipped."""

    def tick(self, running, done: int, total: int) -> None:
        """Recipes are running (`running`: their Specs)."""

    def summary(self, s, dry_run: bool = False) -> None:
        """The build ended."""

    def flush(self) -> None:
        """Lines written so far reach the terminal."""
