"""Function nodes in Python (issue 23, SPEC §7): a decorator and a call
(nodefile.Pipeline), and `call = "pkg.mod:fn"` with `returns` in a Nodefile.
Values are stored like any output; the key holds the function's own code and the
project code it uses, not the whole file."""
from __future__ import annotations

import json
import pickle
import subprocess
import sys

from conftest import base_env, describe, no_traceback, run, runs, write

FLOW = '''
import nodefile
import pandas as pd

pipe = nodefile.Pipeline()
SCALE = 10


def log(name):
    with open("runs.log", "a") as f:
        f.write(name + "\\n")


def scaled(v):
    return v * SCALE


def unrelated():
    return "never used by a node"


@pipe.node
def subset(path: str = "data.csv", cutoff: float = 0.5):
    log("subset")
    df = pd.read_csv(path)
    return df[df.y > cutoff]


@pipe.node
def summary(subset):
    log("summary")
    return {"n": len(subset), "total": int(scaled(subset.x.sum()))}


if __name__ == "__main__":
    import sys
    args = {"cutoff": float(sys.argv[1])} if len(sys.argv) > 1 else {}
    summary_ = pipe.build("summary", jobs=4, **args)
    print("BUILT", " ".join(sorted(summary_.built)))
    print("VALUE", pipe.get("summary", **args))
'''


def flow_project(tmp_path):
    return write(tmp_path, {"flow.py": FLOW, "data.csv": "x,y\n1,0.1\n2,0.7\n3,0.9\n"})


def run_flow(project, *args):
    proc = subprocess.run([sys.executable, "flow.py", *args], cwd=project, capture_output=True, text=True,
                          env=base_env(), timeout=120)
    assert proc.returncode == 0, describe(proc)
    out = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if line.startswith(("BUILT", "VALUE")))
    return out.get("BUILT", ""), out["VALUE"]


def edit(project, old, new, name="flow.py"):
    p = project / name
    text = p.read_text()
    assert old in text
    p.write_text(text.replace(old, new))


def test_ndustria_flow_with_a_decorator_and_a_call(tmp_path):
    project = flow_project(tmp_path)
    assert run_flow(project) == ("subset summary", "{'n': 2, 'total': 50}")
    assert runs(project) == ["subset", "summary"]

    # the second run runs nothing: the filter's value is loaded back
    assert run_flow(project) == ("", "{'n': 2, 'total': 50}")
    assert runs(project) == ["subset", "summary"]

    # an unrelated function of the same file: nothing runs
    edit(project, '"never used by a node"', '"still not used"')
    assert run_flow(project)[0] == ""
    # a comment or blank line inside the filter is not a change of its code
    edit(project, '    log("subset")\n', '    log("subset")  # the filter\n\n')
    assert run_flow(project)[0] == ""
    assert runs(project) == ["subset", "summary"]

    # the filter's code: both run (its value changed; an edit that leaves the value
    # as it was would stop there: early cutoff)
    edit(project, "df[df.y > cutoff]", "df[df.y > cutoff].reset_index(drop=True)")
    assert run_flow(project) == ("subset summary", "{'n': 2, 'total': 50}")
    assert runs(project)[2:] == ["subset", "summary"]

    # a constant the analysis uses through a helper: only the analysis runs
    edit(project, "SCALE = 10", "SCALE = 100")
    assert run_flow(project) == ("summary", "{'n': 2, 'total': 500}")
    assert runs(project)[4:] == ["summary"]

    # an argument given to build() is in the key
    assert run_flow(project, "0.05") == ("subset summary", "{'n': 3, 'total': 600}")
    assert run_flow(project, "0.05")[0] == ""


def test_node_explain_and_status_name_the_function_that_changed(tmp_path):
    project = flow_project(tmp_path)
    run_flow(project)
    edit(project, "return v * SCALE", "return v * SCALE * 2")
    write(project, {"check.py": """
        from flow import pipe
        for n, v in pipe.status("summary").items():
            print(n, v.status.value, "; ".join(str(r) for r in v.reasons))
        """})
    check = subprocess.run([sys.executable, "check.py"], cwd=project, capture_output=True, text=True,
                           env=base_env(), timeout=60)
    assert check.returncode == 0, describe(check)
    lines = dict(line.split(" ", 1) for line in check.stdout.splitlines())
    assert lines["subset"].startswith("up to date")
    assert "function changed: flow.py:scaled" in lines["summary"]


def test_values_are_stored_per_format_and_in_the_cache(tmp_path):
    write(tmp_path, {"vals.py": '''
        import numpy as np
        import nodefile
        pipe = nodefile.Pipeline()

        @pipe.node
        def arr():
            return np.arange(6).reshape(2, 3)

        @pipe.node(format="json")
        def doc(arr, label="sum"):
            return {label: int(arr.sum())}

        @pipe.node
        def obj():
            return {1, 2, 3}

        pipe.build(["doc", "obj"])
        print(pipe.get("arr").shape, pipe.get("doc"), sorted(pipe.get("obj")))
        '''})
    proc = subprocess.run([sys.executable, "vals.py"], cwd=tmp_path, capture_output=True, text=True,
                          env=base_env(), timeout=60)
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout.strip() == "(2, 3) {'sum': 15} [1, 2, 3]"
    values = tmp_path / ".nodefile" / "values"
    assert (values / "arr").read_bytes().startswith(b"\x93NUMPY")
    assert json.loads((values / "doc").read_text()) == {"sum": 15}
    assert pickle.loads((values / "obj").read_bytes()) == {1, 2, 3}
    # a deleted value comes back from the local cache, without running the function
    (values / "doc").unlink()
    proc = subprocess.run([sys.executable, "vals.py"], cwd=tmp_path, capture_output=True, text=True,
                          env=base_env(), timeout=60)
    assert proc.returncode == 0 and json.loads((values / "doc").read_text()) == {"sum": 15}, describe(proc)


def test_a_function_error_is_one_failure_with_its_traceback_in_the_log(tmp_path):
    write(tmp_path, {"bad.py": '''
        import nodefile
        pipe = nodefile.Pipeline()

        @pipe.node
        def boom():
            raise ValueError("no data for 2024")

        try:
            pipe.build("boom")
        except nodefile.BuildError as e:
            print("FAILED", e)
        '''})
    proc = subprocess.run([sys.executable, "bad.py"], cwd=tmp_path, capture_output=True, text=True,
                          env=base_env(), timeout=60)
    assert proc.returncode == 0, describe(proc)
    assert "FAILED build failed: boom" in proc.stdout
    logs = list((tmp_path / ".nodefile" / "logs").rglob("boom.*.log"))
    assert logs and "ValueError: no data for 2024" in logs[0].read_text()
    assert not (tmp_path / ".nodefile" / "values" / "boom").exists()


def test_a_parameter_without_a_value_and_a_cycle_are_clear_errors(tmp_path):
    write(tmp_path, {"p.py": '''
        import nodefile
        pipe, loop = nodefile.Pipeline(), nodefile.Pipeline()

        @pipe.node
        def fit(table):
            return 1

        @loop.node
        def a(b):
            return 1

        @loop.node
        def b(a):
            return 2

        for p in (pipe, loop):
            try:
                p.build()
            except nodefile.ConfigError as e:
                print("ERROR", e)
        '''})
    proc = subprocess.run([sys.executable, "p.py"], cwd=tmp_path, capture_output=True, text=True,
                          env=base_env(), timeout=60)
    assert proc.stdout.splitlines() == [
        "ERROR function node 'fit' (p.py:fit): parameter 'table' has no value "
        "(not a node, no default, not given to pipe.node() or build())",
        "ERROR dependency cycle: a -> b -> a"], describe(proc)


NODEFILE_CALLS = '''
[nodes.clean]
python = "clean.py"
outputs = "clean.csv"

[nodes.fit]
call = "analysis.models:fit"
returns = "model"
inputs = { table = "clean" }
params = { degree = 1 }

[nodes.report]
call = "analysis.models:report"
returns = "text"
inputs = ["fit"]
outputs = { text = "report.pkl" }
'''

MODELS = '''
from . import util

OFFSET = 0.0


def fit(table, degree):
    util.log("fit")
    rows = [line.split(",") for line in open(table).read().split()[1:]]
    return {"degree": degree, "n": len(rows) + int(OFFSET)}


def report(fit):
    util.log("report")
    return f"degree {fit['degree']} on {fit['n']} rows"


def unrelated():
    return 1
'''


def calls_project(tmp_path):
    return write(tmp_path, {
        "Nodefile.toml": NODEFILE_CALLS,
        "clean.py": "open('clean.csv', 'w').write('x,y\\n1,2\\n3,4\\n')\n",
        "analysis/__init__.py": "",
        "analysis/models.py": MODELS,
        "analysis/util.py": "def log(name):\n    open('runs.log', 'a').write(name + '\\n')\n",
    })


def test_nodefile_call_with_returns_stores_the_value_and_tracks_code_per_function(tmp_path):
    project = calls_project(tmp_path)
    run(project, "build", "report", check=0)
    assert runs(project) == ["fit", "report"]
    assert pickle.loads((project / "report.pkl").read_bytes()) == "degree 1 on 2 rows"
    assert pickle.loads((project / ".nodefile/values/fit").read_bytes())["n"] == 2

    edit(project, "return 1", "return 2", "analysis/models.py")  # unrelated function, same file
    run(project, "build", "report", check=0)
    assert runs(project) == ["fit", "report"]

    edit(project, "OFFSET = 0.0", "OFFSET = 0.5", "analysis/models.py")  # a constant fit uses
    proc = run(project, "explain", "fit", "--json", check=0)
    reasons = json.loads(proc.stdout)["nodes"][0]["reasons"]
    assert {"kind": "code_changed", "subject": "analysis/models.py:OFFSET"}.items() <= reasons[0].items()
    run(project, "build", "report", check=0)
    assert runs(project)[2:] == ["fit"]  # report's value is the same: early cutoff

    edit(project, "on {fit['n']} rows", "with {fit['n']} rows", "analysis/models.py")
    run(project, "build", "report", check=0)
    assert runs(project)[3:] == ["report"]

    edit(project, "degree = 1", "degree = 2", "Nodefile.toml")
    run(project, "build", "report", check=0)
    assert runs(project)[4:] == ["fit", "report"]
    assert pickle.loads((project / "report.pkl").read_bytes()) == "degree 2 with 2 rows"


def test_function_nodes_and_nodefile_nodes_depend_on_each_other(tmp_path):
    project = calls_project(tmp_path)
    write(project, {
        "Nodefile.toml": NODEFILE_CALLS + '''
[nodes.final]
python = "final.py"
inputs = { stats = "stats" }
outputs = "final.txt"
''',
        "final.py": '''
            import pickle, nodefile
            job = nodefile.job()
            stats = pickle.load(open(job.inputs.stats, "rb"))
            open("final.txt", "w").write(f"{stats['rows']} rows, report: {stats['report']}\\n")
            ''',
        "pipe.py": '''
            import nodefile
            pipe = nodefile.Pipeline()

            @pipe.node
            def stats(clean, report):
                return {"rows": len(open(clean).read().split()) - 1, "report": report}

            s = pipe.build("final")
            print("BUILT", " ".join(sorted(s.built)))
            print("VALUE", pipe.get("stats")["rows"], pipe.get("report"))
            ''',
    })
    proc = subprocess.run([sys.executable, "pipe.py"], cwd=project, capture_output=True, text=True,
                          env=base_env(), timeout=120)
    assert proc.returncode == 0, describe(proc)
    assert "BUILT clean final fit report stats" in proc.stdout
    assert "VALUE 2 degree 1 on 2 rows" in proc.stdout
    assert (project / "final.txt").read_text() == "2 rows, report: degree 1 on 2 rows\n"
    proc = subprocess.run([sys.executable, "pipe.py"], cwd=project, capture_output=True, text=True,
                          env=base_env(), timeout=120)
    assert proc.returncode == 0 and "BUILT \n" in proc.stdout, describe(proc)  # nothing ran
    # node gc keeps what the Pipeline built (the Nodefile does not list its functions)
    gc = run(project, "gc", check=0)
    assert "the records of 0 node(s)" in gc.stdout, describe(gc)
    proc = subprocess.run([sys.executable, "pipe.py"], cwd=project, capture_output=True, text=True,
                          env=base_env(), timeout=120)
    assert proc.returncode == 0 and "BUILT \n" in proc.stdout, describe(proc)


def test_json_output_round_trips_and_values_read_back_from_python(tmp_path):
    project = calls_project(tmp_path)
    built = json.loads(run(project, "build", "report", "--json", check=0).stdout)
    assert built["ok"] and sorted(built["built"]) == ["clean", "fit", "report"]
    graph = json.loads(run(project, "graph", "--json", check=0).stdout)
    values = {n["name"]: n["value"] for n in graph["nodes"]}
    assert values == {"clean": None, "fit": ".nodefile/values/fit", "report": "report.pkl"}
    status = run(project, "status", "--json", check=0).stdout
    assert json.loads(json.dumps(json.loads(status))) == json.loads(status)
    proc = subprocess.run([sys.executable, "-c", "import nodefile; print(nodefile.Pipeline().get('fit', build=False))"],
                          cwd=project, capture_output=True, text=True, env=base_env(), timeout=60)
    assert proc.stdout.strip() == "{'degree': 1, 'n': 2}", describe(proc)


def test_nodefile_errors_for_returns_and_r_call(tmp_path):
    write(tmp_path, {"Nodefile.toml": '''
        [nodes.a]
        python = "a.py"
        returns = "x"
        outputs = "a.txt"

        [nodes.b]
        r_call = "R/missing.R::fit"

        [nodes.c]
        r_call = "fit_only"
        ''', "a.py": ""})
    proc = run(tmp_path, "check", check=2)
    no_traceback(proc)
    assert "returns names the output that holds a function's return value (call or r_call only)" in proc.stderr
    assert "r_call file 'R/missing.R' does not exist" in proc.stderr
    assert 'r_call must be "FILE.R::function"' in proc.stderr


def test_a_function_outside_any_file_is_keyed_by_its_own_code(tmp_path):
    """python -c (or a notebook cell): no project file to read, its code still counts."""
    def script(body):
        return ("import nodefile\npipe = nodefile.Pipeline()\n"
                f"@pipe.node\ndef answer():\n    {body}\n"
                "print('BUILT', ' '.join(pipe.build('answer').built), pipe.get('answer'))\n")

    def go(body):
        proc = subprocess.run([sys.executable, "-c", script(body)], cwd=tmp_path, capture_output=True, text=True,
                              env=base_env(), timeout=60)
        assert proc.returncode == 0, describe(proc)
        return proc.stdout.strip()

    assert go("return 41") == "BUILT answer 41"
    assert go("return 41") == "BUILT  41"
    assert go("return 42") == "BUILT answer 42"
