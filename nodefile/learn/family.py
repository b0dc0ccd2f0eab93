"""Recipe families: the siblings running one script, command template or store share
a level (durations) and news (an outage, a recovery)."""
from __future__ import annotations

from ..records import field, record
from .stats import ALPHA, FINALS, SAMPLE, Stats


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

    def own_counts(self, st: Stats | None) -> tuple[int, int, int]:
        """The family's latest counts (successes, surprising failures, recoveries) without
        the node's own attempt, when that attempt is among them."""
        n_ok, sur, rec = self.n_ok, self.sur, self.rec
        if st is not None and st.n and st.last_build == self.build:
            if st.mark in ("ok", "rec"):
                n_ok -= 1
                rec -= st.mark == "rec"
            elif st.mark == "sur":
                sur -= 1
        return n_ok, sur, rec

    def siblings(self, st: Stats | None) -> str:
        n_ok = self.own_counts(st)[0]
        if n_ok > 0:
            return f"{n_ok} sibling{'s' * (n_ok != 1)} in build {self.build}"
        return f"siblings in build {self.build}"

    def news(self, p: float, st: Stats | None) -> tuple[float, str, bool]:
        """p adjusted by what the siblings saw since this node last tried the recipe:
        most of them failing where it usually works (an outage) caps p like a run of
        failures; a success after failures (a recovery) forgets this node's own run."""
        if self.build is None or (st is not None and st.n and st.last_build > self.build):
            return p, "", False  # the node's own news is newer
        n_ok, sur, rec = self.own_counts(st)
        if self.run >= 1 and n_ok == 0:
            # nobody succeeded since: like a run of failures of its own (its own ones are in it)
            return (min(p, 1.0 / (1 + self.run)),
                    f"failing for its siblings ({self.run} failure{'s' * (self.run != 1)} in a row"
                    f" up to build {self.build})", True)
        if rec >= 1 and rec >= sur and st is not None and st.streak:
            return (max(p, st.p_recovered),
                    f"working again for {rec} sibling{'s' * (rec != 1)} in build {self.build}", False)
        return p, "", False


def _cautious_median(xs: list) -> float:
    """The median; of an even count, the middle value nearer 0: the family moves only as
    far as most of its observations agree."""
    s = sorted(xs)
    n = len(s)
    if n % 2:
        return s[n // 2]
    a, b = s[n // 2 - 1], s[n // 2]
    return a if abs(a) <= abs(b) else b


@record(frozen=True)
class View:
    """A recipe on a node as its family sees it (None fields: no family to speak of)."""

    key: tuple[str, str]
    fam: Family | None = None
    active: bool = False  # has siblings: the family's level and news apply
    fresh: bool = False  # a sibling succeeded with it in this build or the last one
    cheap: bool = True  # may probe for the family: at most its median cost, or long unobserved
