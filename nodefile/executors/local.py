"""Local subprocesses, each in its own process group (session), so that a
cancel or Ctrl-C ends a recipe and everything it started.

Waiting uses pidfds (Linux >= 5.3) in select(), so a build wakes exactly when
a recipe ends; elsewhere it falls back to polling.
"""
from __future__ import annotations

import os
import select
import signal
import threading
import time
from ..records import record

GRACE = 3.0


@record
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


def end_orphans(run_log: str) -> int:
    """End the process groups of recipes that a killed build (kill -9) left running.
    A build writes its token to run_log, then appends "+ PGID" when a recipe starts
    and "- PGID" when it ends (one file per build, appended to: no file created and
    deleted per recipe, which ext4 makes slow). A group started and never ended is
    ended here if its leader still carries the build's token in its environment
    (NODEFILE_RUN): a pid reused by another process since is left alone."""
    try:
        with open(run_log) as f:
            lines = f.read().splitlines()
    except OSError:
        return 0
    token = lines[0].split()[-1] if lines and lines[0].startswith("run ") else None
    live: set[int] = set()
    for line in lines[1:]:
        parts = line.split()
        try:
            if len(parts) == 2 and parts[0] == "+":
                live.add(int(parts[1]))
            elif len(parts) == 2 and parts[0] == "-":
                live.discard(int(parts[1]))
        except ValueError:
            continue  # a line cut short by the kill
    mark = f"\0NODEFILE_RUN={token}\0".encode()
    ended = []
    for pid in sorted(live) if token else ():
        if mark in _environ(pid):
            _signal_group(pid, signal.SIGTERM)
            ended.append(pid)
    if ended:
        deadline = time.monotonic() + GRACE
        while time.monotonic() < deadline and any(mark in _environ(p) for p in ended):
            time.sleep(0.05)
        for p in ended:
            _signal_group(p, signal.SIGKILL)
    try:
        os.remove(run_log)
    except OSError:
        pass
    return len(ended)


def _environ(pid: int) -> bytes:
    """The environment a process started with ("" when gone, a zombie, or not ours to read)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return b"\0" + f.read()
    except OSError:
        return b""


def which(name: str, path: str) -> str | None:
    """shutil.which for a bare name on Linux (importing shutil costs ~2 ms per start):
    the first executable regular file called name in the folders of path."""
    for d in path.split(os.pathsep):
        cand = os.path.join(d or ".", name)
        if os.access(cand, os.X_OK) and os.path.isfile(cand):
            return cand
    return None


class LocalExecutor:
    name = "local"

    def __init__(self, run_log: str | None = None):
        self.run_log = run_log  # where running recipes are recorded (end_orphans)
        self._run_fd: int | None = None
        self._made_dirs: set[str] = set()
        self._found: dict = {}
        self._cwd_cache: str | None = None
        if run_log:
            os.makedirs(os.path.dirname(run_log), exist_ok=True)
            self._run_fd = os.open(run_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        self.token = f"{os.getpid()}.{time.time_ns()}"  # marks this build's recipes (NODEFILE_RUN)
        self._record(f"run {self.token}\n")
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
            if os.sep not in exe:
                exe = self._which(exe, spec.env.get("PATH"))
            pid = os.posix_spawn(exe, list(spec.argv), spec.env, file_actions=actions, setsid=True)
            return _Spawned(pid)
        import subprocess
        return subprocess.Popen(list(spec.argv), cwd=spec.cwd, env=spec.env, stdin=subprocess.DEVNULL,
                                stdout=logf, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)

    def _which(self, name: str, path: str | None) -> str:
        """The program a bare command name runs, searched in the recipe's PATH once
        per build (posix_spawnp would retry execve down PATH for every recipe)."""
        found = self._found.get((name, path))
        if found is None:
            found = which(name, path if path is not None else os.defpath)
            if found is None:
                raise FileNotFoundError(2, "command not found", name)
            self._found[(name, path)] = found
        return found

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
        spec.env["NODEFILE_RUN"] = self.token
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
        self._record(f"+ {popen.pid}\n")
        return popen.pid

    def _record(self, line: str) -> None:
        if self._run_fd is not None:
            try:
                os.write(self._run_fd, line.encode())
            except OSError:
                pass

    def close(self) -> None:
        """After the build: no recipe runs any more, the record is not needed."""
        if self._run_fd is not None and not self.procs:
            os.close(self._run_fd)
            self._run_fd = None
            try:
                os.remove(self.run_log)
            except OSError:
                pass

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
        self._record(f"- {pid}\n")
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
