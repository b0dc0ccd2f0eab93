"""`node watch`: build, then rebuild what a change to the watched files makes stale.

The pieces, in the order a change flows through them:

- `watched_paths(project, names)` is the one place that says what the targets
  depend on: source inputs (files, directories, glob patterns), recipe scripts,
  the local files they import or source (the code closure, as in the key), and
  the Nodefiles and templates read. Never an output the tool writes, never
  `.nodefile/`.
- `Matcher` turns that set into the folders to observe (watchdog observes
  directories) and decides, for one event path, whether it matters.
- `Observers` keeps the watchdog observer's scheduled folders in step with the
  matcher, and falls back to polling when native events are unavailable.
- `Watcher` runs the loop: debounce a burst of events into one set of changed
  paths, reload the Nodefile, call `build()` (which decides what is stale), and
  report. While a build runs, a change to an input of a running recipe is passed
  to the runner at once (`notify_changed` + `wake`), so the scheduler cancels the
  recipe and runs it again with the new input in the same build.

Only the reporter prints. Invariant: the main thread alone builds and prints;
the observer thread only records changes and pokes the running build.
"""
from __future__ import annotations

import errno
import os
import re
import signal
import threading
import time
from .records import record, replace

from .engine import Options, build, resolve_targets
from .config.schema import norm
from .errors import ConfigError, ExitCode, NodefileError
from .graph import closure
from .report.console import fmt_seconds

DEBOUNCE = 0.3  # seconds of quiet that end a burst of events (write temp, rename, chmod)
MAX_DELAY = 2.0  # a burst that never goes quiet still starts a rebuild this long after it began
POLL_FALLBACK = 1.0  # polling interval when native events are unavailable
STATE_DIR = ".nodefile"
_GLOB = re.compile(r"[*?\[]")


# -- what is watched ---------------------------------------------------------------------
class _StatHasher:
    """As much of hashing.Hasher as the code closure needs (existence, a change
    stamp), without the state store: the watcher never holds the project's state."""

    def __init__(self, root: str):
        self.root = root

    def abspath(self, rel: str) -> str:
        return rel if os.path.isabs(rel) else os.path.join(self.root, rel)

    def hash(self, rel: str) -> str | None:
        try:
            st = os.stat(self.abspath(rel))
        except OSError:
            return None
        return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}:{st.st_ctime_ns}"


def watched_paths(project, names) -> frozenset[str]:
    """Project-relative paths a change to which can make one of `names` stale:
    source inputs, recipe scripts and the local files they import or source (the
    code closure, as in the key), and the Nodefiles and templates read.

    Conventions: a path ending in `/` is a directory whose whole tree is watched;
    a path with glob characters is a pattern (a file appearing, changing or
    vanishing where it matches counts); anything else is one file. Paths outside
    the project root (a template from elsewhere) start with `../`. Outputs and
    `.nodefile/` are never in the set.
    """
    from .closure import Closure
    imports = Closure(project.root, _StatHasher(project.root))
    out: set[str] = set()

    def add(p: str) -> None:
        p = _rel(project.root, p)
        if not is_output(project, p):
            out.add(p)

    for name in names:
        node = project.nodes[name]
        for entry in node.inputs:
            for piece in entry.source.split(", "):
                if _GLOB.search(piece) and piece not in project.nodes:
                    for k, v in node.wildcards:
                        piece = piece.replace("{" + k + "}", str(v))
                    out.add(norm(piece, node.cwd))
            for p in entry.paths:
                add(_as_dir_if_dir(project.root, p))
        for p in node.script_inputs:
            add(p)
        for r in node.recipes:
            for p in imports(node, r):
                add(p)
    for src in project.sources:
        out.add(_rel(project.root, src))
    for scan in project.scans:  # instances from files: a file appearing or vanishing there
        out.add(scan[2])
    for path, _, _ in project.missing:  # a missing source arriving unblocks its nodes
        out.add(path)
    return frozenset(out)


def _rel(root: str, p: str) -> str:
    if not os.path.isabs(p):
        return p
    return os.path.relpath(p, root).replace(os.sep, "/")


def is_output(project, rel: str) -> bool:
    """Whether a project-relative path is written by the tool (an output, or state)."""
    p = rel.rstrip("/")
    if p == STATE_DIR or p.startswith(STATE_DIR + "/"):
        return True
    if p in project.producers:
        return True
    return any(p.startswith(d) for d, _ in project.dir_outputs)


def _as_dir_if_dir(root: str, rel: str) -> str:
    if rel.endswith("/"):
        return rel
    return rel + "/" if os.path.isdir(os.path.join(root, rel)) else rel


def glob_regex(pattern: str) -> re.Pattern:
    """A glob as glob.glob(recursive=True) reads it: `*` and `?` stay within one
    folder, `**` crosses folders."""
    out, i, n = [], 0, len(pattern)
    while i < n:
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[" and "]" in pattern[i + 2:]:
            j = pattern.index("]", i + 2)
            body = pattern[i + 1:j]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body).replace("\\", "\\\\") + "]")
            i = j + 1
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out) + r"\Z")


def _glob_base(pattern: str) -> tuple[str, bool]:
    """The folder a glob lives in, and whether matches may lie deeper than it."""
    parts = pattern.split("/")
    for i, part in enumerate(parts):
        if _GLOB.search(part):
            return "/".join(parts[:i]), i < len(parts) - 1
    return "/".join(parts[:-1]), False


# -- matching events -------------------------------------------------------------------------
class Matcher:
    """The watched set of one project: which folders to observe, and which event
    paths matter. Immutable: the watcher swaps in a new one after a reload."""

    def __init__(self, root: str, paths, project=None):
        self.root = root
        self.project = project
        self.paths = frozenset(paths)
        self.files = frozenset(p for p in self.paths if not p.endswith("/") and not _GLOB.search(p))
        self.trees = tuple(sorted(p for p in self.paths if p.endswith("/") and not _GLOB.search(p)))
        self.globs = tuple((p, glob_regex(p)) for p in sorted(self.paths) if _GLOB.search(p))
        ancestors: dict[str, set[str]] = {}
        for p in self.files | set(t.rstrip("/") for t in self.trees) | {_glob_base(g)[0] for g, _ in self.globs}:
            d = os.path.dirname(p)
            while d and d not in ("..", "."):
                ancestors.setdefault(d, set()).add(p)
                d = os.path.dirname(d)
        self.ancestors = ancestors  # folder -> watched paths beneath it

    def describe(self) -> str:
        bits = [_count(len(self.files), "file")]
        if self.trees:
            bits.append(_count(len(self.trees), "folder"))
        if self.globs:
            bits.append(_count(len(self.globs), "pattern"))
        return ", ".join(bits)

    def rel(self, abspath: str) -> str:
        return os.path.relpath(abspath, self.root).replace(os.sep, "/")

    def match(self, abspath: str) -> tuple[str, frozenset[str]] | None:
        """(the changed path, the watched paths it stands for), or None when the
        event does not matter."""
        rel = self.rel(abspath)
        if self.project is not None and is_output(self.project, rel):
            return None
        if rel == STATE_DIR or rel.startswith(STATE_DIR + "/"):
            return None
        if rel in self.files:
            return rel, frozenset([rel])
        for t in self.trees:
            if rel == t.rstrip("/") or rel.startswith(t):
                return rel, frozenset([t.rstrip("/")])
        for g, rx in self.globs:
            if rx.match(rel):
                return rel, frozenset([rel])
        if rel in self.ancestors:  # a folder holding watched files was created, moved or deleted
            return rel + "/", frozenset(self.ancestors[rel])
        return None

    def folders(self) -> dict[str, bool]:
        """Absolute folder -> recursive, for every folder to observe. A folder that
        does not exist is replaced by its nearest existing ancestor."""
        want: dict[str, bool] = {}

        def add(rel_dir: str, recursive: bool) -> None:
            d = os.path.normpath(os.path.join(self.root, rel_dir))
            while not os.path.isdir(d):
                parent = os.path.dirname(d)
                if parent == d:
                    return
                d, recursive = parent, False
            want[d] = want.get(d, False) or recursive

        for f in self.files:
            add(os.path.dirname(f), False)
        for t in self.trees:
            add(t.rstrip("/"), True)
            add(os.path.dirname(t.rstrip("/")), False)  # the tree itself being replaced
        for g, _ in self.globs:
            add(*_glob_base(g))
        # a recursive watch covers every folder below it
        rec = [d for d, r in want.items() if r]
        return {d: r for d, r in want.items()
                if not any(d != top and d.startswith(top.rstrip(os.sep) + os.sep) for top in rec)}


def _count(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


# -- observers -----------------------------------------------------------------------------------
def _event_types():
    from watchdog import events as ev
    return [ev.FileCreatedEvent, ev.FileDeletedEvent, ev.FileModifiedEvent, ev.FileMovedEvent,
            ev.FileClosedEvent, ev.DirCreatedEvent, ev.DirDeletedEvent, ev.DirMovedEvent]


class Observers:
    """The watchdog observer and the folders it observes.

    `update(folders)` schedules what is new and unschedules what is gone; a
    folder replaced since it was scheduled (another inode) is scheduled anew.
    Native events (inotify, FSEvents, kqueue, ReadDirectoryChangesW) are used
    unless `poll` is given; when they fail (e.g. the inotify watch limit), it
    falls back to polling and says so through `warn`."""

    def __init__(self, on_event, poll: float | None, warn):
        from watchdog.events import FileSystemEventHandler

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event):
                on_event(event)

        self.handler = Handler()
        self.warn = warn
        self.poll = poll
        self.types = _event_types()
        self.observer = self._make(poll)
        self.observer.start()
        self.current: dict[str, tuple] = {}  # folder -> (watch, recursive, inode)
        self.unwatchable: set[str] = set()  # folders already reported as impossible to observe

    @property
    def polling(self) -> bool:
        from watchdog.observers.polling import PollingObserver
        return isinstance(self.observer, PollingObserver)

    @staticmethod
    def _make(poll):
        if poll is not None:
            from watchdog.observers.polling import PollingObserver
            return PollingObserver(timeout=poll)
        from watchdog.observers import Observer
        return Observer()

    def update(self, folders: dict[str, bool]) -> None:
        for d, (watch, rec, ino) in list(self.current.items()):
            if folders.get(d) != rec or _inode(d) != ino:
                self._unschedule(d)
        for d, rec in folders.items():
            if d not in self.current:
                self._schedule(d, rec, folders)

    def _schedule(self, d: str, rec: bool, folders) -> None:
        ino = _inode(d)
        if ino is None:
            return  # vanished since folders() looked: the next cycle tries again
        try:
            watch = self.observer.schedule(self.handler, d, recursive=rec, event_filter=self.types)
        except FileNotFoundError:
            return
        except OSError as e:
            if not self.polling and e.errno in _NO_NATIVE:
                self._fall_back(e, folders)
            elif d not in self.unwatchable:  # e.g. no permission: say it once, keep the rest
                self.unwatchable.add(d)
                self.warn(f"cannot watch {d}: {e.strerror or e}")
            return
        self.unwatchable.discard(d)
        self.current[d] = (watch, rec, ino)

    def _unschedule(self, d: str) -> None:
        watch = self.current.pop(d)[0]
        try:
            self.observer.unschedule(watch)
        except KeyError:
            pass

    def _fall_back(self, error: OSError, folders) -> None:
        self.warn(f"native file events are unavailable ({error.strerror or error}); "
                  f"polling every {POLL_FALLBACK:g}s instead (--poll SECONDS sets the interval)")
        self.stop()
        self.current.clear()
        self.observer = self._make(POLL_FALLBACK)
        self.observer.start()
        self.update(folders)

    def stop(self) -> None:
        try:
            self.observer.stop()
            self.observer.join(timeout=5)
        except RuntimeError:
            pass


# the watch or instance limit (inotify), no such facility: native events are out, polling works
_NO_NATIVE = {errno.ENOSPC, errno.EMFILE, errno.ENFILE, errno.ENOSYS}


def _inode(d: str):
    try:
        st = os.stat(d)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


# -- the loop ------------------------------------------------------------------------------------
@record
class Cycle:
    """What one cycle did, for the exit status: 0 built, 1 a recipe failed,
    2 the Nodefile or a target is invalid, 130 interrupted."""

    status: int = ExitCode.OK
    interrupted: bool = False


class Watcher:
    """Build, then rebuild on change until interrupted. `run()` returns the exit
    status: that of the last finished cycle (0, 1 or 2), or 130 when Ctrl-C
    interrupted a running build."""

    def __init__(self, load, nodefile: str, targets, options: Options, reporter,
                 poll: float | None = None, debounce: float = DEBOUNCE):
        self.load = load  # () -> Project; raises ConfigError when the Nodefile is invalid
        self.nodefile = nodefile
        self.root = os.path.dirname(nodefile)
        self.targets = list(targets or [])
        self.options = options
        self.rep = reporter
        self.poll = poll
        self.debounce = debounce
        self.project = None  # the last valid project
        self.matcher = Matcher(self.root, {os.path.basename(nodefile)})
        self.observers: Observers | None = None
        self._cond = threading.Condition()
        self._pending: dict[str, bool] = {}  # changed path -> seen during a build; in order seen
        self._building = False  # set by the main thread around build()
        self._first_at = self._last_at = 0.0
        self._active = None  # (runner, executor) while a build runs

    # -- observer thread ----------------------------------------------------------------
    def on_event(self, event) -> None:
        """Called on the observer thread: record relevant changes; poke a running build."""
        if event.is_directory and event.event_type == "modified":
            return
        hits = [self.matcher.match(p) for p in (event.src_path, getattr(event, "dest_path", "")) if p]
        hits = [h for h in hits if h]
        if not hits:
            return
        keys = frozenset().union(*(k for _, k in hits))
        # a script outside the project (a shared template's) is named by its absolute path
        keys |= {os.path.normpath(os.path.join(self.matcher.root, k)) for k in keys if k.startswith("../")}
        with self._cond:
            now = time.monotonic()
            if not self._pending:
                self._first_at = now
            for rel, _ in hits:
                self._pending[rel] = self._pending.get(rel, True) and self._building
            self._last_at = now
            active = self._active
            self._cond.notify_all()
        if active is not None:
            runner, executor = active
            runner.notify_changed(keys)
            try:
                executor.wake()
            except OSError:
                pass  # the build is ending; the change is pending for the next cycle anyway

    def _on_runner(self, runner, executor) -> None:
        with self._cond:
            self._active = (runner, executor)

    # -- main thread --------------------------------------------------------------------
    def run(self) -> int:
        previous = signal.signal(signal.SIGTERM, _interrupt)
        last = Cycle()
        workers = None
        try:
            self._start()
            workers = self._workers()
            last = self.cycle(None)
            while not last.interrupted:
                last = self.cycle(*self.wait())
        except KeyboardInterrupt:
            pass  # while idle: the last cycle's status stands
        finally:
            signal.signal(signal.SIGTERM, previous)
            if self.observers is not None:
                self.observers.stop()
            if workers is not None:
                workers.close()
        self.rep.info("stopped watching" + (" (a build was interrupted)" if last.interrupted else ""))
        return ExitCode.INTERRUPTED if last.interrupted else last.status

    def _workers(self):
        """Warm workers that live for the whole session (started when recipes ask)."""
        if self.options.cold or (self.project is not None and not self.project.warm):
            return None
        from .workers.pool import Workers
        from .workers.preload import find

        def preload(lang):
            project = self.project
            return find(project, lang, None, dict(project.preload).get(lang, ())) if project else []
        workers = Workers(os.path.join(self.root, ".nodefile"), None, f"watch.{os.getpid()}", preload)
        self.options = replace(self.options, workers=workers)
        return workers

    def _start(self) -> None:
        """Load the project and begin observing before the first build, so that a
        change during that build is seen. Unknown targets are a usage error."""
        try:
            self.project = self.load()
        except ConfigError:
            pass  # the first cycle reports it, then waits for a fix
        if self.project is not None:
            resolve_targets(self.project, self.targets)
            self._use(self.project)
        self.observers = Observers(self.on_event, self.poll, self.rep.warn)
        self.observers.update(self.matcher.folders())

    def _use(self, project) -> None:
        names = closure(project.nodes, resolve_targets(project, self.targets))
        self.matcher = Matcher(project.root, watched_paths(project, names), project)

    def wait(self) -> tuple[list[str], bool]:
        """Block until a change arrives, then until the burst goes quiet for the
        debounce period (or MAX_DELAY after it began). Returns the changed paths,
        and whether every one of them changed while the last build ran."""
        with self._cond:
            while not self._pending:
                self._cond.wait(0.5)  # short waits keep Ctrl-C prompt
            while True:
                now = time.monotonic()
                left = min(self._last_at + self.debounce, self._first_at + max(MAX_DELAY, self.debounce)) - now
                if left <= 0:
                    break
                self._cond.wait(left)
            changed, self._pending = self._pending, {}
        return list(changed), all(changed.values())

    def cycle(self, changed: list[str] | None, during_build: bool = False) -> Cycle:
        """Reload the Nodefile, rebuild what is stale, report; never raises for a
        user-fixable problem."""
        t0 = time.monotonic()
        if changed:
            # a change seen during a build may already be built (a cancelled recipe was re-run)
            self.rep.info(("changed during the last build: " if during_build else "changed: ") + _list(changed))
        try:
            result = self._reload_and_build(changed, t0)
        except NodefileError as e:
            self._print_errors(e, "cannot build")
            result = Cycle(ExitCode.USAGE)
        except OSError as e:  # a file vanished mid-build, a full disk: say so, keep watching
            self.rep.error(f"build stopped: {e}")
            result = Cycle(ExitCode.FAILED)
        if not result.interrupted:
            self.observers.update(self.matcher.folders())
            self.rep.info(f"watching {self.matcher.describe()} (Ctrl-C to stop)")
        return result

    def _reload_and_build(self, changed, t0) -> Cycle:
        try:
            project = self.load()
        except ConfigError as e:
            self._print_errors(e, "the Nodefile is invalid")
            if self.project is not None:
                self.rep.info("keeping the last valid Nodefile; fix it and save to rebuild")
            return Cycle(ExitCode.USAGE)
        if changed and any(os.path.normpath(os.path.join(self.root, c)) in project.sources for c in changed):
            self.rep.info(f"reloaded {os.path.relpath(project.file)} ({_count(len(project.nodes), 'node')})")
        self._use(project)  # raises UnknownTargetError when a target is gone
        self.project = project
        self.observers.update(self.matcher.folders())  # before the build: see changes made during it
        opts = replace(self.options, on_runner=self._on_runner, dry_run=False)
        self._building = True
        try:
            summary = build(project, self.targets, opts, self.rep)
        except KeyboardInterrupt:  # outside the scheduler loop: no recipe is running
            return Cycle(ExitCode.INTERRUPTED, True)
        finally:
            with self._cond:
                self._active = None
                self._building = False
        took = fmt_seconds(time.monotonic() - t0)
        if summary.interrupted:
            return Cycle(ExitCode.INTERRUPTED, True)
        if summary.failed or summary.skipped:
            bits = [f"failed: {_list(summary.failed)}"] if summary.failed else []
            if summary.built:
                bits.append(f"rebuilt {_list(summary.built)}")
            if summary.skipped:
                bits.append(f"not built {_list(summary.skipped)}")
            self.rep.info(f"{'; '.join(bits)} ({took}); the next change retries")
            return Cycle(ExitCode.FAILED)
        if summary.built:
            self.rep.info(f"rebuilt {_list(summary.built)} in {took}")
        else:
            self.rep.info(f"nothing to rebuild ({took})")
        return Cycle(ExitCode.OK)

    def _print_errors(self, e: NodefileError, what: str) -> None:
        lines = [line for line in str(e).splitlines() if line.strip()]
        self.rep.error(f"{what}:" if len(lines) > 1 else f"{what}: {lines[0] if lines else e}")
        if len(lines) > 1:
            for line in lines:
                self.rep.error(f"  {line}")


def _list(items, most: int = 6) -> str:
    items = list(items)
    shown = ", ".join(items[:most])
    return shown + (f" and {len(items) - most} more" if len(items) > most else "")


def _interrupt(signum, frame):
    raise KeyboardInterrupt
