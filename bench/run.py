#!/usr/bin/env python3
"""nodefile's benchmark harness: nodefile against make, ninja, doit and snakemake.

    python bench/run.py                      # sizes 1000,10000, 5 rounds, every part
    python bench/run.py --sizes 1000,10000,100000 --repeat 5
    python bench/run.py --quick              # indep shape only, no snakemake, 256 MiB hash file
    python bench/run.py --smoke              # < 60 s, no network: exits non-zero if the harness breaks
    python bench/run.py --report bench/results/a.json bench/results/b.json   # merge and re-print
    python bench/run.py --compare REV        # nodefile at git revision REV against this checkout (~10 min)

Run it with the interpreter that has nodefile installed. See bench/README.md.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import compare  # noqa: E402
import micro  # noqa: E402
import report  # noqa: E402
import tools as toolsmod  # noqa: E402
from workflow_bench import PHASES, run_case  # noqa: E402
from workflows import SHAPES  # noqa: E402

REPO = os.path.dirname(HERE)
WORK = os.path.join(HERE, "work")
RESULTS = os.path.join(HERE, "results")
PLOT = os.path.join(REPO, "docs", "bench-noop.png")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default=None, help="node counts, comma-separated (default 1000,10000)")
    p.add_argument("--shapes", default=None, help=f"workflow shapes (default {','.join(SHAPES)})")
    p.add_argument("--tools", default=None, help="only these tools (default: every one found; nodefile always)")
    p.add_argument("--repeat", type=int, default=None, help="rounds per measurement (default 5)")
    p.add_argument("--phases", default=",".join(PHASES), help="workflow phases: full,noop,rebuild")
    p.add_argument("--quick", action="store_true", help="indep shape only, no snakemake, 256 MiB hash file")
    p.add_argument("--smoke", action="store_true",
                   help="tiny and fast (< 60 s), no installs: 40 nodes (lattice 2 x 20), 1 round, 64 MiB hash file, no plot")
    p.add_argument("--no-install", action="store_true", help="do not create or fill bench/.env, and measure "
                   "the nodefile of this interpreter instead of installing the checkout into bench/.nfenv")
    p.add_argument("--full-max", type=int, default=10000,
                   help="above this many nodes the full build runs once, as setup (default 10000)")
    p.add_argument("--touch-setup-above", type=int, default=20000,
                   help="above this many nodes nodefile is not full-built: its outputs are written and "
                        "accepted with `nodefile touch` (default 20000)")
    p.add_argument("--snakemake-max", type=int, default=1000)
    p.add_argument("--doit-max", type=int, default=10000)
    p.add_argument("--hash-mib", type=int, default=None, help="size of the hashing benchmark's file (default 1024)")
    p.add_argument("--skip-workflows", action="store_true")
    p.add_argument("--skip-hash", action="store_true")
    p.add_argument("--skip-startup", action="store_true")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per tool run")
    p.add_argument("--work", default=None, help="where workflows are generated and run (default bench/work); "
                   "e.g. a tmpfs folder, to measure the tools without the filesystem's metadata costs")
    p.add_argument("--out", default=None, help="the JSON file to write (default bench/results/<mode>-<time>.json)")
    p.add_argument("--report", nargs="+", metavar="JSON", help="merge result files, print tables and goals, plot")
    p.add_argument("--compare", metavar="REV", help="nodefile at git revision REV (checked out into a temporary "
                   "worktree) against this checkout, interleaved in one run: full build at the first of --sizes, "
                   "no-op and rebuild at the last (default 1000,10000; shape indep; --repeat default 9), makespan "
                   "and regret (--quick: a smaller makespan DAG)")
    p.add_argument("--makespan-rounds", type=int, default=3, help="--compare: makespan rounds per side (default 3)")
    p.add_argument("--skip-makespan", action="store_true", help="--compare: no makespan rows")
    p.add_argument("--skip-regret", action="store_true", help="--compare: no regret row")
    a = p.parse_args(argv)
    if a.compare:
        a.shapes = a.shapes or "indep"
        a.repeat = a.repeat or 9
        if a.sizes and len(a.sizes.split(",")) > 2:
            p.error("--compare takes one or two --sizes: the full build's, then the no-op's and rebuild's")
    if a.smoke:
        a.sizes = a.sizes or "40"
        a.repeat = a.repeat or 1
        a.hash_mib = a.hash_mib or 64
        a.no_install = True
        a.no_plot = True
    if a.quick:
        a.shapes = a.shapes or "indep"
        a.hash_mib = a.hash_mib or 256
    a.sizes = [int(x) for x in (a.sizes or "1000,10000").split(",") if x]
    a.shapes = [s for s in (a.shapes or ",".join(SHAPES)).split(",") if s]
    for s in a.shapes:
        if s not in SHAPES:
            p.error(f"unknown shape {s!r} (one of {', '.join(SHAPES)})")
    a.repeat = a.repeat or 5
    a.hash_mib = a.hash_mib or 1024
    a.phases = [x for x in a.phases.split(",") if x]
    return a


def log(msg: str) -> None:
    print(msg, flush=True)


def plot(json_paths, out_png) -> str:
    """Draw with bench/.env's matplotlib, else this interpreter's; returns a message."""
    script = os.path.join(HERE, "plot.py")
    for py in (toolsmod.ENV_PY, sys.executable):
        if not os.path.exists(py):
            continue
        if subprocess.run([py, "-c", "import matplotlib"], capture_output=True).returncode:
            continue
        r = subprocess.run([py, script, "-o", out_png, *json_paths], capture_output=True, text=True)
        if r.returncode == 0:
            return f"plot: {os.path.relpath(out_png)}"
        return f"plot failed: {r.stderr.strip()[-500:]}"
    return "plot skipped: matplotlib is not importable in bench/.env (run without --no-install)"


def print_report(merged: dict) -> list:
    print(report.tables(merged))
    gs = report.goals(merged)
    print(report.goals_table(gs))
    return gs


def _fs_of(path: str) -> str:
    """The filesystem type and mount options of the folder (from /proc/mounts)."""
    best = ("", "")
    try:
        with open("/proc/mounts") as f:
            for line in f:
                dev, mnt, fs, opts = line.split()[:4]
                if (path + "/").startswith(mnt.rstrip("/") + "/") and len(mnt) >= len(best[0]):
                    best = (mnt, f"{fs} ({opts})")
    except OSError:
        pass
    return best[1]


def main(argv=None) -> int:
    a = parse_args(argv)
    if a.report:
        results = [json.load(open(p)) for p in a.report]
        print_report(report.merge(results))
        if not a.no_plot:
            print(plot(a.report, PLOT))
        return 0
    if a.compare:
        return compare.main(a, log)

    t_start = time.monotonic()
    if not a.no_install:
        try:
            toolsmod.ensure_env(log)
        except (subprocess.CalledProcessError, OSError) as e:
            log(f"warning: could not set up bench/.env ({e}); using the tools that are there")
    toolsmod.compile_bytecode()
    if not a.no_install:
        try:
            toolsmod.install_nodefile(log)
        except (subprocess.CalledProcessError, OSError) as e:
            log(f"warning: could not install nodefile into bench/.nfenv ({e}); measuring the editable install")
    found, missing = toolsmod.find_tools(a.snakemake_max, a.doit_max)
    if a.quick:
        found.pop("snakemake", None)
        missing["snakemake"] = "--quick"
    if a.tools:
        keep = set(a.tools.split(",")) | {"nodefile"}
        for t in list(found):
            if t not in keep:
                found.pop(t)
                missing[t] = "not in --tools"
    for t, why in missing.items():
        log(f"not measured: {t}: {why}")
    for t in found.values():
        log(f"tool: {t.name:10s} {t.version}  [{t.source}]")
    nf_cmd = toolsmod.nodefile_cmd()
    work = os.path.abspath(a.work) if a.work else WORK
    os.makedirs(work, exist_ok=True)
    load0 = os.getloadavg()
    if load0[0] > 1.5 and not a.smoke:
        log(f"warning: load average {load0[0]:.2f} > 1.5: the machine is busy, timings will be noisy")

    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    mode = "smoke" if a.smoke else ("quick" if a.quick else "run")
    out = a.out or os.path.join(RESULTS, "smoke.json" if a.smoke else f"{mode}-{stamp}.json")
    meta = {"started_utc": stamp, "mode": mode, "argv": sys.argv[1:], "host": platform.node(),
            "machine": platform.machine(), "cpus": os.cpu_count(), "kernel": platform.release(),
            "python": sys.executable, "nodefile_python": toolsmod.nodefile_python(), "python_version": platform.python_version(),
            "tools": {t.name: {"version": t.version, "command": t.argv, "source": t.source} for t in found.values()},
            "not_measured": missing, "sizes": a.sizes, "shapes": a.shapes, "repeat": a.repeat,
            "phases": a.phases, "loadavg_start": load0, "work": work, "work_fs": _fs_of(work), "nodefile_source": toolsmod.source_state()}
    results = {"meta": meta, "cases": [], "hashing": None, "startup": None}

    def save():
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        results["meta"]["loadavg_end"] = os.getloadavg()
        results["meta"]["elapsed_s"] = time.monotonic() - t_start
        tmp = out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(results, f, indent=1)
        os.replace(tmp, out)

    if not a.skip_workflows:
        for n in a.sizes:
            for shape in a.shapes:
                rows = run_case(shape, n, found, work, a.repeat, a.full_max, a.phases, a.timeout, log,
                                a.touch_setup_above)
                src = toolsmod.source_state()  # nodefile is installed editable: note what was measured
                for row in rows:
                    if row["tool"] == "nodefile":
                        row["nodefile_source"] = src
                results["cases"] += rows
                save()
    if not a.skip_startup:
        results["startup"] = micro.startup(nf_cmd, toolsmod.nodefile_python(), work, 3 if a.smoke else max(10, 4 * a.repeat), a.timeout, log)
        save()
    if not a.skip_hash:
        results["hashing"] = micro.hashing(nf_cmd, toolsmod.nodefile_python(), work, a.hash_mib << 20, a.repeat, a.timeout, log)
        save()

    gs = print_report(report.merge([results]))
    results["goals"] = gs
    save()
    log(f"\nresults: {os.path.relpath(out)}  ({time.monotonic() - t_start:.0f} s)")
    if not a.no_plot and not a.skip_workflows:
        log(plot([out], PLOT))

    failures = [f"{r['tool']} {r['case']}" for r in results["cases"] if r.get("error")]
    failures += [k for k in ("hashing", "startup") if results.get(k) and results[k].get("error")]
    if not any(r["tool"] == "nodefile" and r.get("error") is None for r in results["cases"]) \
            and not a.skip_workflows:
        failures.append("no nodefile row")
    if failures:
        log(f"harness FAILED: {', '.join(failures)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
