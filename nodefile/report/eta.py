"""The time a build has left, from learned durations (SPEC §5): the longer of

  * the remaining critical path: the longest chain of nodes not done yet, each
    weighing its expected duration (a running node: what is left of it), and
  * the remaining work over the slots: the sum of those weights / -j,

the lower bound `max(critical path, total work / N)` of any schedule, applied to
what is left. Nodes not decided yet (their inputs are still being made) count as
stale: that is what a changed input usually makes them. A node whose duration
was never measured weighs nothing and makes the result a lower bound ("≥");
with nothing measured at all the ETA is unknown.
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable


class Eta:
    """What is left of one build. `weight(name) -> (seconds, known)` is asked once per
    node while it is undecided and again once it is decided (`decided(name)`)."""

    def __init__(self, order, deps: dict, weight: Callable[[str], tuple[float, bool]], slots: float):
        self.order = order
        self.deps = deps
        self.weight = weight
        self.slots = max(1.0, float(slots))
        self.done: set[str] = set()
        self._w: dict[str, tuple[float, bool]] = {}
        self._users: dict[str, list[str]] | None = None  # made at the first tick: a no-op build never ticks

    @property
    def users(self) -> dict[str, list[str]]:
        if self._users is None:
            self._users = {n: [] for n in self.order}
            for n in self.order:
                for d in self.deps.get(n, ()):
                    if d in self._users:
                        self._users[d].append(n)
        return self._users

    def settle(self, name: str) -> None:
        """The node is done (built, up to date, failed or skipped): nothing left of it."""
        self.done.add(name)

    def decided(self, name: str) -> None:
        """Its recipes were ordered: ask its weight again (the chosen order knows more)."""
        self._w.pop(name, None)

    def _weight(self, name: str) -> tuple[float, bool]:
        w = self._w.get(name)
        if w is None:
            w = self._w[name] = self.weight(name)
        return w

    def left(self, running: dict[str, float]) -> tuple[float | None, bool]:
        """(seconds left, every weight known) given the running nodes' elapsed seconds;
        (None, False) when nothing left is measured."""
        users = self.users
        level: dict[str, float] = {}
        work = 0.0
        known = True
        any_known = False
        for n in reversed(self.order):
            if n in self.done:
                continue
            seconds, sure = self._weight(n)
            if sure:
                any_known = True
            else:
                known, seconds = False, 0.0
            if n in running:
                seconds = max(0.0, seconds - running[n])
            work += seconds
            level[n] = seconds + max((level[u] for u in users[n] if u in level), default=0.0)
        if not level:
            return 0.0, True
        if not any_known:
            return None, False
        return max(max(level.values()), work / self.slots), known
