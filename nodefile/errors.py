"""One error hierarchy. User-fixable errors carry a message fit to print as is."""
from __future__ import annotations

import enum

from .interrupts import EXIT_INTERRUPTED


class ExitCode(enum.IntEnum):
    """The documented exit statuses (`enum` is loaded at start-up anyway, by `re` and `signal`)."""
    OK = 0
    FAILED = 1  # a recipe failed, or `--check` found work to do
    USAGE = 2  # usage or Nodefile error
    INTERRUPTED = EXIT_INTERRUPTED  # Ctrl-C / SIGTERM


class Problem:
    """One validation problem, located as precisely as the Nodefile allows.
    (A plain class: dataclasses would import `inspect`, 10 ms on every start.)"""

    __slots__ = ("message", "file", "line", "key")

    def __init__(self, message: str, file: str = "", line: int | None = None, key: str = ""):
        self.message, self.file, self.line, self.key = message, file, line, key

    def __eq__(self, other):
        return isinstance(other, Problem) and (self.message, self.file, self.line, self.key) == \
            (other.message, other.file, other.line, other.key)

    def __hash__(self):
        return hash((self.message, self.file, self.line, self.key))

    def __repr__(self):
        return f"Problem({self.message!r}, {self.file!r}, {self.line!r}, {self.key!r})"

    def __str__(self) -> str:
        where = self.file
        if self.line:
            where += f":{self.line}"
        key = f" [{self.key}]" if self.key else ""
        return f"{where}:{key} {self.message}" if where else f"{key.strip()} {self.message}".strip()


class NodefileError(Exception):
    """Base of every error nodefile raises on purpose. Exit status 2 unless stated."""

    exit_code = ExitCode.USAGE


class ConfigError(NodefileError):
    """The Nodefile (or the command line's view of it) is invalid: every problem at once."""

    def __init__(self, problems: list[Problem] | str):
        if isinstance(problems, str):
            problems = [Problem(problems)]
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class UnknownTargetError(NodefileError):
    pass


class LockError(NodefileError):
    pass


class BuildError(NodefileError):
    """Raised by the Python API when a build fails; carries the summary."""

    exit_code = ExitCode.FAILED

    def __init__(self, message: str, summary=None):
        super().__init__(message)
        self.summary = summary


class StateDamaged(NodefileError):
    """The state database is damaged or of an incompatible schema (state.py)."""

    def __init__(self, message: str, reason: str = ""):
        super().__init__(message)
        self.reason = reason


class DiskError(NodefileError):
    """A write under .nodefile/ (or an output) failed: disk full, read-only, no permission.
    The state is left as it was."""

    exit_code = ExitCode.FAILED
