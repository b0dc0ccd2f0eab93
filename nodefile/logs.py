"""`node log -f TARGET`: follow a node's attempts in the running build, as they write."""
from __future__ import annotations

import os
import sys
import time

from .errors import ExitCode
from .model import Outcome
from .session import Session


def follow(project, name: str, rep, poll: float = 0.1) -> int | None:
    """Print the node's log files of the running build as they grow, until the node is
    built or the build ends. None when no build is running (the caller shows the last)."""
    session = Session(project, readonly=True)
    try:
        build = session.state.running_build()
        if build is None:
            return None
        folder = os.path.join(session.dir, "logs", f"{build:05d}")
        prefix = name.replace("/", "_") + "."  # as the runner names a node's logs
        rep.print(f"== {name}: following build {build} (Ctrl-C stops)")
        offsets: dict[str, int] = {}
        while True:
            finished = _finished(session.state, build, name)
            _copy_new(folder, prefix, offsets, name)
            if finished:
                break
            time.sleep(poll)
        rep.print(f"== {name}: {finished}")
        return ExitCode.OK
    finally:
        session.close()


def _finished(state, build: int, name: str) -> str | None:
    """How the node ended in this build ("built"), or that the build ended; None while it may run."""
    if any(a.outcome == Outcome.OK for a in state.attempts(node=name, build_id=build)):
        return "built"
    if state.running_build() != build:
        return "the build ended"
    return None


def _copy_new(folder: str, prefix: str, offsets: dict, name: str) -> None:
    try:
        files = sorted(f for f in os.listdir(folder) if f.startswith(prefix) and f.endswith(".log")
                       and f[len(prefix):].split(".")[0].isdigit())  # NAME.ATTEMPT.RECIPE.log
    except OSError:
        return
    for f in files:
        if f not in offsets:
            offsets[f] = 0
            sys.stdout.write(f"-- {os.path.join(os.path.relpath(folder), f)}\n")
        try:
            with open(os.path.join(folder, f), "rb") as fh:
                fh.seek(offsets[f])
                chunk = fh.read()
        except OSError:
            continue
        if chunk:
            offsets[f] += len(chunk)
            sys.stdout.write(chunk.decode("utf-8", "replace"))
    sys.stdout.flush()
