"""`node watch`: a real watcher process in a temp project, real file edits.

Each test starts `python -m nodefile watch` with its output in a file, edits
files as a user (or an editor) would, and polls for what must follow; the
watcher is always stopped (SIGINT, then SIGKILL) when the test ends. Every
recipe appends its node's name to runs.log (the counter file).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import base_env, runs, wait_for, write

# a -> b, both from source in1.txt; c from source in2.txt
THREE = {
    "Nodefile.toml": """
        [nodes.a]
        outputs = "a.txt"
        inputs = ["in1.txt"]
        shell = "echo a >> runs.log; cat in1.txt > a.txt"

        [nodes.b]
        outputs = "b.txt"
        inputs = ["a"]
        shell = "echo b >> runs.log; tr a-z A-Z < a.txt > b.txt"

        [nodes.c]
        outputs = "c.txt"
        inputs = ["in2.txt"]
        shell = "echo c >> runs.log; cat in2.txt > c.txt"
        """,
    "in1.txt": "hello\n",
    "in2.txt": "two\n",
}


class Watch:
    """One `node watch` process; its stdout and stderr go to one file outside the project."""

    def __init__(self, project, log, *args):
        self.project = project
        self.log = log
        self.out = open(log, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "nodefile", "watch", *map(str, args)],
                                     cwd=str(project), stdout=self.out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=base_env())

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def count(self, what: str) -> int:
        return self.text().count(what)

    def cycles(self) -> int:
        """Finished cycles: each ends with `watching N files`."""
        return self.count("watching ")

    def wait_cycles(self, n: int, timeout: float = 10) -> None:
        wait_for(lambda: self.cycles() >= n or self.proc.poll() is not None, timeout, what=f"{n} cycle(s)")
        assert self.cycles() >= n, self.dump()

    def interrupt(self, timeout: float = 10) -> int:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()

    def dump(self) -> str:
        return f"--- watch output (exit {self.proc.poll()}) ---\n{self.text()}"


@pytest.fixture
def watch(tmp_path):
    """watch(files, *args) -> a running Watch in a fresh project; stopped at teardown."""
    started: list[Watch] = []

    def start(files, *args) -> Watch:
        project = write(tmp_path / "project", files)
        w = Watch(project, tmp_path / "watch.out", *args)
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()


def _read(path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for init to reap it is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: trust kill()
        return True


@pytest.mark.parametrize("mode", [[], ["--poll", "0.1"]], ids=["native", "polling"])
def test_edit_rebuilds_what_depends_on_it_and_nothing_else(watch, mode):
    w = watch(THREE, *mode)
    p = w.project
    w.wait_cycles(1)
    assert sorted(runs(p)) == ["a", "b", "c"], w.dump()
    assert "watching 3 files" in w.text(), w.dump()  # in1.txt, in2.txt, Nodefile.toml
    before = len(runs(p))
    (p / "in1.txt").write_text("world\n")
    wait_for(lambda: _read(p / "b.txt") == "WORLD\n", 3, what="b.txt to reflect in1.txt")
    w.wait_cycles(2)
    assert runs(p)[before:] == ["a", "b"], w.dump()
    assert "changed: in1.txt" in w.text(), w.dump()
    assert "rebuilt a, b" in w.text(), w.dump()
    assert w.proc.poll() is None, w.dump()


def test_save_through_a_temp_file_and_rename_rebuilds_once(watch):
    """An editor's save: move the original to a backup, write a temp file, rename
    it over the original, chmod. One burst, one cycle, one rebuild."""
    w = watch(THREE)
    p = w.project
    w.wait_cycles(1)
    before = len(runs(p))
    os.rename(p / "in1.txt", p / "in1.txt~")
    (p / ".in1.txt.swp").write_text("saved\n")
    os.replace(p / ".in1.txt.swp", p / "in1.txt")
    os.chmod(p / "in1.txt", 0o644)
    wait_for(lambda: _read(p / "b.txt") == "SAVED\n", 3, what="b.txt to reflect the save")
    w.wait_cycles(2)
    # a sentinel change: any second cycle for the save would come before its cycle
    (p / "in2.txt").write_text("sentinel\n")
    w.wait_cycles(3)
    assert runs(p)[before:] == ["a", "b", "c"], w.dump()
    changed = [line for line in w.text().splitlines() if line.startswith("changed:")]
    assert changed == ["changed: in1.txt", "changed: in2.txt"], w.dump()
    assert "error" not in w.text().lower(), w.dump()


def test_touch_without_changing_bytes_rebuilds_nothing(watch):
    w = watch(THREE)
    p = w.project
    w.wait_cycles(1)
    before = len(runs(p))
    later = time.time() + 5
    os.utime(p / "in1.txt", (later, later))
    (p / "in2.txt").write_text("two\n")  # the same bytes, written again: a modify event
    w.wait_cycles(2)
    assert "nothing to rebuild" in w.text(), w.dump()
    assert runs(p)[before:] == [], w.dump()


def test_input_edited_while_its_recipe_runs_cancels_and_reruns_it(watch):
    """The recipe reads its input at the start and writes its output 2 s later:
    an edit in between must cancel it and run it again with the new input."""
    w = watch({
        "Nodefile.toml": """
            [nodes.slow]
            outputs = "out.txt"
            inputs = ["in.txt"]
            shell = "echo start >> events.log; v=$(cat in.txt); sleep 2; echo $v > out.txt; echo end >> events.log"
            """,
        "in.txt": "old\n",
    })
    p = w.project
    wait_for(lambda: (_read(p / "events.log") or "").split() == ["start"], 10, what="the recipe to start")
    (p / "in.new").write_text("new\n")  # one change, as an editor saves: a truncate and a write could
    os.replace(p / "in.new", p / "in.txt")  # be seen apart under load (and rightly run it a third time)
    wait_for(lambda: _read(p / "out.txt") == "new\n", 10, what="out.txt from the new input")
    w.wait_cycles(1)
    # the first run never reached its end: it was cancelled, not left to finish
    assert (p / "events.log").read_text().split() == ["start", "start", "end"], w.dump()
    assert "changed while it ran" in w.text(), w.dump()


def test_invalid_nodefile_prints_errors_and_keeps_watching(watch):
    w = watch(THREE)
    p = w.project
    w.wait_cycles(1)
    good = (p / "Nodefile.toml").read_text()
    (p / "Nodefile.toml").write_text(good.replace("[nodes.b]", "[nodes.b"))
    w.wait_cycles(2)
    assert "error:" in w.text() and "Nodefile.toml" in w.text(), w.dump()
    assert w.proc.poll() is None, w.dump()
    before = len(runs(p))
    (p / "in1.txt").write_text("edited while broken\n")  # still watched; nothing builds
    w.wait_cycles(3)
    assert runs(p)[before:] == [], w.dump()
    (p / "Nodefile.toml").write_text(good)
    wait_for(lambda: _read(p / "b.txt") == "EDITED WHILE BROKEN\n", 5, what="the build to resume")
    w.wait_cycles(4)
    assert runs(p)[before:] == ["a", "b"], w.dump()
    assert w.interrupt() == 0, w.dump()  # the last cycle succeeded


def test_failing_recipe_keeps_watching_and_the_next_change_retries(watch):
    w = watch({
        "Nodefile.toml": """
            [nodes.check]
            outputs = "ok.txt"
            inputs = ["in.txt"]
            shell = "echo check >> runs.log; if grep -q bad in.txt; then echo 'found bad'; exit 3; fi; cp in.txt ok.txt"
            """,
        "in.txt": "bad\n",
    })
    p = w.project
    w.wait_cycles(1)
    assert "FAILED check" in w.text() and "found bad" in w.text(), w.dump()
    (p / "in.txt").write_text("good\n")
    wait_for(lambda: _read(p / "ok.txt") == "good\n", 5, what="the retry to succeed")
    w.wait_cycles(2)
    (p / "in.txt").write_text("bad again\n")
    w.wait_cycles(3)
    assert runs(p) == ["check"] * 3, w.dump()
    assert w.interrupt() == 1, w.dump()  # the last cycle failed
    assert "Traceback" not in w.text(), w.dump()


def test_sigint_during_a_build_stops_the_recipe_and_its_children(watch):
    w = watch({
        "Nodefile.toml": """
            [nodes.long]
            outputs = "out.txt"
            inputs = ["in.txt"]
            shell = "sleep 30 & echo $! > child.pid; echo $$ > recipe.pid; wait"
            """,
        "in.txt": "x\n",
    })
    p = w.project
    wait_for(lambda: (_read(p / "recipe.pid") or "").strip() and (_read(p / "child.pid") or "").strip(),
             10, what="the recipe to start")
    pids = [int((p / f).read_text()) for f in ("recipe.pid", "child.pid")]
    assert w.interrupt() == 130, w.dump()  # a build was interrupted
    wait_for(lambda: not any(_alive(pid) for pid in pids), 5, what="the recipe's processes to end")
    assert "Traceback" not in w.text(), w.dump()


def test_sigint_while_idle_exits_cleanly(watch):
    w = watch(THREE)
    w.wait_cycles(1)
    assert w.interrupt() == 0, w.dump()
    assert "stopped watching" in w.text(), w.dump()
    assert "Traceback" not in w.text(), w.dump()


# -- in-process: what is watched, and the polling fallback -----------------------------------
def test_watched_paths_are_the_sources_scripts_imports_and_nodefile_never_outputs(tmp_path):
    from nodefile.config import load_project
    from nodefile.watch import Matcher, watched_paths
    p = write(tmp_path, {
        "Nodefile.toml": """
            [nodes.clean]
            outputs = "out/clean.csv"
            inputs = { raw = "data/raw.csv", more = "extra/*.csv", tree = "refs" }
            python = "tasks/clean.py"

            [nodes.model]
            outputs = "out/model.txt"
            inputs = ["clean", "cfg.toml"]
            shell = "cat {inputs} > {outputs}"

            [nodes.other]
            outputs = "other.txt"
            inputs = ["unrelated.txt"]
            shell = "cp {inputs} {outputs}"
            """,
        "data/raw.csv": "x\n",
        "extra/a.csv": "a\n",
        "refs/r1.txt": "r\n",
        "cfg.toml": "k = 1\n",
        "unrelated.txt": "u\n",
        "tasks/clean.py": "import helpers.io\n",
        "tasks/helpers/__init__.py": "",
        "tasks/helpers/io.py": "",
    })
    project = load_project(str(p))
    paths = watched_paths(project, ["clean", "model"])
    assert paths == {"Nodefile.toml", "data/raw.csv", "extra/*.csv", "extra/a.csv", "refs/", "cfg.toml",
                     "tasks/clean.py", "tasks/helpers/__init__.py", "tasks/helpers/io.py"}
    m = Matcher(project.root, paths, project)
    root = str(p)
    assert m.match(f"{root}/data/raw.csv") == ("data/raw.csv", {"data/raw.csv"})
    assert m.match(f"{root}/extra/new.csv") == ("extra/new.csv", {"extra/new.csv"})  # a new glob match
    assert m.match(f"{root}/refs/deep/r2.txt") == ("refs/deep/r2.txt", {"refs"})
    assert m.match(f"{root}/data") == ("data/", {"data/raw.csv"})  # the folder replaced or removed
    for ignored in ("out/clean.csv", "out/model.txt", ".nodefile/state.db", "unrelated.txt", "data/other.csv",
                    "extra/a.txt", "extra/sub/b.csv"):
        assert m.match(f"{root}/{ignored}") is None, ignored
    folders = m.folders()
    assert folders[os.path.join(root, "refs")] is True
    assert folders[os.path.join(root, "extra")] is False
    assert os.path.join(root, "out") not in folders


def test_native_events_unavailable_falls_back_to_polling(tmp_path, monkeypatch):
    import errno
    import threading

    from watchdog.observers.polling import PollingObserver

    from nodefile import watch as w

    class NoNative:  # stands for a native observer that cannot add a watch
        def start(self):
            pass

        def stop(self):
            pass

        def join(self, timeout=None):
            pass

        def schedule(self, *a, **kw):
            raise OSError(errno.ENOSPC, "inotify watch limit reached")

    monkeypatch.setattr(w.Observers, "_make", staticmethod(
        lambda poll: NoNative() if poll is None else PollingObserver(timeout=0.05)))
    seen = threading.Event()
    warnings: list[str] = []
    obs = w.Observers(lambda event: seen.set() if event.src_path.endswith("f.txt") else None, None,
                      warnings.append)
    try:
        obs.update({str(tmp_path): False})
        assert obs.polling and str(tmp_path) in obs.current
        assert warnings and "polling" in warnings[0] and "watch limit" in warnings[0]
        time.sleep(0.1)  # the first snapshot
        (tmp_path / "f.txt").write_text("x")
        assert seen.wait(5), "no event from the polling observer"
    finally:
        obs.stop()
