"""The plan of a build: which nodes wait for which, and what an upstream node's fate
does to the nodes that need it.

One object for the build and for its previews. The build (scheduler.py) decides the
nodes in `ready`, and `settle`s each as it ends: its users whose inputs have all
settled become ready; a user of a node that failed, was cancelled or was skipped is
skipped (`skip_reason`). The previews (`node build -n`, `status`, `explain`, `graph`,
the report and the Python API's `status`) walk the same graph with `preview`: a node
whose input will be rebuilt is stale because of it.

Only the dependencies inside the plan count: a node whose inputs are all outside it
is ready at once. `order` is topological.
"""
from __future__ import annotations

from functools import cached_property

from .model import NodeResult, Outcome, Reason, ReasonKind, Status, Verdict

_NOT_BUILT = (Outcome.FAILED, Outcome.SKIPPED, Outcome.CANCELLED)
_INPUT_REASONS = (ReasonKind.INPUT_CHANGED, ReasonKind.INPUT_MISSING, ReasonKind.INPUT_ADDED)


class Plan:
    def __init__(self, order, deps):
        self.order = list(order)
        self.deps = deps  # name -> iterable of dependency names (those outside the plan are ignored)
        self.results: dict[str, NodeResult] = {}  # settled nodes
        self.causes: dict[str, str] = {}  # a skipped node -> the failure upstream ("fit failed")

    # The counts are made when a build first asks (a preview never does).
    @cached_property
    def users(self) -> dict[str, list[str]]:
        """name -> the nodes of the plan that need it, in plan order."""
        users: dict[str, list[str]] = {n: [] for n in self.order}
        for n in self.order:
            for d in self.deps[n]:
                if d in users:
                    users[d].append(n)
        return users

    @cached_property
    def waiting(self) -> dict[str, int]:
        """name -> how many of its dependencies have not settled yet."""
        users = self.users
        return {n: sum(1 for d in self.deps[n] if d in users) for n in self.order}

    @cached_property
    def ready(self) -> list[str]:
        """Nodes whose dependencies have all settled and that are not decided yet: a
        stack (the build takes the last one first); `settle` adds to it."""
        waiting = self.waiting
        return [n for n in self.order if waiting[n] == 0]

    def settle(self, name: str, result: NodeResult) -> list[str]:
        """`name` ended with `result`: the nodes that this made ready (added to `ready`)."""
        self.results[name] = result
        ready, waiting = self.ready, self.waiting  # (ready first: made from the counts before this)
        before = len(ready)
        for u in self.users[name]:
            waiting[u] -= 1
            if waiting[u] == 0:
                ready.append(u)
        return ready[before:]

    def skip_reason(self, name: str) -> str | None:
        """Why the ready node `name` is skipped (an input of it failed, was cancelled or
        was itself skipped: then the failure upstream that began it), or None."""
        results = self.results
        for dep in self.deps[name]:
            r = results.get(dep)
            if r is not None and r.outcome in _NOT_BUILT:
                return self._why_skipped(name, dep, r.outcome)
        return None

    def _why_skipped(self, name: str, dep: str, outcome: Outcome) -> str:
        if outcome is Outcome.SKIPPED:
            cause = self.causes[name] = self.causes.get(dep, "")
            return f"needs {dep}, which was skipped" + (f" ({cause})" if cause else "")
        what = "failed" if outcome is Outcome.FAILED else "was cancelled"
        self.causes[name] = f"{dep} {what}"
        return f"needs {dep}, which {what}"

    def preview(self, verdict_of) -> dict[str, Verdict]:
        """Verdicts for every node of the plan, in plan order, as a build would find
        them: a node whose input will be rebuilt is stale because of it (its own input
        reasons give way to that). verdict_of(name) -> the node's own Verdict, or None
        for an alias (stale exactly when something it names is)."""
        out: dict[str, Verdict] = {}
        deps = self.deps
        for n in self.order:
            v = verdict_of(n)
            up = [d for d in deps[n] if d in out and out[d].stale]
            if v is None:
                out[n] = Verdict(n, Status.STALE if up else Status.UP_TO_DATE,
                                 tuple(Reason(ReasonKind.UPSTREAM, d) for d in up))
                continue
            if up:
                reasons = tuple(r for r in v.reasons if r.kind not in _INPUT_REASONS)
                reasons = tuple(Reason(ReasonKind.UPSTREAM, d) for d in up) + reasons
                v = Verdict(n, Status.MISSING if v.status is Status.MISSING else Status.STALE, reasons, v.key)
            out[n] = v
        return out
