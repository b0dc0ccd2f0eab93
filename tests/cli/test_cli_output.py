"""What the command line says (issue 24): --json documents, recipe output (-v, node log
-f, the log after a restore), why a node was skipped, a missing interpreter, limits."""
from __future__ import annotations

import json
import subprocess
import sys

from conftest import base_env, describe, no_traceback, run, wait_for, write

PROJECT = {"Nodefile.toml": """
    [project]
    default = ["c"]

    [params]
    n = 3

    [nodes.a]
    outputs = "a.txt"
    params = ["n"]
    shell = "echo making a; echo {params.n} > {outputs}"

    [nodes.b]
    outputs = "b.txt"
    inputs = ["a"]
    shell = "cat {inputs} > {outputs}"

    [nodes.c]
    outputs = "c.txt"
    inputs = ["b"]
    shell = "cat {inputs} > {outputs}"
    """}


def doc(proc, command: str) -> dict:
    d = json.loads(proc.stdout)
    assert d["schema"] == 1 and d["command"] == command, d
    return d


def test_json_documents_of_build_status_explain_graph_log_check(tmp_path):
    write(tmp_path, PROJECT)
    st = doc(run(tmp_path, "status", "--json", check=0), "status")
    assert [n["name"] for n in st["nodes"]] == ["a", "b", "c"]
    assert (st["stale"], st["total"]) == (3, 3)
    a = st["nodes"][0]
    assert a["status"] == "missing" and a["stale"] and a["from"] == "rebuild (shell)"
    assert a["reasons"] == [{"kind": "never_built", "subject": "", "old": None, "new": None, "text": "never built"}]
    assert st["nodes"][1]["from"] == "after its inputs"

    dry = doc(run(tmp_path, "build", "-n", "--json", check=0), "build")
    assert dry["dry_run"] and dry["would_run"] == ["a", "b", "c"] and dry["built"] == []
    b = doc(run(tmp_path, "build", "--json", check=0), "build")
    assert not b["dry_run"] and b["ok"] and b["built"] == ["a", "b", "c"] and b["failed"] == []
    assert set(b["durations"]) == {"a", "b", "c"} and b["elapsed_seconds"] >= 0
    assert doc(run(tmp_path, "build", "--json", check=0), "build")["up_to_date"] == ["a", "b", "c"]

    ex = doc(run(tmp_path, "explain", "a", "--json", "--set", "n=4", check=0), "explain")
    (node,) = ex["nodes"]
    assert node["name"] == "a" and node["stale"] and node["key"] != node["recorded_key"]
    assert node["reasons"][0] == {"kind": "param_changed", "subject": "n", "old": "3", "new": "4",
                                  "text": "param changed: n (3 -> 4)"}
    assert node["recipes"] == ["shell"] and node["estimates"][0]["recipe"] == "shell"

    g = doc(run(tmp_path, "graph", "--json", check=0), "graph")
    assert [n["name"] for n in g["nodes"]] == ["a", "b", "c"] and g["edges"] == [["a", "b"], ["b", "c"]]
    assert g["nodes"][1]["deps"] == ["a"] and g["nodes"][0]["status"] == "up to date"
    assert doc(run(tmp_path, "graph", "--format", "json", check=0), "graph") == g

    lg = doc(run(tmp_path, "log", "a", "--json", check=0), "log")
    assert lg["node"] == "a" and not lg["restored"] and lg["built_by"] is None
    (att,) = lg["attempts"]
    assert att["outcome"] == "ok" and att["kind"] == "shell" and att["text"] == "making a\n"

    ck = doc(run(tmp_path, "check", "--json", check=0), "check")
    assert ck["ok"] and ck["nodes"] == 3 and ck["problems"] == []
    write(tmp_path, {"Nodefile.toml": PROJECT["Nodefile.toml"].replace('inputs = ["b"]', 'inputs = ["bb"]')})
    proc = run(tmp_path, "check", "--json", check=2)
    ck = doc(proc, "check")
    assert not ck["ok"] and len(ck["problems"]) == 1, ck
    p = ck["problems"][0]
    assert "bb" in p["message"] and p["file"] == "Nodefile.toml" and isinstance(p["line"], int), p
    no_traceback(proc)


def test_verbose_streams_recipe_output_prefixed_by_node(tmp_path):
    write(tmp_path, {"Nodefile.toml": """
        [nodes.a]
        outputs = "a.txt"
        shell = "echo first; echo to stderr >&2; printf 'no newline'; echo > {outputs}"
        [nodes.b]
        outputs = "b.txt"
        shell = "echo > {outputs}"
        """})
    proc = run(tmp_path, "build", "-v", check=0)
    lines = proc.stdout.splitlines()
    for want in ("a | first", "a | to stderr", "a | no newline"):
        assert want in lines, describe(proc)
    assert lines.index("a | no newline") < next(i for i, ln in enumerate(lines) if ln.startswith("ok   a"))
    assert not any(ln.startswith("b | ") for ln in lines), describe(proc)  # b printed nothing
    quiet = run(tmp_path, "build", "-B", check=0)
    assert "a | first" not in quiet.stdout, describe(quiet)


def test_log_follow_shows_the_running_attempt(tmp_path):
    write(tmp_path, {"Nodefile.toml": """
        [nodes.slow]
        outputs = "slow.txt"
        shell = "echo step one; touch started; while [ ! -f go ]; do sleep 0.05; done; echo step two; echo > {outputs}"
        """})
    build = subprocess.Popen([sys.executable, "-m", "nodefile", "build"], cwd=tmp_path, env=base_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (tmp_path / "started").exists(), 30, what="the recipe to start")
        follow = subprocess.Popen([sys.executable, "-m", "nodefile", "log", "-f", "slow"], cwd=tmp_path,
                                  env=base_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            first = follow.stdout.readline()
            assert first.startswith("== slow: following build 1"), first
            seen = ""
            while "step one" not in seen:
                seen += follow.stdout.readline()
            (tmp_path / "go").write_text("")
            out, err = follow.communicate(timeout=30)
        finally:
            follow.kill()
        assert follow.returncode == 0, err
        assert "step two" in out and out.rstrip().endswith("== slow: built"), seen + out
    finally:
        build.communicate(timeout=30)
    # no build running: the last build's log, said so
    proc = run(tmp_path, "log", "-f", "slow", check=0)
    assert "no build is running" in proc.stdout and "step two" in proc.stdout, describe(proc)


def test_log_after_a_restore_shows_the_attempt_that_built_it(tmp_path):
    # a recipe slower than a restore: the learner prefers the cache
    write(tmp_path, {"Nodefile.toml": PROJECT["Nodefile.toml"].replace("echo making a;", "echo making a; sleep 0.5;")})
    run(tmp_path, "build", "a", check=0)
    run(tmp_path, "build", "a", "--set", "n=4", check=0)  # the latest run is for another key
    (tmp_path / "a.txt").unlink()
    run(tmp_path, "build", "a", check=0)  # n=3 again: restored from the cache
    proc = run(tmp_path, "log", "a", check=0)
    assert "load from cache: ok" in proc.stdout, describe(proc)
    assert "== a: restored from the cache; the artifact was built in build 1:" in proc.stdout, describe(proc)
    assert proc.stdout.rstrip().endswith("making a"), describe(proc)
    lg = doc(run(tmp_path, "log", "a", "--json", check=0), "log")
    assert lg["restored"] and lg["built_by"]["build_id"] == 1 and lg["built_by"]["text"] == "making a\n"


def test_skips_say_why(tmp_path):
    write(tmp_path, {"Nodefile.toml": """
        [nodes.data]
        outputs = "data.txt"
        shell = "exit 3"
        [nodes.fit]
        outputs = "fit.txt"
        inputs = ["data"]
        shell = "echo > {outputs}"
        [nodes.report]
        outputs = "report.txt"
        inputs = ["fit"]
        shell = "echo > {outputs}"
        [nodes.later]
        outputs = "later.txt"
        inputs = ["report"]
        shell = "echo > {outputs}"
        [nodes.other]
        outputs = "other.txt"
        inputs = ["slow"]
        shell = "echo > {outputs}"
        [nodes.slow]
        outputs = "slow.txt"
        params = ["n"]
        shell = "sleep 0.5; echo {params.n} > {outputs}"
        [params]
        n = 1
        """})
    proc = run(tmp_path, "build", "-k", check=1)
    assert "skip fit  (needs data, which failed)" in proc.stdout, describe(proc)
    assert "skip report  (needs fit, which was skipped (data failed))" in proc.stdout, describe(proc)
    assert "skip later  (needs report, which was skipped (data failed))" in proc.stdout, describe(proc)
    assert (tmp_path / "other.txt").exists()
    # a new key for slow (no cache entry to restore in a moment): it runs 0.5 s while data fails
    proc = run(tmp_path, "build", "-j", "2", "--set", "n=2", check=1)  # without -k: what waits for slow is blocked
    assert "not started: other (blocked: the build stops at a failure; -k builds" in proc.stdout, describe(proc)


def test_a_missing_interpreter_is_said_once_with_what_to_install(tmp_path):
    write(tmp_path, {"Nodefile.toml": """
        [nodes.model]
        outputs = "m.txt"
        r = "m.R"
        """, "m.R": "writeLines('x', node$outputs[[1]])\n"})
    bare = tmp_path / "bin"
    bare.mkdir()
    (bare / "sh").symlink_to("/bin/sh")
    proc = run(tmp_path, "build", env=base_env(PATH=str(bare)), check=1)
    text = proc.stdout + proc.stderr
    assert "Rscript not found: install R (Debian: apt-get install r-base-core)" in text, describe(proc)
    assert text.count("Rscript") == 1, describe(proc)


def test_resource_limits_are_printed_rounded_and_say_where_they_come_from(tmp_path):
    write(tmp_path, {"Nodefile.toml": """
        [nodes.big]
        outputs = "big.txt"
        shell = "echo > {outputs}"
        resources = { mem_gb = 100000 }
        """})
    proc = run(tmp_path, "build", check=2)
    line = proc.stderr.strip()
    assert "more than the limit mem_gb = " in line and "(this machine's memory; --resources mem_gb=N" in line, line
    limit = line.split("limit mem_gb = ")[1].split(" ")[0]
    assert len(limit.partition(".")[2]) <= 1, line  # rounded to one decimal
    proc = run(tmp_path, "build", "--resources", "mem_gb=5.55", check=2)
    assert "limit mem_gb = 5.5 (--resources)" in proc.stderr, describe(proc)
