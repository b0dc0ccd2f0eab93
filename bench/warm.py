"""Warm workers against cold starts and make, on a generated data project.

    python bench/warm.py [--rounds 3] [--work bench/work/warm] [--out bench/results/warm-TIME.json]

The project: 30 Python recipes that import pandas (read a CSV, group, write a
CSV) and 15 R recipes that load ggplot2 and save a plot of one of those
results. The same scripts take their paths as arguments, so make runs them
exactly as nodefile does. Each round, interleaved: `make -j 2`, `node build -j 2
--cold`, `node build -j 2` (warm), each from a clean slate (outputs and state
removed; the warm build starts its workers inside its own time).

Then the start-up of one recipe, from its dispatch (the attempt's recorded
start) to its first line: a pandas recipe warm (worker ready) and cold, and a
ggplot2 R recipe warm and under Rscript, the "first line" being the line after
its `import pandas` / `library(ggplot2)`.

Goals (issue 20): full build <= 0.3x make; warm pandas first line <= 15 ms after
dispatch; warm R with ggplot2 >= 10x faster to start than under Rscript.
Needs pandas (pip installs it when missing), R with ggplot2, and rpy2.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
N_PY, N_R = 30, 15

PY_SCRIPT = """\
import sys
import pandas as pd
src, dst = sys.argv[1], sys.argv[2]
df = pd.read_csv(src)
df.groupby("g").agg(total=("v", "sum"), mean=("v", "mean")).reset_index().to_csv(dst, index=False)
"""
R_SCRIPT = """\
suppressPackageStartupMessages(library(ggplot2))
a <- commandArgs(trailingOnly = TRUE)
d <- read.csv(a[1])
p <- ggplot(d, aes(g, total)) + geom_col()
ggsave(a[2], p, width = 4, height = 3)
"""
FIRST_PY = """\
import time, sys
import pandas as pd
open(sys.argv[1], "w").write(str(time.time_ns()))
"""
FIRST_R = """\
suppressPackageStartupMessages(library(ggplot2))
writeLines(format(as.numeric(Sys.time()) * 1e9, scientific = FALSE, digits = 19), commandArgs(TRUE)[1])
"""


def generate(root: Path) -> None:
    if root.exists():
        shutil.rmtree(root)
    (root / "data").mkdir(parents=True)
    (root / "tasks").mkdir()
    (root / "tasks/agg.py").write_text(PY_SCRIPT)
    (root / "tasks/plot.R").write_text(R_SCRIPT)
    for i in range(N_PY):
        rows = "\n".join(f"{'abcde'[(i + j) % 5]},{(i * 7 + j * 3) % 101}" for j in range(2000))
        (root / f"data/in{i}.csv").write_text("g,v\n" + rows + "\n")
    nodes = []
    make = ["all: " + " ".join([f"out/agg{i}.csv" for i in range(N_PY)] + [f"out/plot{i}.pdf" for i in range(N_R)]),
            ""]
    for i in range(N_PY):
        nodes.append(f'[nodes.agg{i}]\noutputs = "out/agg{i}.csv"\ninputs = ["data/in{i}.csv"]\n'
                     f'python = "tasks/agg.py"\nargs = ["{{inputs[0]}}", "{{outputs[0]}}"]\n')
        make += [f"out/agg{i}.csv: data/in{i}.csv tasks/agg.py", f"\t@mkdir -p out && {sys.executable} tasks/agg.py $< $@", ""]
    for i in range(N_R):
        nodes.append(f'[nodes.plot{i}]\noutputs = "out/plot{i}.pdf"\ninputs = ["agg{i}"]\n'
                     f'r = "tasks/plot.R"\nargs = ["{{inputs[0]}}", "{{outputs[0]}}"]\n')
        make += [f"out/plot{i}.pdf: out/agg{i}.csv tasks/plot.R", "\t@Rscript tasks/plot.R $< $@", ""]
    (root / "Nodefile.toml").write_text("\n".join(nodes))
    (root / "Makefile").write_text("\n".join(make))


def clean(root: Path) -> None:
    for d in ("out", ".nodefile"):
        shutil.rmtree(root / d, ignore_errors=True)


def timed(cmd, cwd, env=None) -> float:
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    took = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed in {cwd}:\n{proc.stdout}\n{proc.stderr}")
    return took


def node_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "nodefile", *args]


def full_builds(root: Path, rounds: int) -> dict:
    runs = {"make": [], "cold": [], "warm": []}
    expected = N_PY + N_R
    for r in range(rounds):
        order = [("make", ["make", "-r", "-j2", "-s"]), ("cold", node_cmd("build", "-j", "2", "--cold", "-q")),
                 ("warm", node_cmd("build", "-j", "2", "-q"))]
        for name, cmd in order[r % 3:] + order[:r % 3]:
            clean(root)
            runs[name].append(timed(cmd, root))
            made = len(list((root / "out").iterdir()))
            if made != expected:
                raise SystemExit(f"{name} made {made} outputs, expected {expected}")
            print(f"  round {r + 1}: {name:5s} {runs[name][-1]:.2f} s", flush=True)
    return runs


def first_line(root: Path, lang: str, warm: bool, rounds: int) -> list[float]:
    """Seconds from dispatch to the recipe's first line after its heavy import."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    script = "first.py" if lang == "python" else "first.R"
    (root / script).write_text(FIRST_PY if lang == "python" else FIRST_R)
    kind = "python" if lang == "python" else "r"
    (root / "Nodefile.toml").write_text(f'[nodes.t]\noutputs = "t.txt"\n{kind} = "{script}"\n'
                                        'args = ["{outputs[0]}"]\n')
    env = dict(os.environ, NODEFILE_WORKER_WAIT="120")
    out = []
    for _ in range(rounds):
        clean(root)
        (root / "t.txt").unlink(missing_ok=True)
        timed(node_cmd("build", "-B", "-q", *([] if warm else ["--cold"])), root, env)
        first = int(float((root / "t.txt").read_text().strip()))
        db = sqlite3.connect(root / ".nodefile/state.db")
        (start,) = db.execute("SELECT start_ns FROM attempts ORDER BY id DESC LIMIT 1").fetchone()
        db.close()
        out.append((first - start) / 1e9)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--work", default=str(HERE / "work" / "warm"))
    ap.add_argument("--out", default=str(HERE / "results" / f"warm-{time.strftime('%Y%m%d-%H%M%S')}.json"))
    args = ap.parse_args()
    try:
        import pandas  # noqa: F401
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "pandas"], check=True)
    work = Path(args.work)
    generate(work / "project")
    print(f"full build of {N_PY} pandas + {N_R} ggplot2 recipes, -j 2, {args.rounds} rounds", flush=True)
    runs = full_builds(work / "project", args.rounds)
    med = {k: statistics.median(v) for k, v in runs.items()}
    starts = {f"{lang} {mode}": first_line(work / f"first-{lang}", lang, mode == "warm", args.rounds + 2)
              for lang in ("python", "r") for mode in ("warm", "cold")}
    smed = {k: statistics.median(v) for k, v in starts.items()}
    r_ratio = smed["r cold"] / smed["r warm"]
    goals = [
        ("full build warm <= 0.3x make", med["warm"] / med["make"], med["warm"] / med["make"] <= 0.3),
        ("warm pandas first line <= 15 ms", smed["python warm"] * 1000, smed["python warm"] <= 0.015),
        ("warm R (ggplot2) starts >= 10x faster than Rscript", r_ratio, r_ratio >= 10),
    ]
    print("\nfull build (median s):  make {make:.2f}  cold {cold:.2f}  warm {warm:.2f}".format(**med))
    print(f"ratios: cold/make {med['cold'] / med['make']:.2f}x  warm/make {med['warm'] / med['make']:.2f}x")
    print("first line after dispatch (median ms): " +
          "  ".join(f"{k} {v * 1000:.1f}" for k, v in smed.items()))
    for name, value, ok in goals:
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {value:.3g}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"full": runs, "median": med, "first_line": starts,
                                          "goals": [list(g) for g in goals]}, indent=1))
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
