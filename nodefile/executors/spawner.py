"""Recipe processes: started with posix_spawn in a session of their own, their
output collected through a pipe, their end seen through a pidfd.

Two users share this code. A build starts its first recipes itself (`Procs` in
the build's process). A build with many recipes hands the rest to a helper
process running this file (`serve`): posix_spawn makes the caller wait while
the child execs (vfork), about 0.4 ms a recipe, and in the helper that wait no
longer holds up the build's own thread, which meanwhile decides and records
other nodes.

Output goes to a pipe, and the log file is created when the first byte arrives
(or when the attempt fails): a recipe that prints nothing and succeeds costs no
file. This file imports nothing from nodefile, so the helper runs it by path
with `python -I -S` and starts in about 10 ms.
"""
import marshal
import os
import select
import signal
import struct
import sys
import time

HELD = "not started: the recipe before it failed"  # a successor the build decides about again
GRACE = 3.0  # seconds between SIGTERM and SIGKILL when the build is gone
CHUNK = 1 << 16
HEADER = struct.Struct("<I")


class _P:
    __slots__ = ("handle", "pid", "pidfd", "out", "log", "logfd", "start", "nbytes", "popen")

    def __init__(self, handle, pid, pidfd, out, log, start, popen=None):
        self.handle = handle
        self.pid = pid
        self.pidfd = pidfd
        self.out = out
        self.log = log
        self.logfd = None
        self.start = start
        self.nbytes = 0
        self.popen = popen


class Procs:
    """The running recipe processes of one build (or one helper)."""

    def __init__(self, run_fd=None, can_chdir=False):
        self.procs = {}  # handle -> _P
        self.fds = {}  # fd -> (_P, is its pidfd)
        self.cwd = os.getcwd()
        self.can_chdir = can_chdir  # only a single-threaded process may chdir around a spawn
        self.pidfd = hasattr(os, "pidfd_open")
        self.run_fd = run_fd
        self.made = set()
        self.devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)

    def start(self, handle, exe, argv, env, cwd, log):
        """Start a recipe; return its start time, or raise OSError."""
        r, w = os.pipe()
        try:
            start = time.monotonic()
            pid, popen = self.launch(exe, argv, env, cwd, w)
        except BaseException:
            os.close(r)
            os.close(w)
            raise
        os.close(w)
        os.set_blocking(r, False)
        pidfd = None
        if self.pidfd:
            try:
                pidfd = os.pidfd_open(pid)
            except OSError:
                self.pidfd = False
        p = _P(handle, pid, pidfd, r, log, start, popen)
        self.procs[handle] = p
        self.fds[r] = (p, False)
        if pidfd is not None:
            self.fds[pidfd] = (p, True)
        self._note(f"+ {pid}\n")
        return start

    def launch(self, exe, argv, env, cwd, w):
        """Start the process in a session of its own, stdin from /dev/null, stdout and
        stderr to w; return (pid, Popen or None). A warm worker overrides this (it forks)."""
        popen = None
        if cwd == self.cwd or self.can_chdir:
            actions = [(os.POSIX_SPAWN_DUP2, self.devnull, 0), (os.POSIX_SPAWN_DUP2, w, 1),
                       (os.POSIX_SPAWN_DUP2, w, 2)]
            if cwd != self.cwd:
                os.chdir(cwd)
            try:
                pid = os.posix_spawn(exe, argv, env, file_actions=actions, setsid=True)
            finally:
                if cwd != self.cwd:
                    os.chdir(self.cwd)
        else:  # posix_spawn cannot chdir, and this process may have threads
            import subprocess
            popen = subprocess.Popen(argv, executable=exe, cwd=cwd, env=env, stdin=self.devnull, stdout=w,
                                     stderr=w, start_new_session=True, close_fds=True)
            pid = popen.pid
        return pid, popen

    def close(self):
        if self.devnull is not None:
            os.close(self.devnull)
            self.devnull = None

    def watched(self):
        return list(self.fds)

    def ready(self, fd):
        """fd (from watched) is readable: the finished recipes, as (handle, code, duration, nbytes)."""
        p, is_pidfd = self.fds[fd]
        if is_pidfd:
            _, status = os.waitpid(p.pid, 0)
            return [self._end(p, status)]
        self._drain(p)
        return []

    def poll(self):
        """Without pidfds: the recipes that have ended (their output is drained here too)."""
        done = []
        for p in list(self.procs.values()):
            if p.out is not None:
                self._drain(p)
            pid, status = os.waitpid(p.pid, os.WNOHANG)
            if pid:
                done.append(self._end(p, status))
        return done

    def signal(self, handle, sig):
        p = self.procs.get(handle)
        if p is not None:
            signal_group(p.pid, sig)

    def _drain(self, p):
        """Copy what the recipe wrote to its log; at end of file stop watching the pipe."""
        while True:
            try:
                data = os.read(p.out, CHUNK)
            except BlockingIOError:
                return
            if not data:
                del self.fds[p.out]
                os.close(p.out)
                p.out = None
                return
            if p.logfd is None:
                p.logfd = self._open_log(p.log)
            p.nbytes += len(data)
            view = memoryview(data)
            while view:
                view = view[os.write(p.logfd, view):]

    def _open_log(self, path):
        d = os.path.dirname(path)
        if d not in self.made:
            os.makedirs(d, exist_ok=True)
            self.made.add(d)
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)

    def _end(self, p, status):
        del self.procs[p.handle]
        code = os.waitstatus_to_exitcode(status)
        if p.popen is not None:
            p.popen.returncode = code
        duration = time.monotonic() - p.start
        signal_group(p.pid, signal.SIGKILL)  # the recipe's children may outlive it: end the group
        if p.pidfd is not None:
            del self.fds[p.pidfd]
            os.close(p.pidfd)
        if p.out is not None:  # what it wrote before it ended; a process that escaped the group
            self._drain(p)  # and keeps the pipe open gets no more than this
            if p.out is not None:
                del self.fds[p.out]
                os.close(p.out)
        if p.logfd is None and code != 0:
            p.logfd = self._open_log(p.log)  # the log of a failed attempt always exists
        if p.logfd is not None:
            os.close(p.logfd)
        self._note(f"- {p.pid}\n")
        return (p.handle, code, duration, p.nbytes)

    def _note(self, line):
        if self.run_fd is not None:
            try:
                os.write(self.run_fd, line.encode())
            except OSError:
                pass


def signal_group(pid, sig):
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def frame(msg):
    data = marshal.dumps(msg)
    return HEADER.pack(len(data)) + data


def unframe(buf):
    """The whole messages at the start of buf, and what is left of it."""
    msgs = []
    pos = 0
    while len(buf) - pos >= 4:
        (n,) = HEADER.unpack_from(buf, pos)
        if len(buf) - pos - 4 < n:
            break
        msgs.append(marshal.loads(buf[pos + 4:pos + 4 + n]))
        pos += 4 + n
    return msgs, buf[pos:]


def serve(req, rep, run_log, procs_class=None):
    """The helper's loop. Requests:
      ("run", handle, exe, argv, env, cwd, log);
      ("after", earlier, handle, exe, argv, env, cwd, log): start it the moment the
        process `earlier` exits 0, in its place (the build gives it that one's slot),
        or now if it already has; if `earlier` fails it never starts (reported ended,
        with HELD: the build decides again);
      ("sig", handle, signum): for a successor not started yet, it never starts;
      ("drop", handle): a successor not started yet never starts (one that has runs on).
    Replies: ("ready",), ("done", handle, code, duration, nbytes, error). When the
    build goes away (end of file on req) the recipes still running are ended: SIGTERM,
    then SIGKILL after GRACE seconds."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the build's to handle
    run_fd = os.open(run_log, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC) if run_log else None
    helper = _Helper(req, rep, (procs_class or Procs)(run_fd, can_chdir=True))
    os.set_blocking(rep, False)
    while True:
        helper.send()
        if helper.closing_at is not None and not helper.procs.procs:
            return
        for d in helper.step():
            helper.out += frame(("done",) + tuple(d) + (("",) if len(d) == 4 else ()))


class _Helper:
    """The helper's state between two turns of its loop."""

    def __init__(self, req, rep, procs):
        self.req = req
        self.rep = rep
        self.procs = procs
        self.successor = {}  # handle of a running process -> the request to start when it ends
        self.out = bytearray(frame(("ready",)))  # replies not written yet
        self.buf = b""  # the start of a request not read whole yet
        self.closing_at = None  # when the build is gone: when what still runs is killed

    def send(self):
        """Write what the pipe to the build takes of the replies, without blocking."""
        if self.out:
            try:
                del self.out[:os.write(self.rep, self.out)]
            except BlockingIOError:
                pass
            except BrokenPipeError:
                self.out.clear()  # the build is gone: nobody to tell

    def step(self):
        """Wait for a request, an output or an end; the ended recipes, as
        (handle, code, duration, nbytes[, error])."""
        done = []
        for fd in self.wait():
            if fd == self.req:
                self.read(done)
            elif fd in self.procs.fds:
                done += self.procs.ready(fd)
        if not self.procs.pidfd:
            done += self.procs.poll()
        for d in list(done):  # a successor takes the ended process's place at once,
            nxt = self.successor.pop(d[0], None)  # if that one succeeded (a failure may stop the build)
            if nxt is not None:
                if d[1] == 0:
                    self.start(nxt, done)
                else:
                    done.append((nxt[0], None, 0.0, 0, HELD))
        if self.closing_at is not None and time.monotonic() >= self.closing_at:
            for h in list(self.procs.procs):
                self.procs.signal(h, signal.SIGKILL)
        return done

    def wait(self):
        """The readable fds among the recipes' pipes and pidfds and the requests."""
        watched = self.procs.watched()
        if self.closing_at is None:
            watched.append(self.req)
        timeout = None
        if not self.procs.pidfd and self.procs.procs:
            timeout = 0.005
        if self.closing_at is not None:
            left = max(0.0, self.closing_at - time.monotonic())
            timeout = left if timeout is None else min(timeout, left)
        ready, _, _ = select.select(watched, [self.rep] if self.out else [], [], timeout)
        return ready

    def read(self, done):
        data = os.read(self.req, CHUNK)
        if not data:  # the build ended or was killed: end what it started
            self.closing_at = time.monotonic() + GRACE
            self.successor.clear()
            for h in list(self.procs.procs):
                self.procs.signal(h, signal.SIGTERM)
            return
        msgs, self.buf = unframe(self.buf + data)
        for m in msgs:
            self.request(m, done)

    def request(self, m, done):
        if m[0] == "run":
            self.start(m[1:], done)
        elif m[0] == "after":
            if m[1] in self.procs.procs:
                self.successor[m[1]] = m[2:]
            else:  # it has ended (its "done" is on the way): start now
                self.start(m[2:], done)
        elif m[0] in ("sig", "drop"):
            waiting = [e for e, n in self.successor.items() if n[0] == m[1]]
            if waiting:  # not started: never start it
                del self.successor[waiting[0]]
                done.append((m[1], None, 0.0, 0, "cancelled before it started"))
            elif m[0] == "sig":
                self.procs.signal(m[1], m[2])

    def start(self, m, done):
        handle, exe, argv, env, cwd, log = m
        try:
            self.procs.start(handle, exe, argv, env, cwd, log)
        except (OSError, ValueError) as e:  # ValueError: a NUL in an argument
            done.append((handle, None, 0.0, 0, f"cannot start {argv[0]}: {getattr(e, 'strerror', None) or e}"))


if __name__ == "__main__":  # python -I -S spawner.py REQ_FD REP_FD [RUN_LOG]
    serve(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None)
