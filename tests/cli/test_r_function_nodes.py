"""R function nodes (issue 23, SPEC §7): `r_call = "R/functions.R::fn"`, values
saved with saveRDS and passed to dependent R functions, code tracked per function
(the targets "four minutes" pipeline); and the R package r/nodefile over --json."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO, base_env, describe, run, runs, write

pytestmark = pytest.mark.needs_r

FUNCTIONS = '''
log_run <- function(name) cat(name, "\\n", file = "runs.log", append = TRUE)

get_data <- function(file) {
  log_run("data")
  read.csv(file)
}

fit_model <- function(data) {
  log_run("model")
  coefs(lm(y ~ x, data))
}

coefs <- function(fit) unname(round(coef(fit), 3))

plot_model <- function(model, data) {
  log_run("plot")
  sprintf("y = %.2f + %.2f x (%d points)", model[1], model[2], nrow(data))
}

unused <- function() "not a node"
'''

NODEFILE = '''
[nodes.data]
r_call = "R/functions.R::get_data"
inputs = { file = "data.csv" }

[nodes.model]
r_call = "R/functions.R::fit_model"
inputs = ["data"]

[nodes.plot]
r_call = "R/functions.R::plot_model"
inputs = ["model", "data"]
outputs = { value = "plot.rds" }
'''


def four_minutes(tmp_path):
    return write(tmp_path, {"Nodefile.toml": NODEFILE, "R/functions.R": FUNCTIONS,
                            "data.csv": "x,y\n1,2.1\n2,3.9\n3,6.2\n4,7.8\n"})


def edit(project, old, new, name="R/functions.R"):
    p = project / name
    assert old in p.read_text()
    p.write_text(p.read_text().replace(old, new))


def read_rds(project, path):
    proc = subprocess.run(["Rscript", "-e", f"cat(format(readRDS('{path}')), sep = '\\n')"], cwd=project,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, describe(proc)
    return proc.stdout.strip()


def test_four_minutes_editing_the_plot_function_reruns_only_the_plot(tmp_path):
    project = four_minutes(tmp_path)
    run(project, "build", check=0)
    assert runs(project) == ["data", "model", "plot"]
    assert read_rds(project, "plot.rds") == "y = 0.15 + 1.94 x (4 points)"
    run(project, "build", check=0)
    assert runs(project) == ["data", "model", "plot"]

    edit(project, 'sprintf("y = %.2f + %.2f x (%d points)"', 'sprintf("y = %.2f + %.2f x (n = %d)"')  # only plot_model
    run(project, "build", check=0)
    assert runs(project)[3:] == ["plot"]
    assert read_rds(project, "plot.rds") == "y = 0.15 + 1.94 x (n = 4)"

    edit(project, '"not a node"', '"still not a node"')  # a function no node uses
    proc = run(project, "build", check=0)
    assert runs(project)[4:] == [], proc.stderr

    edit(project, "round(coef(fit), 3)", "round(coef(fit), 1)")  # a helper of fit_model
    proc = run(project, "explain", "model", check=0)
    assert "function changed: R/functions.R:coefs" in proc.stdout
    run(project, "build", check=0)
    assert runs(project)[4:] == ["model", "plot"]
    assert read_rds(project, "plot.rds") == "y = 0.20 + 1.90 x (n = 4)"


def test_an_r_error_names_the_file_and_line(tmp_path):
    project = four_minutes(tmp_path)
    edit(project, "  coefs(lm(y ~ x, data))", '  stop("singular fit")')
    proc = run(project, "build", check=1)
    assert "singular fit" in proc.stderr and "R/functions.R:10" in proc.stderr, describe(proc)
    assert "skip plot" in proc.stderr + proc.stdout


R_SCRIPT = r'''
library(nodefile, lib.loc = Sys.getenv("RLIB"))
options(nodefile.command = c(Sys.getenv("PYTHON"), "-m", "nodefile"))
res <- build()
stopifnot(isTRUE(res$ok), setequal(unlist(res$built), c("data", "model", "plot")))
st <- status()
stopifnot(identical(st$node, c("data", "model", "plot")), !any(st$stale))
model <- value("model")
stopifnot(is.numeric(model), length(model) == 2L)
cat("MODEL", model, "\n")
cat("PLOT", value("plot"), "\n")
stopifnot(identical(value("data")$x, 1:4))
stopifnot(identical(explain("plot")$status, "up to date"))
stopifnot(identical(job("model")$node, "model"))
msg <- tryCatch(value("nope"), error = conditionMessage)
cat("ERROR", msg, "\n")
writeLines(to_json(nodefile:::run_json("status")), "status.json")
writeLines(to_json(nodefile:::run_json("graph")), "graph.json")
writeLines(to_json(from_json(readLines("tricky.json", encoding = "UTF-8"))), "tricky.out.json", useBytes = TRUE)
'''


def test_r_package_builds_reads_values_and_round_trips_json(tmp_path):
    lib = tmp_path / "rlib"
    lib.mkdir()
    inst = subprocess.run(["R", "CMD", "INSTALL", "-l", str(lib), str(REPO / "r" / "nodefile")],
                          capture_output=True, text=True, timeout=300)
    assert inst.returncode == 0, describe(inst)
    project = four_minutes(tmp_path / "p")
    tricky = {"text": 'é "q" \\ \n\t\u00e9 \U0001F600', "nums": [1, 2.5, -0.03, 1e-7, 123456789],
              "flags": [True, False, None], "empty": {}, "none": [], "nested": [{"a": [{}]}]}
    write(project, {"use.R": R_SCRIPT})
    (project / "tricky.json").write_text(json.dumps(tricky, indent=1), encoding="utf-8")
    env = base_env(RLIB=lib, PYTHON=sys.executable)
    proc = subprocess.run(["Rscript", "use.R"], cwd=project, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, describe(proc)
    assert "MODEL 0.15 1.94" in proc.stdout
    assert "PLOT y = 0.15 + 1.94 x (4 points)" in proc.stdout
    assert "ERROR nodefile graph failed (exit status 2)\nerror: unknown target 'nope'" in proc.stdout
    assert json.loads((project / "tricky.out.json").read_text(encoding="utf-8")) == tricky
    # what R read and wrote back is what the CLI printed
    for cmd in ("status", "graph"):
        printed = json.loads(run(project, cmd, "--json", check=0).stdout)
        assert json.loads((project / f"{cmd}.json").read_text()) == printed
