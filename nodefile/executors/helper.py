"""A helper process the build talks to through two pipes, in the spawn helper's
protocol (spawner.py): the spawn helper itself, and the warm workers
(workers/zygote.py), which answer the same requests."""
from __future__ import annotations

import os
import select
import signal
import sys
import time

from .spawner import CHUNK, frame, unframe


def spawn_helper_argv(run_log: str | None) -> list[str]:
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "spawner.py")
    return [sys.executable, "-I", "-S", script, "3", "4"] + ([run_log] if run_log else [])


PARK_BYTES = 32768  # requests queued on a helper that is starting; a pipe holds 64 KiB


class Helper:
    """The helper process and the two pipes to it. It reads requests on its fd 3 and
    answers on its fd 4; `log`, when given, receives its own stdout and stderr."""

    def __init__(self, argv: list[str], env: dict | None = None, log: str | None = None):
        req_r, self.req = os.pipe()
        self.rep, rep_w = os.pipe()
        actions = [(os.POSIX_SPAWN_DUP2, req_r, 3), (os.POSIX_SPAWN_DUP2, rep_w, 4)]
        log_fd = None
        if log:
            os.makedirs(os.path.dirname(log), exist_ok=True)
            log_fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            actions += [(os.POSIX_SPAWN_DUP2, log_fd, 1), (os.POSIX_SPAWN_DUP2, log_fd, 2)]
        try:
            self.pid = os.posix_spawn(argv[0], argv, os.environ if env is None else env, file_actions=actions)
        finally:
            os.close(req_r)
            os.close(rep_w)
            if log_fd is not None:
                os.close(log_fd)
        self.buf = b""
        self.ready = False
        self.dead = False
        self.reason = ""  # why it ended before it was ready ("cold" message)
        self.skipped: list = []  # what a warm worker could not preload
        self.stamps: list = []  # (path, mtime_ns, size) of what a warm worker preloaded
        self.started = time.monotonic()
        self.boot = None  # seconds from its start to "ready"
        self.parked: list[int] = []  # handles sent before it was ready: it runs them once it is
        self.parked_bytes = 0

    def up(self, wait: float = 0.0) -> bool:
        """Has it said it is ready (waiting up to `wait` seconds for it)? Until then
        recipes start elsewhere."""
        end = time.monotonic() + wait
        while not self.ready and not self.dead and select.select([self.rep], [], [],
                                                                 max(0.0, end - time.monotonic()))[0]:
            self.receive()
        return self.ready

    def park(self, handle: int, msg) -> bool:
        """Send a request before the helper is ready: it waits in the pipe, and the helper
        runs it once ready. False (not sent) when the pipe could fill up: a write must
        never block the build."""
        data = frame(msg)
        if self.ready or self.dead or self.parked_bytes + len(data) > PARK_BYTES:
            return False
        try:
            os.write(self.req, data)
        except BrokenPipeError:  # it died while starting: receive() will say so
            return False
        self.parked.append(handle)
        self.parked_bytes += len(data)
        return True

    def send(self, msg) -> None:
        try:
            os.write(self.req, frame(msg))
        except BrokenPipeError:
            pass  # it died: receive() reports what it ran

    def receive(self) -> list:
        """The recipes it reports ended, as (handle, code, duration, nbytes, error).
        At end of file it has died (it never should): `dead` is set."""
        data = os.read(self.rep, CHUNK)
        if not data:
            self.dead, self.ready = True, False
            return []
        msgs, self.buf = unframe(self.buf + data)
        ended = []
        for m in msgs:
            if m[0] == "ready":
                self.ready = True
                self.boot = time.monotonic() - self.started
            elif m[0] == "done":
                ended.append(m[1:])
            elif m[0] == "cold":
                self.reason = m[1]
            elif m[0] == "skipped":
                self.skipped = m[1]
            elif m[0] == "stamps":
                self.stamps = m[1]
        return ended

    def kill(self) -> None:
        """End it now (a worker still starting: it has no recipe running)."""
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.dead, self.ready = True, False

    def close(self) -> None:
        os.close(self.req)
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass
        os.close(self.rep)
