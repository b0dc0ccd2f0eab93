"""Per-recipe and per-location statistics, and the learner's tunables (the rules:
the docstring of nodefile/learn/__init__.py)."""
from __future__ import annotations

import math

from ..records import record

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
COLD_RUNS = "its cold runs"  # a recipe about to run warm, measured only cold (an upper bound, roughly)
WARM_RUNS = "its warm runs"  # a recipe about to run cold, measured only warm (a lower bound, roughly)
WARM = " (warm)"  # a recipe's warm runs are kept under its name and target with this appended
START = "start"  # location_stats kind of a recipe kind's start-up: what a cold run costs beyond a warm one
START_DEFAULT = 0.05  # seconds: that start-up before a recipe of the kind was measured both ways
STREAK = 2  # consecutive failures after which p is capped at 1 / (streak + 1)
SAMPLE = 31  # residuals a family keeps per build for its median (constant work per observation)
FINALS = MAX_BACKOFF + 8  # builds whose final family level is kept (to settle a member's offset)
SURPRISE = 0.5  # a failure of a recipe whose long-run p was at least this is news for its siblings
SHIFT_NOTE = math.log(1.25)  # a family shift at least this large is named in `explain`
PROBE_FACTOR = 1.5  # a bounded probe's deadline: this times the incumbent's expected duration ...
PROBE_FLOOR = 0.1  # ... and never less than this many seconds (a process takes some to start)
JUMP = math.log(2)  # a success more than twice (or less than half) its recipe's usual duration ...
JUMP_ALPHA = 0.7  # ... moves the EWMA this far at once: a regime change is believed after one sample
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
    """What is known of one recipe on one node (see the package docstring)."""

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
            d = math.log(duration) - self.mu
            a = _weight(d, self.var, self.n_ok)
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
            d = x - self.off
            a = _weight(d, self.off_var, self.n_ok)
            self.off += a * d
            self.off_var = (1 - a) * (self.off_var + a * d * d)
        if self.n_ok >= 2:
            self.off_min = self.off if self.off_min is None else min(self.off_min, self.off)

    def reset(self, kind: str, target: str, script_hash: str | None) -> Stats:
        """Fresh statistics after a script change: the old mean stays as a prior, due now."""
        prior = self.mean if self.n_ok else self.prior
        return Stats(kind=kind, target=target, script_hash=script_hash, prior=prior, size=self.size, backoff=0)


def _weight(d: float, var: float, n: int) -> float:
    """The EWMA weight of a sample d away from the mean: max(ALPHA, 1/n), or JUMP_ALPHA
    when d is a jump (more than JUMP in ln, twice the usual spread): a regime change."""
    a = max(ALPHA, 1.0 / n)
    if abs(d) > max(JUMP, 2 * math.sqrt(var)):
        a = max(a, JUMP_ALPHA)
    return a


def _before_run(b_ok: float, b_fail: float, streak: int) -> tuple[float, float]:
    """The discounted counts as they were before the last `streak` attempts, all failures:
    each added 1 to b_fail after discounting both counts by GAMMA."""
    decay = GAMMA ** streak
    run = (1.0 - decay) / (1.0 - GAMMA)
    return b_ok / decay, max(0.0, b_fail - run) / decay


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
