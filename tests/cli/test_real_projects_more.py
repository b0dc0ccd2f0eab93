"""Acceptance for issue 19 items 3-10: what the ports of real projects (a make lesson
over a folder of books, a Snakemake + R replication, a doit lesson, an R targets
pipeline) needed. Through the real CLI; every recipe records that it ran.

- instances from files (`matrix = "books/{book}.txt"`), as make's $(wildcard);
- wildcards in a recipe's script path (`r = "src/figures/{figure}.R"`);
- `stdout = "{outputs.NAME}"`;
- shell recipes find the project's interpreter first on PATH;
- params from a file (`[project] params = "config.toml"`);
- a missing source blocks only the nodes that need it;
- `node pull` from the stores by key, without fetch recipes;
- summaries tell restores from builds.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import base_env, describe, no_traceback, run, runs, write


def node_counter(body: str = "") -> str:
    """A Python recipe that records job.node in runs.log, then runs body."""
    return textwrap.dedent("""\
        import nodefile
        job = nodefile.job()
        with open("runs.log", "a") as f:
            f.write(job.node + "\\n")
        """) + textwrap.dedent(body)


def build(project, *args, check=0):
    """`node build ARGS`; (process, the recipes that ran during it)."""
    before = len(runs(project))
    proc = run(project, "build", *args, check=check)
    no_traceback(proc)
    return proc, runs(project)[before:]


def settle(project) -> None:
    """A no-op build after the racy window, so the next build may take the fast path."""
    time.sleep(0.05)
    proc, ran = build(project)
    assert ran == [] and "nothing to do" in proc.stdout, describe(proc)


def fails_cleanly(proc, *needles: str) -> str:
    assert proc.returncode == 2, describe(proc)
    no_traceback(proc)
    msg = proc.stdout + proc.stderr
    for n in needles:
        assert n in msg, f"{n!r} not in the message\n{describe(proc)}"
    return msg


# ------------------------------------------------------------- 3. instances from files

BOOKS = {
    # the make lesson: books/*.txt -> counts/*.dat -> results.txt
    "Nodefile.toml": """
        [nodes.count]
        outputs = "counts/{book}.dat"
        inputs = { book = "books/{book}.txt" }
        python = "countwords.py"
        matrix = "books/{book}.txt"          # one instance per book there is

        [nodes.results]
        outputs = "results.txt"
        inputs = { counts = "count" }
        python = "testzipf.py"
        """,
    "countwords.py": node_counter("""
        words = open(job.inputs.book).read().split()
        with open(job.outputs[0], "w") as f:
            f.write(f"{len(words)}\\n")
        """),
    "testzipf.py": node_counter("""
        with open(job.outputs[0], "w") as f:
            for p in job.inputs.counts:
                f.write(f"{p} {open(p).read().strip()}\\n")
        """),
    "books/abyss.txt": "the abyss stares back\n",
    "books/isles.txt": "isles of the sea\nand more\n",
}


def results(project) -> list[str]:
    return (project / "results.txt").read_text().splitlines()


def test_a_folder_of_inputs_adds_and_drops_instances_as_make_does(tmp_path):
    write(tmp_path, BOOKS)
    proc, ran = build(tmp_path)
    assert sorted(ran) == ["count[book=abyss]", "count[book=isles]", "results"], describe(proc)
    assert results(tmp_path) == ["counts/abyss.dat 4", "counts/isles.dat 6"]
    settle(tmp_path)

    # a new book: its instance and the aggregate, nothing else (the fast path saw the folder)
    write(tmp_path, {"books/last.txt": "one two three\n"})
    proc, ran = build(tmp_path)
    assert ran == ["count[book=last]", "results"], describe(proc)
    assert (tmp_path / "counts/last.dat").read_text() == "3\n"
    assert results(tmp_path) == ["counts/abyss.dat 4", "counts/isles.dat 6", "counts/last.dat 3"]
    assert "count[book=last]" in run(tmp_path, "status", check=0).stdout
    settle(tmp_path)

    # a removed book: its instance is dropped, its output kept aside, the aggregate rebuilt
    (tmp_path / "books/isles.txt").unlink()
    proc, ran = build(tmp_path)
    assert ran == ["results"], describe(proc)
    assert not (tmp_path / "counts/isles.dat").exists()
    kept = tmp_path / ".nodefile/previous/count[book=isles]/removed/counts/isles.dat"
    assert kept.read_text() == "6\n", describe(proc)
    assert "isles" in proc.stdout and ".nodefile/previous/" in proc.stdout, describe(proc)
    assert results(tmp_path) == ["counts/abyss.dat 4", "counts/last.dat 3"]
    assert "isles" not in run(tmp_path, "status", check=0).stdout
    settle(tmp_path)

    # a touch changes nothing
    book = tmp_path / "books/abyss.txt"
    later = book.stat().st_mtime_ns + 5_000_000_000
    os.utime(book, ns=(later, later))
    proc, ran = build(tmp_path)
    assert ran == [] and "nothing to do" in proc.stdout, describe(proc)

    # the book back: its count, and the aggregate of those three books, come from the cache
    write(tmp_path, {"books/isles.txt": "isles of the sea\nand more\n"})
    proc, ran = build(tmp_path)
    assert ran == [] and "restored 2 from the cache, up to date 2" in proc.stdout, describe(proc)
    assert (tmp_path / "counts/isles.dat").read_text() == "6\n"
    assert results(tmp_path) == ["counts/abyss.dat 4", "counts/isles.dat 6", "counts/last.dat 3"]


def test_node_watch_sees_a_file_added_to_the_folder_and_a_missing_source_arriving(tmp_path):
    from nodefile.config import load_project
    from nodefile.watch import Matcher, watched_paths
    p = write(tmp_path, {**BOOKS, "Nodefile.toml": BOOKS["Nodefile.toml"] + textwrap.dedent("""
        [nodes.extra]
        outputs = "extra.txt"
        inputs = ["later/raw.csv"]
        shell = "cp {inputs} {outputs}"
        """)})
    project = load_project(str(p), use_cache=False)
    m = Matcher(project.root, watched_paths(project, list(project.nodes)), project)
    assert m.match(f"{p}/books/new.txt") is not None
    assert m.match(f"{p}/books/notes.md") is None
    assert m.match(f"{p}/later/raw.csv") is not None


def test_instances_from_files_honour_constraints_and_check_the_pattern(tmp_path):
    write(tmp_path, {
        "Nodefile.toml": """
            [nodes.count]
            outputs = "counts/{book}.dat"
            inputs = ["books/{book}.txt"]
            wildcards = { book = "[a-z]+" }
            shell = "wc -w < {inputs} > {outputs}"
            matrix = "books/{book}.txt"
            """,
        "books/abyss.txt": "a b\n",
        "books/Draft1.txt": "not a book yet\n",
        "books/notes.md": "not a book\n",
    })
    proc, _ = build(tmp_path)
    assert sorted(p.name for p in (tmp_path / "counts").iterdir()) == ["abyss.dat"], describe(proc)
    # a pattern whose wildcards are not the outputs' is a Nodefile error, named
    nf = (tmp_path / "Nodefile.toml").read_text()
    (tmp_path / "Nodefile.toml").write_text(nf.replace('matrix = "books/{book}.txt"', 'matrix = "books/{name}.txt"'))
    fails_cleanly(run(tmp_path, "check"), "Nodefile.toml:6", "books/{name}.txt", "book")


# ------------------------------------------------------- 4. wildcards in script paths

FIGURES = {
    "Nodefile.toml": """
        [nodes.figure]
        outputs = "figures/{figure}.txt"
        python = "src/figures/{figure}.py"
        matrix = { figure = ["hist", "scatter"] }
        """,
    "src/figures/hist.py": node_counter("""
        from helpers import label
        open(job.outputs[0], "w").write(label("hist") + "\\n")
        """),
    "src/figures/scatter.py": node_counter("""
        open(job.outputs[0], "w").write("scatter\\n")
        """),
    "src/figures/helpers.py": "def label(x):\n    return 'figure ' + x\n",
}


def test_each_instance_runs_and_is_keyed_by_its_own_script(tmp_path):
    write(tmp_path, FIGURES)
    proc, ran = build(tmp_path)
    assert sorted(ran) == ["figure[figure=hist]", "figure[figure=scatter]"], describe(proc)
    assert (tmp_path / "figures/hist.txt").read_text() == "figure hist\n"
    assert (tmp_path / "figures/scatter.txt").read_text() == "scatter\n"
    # an edit to one instance's script, or to what it imports, rebuilds that instance only
    with open(tmp_path / "src/figures/scatter.py", "a") as f:
        f.write("# tweaked\n")
    proc, ran = build(tmp_path)
    assert ran == ["figure[figure=scatter]"], describe(proc)
    (tmp_path / "src/figures/helpers.py").write_text("def label(x):\n    return 'Figure: ' + x\n")
    proc, ran = build(tmp_path)
    assert ran == ["figure[figure=hist]"], describe(proc)
    assert (tmp_path / "figures/hist.txt").read_text() == "Figure: hist\n"
    # a missing script for one instance is an error naming the script and the instance
    write(tmp_path, {"Nodefile.toml": FIGURES["Nodefile.toml"].replace('"scatter"]', '"scatter", "map"]')})
    fails_cleanly(run(tmp_path, "build"), "src/figures/map.py", "figure[figure=map]")


@pytest.mark.needs_r
def test_r_scripts_named_by_a_wildcard(tmp_path):
    write(tmp_path, {
        "Nodefile.toml": """
            [nodes.figure]
            outputs = "figures/{figure}.txt"
            r = "src/figures/{figure}.R"
            matrix = { figure = ["a", "b"] }
            """,
        "src/figures/a.R": 'writeLines(paste("a", node$wildcards$figure), node$outputs[[1]])\n',
        "src/figures/b.R": 'writeLines(paste("b", node$node), node$outputs[[1]])\n',
    })
    proc = run(tmp_path, "build", check=0)
    assert (tmp_path / "figures/a.txt").read_text() == "a a\n", describe(proc)
    assert (tmp_path / "figures/b.txt").read_text() == "b figure[figure=b]\n", describe(proc)


# ------------------------------------------------------------------------- 5. stdout

def test_stdout_goes_to_an_output_and_stderr_to_the_log(tmp_path):
    write(tmp_path, {
        "Nodefile.toml": """
            [nodes.results]
            outputs = { results = "results.txt" }
            inputs = ["data.txt"]
            python = "testzipf.py"
            args = ["{inputs}"]
            stdout = "{outputs.results}"

            [nodes.listing]
            outputs = "listing.txt"
            inputs = ["data.txt"]
            shell = "echo listing >> runs.log; cat {inputs}; echo to-stderr >&2"
            stdout = "listing.txt"
            """,
        "data.txt": "3\n1\n2\n",
        "testzipf.py": node_counter("""
            import sys
            print("progress: reading", file=sys.stderr)
            for v in sorted(open(sys.argv[1]).read().split()):
                print(v)
            """),
    })
    proc, ran = build(tmp_path)
    assert sorted(ran) == ["listing", "results"], describe(proc)
    assert (tmp_path / "results.txt").read_text() == "1\n2\n3\n"
    assert (tmp_path / "listing.txt").read_text() == "3\n1\n2\n"
    log = run(tmp_path, "log", "results", check=0).stdout
    assert "progress: reading" in log and "\n1\n" not in log, log
    assert "to-stderr" in run(tmp_path, "log", "listing", check=0).stdout
    # a re-run writes the file afresh (never appends)
    (tmp_path / "data.txt").write_text("5\n4\n")
    proc, ran = build(tmp_path)
    assert (tmp_path / "results.txt").read_text() == "4\n5\n", describe(proc)
    # the hand-run line says where standard output goes
    job = run(tmp_path, "job", "results", check=0)
    assert "> results.txt" in job.stdout, describe(job)


def test_stdout_must_name_one_of_the_outputs(tmp_path):
    write(tmp_path, {"Nodefile.toml": """
        [nodes.a]
        outputs = ["a.txt", "b.txt"]
        shell = "echo a"
        stdout = "{outputs}"

        [nodes.c]
        outputs = "c.txt"
        shell = "echo c"
        stdout = "elsewhere.txt"
        """})
    msg = fails_cleanly(run(tmp_path, "check"), "Nodefile.toml:4", "Nodefile.toml:9", "elsewhere.txt")
    assert "must name one output" in msg and "not one of the node's file outputs (c.txt)" in msg, msg


# --------------------------------------------------------- 6. the project's interpreter

def test_shell_recipes_find_the_interpreter_running_nodefile_first(tmp_path):
    write(tmp_path, {
        "Nodefile.toml": """
            [nodes.which]
            outputs = "which.txt"
            shell = "python3 -c 'import sys; print(sys.executable)' > which.txt"

            [nodes.words]
            outputs = "words.txt"
            shell = "python3 say.py words.txt"
            """,
        "say.py": "import sys\nopen(sys.argv[1], 'w').write(sys.prefix + '\\n')\n",
    })
    # a PATH whose first python3 is another one (a venv not activated): shell recipes
    # still get the interpreter nodefile runs with
    decoy = tmp_path / "decoy"
    decoy.mkdir()
    (decoy / "python3").write_text("#!/bin/sh\necho decoy python >&2\nexit 3\n")
    (decoy / "python3").chmod(0o755)
    env = base_env(PATH=f"{decoy}{os.pathsep}{os.environ.get('PATH', '')}")
    proc = run(tmp_path, "build", env=env, check=0)
    here = os.path.dirname(sys.executable)
    assert os.path.dirname((tmp_path / "which.txt").read_text().strip()) == here, describe(proc)
    assert (tmp_path / "words.txt").read_text().strip() == sys.prefix

    # [project] python names another interpreter: its folder comes first instead
    other = tmp_path / "venv" / "bin"
    other.mkdir(parents=True)
    (other / "python3").symlink_to(sys.executable)
    nf = (tmp_path / "Nodefile.toml").read_text()
    (tmp_path / "Nodefile.toml").write_text('[project]\npython = "venv/bin/python3"\n\n' + nf)
    (tmp_path / "which.txt").unlink()
    run(tmp_path, "build", "which", "-B", env=env, check=0)
    assert (tmp_path / "which.txt").read_text().strip() == str(other / "python3")


# ---------------------------------------------------------------- 7. params from a file

PARAMS = {
    "Nodefile.toml": """
        [project]
        params = "config.toml"

        [params]
        seed = 7                      # the Nodefile's own value wins over the file's

        [nodes.fit]
        outputs = "fit.txt"
        params = ["alpha", "seed"]
        python = "echo_params.py"

        [nodes.plot]
        outputs = "plot.txt"
        params = ["colour"]
        python = "echo_params.py"
        """,
    "config.toml": 'alpha = 0.5\nseed = 1\ncolour = "red"\n',
    "echo_params.py": node_counter("""
        import json
        open(job.outputs[0], "w").write(json.dumps(dict(job.params), sort_keys=True) + "\\n")
        """),
}


def test_params_from_a_file_under_params_and_set(tmp_path):
    write(tmp_path, PARAMS)
    proc, ran = build(tmp_path)
    assert sorted(ran) == ["fit", "plot"], describe(proc)
    assert json.loads((tmp_path / "fit.txt").read_text()) == {"alpha": 0.5, "seed": 7}
    assert json.loads((tmp_path / "plot.txt").read_text()) == {"colour": "red"}
    settle(tmp_path)
    # editing a value one node uses rebuilds that node only (the fast path sees the file)
    (tmp_path / "config.toml").write_text('alpha = 0.5\nseed = 1\ncolour = "blue"\n')
    proc, ran = build(tmp_path)
    assert ran == ["plot"], describe(proc)
    # a value no node uses, or one the Nodefile overrides: nothing
    (tmp_path / "config.toml").write_text('alpha = 0.5\nseed = 99\ncolour = "blue"\nunused = 3\n')
    proc, ran = build(tmp_path)
    assert ran == [] and "nothing to do" in proc.stdout, describe(proc)
    # --set wins over both
    proc, ran = build(tmp_path, "--set", "alpha=0.25")
    assert ran == ["fit"] and json.loads((tmp_path / "fit.txt").read_text())["alpha"] == 0.25, describe(proc)


def test_params_files_in_json_and_yaml(tmp_path):
    write(tmp_path, {**PARAMS, "config.json": '{"alpha": 0.5, "seed": 1, "colour": "green"}\n'})
    nf = PARAMS["Nodefile.toml"].replace("config.toml", "config.json")
    write(tmp_path, {"Nodefile.toml": nf})
    build(tmp_path)
    assert json.loads((tmp_path / "plot.txt").read_text()) == {"colour": "green"}
    pytest.importorskip("yaml")
    write(tmp_path, {"Nodefile.toml": nf.replace("config.json", "config.yaml"),
                     "config.yaml": "alpha: 0.5\nseed: 1\ncolour: teal\n"})
    build(tmp_path)
    assert json.loads((tmp_path / "plot.txt").read_text()) == {"colour": "teal"}


def test_a_bad_params_file_is_named(tmp_path):
    write(tmp_path, {**PARAMS, "config.toml": 'alpha = 0.5\nseed = \n'})
    msg = fails_cleanly(run(tmp_path, "build"), "config.toml:2", "invalid TOML")
    assert "unknown param" not in msg, msg  # one message, not one per node that uses it
    (tmp_path / "config.toml").unlink()
    fails_cleanly(run(tmp_path, "build"), "Nodefile.toml:2", "config.toml", "cannot read")
    write(tmp_path, {"Nodefile.toml": PARAMS["Nodefile.toml"].replace("config.toml", "config.json"),
                     "config.json": '{"alpha": 0.5,\n "seed": }\n'})
    fails_cleanly(run(tmp_path, "build"), "config.json:2", "invalid JSON")
    write(tmp_path, {"config.json": "[1, 2]\n"})
    fails_cleanly(run(tmp_path, "check"), "config.json", "a table of NAME = value")


# ------------------------------------------------------- 8. a missing source blocks only its nodes

MISSING = {
    "Nodefile.toml": """
        [nodes.ok]
        outputs = "ok.txt"
        python = "make.py"

        [nodes.clean]
        outputs = "clean.txt"
        inputs = ["data/raw.csv"]
        python = "make.py"

        [nodes.report]
        outputs = "report.txt"
        inputs = ["clean", "ok"]
        python = "make.py"
        """,
    "make.py": node_counter("""
        for p in job.outputs:
            open(p, "w").write(job.node + "\\n")
        """),
}


def test_a_missing_source_blocks_only_the_nodes_that_need_it(tmp_path):
    write(tmp_path, MISSING)
    proc, ran = build(tmp_path, "ok")
    assert ran == ["ok"], describe(proc)
    # a build that needs it: exit 2, naming the file and the node needing it, nothing run
    proc, ran = build(tmp_path, "report", check=2)
    assert ran == [], describe(proc)
    msg = fails_cleanly(proc, "data/raw.csv", "needed by clean", "Nodefile.toml:7")
    assert msg.count("data/raw.csv") == 1, msg
    build(tmp_path, check=2)
    # status and graph show the blocked nodes with the reason
    status = run(tmp_path, "status", check=0).stdout
    rows = {line.split()[0]: line for line in status.splitlines()[1:-1]}
    assert "up to date" in rows["ok"], status
    assert re.search(r"blocked\s+missing source 'data/raw.csv'", rows["clean"]), status
    assert re.search(r"blocked\s+needs clean", rows["report"]), status
    graph = json.loads(run(tmp_path, "graph", "--format", "json", check=0).stdout)
    by = {n["name"]: n for n in graph["nodes"]}
    assert by["clean"]["status"] == "blocked" and "data/raw.csv" in by["clean"]["reason"]
    assert by["report"]["status"] == "blocked" and by["ok"]["status"] == "up to date"
    assert "lightgrey" in run(tmp_path, "graph", check=0).stdout
    # node check still reports it
    fails_cleanly(run(tmp_path, "check"), "missing source 'data/raw.csv'", "needed by clean")
    # the file arrives: the blocked nodes build
    write(tmp_path, {"data/raw.csv": "x\n"})
    proc, ran = build(tmp_path)
    assert ran == ["clean", "report"], describe(proc)


# ------------------------------------------------------------------ 9 and 10. stores

STORED = {
    "Nodefile.toml": """
        [stores.team]
        url = "../store"
        push = true

        [nodes.a]
        outputs = "a.txt"
        inputs = ["in.txt"]
        python = "make.py"

        [nodes.b]
        outputs = "b.txt"
        inputs = ["a"]
        python = "make.py"

        [nodes.c]
        outputs = "c.txt"
        inputs = ["b"]
        python = "make.py"
        """,
    "in.txt": "data\n",
    "make.py": MISSING["make.py"],
}


def test_pull_restores_by_key_without_fetch_recipes_and_summaries_tell_how(tmp_path):
    a = write(tmp_path / "A", STORED)
    proc, ran = build(a)
    assert sorted(ran) == ["a", "b", "c"] and "built 3 in" in proc.stdout, describe(proc)
    # a clone with only the sources: pull restores every node from the store, runs nothing
    b = tmp_path / "B"
    b.mkdir()
    for rel in ("Nodefile.toml", "in.txt", "make.py"):
        shutil.copy(a / rel, b / rel)
    proc = run(b, "pull", check=0)
    assert runs(b) == [], describe(proc)
    assert "pulled 3 node(s) (fetched 3 from team)" in proc.stdout, describe(proc)
    assert "no recipe can produce it" not in proc.stdout + proc.stderr
    assert (b / "c.txt").read_text() == "c\n"
    proc, ran = build(b)
    assert ran == [] and "nothing to do" in proc.stdout, describe(proc)

    # outputs gone: restored from the local cache (pull kept a copy), told apart from builds
    (b / "a.txt").unlink()
    (b / "b.txt").unlink()
    proc, ran = build(b)
    assert ran == [], describe(proc)
    assert re.search(r"^restored 2 from the cache, up to date 1 in ", proc.stdout, re.M), describe(proc)


def test_a_summary_counts_builds_restores_and_fetches_apart(tmp_path):
    a = write(tmp_path / "A", STORED)
    build(a)
    # B: a may come from the store (a fetch recipe), b has none, c's script differs
    nf = STORED["Nodefile.toml"].replace(
        'inputs = ["in.txt"]\n        python = "make.py"',
        'inputs = ["in.txt"]\n        recipes = [{ fetch = "team" }, { python = "make.py" }]').replace(
        'inputs = ["b"]\n        python = "make.py"', 'inputs = ["b"]\n        python = "make_c.py"')
    b = write(tmp_path / "B", {"Nodefile.toml": nf, "in.txt": "data\n", "make.py": STORED["make.py"],
                               "make_c.py": STORED["make.py"]})
    proc, ran = build(b)
    assert sorted(ran) == ["b", "c"], describe(proc)
    assert re.search(r"^built 2, fetched 1 from team in ", proc.stdout, re.M), describe(proc)
