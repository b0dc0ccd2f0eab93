"""`Learner`: the order of a node's recipes (with its probe) from the statistics, and
the observation of every attempt (the rules: the docstring of nodefile/learn/__init__.py)."""
from __future__ import annotations

import math

TYPE_CHECKING = False  # typing costs 3 ms at start-up; annotations are strings anyway
if TYPE_CHECKING:
    from typing import Callable, Iterable

from ..model import TRANSFER_KINDS
from ..records import replace
from ..report.console import fmt_seconds as _seconds  # the one duration format
from .choice import Choice, Estimate, Probe, bounded_probe, deadline_for, due, score
from .family import Family, View
from .stats import (BASE_BACKOFF, COLD_RUNS, DEFAULT, DEFAULT_DURATION, DEFAULT_SIZE, GUESSES, LEARNED,
                    MAX_BACKOFF, MIN_DURATION, PREVIOUS_SCRIPT, PROBE_FACTOR, PROBE_FLOOR, PROJECT_MEDIAN,
                    SHIFT_NOTE, SIBLINGS, START, START_DEFAULT, STRETCH, SURPRISE, TRANSFER_MODEL, VAR_CAP, WARM,
                    WARM_RUNS, RecipeLike, Stats)
from .store import Store, contribution


class Warm:
    """A recipe as it runs in a warm worker (a fork of a preloaded process). Its warm
    durations are not its cold ones, so its statistics - and its family's - are kept
    apart: under the recipe's name and target with WARM appended."""

    __slots__ = ("recipe",)

    def __init__(self, recipe: RecipeLike):
        self.recipe = recipe

    @property
    def name(self) -> str:
        return self.recipe.name + WARM

    @property
    def kind(self) -> str:
        return self.recipe.kind

    @property
    def target(self) -> str:
        return self.recipe.target + WARM


def _run_as(recipe: RecipeLike, warm: bool) -> RecipeLike:
    return Warm(recipe) if warm else recipe


def _orig(r: RecipeLike) -> RecipeLike:
    return r.recipe if isinstance(r, Warm) else r


class Learner(Store):
    """Recipe statistics on a SQLite connection; the choice of recipe order."""

    # -- choosing -------------------------------------------------------------------
    def choose(self, node: str, recipes: Iterable[RecipeLike], *,
               script_of: Callable[[RecipeLike], str | None] | None = None,
               size_of: Callable[[RecipeLike], int | None] | None = None,
               force_kind: str | None = None, probes: bool = True,
               warm_of: Callable[[RecipeLike], bool] | None = None) -> Choice:
        """The order to try `recipes` (given in Nodefile order) for a stale node.

        Registers the probe, if any, so that its observation adjusts its back-off
        (and so that no sibling probes the same recipe family in this build).
        `force_kind` (--recipe KIND) keeps only recipes of that kind or name, and
        never probes; nor does `probes=False` (--no-probe). `warm_of(recipe)`: will it
        run in a warm worker now (its warm statistics are used then); None: all cold.
        """
        choice, probe, family = self._rank(node, recipes, script_of, size_of, force_kind, probes, warm_of)
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
                 size_of: Callable[[RecipeLike], int | None] | None = None,
                 warm_of: Callable[[RecipeLike], bool] | None = None) -> Choice:
        """The order `choose` would give, without a probe and without registering anything."""
        return self._rank(node, recipes, script_of, size_of, None, False, warm_of)[0]

    def expected_duration(self, node: str, recipes: Iterable[RecipeLike], *,
                          script_of: Callable[[RecipeLike], str | None] | None = None,
                          size_of: Callable[[RecipeLike], int | None] | None = None,
                          warm_of: Callable[[RecipeLike], bool] | None = None) -> float:
        """The critical-path weight of a stale node: the expected chain cost of its order."""
        return self._rank(node, recipes, script_of, size_of, None, False, warm_of)[0].expected_duration

    def _rank(self, node, recipes, script_of, size_of, force_kind, probes=True, warm_of=None):
        """(choice, probe, family) in the names the caller knows (a warm recipe's own)."""
        choice, probe, family = self._rank_runs(node, recipes, script_of, size_of, force_kind, probes, warm_of)
        if not any(isinstance(r, Warm) for r in choice.recipes):
            return choice, probe, family
        name = {r.name: _orig(r).name for r in choice.recipes}
        choice = replace(choice, recipes=tuple(_orig(r) for r in choice.recipes),
                         estimates=tuple(replace(e, recipe=name[e.recipe]) for e in choice.estimates),
                         probe=name.get(choice.probe))
        return choice, probe if probe is None else replace(probe, recipe=name[probe.recipe]), family

    def _rank_runs(self, node, recipes, script_of, size_of, force_kind, probes, warm_of):
        self._load()
        recipes = list(recipes)
        if force_kind:
            recipes = [r for r in recipes if r.kind == force_kind or r.name == force_kind]
        build = self.build
        rows = []
        runs = []
        for r in recipes:
            script_hash = script_of(r) if script_of else None
            run = _run_as(r, bool(warm_of and warm_of(r)))
            runs.append(run)
            st = self._current(node, run, script_hash)
            view = self._view(node, run, st, build)
            est = self._estimate(node, run, st, size_of(r) if size_of else None, view, script_hash)
            rows.append((est, st, run, view))
        recipes = runs
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
        probe = None
        rows, family = self._outage_turn(node, rows)
        if force_kind is None and probes:
            bounded = bounded_probe(node, rows, build, {r.name: i for i, r in enumerate(recipes)})
            if bounded is not None:
                return bounded
        if force_kind is None and probes:
            for i in range(1, len(rows)):
                est, st, r, view = rows[i]
                rival = rows[0][0]  # the recipe it would displace: a probe runs first, or not at all
                if est.source in GUESSES:
                    continue  # never probe on a guess: that would be force-trying it
                if not (est.runs or rival.runs) or not due(st, build):
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
                    probe = Probe(r.name, rival.index)
                    family = view.key if view.active and not view.fresh else None
                    break
        deadline, why, basis = self._probe_deadline(rows, build) if probe is not None else (None, "", "")
        choice = Choice(node, tuple(r for _, _, r, _ in rows), tuple(e for e, _, _, _ in rows),
                        probe.recipe if probe else None, deadline, why, basis)
        return choice, probe, family

    def _current(self, node: str, r: RecipeLike, script_hash: str | None) -> Stats | None:
        """The node's statistics for r, reset (in memory) if its script changed."""
        st = self._node(node).get(r.name)
        if st is not None and _changed(st, r, script_hash):
            old = contribution(st)
            st = self._stats[node][r.name] = st.reset(r.kind, r.target, script_hash)
            self._update_lists(old, contribution(st))
        return st

    def _view(self, node: str, r: RecipeLike, st: Stats | None, build: int) -> View:
        key = (r.kind, r.target)
        fam = self._families.get(key)
        snap = self._snapshot()[2].get(key)
        if fam is None or snap is None:
            return View(key)
        own = st is not None and st.off is not None
        if snap.members - own < 1:
            return View(key, fam)  # no sibling: the node's own statistics say it all
        # siblings succeeded with it lately: the family's level is current
        fresh = fam.build is not None and fam.build >= build - 1 and fam.own_counts(st)[0] > 0
        long_unseen = fam.build is None or build - fam.build >= 2 * BASE_BACKOFF
        cheap = long_unseen or (own and fam.offset(st) <= snap.median_off)
        return View(key, fam, True, fresh, cheap)

    def _estimate(self, node: str, r: RecipeLike, st: Stats | None, size: int | None, view: View,
                  script_hash: str | None = None) -> Estimate:
        note = ""
        fam = view.fam if view.active else None
        other = self._other_way(node, r, script_hash)
        if st is not None and st.n_ok:
            duration, source = st.mean, LEARNED
            if fam is not None and st.off is not None:
                off = fam.offset(st)
                duration = math.exp(off + fam.level + min(st.off_var, VAR_CAP) / 2)
                shift = off + fam.level - st.mu
                if abs(shift) >= SHIFT_NOTE:
                    note = f"family shift ×{math.exp(shift):.1f} from {fam.siblings(st)}"
        elif st is not None and st.prior:
            duration, source = st.prior, PREVIOUS_SCRIPT
        elif other is not None:  # measured only the other way (warm / cold): better than a guess
            duration, source = other.mean, COLD_RUNS if isinstance(r, Warm) else WARM_RUNS
            if not isinstance(r, Warm):  # a cold run pays its start-up, which the warm ones did not
                start, learned = self._start_up(r.kind)
                duration += start
                note = f"+ {_seconds(start)} of {r.kind} start-up ({'learned' if learned else 'assumed'})"
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
            p, news, outage = fam.news(p, st)
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
        est = score(r.name, r.kind, duration, p, fail_cost, source, st.n if st is not None else 0)
        if note or floor:
            est = replace(est, note=note, floor=floor, raw=raw)
        return est

    def _start_up(self, kind: str) -> tuple[float, bool]:
        """(seconds a cold run of this recipe kind costs beyond a warm one, learned?)."""
        loc = self._locations.get((START, kind))
        return (loc.latency, True) if loc is not None and loc.n_lat else (START_DEFAULT, False)

    def _learn_start_up(self, node: str, r: RecipeLike, duration: float, script_hash: str | None) -> None:
        """A success of a recipe measured the other way too (warm and cold): the gap is
        its kind's start-up, an EWMA over such pairs (a location_stats row of kind START)."""
        other = self._other_way(node, r, script_hash)
        if other is None:
            return
        gap = other.mean - duration if isinstance(r, Warm) else duration - other.mean
        loc = self._location(START, r.kind)
        loc.record(max(MIN_DURATION, gap), 0)
        self._changed_location((START, r.kind), loc)

    def _other_way(self, node: str, r: RecipeLike, script_hash: str | None) -> Stats | None:
        """The statistics of the recipe's runs the other way (cold for a warm run, warm for
        a cold one), when they measured a success of the current script."""
        other = Warm(r) if not isinstance(r, Warm) else r.recipe
        st = self._node(node).get(other.name)
        if st is None or not st.n_ok or _changed(st, other, script_hash):
            return None
        return st

    def _outage_turn(self, node: str, rows) -> tuple[list, tuple[str, str] | None]:
        """The first recipe failing for its siblings (an outage): one node per build tries
        it again - the first to ask, which holds the family for the build - and the others
        put it behind the next recipe, to hear the answer before they pay a time-out too.
        Returns the rows, and the family this node holds (None: no outage, or not its turn)."""
        if len(rows) < 2:
            return rows, None
        est, st, r, view = rows[0]
        if not view.active or not view.fam.news(1.0, st)[2]:
            return rows, None
        holder = self._family_probes.get(view.key)
        if holder is None or holder == node:
            return rows, view.key
        waiting = (replace(est, note=f"{est.note}; {holder} tries it again this build"), st, r, view)
        return rows[1:2] + [waiting] + rows[2:], None

    def _probe_deadline(self, rows, build: int) -> tuple[float | None, str, str]:
        """A probe moved to the front (rows[0]): its deadline, why it runs, and how the
        deadline was set. Bounded by the recipes it displaced when those are measured, and
        by its own best when it was measured there: the question is "is it back?"."""
        est, st, r, view = rows[0]
        if r.kind in TRANSFER_KINDS:
            return None, "", ""
        deadline, basis = None, ""
        if rows[1][0].source == LEARNED:
            deadline, basis = deadline_for(PROBE_FACTOR, [x[0] for x in rows[1:]])
        back = self._back_deadline(st, view)
        if back is not None and (deadline is None or back < deadline):
            deadline, basis = back, f"{PROBE_FACTOR:g} × its best, {_seconds(back / PROBE_FACTOR)}"
        if deadline is None:
            return None, "", ""
        last = STRETCH * (st.last_ok if st is not None and st.last_ok else est.duration)
        if deadline < last < deadline + rows[1][0].duration:
            # as slow as last time, it would still cost less than being stopped and
            # replaced by the incumbent: let it finish
            deadline, basis = last, f"{STRETCH:g} × its last run, {_seconds(last / STRETCH)}"
        why = f"due again: {build - st.last_build} builds since its last run" if st and st.n else "due"
        return deadline, why, basis

    def _back_deadline(self, st: Stats | None, view: View) -> float | None:
        """A re-probe's deadline when the recipe was measured at its best (two successes or
        more): PROBE_FACTOR x that best (at least PROBE_FLOOR). Past it, it is not back."""
        if st is None or st.n_ok < 2 or st.mu_min is None:
            return None
        return max(PROBE_FLOOR, PROBE_FACTOR * math.exp(self._best_level(st, view)))

    def _best_level(self, st: Stats, view: View) -> float:
        """ln of the best duration the recipe reached on this node (at least one success):
        with siblings who succeeded with it lately, at the family's current level."""
        best = st.mu if st.mu_min is None else st.mu_min
        if view.active and st.off is not None:
            off = view.fam.offset(st)
            level = (off if st.off_min is None else min(off, st.off_min)) + view.fam.level
            best = level if view.fresh else min(best, level)
        return best

    def _best(self, est: Estimate, st: Stats | None, view: View) -> float:
        """What the recipe can do (the plausibility of a probe): its best level / p, or its
        prior D if never observed; p as if a run of failures were over. With siblings who
        succeeded with it lately, at the family's current level; otherwise optimistic: a
        slow spell may be over."""
        if st is None or st.n == 0:
            return est.duration
        p = st.p_recovered  # what it can do: a recent run of failures (an outage) may be over
        if st.n_ok:
            return math.exp(self._best_level(st, view)) / p
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

    # -- observing ------------------------------------------------------------------
    def observe(self, node: str, recipe: RecipeLike, ok: bool, duration: float, *,
                script_hash: str | None = None, size: int | None = None, censored: bool = False,
                warm: bool = False) -> None:
        """Record one finished attempt (success or failure). Its rows (statistics,
        family, location) are written at the next flush(): the build's group commit,
        and end_build. (A probe's row is written at once.)

        `size`: bytes of the artifact (transferred, or written by a rebuild).
        `censored`: a bounded probe stopped at its deadline `duration`: the recipe is
        slower than that (neither a success nor a failure).
        `warm`: it ran in a warm worker (`Finished.warm`): its warm statistics learn it.
        Cancelled attempts (interrupted, inputs changed) should not be observed.
        """
        self._load()
        name = recipe.name  # the probe registered for the node names the recipe, run either way
        recipe = _run_as(recipe, warm)
        if censored:
            self._censored(node, recipe, duration, script_hash, name)
            return
        build = self._commit_build()
        self.observations += 1
        recipes = self._node(node)
        st = recipes.get(recipe.name)
        before = contribution(st)
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
        was_failing = st.streak > 0 or (ok and fam.news(1.0, st)[2])
        st.record(ok, duration, build, size)
        if ok:
            self._learn_start_up(node, recipe, duration, script_hash)
        probe = self._probes.get(node)
        probed = None
        if probe is not None and probe.recipe == name:
            del self._probes[node]
            if ok:
                # a probe exists because this recipe's history is stale: its fresh
                # measurement replaces the old level and its uncertainty
                st.mu, st.var = math.log(max(duration, MIN_DURATION)), 0.0
            better = ok and (duration < probe.rival_index or score(
                recipe.name, recipe.kind, st.mean, st.p, st.fail_cost, LEARNED, st.n).index < probe.rival_index)
            st.backoff = BASE_BACKOFF if better else min(MAX_BACKOFF, max(BASE_BACKOFF, 2 * st.backoff))
            probed = (build, node, name, int(ok), duration, int(better))
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
        self._update_lists(before, contribution(st))
        location = None
        if recipe.kind in TRANSFER_KINDS and ok and size:
            location = self._location(recipe.kind, recipe.target)
            location.record(duration, size)
        self._write(node, recipe, st, location, fam, probed)

    def _censored(self, node: str, recipe: RecipeLike, deadline: float, script_hash: str | None,
                  name: str) -> None:
        build = self._commit_build()
        self.observations += 1
        recipes = self._node(node)
        st = recipes.get(recipe.name)
        before = contribution(st)
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
        probed = (build, node, name, 0, deadline, 0) if probe is not None and probe.recipe == name else None
        self._update_lists(before, contribution(st))
        key = (recipe.kind, recipe.target)
        fam = self._families.get(key)
        if fam is None:
            fam = self._families[key] = Family()
        self._write(node, recipe, st, None, fam, probed)

    # -- reading --------------------------------------------------------------------
    def stats(self, node: str, recipe: str, warm: bool = False) -> Stats | None:
        """What is known of the recipe named `recipe` on the node: of its warm runs, or cold."""
        self._load()
        return self._node(node).get(recipe + WARM if warm else recipe)

    def family(self, kind: str, target: str) -> Family | None:
        """The family of recipes of this kind running this script, command or store."""
        self._load()
        return self._families.get((kind, target))


def _changed(st: Stats, r: RecipeLike, script_hash: str | None) -> bool:
    """Did the recipe change under its name: another script hash, kind or target."""
    return (bool(script_hash) and bool(st.script_hash) and script_hash != st.script_hash) \
        or (st.kind, st.target) != (r.kind, r.target)

