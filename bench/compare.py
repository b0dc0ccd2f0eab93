"""`python bench/run.py --compare REV`: nodefile at REV ("before") against this checkout ("after").

REV is checked out into a temporary git worktree (<work>/compare-<sha>/, removed at the
end, also after a failure). Both sides run from source on this interpreter,
`sys.executable -m nodefile` with PYTHONPATH=<checkout> (tools.checkout_env), their .pyc
files written first; nothing is pip installed. In one run, the sides alternate round by
round (before, after; after, before; ...) so that a drift of the machine hits both alike:

  full build -j2 of the `indep` workflow at the first of --sizes (default 1000), --repeat rounds;
  no-op and rebuild (one source changed) at the last of --sizes (default 10000), --repeat
      rounds, after one full build each as set-up;
  makespan / lower bound: bench/makespan.py --checkout, one random DAG (seed 1), -j 2 and
      -j 4, first (unlearned) and second (learned) build, --makespan-rounds rounds;
  regret: bench/regret.py --simulate --checkout (the learner in-process at the world's
      prices: deterministic), once per side.

Prints: row, before (median), after (median), after / before, runs; writes the JSON
(bench/results/compare-<time>.json or --out).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time

from measure import median
from tools import Tool, checkout_env, compile_bytecode, source_state
from workflow_bench import PHASES, rotate, run_case

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
SIDES = ("before", "after")
NF = [sys.executable, "-m", "nodefile"]
METRICS = (("full", "full build -j2", "s"), ("noop", "no-op", "ms"), ("rebuild", "rebuild, 1 source changed", "ms"))
MAKESPAN_DAG = {"seed": 1, "nodes": 60, "work": 15.0}  # ~25 s per side and round at -j 2 and -j 4
MAKESPAN_DAG_QUICK = {"seed": 1, "nodes": 30, "work": 5.0}


class CompareError(Exception):
    pass


def git(*args) -> str:
    r = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
    if r.returncode:
        raise CompareError(f"git {' '.join(args)}: {r.stderr.strip() or 'exit ' + str(r.returncode)}")
    return r.stdout.strip()


def _remove_worktree(path: str) -> None:
    subprocess.run(["git", "worktree", "remove", "--force", path], cwd=REPO, capture_output=True)
    shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def worktree(sha: str, work: str):
    """REV checked out (detached) into <work>/compare-<sha>; removed on the way out."""
    path = os.path.join(work, f"compare-{sha[:12]}")
    _remove_worktree(path)  # a leftover of an interrupted run
    git("worktree", "add", "--force", "--detach", "--quiet", path, sha)
    try:
        yield path
    finally:
        _remove_worktree(path)


def side_env(checkout: str) -> dict:
    return dict(os.environ, **checkout_env(checkout))


def prepare(name: str, checkout: str, cwd: str, log) -> Tool:
    """Check that `python -m nodefile` with the side's PYTHONPATH imports that checkout (run in
    `cwd`, a folder without a nodefile/ of its own: -m puts the current folder first on the
    path); write its .pyc files; the side as a workflow tool."""
    compile_bytecode(checkout)
    r = subprocess.run(NF[:1] + ["-c", "import nodefile; print(nodefile.__file__)"], env=side_env(checkout),
                       cwd=cwd, capture_output=True, text=True)
    got = r.stdout.strip()
    if r.returncode or not got.startswith(os.path.join(checkout, "nodefile") + os.sep):
        raise CompareError(f"{name}: PYTHONPATH={checkout} imports {got or r.stderr.strip()[-300:]}, "
                           "not that checkout's nodefile")
    v = subprocess.run(NF + ["--version"], env=side_env(checkout), capture_output=True, text=True)
    version = (v.stdout or v.stderr).strip().splitlines()[:1]
    log(f"{name:6s} {checkout}  ({version[0] if version else '?'})")
    return Tool(name, NF + ["build", "-j", "2"], (".nodefile",), early_cutoff=True, touch_setup=NF + ["touch"],
                version=version[0] if version else "?", source=checkout, env=checkout_env(checkout),
                writes="nodefile")


# -- the parts -------------------------------------------------------------------------------------
def workflows(tools: dict, a, work: str, log) -> list:
    """run_case with the two sides as the tools: full builds at the small size, no-op and
    rebuild at the big one (one full build each as set-up)."""
    small, big = a.sizes[0], a.sizes[-1]
    rows = []
    for shape in a.shapes:
        if small == big:
            rows += run_case(shape, big, tools, work, a.repeat, big, PHASES, a.timeout, log, a.touch_setup_above)
            continue
        rows += run_case(shape, small, tools, work, a.repeat, small, ("full",), a.timeout, log, a.touch_setup_above)
        rows += run_case(shape, big, tools, work, a.repeat, 0, ("noop", "rebuild"), a.timeout, log,
                         a.touch_setup_above)
    return rows


def script(name: str, args: list, checkout: str, out: str, timeout: float) -> dict:
    """bench/<name> --checkout CHECKOUT --out OUT ARGS; its JSON."""
    if os.path.exists(out):
        os.remove(out)
    argv = [sys.executable, os.path.join(HERE, name), *args, "--checkout", checkout, "--out", out]
    try:
        r = subprocess.run(argv, cwd=os.path.dirname(out), env=side_env(checkout), capture_output=True, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        raise CompareError(f"{name} timed out after {timeout:g} s") from None
    if r.returncode or not os.path.exists(out):
        raise CompareError(f"{name} exit {r.returncode}:\n{(r.stdout + r.stderr)[-2000:]}")
    with open(out) as f:
        return json.load(f)


def makespan(checkouts: dict, a, tmp: str, log) -> dict:
    """(-j, phase) -> side -> [makespan / LB per round]."""
    dag = MAKESPAN_DAG_QUICK if a.quick else MAKESPAN_DAG
    args = ["--seeds", str(dag["seed"]), "--sizes", str(dag["nodes"]), "--work", str(dag["work"]),
            "--jobs", "2,4", "--no-make"]
    got: dict = {}
    for r in range(a.makespan_rounds):
        for side in rotate(list(SIDES), r):
            res = script("makespan.py", args, checkouts[side], os.path.join(tmp, f"makespan-{side}.json"), a.timeout)
            cells = []
            for row in res["rows"]:
                for phase in ("first", "second"):
                    ratio = row[phase]["ratio"]
                    got.setdefault(f"-j{row['jobs']} {phase}", {s: [] for s in SIDES})[side].append(ratio)
                    cells.append(f"-j{row['jobs']} {phase} {ratio:.3f}")
            log(f"   makespan/LB {side:6s} {', '.join(cells)}")
    return {"dag": dag, "ratios": got}


def regret(checkouts: dict, a, tmp: str, log) -> dict:
    """side -> the simulated regret's model totals (deterministic: one run each)."""
    got = {}
    for side in SIDES:
        res = script("regret.py", ["--simulate"], checkouts[side], os.path.join(tmp, f"regret-{side}.json"), a.timeout)
        s = res["summary"]
        got[side] = {"builds": s["builds"], "oracle": s["totals"]["model"]["oracle"],
                     "learned": s["totals"]["model"]["learned"], "regret_pct": s["regret_pct"]["model"]["learned"]}
        log(f"   regret      {side:6s} {got[side]['regret_pct']:+.2f} % of the oracle (simulated, model prices)")
    return got


# -- the table ------------------------------------------------------------------------------------
def table_rows(results: dict) -> list:
    """[{row, unit, before, after, ratio, runs}]"""
    rows = []
    by_case: dict = {}
    for r in results["cases"]:
        by_case.setdefault(r["case"], {})[r["tool"]] = r
    for m, title, unit in METRICS:
        for case, sides in by_case.items():
            if any(m in sides[s].get("skipped", {}) or not (sides[s].get(f"{m}_s") or sides[s].get("error"))
                   for s in SIDES):
                continue
            vals = {s: sides[s].get(f"{m}_median_s") for s in SIDES}
            rows.append({"row": f"{title}, {case} ({unit})", "unit": unit, **vals,
                         "runs": min(len(sides[s][f"{m}_s"]) for s in SIDES)})
    ms = results.get("makespan")
    if ms:
        for key, per in ms["ratios"].items():
            j, phase = key.split()
            what = "first build, unlearned" if phase == "first" else "second build, learned"
            rows.append({"row": f"makespan / LB {j} ({what}; {ms['dag']['nodes']} nodes)", "unit": "ratio",
                         **{s: median(per[s]) for s in SIDES}, "runs": min(len(per[s]) for s in SIDES)})
    rg = results.get("regret")
    if rg:
        rows.append({"row": f"regret, simulated: learned / oracle cost (K={rg['before']['builds']})", "unit": "ratio",
                     **{s: rg[s]["learned"] / rg[s]["oracle"] for s in SIDES}, "runs": 1})
    for row in rows:
        b, a = row["before"], row["after"]
        row["ratio"] = a / b if a is not None and b else None
    return rows


def _fmt(v, unit) -> str:
    if v is None:
        return "FAIL"
    return {"s": f"{v:.2f}", "ms": f"{v * 1000:.1f}"}.get(unit, f"{v:.3f}")


def table(rows: list, before: str, after: str) -> str:
    out = [f"\n### nodefile before ({before}) and after ({after}), measured interleaved in one run\n",
           "| row | before (median) | after (median) | after / before | runs |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        ratio = "—" if r["ratio"] is None else f"{r['ratio']:.3f}"
        out.append(f"| {r['row']} | {_fmt(r['before'], r['unit'])} | {_fmt(r['after'], r['unit'])} | {ratio} | "
                   f"{r['runs']} |")
    return "\n".join(out)


# -- main -----------------------------------------------------------------------------------------
def main(a, log) -> int:
    t_start = time.monotonic()
    work = os.path.abspath(a.work) if a.work else os.path.join(HERE, "work")
    try:
        sha = git("rev-parse", "--verify", "--quiet", a.compare + "^{commit}")
    except CompareError:
        log(f"--compare {a.compare}: not a git revision of {REPO}")
        return 2
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    out = a.out or os.path.join(RESULTS, f"compare-{stamp}.json")
    tmp = os.path.join(work, "compare-results")
    os.makedirs(tmp, exist_ok=True)
    load0 = os.getloadavg()
    if load0[0] > 1.5:
        log(f"warning: load average {load0[0]:.2f} > 1.5: the machine is busy, timings will be noisy")
    after_src = source_state(REPO)
    results = {"meta": {"started_utc": stamp, "mode": "compare", "argv": sys.argv[1:], "host": platform.node(),
                        "cpus": os.cpu_count(), "python": sys.executable, "python_version": platform.python_version(),
                        "before": {"rev": a.compare, "commit": sha}, "after": dict(after_src), "sizes": a.sizes,
                        "shapes": a.shapes, "repeat": a.repeat, "makespan_rounds": a.makespan_rounds,
                        "loadavg_start": load0, "work": work},
               "cases": [], "makespan": None, "regret": None}
    failures = []
    try:
        with worktree(sha, work) as before_dir:
            checkouts = {"before": before_dir, "after": REPO}
            tools = {s: prepare(s, checkouts[s], tmp, log) for s in SIDES}
            for s in SIDES:
                results["meta"][s]["version"] = tools[s].version
            if not a.skip_workflows:
                results["cases"] = workflows(tools, a, work, log)
                failures += [f"{r['tool']} {r['case']}: {r['error']}" for r in results["cases"] if r.get("error")]
            for part, run_part, skip in (("makespan", makespan, a.skip_makespan), ("regret", regret, a.skip_regret)):
                if skip:
                    continue
                log(f"== {part}")
                try:
                    results[part] = run_part(checkouts, a, tmp, log)
                except CompareError as e:
                    failures.append(f"{part}: {e}")
                    log(f"   FAIL {part}: {e}")
    except CompareError as e:
        log(f"compare failed: {e}")
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rows = table_rows(results)
    results["table"] = rows
    results["meta"]["loadavg_end"] = os.getloadavg()
    results["meta"]["elapsed_s"] = time.monotonic() - t_start
    if source_state(REPO) != after_src:
        log("warning: this checkout's nodefile changed during the run (see meta.after in the JSON)")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out + ".tmp", "w") as f:
        json.dump(results, f, indent=1)
    os.replace(out + ".tmp", out)
    after_label = after_src["commit"][:7] + ("+uncommitted" if after_src["uncommitted_diff_sha1"] else "")
    before_label = sha[:7] if sha.startswith(a.compare) else f"{a.compare} = {sha[:7]}"
    log(table(rows, before_label, after_label))
    log(f"\nresults: {os.path.relpath(out)}  ({time.monotonic() - t_start:.0f} s)")
    if failures:
        log("compare FAILED: " + "; ".join(f.splitlines()[0] for f in failures))
        return 1
    return 0
