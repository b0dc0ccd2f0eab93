"""Warm workers (SPEC §5): Python and R recipes forked from a preloaded process
behave exactly as they do cold, fail alone, and leave nothing behind.

Every test sets NODEFILE_WORKER_WAIT so that a recipe waits for its worker
instead of running cold while it starts, and checks the `(warm)` mark of the
`ok` lines, so a test never passes by running cold. R workers embed R through
rpy2: with NODEFILE_REQUIRE_RPY2=1 (CI) a missing rpy2 fails these tests.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, base_env, describe, run, wait_for, write

WARM = base_env(NODEFILE_WORKER_WAIT="60")


def needs_rpy2():
    try:
        import rpy2  # noqa: F401
    except ImportError:
        if os.environ.get("NODEFILE_REQUIRE_RPY2") == "1":
            pytest.fail("rpy2 is not installed, and NODEFILE_REQUIRE_RPY2=1 makes the warm R tests mandatory")
        pytest.skip("rpy2 is not installed")


def ok_lines(proc) -> dict[str, str]:
    return {line.split()[1]: line for line in proc.stdout.splitlines() if line.startswith("ok ")}


def tree(root: Path, folder: str) -> dict[str, bytes]:
    base = root / folder
    return {str(p.relative_to(base)): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}


# -- the same result warm and cold -------------------------------------------------------------------
PY_PROJECT = {
    "Nodefile.toml": """
        [nodes.rows]
        outputs = "out/rows{i}.csv"
        python = "tasks/rows.py"
        args = ["{i}", "--flag"]
        matrix = { i = ["1", "2", "3", "4"] }
        """,
    "tasks/rows.py": """
        import json, os, sys
        import nodefile
        job = nodefile.job()
        facts = {"argv": sys.argv, "name": __name__, "cwd": os.getcwd(),
                 "job_env": os.path.basename(os.environ["NODEFILE_JOB"]),
                 "stdin": sys.stdin.read(), "file": os.path.basename(__file__),
                 "path0": os.path.basename(sys.path[0])}
        print("hello from", job.node)
        with open(job.outputs[0], "w") as f:
            json.dump(facts, f, sort_keys=True)
        """,
}


def test_python_recipes_give_the_same_bytes_warm_and_cold(tmp_path):
    warm = write(tmp_path / "warm", PY_PROJECT)
    cold = write(tmp_path / "cold", PY_PROJECT)
    proc = run(warm, "build", "-j", "2", env=WARM, check=0)
    assert all("(warm)" in line for line in ok_lines(proc).values()), describe(proc)
    proc = run(cold, "build", "-j", "2", "--cold", env=WARM, check=0)
    assert not any("(warm)" in line for line in ok_lines(proc).values()), describe(proc)
    warm_out = {k: v.replace(str(warm).encode(), b"ROOT") for k, v in tree(warm, "out").items()}
    cold_out = {k: v.replace(str(cold).encode(), b"ROOT") for k, v in tree(cold, "out").items()}
    assert warm_out == cold_out
    assert b'"name": "__main__"' in warm_out["rows1.csv"] and b'"stdin": ""' in warm_out["rows1.csv"]
    assert b'"argv": ["tasks/rows.py", "1", "--flag"]' in warm_out["rows1.csv"]
    assert "hello from rows[i=1]" in run(warm, "log", "rows[i=1]").stdout


@pytest.mark.needs_r
def test_the_mixed_example_gives_the_same_bytes_warm_and_cold(tmp_path):
    needs_rpy2()
    ignore = shutil.ignore_patterns(".nodefile", "out")
    warm = tmp_path / "warm"
    cold = tmp_path / "cold"
    shutil.copytree(REPO / "examples" / "mtcars", warm, ignore=ignore)
    shutil.copytree(REPO / "examples" / "mtcars", cold, ignore=ignore)
    proc = run(warm, "build", "-j", "2", env=WARM, check=0)
    lines = ok_lines(proc)
    assert "(warm)" in lines["fit"] and "(warm)" in lines["data"], describe(proc)
    run(cold, "build", "-j", "2", "--cold", env=WARM, check=0)
    warm_out, cold_out = tree(warm, "out"), tree(cold, "out")
    assert warm_out.keys() == cold_out.keys()
    for name in warm_out:
        if not name.endswith((".png", ".pdf", ".html")):  # images carry their own time stamps
            assert warm_out[name] == cold_out[name], name


R_PROJECT = {
    "Nodefile.toml": """
        [nodes.r]
        outputs = "out/r{i}.rds"
        r = "tasks/r.R"
        args = ["{i}"]
        matrix = { i = ["1", "2", "3"] }
        """,
    "tasks/r.R": """
        x <- c(a = 1.5, b = 2)
        f <- function(v) v * 2
        leaked_before <- exists("leak_from_last_recipe")
        leak_from_last_recipe <- TRUE
        summary(c(1, 2, 3, 4))
        saveRDS(list(x = f(x), args = commandArgs(trailingOnly = TRUE), f = f,
                     interactive = interactive(), keep = getOption("keep.source"),
                     leaked = leaked_before, wd = basename(getwd())), node$outputs[[1]])
        """,
}


@pytest.mark.needs_r
def test_r_recipes_give_the_same_bytes_warm_and_cold_and_share_nothing(tmp_path):
    needs_rpy2()
    warm = write(tmp_path / "warm" / "p", R_PROJECT)  # the same folder name: the recipe saves it
    cold = write(tmp_path / "cold" / "p", R_PROJECT)
    proc = run(warm, "build", "-j", "1", env=WARM, check=0)
    assert all("(warm)" in line for line in ok_lines(proc).values()), describe(proc)
    run(cold, "build", "-j", "1", "--cold", env=WARM, check=0)
    assert tree(warm, "out") == tree(cold, "out")
    check = subprocess.run(["Rscript", "-e", 'v <- readRDS("out/r2.rds"); cat(v$leaked, v$interactive, '
                            'identical(v$keep, FALSE), v$args, "\\n")'], cwd=warm, capture_output=True, text=True)
    assert check.stdout.split() == ["FALSE", "FALSE", "TRUE", "2"], check.stderr


def test_a_recipe_that_changes_a_module_or_a_global_does_not_affect_the_next(tmp_path):
    write(tmp_path, {
        "Nodefile.toml": """
            [nodes.n]
            outputs = "out/{i}.txt"
            python = "tasks/n.py"
            matrix = { i = ["1", "2", "3", "4"] }
            """,
        "tasks/n.py": """
            import json
            import nodefile
            seen = getattr(json, "touched_by_a_recipe", None)
            json.touched_by_a_recipe = nodefile.job().node
            json.dumps = None  # break the module for whoever comes next
            open(nodefile.job().outputs[0], "w").write(repr(seen))
            """,
    })
    proc = run(tmp_path, "build", "-j", "1", env=WARM, check=0)
    assert all("(warm)" in line for line in ok_lines(proc).values()), describe(proc)
    assert {p.read_text() for p in (tmp_path / "out").iterdir()} == {"None"}


# -- failures ------------------------------------------------------------------------------------------
def test_a_failing_python_recipe_reports_the_users_file_and_line(tmp_path):
    write(tmp_path, {
        "Nodefile.toml": """
            [nodes.ok]
            outputs = "ok.txt"
            python = "tasks/ok.py"
            [nodes.bad]
            outputs = "bad.txt"
            python = "tasks/bad.py"
            """,
        "tasks/ok.py": "import nodefile\nopen(nodefile.job().outputs[0], 'w').write('ok')\n",
        "tasks/bad.py": "import nodefile\n\n\ndef f():\n    raise ValueError('the data is wrong')\n\nf()\n",
    })
    proc = run(tmp_path, "build", "-j", "1", "-k", env=WARM, check=1)
    assert "(warm)" in ok_lines(proc)["ok"]
    log = run(tmp_path, "log", "bad").stdout
    assert 'tasks/bad.py", line 5, in f' in log and 'line 7, in <module>' in log, log
    assert "ValueError: the data is wrong" in log
    assert "zygote" not in log and "runpy" not in log  # no frame of the worker's own


@pytest.mark.needs_r
def test_a_failing_r_recipe_reports_the_users_file_and_line(tmp_path):
    needs_rpy2()
    write(tmp_path, {
        "Nodefile.toml": """
            [nodes.ok]
            outputs = "ok.txt"
            r = "tasks/ok.R"
            [nodes.bad]
            outputs = "bad.txt"
            r = "tasks/bad.R"
            """,
        "tasks/ok.R": "writeLines('ok', node$outputs[[1]])\n",
        "tasks/bad.R": "x <- 1\n\nstop('the model did not converge')\n",
    })
    proc = run(tmp_path, "build", "-j", "1", "-k", env=WARM, check=1)
    assert "(warm)" in ok_lines(proc)["ok"], describe(proc)
    log = run(tmp_path, "log", "bad").stdout
    assert "the model did not converge" in log and "tasks/bad.R:3" in log, log


def test_a_crashing_recipe_fails_alone_and_the_build_goes_on(tmp_path):
    write(tmp_path, {
        "Nodefile.toml": """
            [nodes.crash]
            outputs = "crash.txt"
            python = "tasks/crash.py"
            [nodes.exit]
            outputs = "exit.txt"
            python = "tasks/exit.py"
            [nodes.after]
            outputs = "after{i}.txt"
            python = "tasks/ok.py"
            matrix = { i = ["1", "2"] }
            """,
        "tasks/crash.py": "import ctypes\nctypes.string_at(0)\n",
        "tasks/exit.py": "import os\nos._exit(3)\n",
        "tasks/ok.py": "import nodefile\nopen(nodefile.job().outputs[0], 'w').write('ok')\n",
    })
    proc = run(tmp_path, "build", "-j", "1", "-k", "crash", "exit", "after", env=WARM, check=1)
    lines = ok_lines(proc)
    assert "(warm)" in lines["after[i=1]"] and "(warm)" in lines["after[i=2]"], describe(proc)
    assert "FAILED crash" in proc.stderr and "FAILED exit" in proc.stderr
    assert "SIGSEGV" in proc.stderr or "status -11" in proc.stderr
    assert "exited with status 3" in proc.stderr
    log = run(tmp_path, "log", "crash").stdout
    assert "the warm run was killed by SIGSEGV; running the recipe again, cold" in log


# -- opting out, and saying why ------------------------------------------------------------------------
def test_warm_false_and_cold_run_recipes_as_new_processes(tmp_path):
    write(tmp_path, {
        "Nodefile.toml": """
            [nodes.a]
            outputs = "a{i}.txt"
            python = "ok.py"
            warm = false
            matrix = { i = ["1", "2"] }
            [nodes.b]
            outputs = "b{i}.txt"
            python = "ok.py"
            matrix = { i = ["1", "2"] }
            """,
        "ok.py": "import nodefile\nopen(nodefile.job().outputs[0], 'w').write('ok')\n",
    })
    lines = ok_lines(run(tmp_path, "build", "-j", "1", env=WARM, check=0))
    assert not any("(warm)" in lines[n] for n in ("a[i=1]", "a[i=2]"))
    assert all("(warm)" in lines[n] for n in ("b[i=1]", "b[i=2]"))
    lines = ok_lines(run(tmp_path, "build", "-B", "--cold", env=WARM, check=0))
    assert len(lines) == 4 and not any("(warm)" in line for line in lines.values())


@pytest.mark.needs_r
def test_an_r_worker_that_cannot_start_runs_r_cold_and_status_says_why(tmp_path):
    write(tmp_path, {
        "Nodefile.toml": """
            [nodes.r]
            outputs = "r{i}.txt"
            r = "r.R"
            matrix = { i = ["1", "2"] }
            """,
        "r.R": "writeLines('ok', node$outputs[[1]])\n",
        ".Rprofile": "invisible(NULL)\n",
    })
    lines = ok_lines(run(tmp_path, "build", "-j", "1", env=WARM, check=0))
    assert len(lines) == 2 and not any("(warm)" in line for line in lines.values())
    status = run(tmp_path, "status", "-v", check=0).stdout
    assert "R recipes run cold: the project has an .Rprofile" in status, status


# -- Ctrl-C ----------------------------------------------------------------------------------------------
def test_ctrl_c_leaves_no_worker_and_no_recipe_behind(tmp_path):
    write(tmp_path, {
        "Nodefile.toml": """
            [nodes.slow]
            outputs = "slow{i}.txt"
            python = "slow.py"
            matrix = { i = ["1", "2", "3"] }
            """,
        "slow.py": "import time\nopen('started', 'a').write('x')\ntime.sleep(60)\n",
    })
    proc = subprocess.Popen([sys.executable, "-m", "nodefile", "build", "-j", "2"], cwd=tmp_path,
                            env=WARM, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    wait_for(lambda: (tmp_path / "started").exists() and len((tmp_path / "started").read_text()) >= 2, 60,
             what="two recipes to start")
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal does: the build's whole process group
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    time.sleep(0.2)
    left = subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True, text=True).stdout.split()
    mine = [p for p in subprocess.run(["pgrep", "-f", "slow.py|nodefile.workers.zygote"], capture_output=True,
                                      text=True).stdout.split() if _cwd(p) == str(tmp_path)]
    assert left == [] and mine == [], (left, mine)


def _cwd(pid: str) -> str:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return ""


# -- node watch keeps its workers --------------------------------------------------------------------
def test_watch_keeps_its_worker_between_builds(tmp_path):
    write(tmp_path, {
        "Nodefile.toml": """
            [nodes.a]
            outputs = "a.txt"
            inputs = ["in.txt"]
            python = "a.py"
            """,
        "in.txt": "1",
        "a.py": "import os, nodefile\nj = nodefile.job()\nopen(j.outputs[0], 'w').write(str(os.getppid()))\n",
    })
    log = tmp_path / "watch.log"
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "nodefile", "watch", "--debounce", "0.1"], cwd=tmp_path,
                                env=WARM, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)

    def built(n):  # n builds of `a` finished and accepted (a run whose input changed meanwhile is not)
        text = log.read_text()
        return text.count("ok   a") >= n and text.count("watching ") >= n
    try:
        out = tmp_path / "a.txt"
        wait_for(lambda: built(1), 60, what="the first build")
        first = out.read_text()
        (tmp_path / "in.txt").write_text("2")
        wait_for(lambda: built(2), 60, what="the rebuild")
        assert out.read_text() == first  # the same worker forked both recipes
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=30)
    text = log.read_text()
    assert "(warm)" in text.split("ok   a", 2)[2], text  # the second run, at least, in the kept worker
    left = subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert left == []


@pytest.mark.needs_r
def test_a_build_with_many_r_recipes_starts_its_r_worker_with_its_first_recipe(tmp_path):
    """Eight R nodes downstream of slow Python ones: the R worker boots while Python runs
    (EARLY_WORKER), so even the first R recipe runs warm, with no waiting asked for."""
    needs_rpy2()
    write(tmp_path, {
        "Nodefile.toml": """
            [nodes.py]
            outputs = "py{i}.txt"
            python = "py.py"
            matrix = { i = ["1", "2", "3", "4", "5", "6", "7", "8"] }
            [nodes.r]
            outputs = "r{i}.txt"
            inputs = ["py"]
            r = "r.R"
            matrix = { i = ["1", "2", "3", "4", "5", "6", "7", "8"] }
            """,
        "py.py": "import time, nodefile\ntime.sleep(0.4)\nopen(nodefile.job().outputs[0], 'w').write('p')\n",
        "r.R": "writeLines('r', node$outputs[[1]])\n",
    })
    proc = run(tmp_path, "build", "-j", "1", timeout=120, check=0)  # base_env: no NODEFILE_WORKER_WAIT
    lines = ok_lines(proc)
    assert all("(warm)" in lines[f"r[i={i}]"] for i in range(1, 9)), describe(proc)


def test_a_preload_that_fails_to_import_is_said_by_status_v(tmp_path):
    write(tmp_path, {
        "Nodefile.toml": """
            [workers.python]
            preload = ["no_such_module_for_nodefile"]
            [nodes.a]
            outputs = "a{i}.txt"
            python = "ok.py"
            matrix = { i = ["1", "2"] }
            """,
        "ok.py": "import nodefile\nopen(nodefile.job().outputs[0], 'w').write('ok')\n",
    })
    lines = ok_lines(run(tmp_path, "build", "-j", "1", env=WARM, check=0))
    assert all("(warm)" in line for line in lines.values())  # the worker runs without it
    status = run(tmp_path, "status", "-v", check=0).stdout
    assert "the python worker could not preload no_such_module_for_nodefile: ModuleNotFoundError" in status, status


# -- recipes wait for a worker that is starting ----------------------------------------------------------
def _slow_preload(tmp_path, body: str) -> dict:
    """A project of three Python recipes whose worker preloads `lib/heavy.py` (body)."""
    write(tmp_path, {
        "Nodefile.toml": """
            [workers.python]
            preload = ["heavy"]
            [nodes.a]
            outputs = "a{i}.txt"
            python = "a.py"
            timeout = 1
            matrix = { i = ["1", "2", "3"] }
            """,
        "a.py": "import nodefile\nopen(nodefile.job().outputs[0], 'w').write('ok')\n",
        "lib/heavy.py": body,
    })
    return base_env(PYTHONPATH=os.pathsep.join([str(tmp_path / "lib"), os.environ.get("PYTHONPATH", "")]))


def test_a_recipe_queued_on_a_starting_worker_runs_warm_and_its_clock_starts_with_it(tmp_path):
    """No NODEFILE_WORKER_WAIT: the second recipe finds the worker starting (its preload
    takes 1.5 s) and waits for it rather than running cold; its 1 s timeout counts from
    the moment the worker runs it, not from the wait."""
    env = _slow_preload(tmp_path, "import time\ntime.sleep(1.5)\n")
    proc = run(tmp_path, "build", "-j", "1", env=env, check=0)
    lines = ok_lines(proc)
    assert proc.returncode == 0 and len(lines) == 3, describe(proc)
    assert sum("(warm)" in line for line in lines.values()) == 2, describe(proc)


def test_recipes_queued_on_a_worker_that_dies_while_starting_run_cold(tmp_path):
    env = _slow_preload(tmp_path, "import os, time\ntime.sleep(0.5)\nos._exit(3)\n")
    proc = run(tmp_path, "build", "-j", "1", env=env, check=0)
    lines = ok_lines(proc)
    assert proc.returncode == 0 and len(lines) == 3, describe(proc)
    assert not any("(warm)" in line for line in lines.values()), describe(proc)
    status = run(tmp_path, "status", "-v", check=0).stdout
    assert "python recipes run cold: the python worker process died" in status, status


def test_ctrl_c_while_recipes_wait_for_a_starting_worker_ends_it_and_starts_none(tmp_path):
    write(tmp_path, {
        "Nodefile.toml": """
            [workers.python]
            preload = ["heavy"]
            [nodes.slow]
            outputs = "slow{i}.txt"
            python = "slow.py"
            matrix = { i = ["1", "2", "3"] }
            """,
        "slow.py": "import time\nopen('started', 'a').write('x')\ntime.sleep(60)\n",
        "lib/heavy.py": "import time\ntime.sleep(60)\n",
    })
    env = base_env(PYTHONPATH=os.pathsep.join([str(tmp_path / "lib"), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-m", "nodefile", "build", "-j", "2"], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    wait_for(lambda: (tmp_path / "started").exists(), 60, what="the first (cold) recipe to start")
    wait_for(lambda: "heavy" in subprocess.run(["pgrep", "-af", "nodefile.workers.zygote"], capture_output=True,
                                                text=True).stdout, 30, what="the worker to start")
    time.sleep(0.5)  # the second recipe is queued on the worker, which sleeps in its preload
    t = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert time.monotonic() - t < 15  # not after the worker's 60 s preload
    time.sleep(0.5)
    assert (tmp_path / "started").read_text() == "x"  # the queued recipe never ran
    status = run(tmp_path, "status", "-v", env=env, check=0).stdout
    assert "run cold" not in status, status  # ending it was the build's doing, not the worker failing
    left = subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True, text=True).stdout.split()
    mine = [p for p in subprocess.run(["pgrep", "-f", "slow.py|nodefile.workers.zygote"], capture_output=True,
                                      text=True).stdout.split() if _cwd(p) == str(tmp_path)]
    assert left == [] and mine == [], (left, mine)

def test_the_learner_keeps_warm_and_cold_durations_apart(tmp_path):
    """Issue 20 item 4: cold runs (--cold) of a recipe do not move its warm estimate, which
    `status` shows while workers serve its language; with warm = false it shows the cold one."""
    import json
    import sqlite3
    write(tmp_path, {
        "Nodefile.toml": """
            [params]
            run = 0
            [nodes.fit]
            outputs = "fit.txt"
            python = "fit.py"
            params = ["run"]
            """,
        "fit.py": "import nodefile\nopen(nodefile.job().outputs[0], 'w').write('ok')\n",
    })

    def rows():
        db = sqlite3.connect(tmp_path / ".nodefile" / "state.db")
        try:
            return {r: json.loads(d) for r, d in db.execute("SELECT recipe, data FROM recipe_stats WHERE node = 'fit'")}
        finally:
            db.close()

    def shown(*args):
        out = json.loads(run(tmp_path, "status", "--json", *args, env=WARM, check=0).stdout)
        return next(n for n in out["nodes"] if n["name"] == "fit")["expected_seconds"]

    assert "(warm)" in ok_lines(run(tmp_path, "build", env=WARM, check=0))["fit"]
    warm_row = rows()["python (warm)"]
    for i in (1, 2):
        assert "(warm)" not in ok_lines(run(tmp_path, "build", "--cold", "--set", f"run={i}", env=WARM, check=0))["fit"]
    stats = rows()
    assert stats["python (warm)"] == warm_row  # untouched by the cold runs
    assert stats["python"][2] == 2  # n: the two cold runs, and only they
    nodefile = (tmp_path / "Nodefile.toml").read_text().replace("run = 0", "run = 9")  # stale again
    (tmp_path / "Nodefile.toml").write_text(nodefile)
    warm_expected = shown()
    (tmp_path / "Nodefile.toml").write_text("[project]\nwarm = false\n" + nodefile)
    cold_expected = shown()
    assert warm_expected is not None and cold_expected is not None
    assert warm_expected < cold_expected, (warm_expected, cold_expected)
