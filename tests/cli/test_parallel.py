"""Acceptance 9, 10, 12: Ctrl-C, two builds at once, and the -j limit."""
from __future__ import annotations

import fcntl
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

from conftest import base_env, describe, run, runs, wait_for, write

# -- 9: SIGINT --------------------------------------------------------------------------
SLEEPER = """
import os, sys, time
import nodefile
job = nodefile.job()
os.makedirs("pids", exist_ok=True)
tmp = f"pids/{job.node}.tmp"
with open(tmp, "w") as f:
    f.write(str(os.getpid()))
os.replace(tmp, f"pids/{job.node}.pid")
time.sleep(30)
open(job.outputs[0], "w").write("finished")
"""


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (an orphan killed with its
    group is reaped by init, which in a container may take its time)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def test_sigint_stops_running_recipes_keeps_finished_nodes_and_exits_130(tmp_path):
    write(tmp_path, {
        "Nodefile.toml": """
            [nodes.quick]
            outputs = "quick.txt"
            priority = 10
            shell = "echo quick > {outputs}"

            [nodes.slow1]
            outputs = "slow1.txt"
            python = "tasks/sleeper.py"

            [nodes.slow2]           # a shell recipe with a child process of its own
            outputs = "slow2.txt"
            shell = "mkdir -p pids; sleep 30 & echo $! > pids/child; echo $$ > pids/tmp2; mv pids/tmp2 pids/slow2.pid; wait; echo > {outputs}"
            """,
        "tasks/sleeper.py": SLEEPER,
    })
    pidfiles = [tmp_path / "pids/slow1.pid", tmp_path / "pids/slow2.pid"]
    proc = subprocess.Popen([sys.executable, "-m", "nodefile", "build", "-j", "2"], cwd=tmp_path,
                            env=base_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        wait_for(lambda: all(p.exists() for p in pidfiles) or proc.poll() is not None, 20,
                 what="both slow recipes to write their pid")
        assert proc.poll() is None, "the build ended before both slow recipes started"
        pids = [int(p.read_text()) for p in pidfiles] + [int((tmp_path / "pids/child").read_text())]
        assert all(alive(p) for p in pids)
        assert (tmp_path / "quick.txt").exists()
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    assert proc.returncode == 130, describe(result)
    assert "Traceback" not in err, describe(result)
    wait_for(lambda: not any(alive(p) for p in pids), 10, what="the recipe processes to end")
    assert not (tmp_path / "slow1.txt").exists() and not (tmp_path / "slow2.txt").exists()
    db = sqlite3.connect(tmp_path / ".nodefile/state.db")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        db.close()

    dry = run(tmp_path, "build", "-n", check=0)
    assert "would run  quick" not in dry.stdout, describe(dry)
    assert "would run  slow1" in dry.stdout and "would run  slow2" in dry.stdout, describe(dry)
    status = run(tmp_path, "status", "quick", check=0)
    assert "up to date" in status.stdout, describe(status)


def test_kill_9_loses_at_most_the_running_nodes(tmp_path):
    write(tmp_path, {
        "Nodefile.toml": """
            [nodes.quick]
            outputs = "quick.txt"
            priority = 10
            shell = "echo quick > {outputs}"

            [nodes.slow1]
            outputs = "slow1.txt"
            python = "tasks/sleeper.py"
            """,
        "tasks/sleeper.py": SLEEPER,
    })
    pidfile = tmp_path / "pids/slow1.pid"
    proc = subprocess.Popen([sys.executable, "-m", "nodefile", "build", "-j", "2"], cwd=tmp_path,
                            env=base_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    recipe = None
    try:
        wait_for(lambda: pidfile.exists() and (tmp_path / "quick.txt").exists() or proc.poll() is not None,
                 20, what="the slow recipe to start")
        assert proc.poll() is None
        recipe = int(pidfile.read_text())
        # quick's record is written right after it ends; give the build a bounded moment
        wait_for(lambda: "up to date" in run(tmp_path, "status", "quick").stdout, 10,
                 what="quick to be recorded")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        dry = run(tmp_path, "build", "-n", check=0)
        assert "would run  quick" not in dry.stdout, describe(dry)
        assert "would run  slow1" in dry.stdout, describe(dry)
        db = sqlite3.connect(tmp_path / ".nodefile/state.db")
        try:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        finally:
            db.close()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        if recipe is not None and alive(recipe):
            os.kill(recipe, signal.SIGKILL)  # the orphaned recipe we caused to start


def test_the_next_build_ends_recipes_a_killed_build_left_running(tmp_path):
    """After kill -9 of the tool its recipe runs on as an orphan; the next build (of
    anything) ends it before starting, so it can never write into a node that is
    being rebuilt. (The recipe is started by the build itself, as in any small
    build: a spawn helper would end it when the build dies, test_spawn_helper.py.)"""
    write(tmp_path, {
        "Nodefile.toml": """
            [nodes.quick]
            outputs = "quick.txt"
            shell = "echo quick > {outputs}"

            [nodes.slow1]
            outputs = "slow1.txt"
            python = "tasks/sleeper.py"
            """,
        "tasks/sleeper.py": SLEEPER,
    })
    pidfile = tmp_path / "pids/slow1.pid"
    proc = subprocess.Popen([sys.executable, "-m", "nodefile", "build", "-j", "2", "slow1"], cwd=tmp_path,
                            env=base_env(NODEFILE_SPAWN_HELPER_AFTER=-1), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                            start_new_session=True)
    recipe = None
    try:
        wait_for(lambda: pidfile.exists() or proc.poll() is not None, 20, what="the slow recipe to start")
        recipe = int(pidfile.read_text())
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        assert alive(recipe)  # orphaned: still running
        nxt = run(tmp_path, "build", "quick", check=0)
        assert nxt.returncode == 0, describe(nxt)
        assert "left running by a build that was killed" in nxt.stderr, describe(nxt)
        wait_for(lambda: not alive(recipe), 10, what="the orphaned recipe to end")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        if recipe is not None and alive(recipe):
            os.kill(recipe, signal.SIGKILL)


# -- 10: two builds at once -----------------------------------------------------------------
def test_two_builds_at_once_leave_a_consistent_state(tmp_path):
    nodes = "".join(f"""
[nodes.n{i}]
outputs = "out/n{i}.txt"
shell = "sleep 0.5; echo n{i} >> runs.log; echo {i} > {{outputs}}"
""" for i in range(4))
    write(tmp_path, {"Nodefile.toml": nodes})
    cmd = [sys.executable, "-m", "nodefile", "build", "-j", "2"]
    procs = [subprocess.Popen(cmd, cwd=tmp_path, env=base_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=30)
            results.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(5)
    text = "\n\n".join(describe(r) for r in results)
    for r in results:
        assert r.returncode == 0 or (r.returncode != 0 and "lock" in r.stderr), text
        assert "Traceback" not in r.stderr, text
    assert any(r.returncode == 0 for r in results), text
    # each node built exactly once, whatever the interleaving
    assert sorted(runs(tmp_path)) == ["n0", "n1", "n2", "n3"], text

    db = sqlite3.connect(tmp_path / ".nodefile/state.db")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        db.close()
    third = run(tmp_path, "build", check=0)
    assert "nothing to do" in third.stdout, describe(third)
    assert sorted(runs(tmp_path)) == ["n0", "n1", "n2", "n3"]


def test_build_waits_for_a_build_that_is_initialising_the_state_store(tmp_path):
    """Deterministic form of a race seen with two builds started together on a
    fresh project: build.build() opens the state store (State(): PRAGMA
    journal_mode=WAL, CREATE TABLE ...) before it takes the project lock, and a
    build that started while another one was creating .nodefile/state.db died
    with a traceback, `sqlite3.OperationalError: database is locked` (SQLite
    returns SQLITE_BUSY at once, without the busy handler, when two connections
    both try to promote their lock). Here the test plays the other build: it
    holds the project lock and is in the middle of creating the schema."""
    write(tmp_path, {"Nodefile.toml": '''
        [nodes.a]
        outputs = "a.txt"
        shell = "echo a > {outputs}"
        '''})
    state = tmp_path / ".nodefile"
    state.mkdir()
    lockfd = os.open(state / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(lockfd, fcntl.LOCK_EX)
    os.write(lockfd, json.dumps({"pid": os.getpid(), "since": time.time(), "argv": "other build"}).encode())
    db = sqlite3.connect(state / "state.db", isolation_level=None)
    db.execute("BEGIN IMMEDIATE")
    db.execute("CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v TEXT)")
    out_path = tmp_path / "build.out"
    with open(out_path, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "nodefile", "build"], cwd=tmp_path, env=base_env(),
                                stdout=out, stderr=subprocess.STDOUT, text=True)
    try:
        # it should wait (and say so); a crash ends it. Give it a bounded while either way,
        # then let the "other build" finish.
        wait_for(lambda: proc.poll() is not None or "waiting" in out_path.read_text(), 1.0,
                 what="the second build to wait or end", fail=False)  # a crash takes ms
    finally:
        db.execute("COMMIT")
        db.close()
        fcntl.flock(lockfd, fcntl.LOCK_UN)
        os.close(lockfd)
    try:
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    output = out_path.read_text()
    assert "Traceback" not in output, output
    assert proc.returncode == 0, output
    assert (tmp_path / "a.txt").exists(), output


def test_no_wait_reports_who_holds_the_lock(tmp_path):
    write(tmp_path, {"Nodefile.toml": """
        [nodes.slow]
        outputs = "slow.txt"
        shell = "touch started; i=0; while [ ! -f go ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done; echo > {outputs}"
        """})
    first = subprocess.Popen([sys.executable, "-m", "nodefile", "build"], cwd=tmp_path, env=base_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (tmp_path / "started").exists() or first.poll() is not None, 20,
                 what="the first build to start its recipe")
        second = run(tmp_path, "build", "--no-wait")
        assert second.returncode == 2, describe(second)
        assert "lock" in second.stderr and str(first.pid) in second.stderr, describe(second)
        assert "Traceback" not in second.stderr
        (tmp_path / "go").touch()
        first.communicate(timeout=20)
        assert first.returncode == 0
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(5)


# -- 12: -j is a hard limit ---------------------------------------------------------------
def max_overlap(intervals) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals],
                    key=lambda t: (t[0], t[1]))  # an end sorts before a start at the same instant
    cur = best = 0
    for _, d in events:
        cur += d
        best = max(best, cur)
    return best


def read_intervals(project) -> list[tuple[float, float]]:
    out = []
    for line in (project / "times.log").read_text().splitlines():
        _, s, e = line.split()
        out.append((float(s), float(e)))
    return out


# With -j 2 the recipes meet at a barrier (each waits, bounded, until two have
# started), so that two of them overlap however loaded the machine is; a third
# running at the same time would overlap them too and be seen.
BARRIER = ("i=0; while [ $(ls started.* | wc -l) -lt 2 ] && [ $i -lt 150 ]; "
           "do sleep 0.02; i=$((i+1)); done; ")


def timed_nodes(barrier: str) -> str:
    return "".join(f"""
[nodes.t{i}]
outputs = "out/t{i}.txt"
shell = "s=$(date +%s.%N); touch started.{{node}}; {barrier}sleep 0.2; e=$(date +%s.%N); echo \\"{{node}} $s $e\\" >> times.log; echo {i} > {{outputs}}"
""" for i in range(4))


def test_jobs_limit_how_many_recipes_run_at_once(tmp_path):
    write(tmp_path, {"Nodefile.toml": timed_nodes(BARRIER)})
    proc = run(tmp_path, "build", "-j", "2", check=0)
    iv = read_intervals(tmp_path)
    assert len(iv) == 4, describe(proc)
    assert max_overlap(iv) == 2, f"{iv}\n{describe(proc)}"

    # -j 1 (a changed recipe: everything rebuilds; no barrier, nothing to meet)
    (tmp_path / "times.log").unlink()
    write(tmp_path, {"Nodefile.toml": timed_nodes("")})
    proc = run(tmp_path, "build", "-j", "1", check=0)
    iv = read_intervals(tmp_path)
    assert len(iv) == 4, describe(proc)
    assert max_overlap(iv) == 1, f"{iv}\n{describe(proc)}"
