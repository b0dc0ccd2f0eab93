"""Local subprocesses, each in its own process group (session), so that a
cancel or Ctrl-C ends a recipe and everything it started.

Waiting uses pidfds (Linux >= 5.3) in select(), so a build wakes exactly when
a recipe ends; elsewhere it falls back to polling.
"""
from __future__ import annotations

import os
import select
import signal
import subprocess
import threading
import time
from dataclasses import dataclass

GRACE = 3.0


@dataclass
class Finished:
    handle: int
    exit_code: int | None  # None when it could not start
    duration: float
    timed_out: bool = False
    cancelled: bool = False
    error: str = ""  # why it could not start, or why a transfer failed
    failure: str | None = None  # for transfers: unavailable | transient | recipe error
    payload: object = None  # for transfers: what the callable returned


class _Spawned:
    """A process started with posix_spawn: the little of Popen's interface we use."""
    __slots__ = ("pid", "returncode")

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode = None


class _Proc:
    __slots__ = ("popen", "pidfd", "start", "deadline", "timed_out", "cancelled", "kill_at", "logf")

    def __init__(self, popen, pidfd, start, deadline, logf):
        self.popen = popen
        self.pidfd = pidfd
        self.start = start
        self.deadline = deadline
        self.timed_out = False
        self.cancelled = False
        self.kill_at = None
        self.logf = logf


def _start_time(pid: int) -> str | None:
    """The process's start time (clock ticks since boot, /proc/PID/stat field 22):
    with the pid, it names one process, never a later one that reuses the pid."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def end_orphans(run_dir: str) -> int:
    """End the process groups of recipes that a killed build (kill -9) left running.
    Each is recorded in run_dir as <pgid> holding its start time; a recorded pid
    whose start time differs is another process now and is left alone."""
    try:
        names = os.listdir(run_dir)
    except OSError:
        return 0
    ended = []
    for name in names:
        path = os.path.join(run_dir, name)
        try:
            pid = int(name)
            with open(path) as f:
                started = f.read().strip()
        except (ValueError, OSError):
            continue
        if started and _start_time(pid) == started:
            _signal_group(pid, signal.SIGTERM)
            ended.append(pid)
        try:
            os.remove(path)
        except OSError:
            pass
    if ended:
        deadline = time.monotonic() + GRACE
        while time.monotonic() < deadline and any(_start_time(p) for p in ended):
            time.sleep(0.05)
        for p in ended:
            _signal_group(p, signal.SIGKILL)
    return len(ended)


class LocalExecutor:
    name = "local"

    def __init__(self, run_dir: str | None = None):
        self.run_dir = run_dir  # where running recipes are recorded (end_orphans)
        self._made_dirs: set[str] = set()
        self._cwd_cache: str | None = None
        if run_dir:
            os.makedirs(run_dir, exist_ok=True)
        self.procs: dict[int, _Proc] = {}
        self._early: list[Finished] = []
        self._pidfd = hasattr(os, "pidfd_open")
        self.threads: dict[int, float] = {}
        self._thread_done: list[Finished] = []
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._next_handle = -1

    def _run_thread(self, handle: int, spec, start: float) -> None:
        try:
            payload = spec.func()
            fin = Finished(handle, 0, time.monotonic() - start, payload=payload)
        except Exception as e:  # a transfer's failure is a value, not a crash
            fin = Finished(handle, 1, time.monotonic() - start, error=str(e),
                           failure=getattr(e, "failure", "transient"))
        with self._lock:
            self._thread_done.append(fin)
        os.write(self._wake_w, b"x")

    def _spawn(self, spec, logf):
        """posix_spawn (vfork-fast) in a new session when the recipe runs in our
        own working folder; otherwise subprocess (which can chdir)."""
        if hasattr(os, "posix_spawn") and spec.cwd == self._cwd():
            actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                       (os.POSIX_SPAWN_DUP2, logf.fileno(), 1),
                       (os.POSIX_SPAWN_DUP2, logf.fileno(), 2)]
            exe = spec.argv[0]
            spawn = os.posix_spawn if os.sep in exe else os.posix_spawnp
            pid = spawn(exe, list(spec.argv), spec.env, file_actions=actions, setsid=True)
            return _Spawned(pid)
        return subprocess.Popen(list(spec.argv), cwd=spec.cwd, env=spec.env, stdin=subprocess.DEVNULL,
                                stdout=logf, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)

    def _cwd(self) -> str:
        if self._cwd_cache is None:
            self._cwd_cache = os.getcwd()
        return self._cwd_cache

    def submit(self, spec) -> int:
        if spec.func is not None:
            handle = self._next_handle
            self._next_handle -= 1
            start = time.monotonic()
            self.threads[handle] = start
            threading.Thread(target=self._run_thread, args=(handle, spec, start), daemon=True).start()
            return handle
        d = os.path.dirname(spec.log)
        if d not in self._made_dirs:
            os.makedirs(d, exist_ok=True)
            self._made_dirs.add(d)
        logf = open(spec.log, "ab", buffering=0)
        start = time.monotonic()
        try:
            popen = self._spawn(spec, logf)
        except OSError as e:
            msg = f"cannot start {spec.argv[0]}: {e.strerror or e}"
            logf.write((msg + "\n").encode())
            logf.close()
            handle = -(len(self._early) + 1) - int(start * 1000)
            self._early.append(Finished(handle, None, 0.0, error=msg))
            return handle
        pidfd = None
        if self._pidfd:
            try:
                pidfd = os.pidfd_open(popen.pid)
            except OSError:
                self._pidfd = False
        deadline = start + spec.timeout if spec.timeout else None
        self.procs[popen.pid] = _Proc(popen, pidfd, start, deadline, logf)
        if self.run_dir:
            try:
                with open(os.path.join(self.run_dir, str(popen.pid)), "w") as f:
                    f.write(_start_time(popen.pid) or "")
            except OSError:
                pass
        return popen.pid

    def wake(self) -> None:
        """Thread-safe: make a blocked wait() return now (watch mode uses it to cancel)."""
        os.write(self._wake_w, b"w")

    def running(self) -> int:
        return len(self.procs) + len(self.threads)

    def _collect_threads(self) -> list[Finished]:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        with self._lock:
            done, self._thread_done = self._thread_done, []
        for f in done:
            self.threads.pop(f.handle, None)
        return done

    def wait(self, timeout: float | None) -> list[Finished]:
        """Block until at least one recipe ends or `timeout` passes."""
        if self._early:
            done, self._early = self._early, []
            return done
        if self._thread_done:
            return self._collect_threads()
        if not self.procs:
            if self.threads:
                select.select([self._wake_r], [], [], timeout)
                return self._collect_threads()
            return []
        now = time.monotonic()
        limit = timeout
        for p in self.procs.values():
            for t in (p.deadline, p.kill_at):
                if t is not None:
                    limit = max(0.0, t - now) if limit is None else min(limit, max(0.0, t - now))
        if self._pidfd and all(p.pidfd is not None for p in self.procs.values()):
            fds = {p.pidfd: pid for pid, p in self.procs.items()}
            try:
                ready, _, _ = select.select(list(fds) + [self._wake_r], [], [], limit)
            except InterruptedError:
                ready = []
            done = [self._reap(fds[fd]) for fd in ready if fd != self._wake_r]
            if self._wake_r in ready:
                done += self._collect_threads()
        else:
            done = self._poll(limit if not self.threads else min(limit or 0.05, 0.05))
            done += self._collect_threads()
        self._enforce_deadlines()
        return [d for d in done if d is not None]

    def _poll(self, limit):
        end = time.monotonic() + (limit if limit is not None else 3600)
        while True:
            done = []
            for pid in list(self.procs):
                r = os.waitpid(pid, os.WNOHANG)
                if r[0]:
                    done.append(self._finish(pid, r[1]))
            if done or time.monotonic() >= end:
                return done
            time.sleep(0.005)

    def _reap(self, pid: int):
        _, status = os.waitpid(pid, 0)
        return self._finish(pid, status)

    def _finish(self, pid: int, status: int) -> Finished:
        p = self.procs.pop(pid)
        code = os.waitstatus_to_exitcode(status)
        p.popen.returncode = code
        if p.pidfd is not None:
            os.close(p.pidfd)
        p.logf.close()
        # the recipe's children may outlive it: end the whole group
        _signal_group(pid, signal.SIGKILL)
        if self.run_dir:
            try:
                os.remove(os.path.join(self.run_dir, str(pid)))
            except OSError:
                pass
        return Finished(pid, code, time.monotonic() - p.start, p.timed_out, p.cancelled)

    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        for pid, p in self.procs.items():
            if p.deadline is not None and now >= p.deadline and not p.timed_out:
                p.timed_out = True
                self._term(pid, p)
            elif p.kill_at is not None and now >= p.kill_at:
                _signal_group(pid, signal.SIGKILL)
                p.kill_at = None

    def _term(self, pid: int, p: _Proc) -> None:
        _signal_group(pid, signal.SIGTERM)
        p.kill_at = time.monotonic() + GRACE

    def cancel(self, handle: int) -> None:
        p = self.procs.get(handle)
        if p and not p.cancelled:
            p.cancelled = True
            self._term(handle, p)

    def cancel_all(self, grace: float = GRACE) -> list[Finished]:
        """Terminate every running recipe's process group; wait for them."""
        for pid, p in list(self.procs.items()):
            p.cancelled = True
            _signal_group(pid, signal.SIGTERM)
        done: list[Finished] = []
        end = time.monotonic() + grace
        while self.procs and time.monotonic() < end:
            done += self.wait(0.05)
        for pid in list(self.procs):
            _signal_group(pid, signal.SIGKILL)
        while self.procs:
            done += self.wait(0.5)
        return done


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
