"""The executor contract: all that the scheduler and the runner ask of what runs attempts.

An executor runs Specs (recipes/__init__.py) and reports each end as a `Finished`,
a frozen value (a caller that sees it differently makes a new one with `replace`).
Handles are ints the executor chooses. The calls:

  offer()                 -> Offer: what it offers (slots, resources, shared filesystem)
  submit(spec)            -> handle: start it now
  submit_after(spec, h)   -> handle, or None: start it the moment attempt h ends with
                             exit 0, in its place (the caller gives it h's resources);
                             reported held (ended, exit_code None) when h fails, and
                             cancelled when withdrawn first. None: not promised, submit
                             it later as usual
  withdraw(handle)        a successor not started yet never starts
  wait(timeout)           -> the attempts that ended ([] when timeout passed first)
  cancel(handle)          end one attempt (it is reported ended, cancelled)
  cancel_all()            -> end every attempt and wait for them (Ctrl-C, a crash)
  wake()                  thread-safe: a blocked wait() returns now
  close()                 after the build

Implemented by LocalExecutor (local.py), DaskExecutor (cluster.py) and the fake of
tests/unit/test_scheduler_fake.py. An ABC, not a typing.Protocol: `abc` is loaded at
every start anyway, an implementation that forgets a call fails when it is made,
and calls on a subclass cost what they cost on any class.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

from ..records import record


@record(frozen=True)
class Finished:
    """One attempt that ended, as the executor saw it."""
    handle: int
    exit_code: int | None  # None when it could not start
    duration: float
    timed_out: bool = False
    cancelled: bool = False
    error: str = ""  # why it could not start, or why a transfer failed
    failure: str | None = None  # for transfers: unavailable | transient | recipe error
    payload: object = None  # for transfers: what the callable returned
    output_bytes: int = 0  # what a process wrote to its log (0: no log file unless it failed)
    warm: bool = False  # it ran in a warm worker (a fork of a preloaded process)
    worker: str = ""  # the Dask worker that ran it
    ended_ns: int = 0  # wall clock when it ended (reaped): it ran from ended_ns - duration to ended_ns


@record(frozen=True)
class Offer:
    """What an executor offers a build."""
    name: str  # "local", "dask"
    slots: int  # attempts it runs at once (processes; transfers run beside them)
    resources: dict  # resource -> amount over all its machines ("cores" included)
    shared_filesystem: bool = True  # every attempt sees the project folder as the driver does
    successors: bool = False  # submit_after may accept (False: it always declines, do not ask)


class Executor(ABC):
    """Runs attempts: see the module docstring."""
    name = "executor"

    @abstractmethod
    def offer(self) -> Offer:
        """What this executor offers (asked once per build)."""

    @abstractmethod
    def submit(self, spec) -> int:
        """Start an attempt; its handle."""

    @abstractmethod
    def submit_after(self, spec, earlier: int) -> int | None:
        """Start an attempt the moment `earlier` ends well, in its place; None: declined."""

    @abstractmethod
    def withdraw(self, handle: int) -> None:
        """A successor that has not started never starts (reported cancelled)."""

    @abstractmethod
    def wait(self, timeout: float | None) -> list[Finished]:
        """Block until at least one attempt ends or `timeout` passes."""

    @abstractmethod
    def cancel(self, handle: int) -> None:
        """End one attempt; it is reported ended, cancelled."""

    @abstractmethod
    def cancel_all(self) -> list[Finished]:
        """End every attempt and wait for them."""

    @abstractmethod
    def wake(self) -> None:
        """Thread-safe: make a blocked wait() return now."""

    @abstractmethod
    def close(self) -> None:
        """After the build: release what the executor holds."""


STDOUT_WRAPPER = ("/bin/sh", "-c", 'exec "$@" > "$NODEFILE_STDOUT"', "sh")


def to_stdout_file(argv: list[str]) -> list[str]:
    """argv run with its standard output in the file $NODEFILE_STDOUT (`stdout = ...`);
    standard error stays on the log."""
    return list(STDOUT_WRAPPER) + argv


def unwrapped(argv) -> list[str]:
    """The recipe's own argv, without the `stdout` wrapper (a warm worker redirects itself)."""
    n = len(STDOUT_WRAPPER)
    return list(argv[n:]) if tuple(argv[:n]) == STDOUT_WRAPPER else list(argv)

