"""Issue 19, R: an `r` recipe runs its script as `Rscript` runs it (SPEC §4 "R as
Rscript runs it"), tested against `Rscript` itself; `node` is as strict as Python's
`job` (item 11)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import base_env, describe, no_traceback, run, write

pytestmark = pytest.mark.needs_r


def rscript(project, script: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`Rscript SCRIPT ARGS` in `project`, stdout and stderr on one pipe as a recipe's log has them."""
    return subprocess.run(["Rscript", script, *args], cwd=str(project), stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120,
                          env=env or base_env())


def last_log(project, node: str) -> str:
    logs = sorted(Path(project).glob(f".nodefile/logs/*/{node}.*.log"))
    assert logs, f"no log for {node}"
    return logs[-1].read_text()


PRINTS = """
    fit <- lm(mpg ~ wt + hp, data = mtcars)
    summary(fit)
    x <- c(a = 1.5, b = 2)
    x
    print("explicit print")
    invisible("never shown")
    (y <- 3L)
    head(mtcars, 3)
    f <- function(v) v * 2
    f(21)
    table(mtcars$cyl)
    sqrt(-1)
    writeLines("done", "done.txt")
    """


def test_top_level_values_reach_the_log_as_rscript_prints_them(tmp_path):
    write(tmp_path, {
        "Nodefile.toml": """
            [nodes.show]
            outputs = "done.txt"
            r = "tasks/show.R"
            """,
        "tasks/show.R": PRINTS,
    })
    proc = run(tmp_path, "build", check=0)
    log = last_log(tmp_path, "show")
    (tmp_path / "done.txt").unlink()
    plain = rscript(tmp_path, "tasks/show.R")
    assert plain.returncode == 0, describe(plain)
    assert log == plain.stdout, describe(proc)
    for seen in ("Residual standard error", "[1] 42", '[1] "explicit print"', "Mazda RX4",
                 "In sqrt(-1) : NaNs produced"):
        assert seen in log
    assert "never shown" not in log


def pdf_pages(path: Path) -> int:
    data = path.read_bytes()
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF"), f"{path} is not a PDF"
    return data.count(b"/Type /Page\n") + data.count(b"/Type /Page ") + data.count(b"/Type /Page/")


def test_a_plot_drawn_by_printing_reaches_the_pdf(tmp_path):
    """`pdf(f); ggplot(...); dev.off()` draws when the ggplot is printed at top level;
    base graphics draw as they go. An empty PDF (no page) is what R writes when nothing is drawn."""
    write(tmp_path, {
        "Nodefile.toml": """
            [nodes.plots]
            outputs = ["gg.pdf", "base.pdf", "empty.pdf"]
            r = "tasks/plots.R"
            """,
        "tasks/plots.R": """
            library(ggplot2)
            pdf("gg.pdf")
            ggplot(mtcars, aes(wt, mpg)) + geom_point() + labs(title = "cars")
            dev.off()
            pdf("base.pdf")
            plot(mtcars$wt, mtcars$mpg, main = "base graphics")
            dev.off()
            pdf("empty.pdf")
            invisible(dev.off())
            """,
    })
    proc = run(tmp_path, "build", check=0)
    empty = tmp_path / "empty.pdf"
    assert pdf_pages(empty) == 0, describe(proc)
    for name in ("gg.pdf", "base.pdf"):
        drawn = tmp_path / name
        assert pdf_pages(drawn) == 1, f"{name}: no page drawn\n{describe(proc)}"
        assert drawn.stat().st_size > empty.stat().st_size + 2000, name
    assert "null device" in last_log(tmp_path, "plots")  # dev.off()'s value, printed as Rscript does


SAVES = """
    library(ggplot2)
    p <- ggplot(mtcars, aes(wt, mpg)) + geom_point() +
      scale_x_continuous(labels = function(x) paste0(x, " t"))
    saveRDS(p, "out/plot.rds")
    scale <- function(x) {
      x * 2  # a comment kept only with source references
    }
    saveRDS(scale, "out/fun.rds")
    """


def test_saved_objects_have_rscripts_bytes_wherever_the_project_is(tmp_path):
    """keep.source is FALSE as under Rscript: a ggplot holding a function and a
    function saved with saveRDS carry no source reference, so no project path."""
    files = {
        "Nodefile.toml": """
            [nodes.save]
            outputs = ["out/plot.rds", "out/fun.rds"]
            r = "tasks/save.R"
            """,
        "tasks/save.R": SAVES,
    }
    one, two, plain = tmp_path / "one", tmp_path / "elsewhere" / "two", tmp_path / "plain"
    write(one, files)
    proc = run(one, "build", check=0)
    shutil.copytree(one, two, ignore=shutil.ignore_patterns(".nodefile", "out"))
    proc2 = run(two, "build", check=0)
    write(plain, {"tasks/save.R": SAVES})
    (plain / "out").mkdir()
    by_hand = rscript(plain, "tasks/save.R")
    assert by_hand.returncode == 0, describe(by_hand)
    for name in ("plot.rds", "fun.rds"):
        expected = (plain / "out" / name).read_bytes()
        assert (one / "out" / name).read_bytes() == expected, f"{name} differs from Rscript's\n{describe(proc)}"
        assert (two / "out" / name).read_bytes() == expected, f"{name} differs in a copy\n{describe(proc2)}"
    check = rscript(one, "-e", 'f <- readRDS("out/fun.rds"); stopifnot(f(2) == 4, is.null(attr(f, "srcref")))')
    assert check.returncode == 0, describe(check)


def test_errors_name_the_scripts_file_and_line(tmp_path):
    """R's own message (as Rscript prints it), then the line in the user's file:
    inside a function the script defines (called through lapply), in a loop at
    top level, and a syntax error."""
    write(tmp_path, {
        "Nodefile.toml": """
            [nodes.infn]
            outputs = "never1.txt"
            r = "tasks/infn.R"

            [nodes.loop]
            outputs = "never2.txt"
            r = "tasks/loop.R"

            [nodes.syntax]
            outputs = "never3.txt"
            r = "tasks/syntax.R"
            """,
        "tasks/infn.R": """
            add <- function(x) {
              y <- 1
              x + "a"
            }
            r <- lapply(1:2, function(i) {
              if (i == 2) add(i) else i
            })
            """,
        "tasks/loop.R": """
            total <- 0
            for (i in 1:3) {
              total <- total + i
              if (i == 2) stop("loop-marker ", i)
            }
            """,
        "tasks/syntax.R": """
            cat("ran first\\n")
            x <- 1
            x y
            """,
    })
    proc = run(tmp_path, "build", "-k")
    assert proc.returncode == 1, describe(proc)
    no_traceback(proc)
    infn = last_log(tmp_path, "infn")
    assert 'Error in x + "a" : non-numeric argument to binary operator' in infn
    assert "tasks/infn.R:3" in infn and "tasks/infn.R:3" in proc.stderr, describe(proc)
    loop = last_log(tmp_path, "loop")
    assert "loop-marker 2" in loop and "tasks/loop.R:4" in loop, loop
    syntax = last_log(tmp_path, "syntax")
    assert "ran first" in syntax and 'unexpected symbol in "x y"' in syntax and "tasks/syntax.R:3" in syntax, syntax
    for log in (infn, loop, syntax):
        assert log.rstrip().endswith("Execution halted"), log


def test_a_misspelt_name_in_node_stops_naming_the_names_there_are(tmp_path):
    write(tmp_path, {
        "Nodefile.toml": """
            [params]
            seed = 7

            [nodes.raw]
            outputs = "raw.txt"
            shell = "echo raw > {outputs}"

            [nodes.attr]
            outputs = { table = "attr.txt" }
            inputs = { raw = "raw", cfg = "cfg.txt" }
            params = ["seed"]
            r = "tasks/attr.R"
            """,
        "cfg.txt": "c\n",
        "tasks/attr.R": """
            lines <- readLines(node$inputs$raww)
            """,
        "tasks/ok.R": """
            stopifnot(identical(node$inputs[[1]], "raw.txt"), identical(names(node$inputs), c("raw", "cfg")),
                      length(node$inputs) == 2L, identical(unlist(node$inputs), c(raw = "raw.txt", cfg = "cfg.txt")),
                      identical(node$params[["seed"]], 7L), identical(file.path(node$outputs$table), "attr.txt"),
                      identical(as.data.frame(node$params)$seed, 7L), length(node$wildcards) == 0L)
            seen <- character(0)
            for (p in node$inputs) seen <- c(seen, p)
            misses <- vapply(list(quote(node$outputs$tabel), quote(node$params$sed), quote(node$params[["sed"]]),
                                  quote(node$wildcards$sample), quote(node$parms)),
                             function(e) conditionMessage(tryCatch(eval(e), error = identity)), "")
            writeLines(c(seen, misses), node$outputs$table)
            """,
    })
    proc = run(tmp_path, "build")
    assert proc.returncode == 1, describe(proc)
    no_traceback(proc)
    log = last_log(tmp_path, "attr")
    assert "no entry named 'raww' in node$inputs (raw, cfg)" in log, log
    assert "tasks/attr.R:1" in log and "no entry named 'raww'" in proc.stderr, describe(proc)

    nodefile = (tmp_path / "Nodefile.toml").read_text().replace("tasks/attr.R", "tasks/ok.R")
    (tmp_path / "Nodefile.toml").write_text(nodefile)
    proc = run(tmp_path, "build", check=0)
    assert (tmp_path / "attr.txt").read_text().splitlines() == [
        "raw.txt", "cfg.txt",
        "no entry named 'tabel' in node$outputs (table)",
        "no entry named 'sed' in node$params (seed)",
        "no entry named 'sed' in node$params (seed)",
        "no entry named 'sample' in node$wildcards (none are named)",
        "no entry named 'parms' in node (node, inputs, outputs, params, wildcards, attempt, log, project, root)",
    ], describe(proc)

    # the file `node job` writes, sourced in a plain R session, gives the same `node`
    run(tmp_path, "job", "attr", check=0)
    by_hand = rscript(tmp_path, "-e", 'source(".nodefile/jobs/attr.R"); print(node$inputs); node$inputs$raww')
    assert by_hand.returncode == 1, describe(by_hand)
    assert "no entry named 'raww' in node$inputs (raw, cfg)" in by_hand.stdout, describe(by_hand)
    assert '$raw\n[1] "raw.txt"' in by_hand.stdout and "attr(" not in by_hand.stdout, describe(by_hand)


def test_profiles_load_as_rscript_loads_them(tmp_path):
    """The project's .Rprofile runs before the script (renv needs it); a user's own
    R_PROFILE_USER replaces it, as in R; an R process the script starts is plain
    R, without nodefile's bootstrap; commandArgs() names the user's script."""
    write(tmp_path, {
        "Nodefile.toml": """
            [nodes.prof]
            outputs = "prof.txt"
            r = "tasks/prof.R"
            args = ["one"]
            """,
        ".Rprofile": 'options(marker = "project .Rprofile")\n',
        "elsewhere/profile.R": 'options(marker = "user R_PROFILE_USER")\n',
        "tasks/prof.R": """
            child <- system2("Rscript", c("-e", shQuote("cat(exists('node'), getOption('marker'))")), stdout = TRUE)
            file <- sub("--file=", "", grep("^--file=", commandArgs(), value = TRUE))
            writeLines(c(getOption("marker"), Sys.getenv("R_PROFILE_USER", "unset"), child, file,
                         commandArgs(trailingOnly = TRUE)), node$outputs[[1]])
            """,
    })
    proc = run(tmp_path, "build", check=0)
    assert (tmp_path / "prof.txt").read_text().splitlines() == [
        "project .Rprofile", "unset", "FALSE project .Rprofile", "tasks/prof.R", "one"], describe(proc)
    user = str(tmp_path / "elsewhere/profile.R")
    proc = run(tmp_path, "build", "-B", env=base_env(R_PROFILE_USER=user), check=0)
    assert (tmp_path / "prof.txt").read_text().splitlines() == [
        "user R_PROFILE_USER", user, "FALSE user R_PROFILE_USER", "tasks/prof.R", "one"], describe(proc)
