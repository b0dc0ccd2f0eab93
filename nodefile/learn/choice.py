"""The choice of recipe order: what one recipe is expected to cost (`Estimate`), the
order with its probe (`Choice`), the chain's cost, and the bounded probe."""
from __future__ import annotations

TYPE_CHECKING = False  # typing costs 3 ms at start-up; annotations are strings anyway
if TYPE_CHECKING:
    from typing import Iterable

from ..model import TRANSFER_KINDS
from ..records import record, replace
from ..report.console import fmt_seconds as _seconds  # the one duration format
from .stats import FAIL_FRACTION, GUESSES, LEARNED, PROBE_FACTOR, PROBE_FLOOR, Stats


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
    basis: str = ""  # how the deadline was set: "1.5 × slow's expected 1.0s"

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
        return expected(self.estimates)

    def explain(self) -> list[str]:
        """Lines for `node explain`: the choice, then every recipe's estimate."""
        if not self.estimates:
            return [f"{self.node}: no recipe to try"]
        first, rest = self.estimates[0], self.estimates[1:]
        if self.deadline is not None and rest:
            inc = rest[0]
            head = (f"{first.recipe} probed first ({self.why}), deadline {_seconds(self.deadline)} = "
                    f"{self.basis}; past it, it is stopped and {inc.recipe} runs")
            return [head] + [f"  {i}. {e}" for i, e in enumerate(self.estimates, 1)]
        head = f"{first.recipe} chosen: {first.shown} est."
        if rest:
            head += " vs " + ", ".join(f"{e.recipe} {e.shown}" for e in rest)
        if self.probe:
            head += f" ({self.probe} re-measured this build)"
        return [head] + [f"  {i}. {e}" for i, e in enumerate(self.estimates, 1)]


def expected(estimates) -> float:
    """Expected time until a recipe of the chain succeeds (given that one does)."""
    fail_all = 1.0
    for e in estimates:
        fail_all *= 1.0 - e.p
    return chain_cost(estimates) / max(1e-6, 1.0 - fail_all)


def deadline_for(factor: float, rest) -> tuple[float, str]:
    """A probe's deadline: factor x the expected time to make the node without it - the
    chain `rest` of recipes it goes ahead of, the last one taken to succeed: the
    incumbent's D when that is the only one, more when it may fail and the next one
    would run - and at least PROBE_FLOOR; with the words for `explain`."""
    basis, reach = 0.0, 1.0
    for e in rest[:-1]:
        basis += reach * e.cost
        reach *= 1.0 - e.p
    basis += reach * rest[-1].duration
    deadline = max(PROBE_FLOOR, factor * basis)
    inc = rest[0]
    if abs(basis - inc.duration) <= 0.02 * inc.duration:
        what = f"{factor:g} × {inc.recipe}'s expected {_seconds(inc.duration)}"
    else:
        what = (f"{factor:g} × {_seconds(basis)}, the expected time without it ("
                + ", then ".join(e.recipe for e in rest) + ")")
    if deadline <= PROBE_FLOOR + 1e-9:
        what += f" (at least {_seconds(PROBE_FLOOR)})"
    return deadline, what


def chain_cost(estimates: Iterable[Estimate]) -> float:
    """Expected time to get a success (or exhaust the chain): sum reach_i * c_i."""
    total, reach = 0.0, 1.0
    for e in estimates:
        total += reach * e.cost
        reach *= 1.0 - e.p
    return total


@record(frozen=True)
class Probe:
    """The probe registered for a node this build: its observation sets the back-off."""

    recipe: str
    rival_index: float


def score(name: str, kind: str, duration: float, p: float, fail_cost: float | None, source: str,
          runs: int) -> Estimate:
    fail = FAIL_FRACTION * duration if fail_cost is None else fail_cost
    cost = p * duration + (1 - p) * fail
    return Estimate(name, kind, duration, p, fail, cost, cost / p, source, runs)


def due(st: Stats | None, build: int) -> bool:
    return st is None or (st.n == 0 and st.cens is None) or build - st.last_build >= st.backoff


def _never_measured(st: Stats | None) -> bool:
    """No success on this node since its script last changed (failures and probes
    stopped at their deadline say something, but no duration)."""
    return st is None or not st.n_ok


def bounded_probe(node, rows, build, pos):
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
    for i in sorted(range(1, len(rows)), key=lambda i: pos[rows[i][2].name]):
        est, st, r, _ = rows[i]
        if r.kind in TRANSFER_KINDS or not _never_measured(st) or not due(st, build):
            continue
        if st is not None and st.n and st.cens is None and est.source not in GUESSES:
            continue  # it failed here: the plausibility rule below decides whether to try it again
        # (failed here, with nothing but a guess of its duration - a store empty at first -:
        # no rule would ever try it again, so it is probed, bounded, when due: 4, 8, 16 builds)
        deadline, basis = deadline_for(PROBE_FACTOR, [x[0] for x in rows[:i] + rows[i + 1:]])
        raw = est.raw if est.raw is not None else est.duration
        if est.source not in GUESSES and raw >= deadline:
            continue  # its siblings (or its previous script) say it is slower than the deadline
        if st is None or st.n == 0 and st.cens is None:
            why = "never measured"
        elif st.cens is None:
            why = f"failed here, never measured: due again {build - st.last_build} builds after its last run"
        else:
            why = f"due again: {build - st.last_build} builds after its last probe"
        rows = [rows[i]] + rows[:i] + rows[i + 1:]
        rows[0] = (replace(est, probe=True),) + rows[0][1:]
        choice = Choice(node, tuple(x[2] for x in rows), tuple(x[0] for x in rows), r.name, deadline, why, basis)
        return choice, Probe(r.name, inc.index), None
    return None
