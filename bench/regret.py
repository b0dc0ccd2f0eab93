#!/usr/bin/env python3
"""Regret of nodefile's learned recipe order against an oracle, over K builds.

    python bench/regret.py             # 8 scenario nodes, K = 30 builds, -j 4
    python bench/regret.py --quick     # 4 scenario nodes, K = 10 builds (under a minute)
    python bench/regret.py --builds 60 --jobs 2

Every node has two recipes that produce the same bytes, declared in this order:
`fetch` and `rebuild`. Both are shell recipes running `scen.sh`, which sleeps
and exits as the scenario file `scenario/<node>.<recipe>` says ("SECONDS CODE"):
a store that stops answering is a `fetch` that exits 1 after a delay, a slow
store a longer sleep. The scenario of every node is rewritten before each build
(see SCENARIOS), and every build invalidates every node (`--set run=k`, a param
all nodes declare).

Three projects play the same K builds, interleaved build by build:

  learned  `nodefile build -k --set run=k`: nodefile chooses (before it,
           `nodefile explain` says which recipe the build will re-measure);
  oracle   knows the true costs: per build, `--recipe fetch` for the nodes whose
           fetch works and is cheaper, `--recipe rebuild` for the others;
  static   the Nodefile order without learning: `--recipe fetch` for every node,
           then `--recipe rebuild` for those whose fetch failed.

Cost = recipe-seconds: the sum of attempt durations, failed ones included, from
the attempts table of each project's .nodefile/state.db ("measured"), and the
same attempts priced at the scenario's sleep times ("model": no timing noise,
no process start-up). Regret = learned - oracle, as % of the oracle total; the
best fixed order in hindsight is priced with the model. Goal: regret < 10 %.

Results: tables, and JSON in bench/results/regret-<time>.json (or --out).
Projects live in bench/work/regret/ (git-ignored).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from tools import nodefile_cmd, source_state  # noqa: E402  (bench/ is on sys.path)

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
WORK = os.path.join(HERE, "work", "regret")
RESULTS = os.path.join(HERE, "results")
GOAL_PCT = 10.0
FAIL = 1  # exit code of an unavailable fetch

SCEN_SH = """\
#!/bin/sh
# usage: scen.sh RECIPE NODE OUTPUT RUN: sleep, then fail or write, as scenario/NODE.RECIPE says
read secs code < "scenario/$2.$1"
sleep "$secs"
if [ "$code" != 0 ]; then echo "$1 of $2: unavailable" >&2; exit "$code"; fi
echo "$2 $4" > "$3"
"""


def _in(k: int, K: int, a: float, b: float) -> bool:
    """Is build k (0-based) in the fraction [a, b) of K builds."""
    return int(a * K) <= k < int(b * K)


# node -> k, K -> {"fetch": (seconds, exit code), "rebuild": (seconds, exit code)}
SCENARIOS = {
    # the Nodefile order is right and stays right
    "stationary": lambda k, K: {"fetch": (0.10, 0), "rebuild": (0.40, 0)},
    # the Nodefile order is wrong: the rebuild is 4x cheaper
    "rebuild_fastest": lambda k, K: {"fetch": (0.40, 0), "rebuild": (0.10, 0)},
    # the store is down for the middle third: the fetch fails after 0.15 s
    "outage": lambda k, K: {"fetch": (0.15, FAIL) if _in(k, K, 1 / 3, 2 / 3) else (0.10, 0),
                            "rebuild": (0.40, 0)},
    # the store becomes slow for good half-way
    "fetch_slow_drift": lambda k, K: {"fetch": (0.60, 0) if k >= K // 2 else (0.10, 0), "rebuild": (0.30, 0)},
    # the store is slow for a quarter of the builds, then healthy again
    "fetch_transient": lambda k, K: {"fetch": (0.80, 0) if _in(k, K, 1 / 4, 1 / 2) else (0.10, 0),
                                     "rebuild": (0.30, 0)},
    # two recipes within 20 %
    "near_tie": lambda k, K: {"fetch": (0.20, 0), "rebuild": (0.24, 0)},
    # the rebuild silently gets 10x faster after a third (no script change)
    "rebuild_gets_fast": lambda k, K: {"fetch": (0.20, 0), "rebuild": (0.06, 0) if k >= K // 3 else (0.60, 0)},
    # the store never has it: every fetch fails after 0.10 s
    "never_in_store": lambda k, K: {"fetch": (0.10, FAIL), "rebuild": (0.25, 0)},
}
QUICK_NODES = ("stationary", "rebuild_fastest", "outage", "fetch_transient")
POLICIES = ("learned", "oracle", "static")


# -- costs as the scenario defines them ------------------------------------------------------
def oracle_choice(sc: dict) -> str:
    """The recipe the oracle runs: the cheapest one that works (c/p with p = 0 or 1)."""
    f_secs, f_code = sc["fetch"]
    return "fetch" if f_code == 0 and f_secs <= sc["rebuild"][0] else "rebuild"


def model_cost(sc: dict, order) -> float:
    """Seconds to get the node done trying `order` (recipe names) under scenario sc."""
    total = 0.0
    for r in order:
        secs, code = sc[r]
        total += secs
        if code == 0:
            break
    return total


# -- projects ----------------------------------------------------------------------------------
def write_project(root: str, nodes) -> None:
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(os.path.join(root, "scenario"))
    with open(os.path.join(root, "scen.sh"), "w") as f:
        f.write(SCEN_SH)
    lines = ["[project]", "cache = false  # every build invalidates every node anyway", "",
             "[params]", "run = 0", ""]
    for n in nodes:
        lines += [f"[nodes.{n}]", f'outputs = "out/{n}"', 'params = ["run"]', "recipes = ["]
        for r in ("fetch", "rebuild"):
            lines.append(f'  {{ name = "{r}", shell = "sh scen.sh {r} {{node}} {{outputs}} {{params.run}}" }},')
        lines += ["]", ""]
    with open(os.path.join(root, "Nodefile.toml"), "w") as f:
        f.write("\n".join(lines))


def set_scenario(root: str, scen: dict) -> None:
    for n, sc in scen.items():
        for r, (secs, code) in sc.items():
            with open(os.path.join(root, "scenario", f"{n}.{r}"), "w") as f:
                f.write(f"{secs} {code}\n")


def nf(cmd, root, args, timeout, ok=(0,)) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd + args, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=timeout)
    if r.returncode not in ok:
        raise RuntimeError(f"exit {r.returncode}: nodefile {' '.join(args)} in {root}\n{r.stdout[-3000:]}")
    return r


def last_build_id(root: str) -> int:
    path = os.path.join(root, ".nodefile", "state.db")
    if not os.path.exists(path):
        return 0
    db = sqlite3.connect(path)
    try:
        row = db.execute("SELECT max(build_id) FROM attempts").fetchone()
        return row[0] or 0
    except sqlite3.OperationalError:
        return 0
    finally:
        db.close()


def attempts_after(root: str, after: int) -> list[dict]:
    db = sqlite3.connect(os.path.join(root, ".nodefile", "state.db"))
    try:
        cur = db.execute("SELECT id, build_id, node, recipe, duration, outcome FROM attempts "
                         "WHERE build_id > ? ORDER BY id", (after,))
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r)) for r in cur]
    finally:
        db.close()


PROBE = re.compile(r"^(\S+): ")


def probes_announced(text: str, nodes) -> dict[str, str]:
    """node -> the recipe `explain` says the build will re-measure."""
    out, current = {}, None
    for ln in text.splitlines():
        m = PROBE.match(ln)
        if m and m.group(1) in nodes:
            current = m.group(1)
        elif current and "re-measured this build" in ln:
            p = re.search(r"\((\S+) re-measured this build\)", ln)
            if p:
                out[current] = p.group(1)
    return out


# -- the run -------------------------------------------------------------------------------------
def run(K: int, nodes, jobs: int, timeout: float, log) -> dict:
    cmd = nodefile_cmd()
    roots = {p: os.path.join(WORK, p) for p in POLICIES}
    for root in roots.values():
        write_project(root, nodes)
    builds = []
    for k in range(K):
        scen = {n: SCENARIOS[n](k, K) for n in nodes}
        for root in roots.values():
            set_scenario(root, scen)
        setk = ["--set", f"run={k + 1}"]  # run=0 is the Nodefile's value: start from a new key
        step: dict = {"k": k, "scenario": scen, "oracle_choice": {n: oracle_choice(scen[n]) for n in nodes}}
        t_build = {}
        # learned: ask what it will re-measure, then build
        root = roots["learned"]
        ex = nf(cmd, root, ["explain", *setk, *nodes], timeout)
        step["probes"] = probes_announced(ex.stdout, nodes)
        before = last_build_id(root)
        t0 = time.perf_counter()
        nf(cmd, root, ["build", "-q", "-k", "-j", str(jobs), *setk], timeout)
        t_build["learned"] = time.perf_counter() - t0
        step["learned"] = attempts_after(root, before)
        # oracle
        root = roots["oracle"]
        before = last_build_id(root)
        t0 = time.perf_counter()
        for r in ("fetch", "rebuild"):
            chosen = [n for n in nodes if step["oracle_choice"][n] == r]
            if chosen:
                nf(cmd, root, ["build", "-q", "-j", str(jobs), "--recipe", r, *setk, *chosen], timeout)
        t_build["oracle"] = time.perf_counter() - t0
        step["oracle"] = attempts_after(root, before)
        # static Nodefile order
        root = roots["static"]
        before = last_build_id(root)
        t0 = time.perf_counter()
        nf(cmd, root, ["build", "-q", "-k", "-j", str(jobs), "--recipe", "fetch", *setk], timeout, ok=(0, 1))
        nf(cmd, root, ["build", "-q", "-k", "-j", str(jobs), "--recipe", "rebuild", *setk], timeout)
        t_build["static"] = time.perf_counter() - t0
        step["static"] = attempts_after(root, before)
        step["wall"] = t_build
        for p in POLICIES:
            done = {a["node"] for a in step[p] if a["outcome"] == "ok"}
            if done != set(nodes):
                raise RuntimeError(f"build {k}, {p}: not built: {sorted(set(nodes) - done)}")
        builds.append(step)
        firsts = first_recipes(step["learned"])
        chosen = " ".join(f"{n}={firsts.get(n, '?')[0]}" for n in nodes)
        log(f"  build {k + 1:2d}/{K}: learned {sum(a['duration'] for a in step['learned']):5.2f}s  "
            f"oracle {sum(a['duration'] for a in step['oracle']):5.2f}s  "
            f"static {sum(a['duration'] for a in step['static']):5.2f}s  "
            f"first: {chosen}"
            + (f"  probes: {step['probes']}" if step["probes"] else ""))
    return {"builds": builds}


def first_recipes(atts) -> dict[str, str]:
    out: dict[str, str] = {}
    for a in atts:  # ordered by id
        out.setdefault(a["node"], a["recipe"])
    return out


# -- analysis ------------------------------------------------------------------------------------
def analyse(data: dict, nodes) -> dict:
    builds = data["builds"]
    per_node = {n: {"measured": {p: 0.0 for p in POLICIES}, "model": {p: 0.0 for p in POLICIES},
                    "switches": 0, "probes": 0, "non_oracle_first": 0, "failed_attempts": 0,
                    "model_rebuild_first": 0.0}
                for n in nodes}
    prev_first: dict[str, str] = {}
    for step in builds:
        scen = step["scenario"]
        for p in POLICIES:
            for a in step[p]:
                pn = per_node[a["node"]]
                pn["measured"][p] += a["duration"]
                pn["model"][p] += scen[a["node"]][a["recipe"]][0]
        firsts = first_recipes(step["learned"])
        for n in nodes:
            pn = per_node[n]
            pn["model_rebuild_first"] += model_cost(scen[n], ("rebuild", "fetch"))
            if n in prev_first and firsts[n] != prev_first[n]:
                pn["switches"] += 1
            prev_first[n] = firsts[n]
            if firsts[n] != step["oracle_choice"][n]:
                pn["non_oracle_first"] += 1
            if n in step["probes"]:
                pn["probes"] += 1
            pn["failed_attempts"] += sum(1 for a in step["learned"] if a["node"] == n and a["outcome"] != "ok")
    for n, pn in per_node.items():
        # best fixed order in hindsight (model prices): fetch-first is the static run
        pn["model"]["hindsight"] = min(pn["model"]["static"], pn["model_rebuild_first"])
    totals = {kind: {p: sum(pn[kind][p] for pn in per_node.values()) for p in per_node[nodes[0]][kind]}
              for kind in ("measured", "model")}

    def pct(kind, p):
        o = totals[kind]["oracle"]
        return 100.0 * (totals[kind][p] - o) / o

    summary = {
        "builds": len(builds),
        "totals": totals,
        "regret_pct": {kind: {p: pct(kind, p) for p in totals[kind] if p != "oracle"} for kind in totals},
        "switches": sum(pn["switches"] for pn in per_node.values()),
        "probes": sum(pn["probes"] for pn in per_node.values()),
        "non_oracle_first": sum(pn["non_oracle_first"] for pn in per_node.values()),
        "failed_attempts_learned": sum(pn["failed_attempts"] for pn in per_node.values()),
        "wall": {p: sum(s["wall"][p] for s in builds) for p in POLICIES},
    }
    return {"per_node": per_node, "summary": summary}


def tables(an: dict, nodes) -> str:
    s = an["summary"]
    t = s["totals"]
    out = ["| cost (recipe-seconds) | oracle | learned | static (Nodefile order) | best fixed order |",
           "|---|---|---|---|---|"]
    for kind, label in (("measured", "measured (attempts table)"), ("model", "model (scenario prices)")):
        hind = f"{t[kind]['hindsight']:.2f}" if "hindsight" in t[kind] else "—"
        hind_pct = f" ({s['regret_pct'][kind]['hindsight']:+.1f} %)" if "hindsight" in t[kind] else ""
        out.append(f"| {label} | {t[kind]['oracle']:.2f} | {t[kind]['learned']:.2f} "
                   f"({s['regret_pct'][kind]['learned']:+.1f} %) | {t[kind]['static']:.2f} "
                   f"({s['regret_pct'][kind]['static']:+.1f} %) | {hind}{hind_pct} |")
    out += ["", f"builds {s['builds']}; learned: {s['probes']} probes announced by `explain`, "
            f"{s['switches']} switches of the first recipe, {s['non_oracle_first']} node-builds whose first "
            f"recipe was not the oracle's, {s['failed_attempts_learned']} failed attempts.", "",
            "| node | oracle (model s) | learned | static | best fixed | learned regret | probes | switches |"
            " not the oracle's first |",
            "|---|---|---|---|---|---|---|---|---|"]
    for n in nodes:
        pn = an["per_node"][n]
        m = pn["model"]
        reg = 100.0 * (m["learned"] - m["oracle"]) / m["oracle"]
        out.append(f"| {n} | {m['oracle']:.2f} | {m['learned']:.2f} | {m['static']:.2f} | {m['hindsight']:.2f} | "
                   f"{reg:+.1f} % | {pn['probes']} | {pn['switches']} | {pn['non_oracle_first']} |")
    return "\n".join(out)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help=f"{len(QUICK_NODES)} nodes, K = 10")
    p.add_argument("--builds", type=int, default=None, help="K, the number of builds (default 30)")
    p.add_argument("--nodes", default=None, help=f"scenario nodes, comma-separated (default: all of "
                   f"{', '.join(SCENARIOS)})")
    p.add_argument("--jobs", type=int, default=4, help="-j of every build (default 4; the tasks sleep)")
    p.add_argument("--timeout", type=float, default=300)
    p.add_argument("--out", default=None, help="JSON file (default bench/results/regret-<time>.json)")
    a = p.parse_args(argv)
    if a.quick:
        a.builds = a.builds or 10
        a.nodes = a.nodes or ",".join(QUICK_NODES)
    a.builds = a.builds or 30
    a.nodes = [n for n in (a.nodes or ",".join(SCENARIOS)).split(",") if n]
    for n in a.nodes:
        if n not in SCENARIOS:
            p.error(f"unknown scenario {n!r} (one of {', '.join(SCENARIOS)})")
    return a


def main(argv=None) -> int:
    a = parse_args(argv)
    t_start = time.monotonic()
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    out = a.out or os.path.join(RESULTS, f"regret-{'quick-' if a.quick else ''}{stamp}.json")
    load0 = os.getloadavg()
    src0 = source_state()
    print(f"regret: {len(a.nodes)} nodes ({', '.join(a.nodes)}), K = {a.builds} builds, -j {a.jobs}; "
          f"load average {load0[0]:.2f} on {os.cpu_count()} CPUs", flush=True)
    data = run(a.builds, a.nodes, a.jobs, a.timeout, lambda m: print(m, flush=True))
    an = analyse(data, a.nodes)
    print()
    print(tables(an, a.nodes))
    reg = an["summary"]["regret_pct"]
    goal = {"goal": f"regret of the learned order < {GOAL_PCT:g} % of the oracle over {a.builds} builds "
                    f"(measured {reg['measured']['learned']:+.1f} %, model {reg['model']['learned']:+.1f} %)",
            "pass": reg["measured"]["learned"] < GOAL_PCT and reg["model"]["learned"] < GOAL_PCT}
    print(f"{'PASS' if goal['pass'] else 'FAIL'}  {goal['goal']}")
    results = {"meta": {"started_utc": stamp, "mode": "quick" if a.quick else "run", "argv": sys.argv[1:],
                        "host": platform.node(), "cpus": os.cpu_count(),
                        "python_version": platform.python_version(), "nodefile": nodefile_cmd(),
                        "loadavg_start": load0, "loadavg_end": os.getloadavg(), "builds": a.builds,
                        "nodes": a.nodes, "jobs": a.jobs, "elapsed_s": time.monotonic() - t_start,
                        "nodefile_source": src0, "nodefile_source_end": source_state()},
               "summary": an["summary"], "per_node": an["per_node"], "goals": [goal], "raw": data}
    if src0 != results["meta"]["nodefile_source_end"]:
        print("warning: nodefile's source changed during the run (see nodefile_source in the JSON)")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out + ".tmp", "w") as f:
        json.dump(results, f, indent=1)
    os.replace(out + ".tmp", out)
    print(f"\nresults: {os.path.relpath(out)}  ({time.monotonic() - t_start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
