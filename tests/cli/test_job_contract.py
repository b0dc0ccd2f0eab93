"""Acceptance 13, 14, 15: what a recipe receives (Python, R, shell), in and out of a build."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import base_env, describe, run, write

PARAMS = """
[params]
seed = 7
rate = 0.25
flag = true
names = ["a", "b c"]
opts = { depth = 3, "my key" = "v" }
unused = 99
"""

# -- 13: Python ---------------------------------------------------------------------------
PY_PROJECT = {
    "Nodefile.toml": PARAMS + """
        [nodes.prep]
        outputs = { raw = "data/raw.txt" }
        shell = "echo raw > {outputs.raw}"

        [nodes.fit]
        outputs = { report = "out/report.json", extra = "out/extra.txt" }
        inputs = { raw = "prep", cfg = "cfg.txt" }
        params = ["seed", "rate", "flag", "names", "opts", { alpha = 0.5 }]
        python = "tasks/contract.py"
        args = ["--in", "{inputs.raw}", "{outputs}", "--seed", "{params.seed}", "{node}", "{inputs[1]}"]
        """,
    "cfg.txt": "config\n",
    "tasks/contract.py": """
        import json, os, sys
        import nodefile

        job = nodefile.job()
        facts = {
            "node": job.node,
            "inputs.raw": job.inputs.raw,
            "inputs[0]": job.inputs[0],
            "inputs.cfg": job.inputs.cfg,
            "inputs[1]": job.inputs[1],
            "outputs.report": job.outputs.report,
            "outputs[1]": job.outputs[1],
            "params": dict(job.params),
            "params.seed": job.params.seed,
            "argv": sys.argv[1:],
            "env_job": os.environ.get("NODEFILE_JOB"),
            "cwd": os.getcwd(),
            "raw_text": open(job.inputs.raw).read(),
        }
        if os.environ.get("NODEFILE_JOB"):
            with open(os.environ["NODEFILE_JOB"]) as f:
                facts["manifest"] = json.load(f)
        os.makedirs(os.path.dirname(job.outputs.report), exist_ok=True)
        with open(job.outputs.report, "w") as f:
            json.dump(facts, f)
        with open(job.outputs.extra, "w") as f:
            f.write("extra\\n")
        """,
    "tasks/standalone.py": """
        import json
        import nodefile

        job = nodefile.job("fit")
        print(json.dumps({
            "node": job.node,
            "inputs": [job.inputs.raw, job.inputs.cfg],
            "outputs": [job.outputs.report, job.outputs.extra],
            "params": dict(job.params),
        }))
        """,
}

EXPECTED_PARAMS = {"seed": 7, "rate": 0.25, "flag": True, "names": ["a", "b c"],
                   "opts": {"depth": 3, "my key": "v"}, "alpha": 0.5}


def test_python_recipe_sees_the_job(tmp_path):
    write(tmp_path, PY_PROJECT)
    proc = run(tmp_path, "build", "fit", check=0)
    facts = json.loads((tmp_path / "out/report.json").read_text())
    assert facts["node"] == "fit"
    assert facts["inputs.raw"] == facts["inputs[0]"] == "data/raw.txt"
    assert facts["inputs.cfg"] == facts["inputs[1]"] == "cfg.txt"
    assert facts["outputs.report"] == "out/report.json"
    assert facts["outputs[1]"] == "out/extra.txt"
    assert facts["params"] == EXPECTED_PARAMS  # TOML types kept; undeclared params absent
    assert facts["params.seed"] == 7 and isinstance(facts["params.seed"], int)
    assert facts["raw_text"] == "raw\n"
    assert facts["argv"] == ["--in", "data/raw.txt", "out/report.json", "out/extra.txt",
                             "--seed", "7", "fit", "cfg.txt"], describe(proc)
    assert os.path.realpath(facts["cwd"]) == os.path.realpath(tmp_path)
    # NODEFILE_JOB names a JSON manifest that says the same
    assert facts["env_job"]
    m = facts["manifest"]
    assert m["node"] == "fit"
    assert {e["name"]: e["value"] for e in m["inputs"]} == {"raw": "data/raw.txt", "cfg": "cfg.txt"}
    assert {e["name"]: e["value"] for e in m["outputs"]} == {"report": "out/report.json",
                                                             "extra": "out/extra.txt"}
    assert m["params"] == EXPECTED_PARAMS


def test_python_job_works_standalone(tmp_path):
    write(tmp_path, PY_PROJECT)
    run(tmp_path, "build", check=0)
    built = json.loads((tmp_path / "out/report.json").read_text())
    proc = subprocess.run([sys.executable, "tasks/standalone.py"], cwd=tmp_path, env=base_env(),
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, describe(proc)
    alone = json.loads(proc.stdout)
    assert alone == {
        "node": "fit",
        "inputs": [built["inputs.raw"], built["inputs.cfg"]],
        "outputs": [built["outputs.report"], built["outputs[1]"]],
        "params": built["params"],
    }


def test_node_job_prints_a_runnable_command_line(tmp_path):
    write(tmp_path, PY_PROJECT)
    run(tmp_path, "build", "prep", check=0)
    proc = run(tmp_path, "job", "fit", check=0)
    lines = proc.stdout.splitlines()
    assert any(".nodefile/jobs/" in l for l in lines), describe(proc)
    i = next(i for i, l in enumerate(lines) if l.strip().endswith("run:"))
    command = lines[i + 1].strip()
    assert "tasks/contract.py" in command, describe(proc)
    assert not (tmp_path / "out/report.json").exists()
    by_hand = subprocess.run(["sh", "-c", command], cwd=tmp_path, env=base_env(), capture_output=True,
                             text=True, timeout=30)
    assert by_hand.returncode == 0, describe(by_hand)
    facts = json.loads((tmp_path / "out/report.json").read_text())
    assert facts["node"] == "fit" and facts["params"] == EXPECTED_PARAMS
    assert facts["argv"] == ["--in", "data/raw.txt", "out/report.json", "out/extra.txt",
                             "--seed", "7", "fit", "cfg.txt"]
    assert (tmp_path / "out/extra.txt").exists()


# -- 14: R -------------------------------------------------------------------------------
R_SCRIPT = r"""
p <- node$params
facts <- c(
  node = node$node,
  inputs_raw = node$inputs$raw,
  inputs_1 = node$inputs[[1]],
  inputs_2 = node$inputs[[2]],
  out = node$outputs$out,
  out_1 = node$outputs[[1]],
  seed = p$seed,
  seed_is_integer = is.integer(p$seed),
  rate_is_double = is.double(p$rate),
  rate = p$rate,
  flag_is_logical = is.logical(p$flag) && isTRUE(p$flag),
  names_is_character = is.character(p$names),
  names = paste(p$names, collapse = "|"),
  names_length = length(p$names),
  opts_is_named_list = is.list(p$opts) && !is.null(names(p$opts)),
  opts_names = paste(names(p$opts), collapse = "|"),
  opts_depth_is_integer = is.integer(p$opts$depth),
  opts_my_key = p$opts[["my key"]],
  has_unused = "unused" %in% names(p),
  args = paste(commandArgs(trailingOnly = TRUE), collapse = "|"),
  raw_text = readLines(node$inputs$raw),
  cwd = normalizePath(getwd())
)
writeLines(paste0(names(facts), "=", facts), node$outputs$out)
"""


@pytest.mark.needs_r
def test_r_recipe_sees_the_job(tmp_path):
    write(tmp_path, {
        "Nodefile.toml": PARAMS + """
            [nodes.prep]
            outputs = "data/raw.txt"
            shell = "echo raw > {outputs}"

            [nodes.rjob]
            outputs = { out = "out/facts.txt", extra = "out/extra.txt" }
            inputs = { raw = "prep", cfg = "cfg.txt" }
            params = ["seed", "rate", "flag", "names", "opts"]
            r = "tasks/facts.R"
            args = ["--seed", "{params.seed}", "{inputs.raw}", "two words"]
            """,
        "cfg.txt": "config\n",
        "tasks/facts.R": R_SCRIPT + 'writeLines("x", node$outputs$extra)\n',
    })
    proc = run(tmp_path, "build", "rjob", check=0)
    facts = dict(line.split("=", 1) for line in (tmp_path / "out/facts.txt").read_text().splitlines())
    assert facts == {
        "node": "rjob",
        "inputs_raw": "data/raw.txt",
        "inputs_1": "data/raw.txt",
        "inputs_2": "cfg.txt",
        "out": "out/facts.txt",
        "out_1": "out/facts.txt",
        "seed": "7",
        "seed_is_integer": "TRUE",
        "rate_is_double": "TRUE",
        "rate": "0.25",
        "flag_is_logical": "TRUE",
        "names_is_character": "TRUE",
        "names": "a|b c",
        "names_length": "2",
        "opts_is_named_list": "TRUE",
        "opts_names": "depth|my key",
        "opts_depth_is_integer": "TRUE",
        "opts_my_key": "v",
        "has_unused": "FALSE",
        "args": "--seed|7|data/raw.txt|two words",
        "raw_text": "raw",
        "cwd": os.path.realpath(tmp_path),
    }, describe(proc)


@pytest.mark.needs_r
def test_r_job_runs_by_hand(tmp_path):
    write(tmp_path, {
        "Nodefile.toml": """
            [params]
            seed = 3

            [nodes.rjob]
            outputs = { out = "facts.txt" }
            params = ["seed"]
            r = "tasks/hand.R"
            args = ["{params.seed}"]
            """,
        "tasks/hand.R": 'writeLines(c(node$node, class(node$params$seed), commandArgs(trailingOnly = TRUE)), '
                        'node$outputs$out)\n',
    })
    proc = run(tmp_path, "job", "rjob", check=0)
    lines = proc.stdout.splitlines()
    command = lines[next(i for i, l in enumerate(lines) if l.strip().endswith("run:")) + 1].strip()
    by_hand = subprocess.run(["sh", "-c", command], cwd=tmp_path, env=base_env(), capture_output=True,
                             text=True, timeout=60)
    assert by_hand.returncode == 0, describe(by_hand)
    assert (tmp_path / "facts.txt").read_text().split() == ["rjob", "integer", "3"]


# -- 15: shell quoting ------------------------------------------------------------------------
def test_shell_placeholders_are_quoted(tmp_path):
    write(tmp_path, {
        "Nodefile.toml": """
            [nodes.copy]
            outputs = "out/my copy.csv"
            inputs = ["my data.csv"]
            shell = "cp {inputs} {outputs}"

            [nodes.quoted]
            outputs = "it's $HOME; `x`.txt"
            inputs = ["copy"]
            shell = "cat {inputs} > {outputs}"
            """,
        "my data.csv": "a,b\n1,2\n",
    })
    proc = run(tmp_path, "build", check=0)
    assert (tmp_path / "out/my copy.csv").read_text() == "a,b\n1,2\n", describe(proc)
    assert (tmp_path / "it's $HOME; `x`.txt").read_text() == "a,b\n1,2\n", describe(proc)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [
        "Nodefile.toml", "it's $HOME; `x`.txt", "my data.csv", "out"], describe(proc)
    again = run(tmp_path, "build", check=0)
    assert "nothing to do" in again.stdout, describe(again)


def test_node_job_command_imports_project_modules_like_the_build(tmp_path):
    """A build runs Python recipes with PYTHONPATH=<project root> (recipes.prepare),
    so `from lib.consts import VALUE` works in `node build`; the line `node job`
    prints must do the same (it once set only NODEFILE_JOB, and the script run by
    hand failed with ModuleNotFoundError)."""
    write(tmp_path, {
        "Nodefile.toml": """
            [nodes.m]
            outputs = "m.txt"
            python = "tasks/m.py"
            """,
        "lib/__init__.py": "",
        "lib/consts.py": "VALUE = 42\n",
        "tasks/m.py": """
            import nodefile
            from lib.consts import VALUE
            job = nodefile.job()
            open(job.outputs[0], "w").write(str(VALUE))
            """,
    })
    build = run(tmp_path, "build", check=0)
    assert (tmp_path / "m.txt").read_text() == "42", describe(build)
    (tmp_path / "m.txt").unlink()
    proc = run(tmp_path, "job", "m", check=0)
    lines = proc.stdout.splitlines()
    command = lines[next(i for i, l in enumerate(lines) if l.strip().endswith("run:")) + 1].strip()
    env = base_env()
    env.pop("PYTHONPATH", None)
    by_hand = subprocess.run(["sh", "-c", command], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=30)
    assert by_hand.returncode == 0, describe(by_hand)
    assert (tmp_path / "m.txt").read_text() == "42"


@pytest.mark.needs_r
def test_r_values_follow_the_spec(tmp_path):
    """SPEC 4 "Values in R": nan/inf, dates as ISO strings, mixed arrays as lists,
    table keys kept exactly, big integers as doubles, non-ASCII strings."""
    write(tmp_path, {
        "Nodefile.toml": r'''
            [params]
            a = nan
            b = inf
            c = -inf
            d = 1979-05-27
            e = [1, "x"]
            f = { "quoted \"key\"" = 1, "sp ace" = [true, false] }
            g = 3000000000
            i = "üñí \"q\" \\ back"

            [nodes.rv]
            outputs = "rv.txt"
            params = ["a", "b", "c", "d", "e", "f", "g", "i"]
            r = "tasks/rv.R"
            ''',
        "tasks/rv.R": """
            p <- node$params
            out <- c(
              a = is.nan(p$a), b = identical(p$b, Inf), c = identical(p$c, -Inf),
              d = identical(p$d, "1979-05-27"),
              e = is.list(p$e) && identical(p$e[[1]], 1L) && identical(p$e[[2]], "x"),
              f = paste(names(p$f), collapse = "|"), f2 = identical(p$f[["sp ace"]], c(TRUE, FALSE)),
              g = is.double(p$g) && p$g == 3e9,
              i = p$i)
            con <- file(node$outputs[[1]], open = "w", encoding = "UTF-8")
            writeLines(paste(names(out), out, sep = "="), con)
            close(con)
            """,
    })
    proc = run(tmp_path, "build", check=0)
    facts = dict(l.split("=", 1) for l in (tmp_path / "rv.txt").read_text(encoding="utf-8").splitlines())
    assert facts == {"a": "TRUE", "b": "TRUE", "c": "TRUE", "d": "TRUE", "e": "TRUE",
                     "f": 'quoted "key"|sp ace', "f2": "TRUE", "g": "TRUE",
                     "i": 'üñí "q" \\ back'}, describe(proc)
