"""Acceptance 5, 6, 7, 19: failing recipes, -k, and `node log`."""
from __future__ import annotations

import re

import pytest

from conftest import counter_py, describe, no_traceback, run, runs, write

LOG_PATH = re.compile(r"\.nodefile/logs/\S+\.log")


def log_paths(text: str) -> list[str]:
    return LOG_PATH.findall(text)


def test_failing_python_script_names_node_error_and_log(tmp_path):
    write(tmp_path, {
        "Nodefile.toml": """
            [nodes.pyfail]
            outputs = "never.txt"
            python = "tasks/fail.py"
            """,
        "tasks/fail.py": """
            import nodefile
            job = nodefile.job()
            print("python started fine")


            def boom(x):
                raise ValueError(f"python-boom-marker {x}")


            boom(41)
            """,
    })
    proc = run(tmp_path, "build")
    assert proc.returncode == 1, describe(proc)
    err = proc.stderr
    assert "pyfail" in err, describe(proc)
    assert "ValueError: python-boom-marker 41" in err, describe(proc)  # the last lines of the error
    assert re.search(r"tasks/fail\.py\", line 7", err), describe(proc)  # the user's file and line
    paths = log_paths(err)
    assert paths, f"no log path in the message\n{describe(proc)}"
    log = (tmp_path / paths[-1]).read_text()
    assert "python started fine" in log and "python-boom-marker 41" in log
    assert not (tmp_path / "never.txt").exists()


@pytest.mark.needs_r
def test_failing_r_script_names_node_error_user_file_line_and_log(tmp_path):
    write(tmp_path, {
        "Nodefile.toml": """
            [nodes.rfail]
            outputs = "never.txt"
            r = "tasks/fail.R"
            """,
        "tasks/fail.R": """
            check_input <- function(x) {
              y <- x + 1
              stop("r-boom-marker: bad value ", y)
            }
            cat("r started fine\\n")
            check_input(41)
            """,
    })
    proc = run(tmp_path, "build")
    assert proc.returncode == 1, describe(proc)
    err = proc.stderr
    no_traceback(proc)
    assert "rfail" in err, describe(proc)
    assert "r-boom-marker: bad value 42" in err, describe(proc)
    # the user's own file and the line of the stop() inside the function
    assert "tasks/fail.R:3" in err, describe(proc)
    paths = log_paths(err)
    assert paths, f"no log path in the message\n{describe(proc)}"
    log = (tmp_path / paths[-1]).read_text()
    assert "r started fine" in log and "r-boom-marker" in log and "tasks/fail.R:3" in log


@pytest.mark.needs_r
def test_r_error_at_top_level_names_the_user_line(tmp_path):
    write(tmp_path, {
        "Nodefile.toml": """
            [nodes.rtop]
            outputs = "never.txt"
            r = "tasks/top.R"
            """,
        "tasks/top.R": """
            x <- 1
            # a comment

            y <- log(-1) + undefined_variable_xyz
            """,
    })
    proc = run(tmp_path, "build")
    assert proc.returncode == 1, describe(proc)
    assert "undefined_variable_xyz" in proc.stderr, describe(proc)
    assert "tasks/top.R:4" in proc.stderr, describe(proc)


def test_recipe_that_exits_0_without_its_output_fails_the_node(tmp_path):
    write(tmp_path, {
        "Nodefile.toml": """
            [nodes.lazy]
            outputs = { main = "out/main.txt", side = "out/side.txt" }
            shell = "echo only main > {outputs.main}"

            [nodes.after]
            outputs = "after.txt"
            inputs = ["lazy"]
            shell = "cat {inputs} > {outputs}"
            """,
    })
    proc = run(tmp_path, "build")
    assert proc.returncode == 1, describe(proc)
    no_traceback(proc)
    assert "lazy" in proc.stderr, describe(proc)
    assert "out/side.txt" in proc.stderr, describe(proc)
    assert "out/main.txt" not in proc.stderr.replace("out/side.txt", ""), describe(proc)
    assert not (tmp_path / "after.txt").exists()
    # the failed node is not recorded as built: the next build tries again
    dry = run(tmp_path, "build", "-n", check=0)
    assert "would run  lazy" in dry.stdout, describe(dry)


KEEP_GOING = {
    "Nodefile.toml": """
        [project]
        default = ["after_bad", "good"]

        [nodes.bad]                 # dispatched first: highest priority
        outputs = "bad.txt"
        priority = 10
        python = "tasks/bad.py"

        [nodes.after_bad]
        outputs = "after_bad.txt"
        inputs = ["bad"]
        python = "tasks/after_bad.py"

        [nodes.good]                # independent of bad
        outputs = "good.txt"
        python = "tasks/good.py"
        """,
    "tasks/bad.py": counter_py("bad", "raise SystemExit('bad-node-marker: giving up')\n"),
    "tasks/after_bad.py": counter_py("after_bad", "open(job.outputs[0], 'w').write('x')\n"),
    "tasks/good.py": counter_py("good", "open(job.outputs[0], 'w').write('x')\n"),
}


def test_without_keep_going_the_build_stops_launching_after_a_failure(tmp_path):
    write(tmp_path, KEEP_GOING)
    proc = run(tmp_path, "build", "-j", "1")
    assert proc.returncode == 1, describe(proc)
    assert runs(tmp_path) == ["bad"], describe(proc)
    assert "bad-node-marker" in proc.stderr, describe(proc)
    assert not (tmp_path / "good.txt").exists()
    assert not (tmp_path / "after_bad.txt").exists()


def test_keep_going_builds_the_independent_branch(tmp_path):
    write(tmp_path, KEEP_GOING)
    proc = run(tmp_path, "build", "-j", "1", "-k")
    assert proc.returncode == 1, describe(proc)
    assert sorted(runs(tmp_path)) == ["bad", "good"], describe(proc)
    assert (tmp_path / "good.txt").exists()
    assert not (tmp_path / "after_bad.txt").exists()
    assert re.search(r"skip after_bad", proc.stdout), describe(proc)
    assert "failed 1" in proc.stdout, describe(proc)
    # good is kept: the next build (still failing on bad) does not rerun it
    again = run(tmp_path, "build", "-j", "1", "-k")
    assert again.returncode == 1, describe(again)
    assert sorted(runs(tmp_path)) == ["bad", "bad", "good"], describe(again)


def test_log_after_a_failing_build_shows_the_attempt_and_its_output(tmp_path):
    write(tmp_path, {
        "Nodefile.toml": """
            [nodes.flaky]
            outputs = "flaky.txt"
            shell = "echo log-content-marker; echo to-stderr-marker >&2; exit 3"
            """,
    })
    proc = run(tmp_path, "build")
    assert proc.returncode == 1, describe(proc)
    assert "exited with status 3" in proc.stderr, describe(proc)
    log = run(tmp_path, "log", "flaky", check=0)
    out = log.stdout
    assert re.search(r"attempt 1\b", out), describe(log)
    assert "failed" in out, describe(log)
    assert "log-content-marker" in out and "to-stderr-marker" in out, describe(log)
    paths = log_paths(out)
    assert paths and (tmp_path / paths[0]).is_file(), describe(log)
    # a node never attempted says so, without error
    write(tmp_path, {"Nodefile.toml": (tmp_path / "Nodefile.toml").read_text() + """
[nodes.fresh]
outputs = "fresh.txt"
shell = "echo > {outputs}"
"""})
    fresh = run(tmp_path, "log", "fresh", check=0)
    assert "no attempts" in fresh.stdout, describe(fresh)


def test_failed_attempt_outputs_are_moved_aside_not_left_in_place(tmp_path):
    write(tmp_path, {"Nodefile.toml": """
        [nodes.partial]
        outputs = "partial.txt"
        shell = "echo half-written > {outputs}; exit 1"

        [nodes.slow]
        outputs = "slow.txt"
        shell = "echo started > {outputs}; sleep 20"
        timeout = 0.5
        """})
    proc = run(tmp_path, "build", "-k")
    assert proc.returncode == 1, describe(proc)
    assert "timed out" in proc.stderr, describe(proc)
    # a later step must never take a half-written file for a built one
    assert not (tmp_path / "partial.txt").exists() and not (tmp_path / "slow.txt").exists()
    kept = {p.name: p.read_text() for p in (tmp_path / ".nodefile/failed").rglob("*.txt")}
    assert kept.get("partial.txt") == "half-written\n", kept
    assert kept.get("slow.txt") == "started\n", kept


def test_log_shows_every_attempt_of_the_last_build_newest_last(tmp_path):
    write(tmp_path, {"Nodefile.toml": """
        [nodes.f]
        outputs = "f.txt"
        shell = "echo attempt-marker-$(wc -l < tries 2>/dev/null || echo 0); echo x >> tries; exit 1"
        """})
    proc = run(tmp_path, "build", "--retries", "1")
    assert proc.returncode == 1, describe(proc)
    log = run(tmp_path, "log", "f", check=0)
    out = log.stdout
    a1, a2 = out.find("attempt 1"), out.find("attempt 2")
    assert 0 <= a1 < a2, describe(log)
    m0, m1 = out.find("attempt-marker-0"), out.find("attempt-marker-1")
    assert a1 < m0 < a2 < m1, describe(log)
    # only the last build: a new build replaces what `log` shows
    run(tmp_path, "build")
    out = run(tmp_path, "log", "f", check=0).stdout
    assert "attempt-marker-0" not in out and "attempt-marker-2" in out, out


def test_output_under_an_existing_file_fails_the_node_cleanly(tmp_path):
    """An output whose parent folder is an existing file cannot be written: the
    node fails with a message naming the path; no traceback, and -k still builds
    the independent node.

    Regression: build.Runner._next_spec once created the outputs' parent folders
    with os.makedirs outside any error handling; FileExistsError escaped the
    scheduler and the whole build died with a Python traceback."""
    write(tmp_path, {
        "Nodefile.toml": """
            [nodes.under]
            outputs = "results/model.txt"
            shell = "echo > {outputs}"

            [nodes.fine]
            outputs = "fine.txt"
            shell = "echo fine > {outputs}"
            """,
        "results": "I am a file, not a folder\n",
    })
    proc = run(tmp_path, "build", "-k")
    no_traceback(proc)
    assert proc.returncode in (1, 2), describe(proc)
    assert "results" in proc.stderr and "under" in proc.stderr, describe(proc)
    assert (tmp_path / "results").read_text() == "I am a file, not a folder\n"
    if proc.returncode == 1:  # a failed node (not a Nodefile error): the rest was built
        assert (tmp_path / "fine.txt").read_text() == "fine\n", describe(proc)
