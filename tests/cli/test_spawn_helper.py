"""The spawn helper: a build with many recipes hands their starts to a helper
process (executors/spawner.py). The same user-visible behaviour must hold as
when the build starts them itself: logs, failures, timeouts, Ctrl-C of recipes
and their children, sub-pipeline folders, watch-mode cancels. Those tests are
run again here with NODEFILE_SPAWN_HELPER_AFTER=0 (every recipe through the
helper); what only the helper does is tested below them."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

import test_failures
import test_parallel
import test_real_projects
import test_watch
from conftest import base_env, describe, run, wait_for, write
from test_parallel import SLEEPER, alive


@pytest.fixture(autouse=True)
def every_recipe_through_the_helper(monkeypatch):
    monkeypatch.setenv("NODEFILE_SPAWN_HELPER_AFTER", "0")


# the behaviour of a build that starts its recipes itself, through the helper
def test_failing_script_names_node_error_and_log(tmp_path):
    test_failures.test_failing_python_script_names_node_error_and_log(tmp_path)


def test_exit_0_without_output_fails(tmp_path):
    test_failures.test_recipe_that_exits_0_without_its_output_fails_the_node(tmp_path)


def test_log_shows_every_attempt(tmp_path):
    test_failures.test_log_shows_every_attempt_of_the_last_build_newest_last(tmp_path)


def test_timeouts_and_failed_outputs_moved_aside(tmp_path):
    test_failures.test_failed_attempt_outputs_are_moved_aside_not_left_in_place(tmp_path)


def test_sigint_stops_recipes_and_their_children(tmp_path):
    test_parallel.test_sigint_stops_running_recipes_keeps_finished_nodes_and_exits_130(tmp_path)


def test_sub_pipeline_recipes_run_in_their_folder(tmp_path):
    test_real_projects.test_sub_pipeline_is_one_dag_with_its_parent(tmp_path)


def test_watch_cancels_a_recipe_whose_input_changes(watch):
    test_watch.test_input_edited_while_its_recipe_runs_cancels_and_reruns_it(watch)


def test_watch_sigint_stops_the_recipe_and_its_children(watch):
    test_watch.test_sigint_during_a_build_stops_the_recipe_and_its_children(watch)


watch = test_watch.watch


# what only the helper does
def test_a_build_killed_with_9_has_its_recipes_ended_by_the_helper(tmp_path):
    """kill -9 of the build closes the helper's pipe: the helper ends the recipes
    it started (SIGTERM to their groups) and exits, leaving no orphan."""
    write(tmp_path, {
        "Nodefile.toml": """
            [nodes.slow1]
            outputs = "slow1.txt"
            python = "tasks/sleeper.py"
            """,
        "tasks/sleeper.py": SLEEPER,
    })
    pidfile = tmp_path / "pids/slow1.pid"
    proc = subprocess.Popen([sys.executable, "-m", "nodefile", "build"], cwd=tmp_path, env=base_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    recipe = helper = None
    try:
        wait_for(lambda: pidfile.exists() or proc.poll() is not None, 20, what="the slow recipe to start")
        recipe = int(pidfile.read_text())
        helper = _parent(recipe)
        assert helper != proc.pid and _parent(helper) == proc.pid, "the recipe was not started by the helper"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        wait_for(lambda: not alive(recipe), 10, what="the helper to end the recipe")
        wait_for(lambda: not alive(helper), 10, what="the helper to exit")
        assert not (tmp_path / "slow1.txt").exists()
        nxt = run(tmp_path, "build", "-n", check=0)
        assert "would run  slow1" in nxt.stdout, describe(nxt)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        for pid in (recipe, helper):
            if pid is not None and alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_big_build_starts_its_first_recipes_itself_and_the_rest_through_the_helper(tmp_path, monkeypatch):
    """By default the 8th process of a build starts the helper: a one-recipe
    rebuild never pays for it, a big build stops waiting on each exec. Every
    recipe records the process that started it."""
    monkeypatch.delenv("NODEFILE_SPAWN_HELPER_AFTER")
    nodes = "".join(f"""
[nodes.n{i}]
outputs = "out/n{i}"
shell = "sleep 0.05; echo $PPID > {{outputs}}"
""" for i in range(40))
    write(tmp_path, {"Nodefile.toml": nodes})
    proc = subprocess.Popen([sys.executable, "-m", "nodefile", "build", "-j", "2"], cwd=tmp_path, env=base_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, out + err
    starters = [int((tmp_path / f"out/n{i}").read_text()) for i in range(40)]
    mine = [i for i, p in enumerate(starters) if p == proc.pid]
    assert len(mine) >= 7, starters  # the first ones: started by the build
    others = set(starters) - {proc.pid}
    assert len(others) == 1, starters  # the rest: by one helper
    assert len(mine) < 40 - 10, starters
    # quiet recipes that succeed leave no log file; `node log` says so
    assert not list((tmp_path / ".nodefile").rglob("*.log"))
    log = run(tmp_path, "log", "n39", check=0)
    assert "(no output)" in log.stdout, describe(log)


def test_output_is_copied_to_the_log_in_order_and_whole(tmp_path):
    """A recipe that writes more than a pipe holds, on stdout and stderr, gets all
    of it in its log, in order."""
    write(tmp_path, {
        "Nodefile.toml": """
            [nodes.loud]
            outputs = "loud.txt"
            python = "loud.py"
            """,
        "loud.py": """
            import sys
            import nodefile
            for i in range(20000):
                (sys.stdout if i % 2 else sys.stderr).write(f"line {i:05d} " + "x" * 40 + "\\n")
            open(nodefile.job().outputs[0], "w").write("done")
            """,
    })
    run(tmp_path, "build", check=0)
    logs = list((tmp_path / ".nodefile/logs").rglob("*.log"))
    assert len(logs) == 1, logs
    lines = logs[0].read_text().splitlines()
    assert [int(line.split()[1]) for line in lines] == list(range(20000))


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def test_a_program_the_helper_cannot_start_fails_the_node_with_the_reason_in_its_log(tmp_path):
    write(tmp_path, {
        "Nodefile.toml": """
            [project]
            python = "/nonexistent/bin/python"

            [nodes.a]
            outputs = "a.txt"
            python = "a.py"
            """,
        "a.py": "open('a.txt', 'w').write('a')\n",
    })
    proc = run(tmp_path, "build", check=1)
    assert "cannot start /nonexistent/bin/python" in proc.stderr, describe(proc)
    assert "Traceback" not in proc.stderr, describe(proc)
    log = run(tmp_path, "log", "a", check=0)
    assert "cannot start /nonexistent/bin/python" in log.stdout, describe(log)


# A recipe waiting for a slot is handed to the helper as the successor of a running
# one and started the moment that one ends (executors/local.py, submit_after).
def _timed(name: str, seconds: float, extra: str = "") -> str:
    return f"""
[nodes.{name}]
outputs = "out/{name}"
shell = "s=$(date +%s.%N); sleep {seconds}; echo \\"{name} $s $(date +%s.%N)\\" >> times.log; touch {{outputs}}"
{extra}
"""


def test_recipes_handed_ahead_to_the_helper_still_run_at_most_j_at_once(tmp_path):
    write(tmp_path, {"Nodefile.toml": "".join(_timed(f"n{i}", 0.05) for i in range(12))})
    proc = run(tmp_path, "build", "-j", "2", check=0)
    iv = test_parallel.read_intervals(tmp_path)
    assert len(iv) == 12 and len(list((tmp_path / "out").iterdir())) == 12, describe(proc)
    assert test_parallel.max_overlap(iv) == 2, f"{iv}\n{describe(proc)}"


def test_a_failure_stops_the_build_before_the_recipe_waiting_behind_it_starts(tmp_path):
    """-j 1: while `bad` runs, the next node waits in the helper behind it. `bad`
    fails, so the build stops: the waiting node must never start."""
    write(tmp_path, {"Nodefile.toml": """
[nodes.bad]
outputs = "out/bad"
shell = "sleep 0.3; exit 1"
priority = 10
""" + _timed("a", 0.01) + _timed("b", 0.01)})
    proc = run(tmp_path, "build", "-j", "1", check=1)
    assert "bad" in proc.stderr, describe(proc)
    assert not (tmp_path / "times.log").exists(), describe(proc)
    assert not (tmp_path / "out/a").exists() and not (tmp_path / "out/b").exists(), describe(proc)
    # with --keep-going the others run after all
    proc = run(tmp_path, "build", "-j", "1", "--keep-going", check=1)
    assert (tmp_path / "out/a").exists() and (tmp_path / "out/b").exists(), describe(proc)


def test_a_recipe_handed_ahead_has_its_timeout_counted_from_its_own_start(tmp_path):
    """-j 1: `second` waits behind `first` (1 s) and then needs 0.1 s of its 0.8 s;
    `third` waits behind `second` and overruns its 0.3 s."""
    write(tmp_path, {"Nodefile.toml": _timed("first", 1.0, "priority = 10")
                     + _timed("second", 0.1, "timeout = 0.8\npriority = 5")
                     + _timed("third", 5, "timeout = 0.3")})
    proc = run(tmp_path, "build", "-j", "1", check=1)
    names = [line.split()[0] for line in (tmp_path / "times.log").read_text().splitlines()]
    assert names == ["first", "second"], describe(proc)
    assert "FAILED third" in proc.stderr and "timed out after 0.3s" in proc.stderr, describe(proc)
