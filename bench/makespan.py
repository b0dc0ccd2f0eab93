#!/usr/bin/env python3
"""Makespan of nodefile's critical-path scheduler against its lower bound, and make.

    python bench/makespan.py            # 3 random layered DAGs (50, 150, 300 nodes), -j 2 and -j 4
    python bench/makespan.py --quick    # one DAG of 40 nodes, about a minute
    python bench/makespan.py --seeds 1,2 --sizes 80,200 --jobs 4 --work 40

Every task sleeps a log-normal time (sigma --sigma, scaled so the durations add up
to --work seconds). For each DAG and each -j N:

  make    `make -r -s -jN` on the equivalent Makefile;
  first   `nodefile build -jN` on a fresh state: nothing learned, every node
          weighs the same default, so dispatch is by depth (ties: Nodefile order);
  second  `nodefile build -jN --set run=1`: every node is stale again (a param all
          nodes declare), same DAG, same durations, now with learned durations.

Makespan = last end - first start of the recipes (nodefile: the attempts table of
.nodefile/state.db; make: the same wrapper script logs start and end of every
task). Lower bound LB = max(critical path, total work / N), both from the
*actual* durations of that run. The table shows makespan / LB (1.00 is perfect).
Goal: the learned second build within 10 % of LB at -j 4, and below the first.

Results: a table, and JSON in bench/results/makespan-<time>.json (or --out).
Generated projects live in bench/work/makespan/ (git-ignored).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from tools import nodefile_cmd, source_state, use_checkout  # noqa: E402  (bench/ is on sys.path)

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
WORK = os.path.join(HERE, "work", "makespan")
RESULTS = os.path.join(HERE, "results")
GOAL_RATIO = 1.10  # second build within 10 % of the lower bound at -j 4

# The task: log its start and end (ns) and write its output. The same script runs
# under make and nodefile, so both do exactly the same work.
TASK_SH = """\
#!/bin/sh
# usage: task.sh NAME SECONDS OUTPUT RUN
s=$(date +%s%N)
sleep "$2"
echo "$4" > "$3"
echo "$1 $s $(date +%s%N)" >> times.log
"""


# -- the DAG --------------------------------------------------------------------------------
def random_dag(n: int, seed: int, work: float, sigma: float, min_s: float) -> dict:
    """A random layered DAG: ~sqrt(n) layers of random widths; a node of layer l
    reads 1-3 nodes of layer l-1 (one in four of them from any earlier layer).
    Durations: log-normal(0, sigma), scaled so they add up to `work` seconds, at
    least `min_s`. Node names are declared layer by layer (n000 first)."""
    rng = random.Random(seed)
    layers_n = max(3, round(0.8 * math.sqrt(n)))
    cuts = sorted(rng.sample(range(1, n), layers_n - 1))
    sizes = [b - a for a, b in zip([0] + cuts, cuts + [n])]
    names = [f"n{i:03d}" for i in range(n)]
    layers, i = [], 0
    for s in sizes:
        layers.append(names[i:i + s])
        i += s
    deps: dict[str, list[str]] = {}
    for li, layer in enumerate(layers):
        for name in layer:
            if li == 0:
                deps[name] = []
                continue
            k = min(rng.choice((1, 1, 2, 2, 3)), sum(len(x) for x in layers[:li]))
            chosen: set[str] = set()
            while len(chosen) < k:
                src = layers[li - 1] if rng.random() < 0.75 else layers[rng.randrange(li)]
                chosen.add(rng.choice(src))
            deps[name] = sorted(chosen)
    raw = [rng.lognormvariate(0.0, sigma) for _ in names]
    scale = work / sum(raw)
    dur = {name: round(max(min_s, r * scale), 3) for name, r in zip(names, raw)}
    return {"n": n, "seed": seed, "layers": len(layers), "names": names, "deps": deps, "duration": dur,
            "edges": sum(len(v) for v in deps.values())}


def sinks(dag: dict) -> list[str]:
    used = {d for ds in dag["deps"].values() for d in ds}
    return [n for n in dag["names"] if n not in used]


def lower_bound(dag: dict, dur: dict, jobs: int) -> dict:
    """max(critical path, work / N) for the durations `dur` (node -> seconds)."""
    finish: dict[str, float] = {}
    for name in dag["names"]:  # declared in topological order
        finish[name] = dur[name] + max((finish[d] for d in dag["deps"][name]), default=0.0)
    cp = max(finish.values())
    work = sum(dur.values())
    return {"critical_path": cp, "work": work, "lb": max(cp, work / jobs)}


def write_projects(dag: dict, root: str) -> tuple[str, str]:
    """bench/work/makespan/<case>/{nodefile,make}/ with the same tasks."""
    nf, mk = os.path.join(root, "nodefile"), os.path.join(root, "make")
    for d in (nf, mk):
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        with open(os.path.join(d, "task.sh"), "w") as f:
            f.write(TASK_SH)
    lines = ["[project]", "cache = false  # the scheduler is measured, not the cache", "",
             "[params]", "run = 0", ""]
    for name in dag["names"]:
        lines.append(f"[nodes.{name}]")
        lines.append(f'outputs = "out/{name}"')
        if dag["deps"][name]:
            lines.append("inputs = [" + ", ".join(f'"{d}"' for d in dag["deps"][name]) + "]")
        lines.append('params = ["run"]')
        lines.append(f'shell = "sh task.sh {{node}} {dag["duration"][name]} {{outputs}} {{params.run}}"')
        lines.append("")
    with open(os.path.join(nf, "Nodefile.toml"), "w") as f:
        f.write("\n".join(lines))
    ml = [".PHONY: all", "all: " + " ".join(f"out/{s}" for s in sinks(dag)), ""]
    for name in dag["names"]:
        ml.append(f"out/{name}: " + " ".join(f"out/{d}" for d in dag["deps"][name]))
        ml.append(f"\t@sh task.sh {name} {dag['duration'][name]} $@ 0")
    with open(os.path.join(mk, "Makefile"), "w") as f:
        f.write("\n".join(ml) + "\n")
    return nf, mk


# -- running -------------------------------------------------------------------------------
def run(argv, cwd, timeout) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=timeout)
    wall = time.perf_counter() - t0
    if r.returncode:
        raise RuntimeError(f"exit {r.returncode}: {' '.join(argv)}\n{r.stdout[-2000:]}")
    return wall


def read_times_log(path: str) -> dict:
    """name -> (start s, end s) from task.sh's log."""
    out = {}
    with open(path) as f:
        for line in f:
            name, s, e = line.split()
            out[name] = (int(s) / 1e9, int(e) / 1e9)
    return out


def read_attempts(project: str) -> dict:
    """name -> (start s, end s) of the last build's attempts (nodefile's own record)."""
    db = sqlite3.connect(os.path.join(project, ".nodefile", "state.db"))
    try:
        bid = db.execute("SELECT max(build_id) FROM attempts").fetchone()[0]
        rows = db.execute("SELECT node, start_ns, duration, outcome FROM attempts WHERE build_id = ?",
                          (bid,)).fetchall()
    finally:
        db.close()
    bad = [r for r in rows if r[3] != "ok"]
    if bad:
        raise RuntimeError(f"failed attempts in {project}: {bad[:3]}")
    return {n: (s / 1e9, s / 1e9 + d) for n, s, d, _ in rows}


def summarise(dag: dict, spans: dict, jobs: int, wall: float) -> dict:
    missing = set(dag["names"]) - set(spans)
    if missing:
        raise RuntimeError(f"{len(missing)} tasks did not run, e.g. {sorted(missing)[:3]}")
    t0 = min(s for s, _ in spans.values())
    makespan = max(e for _, e in spans.values()) - t0
    actual = {n: e - s for n, (s, e) in spans.items()}
    lb = lower_bound(dag, actual, jobs)
    nominal = lower_bound(dag, dag["duration"], jobs)
    return {"makespan": makespan, "wall": wall, "lb": lb["lb"], "critical_path": lb["critical_path"],
            "work": lb["work"], "ratio": makespan / lb["lb"], "lb_nominal": nominal["lb"],
            "overhead_per_task": (lb["work"] - nominal["work"]) / len(actual)}


def run_case(dag: dict, jobs: int, root: str, nf_cmd: list, timeout: float, log, with_make: bool) -> dict:
    nf, mk = write_projects(dag, root)
    row = {"seed": dag["seed"], "n": dag["n"], "edges": dag["edges"], "layers": dag["layers"], "jobs": jobs}
    lbn = lower_bound(dag, dag["duration"], jobs)
    row["nominal"] = lbn
    if with_make:
        shutil.rmtree(os.path.join(mk, "out"), ignore_errors=True)
        os.makedirs(os.path.join(mk, "out"))
        if os.path.exists(os.path.join(mk, "times.log")):
            os.remove(os.path.join(mk, "times.log"))
        wall = run(["make", "-r", "-s", f"-j{jobs}"], mk, timeout)
        row["make"] = summarise(dag, read_times_log(os.path.join(mk, "times.log")), jobs, wall)
        log(f"  seed {dag['seed']} n={dag['n']} -j{jobs} make    makespan {row['make']['makespan']:6.2f}s "
            f"LB {row['make']['lb']:6.2f}s  ratio {row['make']['ratio']:.3f}")
    for phase, extra in (("first", []), ("second", ["--set", "run=1"])):
        log_path = os.path.join(nf, "times.log")
        if os.path.exists(log_path):
            os.remove(log_path)
        wall = run(nf_cmd + ["build", "-q", "-j", str(jobs)] + extra, nf, timeout)
        spans = read_attempts(nf)
        row[phase] = summarise(dag, spans, jobs, wall)
        # the wrapper's own log, as a cross-check of the attempts table
        row[phase]["makespan_task_log"] = summarise(dag, read_times_log(log_path), jobs, wall)["makespan"]
        log(f"  seed {dag['seed']} n={dag['n']} -j{jobs} {phase:7s} makespan {row[phase]['makespan']:6.2f}s "
            f"LB {row[phase]['lb']:6.2f}s  ratio {row[phase]['ratio']:.3f}  (wall {wall:.2f}s)")
    return row


# -- report ----------------------------------------------------------------------------------
def table(rows: list) -> str:
    """makespan / LB per run; the walls are whole-command times (start-up included)."""
    out = ["| seed | nodes | edges | -j | LB (s) | make | first (unlearned) | second (learned) |"
           " make wall (s) | second wall (s) |", "|" + "---|" * 10]
    for r in rows:
        def cell(k):
            return f"{r[k]['ratio']:.3f}" if k in r else "—"
        make_wall = f"{r['make']['wall']:.1f}" if "make" in r else "—"
        out.append(f"| {r['seed']} | {r['n']} | {r['edges']} | {r['jobs']} | {r['second']['lb']:.1f} | "
                   f"{cell('make')} | {cell('first')} | {cell('second')} | {make_wall} | "
                   f"{r['second']['wall']:.1f} |")
    by_j: dict = {}
    for r in rows:
        by_j.setdefault(r["jobs"], []).append(r)
    for j, rs in sorted(by_j.items()):
        def mean(k):
            xs = [r[k]["ratio"] for r in rs if k in r]
            return f"{statistics.mean(xs):.3f}" if xs else "—"
        out.append(f"| **mean** | | | {j} | | {mean('make')} | {mean('first')} | {mean('second')} | | |")
    return "\n".join(out)


def goals(rows: list) -> list:
    j4 = [r for r in rows if r["jobs"] == 4]
    if not j4:
        return []
    worst = max(r["second"]["ratio"] for r in j4)
    mean = statistics.mean(r["second"]["ratio"] for r in j4)
    below = all(r["second"]["ratio"] < r["first"]["ratio"] for r in j4)
    return [
        {"goal": f"learned second build within 10 % of LB at -j 4 (every DAG; worst {worst:.3f}, "
                 f"mean {mean:.3f})", "pass": worst <= GOAL_RATIO},
        {"goal": "learned second build below the unlearned first build at -j 4 (every DAG; "
                 + ", ".join(f"{r['first']['ratio']:.3f} -> {r['second']['ratio']:.3f}" for r in j4) + ")",
         "pass": below},
    ]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="one DAG of 40 nodes, 12 s of work (about a minute)")
    p.add_argument("--seeds", default=None, help="comma-separated (default 1,2,3)")
    p.add_argument("--sizes", default=None, help="node count per seed, comma-separated (default 50,150,300)")
    p.add_argument("--jobs", default="2,4", help="-j values (default 2,4)")
    p.add_argument("--work", type=float, default=None, help="total task seconds per DAG (default 60)")
    p.add_argument("--sigma", type=float, default=1.0, help="log-normal sigma of the durations (default 1.0)")
    p.add_argument("--min", type=float, default=0.02, dest="min_s", help="shortest task, seconds (default 0.02)")
    p.add_argument("--no-make", action="store_true")
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--out", default=None, help="JSON file (default bench/results/makespan-<time>.json)")
    p.add_argument("--checkout", default=None, metavar="DIR", help="measure the nodefile of this source tree "
                   "(`python -m nodefile` with PYTHONPATH=DIR) instead of the installed one")
    a = p.parse_args(argv)
    if a.quick:
        a.seeds = a.seeds or "1"
        a.sizes = a.sizes or "40"
        a.work = a.work or 12.0
    a.seeds = [int(x) for x in (a.seeds or "1,2,3").split(",") if x]
    a.sizes = [int(x) for x in (a.sizes or "50,150,300").split(",") if x]
    if len(a.sizes) == 1:
        a.sizes = a.sizes * len(a.seeds)
    if len(a.sizes) != len(a.seeds):
        p.error("--sizes needs one size, or one per seed")
    a.jobs = [int(x) for x in a.jobs.split(",") if x]
    a.work = a.work or 60.0
    return a


def main(argv=None) -> int:
    a = parse_args(argv)
    t_start = time.monotonic()
    if a.checkout:
        use_checkout(a.checkout)
    nf_cmd = nodefile_cmd()
    with_make = not a.no_make and shutil.which("make") is not None
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    mode = "quick" if a.quick else "run"
    out = a.out or os.path.join(RESULTS, f"makespan-{'quick-' if a.quick else ''}{stamp}.json")
    load0 = os.getloadavg()
    print(f"makespan: seeds {a.seeds}, sizes {a.sizes}, -j {a.jobs}, work {a.work:g} s per DAG, "
          f"sigma {a.sigma:g}; load average {load0[0]:.2f} on {os.cpu_count()} CPUs", flush=True)
    results = {"meta": {"started_utc": stamp, "mode": mode, "argv": sys.argv[1:], "host": platform.node(),
                        "cpus": os.cpu_count(), "python_version": platform.python_version(),
                        "nodefile": nf_cmd, "loadavg_start": load0, "work": a.work, "sigma": a.sigma,
                        "min_task_s": a.min_s, "nodefile_source": source_state()},
               "rows": []}

    def save():
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        results["meta"]["loadavg_end"] = os.getloadavg()
        results["meta"]["elapsed_s"] = time.monotonic() - t_start
        results["meta"]["nodefile_source_end"] = source_state()
        with open(out + ".tmp", "w") as f:
            json.dump(results, f, indent=1)
        os.replace(out + ".tmp", out)

    for seed, n in zip(a.seeds, a.sizes):
        dag = random_dag(n, seed, a.work, a.sigma, a.min_s)
        print(f"DAG seed {seed}: {n} nodes, {dag['edges']} edges, {dag['layers']} layers", flush=True)
        for jobs in a.jobs:
            root = os.path.join(WORK, f"s{seed}-n{n}-j{jobs}")
            row = run_case(dag, jobs, root, nf_cmd, a.timeout, lambda m: print(m, flush=True), with_make)
            results["rows"].append(row)
            save()
    print()
    print(table(results["rows"]))
    gs = goals(results["rows"])
    results["goals"] = gs
    for g in gs:
        print(f"{'PASS' if g['pass'] else 'FAIL'}  {g['goal']}")
    save()
    if results["meta"]["nodefile_source"] != results["meta"]["nodefile_source_end"]:
        print("warning: nodefile's source changed during the run (see nodefile_source in the JSON)")
    print(f"\nresults: {os.path.relpath(out)}  ({time.monotonic() - t_start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
