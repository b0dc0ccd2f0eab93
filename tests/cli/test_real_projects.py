"""Acceptance: the "real projects" features (SPEC §2 patterns and matrix,
templates, sub-pipelines; §3 the code closure), through the real CLI.

Every recipe appends its node name to a counter file, so each test says exactly
which recipes ran. The two example projects under examples/templates/ keep
their scripts free of test code: there a `sitecustomize.py` put on PYTHONPATH
for the test counts every Python recipe process instead.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from conftest import REPO, base_env, counter_py, describe, no_traceback, run, runs, write


def ran(proc) -> list[str]:
    """Nodes the build reported starting (plain progress lines `run  NAME  (...)`)."""
    return re.findall(r"^run  (\S+)", proc.stdout, re.M)


def build(project, *args, env=None, limit: float = 30) -> subprocess.CompletedProcess:
    """`node build ARGS` that must succeed within `limit` seconds; a hung build fails
    the test with what it printed so far instead of eating the whole time budget."""
    try:
        return run(project, "build", *args, env=env, timeout=limit, check=0)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
        tail = "\n".join(out.splitlines()[:12] + ["..."] + out.splitlines()[-6:])
        pytest.fail(f"`node build {' '.join(map(str, args))}` in {project} did not finish within {limit}s\n"
                    f"--- stdout (head and tail) ---\n{tail}\n--- stderr ---\n{err[-2000:]}")


def new_runs(project, before: int, log="runs.log") -> list[str]:
    return runs(project, log)[before:]


def fails_cleanly(proc, *needles: str) -> str:
    """Exit 2, no traceback, every needle in the message; return the message."""
    assert proc.returncode == 2, describe(proc)
    no_traceback(proc)
    msg = proc.stdout + proc.stderr
    for n in needles:
        assert n in msg, f"{n!r} not in the message\n{describe(proc)}"
    return msg


# ------------------------------------------------------------------ patterns and matrix

def node_counter_py(body: str = "", log: str = "runs.log") -> str:
    """Like conftest.counter_py, but records job.node: instance and template names."""
    return textwrap.dedent(f"""\
        import nodefile
        job = nodefile.job()
        with open({log!r}, "a") as f:
            f.write(job.node + "\\n")
        """) + textwrap.dedent(body)


FIT_PY = node_counter_py("""
    import json, sys
    with open(job.outputs[0], "w") as f:
        json.dump({"node": job.node, "wildcards": dict(job.wildcards), "argv": sys.argv[1:]}, f)
    """)

SUMMARY_PY = counter_py("summary", """
    paths = job.inputs.fits
    with open(job.outputs[0], "w") as f:
        f.write("\\n".join(paths) + "\\n")
    """)


def matrix_project(models: str) -> dict:
    return {
        "Nodefile.toml": f"""
            [nodes.fit]
            outputs = "fits/{{model}}-{{seed}}.json"
            python = "tasks/fit.py"
            args = ["--model", "{{model}}", "--seed", "{{seed}}"]
            matrix = {{ model = {models}, seed = [1, 2] }}

            [nodes.summary]
            outputs = "summary.txt"
            inputs = {{ fits = "fit" }}      # the pattern's name: every instance's outputs
            python = "tasks/summary.py"
            """,
        "tasks/fit.py": FIT_PY,
        "tasks/summary.py": SUMMARY_PY,
    }


def test_matrix_product_builds_every_instance_and_a_list_edit_adds_only_the_new_ones(tmp_path):
    write(tmp_path, matrix_project('["lin", "tree", "rf"]'))
    first = build(tmp_path, "-j", "2")
    fits = [f"fit[model={m},seed={s}]" for m in ("lin", "tree", "rf") for s in (1, 2)]
    assert sorted(runs(tmp_path)) == sorted(fits + ["summary"]), describe(first)
    assert runs(tmp_path)[-1] == "summary"
    # every instance's outputs, in matrix order (model outer, seed inner)
    assert (tmp_path / "summary.txt").read_text().split() == [
        f"fits/{m}-{s}.json" for m in ("lin", "tree", "rf") for s in (1, 2)]
    got = json.loads((tmp_path / "fits/tree-2.json").read_text())
    assert got == {"node": "fit[model=tree,seed=2]", "wildcards": {"model": "tree", "seed": "2"},
                   "argv": ["--model", "tree", "--seed", "2"]}

    # add a model: exactly its two instances run, then the node that reads them all
    write(tmp_path, {"Nodefile.toml": matrix_project('["lin", "tree", "rf", "gbm"]')["Nodefile.toml"]})
    before = len(runs(tmp_path))
    proc = build(tmp_path, "-j", "2")
    did = new_runs(tmp_path, before)
    assert sorted(did) == ["fit[model=gbm,seed=1]", "fit[model=gbm,seed=2]", "summary"], describe(proc)
    assert did[-1] == "summary"

    # replace one value: only the replacement's instances run
    write(tmp_path, {"Nodefile.toml": matrix_project('["lin", "knn", "rf", "gbm"]')["Nodefile.toml"]})
    before = len(runs(tmp_path))
    status = run(tmp_path, "status", check=0)
    assert "tree" not in status.stdout, describe(status)
    proc = build(tmp_path, "-j", "2")
    did = new_runs(tmp_path, before)
    assert sorted(did) == ["fit[model=knn,seed=1]", "fit[model=knn,seed=2]", "summary"], describe(proc)
    assert (tmp_path / "summary.txt").read_text().split() == [
        f"fits/{m}-{s}.json" for m in ("lin", "knn", "rf", "gbm") for s in (1, 2)]

    # settled; and one instance can be asked for by name
    before = len(runs(tmp_path))
    again = build(tmp_path)
    assert new_runs(tmp_path, before) == [] and "nothing to do" in again.stdout, describe(again)
    one = build(tmp_path, "fit[model=rf,seed=1]")
    assert "nothing to do" in one.stdout, describe(one)


def test_matrix_list_of_tables_names_each_instance_and_formats_scalars_as_toml(tmp_path):
    write(tmp_path, {
        "Nodefile.toml": """
            [nodes.fit]
            outputs = "fits/{model}_{alpha}_{flag}.json"
            python = "tasks/fit.py"
            args = ["{model}", "{alpha}", "{flag}"]
            matrix = [
              { model = "a", alpha = 0.5, flag = true },
              { model = "b", alpha = 7, flag = false },
            ]
            """,
        "tasks/fit.py": FIT_PY,
    })
    proc = build(tmp_path, "fit")
    assert sorted(runs(tmp_path)) == ["fit[model=a,alpha=0.5,flag=true]",
                                      "fit[model=b,alpha=7,flag=false]"], describe(proc)
    assert (tmp_path / "fits/a_0.5_true.json").is_file()
    got = json.loads((tmp_path / "fits/b_7_false.json").read_text())
    assert got["wildcards"] == {"model": "b", "alpha": "7", "flag": "false"}
    assert got["argv"] == ["b", "7", "false"]


PATTERN_PROJECT = {
    "Nodefile.toml": """
        [nodes.fit]                      # a pattern node, no matrix
        outputs = "fits/{model}.json"
        python = "tasks/fit.py"
        args = ["{model}"]

        [nodes.special]                  # a literal producer wins over the pattern
        outputs = "fits/special.json"
        python = "tasks/special.py"

        [nodes.qc]
        outputs = "qc/{sample}.txt"
        wildcards = { sample = "[A-Z][0-9]+" }
        shell = "echo {node} >> runs.log && echo {sample} > {outputs}"

        [nodes.compare]                  # needs one instance by path
        outputs = "compare.txt"
        inputs = ["fits/xgb.json", "fits/special.json"]
        shell = "echo compare >> runs.log && cat {inputs} > {outputs}"
        """,
    "tasks/fit.py": FIT_PY,
    "tasks/special.py": counter_py("special", """
        open(job.outputs[0], "w").write("{}")
        """),
}


def test_pattern_without_matrix_builds_the_requested_instance(tmp_path):
    write(tmp_path, PATTERN_PROJECT)
    proc = build(tmp_path, "fits/rf.json")
    assert runs(tmp_path) == ["fit[model=rf]"], describe(proc)
    assert (tmp_path / "fits/rf.json").is_file()
    again = build(tmp_path, "fits/rf.json")
    assert runs(tmp_path) == ["fit[model=rf]"] and "nothing to do" in again.stdout, describe(again)
    # another instance: only it
    proc = build(tmp_path, "fits/svm.json")
    assert runs(tmp_path) == ["fit[model=rf]", "fit[model=svm]"], describe(proc)
    # the literal output beats the pattern that also matches it
    proc = build(tmp_path, "fits/special.json")
    assert runs(tmp_path)[-1:] == ["special"], describe(proc)
    # an input naming an instance's path instantiates it
    before = len(runs(tmp_path))
    proc = build(tmp_path, "compare")
    assert new_runs(tmp_path, before) == ["fit[model=xgb]", "compare"], describe(proc)


def test_wildcard_constraint_rejects_a_non_matching_path(tmp_path):
    write(tmp_path, PATTERN_PROJECT)
    ok = build(tmp_path, "qc/A1.txt")
    assert runs(tmp_path) == ["qc[sample=A1]"], describe(ok)
    for bad in ("qc/a1.txt", "qc/A1x.txt", "qc/1A.txt"):
        proc = run(tmp_path, "build", bad)
        fails_cleanly(proc, bad)
    assert runs(tmp_path) == ["qc[sample=A1]"]
    # as another node's input: no producer, so a missing source naming the needer
    write(tmp_path, {"Nodefile.toml": PATTERN_PROJECT["Nodefile.toml"] + textwrap.dedent("""
        [nodes.uses_bad]
        outputs = "bad.txt"
        inputs = ["qc/lower.txt"]
        shell = "cat {inputs} > {outputs}"
        """)})
    fails_cleanly(run(tmp_path, "check"), "qc/lower.txt", "uses_bad")
    # a matrix value outside the constraint is a Nodefile error
    write(tmp_path, {"Nodefile.toml": """
        [nodes.qc]
        outputs = "qc/{sample}.txt"
        wildcards = { sample = "[A-Z][0-9]+" }
        matrix = { sample = ["A1", "b2"] }
        shell = "echo {sample} > {outputs}"
        """})
    fails_cleanly(run(tmp_path, "check"), "sample=b2")


# --------------------------------------------------------------------------- errors

TWO_PATTERNS = """
    [nodes.fa]
    outputs = "fits/{a}.json"
    shell = "echo a > {outputs}"

    [nodes.fb]
    outputs = "fits/{b}.json"
    shell = "echo b > {outputs}"
    """


def test_ambiguous_path_names_both_patterns(tmp_path):
    write(tmp_path, {"Nodefile.toml": TWO_PATTERNS})
    msg = fails_cleanly(run(tmp_path, "build", "fits/x.json"), "fits/x.json", "fa", "fb")
    assert "more than one pattern" in msg
    assert not (tmp_path / "fits").exists()
    write(tmp_path, {"Nodefile.toml": TWO_PATTERNS + textwrap.dedent("""
        [nodes.use]
        outputs = "use.txt"
        inputs = ["fits/x.json"]
        shell = "cat {inputs} > {outputs}"
        """)})
    for cmd in (("build", "use"), ("check",)):
        msg = fails_cleanly(run(tmp_path, *cmd), "fits/x.json", "fa", "fb", "Nodefile.toml:")
        assert "more than one pattern" in msg


def test_ambiguous_input_is_not_also_reported_as_a_missing_source(tmp_path):
    """Two patterns produce it: 'no node produces it' is false and hides the real error."""
    write(tmp_path, {"Nodefile.toml": TWO_PATTERNS + textwrap.dedent("""
        [nodes.use]
        outputs = "use.txt"
        inputs = ["fits/x.json"]
        shell = "cat {inputs} > {outputs}"
        """)})
    msg = fails_cleanly(run(tmp_path, "check"), "more than one pattern")
    assert "missing source" not in msg, msg


def test_template_errors_name_the_template_and_the_key(tmp_path):
    write(tmp_path, {
        "tpl/train.toml": """
            [template]
            needs = ["model", "data"]
            optional = { seed = 1 }

            [nodes.train]
            outputs = "models/${model}.txt"
            inputs = ["${data}"]
            shell = "cat {inputs} > {outputs}"
            """,
        "Nodefile.toml": """
            [nodes.clean]
            outputs = "clean.txt"
            shell = "echo clean > {outputs}"

            [use.xgb]
            template = "tpl/train.toml"
            with = { model = "xgb" }
            """,
    })
    for cmd in (("build",), ("check",)):
        fails_cleanly(run(tmp_path, *cmd), "tpl/train.toml", "'data'", "Nodefile.toml:7", "use.xgb.with")
    assert not (tmp_path / "clean.txt").exists()
    # a misspelt key: did you mean
    write(tmp_path, {"Nodefile.toml": """
        [use.xgb]
        template = "tpl/train.toml"
        with = { model = "xgb", data = "d.txt", sead = 2 }
        """, "d.txt": "d\n"})
    fails_cleanly(run(tmp_path, "check"), "tpl/train.toml", "sead", "did you mean 'seed'")
    # a ${NAME} the template does not declare
    write(tmp_path, {"tpl/train.toml": """
        [template]
        needs = ["model", "data"]

        [nodes.train]
        outputs = "models/${model}-${sample}.txt"
        inputs = ["${data}"]
        shell = "cat {inputs} > {outputs}"
        """, "Nodefile.toml": """
        [use.xgb]
        template = "tpl/train.toml"
        with = { model = "xgb", data = "d.txt" }
        """})
    fails_cleanly(run(tmp_path, "check"), "${sample}", "train.toml")
    # a template that does not exist
    write(tmp_path, {"Nodefile.toml": """
        [use.xgb]
        template = "tpl/trian.toml"
        with = { model = "xgb", data = "d.txt" }
        """})
    fails_cleanly(run(tmp_path, "check"), "tpl/trian.toml", "not found")


# ------------------------------------------------------------------------ templates

SITECUSTOMIZE = """
    # test-only: count every Python recipe process (NODEFILE_JOB is set for recipes only)
    import os
    if os.environ.get("NODEFILE_JOB") and os.environ.get("NF_TEST_COUNTER"):
        with open(os.environ["NF_TEST_COUNTER"], "a") as f:
            f.write(os.environ.get("NODEFILE_NODE", "?") + "\\n")
    """


def counting_env(tmp_path: Path, name: str) -> tuple[dict, Path]:
    hook = tmp_path / "counter_hook"
    write(hook, {"sitecustomize.py": SITECUSTOMIZE})
    env = base_env()
    env["PYTHONPATH"] = str(hook) + (":" + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    counter = tmp_path / f"{name}.runs"
    env["NF_TEST_COUNTER"] = str(counter)
    return env, counter


def counted(counter: Path) -> list[str]:
    return counter.read_text().split() if counter.exists() else []


@pytest.fixture
def examples(tmp_path):
    """examples/templates copied to tmp (without outputs or state), both projects built once."""
    dst = tmp_path / "templates"
    shutil.copytree(REPO / "examples/templates", dst,
                    ignore=shutil.ignore_patterns("out", ".nodefile", "__pycache__"))
    projects = {}
    for name in ("project_a", "project_b"):
        env, counter = counting_env(tmp_path, name)
        proc = build(dst / name, "-j", "2", env=env, limit=10)
        projects[name] = (dst / name, env, counter)
        assert (dst / name / "out/report.md").is_file(), describe(proc)
    return dst, projects


def rebuild_both(projects) -> dict:
    """Build both projects again; the recipes each ran this time, sorted."""
    out = {}
    for name, (path, env, counter) in projects.items():
        before = len(counted(counter))
        proc = build(path, "-j", "2", env=env, limit=10)
        out[name] = sorted(counted(counter)[before:])
        assert sorted(ran(proc)) == out[name], describe(proc)
    return out


def test_two_example_projects_share_one_template_and_an_edit_rebuilds_exactly_its_nodes(examples):
    root, projects = examples
    a, b = projects["project_a"], projects["project_b"]
    assert sorted(counted(a[2])) == ["data", "price.fit", "price.score", "report"]
    assert sorted(counted(b[2])) == ["baseline.fit", "baseline.score", "lin.fit", "lin.score", "report"]
    report_b = (b[0] / "out/report.md").read_text()
    assert "| sales | lin | mae |" in report_b and "| sales | mean | mae |" in report_b, report_b
    assert rebuild_both(projects) == {"project_a": [], "project_b": []}

    # 1. one node's args in the template: that node and its dependents, in both projects
    tpl = root / "shared/train.toml"
    text = tpl.read_text()
    assert text.count('args = ["--metric", "mae"]') == 1
    tpl.write_text(text.replace('args = ["--metric", "mae"]', 'args = ["--metric", "rmse"]'))
    explain = run(b[0], "explain", "lin.score", env=b[1], check=0)
    assert "recipe changed" in explain.stdout, describe(explain)
    assert rebuild_both(projects) == {
        "project_a": ["price.score", "report"],
        "project_b": ["baseline.score", "lin.score", "report"],
    }
    assert "| price | lin | rmse |" in (a[0] / "out/report.md").read_text()

    # 2. the script of one template node: the same, and explain names the script
    score = root / "shared/score.py"
    score.write_text(score.read_text().replace('"value": round(value, 4)', '"value": round(value, 2)'))
    explain = run(a[0], "explain", "price.score", env=a[1], check=0)
    assert re.search(r"script changed: \S*score\.py", explain.stdout), describe(explain)
    assert rebuild_both(projects) == {
        "project_a": ["price.score", "report"],
        "project_b": ["baseline.score", "lin.score", "report"],
    }

    # 3. a cosmetic edit of the fit script: fit reruns everywhere, reproduces its
    #    bytes, and early cutoff stops there
    fit = root / "shared/fit.py"
    fit.write_text(fit.read_text() + "# a comment\n")
    assert rebuild_both(projects) == {
        "project_a": ["price.fit"],
        "project_b": ["baseline.fit", "lin.fit"],
    }
    assert rebuild_both(projects) == {"project_a": [], "project_b": []}


TPL_PROJECT = {
    "templates/train.toml": """
        [template]
        needs = ["model"]
        optional = { data = "data.txt" }

        [nodes.fit]
        outputs = "out/${model}/fit.txt"
        inputs = ["${data}"]
        python = "fit.py"                # templates/fit.py
        args = ["${model}"]

        [nodes.score]
        outputs = "out/${model}/score.txt"
        inputs = ["fit"]
        python = "score.py"              # templates/score.py
        """,
    "templates/fit.py": node_counter_py("""
        import sys
        open(job.outputs[0], "w").write(sys.argv[1] + open(job.inputs[0]).read())
        """),
    "templates/score.py": node_counter_py("""
        open(job.outputs[0], "w").write("score of " + open(job.inputs[0]).read())
        """),
    "Nodefile.toml": """
        [use.lin]
        template = "templates/train.toml"
        with = { model = "lin" }

        [use.rf]
        template = "templates/train.toml"
        with = { model = "rf" }

        [nodes.report]
        outputs = "report.txt"
        inputs = ["lin.score", "rf.score"]
        shell = "echo report >> runs.log && cat {inputs} > {outputs}"
        """,
    "data.txt": "-data\n",
}


def test_template_scripts_are_relative_to_the_template_folder(tmp_path):
    write(tmp_path, TPL_PROJECT)
    proc = build(tmp_path, "-j", "2")
    assert sorted(runs(tmp_path)) == ["lin.fit", "lin.score", "report", "rf.fit", "rf.score"], describe(proc)
    assert (tmp_path / "out/rf/score.txt").read_text() == "score of rf-data\n"
    # the template's score script: score in both uses, and report
    s = tmp_path / "templates/score.py"
    s.write_text(s.read_text().replace('"score of "', '"score: "'))
    before = len(runs(tmp_path))
    proc = build(tmp_path, "-j", "2")
    assert sorted(new_runs(tmp_path, before)) == ["lin.score", "report", "rf.score"], describe(proc)
    # a template default: only the nodes whose expanded definition changes
    write(tmp_path, {"other.txt": "-other\n"})
    t = tmp_path / "templates/train.toml"
    t.write_text(t.read_text().replace('optional = { data = "data.txt" }', 'optional = { data = "other.txt" }'))
    before = len(runs(tmp_path))
    proc = build(tmp_path, "-j", "2")
    assert sorted(new_runs(tmp_path, before)) == ["lin.fit", "lin.score", "report", "rf.fit", "rf.score"], \
        describe(proc)
    # `with` in one use overrides it: only that use's nodes
    write(tmp_path, {"rf.txt": "-own\n"})
    n = tmp_path / "Nodefile.toml"
    n.write_text(n.read_text().replace('with = { model = "rf" }', 'with = { model = "rf", data = "rf.txt" }'))
    before = len(runs(tmp_path))
    proc = build(tmp_path, "-j", "2")
    assert sorted(new_runs(tmp_path, before)) == ["report", "rf.fit", "rf.score"], describe(proc)


def test_a_use_name_as_input_stands_for_all_its_nodes(tmp_path):
    """`[use.rf]` makes an alias node `rf` (`node build rf` works); as another node's
    input it stands for the outputs of every rf.* node, like a pattern's name."""
    write(tmp_path, TPL_PROJECT)
    n = tmp_path / "Nodefile.toml"
    n.write_text(n.read_text().replace('inputs = ["lin.score", "rf.score"]', 'inputs = ["lin.score", "rf"]'))
    proc = build(tmp_path, "-j", "2")
    assert sorted(runs(tmp_path)) == ["lin.fit", "lin.score", "report", "rf.fit", "rf.score"], describe(proc)
    assert (tmp_path / "report.txt").read_text() == "score of lin-data\nrf-data\nscore of rf-data\n"


def test_template_script_outside_the_project_runs_once(tmp_path):
    """The smallest case of the shared-template example: a template (and its script)
    in a folder beside the project. Its key names the script `shared/step.py`; the
    build must run it once and finish, not re-run it forever."""
    write(tmp_path, {
        "shared/t.toml": """
            [template]
            needs = ["word"]

            [nodes.step]
            outputs = "out-${word}.txt"
            python = "step.py"
            """,
        "shared/step.py": node_counter_py("""
            open(job.outputs[0], "w").write(job.node)
            """, log=str(tmp_path / "runs.log")),
        "proj/Nodefile.toml": """
            [use.hi]
            template = "../shared/t.toml"
            with = { word = "hi" }
            """,
    })
    proc = build(tmp_path / "proj", limit=5)
    assert runs(tmp_path) == ["hi.step"], describe(proc)
    assert (tmp_path / "proj/out-hi.txt").read_text() == "hi.step"


def test_a_params_table_in_a_template_is_not_silently_ignored(tmp_path):
    """A template may hold [params] (it is not an 'unknown table'), yet its values never
    reach its nodes: they see the using project's [params]. Either use them or reject
    the table; never silently take another value."""
    write(tmp_path, {
        "tpl/t.toml": """
            [template]
            needs = ["w"]

            [params]
            seed = 5

            [nodes.n]
            outputs = "n-${w}.txt"
            params = ["seed"]
            shell = "echo {params.seed} > {outputs}"
            """,
        "Nodefile.toml": """
            [params]
            seed = 1

            [use.x]
            template = "tpl/t.toml"
            with = { w = "a" }
            """,
    })
    proc = run(tmp_path, "build")
    no_traceback(proc)
    if proc.returncode == 2:
        assert "params" in proc.stderr and "t.toml" in proc.stderr, describe(proc)
    else:
        assert proc.returncode == 0, describe(proc)
        assert (tmp_path / "n-a.txt").read_text() == "5\n", describe(proc)


def test_templates_may_use_templates(tmp_path):
    write(tmp_path, {
        "templates/inner.toml": """
            [template]
            needs = ["tag", "src"]

            [nodes.step]
            outputs = "out/${tag}/step.txt"
            inputs = ["${src}"]
            shell = "echo {node} >> runs.log && cat {inputs} > {outputs}"
            """,
        "templates/outer.toml": """
            [template]
            needs = ["tag"]
            optional = { n = 3 }

            [use.inner]                          # relative to this template's folder
            template = "inner.toml"
            with = { tag = "${tag}", src = "prep" }   # "prep": the outer template's node

            [nodes.prep]
            outputs = "out/${tag}/prep.txt"
            shell = "echo {node} >> runs.log && echo ${tag} ${n} > {outputs}"

            [nodes.top]
            outputs = "out/${tag}/top.txt"
            inputs = ["inner.step"]
            shell = "echo {node} >> runs.log && cat {inputs} > {outputs}"
            """,
        "Nodefile.toml": """
            [use.a]
            template = "templates/outer.toml"
            with = { tag = "a" }

            [use.b]
            template = "templates/outer.toml"
            with = { tag = "b", n = 7 }
            """,
    })
    proc = build(tmp_path, "-j", "2")
    assert sorted(runs(tmp_path)) == ["a.inner.step", "a.prep", "a.top", "b.inner.step", "b.prep", "b.top"], \
        describe(proc)
    assert (tmp_path / "out/b/top.txt").read_text() == "b 7\n"
    for target in ("a.inner.step", "b.inner", "b"):
        assert "nothing to do" in build(tmp_path, target).stdout
    # the inner template's command: its node in both uses; the bytes are the same,
    # so early cutoff keeps top up to date
    inner = tmp_path / "templates/inner.toml"
    inner.write_text(inner.read_text().replace("cat {inputs} > {outputs}", "cat < {inputs} > {outputs}"))
    before = len(runs(tmp_path))
    proc = build(tmp_path, "-j", "2")
    assert sorted(new_runs(tmp_path, before)) == ["a.inner.step", "b.inner.step"], describe(proc)


def test_package_template(tmp_path):
    write(tmp_path, {
        "pylib/nfkit/__init__.py": "",
        "pylib/nfkit/templates/stamp.toml": """
            [template]
            needs = ["word"]

            [nodes.stamp]
            outputs = "stamp-${word}.txt"
            shell = "echo ${word} > {outputs}"
            """,
        "proj/Nodefile.toml": """
            [use.hi]
            template = "package:nfkit/templates/stamp.toml"
            with = { word = "hi" }

            [use.yo]
            template = "package:nfkit:templates/stamp.toml"
            with = { word = "yo" }
            """,
    })
    env = base_env(PYTHONPATH=tmp_path / "pylib")
    proc = build(tmp_path / "proj", env=env)
    assert sorted(ran(proc)) == ["hi.stamp", "yo.stamp"], describe(proc)
    assert (tmp_path / "proj/stamp-hi.txt").read_text() == "hi\n"
    write(tmp_path, {"proj/Nodefile.toml": """
        [use.hi]
        template = "package:nfkit/templates/nope.toml"
        with = { word = "hi" }
        """})
    fails_cleanly(run(tmp_path / "proj", "check", env=env), "package:nfkit/templates/nope.toml", "not found")


# ----------------------------------------------------------------------- robustness

def test_a_recipe_that_rewrites_its_own_input_does_not_loop_forever(tmp_path):
    """'X changed while it ran; running it again' must give up after a few rounds: a
    recipe that appends to its own input (a user mistake, or a file rewritten by
    something else all the time) would otherwise hang the build."""
    write(tmp_path, {
        "in.txt": "a\n",
        "Nodefile.toml": """
            [nodes.n]
            outputs = "out.txt"
            inputs = ["in.txt"]
            shell = "echo n >> runs.log; echo x >> in.txt; cp in.txt {outputs}"
            """,
    })
    try:
        proc = run(tmp_path, "build", timeout=8)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the build re-ran n {len(runs(tmp_path))} times in 8 s and was still going")
    no_traceback(proc)
    assert len(runs(tmp_path)) <= 5, describe(proc)
    if proc.returncode != 0:
        assert "in.txt" in proc.stdout + proc.stderr, describe(proc)


# -------------------------------------------------------------------- code closure

def test_python_helper_edits_rebuild_the_importer_and_explain_names_the_file(tmp_path):
    write(tmp_path, {
        "Nodefile.toml": """
            [nodes.fit]
            outputs = "fit.txt"
            python = "tasks/fit.py"

            [nodes.other]
            outputs = "other.txt"
            python = "tasks/other.py"
            """,
        "tasks/fit.py": counter_py("fit", """
            from lib import helper
            open(job.outputs[0], "w").write(str(helper.go(2)))
            """),
        "tasks/other.py": counter_py("other", """
            import json, os.path
            open(job.outputs[0], "w").write("x")
            """),
        "lib/__init__.py": "",
        "lib/helper.py": "from .core import scale\n\ndef go(x):\n    return scale(x) + 1\n",
        "lib/core.py": "def scale(x):\n    return x * 10\n",
        "lib/unused.py": "def unused():\n    return 0\n",
        "scratch.py": "print('not imported by anything')\n",
    })
    build(tmp_path, "-j", "2")
    assert sorted(runs(tmp_path)) == ["fit", "other"]
    assert (tmp_path / "fit.txt").read_text() == "21"

    # transitively imported, through the package
    (tmp_path / "lib/core.py").write_text("def scale(x):\n    return x * 100\n")
    explain = run(tmp_path, "explain", "fit", check=0)
    assert "imported file changed: lib/core.py" in explain.stdout, describe(explain)
    before = len(runs(tmp_path))
    proc = build(tmp_path)
    assert new_runs(tmp_path, before) == ["fit"], describe(proc)
    assert (tmp_path / "fit.txt").read_text() == "201"

    # directly imported
    (tmp_path / "lib/helper.py").write_text("from .core import scale\n\ndef go(x):\n    return scale(x) + 2\n")
    explain = run(tmp_path, "explain", "fit", check=0)
    assert "lib/helper.py" in explain.stdout, describe(explain)
    before = len(runs(tmp_path))
    build(tmp_path)
    assert new_runs(tmp_path, before) == ["fit"]

    # modules nothing imports: nothing rebuilds
    (tmp_path / "lib/unused.py").write_text("def unused():\n    return 12345\n")
    (tmp_path / "scratch.py").write_text("print('still not imported')\n")
    before = len(runs(tmp_path))
    proc = build(tmp_path)
    assert new_runs(tmp_path, before) == [] and "nothing to do" in proc.stdout, describe(proc)


# one string, one append: two R recipes at -j 2 must not interleave their lines
R_COUNT = 'cat(paste0(node$node, "\\n"), file = "runs.log", append = TRUE)\n'


@pytest.mark.needs_r
def test_r_helper_edits_rebuild_the_sourcing_node_and_explain_names_the_file(tmp_path):
    write(tmp_path, {
        "Nodefile.toml": """
            [nodes.plot]
            outputs = "plot.txt"
            r = "tasks/plot.R"

            [nodes.table]
            outputs = "table.txt"
            r = "tasks/table.R"
            """,
        "tasks/plot.R": 'source("R/helpers.R")\n' + R_COUNT
                        + 'writeLines(as.character(helper(2)), node$outputs[[1]])\n',
        "tasks/table.R": R_COUNT + 'writeLines("t", node$outputs[[1]])\n',
        "R/helpers.R": 'source("R/util.R")  # resolved against the working directory\n'
                       'helper <- function(x) util(x) + 1\n',
        "R/util.R": "util <- function(x) x * 10\n",
        "R/unused.R": "unused <- function() 0\n",
    })
    build(tmp_path, "-j", "2")
    assert sorted(runs(tmp_path)) == ["plot", "table"]
    assert (tmp_path / "plot.txt").read_text() == "21\n"

    (tmp_path / "R/util.R").write_text("util <- function(x) x * 100\n")
    explain = run(tmp_path, "explain", "plot", check=0)
    assert "imported file changed: R/util.R" in explain.stdout, describe(explain)
    before = len(runs(tmp_path))
    proc = build(tmp_path)
    assert new_runs(tmp_path, before) == ["plot"], describe(proc)
    assert (tmp_path / "plot.txt").read_text() == "201\n"

    (tmp_path / "R/unused.R").write_text("unused <- function() 12345\n")
    before = len(runs(tmp_path))
    proc = build(tmp_path)
    assert new_runs(tmp_path, before) == [] and "nothing to do" in proc.stdout, describe(proc)


# ------------------------------------------------------------------- sub-pipelines

def sub_project(tmp_path) -> dict:
    log = str(tmp_path / "runs.log")  # one counter for both folders
    return {
        "Nodefile.toml": """
            [nodes.clean]
            outputs = "clean.csv"
            inputs = ["raw.csv"]
            python = "tasks/clean.py"

            [use.ingest]
            nodefile = "ingest/Nodefile.toml"

            [nodes.report]                   # a sub-pipeline node by path
            outputs = "report.txt"
            inputs = ["ingest/out.csv"]
            python = "tasks/report.py"

            [nodes.audit]                    # ... and by name
            outputs = "audit.txt"
            inputs = { ingested = "ingest.out" }
            python = "tasks/audit.py"
            """,
        "raw.csv": "x\n1\n",
        "tasks/clean.py": counter_py("clean", """
            open(job.outputs[0], "w").write(open(job.inputs[0]).read() + "2\\n")
            """, log=log),
        "tasks/report.py": counter_py("report", """
            open(job.outputs[0], "w").write(job.inputs[0] + ":" + open(job.inputs[0]).read())
            """, log=log),
        "tasks/audit.py": counter_py("audit", """
            open(job.outputs[0], "w").write(job.inputs.ingested + "\\n")
            """, log=log),
        "ingest/Nodefile.toml": """
            [nodes.out]
            outputs = "out.csv"
            inputs = ["../clean.csv"]        # the parent's node, relative to this folder
            python = "step.py"               # ingest/step.py
            """,
        "ingest/step.py": counter_py("out", """
            import os
            text = open(job.inputs[0]).read()
            open(job.outputs[0], "w").write(f"{os.path.basename(os.getcwd())}|{job.inputs[0]}|" + text)
            """, log=log),
    }


def test_sub_pipeline_is_one_dag_with_its_parent(tmp_path):
    write(tmp_path, sub_project(tmp_path))
    proc = build(tmp_path, "-j", "2")
    did = runs(tmp_path)
    assert sorted(did) == ["audit", "clean", "out", "report"], describe(proc)
    assert did[:2] == ["clean", "out"], did  # parent -> sub-pipeline -> parent
    assert "run  ingest.out" in proc.stdout, describe(proc)
    # the sub-pipeline's recipe runs in its folder and sees paths relative to it
    assert (tmp_path / "ingest/out.csv").read_text() == "ingest|../clean.csv|x\n1\n2\n"
    # the parent sees project-relative paths
    assert (tmp_path / "report.txt").read_text().startswith("ingest/out.csv:")
    assert (tmp_path / "audit.txt").read_text() == "ingest/out.csv\n"

    # by name and by path; then an edit upstream flows through both folders
    for target in ("ingest.out", "ingest/out.csv", "ingest"):
        again = build(tmp_path, target)
        assert "nothing to do" in again.stdout, describe(again)
    (tmp_path / "raw.csv").write_text("x\n5\n")
    before = len(runs(tmp_path))
    proc = build(tmp_path, "-j", "2", "ingest/out.csv")
    assert new_runs(tmp_path, before) == ["clean", "out"], describe(proc)
    before = len(runs(tmp_path))
    proc = build(tmp_path, "-j", "2")
    assert sorted(new_runs(tmp_path, before)) == ["audit", "report"], describe(proc)


def test_sub_pipeline_builds_standalone_in_its_own_folder(tmp_path):
    write(tmp_path, sub_project(tmp_path))
    build(tmp_path, "-j", "2")
    sub = tmp_path / "ingest"
    before = len(runs(tmp_path))
    proc = build(sub)  # cwd ingest/: its own Nodefile, its own state
    assert new_runs(tmp_path, before) == ["out"], describe(proc)
    assert "run  out" in proc.stdout, describe(proc)
    assert (sub / ".nodefile").is_dir()
    again = build(sub)
    assert "nothing to do" in again.stdout, describe(again)
    # the standalone build reproduced the same bytes: the parent stays up to date
    before = len(runs(tmp_path))
    parent = build(tmp_path)
    assert new_runs(tmp_path, before) == [] and "nothing to do" in parent.stdout, describe(parent)
    # the parent-relative input is an ordinary file there: an edit rebuilds it standalone
    (tmp_path / "clean.csv").write_text("x\n9\n")
    before = len(runs(tmp_path))
    build(sub)
    assert new_runs(tmp_path, before) == ["out"]


def test_sub_pipeline_python_recipe_imports_its_own_helpers(tmp_path):
    """A sub-pipeline script importing a package of its own folder works standalone;
    in the parent's build it must too, and editing the helper must rebuild it."""
    log = str(tmp_path / "runs.log")
    write(tmp_path, {
        "Nodefile.toml": """
            [use.ingest]
            nodefile = "ingest/Nodefile.toml"
            """,
        "ingest/Nodefile.toml": """
            [nodes.out]
            outputs = "out.txt"
            python = "tasks/step.py"
            """,
        "ingest/lib/__init__.py": "",
        "ingest/lib/consts.py": "X = 41\n",
        "ingest/tasks/step.py": counter_py("out", """
            from lib.consts import X
            open(job.outputs[0], "w").write(str(X + 1))
            """, log=log),
    })
    standalone = build(tmp_path / "ingest")
    assert (tmp_path / "ingest/out.txt").read_text() == "42", describe(standalone)
    (tmp_path / "ingest/out.txt").unlink()
    proc = run(tmp_path, "build")
    assert proc.returncode == 0, describe(proc)
    assert (tmp_path / "ingest/out.txt").read_text() == "42"
    (tmp_path / "ingest/lib/consts.py").write_text("X = 99\n")
    explain = run(tmp_path, "explain", "ingest.out", check=0)
    assert "ingest/lib/consts.py" in explain.stdout, describe(explain)
    build(tmp_path)
    assert (tmp_path / "ingest/out.txt").read_text() == "100"
