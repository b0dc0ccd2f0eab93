"""The Runner's parts (runner.py, attempts.py): a node's run record, watch-mode
changes, what a failed attempt's message says, its log, and outputs moved aside."""
from __future__ import annotations

import os
import signal
from types import SimpleNamespace

from nodefile.attempts import AttemptLog, exit_problem, move_aside, start_ns, tail, touch_log
from nodefile.runner import Changes, NodeRun


def test_a_node_run_starts_with_no_attempt_and_its_own_retry_counts():
    a, b = NodeRun("k1", {"input:x": "h"}), NodeRun("k2", {})
    assert (a.attempts, a.reruns, a.order, a.choice, a.probe) == (0, 0, [], None, None)
    a.tries[0] = 1
    assert b.tries == {}  # not shared between nodes


def test_a_change_counts_only_for_attempts_prepared_before_it():
    changes = Changes()
    before = changes.now()
    changes.add(["data/raw.csv", "out/"])
    after = changes.now()
    assert changes.since(before, ["data/raw.csv"])
    assert changes.since(before, ["out"])  # a folder is known without its slash
    assert not changes.since(after, ["data/raw.csv"])  # already read by the later attempt
    assert not changes.since(before, ["other.csv"])


def test_exit_problem_names_the_signal_that_ended_a_recipe():
    assert exit_problem(1) == "exited with status 1"
    assert exit_problem(-signal.SIGKILL) == "killed by SIGKILL"
    assert exit_problem(128 + signal.SIGTERM, "shell") == \
        "exited with status 143 (a command in it was killed by SIGTERM)"
    assert exit_problem(143, "python") == "exited with status 143"  # only a shell's status means that
    assert exit_problem(128 + 99, "shell") == "exited with status 227"  # no such signal


def test_the_tail_of_a_log_is_its_last_lines_indented(tmp_path):
    log = tmp_path / "n.1.py.log"
    log.write_text("".join(f"line {i}\n" for i in range(20)))
    assert tail(str(log), 3) == "    line 17\n    line 18\n    line 19"
    assert tail(str(tmp_path / "missing.log")) == ""
    assert tail(None) == ""


def test_a_failed_attempt_always_has_a_log(tmp_path):
    log = tmp_path / "logs" / "00001" / "n.1.py.log"
    touch_log(str(log), "could not start: no such file")
    touch_log(str(log))
    assert log.read_text() == "could not start: no such file\n"


def test_an_attempt_started_its_duration_before_it_was_reaped():
    fin = SimpleNamespace(ended_ns=10_000_000_000, duration=2.5)
    assert start_ns(fin) == 7_500_000_000


def _session(root):
    invalidated = []
    hasher = SimpleNamespace(invalidate=lambda paths: invalidated.extend(paths))
    project = SimpleNamespace(root=str(root), nodes={})
    return SimpleNamespace(project=project, dir=str(root / ".nodefile"), hasher=hasher), invalidated


def test_log_paths_are_per_build_attempt_and_recipe(tmp_path):
    session, _ = _session(tmp_path)
    log = AttemptLog(session, 7)
    recipe = SimpleNamespace(name="python#2")
    path = log.log_path("fit[model=lin]", 3, recipe)
    assert path == os.path.join(str(tmp_path), ".nodefile", "logs", "00007", "fit[model=lin].3.python_2.log")
    assert log.relative(path) == os.path.join(".nodefile", "logs", "00007", "fit[model=lin].3.python_2.log")
    other = log.log_path("a/b", 1, recipe)  # never a path separator in the file's name
    assert os.path.dirname(other) == os.path.dirname(path) and "/" not in os.path.basename(other)


def test_outputs_are_moved_aside_files_and_folders_and_nothing_else(tmp_path):
    session, invalidated = _session(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "part1.csv").write_text("1")
    (tmp_path / "model.pkl").write_text("old")
    node = SimpleNamespace(name="fit", output_paths=["model.pkl", "out/", "never_written.txt"])
    move_aside(session, node, "failed", "00002-1")
    base = tmp_path / ".nodefile" / "failed" / "fit" / "00002-1"
    assert (base / "model.pkl").read_text() == "old"
    assert (base / "out" / "part1.csv").read_text() == "1"
    assert not (tmp_path / "model.pkl").exists() and not (tmp_path / "out").exists()
    assert not (base / "never_written.txt").exists()
    assert invalidated == node.output_paths  # the next stat sees they are gone

    (tmp_path / "model.pkl").write_text("new")  # the next failure of the same attempt stamp
    move_aside(session, node, "failed", "00002-1")
    assert (base / "model.pkl").read_text() == "new"
