#!/usr/bin/env python3
"""Regret of nodefile's learned recipe order against an oracle, over K builds.

    python bench/regret.py                      # the shared world: 14 nodes, K = 30 builds, -j 4
    python bench/regret.py --quick              # the same phases squeezed into K = 10 builds
    python bench/regret.py --mode independent   # the 8 one-node scenarios of the first version
    python bench/regret.py --simulate           # the learner in-process at the world's prices (~1 s)
    python bench/regret.py --simulate --seed 7  # another world of the same kind, attempts jittered
    python bench/regret.py --seeds 50           # 50 such worlds simulated: the regret's mean, spread, worst

Every node has two recipes that write the same bytes, declared in this order:
`fetch` and `rebuild`, the same two command templates for every node; a few
have a third, listed last, that no other node runs (an untried faster rebuild).

Shared world (the default; notes/learning-and-dask.md B.6). A data project of 14
nodes in four layers (raw -> clean -> features -> models), of different artifact
sizes and rebuild times. Every `fetch` runs `sh fetch.sh {node} ...`, which
reads ONE store-state file, `world/store` ("up LATENCY MB/S TIMEOUT" or
"down ..."), and sleeps latency + size / bandwidth (the node's size is in
`world/size/NODE`), or, when the store is down or the node's backup file is
missing, sleeps the timeout and exits 1. Every `rebuild` runs `sh rebuild.sh
{node} ...`, which sleeps the node's work (`world/work/NODE`) times the speed in
`world/rebuild`. The harness rewrites `world/store` and `world/rebuild` between
builds (PHASES): healthy; the store slow for a while, then healthy again (a
transient); the store down (an outage), then back; the rebuild script silently
twice as fast (no edit: a faster machine or library, nothing nodefile can see);
the store slow for good (drift). With these sizes, fetch is the cheaper recipe
for most nodes when the store is healthy and rebuild for a few, and the split
moves with every phase. Two more things happen throughout: clean_d and model_1
have a third recipe, `quick` (`sh quick.sh {node} ...`, a quarter of the
node's work, listed last: an untried faster rebuild), and the backup files of
raw_b and feat_x are missing every third build (a fetch that fails
intermittently, quickly).

Independent mode: the first version of this benchmark. Every node is a world of
its own (scenario/NODE.RECIPE says how long each recipe sleeps and whether it
fails), so nothing one node learns is true of another. Scenarios: see SCENARIOS
(issue 21 added untried_fast_second, two rebuild recipes of the node's own, the
slow one listed first, and flaky_fetch, a fetch failing every third build).

Three projects play the same K builds, interleaved build by build; every build
invalidates every node (`--set run=k`, a param all nodes declare):

  learned  `nodefile build -k --set run=k`: nodefile chooses and learns;
  oracle   knows the true costs: before each build its Nodefile is rewritten so
           that every node has only the cheapest recipe that works in this build;
  static   the Nodefile order without learning: one recipe per node,
           `sh fetch.sh ... || sh rebuild.sh ...`.

Cost = recipe-seconds: the sum of attempt durations, failed ones included, from
the attempts table of each project's .nodefile/state.db ("measured"), and the
same attempts priced at the world's sleep times ("model": no timing noise, no
process start-up). Regret = learned - oracle, as % of the oracle total; the best
fixed order per node in hindsight is priced with the model; a probe stopped at
its deadline (outcome "stopped") is priced at the shorter of its world price and
its measured duration. Probes are read from the learner's own record (the
learn_probes table). Goal: regret <= 5 % of the oracle (issue 21; was < 10 %).
In independent mode `flaky_floor` prints the regret no policy gets below on
flaky_fetch without foreseeing which builds fail (+20 %): the goal needs foresight.

Results: tables, and JSON in bench/results/regret-<mode>-<time>.json (or --out).
Projects live in bench/work/regret/ (git-ignored).
"""
from __future__ import annotations

import argparse
import itertools
import datetime as dt
import json
import math
import os
import platform
import random
import shutil
import sqlite3
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass

from tools import nodefile_cmd, source_dir, source_state, use_checkout  # noqa: E402  (bench/ is on sys.path)

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
WORK = os.path.join(HERE, "work", "regret")
RESULTS = os.path.join(HERE, "results")
GOAL_PCT = 5.0
FAIL = 1  # exit code of an unavailable fetch
RECIPES = ("fetch", "rebuild")
POLICIES = ("learned", "oracle", "static")


def _in(k: int, K: int, a: float, b: float) -> bool:
    """Is build k (0-based) in the fraction [a, b) of K builds."""
    return int(a * K) <= k < int(b * K)


# -- the shared world ------------------------------------------------------------------------
FETCH_SH = """\
#!/bin/sh
# usage: fetch.sh NODE OUTPUT RUN: NODE's artifact from the backup, through the throttle in world/store
read state lat mbps timeout < world/store
read mb < "world/size/$1"
if [ "$state" != up ]; then sleep "$timeout"; echo "fetch $1: backup store unavailable" >&2; exit 1; fi
if [ ! -f "backup/$1" ]; then sleep "$lat"; echo "fetch $1: not in the backup" >&2; exit 1; fi
sleep "$(awk -v l="$lat" -v s="$mb" -v b="$mbps" 'BEGIN { printf "%.4f", l + s / b }')"
echo "$1 $3" > "$2"
"""

QUICK_SH = """\
#!/bin/sh
# usage: quick.sh NODE OUTPUT RUN: a second, faster way to compute NODE (a quarter of its work), listed last
read secs < "world/work/$1"
sleep "$(awk -v w="$secs" 'BEGIN { printf "%.4f", w * 0.25 }')"
echo "$1 $3" > "$2"
"""

REBUILD_SH = """\
#!/bin/sh
# usage: rebuild.sh NODE OUTPUT RUN: compute NODE (its work in world/work, times the speed in world/rebuild)
read speed < world/rebuild
read secs < "world/work/$1"
sleep "$(awk -v w="$secs" -v f="$speed" 'BEGIN { printf "%.4f", w * f }')"
echo "$1 $3" > "$2"
"""


@dataclass(frozen=True)
class SharedNode:
    name: str
    deps: tuple[str, ...]
    mb: float  # artifact size: the fetch moves it through the store's bandwidth
    work: float  # seconds of the rebuild at speed 1


SHARED_NODES = (
    # raw data: one big download-like artifact with an expensive rebuild, small ones, one near tie
    SharedNode("raw_a", (), 8.0, 0.90), SharedNode("raw_b", (), 2.0, 0.50),
    SharedNode("raw_c", (), 12.0, 0.30), SharedNode("raw_d", (), 1.0, 0.08),
    SharedNode("clean_a", ("raw_a",), 4.0, 0.40), SharedNode("clean_b", ("raw_b",), 0.5, 0.20),
    SharedNode("clean_c", ("raw_c",), 6.0, 0.15), SharedNode("clean_d", ("raw_d",), 3.0, 1.20),
    SharedNode("feat_x", ("clean_a", "clean_b"), 5.0, 0.35), SharedNode("feat_y", ("clean_c",), 1.0, 0.06),
    SharedNode("feat_z", ("clean_d",), 10.0, 0.50),
    SharedNode("model_1", ("feat_x",), 2.0, 0.70), SharedNode("model_2", ("feat_y", "feat_z"), 6.0, 0.25),
    SharedNode("report", ("model_1", "model_2"), 0.2, 0.04),
)
QUICK_NODES = ("clean_d", "model_1")  # an untried faster rebuild, listed after the others
FLAKY_NODES = ("raw_b", "feat_x")  # their backup file is missing every third build (intermittent failures)
HEALTHY = ("up", 0.02, 40.0, 0.30)  # state, latency s, MB/s, timeout s
SLOW = ("up", 0.10, 8.0, 0.30)  # 5x less bandwidth, 5x the latency
DOWN = ("down", 0.02, 40.0, 0.30)  # every fetch fails after the 0.3 s timeout
DRIFT = ("up", 0.08, 10.0, 0.30)
# (from, to) as fractions of K; for K = 30 (1-based): transient 7-11, outage 15-19, rebuild_fast 22+, drift 25+
PHASES = {"transient": (0.20, 0.37), "outage": (0.47, 0.64), "rebuild_fast": (0.73, 1.0), "drift": (0.83, 1.0)}


def shared_state(k: int, K: int, phases=None, flaky_at: int = 2) -> dict:
    """The world in build k: the store's state and the rebuild script's speed."""
    phases = phases or PHASES
    store = HEALTHY
    if _in(k, K, *phases["transient"]):
        store = SLOW
    elif _in(k, K, *phases["outage"]):
        store = DOWN
    elif _in(k, K, *phases["drift"]):
        store = DRIFT
    speed = 0.5 if _in(k, K, *phases["rebuild_fast"]) else 1.0
    # a new project: the backup holds nothing before the first build (which, in real life,
    # pushes what it builds); its files are deleted in build 1 and restored after it
    return {"store": store, "speed": speed, "backup": k > 0, "flaky": k % 3 == flaky_at}


def shared_phase(k: int, K: int, phases=None) -> str:
    phases = phases or PHASES
    names = ["cold"] if k == 0 else [p for p, (a, b) in phases.items() if _in(k, K, a, b)]
    return "+".join(names) or "healthy"


def _noise(seed, sigma: float, k: int, node: str, recipe: str) -> float:
    """The seeded factor of one attempt's duration: lognormal with mean 1 (common random
    numbers: every policy pays the same draw for the same build, node and recipe)."""
    if not sigma:
        return 1.0
    z = random.Random(zlib.crc32(f"{seed}/{k}/{node}/{recipe}".encode())).gauss(0.0, 1.0)
    return math.exp(sigma * z - sigma * sigma / 2)


class SharedWorld:
    """The shared world; with a seed, another world of the same kind: every node's size and
    work times a lognormal factor (sigma 0.35), the phases' edges moved by up to 0.06 K,
    the intermittent failures in another third of the builds; and `noise`, the sigma of
    every attempt's lognormal jitter."""
    mode = "shared"

    def __init__(self, K: int, seed: int | None = None, noise: float = 0.0):
        self.K, self.seed, self.noise = K, seed, noise
        nodes, self.phases, self.flaky_at = SHARED_NODES, PHASES, 2
        if seed is not None:
            rng = random.Random(seed)
            nodes = tuple(SharedNode(n.name, n.deps, round(n.mb * math.exp(rng.gauss(0, 0.35)), 3),
                                     round(n.work * math.exp(rng.gauss(0, 0.35)), 3)) for n in SHARED_NODES)
            self.phases = {p: (a + rng.uniform(-0.06, 0.06), b if b >= 1.0 else b + rng.uniform(-0.06, 0.06))
                           for p, (a, b) in PHASES.items()}
            self.flaky_at = rng.randrange(3)
        self.nodes = [n.name for n in nodes]
        self.deps = {n.name: n.deps for n in nodes}
        self.spec = {n.name: n for n in nodes}

    def _state(self, k: int) -> dict:
        return shared_state(k, self.K, self.phases, self.flaky_at)

    def recipes(self, node: str) -> tuple[str, ...]:
        return RECIPES + (("quick",) if node in QUICK_NODES else ())

    def price(self, k: int, node: str, recipe: str) -> tuple[float, bool]:
        """(seconds, works) of one attempt in build k, with its noise."""
        secs, ok = self.mean_price(k, node, recipe)
        return secs * _noise(self.seed, self.noise, k, node, recipe), ok

    def mean_price(self, k: int, node: str, recipe: str) -> tuple[float, bool]:
        """(seconds, works) of one attempt in build k: what fetch.sh/rebuild.sh sleep."""
        s = self._state(k)
        n = self.spec[node]
        if recipe == "quick":
            return n.work * 0.25, True
        if recipe == "fetch":
            state, lat, mbps, timeout = s["store"]
            if state == "up" and (not s["backup"] or (s["flaky"] and node in FLAKY_NODES)):
                return lat, False
            return (lat + n.mb / mbps, True) if state == "up" else (timeout, False)
        return n.work * s["speed"], True

    def phase(self, k: int) -> str:
        return shared_phase(k, self.K, self.phases)

    def setup(self, root: str) -> None:
        for d in ("world/size", "world/work", "backup"):
            os.makedirs(os.path.join(root, d), exist_ok=True)
        for name, text in (("fetch.sh", FETCH_SH), ("rebuild.sh", REBUILD_SH), ("quick.sh", QUICK_SH)):
            with open(os.path.join(root, name), "w") as f:
                f.write(text)
        for n in self.spec.values():
            _write(os.path.join(root, "world", "size", n.name), f"{n.mb}\n")
            _write(os.path.join(root, "world", "work", n.name), f"{n.work}\n")
            _write(os.path.join(root, "backup", n.name), f"{n.name}\n")

    def apply(self, root: str, k: int) -> None:
        s = self._state(k)
        _write(os.path.join(root, "world", "store"), " ".join(str(x) for x in s["store"]) + "\n")
        _write(os.path.join(root, "world", "rebuild"), f"{s['speed']}\n")
        for n in self.spec.values():
            path = os.path.join(root, "backup", n.name)
            if not s["backup"] or (s["flaky"] and n.name in FLAKY_NODES):
                if os.path.exists(path):
                    os.remove(path)
            elif not os.path.exists(path):
                _write(path, f"{n.name}\n")

    def command(self, recipe: str) -> str:
        return f"sh {recipe}.sh {{node}} {{outputs}} {{params.run}}"


# -- the independent scenarios (the first version) ------------------------------------------
SCEN_SH = """\
#!/bin/sh
# usage: scen.sh RECIPE NODE OUTPUT RUN: sleep, then fail or write, as scenario/NODE.RECIPE says
read secs code < "scenario/$2.$1"
sleep "$secs"
if [ "$code" != 0 ]; then echo "$1 of $2: unavailable" >&2; exit "$code"; fi
echo "$2 $4" > "$3"
"""

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
    # two rebuild recipes of their own (no sibling runs them): the slow one listed first,
    # the faster one never run (issue 21)
    "untried_fast_second": lambda k, K: {"slow": (0.60, 0), "quick": (0.20, 0)},
    # the fetch fails every third build (after 0.10 s)
    "flaky_fetch": lambda k, K: {"fetch": (0.10, FAIL) if k % 3 == 2 else (0.10, 0), "rebuild": (0.30, 0)},
}
QUICK_SCENARIOS = ("stationary", "rebuild_fastest", "outage", "fetch_transient")


class IndependentWorld:
    """The one-node scenarios; with a seed, other worlds of the same kinds: every recipe's
    durations times a lognormal factor (sigma 0.25), every scenario's builds shifted by up
    to 3 (its changes come earlier or later); and `noise` as in SharedWorld."""
    mode = "independent"

    def __init__(self, K: int, nodes, seed: int | None = None, noise: float = 0.0):
        self.K, self.seed, self.noise = K, seed, noise
        self.nodes = list(nodes)
        self.deps = {n: () for n in self.nodes}
        self.scale = {(n, r): 1.0 for n in self.nodes for r in SCENARIOS[n](0, K)}
        self.shift = {n: 0 for n in self.nodes}
        if seed is not None:
            rng = random.Random(seed)
            self.scale = {nr: math.exp(rng.gauss(0, 0.25)) for nr in self.scale}
            self.shift = {n: rng.randint(-3, 3) for n in self.nodes}

    def recipes(self, node: str) -> tuple[str, ...]:
        return tuple(SCENARIOS[node](0, self.K))

    def _scenario(self, k: int, node: str) -> dict:
        return SCENARIOS[node](min(self.K - 1, max(0, k + self.shift[node])) if k else 0, self.K)

    def price(self, k: int, node: str, recipe: str) -> tuple[float, bool]:
        secs, ok = self.mean_price(k, node, recipe)
        return secs * _noise(self.seed, self.noise, k, node, recipe), ok

    def mean_price(self, k: int, node: str, recipe: str) -> tuple[float, bool]:
        secs, code = self._scenario(k, node)[recipe]
        return round(secs * self.scale[(node, recipe)], 4), code == 0

    def phase(self, k: int) -> str:
        return ""

    def setup(self, root: str) -> None:
        os.makedirs(os.path.join(root, "scenario"), exist_ok=True)
        _write(os.path.join(root, "scen.sh"), SCEN_SH)

    def apply(self, root: str, k: int) -> None:
        for n in self.nodes:
            for r in self.recipes(n):
                secs, ok = self.mean_price(k, n, r)
                code = self._scenario(k, n)[r][1]
                _write(os.path.join(root, "scenario", f"{n}.{r}"), f"{secs} {code}\n")

    def command(self, recipe: str) -> str:
        return f"sh scen.sh {recipe} {{node}} {{outputs}} {{params.run}}"


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


# -- costs as the world defines them -------------------------------------------------------------
def oracle_choice(world, k: int, node: str) -> str:
    """The recipe the oracle runs: the cheapest one that works in build k (c/p with p = 0 or 1;
    ties: the Nodefile order), by its mean price: it knows the world, not the noise's draws."""
    names = world.recipes(node)
    prices = [world.mean_price(k, node, r) for r in names]
    working = [i for i, (_, ok) in enumerate(prices) if ok] or [len(names) - 1]
    return names[min(working, key=lambda i: (prices[i][0], i))]


def model_cost(world, k: int, node: str, order) -> float:
    """Seconds to get the node done trying `order` (recipe names) in build k."""
    total = 0.0
    for r in order:
        secs, ok = world.price(k, node, r)
        total += secs
        if ok:
            break
    return total


# -- projects ----------------------------------------------------------------------------------
def nodefile_text(world, recipes_of) -> str:
    """The Nodefile: every node with the recipes `recipes_of(node)` gives, as (name, command)."""
    lines = ["[project]", "cache = false  # every build invalidates every node anyway", "",
             "[params]", "run = 0", ""]
    for n in world.nodes:
        lines += [f"[nodes.{n}]", f'outputs = "out/{n}"']
        if world.deps[n]:
            lines.append("inputs = [" + ", ".join(f'"{d}"' for d in world.deps[n]) + "]")
        lines += ['params = ["run"]', "recipes = ["]
        for name, cmd in recipes_of(n):
            lines.append(f'  {{ name = "{name}", shell = "{cmd}" }},')
        lines += ["]", ""]
    return "\n".join(lines)


def learned_recipes(world):
    return lambda n: [(r, world.command(r)) for r in world.recipes(n)]


def static_recipes(world):
    # the Nodefile order without learning: the next recipe runs only when the one before failed
    return lambda n: [("fetch_or_rebuild", " || ".join(world.command(r) for r in world.recipes(n)))]


def oracle_recipes(world, k):
    return lambda n: [(oracle_choice(world, k, n), world.command(oracle_choice(world, k, n)))]


def write_project(root: str, world, recipes_of) -> None:
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    world.setup(root)
    _write(os.path.join(root, "Nodefile.toml"), nodefile_text(world, recipes_of))


def nf(cmd, root, args, timeout, ok=(0,)) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd + args, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=timeout)
    if r.returncode not in ok:
        raise RuntimeError(f"exit {r.returncode}: nodefile {' '.join(args)} in {root}\n{r.stdout[-3000:]}")
    return r


def _db(root: str):
    path = os.path.join(root, ".nodefile", "state.db")
    return sqlite3.connect(path) if os.path.exists(path) else None


def last_build_id(root: str) -> int:
    db = _db(root)
    if db is None:
        return 0
    try:
        row = db.execute("SELECT max(build_id) FROM attempts").fetchone()
        return row[0] or 0
    except sqlite3.OperationalError:
        return 0
    finally:
        db.close()


def attempts_after(root: str, after: int) -> list[dict]:
    db = _db(root)
    try:
        cur = db.execute("SELECT id, build_id, node, recipe, duration, outcome FROM attempts "
                         "WHERE build_id > ? ORDER BY id", (after,))
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r)) for r in cur]
    finally:
        db.close()


def probes_after(root: str, after: int) -> tuple[int, list[dict]]:
    """(the learner's build counter, the probes it observed in builds after `after`)."""
    db = _db(root)
    if db is None:
        return after, []
    try:
        counter = db.execute("SELECT v FROM learn_meta WHERE k = 'builds'").fetchone()
        rows = db.execute("SELECT build, node, recipe, ok, duration, better FROM learn_probes WHERE build > ? "
                          "ORDER BY rowid", (after,)).fetchall()
        return (counter[0] if counter else after), [
            dict(zip(("build", "node", "recipe", "ok", "duration", "better"), r)) for r in rows]
    except sqlite3.OperationalError:
        return after, []
    finally:
        db.close()


def first_recipes(atts) -> dict[str, str]:
    out: dict[str, str] = {}
    for a in atts:  # ordered by id
        out.setdefault(a["node"], a["recipe"])
    return out


# -- the run -------------------------------------------------------------------------------------
def run(world, jobs: int, timeout: float, log) -> dict:
    cmd = nodefile_cmd()
    K = world.K
    roots = {p: os.path.join(WORK, world.mode, p) for p in POLICIES}
    write_project(roots["learned"], world, learned_recipes(world))
    write_project(roots["static"], world, static_recipes(world))
    write_project(roots["oracle"], world, oracle_recipes(world, 0))
    builds, learner_build = [], 0
    for k in range(K):
        for root in roots.values():
            world.apply(root, k)
        _write(os.path.join(roots["oracle"], "Nodefile.toml"), nodefile_text(world, oracle_recipes(world, k)))
        setk = ["--set", f"run={k + 1}"]  # run=0 is the Nodefile's value: start from a new key
        step: dict = {"k": k, "phase": world.phase(k),
                      "oracle_choice": {n: oracle_choice(world, k, n) for n in world.nodes},
                      "prices": {n: {r: world.price(k, n, r) for r in world.recipes(n)} for n in world.nodes}}
        wall = {}
        for p in POLICIES:
            root = roots[p]
            before = last_build_id(root)
            t0 = time.perf_counter()
            nf(cmd, root, ["build", "-q", "-k", "-j", str(jobs), *setk], timeout)
            wall[p] = time.perf_counter() - t0
            step[p] = attempts_after(root, before)
            done = {a["node"] for a in step[p] if a["outcome"] == "ok"}
            if done != set(world.nodes):
                raise RuntimeError(f"build {k}, {p}: not built: {sorted(set(world.nodes) - done)}")
        learner_build, step["probes"] = probes_after(roots["learned"], learner_build)
        step["wall"] = wall
        builds.append(step)
        firsts = first_recipes(step["learned"])
        wrong = sum(1 for n in world.nodes if firsts[n] != step["oracle_choice"][n])
        log(f"  build {k + 1:2d}/{K} {step['phase']:<22s} learned {sum(a['duration'] for a in step['learned']):5.2f}s  "
            f"oracle {sum(a['duration'] for a in step['oracle']):5.2f}s  "
            f"static {sum(a['duration'] for a in step['static']):5.2f}s  "
            f"first recipe not the oracle's: {wrong:2d}"
            + (f"  probes: {', '.join(p['node'] + ':' + p['recipe'] for p in step['probes'])}"
               if step["probes"] else ""))
    return {"builds": builds}


def simulate(world) -> dict:
    """The learner in-process at the world's prices (no processes, no timing noise): the
    nodes are decided layer by layer (a node once its inputs are built), each tries its
    recipes in the learned order until one works. For quick checks of the learner; the
    benchmark's numbers come from `run`."""
    sys.path.insert(0, source_dir())
    from nodefile.learn import Learner

    @dataclass(frozen=True)
    class R:
        name: str
        kind: str
        target: str

    recipes = {n: [R(r, "shell", world.command(r)) for r in world.recipes(n)] for n in world.nodes}
    learner = Learner(sqlite3.connect(":memory:"))
    depth: dict[str, int] = {}
    for n in world.nodes:
        depth[n] = 1 + max((depth[d] for d in world.deps[n]), default=-1)
    layers = sorted(set(depth.values()))
    builds = []
    for k in range(world.K):
        learner.begin_build()
        step = {"k": k, "phase": world.phase(k), "oracle_choice": {n: oracle_choice(world, k, n) for n in world.nodes},
                "learned": [], "oracle": [], "static": [], "probes": []}
        for layer in layers:
            nodes = [n for n in world.nodes if depth[n] == layer]
            choices = {n: learner.choose(n, recipes[n]) for n in reversed(nodes)}  # the scheduler pops the last
            for n in nodes:
                for i, r in enumerate(choices[n].recipes):
                    secs, ok = world.price(k, n, r.name)
                    deadline = getattr(choices[n], "deadline", None) if i == 0 and choices[n].probe == r.name else None
                    if choices[n].probe == r.name:
                        step["probes"].append({"node": n, "recipe": r.name, "ok": ok})
                    if deadline is not None and secs > deadline:  # a bounded probe stopped at its deadline
                        learner.observe(n, r, False, deadline, censored=True)
                        step["learned"].append({"node": n, "recipe": r.name, "duration": deadline,
                                                "outcome": "stopped"})
                        continue
                    learner.observe(n, r, ok, secs)
                    step["learned"].append({"node": n, "recipe": r.name, "duration": secs,
                                            "outcome": "ok" if ok else "failed"})
                    if ok:
                        break
        for n in world.nodes:
            o = step["oracle_choice"][n]
            step["oracle"].append({"node": n, "recipe": o, "duration": world.price(k, n, o)[0], "outcome": "ok"})
            step["static"].append({"node": n, "recipe": "fetch_or_rebuild",
                                   "duration": model_cost(world, k, n, world.recipes(n)), "outcome": "ok"})
        step["wall"] = {p: 0.0 for p in POLICIES}
        builds.append(step)
    return {"builds": builds}


# -- analysis ------------------------------------------------------------------------------------
def priced(world, k: int, a: dict) -> float:
    """An attempt at the world's prices."""
    if a["recipe"] == "fetch_or_rebuild":
        return model_cost(world, k, a["node"], world.recipes(a["node"]))
    price = world.price(k, a["node"], a["recipe"])[0]
    if a.get("outcome") == "stopped":  # a bounded probe stopped at its deadline
        return min(price, a["duration"])
    return price


def analyse(world, data: dict) -> dict:
    builds, nodes = data["builds"], world.nodes
    per_node = {n: {"measured": {p: 0.0 for p in POLICIES}, "model": {p: 0.0 for p in POLICIES},
                    "switches": 0, "probes": 0, "non_oracle_first": 0, "failed_attempts": 0,
                    "fixed": {",".join(o): 0.0 for o in itertools.permutations(world.recipes(n))}}
                for n in nodes}
    per_build = []
    prev_first: dict[str, str] = {}
    for step in builds:
        k = step["k"]
        row = {"k": k, "phase": step.get("phase", ""), **{p: 0.0 for p in POLICIES}}
        for p in POLICIES:
            for a in step[p]:
                pn = per_node[a["node"]]
                pn["measured"][p] += a["duration"]
                price = priced(world, k, a)
                pn["model"][p] += price
                row[p] += price
        per_build.append(row)
        firsts = first_recipes(step["learned"])
        for n in nodes:
            pn = per_node[n]
            for order in pn["fixed"]:
                pn["fixed"][order] += model_cost(world, k, n, order.split(","))
            if n in prev_first and firsts[n] != prev_first[n]:
                pn["switches"] += 1
            prev_first[n] = firsts[n]
            if firsts[n] != step["oracle_choice"][n]:
                pn["non_oracle_first"] += 1
            pn["failed_attempts"] += sum(1 for a in step["learned"] if a["node"] == n and a["outcome"] != "ok")
        for pr in step["probes"]:
            per_node[pr["node"]]["probes"] += 1
    for pn in per_node.values():
        pn["model"]["hindsight"] = min(pn["fixed"].values())  # the best fixed order of each node
    totals = {kind: {p: sum(pn[kind][p] for pn in per_node.values()) for p in per_node[nodes[0]][kind]}
              for kind in ("measured", "model")}

    def pct(kind, p):
        o = totals[kind]["oracle"]
        return 100.0 * (totals[kind][p] - o) / o

    summary = {
        "mode": world.mode,
        "builds": len(builds),
        "nodes": len(nodes),
        "totals": totals,
        "regret_pct": {kind: {p: pct(kind, p) for p in totals[kind] if p != "oracle"} for kind in totals},
        "switches": sum(pn["switches"] for pn in per_node.values()),
        "probes": sum(pn["probes"] for pn in per_node.values()),
        "probes_failed": sum(1 for s in builds for pr in s["probes"] if not pr["ok"]),
        "non_oracle_first": sum(pn["non_oracle_first"] for pn in per_node.values()),
        "failed_attempts_learned": sum(pn["failed_attempts"] for pn in per_node.values()),
        "wall": {p: sum(s["wall"][p] for s in builds) for p in POLICIES},
    }
    return {"per_node": per_node, "per_build": per_build, "summary": summary}


def tables(an: dict, world) -> str:
    s = an["summary"]
    t = s["totals"]
    out = ["| cost (recipe-seconds) | oracle | learned | static (Nodefile order) | best fixed order per node |",
           "|---|---|---|---|---|"]
    for kind, label in (("measured", "measured (attempts table)"), ("model", "model (world prices)")):
        hind = f"{t[kind]['hindsight']:.2f}" if "hindsight" in t[kind] else "—"
        hind_pct = f" ({s['regret_pct'][kind]['hindsight']:+.1f} %)" if "hindsight" in t[kind] else ""
        out.append(f"| {label} | {t[kind]['oracle']:.2f} | {t[kind]['learned']:.2f} "
                   f"({s['regret_pct'][kind]['learned']:+.1f} %) | {t[kind]['static']:.2f} "
                   f"({s['regret_pct'][kind]['static']:+.1f} %) | {hind}{hind_pct} |")
    out += ["", f"{s['nodes']} nodes, {s['builds']} builds; learned: {s['probes']} probes "
            f"({s['probes_failed']} found the recipe still failing), {s['switches']} switches of the first recipe, "
            f"{s['non_oracle_first']} node-builds whose first recipe was not the oracle's, "
            f"{s['failed_attempts_learned']} failed attempts.", ""]
    if world.mode == "shared":
        out += ["| builds (1-based) | phase | oracle (model s) | learned | static | learned regret |",
                "|---|---|---|---|---|---|"]
        groups: list[list[dict]] = []
        for row in an["per_build"]:
            if groups and groups[-1][-1]["phase"] == row["phase"]:
                groups[-1].append(row)
            else:
                groups.append([row])
        for g in groups:
            o, lr, st = (sum(r[p] for r in g) for p in ("oracle", "learned", "static"))
            span = f"{g[0]['k'] + 1}–{g[-1]['k'] + 1}" if len(g) > 1 else f"{g[0]['k'] + 1}"
            out.append(f"| {span} | {g[0]['phase']} | {o:.2f} | {lr:.2f} | {st:.2f} | "
                       f"{100 * (lr - o) / o:+.1f} % |")
        out.append("")
    out += ["| node | oracle (model s) | learned | static | best fixed | learned regret | probes | switches |"
            " not the oracle's first |",
            "|---|---|---|---|---|---|---|---|---|"]
    for n in world.nodes:
        pn = an["per_node"][n]
        m = pn["model"]
        reg = 100.0 * (m["learned"] - m["oracle"]) / m["oracle"]
        out.append(f"| {n} | {m['oracle']:.2f} | {m['learned']:.2f} | {m['static']:.2f} | {m['hindsight']:.2f} | "
                   f"{reg:+.1f} % | {pn['probes']} | {pn['switches']} | {pn['non_oracle_first']} |")
    return "\n".join(out)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=("shared", "independent"), default="shared",
                   help="shared: one world of 14 nodes (default); independent: 8 one-node scenarios")
    p.add_argument("--quick", action="store_true", help="K = 10 (independent: 4 scenarios)")
    p.add_argument("--builds", type=int, default=None, help="K, the number of builds (default 30)")
    p.add_argument("--nodes", default=None, help=f"independent mode: scenarios, comma-separated (default: all "
                   f"of {', '.join(SCENARIOS)})")
    p.add_argument("--jobs", type=int, default=4, help="-j of every build (default 4; the tasks sleep)")
    p.add_argument("--simulate", action="store_true", help="run the learner in-process at the world's prices "
                   "instead of nodefile (seconds; not the benchmark's numbers)")
    p.add_argument("--seed", type=int, default=None, help="another world of the same kind (node sizes and "
                   "work, phase edges, scenario timing: see SharedWorld, IndependentWorld); default: the canonical one")
    p.add_argument("--noise", type=float, default=None, help="--simulate: sigma of each attempt's lognormal "
                   "jitter (default 0.15 with --seed or --seeds, else 0)")
    p.add_argument("--seeds", type=int, default=None, help="--simulate over seeds 1..N: the regret's mean, "
                   "spread and worst (the learner must not be tuned to one world)")
    p.add_argument("--timeout", type=float, default=300)
    p.add_argument("--out", default=None, help="JSON file (default bench/results/regret-<mode>-<time>.json)")
    p.add_argument("--checkout", default=None, metavar="DIR", help="measure the nodefile of this source tree "
                   "(imported from DIR, or `python -m nodefile` with PYTHONPATH=DIR) instead of the installed one")
    a = p.parse_args(argv)
    a.builds = a.builds or (10 if a.quick else 30)
    if a.seeds is not None:
        a.simulate = True
    if a.noise is None:
        a.noise = 0.15 if a.simulate and (a.seed is not None or a.seeds is not None) else 0.0
    elif not a.simulate:
        p.error("--noise is for --simulate (a real run has its own)")
    if a.mode == "independent":
        a.nodes = [n for n in (a.nodes or ",".join(QUICK_SCENARIOS if a.quick else SCENARIOS)).split(",") if n]
        for n in a.nodes:
            if n not in SCENARIOS:
                p.error(f"unknown scenario {n!r} (one of {', '.join(SCENARIOS)})")
    elif a.nodes:
        p.error("--nodes is for --mode independent")
    return a


def make_world(a, seed):
    if a.mode == "shared":
        return SharedWorld(a.builds, seed, a.noise)
    return IndependentWorld(a.builds, a.nodes, seed, a.noise)


def one_build_late(world) -> float:
    """Regret (% of the oracle) of a reference policy that knows every recipe's true mean
    price of the previous build, the ones it did not run too, and runs the cheapest of
    then (the Nodefile order in the first build): what knowing the past perfectly, with
    no clairvoyance, achieves. Not a bound, a yardstick for the goal."""
    oracle = late = 0.0
    for k in range(world.K):
        for n in world.nodes:
            oracle += world.price(k, n, oracle_choice(world, k, n))[0]
            order = list(world.recipes(n))
            if k:
                prev = oracle_choice(world, k - 1, n)
                order = [prev] + [r for r in order if r != prev]
            late += model_cost(world, k, n, order)
    return 100.0 * (late - oracle) / oracle


def flaky_floor(world, node: str = "flaky_fetch") -> float | None:
    """Regret (% of the oracle) below which no policy gets on a node whose fetch fails
    in builds nobody can foresee, even told how often it fails: each build it runs the
    fetch first (expected: its success price, or its failure plus the rebuild, at the
    failure rate) or the rebuild; both at once costs more recipe-seconds. A bound, for
    the goal: the oracle knows which builds fail. None without such a node."""
    if node not in world.nodes or set(world.recipes(node)) != {"fetch", "rebuild"}:
        return None
    fetch = [world.mean_price(k, node, "fetch") for k in range(world.K)]
    q = sum(not works for _, works in fetch) / world.K
    ok = next((secs for secs, works in fetch if works), 0.0)  # what a working fetch takes
    bad = next((secs for secs, works in fetch if not works), 0.0)  # and a failing one
    oracle = floor = 0.0
    for k in range(world.K):
        oracle += world.mean_price(k, node, oracle_choice(world, k, node))[0]
        rebuild = world.mean_price(k, node, "rebuild")[0]
        floor += min((1 - q) * ok + q * (bad + rebuild), rebuild)
    return 100.0 * (floor - oracle) / oracle


def over_seeds(a) -> int:
    """--seeds N: the simulated regret in N worlds of the mode's kind, with its spread."""
    t_start = time.monotonic()
    rows = []
    for seed in range(1, a.seeds + 1):
        world = make_world(a, seed)
        an = analyse(world, simulate(world))
        per = {n: 100.0 * (pn["model"]["learned"] - pn["model"]["oracle"]) / pn["model"]["oracle"]
               for n, pn in an["per_node"].items()}
        rows.append({"seed": seed, "regret_pct": an["summary"]["regret_pct"]["model"]["learned"],
                     "one_build_late_pct": one_build_late(world), "flaky_floor_pct": flaky_floor(world),
                     "static_pct": an["summary"]["regret_pct"]["model"]["static"],
                     "probes": an["summary"]["probes"], "per_node_pct": per})
    regs = sorted(r["regret_pct"] for r in rows)
    mean = sum(regs) / len(regs)
    sd = math.sqrt(sum((x - mean) ** 2 for x in regs) / max(1, len(regs) - 1))
    summary = {"mode": a.mode, "seeds": a.seeds, "noise": a.noise, "builds": a.builds, "mean_pct": mean,
               "sd_pct": sd, "min_pct": regs[0], "median_pct": regs[len(regs) // 2], "max_pct": regs[-1],
               "static_mean_pct": sum(r["static_pct"] for r in rows) / len(rows),
               "one_build_late_mean_pct": sum(r["one_build_late_pct"] for r in rows) / len(rows),
               "pass_share": sum(1 for x in regs if x <= GOAL_PCT) / len(regs)}
    nodes = list(rows[0]["per_node_pct"])
    summary["per_node_mean_pct"] = {n: sum(r["per_node_pct"][n] for r in rows) / len(rows) for n in nodes}
    print(f"regret ({a.mode}, simulated, seeds 1..{a.seeds}, noise {a.noise:g}, K = {a.builds}): "
          f"mean {mean:+.1f} %, sd {sd:.1f}, median {summary['median_pct']:+.1f} %, "
          f"min {regs[0]:+.1f} %, max {regs[-1]:+.1f} %; {100 * summary['pass_share']:.0f} % of the worlds "
          f"<= {GOAL_PCT:g} %; static order {summary['static_mean_pct']:+.1f} %; one build late (knows every "
          f"recipe's price of the last build) {summary['one_build_late_mean_pct']:+.1f} %")
    print("per node, mean over the seeds: " + ", ".join(f"{n} {v:+.1f} %" for n, v in
                                                         summary["per_node_mean_pct"].items()))
    floors = [r["flaky_floor_pct"] for r in rows if r["flaky_floor_pct"] is not None]
    if floors:
        summary["flaky_floor_mean_pct"] = sum(floors) / len(floors)
        print(f"flaky_fetch: no policy that cannot foresee which builds fail does better than "
              f"{summary['flaky_floor_mean_pct']:+.1f} % there (mean of the bounds; flaky_floor)")
    out = a.out or os.path.join(RESULTS, f"regret-{a.mode}-seeds{a.seeds}-"
                                f"{dt.datetime.now(dt.timezone.utc).strftime('%Y%m%d-%H%M%S')}.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"summary": summary, "seeds": rows, "source": source_state()}, f, indent=1)
    print(f"results: {os.path.relpath(out)}  ({time.monotonic() - t_start:.0f} s)")
    return 0


def main(argv=None) -> int:
    a = parse_args(argv)
    if a.checkout:
        use_checkout(a.checkout)
    if a.seeds is not None:
        return over_seeds(a)
    t_start = time.monotonic()
    world = make_world(a, a.seed)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    tag = f"{world.mode}-{'sim-' if a.simulate else ''}{'quick-' if a.quick else ''}"
    out = a.out or os.path.join(RESULTS, f"regret-{tag}{stamp}.json")
    load0 = os.getloadavg()
    src0 = source_state()
    print(f"regret ({world.mode}{', simulated' if a.simulate else ''}): {len(world.nodes)} nodes, "
          f"K = {a.builds} builds, -j {a.jobs}; load average {load0[0]:.2f} on {os.cpu_count()} CPUs", flush=True)
    if a.simulate:
        data = simulate(world)
    else:
        data = run(world, a.jobs, a.timeout, lambda m: print(m, flush=True))
    an = analyse(world, data)
    print()
    print(tables(an, world))
    reg = an["summary"]["regret_pct"]
    goal = {"goal": f"regret of the learned order <= {GOAL_PCT:g} % of the oracle over {a.builds} builds "
                    f"({world.mode}: measured {reg['measured']['learned']:+.1f} %, model {reg['model']['learned']:+.1f} %)",
            "pass": reg["measured"]["learned"] <= GOAL_PCT and reg["model"]["learned"] <= GOAL_PCT}
    print(f"{'PASS' if goal['pass'] else 'FAIL'}  {goal['goal']}")
    floor = flaky_floor(world)
    if floor is not None:
        goal["flaky_floor_pct"] = floor
        print(f"      flaky_fetch: no policy that cannot foresee which builds fail does better than {floor:+.1f} % "
              f"there (flaky_floor): the goal asks for that foresight")
    results = {"meta": {"started_utc": stamp, "mode": world.mode, "simulated": a.simulate, "quick": a.quick,
                        "argv": sys.argv[1:] if argv is None else argv,
                        "host": platform.node(), "cpus": os.cpu_count(),
                        "python_version": platform.python_version(), "nodefile": nodefile_cmd(),
                        "loadavg_start": load0, "loadavg_end": os.getloadavg(), "builds": a.builds,
                        "nodes": world.nodes, "jobs": a.jobs, "elapsed_s": time.monotonic() - t_start,
                        "nodefile_source": src0, "nodefile_source_end": source_state()},
               "summary": an["summary"], "per_node": an["per_node"], "per_build": an["per_build"],
               "goals": [goal], "raw": data}
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
