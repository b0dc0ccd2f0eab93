"""Recipe statistics, the choice of recipe order, and duration estimates.

A stale node has a chain of equivalent recipes (the local cache `load`, `fetch`
from a store, one or more rebuild recipes). Trying them in order until one
succeeds costs  sum_i reach_i * c_i  with  reach_i = prod_{j<i} (1 - p_j), where
p is a recipe's success probability, D its duration when it succeeds, F the time
it takes to fail, and c = p*D + (1-p)*F the expected cost of one attempt. The
order minimising that is ascending c/p (adjacent-interchange argument; Mitten
1960, Simon & Kadane 1975). This module learns p, D and F per (node, recipe),
estimates them for recipes never run, and orders the chain deterministically.

Statistics per (node, recipe name), updated by every attempt (`Stats.record`):

  mu, var      EWMA of ln(duration) of successes, a = max(0.3, 1/n_ok), and of
               its squared deviation: var = (1-a)(var + a*d^2). The mean is
               D = exp(mu + min(var, 0.5)/2) (the cap keeps a regime jump sane).
  mu_min       the lowest mu reached after >= 2 successes: what the recipe can do.
  b_ok, b_fail discounted success/failure counts (gamma = 0.9, ~10 attempts of
               memory); p = (b_ok+1)/(b_ok+b_fail+2) clamped to [0.02, 1].
  fail_cost    F: EWMA of the time to fail (default 0.1 * D).
  last_build, backoff   the build of the last observation; the probe back-off.
  script_hash  a changed script (or kind/target) resets the statistics, keeps the
               old mean as `prior` and sets backoff = 0 (due now).
  size         the last artifact size seen (the transfer model's fallback size).

Per (transfer kind, location) - kind "load" is the local cache, "fetch" a named
store - an EWMA of ln(throughput) from transfers > 1 MB and an EWMA of latency
from smaller ones. Before any data: local disk 200 MB/s + 5 ms, network
20 MB/s + 100 ms.

Recipe families. Recipes of one kind running one script, command template or
store (`(kind, target)`: a template such as "sh fetch.sh {node}" is the same on
every node) form a family; what one member sees is news for its siblings:
  level        ln D(node) = off(node) + level. The residuals of a build's successes
               (ln duration - the node's prediction at the start of the build) move
               `level` by their median, shrunk by n/(n+1) (fully for a probe); of an
               even count, the middle value nearer 0. A store slowing down for every
               sibling moves every sibling's estimate at once (in the same build, for
               nodes decided after the news); one node's own change moves only its
               own `off` (the median of the others' residuals is 0). With no sibling
               (a single-member family) the node's own mu is used, as before.
  outage       failures of members that usually work (long-run p >= 0.5), with no
               success since ("run"), cap every sibling's p at 1/(1 + run) and price
               its failure at the outage's time to fail;
  recovery     a success ending a run of failures (its own, or the family's outage)
               lets siblings with a failure streak use p as before the streak; a
               node's own counts forget an outage once it succeeds again.
  probes       when no sibling succeeded with the recipe in this build or the last
               one, at most one node per family and build probes it, and only one
               whose level is at most the family's median (or any, after 8 builds
               without news): one cheap probe answers "is the store back?" for all.
               When siblings succeed with it lately, the level is current and a
               node's own due probe asks about that node alone; plausibility uses
               the current level then.
`node explain` names the family's news: "family shift ×5.6 from 3 siblings in build
12", "failing for its siblings (4 failures in a row up to build 15)", "working again
for 1 sibling in build 20". Table family_stats(kind, target, data).

Estimates for a recipe with no success on this node, most specific first (each
`Estimate.source` says which one was used):
  "learned"                  this node's own successes;
  "previous script"          the mean from before the script changed;
  "transfer model"           load/fetch: latency + size / throughput of that
                             location (size from `size_of`, else the node's last
                             artifact size, else 10 MB);
  "estimated from siblings"  rebuilds: median D of the same (kind, script) on
                             other nodes (their family's median at today's level);
  "project median"           median D of every rebuild recipe in the project;
  "default"                  30 s.
The last two are guesses from unrelated recipes, not evidence about this one:
they only keep the recipe in its Nodefile place (behind the recipes listed before
it), and users see "unknown" (`Estimate.shown`, `show_duration`), never the number.
An unseen recipe has p = 0.5 (the Laplace prior).
  censored   a bounded probe stopped at its deadline X (below): D is at least X
             (`Stats.cens`, shown "≥X"); p and F are unchanged (neither a success
             nor a failure); the next success clears it.

Choosing the order (`Learner.choose`; `probes=False` is --no-probe):
  1. score each recipe: index = c/p; sort ascending; ties keep the Nodefile order.
  2. at most one probe per node per build. First the BOUNDED PROBE: when the
     first recipe, the incumbent I, runs a process (the node must be rebuilt
     anyway) and its D is learned on this node, the first process recipe in
     Nodefile order that was never measured here - never run, or only stopped by
     an earlier probe and due again (back-off below) - runs first, with a
     deadline T = max(PROBE_FLOOR 0.1 s, PROBE_FACTOR 1.5 x D(I)). Past T the
     runner stops its process group, moves its partial outputs aside as a failed
     attempt's, records the attempt as "stopped" and observes it as censored
     (`observe(..., censored=True)`), then runs I. So a probe costs at most T,
     and a faster recipe is found in the build after the incumbent was measured.
     A recipe whose non-guess estimate (siblings, previous script) is >= T, or
     that failed here, is left to the rule below. No deadline is ever set from
     a guess: with nothing measured, the Nodefile order runs.
  3. otherwise, the plausibility rule: walking the order from position 2, move
     recipe r to the front, ahead of the first recipe q, when r is DUE
     (build - last_build >= backoff, or never observed) and PLAUSIBLE (its best,
     exp(mu_min)/p - or its prior D if never observed - is below q's index).
     (Moved only one place, behind a recipe that succeeds, a probe would never
     run, and would hold its family's probe for the build.) Two recipes never
     observed are not swapped: a tie of two guesses is no reason to try the
     second one. When r is a process and q's D is learned, r gets the deadline T
     too - or STRETCH 1.2 x r's last success L when T < 1.2 L < T + D(q): as slow
     as last time, finishing it costs less than being stopped and replaced by q.
  4. after the probe's observation: if r now scores better than q, backoff = 4;
     else backoff = min(2*backoff, 256) (at least 4): re-checks at 4, 8, 16 ... 256
     (a first censored observation sets 4).
  A recipe that was always clearly slower is never probed by rule 3.

Worked example. Node `model` with recipes fetch (store `backup`) and python:
  fetch   D = 5.0 s learned,  p = 0.95, F = 1 s:  c = 4.80, index 5.05
  python  D = 60 s learned,   p = 0.91, F = 6 s:  c = 55.2, index 60.6
order fetch, python; expected duration 4.80 + 0.05 * 55.2 = 7.6 s. If python
once ran in 3 s (mu_min = ln 3), it is plausible (3/0.91 = 3.3 < 5.05): it is
probed when due - 4 builds after its last run, then 8, 16 ... while it stays slow.
Its deadline: T = 1.5 x 5.0 = 7.5 s; its last run, 60 s, is above T + 5.0, so a
re-probe that finds it still slow is stopped at 7.5 s, and fetch runs. (Had its
last run taken 8 s, 1.2 x 8 = 9.6 s < 12.5 s: it would be let finish.)

Bounded probe. Node `model` with recipes slow (learned D = 1.0 s) and fast
(never run; "project median" 1.0 s, shown "unknown"): build 2 runs fast first
with T = max(0.1, 1.5 x 1.0) = 1.5 s (`node explain`: "fast probed first (never
measured), deadline 1.5s = 1.5 × slow's expected 1.0s"). It takes 0.2 s: learned,
index 0.2 < 1.0, chosen from then on. Had it needed 5 s, it would have been
stopped at 1.5 s ("fast: ≥1.5s ... a probe was stopped at its 1.5s deadline in
build 2"), slow would have run (build cost 2.5 s), and fast would be tried again
4 builds later, then 8, 16 ... (each time at most 1.5 s).

API
---
    learner = Learner(db)            # a sqlite3 connection; reads nothing yet
    learner.begin_build()            # a new build (watch mode: once per rebuild)
    choice = learner.choose(node, recipes, script_of=..., size_of=..., force_kind=None, probes=True)
    choice.recipes / .order / .estimates / .probe / .deadline / .why / .expected_duration / .known / .explain()
    learner.observe(node, recipe, ok, duration, script_hash=None, size=None, censored=False)
    learner.estimate(node, recipes, ...)            # the same order, no probe registered
    learner.expected_duration(node, recipes, ...)   # its expected_duration
    learner.stats(node, recipe_name) -> Stats | None
    learner.family(kind, target) -> Family | None   # what a recipe's siblings share
    learner.probes() -> [(build, node, recipe, ok, duration, better), ...]
    learner.build                    # the current build number

`recipes` are objects with `.name`, `.kind` ('python', 'r', 'shell', 'call',
'fetch', 'load') and `.target` (script path, command, store name): model.Recipe
fits. `script_of(recipe)` returns the current hash of its script (or None);
`size_of(recipe)` the artifact size in bytes for a transfer (or None).

Storage and cost: tables recipe_stats(node, recipe, data), location_stats(kind,
location, data), family_stats(kind, target, data) - data is a JSON array of the
record's fields - learn_probes (every probe: build, node, recipe, ok, duration,
better) and learn_meta(k, v) (the build counter) are created on the first write
(an older state store gets the new tables then). Nothing is read until the first
choose/observe/stats call, which loads everything in four queries; observe
writes its rows at once (one transaction). The build counter advances on the
first observe of a build, so builds that run nothing do not age back-offs.
Aggregates used by priors (sibling and project medians) are a snapshot taken at
the first need in each build; a node's own statistics are always live.

Integration (build.py):
  * one Learner per build on the state's connection: `Learner(session.state.db)`
    (a fresh Learner is a new build; `begin_build()` is for a long-lived one).
  * Runner.recipe_order: `choice = learner.choose(node.name, candidates(...),
    script_of=lambda r: parts.get(f"script:{r.script}") if r.script else None,
    force_kind=options.recipe_kind)`; run `choice.recipes` in order.
    `size_of` is optional: pass it only when a manifest is already at hand
    (otherwise the node's last artifact size stands in).
  * after every attempt - success or failure, transfers and "unavailable"
    included, each retry too, but not cancelled ones: `learner.observe(node,
    recipe, ok, duration, script_hash=..., size=bytes)`. It is one transaction
    (~0.15 ms here); inside a transaction already open on the same connection it
    only adds its rows to it.
  * critical path: weight(n) = `learner.estimate(n, nodes[n].recipes)
    .expected_duration` for graph.bottom_levels, computed on the first priority()
    call so that a no-op build never loads anything; the same (with `.known`)
    weighs the nodes of the reporter's ETA (report/eta.py).
  * a bounded probe (`choice.deadline` set, `choice.probe` first): the runner
    gives that attempt the deadline as its timeout; stopped, it is recorded as
    outcome "stopped" and observed with censored=True and duration = the deadline.
  * explain / dry run: `choose()` only reads, and works on a database without
    the tables; `choice.explain()` gives the lines to print.
"""
from __future__ import annotations

import bisect
import json
import marshal
import math
import sqlite3
from .records import field, fields, record, replace

TYPE_CHECKING = False  # typing costs 3 ms at start-up; annotations are strings anyway
if TYPE_CHECKING:
    from typing import Callable, Iterable

from .hashing import compact_json
from .model import TRANSFER_KINDS
from .report.console import fmt_seconds as _seconds  # the one duration format
from .state import _Tx  # BEGIN IMMEDIATE ... COMMIT, joining a transaction already open

ALPHA = 0.3  # EWMA weight floor
GAMMA = 0.9  # discount of success/failure counts
VAR_CAP = 0.5  # cap of the log-variance term in D
P_MIN = 0.02
FAIL_FRACTION = 0.1  # F before any failure, as a fraction of D
BASE_BACKOFF = 4
MAX_BACKOFF = 256
DEFAULT_DURATION = 30.0  # a rebuild with nothing known
DEFAULT_SIZE = 10e6  # an artifact of unknown size
BIG_TRANSFER = 1e6  # above: a throughput sample; below: a latency sample
MIN_DURATION = 1e-3
# (latency s, throughput bytes/s) before any data, per transfer kind
TRANSFER_DEFAULTS = {"load": (0.005, 200e6), "fetch": (0.1, 20e6)}

LEARNED = "learned"
PREVIOUS_SCRIPT = "previous script"
TRANSFER_MODEL = "transfer model"
SIBLINGS = "estimated from siblings"
PROJECT_MEDIAN = "project median"
DEFAULT = "default"
GUESSES = (PROJECT_MEDIAN, DEFAULT)  # estimates with no evidence about the recipe itself
STREAK = 2  # consecutive failures after which p is capped at 1 / (streak + 1)
SAMPLE = 31  # residuals a family keeps per build for its median (constant work per observation)
FINALS = MAX_BACKOFF + 8  # builds whose final family level is kept (to settle a member's offset)
SURPRISE = 0.5  # a failure of a recipe whose long-run p was at least this is news for its siblings
SHIFT_NOTE = math.log(1.25)  # a family shift at least this large is named in `explain`
PROBE_FACTOR = 1.5  # a bounded probe's deadline: this times the incumbent's expected duration ...
PROBE_FLOOR = 0.1  # ... and never less than this many seconds (a process takes some to start)
STRETCH = 1.2  # a re-probe may run to this times its last success when that costs less than stopping it


class RecipeLike:
    """What the learner reads of a recipe (model.Recipe; the tests' fakes). Only named
    in annotations, which are never evaluated (no `typing` import on the start-up path:
    Callable and Iterable below are strings too)."""
    name: str
    kind: str
    target: str


def _ewma(old: float, new: float, n: int) -> float:
    """One EWMA step with weight max(ALPHA, 1/n): the first sample is taken as is."""
    return old + max(ALPHA, 1.0 / n) * (new - old)


@record
class Stats:
    """What is known of one recipe on one node (see the module docstring)."""

    kind: str = ""
    target: str = ""
    n: int = 0
    n_ok: int = 0
    mu: float = 0.0
    var: float = 0.0
    mu_min: float | None = None
    b_ok: float = 0.0
    b_fail: float = 0.0
    fail_cost: float | None = None
    last_build: int | None = None
    backoff: int = BASE_BACKOFF
    script_hash: str | None = None
    prior: float | None = None
    size: int | None = None
    streak: int = 0  # consecutive failures (new fields go last: rows are stored as arrays)
    # the node's level within its recipe family (see Family): D = exp(off + family level)
    off: float | None = None  # EWMA of ln(duration) - family level, successes only
    off_var: float = 0.0  # its squared deviation: the node's own noise, without family-wide shifts
    off_min: float | None = None  # the lowest off after >= 2 successes
    mark: str = ""  # what the last attempt told the family: ok, rec(overy), sur(prising failure), fail
    lvl: float | None = None  # the family level `off` was measured against
    lvl_build: int | None = None  # the build of that measurement
    cens: float | None = None  # censored: a probe stopped at this deadline, no success since ("slower than")
    cens_build: int | None = None  # the build of that probe
    last_ok: float | None = None  # seconds of the latest success (what a re-probe finds if nothing changed)

    @property
    def p(self) -> float:
        p = (self.b_ok + 1.0) / (self.b_ok + self.b_fail + 2.0)
        if self.streak >= STREAK:
            # discounted counts forget slowly: a store that has just started failing would
            # stay first for several builds. A run of failures caps p until one succeeds.
            p = min(p, 1.0 / (self.streak + 1))
        return min(1.0, max(P_MIN, p))

    @property
    def p_longrun(self) -> float:
        """p from the discounted counts alone, without the failure-streak cap."""
        return min(1.0, max(P_MIN, (self.b_ok + 1.0) / (self.b_ok + self.b_fail + 2.0)))

    @property
    def p_recovered(self) -> float:
        """p once the current run of failures is over: the run is forgotten, as `record`
        forgets an outage when it ends with a success."""
        if not self.streak:
            return self.p_longrun
        b_ok, b_fail = _before_run(self.b_ok, self.b_fail, self.streak)
        return min(1.0, max(P_MIN, (b_ok + 1.0) / (b_ok + b_fail + 2.0)))

    @property
    def mean(self) -> float | None:
        """D, or None before the first success."""
        return math.exp(self.mu + min(self.var, VAR_CAP) / 2) if self.n_ok else None

    def record(self, ok: bool, duration: float, build: int, size: int | None = None) -> None:
        duration = max(duration, MIN_DURATION)
        self.n += 1
        self.last_build = build
        if ok and self.streak >= STREAK:
            # an outage (a run of failures) that has ended is forgotten: the store is back,
            # and its failures say nothing of the next attempt
            self.b_ok, self.b_fail = _before_run(self.b_ok, self.b_fail, self.streak)
        self.b_ok, self.b_fail = GAMMA * self.b_ok + ok, GAMMA * self.b_fail + (not ok)
        self.streak = 0 if ok else self.streak + 1
        if ok:
            self.n_ok += 1
            self.cens = self.cens_build = None  # measured now: the bound is history
            self.last_ok = duration
            a = max(ALPHA, 1.0 / self.n_ok)
            d = math.log(duration) - self.mu
            self.mu += a * d
            self.var = (1 - a) * (self.var + a * d * d)
            if self.n_ok >= 2:
                self.mu_min = self.mu if self.mu_min is None else min(self.mu_min, self.mu)
            if size:
                self.size = int(size)
        else:
            self.fail_cost = _ewma(self.fail_cost or 0.0, duration, self.n - self.n_ok)

    def record_censored(self, deadline: float, build: int) -> None:
        """A bounded probe stopped at its deadline: the recipe takes longer than `deadline`
        on this node (a censored observation). Not a failure: p and F are unchanged."""
        self.last_build = build
        self.cens = max(deadline, self.cens or 0.0)
        self.cens_build = build

    def record_offset(self, duration: float, level: float, build: int, fresh: bool = False) -> None:
        """After a success (record already counted it): the node's level relative to its
        family's level `level`. `fresh`: a probe's measurement replaces the stale one."""
        self.lvl, self.lvl_build = level, build
        x = math.log(max(duration, MIN_DURATION)) - level
        if self.off is None or fresh:
            self.off, self.off_var = x, 0.0
        else:
            a = max(ALPHA, 1.0 / self.n_ok)
            d = x - self.off
            self.off += a * d
            self.off_var = (1 - a) * (self.off_var + a * d * d)
        if self.n_ok >= 2:
            self.off_min = self.off if self.off_min is None else min(self.off_min, self.off)

    def reset(self, kind: str, target: str, script_hash: str | None) -> Stats:
        """Fresh statistics after a script change: the old mean stays as a prior, due now."""
        prior = self.mean if self.n_ok else self.prior
        return Stats(kind=kind, target=target, script_hash=script_hash, prior=prior, size=self.size, backoff=0)


_STATS_FIELDS = tuple(f.name for f in fields(Stats))  # stored as a JSON array in this order


def _before_run(b_ok: float, b_fail: float, streak: int) -> tuple[float, float]:
    """The discounted counts as they were before the last `streak` attempts, all failures:
    each added 1 to b_fail after discounting both counts by GAMMA."""
    decay = GAMMA ** streak
    run = (1.0 - decay) / (1.0 - GAMMA)
    return b_ok / decay, max(0.0, b_fail - run) / decay


@record
class Family:
    """What the siblings running one recipe share: recipes of one kind and one script,
    command template or store (`(kind, target)`) on different nodes.

    Durations: ln D(node) = off(node) + level. A success moves `level` by the
    median of this build's residuals (ln duration - the node's prediction at the start
    of the build), shrunk by n/(n+1) for n residuals (fully for a probe), so that a
    store slowing down for every sibling moves every sibling's estimate, while one
    node's own change (its median is 0) does not. Outcomes: the counts of the latest
    build with observations, which siblings that have not seen them use:
    `sur` failures of recipes that usually work (an outage), `rec` successes ending
    a run of failures (a recovery)."""

    level: float = 0.0
    build: int | None = None  # the build of the counts below (the family's latest news)
    start: float = 0.0  # level at the start of that build
    res: list = field(default_factory=list)  # that build's residuals (the first SAMPLE)
    n: int = 0  # attempts in that build
    n_ok: int = 0
    sur: int = 0
    rec: int = 0
    probe: bool = False  # a probe was among that build's successes
    sur_time: float = 0.0  # EWMA of the seconds a surprising failure takes (an outage's time to fail)
    run: int = 0  # surprising failures since the family's last success (over builds)
    finals: list = field(default_factory=list)  # [build, level at its end] of the last FINALS builds

    def offset(self, st: Stats) -> float:
        """The node's offset against the level as it ended the build of its measurement:
        a node whose change its siblings did not share (they moved the level back later
        in that build) keeps it as its own."""
        if st.lvl is None or st.lvl_build is None:
            return st.off
        if st.lvl_build == self.build:
            end = self.level
        else:
            end = next((lv for b, lv in reversed(self.finals) if b == st.lvl_build), st.lvl)
        return st.off + st.lvl - end

    def add(self, build: int, ok: bool, mark: str, residual: float | None, probe: bool,
            duration: float) -> None:
        if self.build != build:
            if self.build is not None:
                self.finals = (self.finals + [[self.build, self.level]])[-FINALS:]
            self.build, self.start, self.res = build, self.level, []
            self.n = self.n_ok = self.sur = self.rec = 0
            self.probe = False
        self.n += 1
        if ok:
            self.n_ok += 1
            self.run = 0
            self.rec += mark == "rec"
            if residual is not None and len(self.res) < SAMPLE:
                self.res.append(residual)
                self.probe = self.probe or probe
                n = len(self.res)
                self.level = self.start + (1.0 if self.probe else n / (n + 1)) * _cautious_median(self.res)
        else:
            if mark == "sur":
                self.sur += 1
                self.run += 1
                self.sur_time = duration if not self.sur_time else self.sur_time + ALPHA * (duration - self.sur_time)


_FAMILY_FIELDS = tuple(f.name for f in fields(Family))


def _cautious_median(xs: list) -> float:
    """The median; of an even count, the middle value nearer 0: the family moves only as
    far as most of its observations agree."""
    s = sorted(xs)
    n = len(s)
    if n % 2:
        return s[n // 2]
    a, b = s[n // 2 - 1], s[n // 2]
    return a if abs(a) <= abs(b) else b


@record
class Location:
    """Learned latency and throughput of one transfer location (the cache, a store)."""

    kind: str = "fetch"
    n_lat: int = 0
    latency: float = 0.0
    n_thr: int = 0
    ln_thr: float = 0.0

    def model(self) -> tuple[float, float]:
        """(latency s, throughput bytes/s), the defaults standing in until learned."""
        lat0, thr0 = TRANSFER_DEFAULTS.get(self.kind, TRANSFER_DEFAULTS["fetch"])
        return (self.latency if self.n_lat else lat0, math.exp(self.ln_thr) if self.n_thr else thr0)

    def estimate(self, size: float) -> float:
        latency, throughput = self.model()
        return latency + size / throughput

    def record(self, duration: float, size: int) -> None:
        duration = max(duration, MIN_DURATION)
        if size > BIG_TRANSFER:
            latency = self.model()[0]
            moving = max(duration - latency, duration / 2)
            self.n_thr += 1
            self.ln_thr = _ewma(self.ln_thr, math.log(size / moving), self.n_thr)
        else:
            self.n_lat += 1
            self.latency = _ewma(self.latency, duration, self.n_lat)


_LOCATION_FIELDS = tuple(f.name for f in fields(Location))


@record(frozen=True)
class Estimate:
    """One recipe's numbers as the choice saw them."""

    recipe: str
    kind: str
    duration: float  # D: expected duration of a success
    p: float  # success probability
    fail_cost: float  # F: expected time to fail
    cost: float  # c = p*D + (1-p)*F
    index: float  # c/p: the sort key
    source: str  # where D comes from: LEARNED, PREVIOUS_SCRIPT, TRANSFER_MODEL, SIBLINGS, ...
    runs: int = 0  # attempts observed on this node (since the script last changed)
    probe: bool = False
    note: str = ""  # what the recipe's siblings changed, e.g. "family shift x3.1 from 5 siblings"
    floor: float | None = None  # censored: a probe stopped at this deadline (D is at least this)
    raw: float | None = None  # D before the censored floor was applied

    @property
    def known(self) -> bool:
        """Is D backed by evidence (this recipe's own runs, its siblings, a transfer model)
        rather than a guess from unrelated recipes?"""
        return self.source not in GUESSES or bool(self.floor)

    @property
    def shown(self) -> str:
        """D as users see it: "unknown" for a guess, "≥1.5s" for a censored bound."""
        return show_duration(self.duration, self.source, self.floor)

    def __str__(self) -> str:
        runs = f", {self.runs} run{'s' * (self.runs != 1)}" if self.runs else ""
        note = f"; {self.note}" if self.note else ""
        if self.source in GUESSES:
            what = f"never measured; ordered as the {self.source}, {_seconds(self.raw or self.duration)}"
        else:
            what = self.source
        cost = f"expected cost / p = {_seconds(self.index)}" if self.known else "expected cost unknown"
        return (f"{self.recipe}: {self.shown} ({what}{runs}{note}), p = {self.p:.2f}, {cost}"
                + ("  [probe]" if self.probe else ""))


def show_duration(duration: float | None, source: str | None = None, floor: float | None = None) -> str:
    """An expected duration for users: "unknown" when nothing measured it (None, or a
    guess from unrelated recipes), "≥X" when a probe stopped at X, else its value."""
    if floor and (duration is None or duration <= floor + 1e-9):
        return "≥" + _seconds(floor)
    if duration is None or source in GUESSES:
        return "unknown"
    return _seconds(duration)


@record(frozen=True)
class Choice:
    """The order to try a node's recipes in, with the estimates behind it."""

    node: str
    recipes: tuple  # the recipe objects, in order
    estimates: tuple[Estimate, ...]  # same order
    probe: str | None = None  # the recipe moved forward to re-measure it, if any
    deadline: float | None = None  # a bounded probe: stopped after this many seconds, then the next runs
    why: str = ""  # why the probe: "never measured", "due (4 builds since its last run)"

    @property
    def order(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.recipes)

    @property
    def known(self) -> bool:
        """Is the first recipe's duration measured (not a guess from unrelated recipes)?"""
        return bool(self.estimates) and self.estimates[0].known

    @property
    def expected_duration(self) -> float:
        """Expected time until the node is made, given that a recipe succeeds: the
        critical-path weight and the ETA. (chain_cost / P(some recipe succeeds): a
        single reliable recipe weighs about its duration, not p times it.)"""
        fail_all = 1.0
        for e in self.estimates:
            fail_all *= 1.0 - e.p
        return chain_cost(self.estimates) / max(1e-6, 1.0 - fail_all)

    def explain(self) -> list[str]:
        """Lines for `node explain`: the choice, then every recipe's estimate."""
        if not self.estimates:
            return [f"{self.node}: no recipe to try"]
        first, rest = self.estimates[0], self.estimates[1:]
        if self.deadline is not None and rest:
            inc = rest[0]
            head = (f"{first.recipe} probed first ({self.why}), deadline {_seconds(self.deadline)} = "
                    f"{PROBE_FACTOR:g} × {inc.recipe}'s expected {_seconds(inc.duration)}"
                    + (f" (at least {_seconds(PROBE_FLOOR)})" if self.deadline <= PROBE_FLOOR + 1e-9 else "")
                    + f"; past it, it is stopped and {inc.recipe} runs")
            return [head] + [f"  {i}. {e}" for i, e in enumerate(self.estimates, 1)]
        head = f"{first.recipe} chosen: {first.shown} est."
        if rest:
            head += " vs " + ", ".join(f"{e.recipe} {e.shown}" for e in rest)
        if self.probe:
            head += f" ({self.probe} re-measured this build)"
        return [head] + [f"  {i}. {e}" for i, e in enumerate(self.estimates, 1)]


def chain_cost(estimates: Iterable[Estimate]) -> float:
    """Expected time to get a success (or exhaust the chain): sum reach_i * c_i."""
    total, reach = 0.0, 1.0
    for e in estimates:
        total += reach * e.cost
        reach *= 1.0 - e.p
    return total


@record(frozen=True)
class _Probe:
    recipe: str
    rival_index: float


@record(frozen=True)
class _View:
    """A recipe on a node as its family sees it (None fields: no family to speak of)."""

    key: tuple[str, str]
    fam: Family | None = None
    active: bool = False  # has siblings: the family's level and news apply
    fresh: bool = False  # a sibling succeeded with it in this build or the last one
    cheap: bool = True  # may probe for the family: at most its median cost, or long unobserved


@record(frozen=True)
class _FamilySnap:
    members: int  # nodes with a level in the family (a success since their script last changed)
    median_d: float  # median of exp(off): a sibling's D at family level 0
    median_off: float


_SCHEMA = """
CREATE TABLE IF NOT EXISTS recipe_stats(node TEXT, recipe TEXT, data TEXT, PRIMARY KEY(node, recipe));
CREATE TABLE IF NOT EXISTS location_stats(kind TEXT, location TEXT, data TEXT, PRIMARY KEY(kind, location));
CREATE TABLE IF NOT EXISTS family_stats(kind TEXT, target TEXT, data TEXT, PRIMARY KEY(kind, target));
CREATE TABLE IF NOT EXISTS learn_probes(build INTEGER, node TEXT, recipe TEXT, ok INTEGER, duration REAL, better INTEGER);
CREATE TABLE IF NOT EXISTS learn_meta(k TEXT PRIMARY KEY, v INTEGER);
"""



def _median_sorted(v, f=None) -> float:
    """statistics.median of f(x) for x in the sorted list v (f increasing)."""
    n = len(v)
    mid = n // 2
    if f is None:
        return v[mid] if n % 2 else (v[mid - 1] + v[mid]) / 2
    return f(v[mid]) if n % 2 else (f(v[mid - 1]) + f(v[mid])) / 2

class Learner:
    """Recipe statistics on a SQLite connection; the choice of recipe order."""

    def __init__(self, db: sqlite3.Connection, lazy: bool = False):
        self.db = db
        # lazy: read one node's statistics when it is asked about (a build of a few
        # nodes in a big project), and the project-wide medians from their stored lists
        self.lazy = lazy
        self._loaded_nodes: set[str] = set()
        self._all_loaded = False
        self._lists: tuple[dict, dict] | None = None  # the sorted values behind _snapshot
        self._lists_dirty = False
        self._stats: dict[str, dict[str, Stats]] | None = None  # node -> recipe -> Stats
        self._locations: dict[tuple[str, str], Location] = {}
        self._families: dict[tuple[str, str], Family] = {}
        self._counter = 0  # builds committed so far
        self._committed = False  # has this build taken its number yet
        self._tables = False
        self._aggregates: tuple[dict, float | None, dict] | None = None
        self._probes: dict[str, _Probe] = {}
        self._family_probes: dict[tuple[str, str], str] = {}  # family -> the node probing it this build
        self.observations = 0  # attempts observed by this learner: a choice older than one may be stale
        self._pending: dict = {}  # statistics, family and location rows changed since the last flush

    # -- builds ---------------------------------------------------------------------
    def begin_build(self) -> None:
        """Start a new build: its number is taken on its first observation (no I/O here)."""
        self._committed = False
        self._aggregates = None
        self._probes.clear()
        self._family_probes.clear()

    @property
    def build(self) -> int:
        self._load()
        return self._counter if self._committed else self._counter + 1

    def _commit_build(self) -> int:
        if not self._committed:
            self._ensure_tables()
            with _Tx(self.db):
                self.db.execute("INSERT OR IGNORE INTO learn_meta VALUES ('builds', 0)")
                self.db.execute("UPDATE learn_meta SET v = v + 1 WHERE k = 'builds'")
                self._counter = int(self.db.execute("SELECT v FROM learn_meta WHERE k = 'builds'").fetchone()[0])
            self._committed = True
        return self._counter

    # -- choosing -------------------------------------------------------------------
    def choose(self, node: str, recipes: Iterable[RecipeLike], *,
               script_of: Callable[[RecipeLike], str | None] | None = None,
               size_of: Callable[[RecipeLike], int | None] | None = None,
               force_kind: str | None = None, probes: bool = True) -> Choice:
        """The order to try `recipes` (given in Nodefile order) for a stale node.

        Registers the probe, if any, so that its observation adjusts its back-off
        (and so that no sibling probes the same recipe family in this build).
        `force_kind` (--recipe KIND) keeps only recipes of that kind or name, and
        never probes; nor does `probes=False` (--no-probe).
        """
        choice, probe, family = self._rank(node, recipes, script_of, size_of, force_kind, probes)
        if probe is None:
            self._probes.pop(node, None)
        else:
            self._probes[node] = probe
        for key, who in list(self._family_probes.items()):
            if who == node and key != family:
                del self._family_probes[key]
        if family is not None:
            self._family_probes[family] = node
        return choice

    def estimate(self, node: str, recipes: Iterable[RecipeLike], *,
                 script_of: Callable[[RecipeLike], str | None] | None = None,
                 size_of: Callable[[RecipeLike], int | None] | None = None) -> Choice:
        """The order `choose` would give, without a probe and without registering anything."""
        return self._rank(node, recipes, script_of, size_of, None, False)[0]

    def expected_duration(self, node: str, recipes: Iterable[RecipeLike], *,
                          script_of: Callable[[RecipeLike], str | None] | None = None,
                          size_of: Callable[[RecipeLike], int | None] | None = None) -> float:
        """The critical-path weight of a stale node: the expected chain cost of its order."""
        return self._rank(node, recipes, script_of, size_of, None, False)[0].expected_duration

    def _rank(self, node, recipes, script_of, size_of, force_kind, probes=True):
        self._load()
        recipes = list(recipes)
        if force_kind:
            recipes = [r for r in recipes if r.kind == force_kind or r.name == force_kind]
        build = self.build
        rows = []
        for r in recipes:
            st = self._current(node, r, script_of(r) if script_of else None)
            view = self._view(node, r, st, build)
            rows.append((self._estimate(node, r, st, size_of(r) if size_of else None, view), st, r, view))
        if len(rows) == 1:  # nothing to order, nothing to probe against (most nodes)
            return Choice(node, (rows[0][2],), (rows[0][0],), None), None, None
        # A guess from unrelated scripts (project median, default) is no evidence: such a
        # recipe keeps its Nodefile place behind the recipes listed before it (a teammate
        # must not retrain a 3-hour model because the project's other steps are quick).
        keys, ahead = [], 0.0
        for est, _, _, _ in rows:
            keys.append(max(est.index, ahead) if est.source in GUESSES else est.index)
            ahead = max(ahead, est.index)
        order = sorted(range(len(rows)), key=lambda i: keys[i])  # stable: ties keep the Nodefile order
        rows = [rows[i] for i in order]
        probe, family = None, None
        if force_kind is None and probes:
            bounded = self._bounded_probe(node, rows, build, {r.name: i for i, r in enumerate(recipes)})
            if bounded is not None:
                return bounded
        if force_kind is None and probes:
            for i in range(1, len(rows)):
                est, st, r, view = rows[i]
                rival = rows[0][0]  # the recipe it would displace: a probe runs first, or not at all
                if est.source in GUESSES:
                    continue  # never probe on a guess: that would be force-trying it
                if not (est.runs or rival.runs) or not _due(st, build):
                    continue
                if view.active and not view.fresh:
                    # nobody tried it lately: one probe per family and build, by a node for
                    # which it is cheap; the answer ("is the store back?", "did the script get
                    # faster?") is the family's. (When siblings tried it lately, the family's
                    # level is current, and a probe asks about this node alone.)
                    if self._family_probes.get(view.key, node) != node or not view.cheap:
                        continue
                if self._best(est, st, view) < rival.index:
                    rows = [(replace(est, probe=True), st, r, view)] + rows[:i] + rows[i + 1:]
                    probe = _Probe(r.name, rival.index)
                    family = view.key if view.active and not view.fresh else None
                    break
        deadline = None
        why = ""
        if (probe is not None and rows[0][2].kind not in TRANSFER_KINDS
                and rows[1][0].source == LEARNED):
            # moved to the front: bounded by the recipe it displaced, when that one is measured
            deadline = max(PROBE_FLOOR, PROBE_FACTOR * rows[1][0].duration)
            st = rows[0][1]
            last = STRETCH * (st.last_ok if st is not None and st.last_ok else rows[0][0].duration)
            if deadline < last < deadline + rows[1][0].duration:
                # as slow as last time, it would still cost less than being stopped and
                # replaced by the incumbent: let it finish
                deadline = last
            why = f"due again: {build - st.last_build} builds since its last run" if st and st.n else "due"
        choice = Choice(node, tuple(r for _, _, r, _ in rows), tuple(e for e, _, _, _ in rows),
                        probe.recipe if probe else None, deadline, why)
        return choice, probe, family

    def _bounded_probe(self, node, rows, build, pos):
        """The node must be rebuilt anyway (its first recipe runs a process) and that
        recipe's duration is measured here: an alternative process recipe never measured
        (or stopped by an earlier probe and due again) runs first, as a probe stopped
        after PROBE_FACTOR x the incumbent's expected duration; then the incumbent runs.
        The first such recipe in Nodefile order; one whose estimate (siblings, previous
        script) is evidence that it is slower than the deadline is left alone.
        Returns (choice, probe, None) or None."""
        if len(rows) < 2:
            return None
        inc = rows[0][0]
        if inc.kind in TRANSFER_KINDS or inc.source != LEARNED:
            return None  # restored, not rebuilt; or no measured duration to set a deadline from
        deadline = max(PROBE_FLOOR, PROBE_FACTOR * inc.duration)
        for i in sorted(range(1, len(rows)), key=lambda i: pos[rows[i][2].name]):
            est, st, r, _ = rows[i]
            if r.kind in TRANSFER_KINDS or not _never_measured(st) or not _due(st, build):
                continue
            if st is not None and st.n and st.cens is None:
                continue  # it failed here: the plausibility rule below decides whether to try it again
            raw = est.raw if est.raw is not None else est.duration
            if est.source not in GUESSES and raw >= deadline:
                continue  # its siblings (or its previous script) say it is slower than the deadline
            why = "never measured" if st is None or st.n == 0 and st.cens is None else (
                f"due again: {build - st.last_build} builds after its last probe")
            rows = [rows[i]] + rows[:i] + rows[i + 1:]
            rows[0] = (replace(est, probe=True),) + rows[0][1:]
            choice = Choice(node, tuple(x[2] for x in rows), tuple(x[0] for x in rows), r.name, deadline, why)
            return choice, _Probe(r.name, inc.index), None
        return None

    def _current(self, node: str, r: RecipeLike, script_hash: str | None) -> Stats | None:
        """The node's statistics for r, reset (in memory) if its script changed."""
        st = self._node(node).get(r.name)
        if st is not None and _changed(st, r, script_hash):
            old = _contribution(st)
            st = self._stats[node][r.name] = st.reset(r.kind, r.target, script_hash)
            self._update_lists(old, _contribution(st))
        return st

    def _view(self, node: str, r: RecipeLike, st: Stats | None, build: int) -> _View:
        key = (r.kind, r.target)
        fam = self._families.get(key)
        snap = self._snapshot()[2].get(key)
        if fam is None or snap is None:
            return _View(key)
        own = st is not None and st.off is not None
        if snap.members - own < 1:
            return _View(key, fam)  # no sibling: the node's own statistics say it all
        # siblings succeeded with it lately: the family's level is current
        fresh = fam.build is not None and fam.build >= build - 1 and self._own_counts(fam, st)[0] > 0
        long_unseen = fam.build is None or build - fam.build >= 2 * BASE_BACKOFF
        cheap = long_unseen or (own and fam.offset(st) <= snap.median_off)
        return _View(key, fam, True, fresh, cheap)

    def _estimate(self, node: str, r: RecipeLike, st: Stats | None, size: int | None, view: _View) -> Estimate:
        note = ""
        fam = view.fam if view.active else None
        if st is not None and st.n_ok:
            duration, source = st.mean, LEARNED
            if fam is not None and st.off is not None:
                off = fam.offset(st)
                duration = math.exp(off + fam.level + min(st.off_var, VAR_CAP) / 2)
                shift = off + fam.level - st.mu
                if abs(shift) >= SHIFT_NOTE:
                    note = f"family shift ×{math.exp(shift):.1f} from {self._siblings(fam, st)}"
        elif st is not None and st.prior:
            duration, source = st.prior, PREVIOUS_SCRIPT
        elif r.kind in TRANSFER_KINDS:
            if size is None:
                size = self._node_size(node)
            duration = self._location(r.kind, r.target).estimate(DEFAULT_SIZE if size is None else size)
            source = TRANSFER_MODEL
        else:
            duration, source = self._rebuild_prior(r)
        p = st.p if st is not None else Stats().p
        fail_cost = st.fail_cost if st is not None else None
        if fam is not None:
            p, news, outage = self._news(p, st, fam)
            note = "; ".join(x for x in (note, news) if x)
            if outage:  # failing as the siblings fail now (a timeout is no quick "not found")
                fail_cost = max(fail_cost or 0.0, fam.sur_time)
        floor = raw = None
        if st is not None and st.cens:
            # a probe stopped at its deadline: the recipe takes at least that long here
            floor, raw = st.cens, duration
            duration = max(duration, st.cens)
            note = "; ".join(x for x in (note, f"a probe was stopped at its {_seconds(st.cens)} deadline "
                                               f"in build {st.cens_build}") if x)
        est = _score(r.name, r.kind, duration, p, fail_cost, source, st.n if st is not None else 0)
        if note or floor:
            est = replace(est, note=note, floor=floor, raw=raw)
        return est

    @staticmethod
    def _own_counts(fam: Family, st: Stats | None) -> tuple[int, int, int]:
        """The family's latest counts (successes, surprising failures, recoveries) without
        the node's own attempt, when that attempt is among them."""
        n_ok, sur, rec = fam.n_ok, fam.sur, fam.rec
        if st is not None and st.n and st.last_build == fam.build:
            if st.mark in ("ok", "rec"):
                n_ok -= 1
                rec -= st.mark == "rec"
            elif st.mark == "sur":
                sur -= 1
        return n_ok, sur, rec

    def _siblings(self, fam: Family, st: Stats | None) -> str:
        n_ok = self._own_counts(fam, st)[0]
        if n_ok > 0:
            return f"{n_ok} sibling{'s' * (n_ok != 1)} in build {fam.build}"
        return f"siblings in build {fam.build}"

    def _news(self, p: float, st: Stats | None, fam: Family) -> tuple[float, str, bool]:
        """p adjusted by what the siblings saw since this node last tried the recipe:
        most of them failing where it usually works (an outage) caps p like a run of
        failures; a success after failures (a recovery) forgets this node's own run."""
        if fam.build is None or (st is not None and st.n and st.last_build > fam.build):
            return p, "", False  # the node's own news is newer
        n_ok, sur, rec = self._own_counts(fam, st)
        if fam.run >= 1 and n_ok == 0:
            # nobody succeeded since: like a run of failures of its own (its own ones are in it)
            return (min(p, 1.0 / (1 + fam.run)),
                    f"failing for its siblings ({fam.run} failure{'s' * (fam.run != 1)} in a row"
                    f" up to build {fam.build})", True)
        if rec >= 1 and rec >= sur and st is not None and st.streak:
            return (max(p, st.p_recovered),
                    f"working again for {rec} sibling{'s' * (rec != 1)} in build {fam.build}", False)
        return p, "", False

    def _best(self, est: Estimate, st: Stats | None, view: _View) -> float:
        """What the recipe can do (the plausibility of a probe): its best level / p, or its
        prior D if never observed; p as if a run of failures were over. With siblings who
        succeeded with it lately, at the family's current level; otherwise optimistic: a
        slow spell may be over."""
        if st is None or st.n == 0:
            return est.duration
        p = st.p_recovered  # what it can do: a recent run of failures (an outage) may be over
        if st.n_ok:
            best = st.mu if st.mu_min is None else st.mu_min
            if view.active and st.off is not None:
                off = view.fam.offset(st)
                level = (off if st.off_min is None else min(off, st.off_min)) + view.fam.level
                best = level if view.fresh else min(best, level)
            return math.exp(best) / p
        return est.duration / p

    def _node_size(self, node: str) -> int | None:
        """The node's last artifact size: from its most recent sized observation."""
        sized = [s for s in self._node(node).values() if s.size]
        return max(sized, key=lambda s: s.last_build or 0).size if sized else None

    def _rebuild_prior(self, r: RecipeLike) -> tuple[float, str]:
        by_script, project, families = self._snapshot()
        snap = families.get((r.kind, r.target))
        fam = self._families.get((r.kind, r.target))
        if snap is not None and fam is not None:
            return snap.median_d * math.exp(fam.level), SIBLINGS  # the siblings, at today's family level
        sib = by_script.get((r.kind, r.target))
        if sib is not None:
            return sib, SIBLINGS
        if project is not None:
            return project, PROJECT_MEDIAN
        return DEFAULT_DURATION, DEFAULT

    def _snapshot(self) -> tuple[dict, float | None, dict]:
        """Median D per (kind, script) and over every rebuild recipe, and the families'
        members and median levels, once per build."""
        if self._aggregates is None:
            groups, offs = self._value_lists()
            groups = {k: v for k, v in groups.items() if v}
            offs = {k: v for k, v in offs.items() if v}
            every = sorted(d for ds in groups.values() for d in ds) if len(groups) > 1 else \
                next(iter(groups.values()), [])
            # the lists are sorted (_value_lists): their medians without sorting again;
            # exp is increasing, so the middle of the exp'ed list is exp of the middle
            families = {k: _FamilySnap(len(v), _median_sorted(v, math.exp), _median_sorted(v))
                        for k, v in offs.items()}
            self._aggregates = ({k: _median_sorted(v) for k, v in groups.items()},
                                _median_sorted(every) if every else None, families)
        return self._aggregates

    def _value_lists(self) -> tuple[dict, dict]:
        """Every node's contribution to the medians (D of rebuild recipes, family offsets),
        as sorted lists per (kind, target): kept up to date by observe, stored at the end
        of a build (end_build) for the next lazy learner."""
        if self._lists is None:
            if self.lazy and not self._all_loaded:
                self._lists = self._stored_lists()
            if self._lists is None:
                self._load_all()
                groups: dict = {}
                offs: dict = {}
                for recipes in self._stats.values():
                    for st in recipes.values():
                        g, o = _contribution(st)
                        if g is not None:
                            groups.setdefault(g[0], []).append(g[1])
                        if o is not None:
                            offs.setdefault(o[0], []).append(o[1])
                for lists in (groups, offs):
                    for v in lists.values():
                        v.sort()
                self._lists = (groups, offs)
                self._lists_dirty = True
        return self._lists

    def _update_lists(self, old, new) -> None:
        if self._lists is None or old == new:
            return
        for i, (was, now) in enumerate(zip(old, new)):
            lists = self._lists[i]
            if was is not None:
                v = lists.get(was[0], [])
                j = bisect.bisect_left(v, was[1])
                if j < len(v) and v[j] == was[1]:
                    del v[j]
            if now is not None:
                bisect.insort(lists.setdefault(now[0], []), now[1])
        self._lists_dirty = True

    def _stored_lists(self):
        try:
            row = self.db.execute("SELECT tag, data FROM learn_lists WHERE k = 'values'").fetchone()
        except sqlite3.OperationalError:
            return None
        if row is None or row[0] != self._counter:
            return None  # written before the last observations: recompute
        try:
            groups, offs = marshal.loads(row[1])
            return ({tuple(k): list(v) for k, v in groups}, {tuple(k): list(v) for k, v in offs})
        except (ValueError, TypeError, EOFError):
            return None

    def end_build(self) -> None:
        """Write what is pending; store the median lists for the next build's lazy
        learner (tagged with the build counter: any later observation makes them stale)."""
        self.flush()
        if self._lists is None or not self._lists_dirty or not self._tables:
            return
        data = marshal.dumps(tuple(tuple((list(k), v) for k, v in lists.items()) for lists in self._lists))
        try:
            with _Tx(self.db):
                self.db.execute("CREATE TABLE IF NOT EXISTS learn_lists(k TEXT PRIMARY KEY, tag INTEGER, data BLOB)")
                self.db.execute("INSERT OR REPLACE INTO learn_lists VALUES ('values', ?, ?)", (self._counter, data))
            self._lists_dirty = False
        except sqlite3.OperationalError:
            pass  # read-only: the next build recomputes them

    def _location(self, kind: str, location: str) -> Location:
        loc = self._locations.get((kind, location))
        if loc is None:
            loc = self._locations[(kind, location)] = Location(kind=kind)
        return loc

    # -- observing ------------------------------------------------------------------
    def observe(self, node: str, recipe: RecipeLike, ok: bool, duration: float, *,
                script_hash: str | None = None, size: int | None = None, censored: bool = False) -> None:
        """Record one finished attempt (success or failure). Its rows (statistics,
        family, location) are written at the next flush(): the build's group commit,
        and end_build. (A probe's row is written at once.)

        `size`: bytes of the artifact (transferred, or written by a rebuild).
        `censored`: a bounded probe stopped at its deadline `duration`: the recipe is
        slower than that (neither a success nor a failure).
        Cancelled attempts (interrupted, inputs changed) should not be observed.
        """
        self._load()
        if censored:
            self._censored(node, recipe, duration, script_hash)
            return
        build = self._commit_build()
        self.observations += 1
        recipes = self._node(node)
        st = recipes.get(recipe.name)
        before = _contribution(st)
        if st is None:
            st = recipes[recipe.name] = Stats(kind=recipe.kind, target=recipe.target, script_hash=script_hash)
        elif _changed(st, recipe, script_hash):
            st = recipes[recipe.name] = st.reset(recipe.kind, recipe.target, script_hash)
        if script_hash:
            st.script_hash = script_hash
        key = (recipe.kind, recipe.target)
        fam = self._families.get(key)
        if fam is None:
            fam = self._families[key] = Family()
        usually_works = st.n_ok > 0 and st.p_longrun >= SURPRISE
        # failing before this attempt: its own run of failures, or its siblings' outage
        was_failing = st.streak > 0 or (ok and self._news(1.0, st, fam)[2])
        st.record(ok, duration, build, size)
        probe = self._probes.get(node)
        probed = None
        if probe is not None and probe.recipe == recipe.name:
            del self._probes[node]
            if ok:
                # a probe exists because this recipe's history is stale: its fresh
                # measurement replaces the old level and its uncertainty
                st.mu, st.var = math.log(max(duration, MIN_DURATION)), 0.0
            better = ok and (duration < probe.rival_index or _score(
                recipe.name, recipe.kind, st.mean, st.p, st.fail_cost, LEARNED, st.n).index < probe.rival_index)
            st.backoff = BASE_BACKOFF if better else min(MAX_BACKOFF, max(BASE_BACKOFF, 2 * st.backoff))
            probed = (build, node, recipe.name, int(ok), duration, int(better))
        # the family: the residual against the node's level at the start of this build
        mark = ("rec" if was_failing else "ok") if ok else ("sur" if usually_works else "fail")
        residual = None
        if ok and st.off is not None:
            st.off = fam.offset(st)  # settled against the end of the build it was measured in
            start = fam.start if fam.build == build else fam.level
            residual = math.log(max(duration, MIN_DURATION)) - (st.off + start)
        fam.add(build, ok, mark, residual, probed is not None, duration)
        if ok:
            st.record_offset(duration, fam.level, build, fresh=probed is not None)
        st.mark = mark
        self._update_lists(before, _contribution(st))
        location = None
        if recipe.kind in TRANSFER_KINDS and ok and size:
            location = self._location(recipe.kind, recipe.target)
            location.record(duration, size)
        self._write(node, recipe, st, location, fam, probed)

    def _censored(self, node: str, recipe: RecipeLike, deadline: float, script_hash: str | None) -> None:
        build = self._commit_build()
        self.observations += 1
        recipes = self._node(node)
        st = recipes.get(recipe.name)
        before = _contribution(st)
        first = st is None or (st.n == 0 and st.cens is None)
        if st is None:
            st = recipes[recipe.name] = Stats(kind=recipe.kind, target=recipe.target, script_hash=script_hash)
        elif _changed(st, recipe, script_hash):
            st = recipes[recipe.name] = st.reset(recipe.kind, recipe.target, script_hash)
            first = True
        st.record_censored(deadline, build)
        # re-probed when due: 4 builds after the first probe, then 8, 16 ... 256
        st.backoff = BASE_BACKOFF if first else min(MAX_BACKOFF, max(BASE_BACKOFF, 2 * st.backoff))
        probe = self._probes.pop(node, None)
        probed = (build, node, recipe.name, 0, deadline, 0) if probe is not None and probe.recipe == recipe.name \
            else None
        self._update_lists(before, _contribution(st))
        key = (recipe.kind, recipe.target)
        fam = self._families.get(key)
        if fam is None:
            fam = self._families[key] = Family()
        self._write(node, recipe, st, None, fam, probed)

    # -- reading --------------------------------------------------------------------
    def stats(self, node: str, recipe: str) -> Stats | None:
        self._load()
        return self._node(node).get(recipe)

    def location(self, kind: str, location: str) -> Location:
        self._load()
        return self._location(kind, location)

    def family(self, kind: str, target: str) -> Family | None:
        """The family of recipes of this kind running this script, command or store."""
        self._load()
        return self._families.get((kind, target))

    def probes(self) -> list[tuple]:
        """Every probe observed: (build, node, recipe, ok, duration, better), oldest first."""
        self._load()
        try:
            return [tuple(r) for r in self.db.execute(
                "SELECT build, node, recipe, ok, duration, better FROM learn_probes ORDER BY rowid")]
        except sqlite3.OperationalError:
            return []

    # -- storage --------------------------------------------------------------------
    def _load(self) -> None:
        """The small tables (locations, families, the build counter), and every node's
        statistics unless lazy."""
        if self._stats is not None:
            return
        self._stats = {}
        try:
            for kind, location, data in self.db.execute("SELECT kind, location, data FROM location_stats"):
                loc = _row(Location, data)
                if loc is not None:
                    self._locations[(kind, location)] = loc
            row = self.db.execute("SELECT v FROM learn_meta WHERE k = 'builds'").fetchone()
            self._counter = int(row[0]) if row else 0
            self._tables = True
        except sqlite3.OperationalError:  # no tables yet: nothing learned
            pass
        try:  # a table added later: created with the others on the next write
            for kind, target, data in self.db.execute("SELECT kind, target, data FROM family_stats"):
                fam = _row(Family, data)
                if fam is not None:
                    self._families[(kind, target)] = fam
        except sqlite3.OperationalError:
            self._tables = False
        if not self.lazy:
            self._load_all()

    def _load_all(self) -> None:
        if self._all_loaded:
            return
        self._all_loaded = True
        try:
            rows = self.db.execute("SELECT node, recipe, data FROM recipe_stats").fetchall()
        except sqlite3.OperationalError:
            return
        for node, recipe, data in rows:
            if node in self._loaded_nodes:
                continue  # already read (and maybe changed in memory since)
            st = _row(Stats, data)
            if st is not None:
                self._stats.setdefault(node, {})[recipe] = st

    def _node(self, node: str) -> dict:
        """node -> recipe -> Stats for one node (read now if lazy)."""
        recipes = self._stats.get(node)
        if recipes is None:
            recipes = self._stats[node] = {}
            if self.lazy and not self._all_loaded:
                try:
                    for recipe, data in self.db.execute("SELECT recipe, data FROM recipe_stats WHERE node = ?",
                                                        (node,)):
                        st = _row(Stats, data)
                        if st is not None:
                            recipes[recipe] = st
                except sqlite3.OperationalError:
                    pass
        self._loaded_nodes.add(node)
        return recipes

    def _ensure_tables(self) -> None:
        if not self._tables:
            with _Tx(self.db):
                for stmt in _SCHEMA.strip().split(";\n"):
                    self.db.execute(stmt)
            self._tables = True

    def _write(self, node: str, recipe: RecipeLike, st: Stats, location: Location | None,
               family: Family, probed: tuple | None) -> None:
        if probed is not None:
            with _Tx(self.db):
                self.db.execute("INSERT INTO learn_probes VALUES (?, ?, ?, ?, ?, ?)", probed)
        self._pending[("stats", node, recipe.name)] = st
        key = (recipe.kind, recipe.target)
        self._pending[("family",) + key] = family
        if location is not None:
            self._pending[("location",) + key] = location

    def flush(self) -> None:
        """Write the statistics, family and location rows changed since the last flush."""
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        with _Tx(self.db):
            self.db.executemany("INSERT OR REPLACE INTO recipe_stats VALUES (?, ?, ?)",
                                [(k[1], k[2], _dump(st, _STATS_FIELDS)) for k, st in pending.items() if k[0] == "stats"])
            for (what, kind, target), obj in pending.items():
                if what == "stats":
                    continue
                if what == "family":
                    self.db.execute("INSERT OR REPLACE INTO family_stats VALUES (?, ?, ?)",
                                    (kind, target, _dump(obj, _FAMILY_FIELDS)))
                else:
                    self.db.execute("INSERT OR REPLACE INTO location_stats VALUES (?, ?, ?)",
                                    (kind, target, _dump(obj, _LOCATION_FIELDS)))


def _row(cls, data: str):
    """A stored row as cls, or None when it is unreadable (another version's layout):
    learning must never break a build, so such a row counts as nothing learned."""
    try:
        return cls(*json.loads(data))
    except (TypeError, ValueError):
        return None


def _contribution(st: Stats | None):
    """What a recipe's statistics add to the project-wide medians: ((kind, target), D)
    for a rebuild recipe that succeeded, and ((kind, target), offset) for a family member."""
    if st is None or not st.n_ok:
        return None, None
    g = ((st.kind, st.target), st.mean) if st.kind not in TRANSFER_KINDS else None
    o = ((st.kind, st.target), st.off) if st.off is not None else None
    return g, o


def _dump(obj, names: tuple[str, ...]) -> str:
    """The fields as a JSON array: compact and quick to load. New fields go at the end
    of their record class, so that older rows still load (missing ones take defaults)."""
    return compact_json([getattr(obj, n) for n in names])


def _changed(st: Stats, r: RecipeLike, script_hash: str | None) -> bool:
    """Did the recipe change under its name: another script hash, kind or target."""
    return (bool(script_hash) and bool(st.script_hash) and script_hash != st.script_hash) \
        or (st.kind, st.target) != (r.kind, r.target)


def _score(name: str, kind: str, duration: float, p: float, fail_cost: float | None, source: str,
           runs: int) -> Estimate:
    fail = FAIL_FRACTION * duration if fail_cost is None else fail_cost
    cost = p * duration + (1 - p) * fail
    return Estimate(name, kind, duration, p, fail, cost, cost / p, source, runs)


def _due(st: Stats | None, build: int) -> bool:
    return st is None or (st.n == 0 and st.cens is None) or build - st.last_build >= st.backoff


def _never_measured(st: Stats | None) -> bool:
    """No success on this node since its script last changed (failures and probes
    stopped at their deadline say something, but no duration)."""
    return st is None or not st.n_ok
