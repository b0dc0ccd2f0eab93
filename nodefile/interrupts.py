"""Ctrl-C and SIGTERM at any moment of a CLI run: exit 130, never a traceback.

Imported first by the package when the process is the CLI (`node`, `nodefile`,
`python -m nodefile`), it makes both signals exit 130 at once until cli.main
takes over (take_over: they raise KeyboardInterrupt, which main catches), and
again once main is done (hand_back: a signal while the interpreter shuts down).
In any other process (a recipe importing nodefile, the test suite) it changes
nothing. Only builtin modules: this runs on every start, the no-op's too.
"""
from __future__ import annotations

import os
import sys

import _signal

EXIT = 130


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
    os._exit(EXIT)


def raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


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
        _signal.signal(_signal.SIGINT, _signal.default_int_handler)
        owned = True
    if _signal.getsignal(_signal.SIGTERM) is quiet_exit:
        _signal.signal(_signal.SIGTERM, raise_interrupt)
        owned = True
    return owned


def hand_back() -> None:
    """Quiet exits again: main is done (or interrupted)."""
    if _signal.getsignal(_signal.SIGTERM) is raise_interrupt:
        _signal.signal(_signal.SIGTERM, quiet_exit)
    if _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:
        _signal.signal(_signal.SIGINT, quiet_exit)
