"""Recipe statistics, the choice of recipe order, and duration estimates.

A stale node has a chain of equivalent recipes (the local cache `load`, `fetch`
from a store, one or more rebuild recipes). Trying them in order until one
succeeds costs  sum_i reach_i * c_i  with  reach_i = prod_{j<i} (1 - p_j), where
p is a recipe's success probability, D its duration when it succeeds, F the time
it takes to fail, and c = p*D + (1-p)*F the expected cost of one attempt. The
order minimising that is ascending c/p (adjacent-interchange argument; Mitten
1960, Simon & Kadane 1975). This package learns p, D and F per (node, recipe),
estimates them for recipes never run, and orders the chain deterministically.

Statistics per (node, recipe name), updated by every attempt (`Stats.record`):

  mu, var      EWMA of ln(duration) of successes, a = max(0.3, 1/n_ok), and of
               its squared deviation: var = (1-a)(var + a*d^2). The mean is
               D = exp(mu + min(var, 0.5)/2) (the cap keeps a regime jump sane).
               A JUMP - a sample more than twice (or less than half) D, and beyond
               twice its usual spread (|d| > max(ln 2, 2 sqrt(var))) - is a regime
               change (a slow store, a faster machine): a = 0.7, believed after one
               build instead of three. (The node's family offset learns the same way.)
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
               its failure at the outage's time to fail; when it would still come
               first, only the first node that asks in a build tries it (and holds
               the family for the build); the others put it behind their next recipe
               ("raw_b tries it again this build");
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
  "its cold runs"            a recipe about to run warm, measured only cold (their
                             mean: an upper bound);
  "its warm runs"            a recipe about to run cold, measured only warm: their
                             mean plus the start-up of its kind, an EWMA of (cold -
                             warm) over successes of recipes measured both ways
                             (location_stats kind "start"), 50 ms until one is seen;
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
     deadline T = max(PROBE_FLOOR 0.1 s, PROBE_FACTOR 1.5 x E), E the expected
     time to make the node without the probe: the recipes it goes ahead of, the
     last taken to succeed (sum reach_i c_i, then reach x D of the last) - D(I)
     when I is the only one; more when I may fail and the next would run (a
     flaky store before a 1-hour rebuild: a 10-minute alternative is worth
     finishing, `explain` says "1.5 × 12m, the expected time without it (fetch,
     then python)"). Past T the
     runner stops its process group, moves its partial outputs aside as a failed
     attempt's, records the attempt as "stopped" and observes it as censored
     (`observe(..., censored=True)`), then runs I. So a probe costs at most T,
     and a faster recipe is found in the build after the incumbent was measured.
     A recipe whose non-guess estimate (siblings, previous script) is >= T, or
     that failed here and has such an estimate, is left to the rule below; one
     that failed here with nothing but a guess of its duration (a fetch from a
     store still empty in the project's first build) is probed so when due -
     4, 8, 16 ... builds after its last run - since no other rule would ever
     try it again. No deadline is ever set from
     a guess: with nothing measured, the Nodefile order runs.
  3. otherwise, the plausibility rule: walking the order from position 2, move
     recipe r to the front, ahead of the first recipe q, when r is DUE
     (build - last_build >= backoff, or never observed) and PLAUSIBLE (its best,
     exp(mu_min)/p - or its prior D if never observed - is below q's index).
     (Moved only one place, behind a recipe that succeeds, a probe would never
     run, and would hold its family's probe for the build.) Two recipes never
     observed are not swapped: a tie of two guesses is no reason to try the
     second one. When r is a process and q's D is learned, r gets the deadline T
     too (E from the recipes behind it). When r was measured at its best (two
     successes or more), its deadline is at most B = max(PROBE_FLOOR, 1.5 x
     exp(best)), its best as the plausibility rule reads it: the re-probe asks
     "is it back?", and back at its best it is done by B - a store slow for a
     while is re-checked for 1.5 x its usual time, not 1.5 x the rebuild's
     (B alone when q's D is not learned). Either is raised to STRETCH 1.2 x r's
     last success L when T < 1.2 L < T + D(q): as slow as last time, finishing
     it costs less than being stopped and replaced by q.
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
Its deadline: T = 1.5 x 5.0 = 7.5 s, and B = 1.5 x 3 = 4.5 s is lower: back at
its best it is done by 4.5 s; its last run, 60 s, is above 4.5 + 5.0, so a
re-probe that finds it still slow is stopped at 4.5 s, and fetch runs. (Had its
last run taken 7 s, 1.2 x 7 = 8.4 s < 9.5 s: it would be let finish.)

Bounded probe. Node `model` with recipes slow (learned D = 1.0 s) and fast
(never run; "project median" 1.0 s, shown "unknown"): build 2 runs fast first
with T = max(0.1, 1.5 x 1.0) = 1.5 s (`node explain`: "fast probed first (never
measured), deadline 1.5s = 1.5 × slow's expected 1.0s"). It takes 0.2 s: learned,
index 0.2 < 1.0, chosen from then on. Had it needed 5 s, it would have been
stopped at 1.5 s ("fast: ≥1.5s ... a probe was stopped at its 1.5s deadline in
build 2"), slow would have run (build cost 2.5 s), and fast would be tried again
4 builds later, then 8, 16 ... (each time at most 1.5 s).

Warm and cold runs (issue 20). A python or r recipe may run in a warm worker (a fork
of a preloaded process: no interpreter start, no imports) or cold; the two take
different times, so the learner keeps them apart: `observe(..., warm=True)` records a
warm run under the recipe's name and target with " (warm)" appended (its own
statistics and its own family), and `choose`/`estimate` take `warm_of(recipe)`: will it
run warm now (a worker serves its language; not with --cold, `warm = false`, or a
language whose worker could not start). A recipe measured only the other way is
estimated from those runs (source "its cold runs" / "its warm runs": a bound more
than a guess, and shown) until measured the way it runs now; a cold first build
(workers still starting) does not inflate the warm estimate, and --cold runs do not
move it.

API
---
    learner = Learner(db)            # a sqlite3 connection; reads nothing yet
    learner.begin_build()            # a new build (watch mode: once per rebuild)
    choice = learner.choose(node, recipes, script_of=..., size_of=..., force_kind=None, probes=True,
                            warm_of=None)
    choice.recipes / .order / .estimates / .probe / .deadline / .why / .basis / .expected_duration / .known
    choice.explain()
    learner.observe(node, recipe, ok, duration, script_hash=None, size=None, censored=False, warm=False)
    learner.estimate(node, recipes, ...)            # the same order, no probe registered
    learner.expected_duration(node, recipes, ...)   # its expected_duration
    learner.stats(node, recipe_name, warm=False) -> Stats | None
    learner.family(kind, target) -> Family | None   # what a recipe's siblings share
    learner.probes() -> [(build, node, recipe, ok, duration, better), ...]
    learner.build                    # the current build number

`recipes` are objects with `.name`, `.kind` ('python', 'r', 'shell', 'call',
'fetch', 'load') and `.target` (script path, command, store name): model.Recipe
fits. `script_of(recipe)` returns the current hash of its script (or None);
`size_of(recipe)` the artifact size in bytes for a transfer (or None).

Storage and cost: tables recipe_stats(node, recipe, data) (a warm run's row under
"NAME (warm)"; rows written before warm and cold were kept apart load as cold), location_stats(kind,
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
    force_kind=options.recipe_kind, warm_of=session.warm_of(options))`; run
    `choice.recipes` in order.
    `size_of` is optional: pass it only when a manifest is already at hand
    (otherwise the node's last artifact size stands in).
  * after every attempt - success or failure, transfers and "unavailable"
    included, each retry too, but not cancelled ones: `learner.observe(node,
    recipe, ok, duration, script_hash=..., size=bytes, warm=fin.warm)`. It is one transaction
    (~0.15 ms here); inside a transaction already open on the same connection it
    only adds its rows to it.
  * critical path: weight(n) = `learner.estimate(n, nodes[n].recipes, warm_of=...)
    .expected_duration` for graph.bottom_levels, computed on the first priority()
    call so that a no-op build never loads anything; the same (with `.known`)
    weighs the nodes of the reporter's ETA (report/eta.py).
  * a bounded probe (`choice.deadline` set, `choice.probe` first): the runner
    gives that attempt the deadline as its timeout; stopped, it is recorded as
    outcome "stopped" and observed with censored=True and duration = the deadline.
  * explain / dry run: `choose()` only reads, and works on a database without
    the tables; `choice.explain()` gives the lines to print.

Modules: `stats` (the per-recipe and per-location statistics, the tunables),
`family` (recipe families: a shared level, outage and recovery news), `choice`
(`Estimate`, `Choice`, the cost of a chain, the bounded probe), `store` (the
tables on the state's connection, lazy loading, the project-wide medians) and
`learner` (`Learner`: choose and observe).
"""
from __future__ import annotations

from .choice import Choice, Estimate, chain_cost, show_duration
from .family import Family
from .learner import Learner
from .stats import (DEFAULT, GUESSES, LEARNED, PREVIOUS_SCRIPT, PROBE_FACTOR, PROBE_FLOOR, PROJECT_MEDIAN,
                    SIBLINGS, TRANSFER_MODEL, Location, RecipeLike, Stats)

__all__ = ["Choice", "DEFAULT", "Estimate", "Family", "GUESSES", "LEARNED", "Learner", "Location",
           "PREVIOUS_SCRIPT", "PROBE_FACTOR", "PROBE_FLOOR", "PROJECT_MEDIAN", "RecipeLike", "SIBLINGS",
           "Stats", "TRANSFER_MODEL", "chain_cost", "show_duration"]
