"""Coming from doit (SPEC §8): `node import dodo.py`, and doit running a Nodefile.

Each realistic dodo file is copied twice: real doit (`python -m doit`) builds one
copy, `node import` + `node build` the other. The outputs must be the same, and
after an edit of one input both must rerun the same tasks (every action appends
its task's name to runs.log).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import base_env, describe, no_traceback, run, runs, write

# ------------------------------------------------------------------ helpers


def doit(project, *args, check=0) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "doit", *args], cwd=str(project), capture_output=True,
                          text=True, timeout=120, env=base_env())
    if check is not None:
        assert proc.returncode == check, describe(proc)
    return proc


def twins(tmp_path, files: dict) -> tuple[Path, Path]:
    """The same project twice: (doit's copy, nodefile's copy)."""
    return write(tmp_path / "by_doit", files), write(tmp_path / "by_node", files)


def imported(project, *args) -> subprocess.CompletedProcess:
    """`node import dodo.py` that must succeed, then `node check` on what it wrote."""
    proc = run(project, "import", "dodo.py", *args, check=0)
    no_traceback(proc)
    run(project, "check", check=0)
    return proc


def same_files(a: Path, b: Path, paths) -> None:
    for p in paths:
        assert (a / p).read_bytes() == (b / p).read_bytes(), f"{p} differs between doit and nodefile"


def both_build(d: Path, n: Path) -> tuple[list[str], list[str]]:
    """One `doit` run and one `node build`; the tasks each ran (sorted)."""
    before_d, before_n = len(runs(d)), len(runs(n))
    doit(d)
    run(n, "build", check=0)
    return sorted(runs(d)[before_d:]), sorted(runs(n)[before_n:])


def edit(projects, rel: str, text: str) -> None:
    for p in projects:
        (p / rel).write_text(text)


# ------------------------------------------------------------------ a C build

C_FILES = {
    "util.h": "int twice(int x);\n",
    "util.c": '#include "util.h"\nint twice(int x) { return 2 * x; }\n',
    "main.c": '#include <stdio.h>\n#include "util.h"\nint main(void) { printf("%d\\n", twice(21)); return 0; }\n',
    "dodo.py": '''
        """A C program, compiled and linked the way doit's documentation does it."""
        DOIT_CONFIG = {"default_tasks": ["report"]}
        SOURCES = ["main.c", "util.c"]


        def task_compile():
            """compile each source file"""
            for src in SOURCES:
                obj = src.replace(".c", ".o")
                yield {"name": obj,
                       "actions": [f"gcc -c {src} -o %(targets)s", f"echo compile:{obj} >> runs.log"],
                       "file_dep": [src, "util.h"], "targets": [obj], "clean": True}


        def task_link():
            """link the program"""
            return {"actions": [["gcc", "-o", "hello", "main.o", "util.o"], "echo link >> runs.log"],
                    "file_dep": ["main.o", "util.o"], "targets": ["hello"], "clean": True}


        def task_report():
            """run it"""
            return {"actions": ["./hello > %(targets)s; echo report >> runs.log"],
                    "file_dep": ["hello"], "targets": ["out/report.txt"]}
        ''',
}


def test_c_build_imports_and_rebuilds_like_doit(tmp_path):
    (tmp_path / "by_doit" / "out").mkdir(parents=True)  # doit does not make a target's folder
    d, n = twins(tmp_path, C_FILES)
    proc = imported(n)
    text = (n / "Nodefile.toml").read_text()
    assert "[nodes.compile-main_o]" in text and 'default = ["report"]' in text
    assert "clean" in proc.stderr  # `clean` is noted
    did, nid = both_build(d, n)
    assert did == nid == ["compile:main.o", "compile:util.o", "link", "report"]
    same_files(d, n, ["main.o", "util.o", "out/report.txt"])
    assert (n / "out/report.txt").read_text() == "42\n"
    # a new value in one source: that object, the link and the report run again
    edit([d, n], "util.c", '#include "util.h"\nint twice(int x) { return x + x + 1; }\n')
    did, nid = both_build(d, n)
    assert did == nid == ["compile:util.o", "link", "report"]
    assert (n / "out/report.txt").read_text() == "43\n"
    # the header: both objects again
    edit([d, n], "util.h", "int twice(int x); /* doubled */\n")
    did, nid = both_build(d, n)
    assert did == nid and "compile:main.o" in did and "compile:util.o" in did
    assert both_build(d, n) == ([], [])


# ------------------------------------------------------------------ a data pipeline: Python actions, params

PIPELINE_FILES = {
    "seed.txt": "7\n",
    "dodo.py": '''
        """A small data pipeline: Python actions with doit's keyword arguments, params."""
        import csv
        import json
        from pathlib import Path


        def log(name):
            with open("runs.log", "a") as f:
                f.write(name + "\\n")


        def extract(dependencies, targets, rows):
            log("extract")
            seed = int(Path(dependencies[0]).read_text())
            with open(targets[0], "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["id", "value"])
                for i in range(rows):
                    w.writerow([i, (i * seed) % 17])


        def clean(dependencies, targets, min_value, changed, task):
            log("tidy")
            assert set(changed) <= set(dependencies) and list(task.targets) == targets
            rows = list(csv.DictReader(open(dependencies[0])))
            keep = [r for r in rows if int(r["value"]) >= min_value]
            with open(targets[0], "w", newline="") as f:
                w = csv.DictWriter(f, ["id", "value"])
                w.writeheader()
                w.writerows(keep)
            return {"kept": len(keep)}


        def summarize(source, target, precision, **options):
            log("summarize")
            values = [int(r["value"]) for r in csv.DictReader(open(source))]
            Path(target).parent.mkdir(exist_ok=True)
            Path(target).write_text(json.dumps({"n": len(values), "label": options["label"],
                                                "mean": round(sum(values) / len(values), precision)}))


        def task_extract():
            """raw rows from the seed"""
            return {"actions": ["mkdir -p data", (extract, [], {"rows": 40})],
                    "file_dep": ["seed.txt"], "targets": ["data/raw.csv"]}


        def task_tidy():
            """keep the rows with a large enough value"""
            return {"actions": [clean], "file_dep": ["data/raw.csv"], "targets": ["data/clean.csv"],
                    "params": [{"name": "min_value", "long": "min-value", "type": int, "default": 5}]}


        def task_summarize():
            """the mean, as JSON"""
            return {"actions": [(summarize, ["data/clean.csv", "out/summary.json"], {"precision": 3})],
                    "file_dep": ["data/clean.csv"], "targets": ["out/summary.json"],
                    "params": [{"name": "label", "default": "value"}]}


        def task_label():
            """a command action with params"""
            return {"actions": ["echo %(label)s min=%(min_value)s > %(targets)s", "echo label >> runs.log"],
                    "file_dep": ["out/summary.json"], "targets": ["out/label.txt"],
                    "params": [{"name": "label", "default": "value"},
                               {"name": "min_value", "type": int, "default": 5}]}
        ''',
}


def test_pipeline_with_python_actions_and_params(tmp_path):
    d, n = twins(tmp_path, PIPELINE_FILES)
    imported(n)
    text = (n / "Nodefile.toml").read_text()
    assert 'call = "nodefile.doit_adapter:run"' in text
    assert "[params]" in text and "min_value = 5" in text  # shared params: `node build --set` reaches them
    did, nid = both_build(d, n)
    assert did == nid == ["extract", "label", "summarize", "tidy"]
    same_files(d, n, ["data/raw.csv", "data/clean.csv", "out/summary.json", "out/label.txt"])
    assert (n / "out/label.txt").read_text() == "value min=5\n"
    edit([d, n], "seed.txt", "11\n")
    did, nid = both_build(d, n)
    assert did == nid == ["extract", "label", "summarize", "tidy"]
    same_files(d, n, ["data/raw.csv", "data/clean.csv", "out/summary.json"])
    assert both_build(d, n) == ([], [])
    # a param on the command line: doit's option, nodefile's --set. nodefile reruns
    # the node by itself (a param is part of its key); doit needs -a (it tracks files only)
    doit(d, "run", "-a", "tidy", "--min-value", "9")
    proc = run(n, "build", "tidy", "--set", "min_value=9", check=0)
    assert "param changed" in run(n, "explain", "tidy", check=0).stdout or "tidy" in proc.stdout
    same_files(d, n, ["data/clean.csv"])


def test_python_action_returning_false_fails_as_in_doit(tmp_path):
    files = {"in.txt": "x\n", "dodo.py": '''
        def check(dependencies, targets):
            open(targets[0], "w").write("half\\n")
            return False


        def task_check():
            return {"actions": [check], "file_dep": ["in.txt"], "targets": ["out.txt"]}
        '''}
    d, n = twins(tmp_path, files)
    imported(n)
    assert doit(d, check=None).returncode != 0
    proc = run(n, "build", check=1)
    assert "returned False" in proc.stdout + proc.stderr + "".join(
        p.read_text() for p in (n / ".nodefile" / "logs").rglob("*.log"))


# ------------------------------------------------------------------ sub-tasks, uptodate, task_dep

SITE_FILES = {
    "pages/intro.md": "welcome\n",
    "pages/usage.md": "run it\n",
    "dodo.py": '''
        """A static site: a setup task, one sub-task per page, task_dep and uptodate."""
        from doit.tools import config_changed, run_once

        PAGES = ["intro", "usage"]


        def task_setup():
            """make the build folder, once"""
            return {"actions": ["mkdir -p build", "echo setup >> runs.log"], "uptodate": [run_once]}


        def task_render():
            """one page per markdown file"""
            for page in PAGES:
                yield {"name": page,
                       "actions": [f"tr a-z A-Z < pages/{page}.md > %(targets)s", f"echo render:{page} >> runs.log"],
                       "file_dep": [f"pages/{page}.md"], "targets": [f"build/{page}.html"],
                       "task_dep": ["setup"], "uptodate": [None]}


        def task_version():
            return {"actions": ["echo 1.0 > build/version.txt", "echo version >> runs.log"],
                    "targets": ["build/version.txt"], "task_dep": ["setup"],
                    "uptodate": [config_changed({"release": "1.0"})]}


        def task_site():
            """the pages in one file"""
            return {"actions": ["cat build/version.txt build/intro.html build/usage.html > %(targets)s",
                                "echo site >> runs.log"],
                    "file_dep": ["build/intro.html", "build/usage.html", "build/version.txt"],
                    "targets": ["build/site.html"], "task_dep": ["render"], "uptodate": [True]}
        ''',
}


def test_subtasks_uptodate_and_task_dep(tmp_path):
    d, n = twins(tmp_path, SITE_FILES)
    proc = imported(n)
    for needle in ("task 'setup': uptodate run_once", "task 'render:intro': uptodate None",
                   "task 'site': uptodate True", "task 'version': uptodate config_changed"):
        assert needle in proc.stderr, proc.stderr
    text = (n / "Nodefile.toml").read_text()
    assert '[nodes.render]\ninputs = ["render-intro", "render-usage"]' in text  # the group task: an alias
    assert 'outputs = { stamp = ".nodefile/doit/setup.done" }' in text
    did, nid = both_build(d, n)
    assert did == nid == ["render:intro", "render:usage", "setup", "site", "version"]
    same_files(d, n, ["build/intro.html", "build/usage.html", "build/site.html"])
    edit([d, n], "pages/usage.md", "run it twice\n")
    did, nid = both_build(d, n)
    assert did == nid == ["render:usage", "site"]
    same_files(d, n, ["build/site.html"])
    assert both_build(d, n) == ([], [])
    # config_changed's value is a param: a new value reruns the task in both
    for p in (d, n):
        (p / "dodo.py").write_text((p / "dodo.py").read_text().replace('"1.0"}', '"1.1"}'))
    imported(n, "--force")
    assert both_build(d, n) == (["version"], ["version"])


# ------------------------------------------------------------------ the pydoit tutorial's style

TUTORIAL_FILES = {
    "names.txt": "ana bo cy\n",
    "dodo.py": '''
        """Task functions as the pydoit tutorial writes them."""


        def hello(targets):
            with open("runs.log", "a") as f:
                f.write("hello\\n")
            with open(targets[0], "w") as output:
                output.write("Python says Hello World!!!\\n")


        def task_hello():
            """hello"""
            return {"actions": [hello], "targets": ["hello.txt"], "file_dep": ["names.txt"]}


        def task_greet():
            """one greeting per name"""
            for name in ["ana", "bo", "cy"]:
                yield {"name": name,
                       "actions": [f"echo Hello {name} | cat - hello.txt > %(targets)s",
                                   f"echo greet:{name} >> runs.log"],
                       "file_dep": ["hello.txt"], "targets": [f"greet_{name}.txt"], "verbosity": 2}


        def gen_count(word):
            yield {"basename": f"count_{word}",
                   "actions": [f"grep -c {word} names.txt > %(targets)s || true", f"echo count:{word} >> runs.log"],
                   "file_dep": ["names.txt"], "targets": [f"count_{word}.txt"]}


        def task_count():
            yield gen_count("ana")
            yield gen_count("dee")
        ''',
}


def test_tutorial_style_task_functions(tmp_path):
    d, n = twins(tmp_path, TUTORIAL_FILES)
    proc = imported(n)
    assert "task 'greet:ana': verbosity" in proc.stderr
    did, nid = both_build(d, n)
    assert did == nid == ["count:ana", "count:dee", "greet:ana", "greet:bo", "greet:cy", "hello"]
    same_files(d, n, ["hello.txt", "greet_ana.txt", "greet_cy.txt", "count_ana.txt", "count_dee.txt"])
    # hello runs again but writes the same bytes: neither reruns the greetings
    edit([d, n], "names.txt", "ana bo cy dee\n")
    did, nid = both_build(d, n)
    assert did == nid == ["count:ana", "count:dee", "hello"]
    same_files(d, n, ["count_dee.txt"])


# ------------------------------------------------------------------ what does not convert

UNCONVERTIBLE = '''
    from doit import create_after
    from doit.tools import timeout


    def task_hello():
        """the tutorial's first task: a nested function"""
        def python_hello(targets):
            with open(targets[0], "a") as output:
                output.write("Python says Hello World!!!\\n")
        return {"actions": [python_hello], "targets": ["hello.txt"]}


    def task_lam():
        return {"actions": [lambda: True], "targets": ["lam.txt"], "file_dep": ["in.txt"]}


    def find_deps():
        return {"file_dep": ["in.txt"]}


    def task_deps():
        return {"actions": [find_deps]}


    def task_calc():
        return {"actions": ["cp in.txt calc.txt"], "calc_dep": ["deps"], "targets": ["calc.txt"]}


    def use(x):
        print(x)


    def task_args():
        return {"actions": [use], "getargs": {"x": ("deps", "file_dep")}, "targets": [], "file_dep": ["in.txt"]}


    def task_db():
        return {"actions": ["cp in.txt db.txt"], "setup": ["deps"], "teardown": ["echo bye"],
                "file_dep": ["in.txt"], "targets": ["db.txt"]}


    def task_cfg():
        return {"actions": ["cp in.txt cfg.txt"], "uptodate": [timeout(60)], "targets": ["cfg.txt"]}


    @create_after(executed="deps")
    def task_later():
        yield {"name": "x", "actions": ["true"]}
    '''


def test_what_does_not_convert_is_listed_and_strict_fails(tmp_path):
    n = write(tmp_path, {"in.txt": "x\n", "dodo.py": UNCONVERTIBLE})
    proc = run(n, "import", "dodo.py", "--strict")
    assert proc.returncode == 2, describe(proc)
    no_traceback(proc)
    assert not (n / "Nodefile.toml").exists()
    proc = run(n, "import", "dodo.py", check=0)
    for task, what in [("hello", "cannot be imported"), ("lam", "lambda"), ("calc", "calc_dep"),
                       ("args", "getargs"), ("db", "setup"), ("db", "teardown"),
                       ("cfg", "uptodate timeout"), ("later", "create_after")]:
        assert any(line.startswith(f"not converted: task '{task}'") and what in line
                   for line in proc.stderr.splitlines()), f"{task}/{what} not listed\n{proc.stderr}"
    text = (n / "Nodefile.toml").read_text()
    assert "# not converted: action 1" in text and "[nodes.later" not in text
    run(n, "check", check=0)  # the graph is whole: an unconverted action fails when it runs
    proc = run(n, "build", "lam", check=1)
    logs = "".join(p.read_text() for p in (n / ".nodefile" / "logs").rglob("*.log"))
    assert "was not converted" in proc.stdout + proc.stderr + logs


def test_import_refuses_to_overwrite_and_prints_with_dash(tmp_path):
    n = write(tmp_path, {"Nodefile.toml": "# mine\n", "in.txt": "x\n",
                         "dodo.py": 'def task_a():\n    return {"actions": ["cp in.txt a.txt"], '
                                    '"file_dep": ["in.txt"], "targets": ["a.txt"]}\n'})
    proc = run(n, "import", "dodo.py")
    assert proc.returncode == 2 and "exists" in proc.stderr, describe(proc)
    assert (n / "Nodefile.toml").read_text() == "# mine\n"
    proc = run(n, "import", "dodo.py", "-o", "-", check=0)
    assert '[nodes.a]\ninputs = ["in.txt"]\noutputs = ["a.txt"]\nshell = "cp in.txt a.txt"' in proc.stdout
    run(n, "import", "dodo.py", "--force", check=0)
    assert "[nodes.a]" in (n / "Nodefile.toml").read_text()


def test_a_broken_dodo_file_is_one_clear_error(tmp_path):
    n = write(tmp_path, {"dodo.py": "import json\n\ndef task_a():\n    return {'actions': ['true'],\n"
                                    "            'targets': [json.missing]}\n"})
    proc = run(n, "import", "dodo.py")
    assert proc.returncode == 2, describe(proc)
    no_traceback(proc)
    assert "dodo.py" in proc.stderr and "AttributeError" in proc.stderr and "line 5" in proc.stderr


def test_the_noop_build_never_imports_doit(tmp_path):
    n = write(tmp_path, TUTORIAL_FILES)
    imported(n)
    run(n, "build", check=0)
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "nodefile", "build"], cwd=n,
                          capture_output=True, text=True, env=base_env())
    assert proc.returncode == 0 and "up to date" in proc.stdout, describe(proc)
    assert "doit" not in proc.stderr


# ------------------------------------------------------------------ doit running a Nodefile

NODEFILE_PROJECT = {
    "seed.txt": "3\n",
    "make_raw.py": """
        import nodefile
        job = nodefile.job()
        open("runs.log", "a").write("raw\\n")
        open(job.outputs[0], "w").write(open(job.inputs[0]).read() * 2)
        """,
    "Nodefile.toml": """
        [nodes.raw]
        inputs = ["seed.txt"]
        outputs = "data/raw.txt"
        python = "make_raw.py"

        [nodes.report]
        inputs = ["raw"]
        outputs = "out/report.txt"
        shell = "wc -l < {inputs} > {outputs} && echo report >> runs.log"

        [nodes.all]
        inputs = ["report"]
        """,
}


def test_doit_lists_and_builds_a_nodefile_from_a_dodo_file(tmp_path):
    n = write(tmp_path, {**NODEFILE_PROJECT, "dodo.py": "from nodefile.doit_loader import task_nodes\n"})
    listed = doit(n, "list").stdout.split()
    assert {"raw", "report", "all"} <= set(listed)
    doit(n)
    assert sorted(runs(n)) == ["raw", "report"]
    assert (n / "out/report.txt").read_text().strip() == "2"
    out = doit(n).stdout  # doit asks nodefile: everything is up to date
    assert runs(n) == ["raw", "report"] and "-- raw" in out, out
    run(n, "build", check=0)  # nodefile agrees
    (n / "seed.txt").write_text("4\n")
    doit(n)
    assert runs(n)[2:] == ["raw", "report"]
    assert "up to date" in run(n, "status", check=0).stdout


def test_doit_runs_a_nodefile_through_the_loader_plugin(tmp_path):
    n = write(tmp_path, {**NODEFILE_PROJECT, "doit.cfg": """
        [GLOBAL]
        loader = nodefile

        [LOADER]
        nodefile = nodefile.doit_loader:NodefileLoader
        """})
    assert {"raw", "report", "all"} <= set(doit(n, "list").stdout.split())
    doit(n, "report")
    assert sorted(runs(n)) == ["raw", "report"]
    proc = doit(n, "-f", "missing.toml", "list", check=None)
    assert proc.returncode != 0 and "missing.toml" in proc.stderr and "Traceback" not in proc.stderr


def test_without_doit_import_says_how_to_install_it(tmp_path):
    fake = write(tmp_path / "fake", {"doit/__init__.py": "raise ImportError('No module named doit')\n"})
    n = write(tmp_path / "p", {"dodo.py": "def task_a():\n    return {'actions': ['true']}\n"})
    env = base_env()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(fake), env.get("PYTHONPATH")]))
    proc = run(n, "import", "dodo.py", env=env)
    assert proc.returncode == 2, describe(proc)
    no_traceback(proc)
    assert "nodefile[doit]" in proc.stderr and not (n / "Nodefile.toml").exists()


def test_command_actions_keep_doit_formatting_and_separate_shells(tmp_path):
    files = {"a.txt": "A\n", "dodo.py": '''
        DOIT_CONFIG = {"action_string_formatting": "new"}


        def task_pack():
            return {"actions": ["mkdir -p sub", "cd sub && echo inside > marker.txt",
                                "echo {dependencies} '{{braces}}' 100% > {targets}"],
                    "file_dep": ["a.txt"], "targets": ["packed.txt"]}
        '''}
    d, n = twins(tmp_path, files)
    imported(n)
    doit(d)
    run(n, "build", check=0)
    # the `cd` of one action does not reach the next, as in doit (each action its own shell)
    same_files(d, n, ["packed.txt", "sub/marker.txt"])
    assert (n / "packed.txt").read_text() == "a.txt {braces} 100%\n"
