"""What an attempt leaves behind, and where fresh outputs go.

`AttemptLog`: the rows of the `attempts` table, the log file of each attempt (its
path, its tail in a failure message), and outputs moved aside (`move_aside`: to
.nodefile/previous/ before a recipe runs, to .nodefile/failed/ after it fails).
`Uploads`: fresh outputs into the local cache (in the build thread when small,
else in the upload thread) and pushed to `push = true` stores (upload thread).
"""
from __future__ import annotations

import os
import time

from .model import FailureClass, Outcome
from .pathsafe import OutputGuard, safe_filename
from .stores import describe_outputs, manifest_size

INLINE_CACHE_BYTES = 1 << 20  # outputs up to this size are cached in the build thread


def move_aside(session, node, where: str, stamp: str) -> None:
    """Move the node's existing outputs under .nodefile/<where>/ so a recipe
    starts from a clean slate and nothing is lost. An output whose real location
    is outside the project (a folder became a symlink) is left where it is."""
    base = None
    guard = None
    for p in node.output_paths:
        src = os.path.join(session.project.root, p.rstrip("/"))
        if not os.path.lexists(src):
            continue
        guard = guard or OutputGuard(session.project.root)
        if guard.problem(p):
            continue
        if base is None:
            base = os.path.join(session.dir, where, safe_filename(node.name), stamp)
        dst = os.path.join(base, p.rstrip("/"))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if os.path.lexists(dst):  # a file over a file: os.replace below replaces it
            if os.path.isdir(dst) and not os.path.islink(dst):
                import shutil
                shutil.rmtree(dst)  # os.replace cannot replace a folder that is not empty
            elif os.path.isdir(src) and not os.path.islink(src):
                os.remove(dst)  # nor put a folder where a file is
        try:
            os.replace(src, dst)
        except OSError:  # another filesystem
            import shutil
            shutil.move(src, dst)
    session.hasher.invalidate(node.output_paths)


def tail(path: str | None, n: int = 12) -> str:
    """The last n lines of a log, indented (for a failure message)."""
    if not path:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 8192))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    return "\n".join("    " + line for line in lines[-n:])


def signal_name(n: int) -> str:
    import signal
    try:
        return signal.Signals(n).name
    except ValueError:
        return f"signal {n}"


def exit_problem(code: int, kind: str = "") -> str:
    """"killed by SIGKILL" for a recipe a signal ended (a negative status); a shell's
    128 + N says which signal ended a command in it."""
    if code < 0:
        return f"killed by {signal_name(-code)}"
    if kind == "shell" and 128 < code <= 128 + 64 and not signal_name(code - 128).startswith("signal"):
        return f"exited with status {code} (a command in it was killed by {signal_name(code - 128)})"
    return f"exited with status {code}"


def start_ns(fin) -> int:
    """When the attempt's process (or transfer) started, on the wall clock: its real
    lifetime ended when the executor reaped it."""
    end = fin.ended_ns or time.time_ns()
    return end - int(fin.duration * 1e9)


def touch_log(path: str, text: str = "") -> None:
    """The log file exists (with `text` appended): a failed attempt always has one."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "a") as f:
            if text:
                f.write(text + "\n")
    except OSError:
        pass


class AttemptLog:
    """The attempts of one build: their rows, log files, and outputs moved aside."""

    def __init__(self, session, build_id: int):
        self.session = session
        self.build_id = build_id
        self.logs = os.path.join(session.dir, "logs", f"{build_id:05d}")

    def log_path(self, name: str, attempt: int, recipe) -> str:
        return os.path.join(self.logs, f"{safe_filename(name)}.{attempt}."
                                       f"{safe_filename(recipe.name.replace('#', '_'))}.log")

    def relative(self, log: str) -> str:
        """A log's path as stored: relative to the project."""
        return os.path.relpath(log, self.session.project.root)

    def add(self, name: str, spec, fin, outcome: Outcome, failure: FailureClass | str | None,
            message: str | None, size: int | None = None, log: str | None = "", script_hash: str | None = None,
            key: str | None = None) -> None:
        """The row of one ended attempt; `log` "": the attempt's log, None: it has none."""
        self.session.state.add_attempt(
            build_id=self.build_id, node=name, recipe=spec.recipe.name, kind=spec.recipe.kind,
            attempt=spec.attempt, start_ns=start_ns(fin), duration=fin.duration, outcome=outcome, failure=failure,
            bytes=size, log=self.relative(spec.log) if log == "" else log, exit_code=fin.exit_code,
            message=message, script_hash=script_hash, key=key)

    def interrupted(self, name: str, attempt: int | None) -> None:
        """A node running when the build was interrupted: its partial outputs moved
        aside, a row that says so (its record stays marked incomplete)."""
        node = self.session.project.nodes[name]
        move_aside(self.session, node, "failed", f"{self.build_id:05d}-interrupted")
        self.session.state.add_attempt(build_id=self.build_id, node=name, recipe=None, kind=None,
                                       attempt=attempt, start_ns=time.time_ns(), duration=0.0,
                                       outcome=Outcome.CANCELLED, failure=FailureClass.TRANSIENT,
                                       message="interrupted")

    def move_previous(self, node) -> None:
        """Before an attempt: the outputs of the last one to .nodefile/previous/."""
        move_aside(self.session, node, "previous", "last")

    def move_failed(self, node, attempt: int) -> None:
        """After a failed attempt: what it wrote to .nodefile/failed/."""
        move_aside(self.session, node, "failed", f"{self.build_id:05d}-{attempt}")


class Uploads:
    """Fresh outputs into the local cache and to `push = true` stores. A failed push
    is a warning, never a failed build. `negative` is the build's shared set of
    (store, key) not to ask again; (store, "*"): the store is down."""

    def __init__(self, session, reporter, negative: set):
        self.session = session
        self.reporter = reporter
        self.negative = negative
        self.pool = None  # a one-thread pool, made at the first upload that needs it
        self._push_skipped: set[str] = set()  # stores down: their skipped pushes were reported

    def put(self, node, key: str, push: bool = True) -> None:
        """Cache the node's outputs (here when they are small, else in the upload
        thread) and, with `push`, push them (in the upload thread)."""
        session = self.session
        stores = self._push_stores(node) if push and session.project.stores else []
        if not (session.cache or stores):
            return
        try:
            entries = describe_outputs(session.project.root, node.output_paths, session.hasher)
        except OSError as e:
            self.reporter.warn(f"{node.name}: cannot describe outputs for the cache: {e}")
            return
        targets = ([session.cache] if session.cache else []) + [session.store(st.name) for st in stores]
        root, rep = session.project.root, self.reporter

        def upload(targets):
            for t in targets:
                try:
                    t.put(node.name, key, root, entries)
                except Exception as e:  # any backend error: warn, keep building
                    rep.warn(f"{node.name}: could not push to store '{t.name}': {str(e).splitlines()[0][:200]}")

        if session.cache and manifest_size({"outputs": entries}) <= INLINE_CACHE_BYTES:
            # small outputs go into the local cache right here: cheaper than handing
            # them to the upload thread (whose GIL hand-offs cost more than the copy)
            upload(targets[:1])
            targets = targets[1:]
        if not targets:
            return
        if self.pool is None:
            from concurrent.futures import ThreadPoolExecutor
            self.pool = ThreadPoolExecutor(1, thread_name_prefix="nodefile-upload")
        self.pool.submit(upload, targets)

    def _push_stores(self, node) -> list:
        """The `push = true` stores to push to; one found down earlier in the build is
        skipped (said once per store, then only with -v)."""
        stores = [st for st in self.session.project.stores.values() if st.push]
        for st in [st for st in stores if (st.name, "*") in self.negative]:
            say = self.reporter.detail if st.name in self._push_skipped else self.reporter.warn
            self._push_skipped.add(st.name)
            say(f"{node.name}: could not push to store '{st.name}': it was unreachable earlier in this build")
        return [st for st in stores if (st.name, "*") not in self.negative]

    def wait(self) -> None:
        """Every upload done (after the build)."""
        if self.pool is not None:
            self.pool.shutdown(wait=True)
