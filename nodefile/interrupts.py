"""Ctrl-C and SIGTERM at any moment of a CLI run: exit 130, never a traceback.

Imported first by the package when the process is the CLI (`node`, `nodefile`,
`python -m nodefile`), it makes both signals exit 130 at once until cli.main
takes over (take_over: they raise KeyboardInterrupt, which main catches, except
inside a deferred() section, which raises it as it ends), and
again once main is done (hand_back: a signal while the interpreter shuts down).
In any other process (a recipe importing nodefile, the test suite) it changes
nothing. Only builtin modules: this runs on every start, the no-op's too.
"""
from __future__ import annotations

import os
import sys

import _signal

EXIT_INTERRUPTED = 130  # errors.ExitCode.INTERRUPTED; defined here, where nothing may be imported before
#                         install_early (a signal during that import would print a traceback)


def quiet_exit(signum, frame) -> None:
    exit_interrupted(say=True)


def exit_interrupted(say: bool = False) -> None:
    """Flush and exit 130 now. cli.main ends an interrupted command so too: CPython
    exits by SIGINT (not 130) after a KeyboardInterrupt raised inside exec() of a
    string (namedtuple, dataclasses), even when it was caught."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # interrupted inside a write, a closed pipe: what is buffered is lost
            pass
    if say:
        try:
            os.write(2, b"nodefile: interrupted\n")
        except OSError:
            pass
    os._exit(EXIT_INTERRUPTED)


_defer = [0, None]  # depth of deferred() sections, a signal that arrived inside one


def raise_interrupt(signum, frame) -> None:
    if _defer[0]:
        _defer[1] = signum  # raised as the section ends
        return
    _last[0] = signum
    raise KeyboardInterrupt


_last = [_signal.SIGINT]  # the signal raise_interrupt last turned into a KeyboardInterrupt


def _unraisable(hook):
    """sys.unraisablehook: a KeyboardInterrupt raised inside a weakref callback or a
    __del__ (where Python prints "Exception ignored" and goes on, the Ctrl-C lost) is
    delivered again, to be raised at the next bytecode of ordinary code."""
    def unraisable(info):
        if info.exc_type is not None and issubclass(info.exc_type, KeyboardInterrupt):
            _signal.raise_signal(_last[0])
            return
        hook(info)
    return unraisable


class deferred:
    """A section a Ctrl-C must not cut in two (a recipe spawned but not yet registered
    would be left running): the KeyboardInterrupt is raised as it ends. Only in the
    CLI process (take_over), where SIGINT and SIGTERM go through raise_interrupt."""

    def __enter__(self):
        _defer[0] += 1

    def __exit__(self, *exc):
        _defer[0] -= 1
        if not _defer[0] and _defer[1] is not None:
            _defer[1] = None
            raise KeyboardInterrupt
        return False


def started_as_cli() -> bool:
    argv0 = sys.argv[0] if sys.argv else ""
    if argv0 == "-m":  # python -m MODULE, while the package is imported
        orig = getattr(sys, "orig_argv", [])
        at = len(orig) - len(sys.argv)
        name = orig[at] if 0 <= at < len(orig) else ""
        return name in ("nodefile", "-mnodefile")
    return os.path.basename(argv0) in ("node", "nodefile")


def install_early() -> None:
    """Quiet exits for SIGINT and SIGTERM, where the CLI starts and they are not ignored."""
    if not started_as_cli():
        return
    if _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:
        _signal.signal(_signal.SIGINT, quiet_exit)
    if _signal.getsignal(_signal.SIGTERM) == _signal.SIG_DFL:
        _signal.signal(_signal.SIGTERM, quiet_exit)


def take_over() -> bool:
    """SIGINT and SIGTERM raise KeyboardInterrupt from now on (where install_early
    set them): cli.main catches it. False when this is not the CLI process."""
    owned = False
    if _signal.getsignal(_signal.SIGINT) is quiet_exit:
        _signal.signal(_signal.SIGINT, raise_interrupt)
        owned = True
    if _signal.getsignal(_signal.SIGTERM) is quiet_exit:
        _signal.signal(_signal.SIGTERM, raise_interrupt)
        owned = True
    if owned:
        sys.unraisablehook = _unraisable(sys.unraisablehook)
    return owned


def hand_back() -> None:
    """Quiet exits again: main is done (or interrupted)."""
    if _signal.getsignal(_signal.SIGTERM) is raise_interrupt:
        _signal.signal(_signal.SIGTERM, quiet_exit)
    if _signal.getsignal(_signal.SIGINT) is raise_interrupt:
        _signal.signal(_signal.SIGINT, quiet_exit)
