"""The build loop: fill slots by priority and resources, wait for one, repeat.

It knows nothing of hashing or recipes. A `runner` supplies:
  decide(name)            -> a Spec to run, or a NodeResult (up to date, failed...)
  finished(name, spec, f) -> the next Spec (another recipe, a retry) or a NodeResult
  started(spec), done(result), tick(running, done, total)  (progress)
and an executor (executors/base.py: Executor) runs the Specs.
"""
from __future__ import annotations

import heapq
import time

from .model import NodeResult, Outcome

LOOKAHEAD = 32  # how far past a blocked head the dispatcher looks for work that fits


class Scheduler:
    def __init__(self, order, deps, priority, limits, executor, runner, keep_going=False,
                 tick_every=0.5):
        self.order = list(order)
        self.index = {n: i for i, n in enumerate(self.order)}
        self.deps = deps  # name -> iterable of dependency names (within order)
        self.priority = priority  # name -> sortable tuple, larger first
        self.limits = limits
        self.executor = executor
        self.runner = runner
        self.keep_going = keep_going
        self.tick_every = tick_every
        self.results: dict[str, NodeResult] = {}
        self.causes: dict[str, str] = {}  # a skipped node -> the failure upstream ("fit failed")
        self.stopped = False

    def _why_skipped(self, name: str, dep: str) -> str:
        """Why `name`, whose input `dep` was not built, is skipped: dep failed, was
        cancelled, or was itself skipped (then the failure upstream that began it)."""
        outcome = self.results[dep].outcome
        if outcome is Outcome.SKIPPED:
            self.causes[name] = self.causes.get(dep, "")
            return f"needs {dep}, which was skipped" + (f" ({self.causes[name]})" if self.causes[name] else "")
        what = "failed" if outcome is Outcome.FAILED else "was cancelled"
        self.causes[name] = f"{dep} {what}"
        return f"needs {dep}, which {what}"

    def run(self) -> dict[str, NodeResult]:
        waiting = {n: 0 for n in self.order}
        users: dict[str, list[str]] = {n: [] for n in self.order}
        for n in self.order:
            for d in self.deps[n]:
                if d in waiting:
                    waiting[n] += 1
                    users[d].append(n)
        ready = [n for n in self.order if waiting[n] == 0]
        queue: list = []  # (priority key, index, name, spec, the resources it needs)
        kinds: dict[frozenset, int] = {}  # queued specs by the resources they need

        def push(item) -> None:
            if len(item) == 4:
                item += (_needs(item[3]),)
            heapq.heappush(queue, item)
            sig = item[4]
            kinds[sig] = kinds.get(sig, 0) + 1

        def pop():
            item = heapq.heappop(queue)
            sig = item[4]
            kinds[sig] -= 1
            if not kinds[sig]:
                del kinds[sig]
            return item
        running: dict = {}  # handle -> (name, spec)
        used: dict[str, float] = {}
        total = len(self.order)

        def settle(name: str, result: NodeResult) -> None:
            self.results[name] = result
            self.runner.done(result)
            if result.outcome is Outcome.FAILED and not self.keep_going:
                self.stopped = True
                for h in taken:  # successors not started yet never start
                    self.executor.withdraw(h)
            for u in users[name]:
                waiting[u] -= 1
                if waiting[u] == 0:
                    ready.append(u)

        def launch(name, spec) -> None:
            handle = self.executor.submit(spec)
            for k, v in spec.resources.items():
                used[k] = used.get(k, 0.0) + v
            running[handle] = (name, spec)
            self.runner.started(spec)

        def fits(spec) -> bool:
            if not running:
                return True  # never deadlock on a request that equals the whole machine
            return all(used.get(k, 0.0) + v <= self.limits.get(k, float("inf")) + 1e-9
                       for k, v in spec.resources.items())

        refresh = getattr(self.runner, "refresh", None)  # a last look at the order before starting

        def refreshed(item):
            """The queued item as it would start now (runner.refresh may order its recipes
            again), or None when that settled the node."""
            if refresh is None:
                return item
            fresh = refresh(item[2], item[3])
            if isinstance(fresh, NodeResult):
                settle(item[2], fresh)
                return None
            return item if fresh is item[3] else item[:3] + (fresh, _needs(fresh))

        def dispatch() -> None:
            """Launch queued specs by priority while they fit."""
            skipped = []
            blocked: set[str] = set()
            while queue and len(skipped) < LOOKAHEAD:
                if blocked and all(sig & blocked for sig in kinds):
                    break  # everything queued waits for a resource in use
                item = refreshed(pop())
                if item is None:
                    continue
                spec = item[3]
                if not (item[4] & blocked) and fits(spec):
                    launch(item[2], spec)
                else:
                    # wait for this one's resources, but let nodes that need none of
                    # them go ahead (a node waiting for a GPU must not idle the CPUs)
                    skipped.append(item)
                    blocked |= {k for k, v in spec.resources.items()
                                if used.get(k, 0.0) + v > self.limits.get(k, float("inf")) + 1e-9}
            for it in skipped:
                push(it)
            if queue and chains and not self.stopped:
                chain()

        chains = self.executor.offer().successors  # submit_after may accept: worth asking
        submit_after = self.executor.submit_after
        successor: dict = {}  # handle -> the handle that takes its place (and resources) when it ends
        taken: set = set()  # handles of successors, not started until the one before ends

        def chain() -> None:
            """Give each running process that has none a successor: the best queued spec
            if it needs exactly the same resources. The executor starts it the moment
            that process ends, without waiting for this loop (see submit_after)."""
            for handle, (name, spec) in list(running.items()):
                if not queue:
                    return
                if handle in successor or handle in taken:
                    continue
                item = queue[0]
                if item[3].resources != spec.resources:
                    continue  # (the executor says which specs and processes can be chained)
                popped = pop()
                item = refreshed(popped)
                if item is None:
                    continue
                if item is not popped:
                    push(item)
                    continue  # re-ordered: it waits for its turn like any other
                nxt = item[3]
                h = submit_after(nxt, handle)
                if h is None:
                    push(item)
                    continue
                successor[handle] = h
                taken.add(h)
                running[h] = (item[2], nxt)  # runner.started() when it starts

        # Decide at most `batch` ready nodes before starting what is queued: the rest are
        # decided while those run (1,000 ready nodes take ~0.25 s to decide).
        batch = max(8, 2 * int(self.limits.get("cores", 1)))
        last_tick = 0.0
        while ready or queue or running:
            decided = 0
            while ready:
                if decided >= batch and queue and not self.stopped:
                    break
                decided += 1
                name = ready.pop()
                failed = [d for d in self.deps[name] if d in self.results
                          and self.results[d].outcome in (Outcome.FAILED, Outcome.SKIPPED, Outcome.CANCELLED)]
                if failed:
                    settle(name, NodeResult(name, Outcome.SKIPPED, message=self._why_skipped(name, failed[0])))
                    continue
                if self.stopped:
                    continue
                r = self.runner.decide(name)
                if isinstance(r, NodeResult):
                    settle(name, r)
                else:
                    push((self.priority(name), self.index[name], name, r))
            if not self.stopped:
                dispatch()
            elif queue and not running:
                queue.clear()
                kinds.clear()
            if not running:
                if queue and not self.stopped:
                    continue
                if not ready:
                    break
                continue
            now = time.monotonic()
            timeout = 0.0 if ready else max(0.0, self.tick_every - (now - last_tick))
            ended = []
            for fin in self.executor.wait(timeout):
                name, spec = running.pop(fin.handle)
                if fin.handle in taken:  # a successor that never started: it held no resources
                    taken.discard(fin.handle)
                    for k in [k for k, v in successor.items() if v == fin.handle]:
                        del successor[k]
                    if self.stopped:
                        continue  # as if never handed over (skipped)
                    if fin.cancelled:
                        ended.append((fin, name, spec))  # its inputs changed: the runner decides it again
                    else:  # held back after the recipe before it failed: queued again as it was
                        push((self.priority(name), self.index[name], name, spec))
                    continue
                nxt = successor.pop(fin.handle, None)
                if nxt is not None and nxt in running and fin.exit_code == 0:
                    taken.discard(nxt)  # started in its place: it holds these resources now
                    self.runner.started(running[nxt][1])
                else:
                    for k, v in spec.resources.items():
                        used[k] -= v
                ended.append((fin, name, spec))
            if ended and not self.stopped and all(_clean(f) for f, _, _ in ended):
                dispatch()  # start the next recipes first: they run while these are recorded
            for fin, name, spec in ended:
                nxt = self.runner.finished(name, spec, fin)
                if nxt is None:
                    continue  # the node settled elsewhere
                if isinstance(nxt, NodeResult):
                    settle(name, nxt)
                elif self.stopped:
                    settle(name, NodeResult(name, Outcome.FAILED, message="build stopped"))
                else:
                    push((self.priority(name), self.index[name], name, nxt))
            should_cancel = getattr(self.runner, "should_cancel", None)
            if should_cancel is not None:
                for handle, (name, spec) in list(running.items()):
                    if should_cancel(spec):
                        self.executor.cancel(handle)
            now = time.monotonic()
            if now - last_tick >= self.tick_every:
                last_tick = now
                self.runner.tick([s for h, (_, s) in running.items() if h not in taken], len(self.results), total)
        return self.results


def _needs(spec) -> frozenset:
    """The resources a spec takes some of (what can make it wait)."""
    return frozenset(k for k, v in spec.resources.items() if v > 0)


def _clean(fin) -> bool:
    """Did the attempt end well, as far as its exit says (outputs are checked after)?"""
    return fin.exit_code == 0 and not fin.error and not fin.cancelled and not fin.timed_out
