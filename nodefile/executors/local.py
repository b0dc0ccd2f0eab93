"""Local recipes: processes, each in its own process group (session), so that a
cancel or Ctrl-C ends a recipe and everything it started; and transfers, in
threads.

Waiting uses pidfds (Linux >= 5.3) in select(), so a build wakes exactly when
a recipe ends; elsewhere it falls back to polling. How processes are started,
and the spawn helper of big builds, are in spawner.py.
"""
from __future__ import annotations

import os
import select
import signal
import sys
import threading
import time
from ..interrupts import deferred
from .base import Executor, Finished, Offer, unwrapped
from .helper import Helper, spawn_helper_argv
from .spawner import GRACE, Procs, signal_group

# what to install when a recipe's interpreter is not on PATH
INSTALL = {"Rscript": "install R (Debian: apt-get install r-base-core)",
           "R": "install R (Debian: apt-get install r-base-core)",
           "python3": "install Python 3 (Debian: apt-get install python3), or set [project] python",
           "python": "install Python 3, or set [project] python"}


def cannot_start(cmd: str, e: OSError) -> str:
    """Why a recipe's program did not start, with what to install when it is missing."""
    if isinstance(e, FileNotFoundError):
        name = os.path.basename(cmd)
        hint = INSTALL.get(name)
        return f"{name} not found" + (f": {hint}" if hint else " (not on the recipe's PATH)" if os.sep not in cmd
                                      else "")
    return f"cannot start {cmd}: {e.strerror or e}"


HELPER_AFTER = 8  # the n-th process of a build starts the spawn helper (a small build never needs it)


class _Proc:
    """A running process as the build sees it (the helper or Procs holds the pid).
    A successor (submit_after) has no start until the process before it ends."""
    __slots__ = ("start", "deadline", "timed_out", "cancelled", "kill_at", "timeout")

    def __init__(self, start, deadline, timeout=None):
        self.start = start
        self.deadline = deadline
        self.timed_out = False
        self.cancelled = False
        self.kill_at = None
        self.timeout = timeout


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
            signal_group(pid, signal.SIGTERM)
            ended.append(pid)
    if ended:
        deadline = time.monotonic() + GRACE
        while time.monotonic() < deadline and any(mark in _environ(p) for p in ended):
            time.sleep(0.05)
        for p in ended:
            signal_group(p, signal.SIGKILL)
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


class LocalExecutor(Executor):
    """Runs a build's recipes: processes (see spawner.py) and transfers (threads).

    The first HELPER_AFTER processes of a build are started here; from then on a
    helper process (spawner.serve) starts them, so that this thread does not wait
    while each child execs. Deadlines and cancels stay here: the helper only
    starts, signals and reaps."""
    name = "local"

    def __init__(self, run_log: str | None = None, helper_after: int | None = None, jobs: int = 2,
                 workers=None):
        self.run_log = run_log
        self.jobs = jobs
        self.workers = workers  # workers.pool.Workers, or None: every recipe starts cold
        self.owns_workers = True  # close them with the build (node watch keeps its own)
        self.via: dict[int, object] = {}  # handle -> the warm worker running it
        self.warm_specs: dict[int, object] = {}  # handle -> its spec (to retry cold)
        self.retried: set[int] = set()  # handles retried cold after dying warm  # where running recipes are recorded (end_orphans)
        self._run_fd: int | None = None
        self._found: dict = {}
        if run_log:
            os.makedirs(os.path.dirname(run_log), exist_ok=True)
            self._run_fd = os.open(run_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        self.token = f"{os.getpid()}.{time.time_ns()}"  # marks this build's recipes (NODEFILE_RUN)
        if self._run_fd is not None:
            os.write(self._run_fd, f"run {self.token}\n".encode())
        self.inline = Procs(self._run_fd)
        self.procs: dict[int, _Proc] = {}  # every running process, by handle
        self._early: list[Finished] = []
        self.threads: dict[int, float] = {}
        self._thread_done: list[Finished] = []
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._next_handle = -1  # transfers count down, processes up
        self._next_proc = 1
        if helper_after is None:
            # with -j 1 nothing runs beside a spawn: the helper would only add a hop
            helper_after = int(os.environ.get("NODEFILE_SPAWN_HELPER_AFTER", HELPER_AFTER if jobs >= 2 else -1))
        self.helper_after = helper_after  # < 0: never; 0: every process, from the first (tests)
        self.helper: Helper | None = None
        self._successor: dict[int, int] = {}  # handle -> the handle started in its place when it ends
        if helper_after == 0:
            self.helper = Helper(spawn_helper_argv(run_log))
            self.helper.up(wait=10.0)

    def offer(self) -> Offer:
        return Offer(self.name, self.jobs, {"cores": float(self.jobs)}, shared_filesystem=True, successors=True)

    def _run_thread(self, handle: int, spec, start: float) -> None:
        try:
            payload = spec.func()
            fin = Finished(handle, 0, time.monotonic() - start, payload=payload, ended_ns=time.time_ns())
        except Exception as e:  # a transfer's failure is a value, not a crash
            fin = Finished(handle, 1, time.monotonic() - start, error=str(e), ended_ns=time.time_ns(),
                           failure=getattr(e, "failure", "transient"))
        with self._lock:
            self._thread_done.append(fin)
            if self._wake_w is not None:
                os.write(self._wake_w, b"x")

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

    def submit(self, spec) -> int:
        if spec.func is not None:
            handle = self._next_handle
            self._next_handle -= 1
            start = time.monotonic()
            self.threads[handle] = start
            threading.Thread(target=self._run_thread, args=(handle, spec, start), daemon=True).start()
            return handle
        handle = self._next_proc
        self._next_proc += 1
        spec.env["NODEFILE_RUN"] = self.token
        if self._submit_warm(handle, spec):
            return handle
        return self._submit_cold(handle, spec)

    def _submit_warm(self, handle: int, spec) -> bool:
        """Hand the recipe to a ready warm worker of its language, if there is one."""
        lang = getattr(spec, "warm", None)
        if not lang or self.workers is None or (spec.node, spec.recipe.name) in self.workers.cold_only:
            return False
        w = self.workers.get(lang)
        if w is not None and w.parked:  # it became ready just now
            self._unpark(w)
        argv = unwrapped(spec.argv)  # `stdout = ...`: the worker's child redirects itself
        msg = ("run", handle, argv[0], argv, spec.env, spec.cwd, spec.log)
        if w is None:  # none ready: queue it on one that is starting, if that is worth the wait
            w = self.workers.booting(lang)
            if w is None or not w.park(handle, msg):
                return False
            self.procs[handle] = _Proc(None, None, spec.timeout)  # it starts when the worker is ready
        else:
            w.send(msg)
            start = time.monotonic()
            self.procs[handle] = _Proc(start, start + spec.timeout if spec.timeout else None)
        self.via[handle] = w
        self.warm_specs[handle] = spec
        return True

    def _submit_cold(self, handle: int, spec) -> int:
        argv = list(spec.argv)
        with deferred():  # a Ctrl-C between the spawn and the line below would leave it running, unknown
            try:
                exe = argv[0] if os.sep in argv[0] else self._which(argv[0], spec.env.get("PATH"))
                if handle == self.helper_after and self.helper_after >= 0:
                    self.helper = Helper(spawn_helper_argv(self.run_log))
                if self.helper is not None and self.helper.up():
                    self.helper.send(("run", handle, exe, argv, spec.env, spec.cwd, spec.log))
                    start = time.monotonic()
                else:
                    start = self.inline.start(handle, exe, argv, spec.env, spec.cwd, spec.log)
            except (OSError, ValueError) as e:  # ValueError: a NUL in an argument (a param's value)
                msg = (cannot_start(argv[0], e) if isinstance(e, OSError)
                       else f"cannot start {argv[0]}: {e}")  # the runner puts it in the log
                self._early.append(Finished(handle, None, 0.0, error=msg))
                return handle
            deadline = start + spec.timeout if spec.timeout else None
            self.procs[handle] = _Proc(start, deadline)
        return handle

    def submit_after(self, spec, earlier: int) -> int | None:
        """Start a process recipe the moment the process `earlier` ends, in its place
        (the caller gives it that one's resources): the helper starts it without waiting
        for this thread to hear of the end and answer, which for recipes of a few
        milliseconds leaves a slot idle about a third of the time. None when that cannot
        be promised (no helper, `earlier` not a started helper process, or it already
        has a successor): then submit() it when resources free up, as usual."""
        if getattr(spec, "warm", None) and self.workers is not None and self.workers.live.get(spec.warm):
            return None  # its worker starts it when a slot frees
        if (spec.func is not None or self.helper is None or not self.helper.ready or earlier in self._successor
                or earlier in self.inline.procs or earlier not in self.procs or self.procs[earlier].start is None):
            return None
        handle = self._next_proc
        spec.env["NODEFILE_RUN"] = self.token
        argv = list(spec.argv)
        try:
            exe = argv[0] if os.sep in argv[0] else self._which(argv[0], spec.env.get("PATH"))
        except OSError:
            return None  # submit() reports it
        self._next_proc += 1
        self.helper.send(("after", earlier, handle, exe, argv, spec.env, spec.cwd, spec.log))
        self._successor[earlier] = handle
        self.procs[handle] = _Proc(None, None, spec.timeout)
        return handle

    def withdraw(self, handle: int) -> None:
        """A successor that has not started yet never starts (it is reported ended,
        cancelled); one that has started runs on."""
        p = self.procs.get(handle)
        if p is not None and p.start is None and self.helper is not None and handle not in self.via:
            p.cancelled = True
            self.helper.send(("drop", handle))

    def close(self) -> None:
        """After the build: no recipe runs any more, the record is not needed."""
        if self.workers is not None and self.owns_workers and not self.procs:
            self.workers.close()
        if self.helper is not None and not self.procs:
            self.helper.close()
            self.helper = None
        if not self.procs:
            self.inline.close()
        if self._run_fd is not None and not self.procs:
            os.close(self._run_fd)
            self._run_fd = None
            try:
                os.remove(self.run_log)
            except OSError:
                pass
        if not self.procs and not self.threads and self._wake_w is not None:
            with self._lock:  # two descriptors a build: a long `node watch` ran out of them
                os.close(self._wake_r)
                os.close(self._wake_w)
                self._wake_w = None

    def wake(self) -> None:
        """Thread-safe: make a blocked wait() return now (watch mode uses it to cancel)."""
        with self._lock:
            if self._wake_w is not None:
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
        if not self.procs and not self.threads:
            return []
        now = time.monotonic()
        limit = timeout
        for p in self.procs.values():
            for t in (p.deadline, p.kill_at):
                if t is not None:
                    limit = max(0.0, t - now) if limit is None else min(limit, max(0.0, t - now))
        polling = self.inline.procs and not self.inline.pidfd
        if polling:
            limit = 0.005 if limit is None else min(limit, 0.005)
        watched = self.inline.watched()
        if self.helper is not None:
            watched.append(self.helper.rep)
        if self.workers is not None:
            watched += self.workers.fds()
        watched.append(self._wake_r)
        try:
            ready, _, _ = select.select(watched, [], [], limit)
        except InterruptedError:
            ready = []
        ended = []
        for fd in ready:
            if fd in self.inline.fds:
                ended += self.inline.ready(fd)
            elif self.helper is not None and fd == self.helper.rep:
                ended += self.helper.receive()
                if self.helper.dead:  # what it ran is lost; the build goes on without it
                    ended += [(h, None, 0.0, 0, "the spawn helper process died")
                              for h in self.procs if h not in self.inline.procs]
                    self.helper.close()
                    self.helper = None
            elif self.workers is not None and self.workers.by_fd(fd) is not None:
                ended += self._from_worker(self.workers.by_fd(fd))
        if polling:
            ended += self.inline.poll()
        done = [f for f in (self._finish(*e) for e in ended) if f is not None]
        if self._wake_r in ready or self._thread_done:
            done += self._collect_threads()
        self._enforce_deadlines()
        return done

    def _from_worker(self, w) -> list:
        """What a warm worker reports ended; if it died, what it ran is lost (retried cold),
        and what waited for it to start runs cold now. Once it is ready, what waited starts."""
        ended = w.receive()
        if w.ready and w.parked:
            self._unpark(w)
        if w.dead:
            for h in [h for h, via in self.via.items() if via is w and h in w.parked]:
                self._run_parked_cold(h)
            ended += [(h, -signal.SIGKILL, 0.0, 0, "") for h, via in self.via.items() if via is w]
            self.workers.drop(w)
        return ended

    def _unpark(self, w) -> None:
        """The worker is ready: the recipes queued on it start now (their clocks too)."""
        now = time.monotonic()
        for h in w.parked:
            p = self.procs.get(h)
            if p is not None and p.start is None:
                p.start = now
                if p.timeout:
                    p.deadline = now + p.timeout
        w.parked.clear()

    def _abandon_parked(self) -> list[Finished]:
        """End each worker that is still starting (it has forked nothing yet) and report
        the recipes queued on it as cancelled, never started."""
        starting = {id(w): w for w in self.via.values() if not w.ready and w.parked}
        done = []
        for h in [h for h, w in self.via.items() if id(w) in starting]:  # all queued: it ran none yet
            del self.via[h]
            self.warm_specs.pop(h, None)
            self.procs.pop(h, None)
            done.append(Finished(h, None, 0.0, cancelled=True, ended_ns=time.time_ns()))
        for w in starting.values():
            w.kill()
            self.workers.drop(w, died=False)  # not a reason to run cold next time
        return done

    def _run_parked_cold(self, handle: int) -> None:
        """A recipe that waited for a worker that never became ready starts cold, as if
        it had never waited (same handle; no note: it never ran warm)."""
        del self.via[handle]
        spec = self.warm_specs.pop(handle)
        p = self.procs.pop(handle)
        self._submit_cold(handle, spec)
        if p.cancelled and handle in self.procs:
            self.cancel(handle)

    def _finish(self, handle, code, duration, nbytes, error="") -> Finished | None:
        warm = self.via.pop(handle, None) is not None
        if warm:
            spec = self.warm_specs.pop(handle)
            p = self.procs[handle]
            if code is not None and code < 0 and not (p.timed_out or p.cancelled):
                return self._retry_cold(handle, spec, code)  # a crash of the fork, not the recipe's verdict
        elif handle in self.retried:
            self.retried.discard(handle)
            spec = self.warm_specs.pop(handle)
            if code == 0:
                self.workers.remember_cold(spec.node, spec.recipe.name)
        p = self.procs.pop(handle)
        nxt = self._successor.pop(handle, None)
        if nxt is not None and nxt in self.procs and code == 0:  # the helper started it in its place
            q = self.procs[nxt]
            q.start = time.monotonic()
            if q.timeout:
                q.deadline = q.start + q.timeout
        return Finished(handle, code, duration, p.timed_out, p.cancelled, error=error, output_bytes=nbytes,
                        warm=warm, ended_ns=time.time_ns())

    def _retry_cold(self, handle: int, spec, code: int) -> None:
        """A warm attempt that died of a signal runs again, cold, once, under the same handle."""
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        note = f"nodefile: the warm run was killed by {name}; running the recipe again, cold\n"
        try:
            os.makedirs(os.path.dirname(spec.log), exist_ok=True)
            with open(spec.log, "a") as f:
                f.write(note)
        except OSError:
            pass
        del self.procs[handle]
        self.retried.add(handle)
        self.warm_specs[handle] = spec
        self._submit_cold(handle, spec)
        return None

    def _signal(self, handle: int, sig: int) -> None:
        p = self.procs.get(handle)
        if p is None:
            return
        if handle in self.via:
            self.via[handle].send(("sig", handle, int(sig)))
        elif handle in self.inline.procs:
            self.inline.signal(handle, sig)
        elif self.helper is not None:
            self.helper.send(("sig", handle, int(sig)))

    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        for handle, p in self.procs.items():
            if p.deadline is not None and now >= p.deadline and not p.timed_out:
                p.timed_out = True
                self._term(handle, p)
            elif p.kill_at is not None and now >= p.kill_at:
                self._signal(handle, signal.SIGKILL)
                p.kill_at = None

    def _term(self, handle: int, p: _Proc) -> None:
        self._signal(handle, signal.SIGTERM)
        p.kill_at = time.monotonic() + GRACE

    def cancel(self, handle: int) -> None:
        p = self.procs.get(handle)
        if p and not p.cancelled:
            p.cancelled = True
            self._term(handle, p)

    def cancel_all(self, grace: float = GRACE) -> list[Finished]:
        """Terminate every running recipe's process group; wait for them. Recipes still
        waiting for a worker to start never start: that worker ends now."""
        done: list[Finished] = self._abandon_parked()
        for handle, p in list(self.procs.items()):
            p.cancelled = True
            self._signal(handle, signal.SIGTERM)
        end = time.monotonic() + grace
        while self.procs and time.monotonic() < end:
            done += self.wait(0.05)
        for handle in list(self.procs):
            self._signal(handle, signal.SIGKILL)
        while self.procs:
            done += self.wait(0.5)
        return done

