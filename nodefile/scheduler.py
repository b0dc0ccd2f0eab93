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
from typing import NamedTuple

from .model import NodeResult, Outcome
from .plan import Plan

LOOKAHEAD = 32  # how far past a blocked head the dispatcher looks for work that fits


class ResourcePool:
    """The resources of the machine (or cluster) and what running attempts hold of them."""
    __slots__ = ("limits", "used")

    def __init__(self, limits: dict):
        self.limits = limits
        self.used: dict[str, float] = {}

    def fits(self, resources: dict) -> bool:
        used, limits = self.used, self.limits
        return all(used.get(k, 0.0) + v <= limits.get(k, float("inf")) + 1e-9 for k, v in resources.items())

    def blocking(self, resources: dict) -> set[str]:
        """The resources of the request that are too short now."""
        used, limits = self.used, self.limits
        return {k for k, v in resources.items() if used.get(k, 0.0) + v > limits.get(k, float("inf")) + 1e-9}

    def take(self, resources: dict) -> None:
        used = self.used
        for k, v in resources.items():
            used[k] = used.get(k, 0.0) + v

    def give(self, resources: dict) -> None:
        used = self.used
        for k, v in resources.items():
            used[k] -= v


class Queued(NamedTuple):
    """A decided node waiting to start; the heap orders by `key` (priority, plan index),
    which is unique, so the other fields are never compared."""
    key: tuple
    name: str
    spec: object
    needs: frozenset  # the resources it takes some of (what can make it wait)


class Queue:
    """The decided nodes, best first, and how many need each set of resources."""
    __slots__ = ("heap", "kinds")

    def __init__(self):
        self.heap: list[Queued] = []
        self.kinds: dict[frozenset, int] = {}  # queued specs by the resources they need

    def __len__(self) -> int:
        return len(self.heap)

    def push(self, item: Queued) -> None:
        heapq.heappush(self.heap, item)
        self.kinds[item.needs] = self.kinds.get(item.needs, 0) + 1

    def pop(self) -> Queued:
        item = heapq.heappop(self.heap)
        kinds = self.kinds
        kinds[item.needs] -= 1
        if not kinds[item.needs]:
            del kinds[item.needs]
        return item

    def head(self) -> Queued:
        return self.heap[0]

    def waits_on(self, blocked: set) -> bool:
        """Does everything queued need one of the `blocked` resources?"""
        return all(sig & blocked for sig in self.kinds)

    def clear(self) -> None:
        self.heap.clear()
        self.kinds.clear()


def pick(queue: Queue, pool: ResourcePool, running, refreshed):
    """Queued items to start now, by priority while they fit; past a head that must wait,
    look up to LOOKAHEAD items further for one that needs none of the resources it waits
    for (a node waiting for a GPU must not idle the CPUs). A generator: the caller starts
    each item (taking its resources) before the next is picked. With nothing running,
    any request fits (never deadlock on one that equals the whole machine).
    refreshed(item) -> the item as it would start now, or None (it settled)."""
    skipped = []
    blocked: set[str] = set()
    while queue and len(skipped) < LOOKAHEAD:
        if blocked and queue.waits_on(blocked):
            break  # everything queued waits for a resource in use
        item = refreshed(queue.pop())
        if item is None:
            continue
        if not (item.needs & blocked) and (not running or pool.fits(item.spec.resources)):
            yield item
        else:
            skipped.append(item)
            blocked |= pool.blocking(item.spec.resources)
    for it in skipped:
        queue.push(it)


class Scheduler:
    def __init__(self, order, deps, priority, limits, executor, runner, keep_going=False,
                 tick_every=0.5):
        self.plan = Plan(order, deps)
        self.index = {n: i for i, n in enumerate(self.plan.order)}
        self.priority = priority  # name -> sortable tuple, larger first
        self.executor = executor
        self.runner = runner
        self.keep_going = keep_going
        self.tick_every = tick_every
        self.results: dict[str, NodeResult] = self.plan.results
        self.stopped = False
        self.pool = ResourcePool(limits)
        self.queue = Queue()
        self.running: dict = {}  # handle -> (name, spec)
        self.refresh = getattr(runner, "refresh", None)  # a last look at the order before starting
        self.should_cancel = getattr(runner, "should_cancel", None)
        self.chains = executor.offer().successors  # submit_after may accept: worth asking
        self.successor: dict = {}  # handle -> the handle that takes its place (and resources) when it ends
        self.taken: set = set()  # handles of successors, not started until the one before ends
        # Decide at most `batch` ready nodes before starting what is queued: the rest are
        # decided while those run (1,000 ready nodes take ~0.25 s to decide).
        self.batch = max(8, 2 * int(limits.get("cores", 1)))

    def run(self) -> dict[str, NodeResult]:
        ready, queue, running = self.plan.ready, self.queue, self.running
        last_tick = 0.0
        while ready or queue or running:
            self._decide(ready)
            if not self.stopped:
                self._dispatch()
            elif queue and not running:
                queue.clear()
            if not running:
                if (queue and not self.stopped) or ready:
                    continue
                break
            timeout = 0.0 if ready else max(0.0, self.tick_every - (time.monotonic() - last_tick))
            ended = self._ended(self.executor.wait(timeout))
            if ended and not self.stopped and all(_clean(f) for f, _, _ in ended):
                self._dispatch()  # start the next recipes first: they run while these are recorded
            for fin, name, spec in ended:
                self._finished(name, spec, fin)
            if self.should_cancel is not None:
                for handle, (name, spec) in list(running.items()):
                    if self.should_cancel(spec):
                        self.executor.cancel(handle)
            now = time.monotonic()
            if now - last_tick >= self.tick_every:
                last_tick = now
                taken = self.taken
                self.runner.tick([s for h, (_, s) in running.items() if h not in taken], len(self.results),
                                 len(self.plan.order))
        return self.results

    def _decide(self, ready: list) -> None:
        """Decide ready nodes: skipped (an input not built), settled by the runner (up to
        date, failed...) or queued to run; at most `batch` while something is queued."""
        decided, batch, queue = 0, self.batch, self.queue
        skip_reason, decide = self.plan.skip_reason, self.runner.decide
        while ready:
            if decided >= batch and queue and not self.stopped:
                break
            decided += 1
            name = ready.pop()
            why = skip_reason(name)
            if why is not None:
                self._settle(name, NodeResult(name, Outcome.SKIPPED, message=why))
                continue
            if self.stopped:
                continue
            r = decide(name)
            if isinstance(r, NodeResult):
                self._settle(name, r)
            else:
                self._queue(name, r)

    def _queue(self, name: str, spec) -> None:
        self.queue.push(Queued((self.priority(name), self.index[name]), name, spec, _needs(spec)))

    def _settle(self, name: str, result: NodeResult) -> None:
        self.plan.settle(name, result)
        self.runner.done(result)
        if result.outcome is Outcome.FAILED and not self.keep_going:
            self.stopped = True
            for h in self.taken:  # successors not started yet never start
                self.executor.withdraw(h)

    def _launch(self, item: Queued) -> None:
        spec = item.spec
        handle = self.executor.submit(spec)
        self.pool.take(spec.resources)
        self.running[handle] = (item.name, spec)
        self.runner.started(spec)

    def _refreshed(self, item: Queued) -> Queued | None:
        """The queued item as it would start now (runner.refresh may order its recipes
        again), or None when that settled the node."""
        if self.refresh is None:
            return item
        fresh = self.refresh(item.name, item.spec)
        if isinstance(fresh, NodeResult):
            self._settle(item.name, fresh)
            return None
        return item if fresh is item.spec else item._replace(spec=fresh, needs=_needs(fresh))

    def _dispatch(self) -> None:
        """Launch queued specs by priority while they fit (pick), then chain."""
        if self.queue:
            for item in pick(self.queue, self.pool, self.running, self._refreshed):
                self._launch(item)
        if self.queue and self.chains and not self.stopped:
            self._chain()

    def _chain(self) -> None:
        """Give each running process that has none a successor: the best queued spec
        if it needs exactly the same resources. The executor starts it the moment
        that process ends, without waiting for this loop (see submit_after)."""
        queue, successor, taken = self.queue, self.successor, self.taken
        for handle, (name, spec) in list(self.running.items()):
            if not queue:
                return
            if handle in successor or handle in taken:
                continue
            if queue.head().spec.resources != spec.resources:
                continue  # (the executor says which specs and processes can be chained)
            popped = queue.pop()
            item = self._refreshed(popped)
            if item is None:
                continue
            if item is not popped:
                queue.push(item)
                continue  # re-ordered: it waits for its turn like any other
            h = self.executor.submit_after(item.spec, handle)
            if h is None:
                queue.push(item)
                continue
            successor[handle] = h
            taken.add(h)
            self.running[h] = (item.name, item.spec)  # runner.started() when it starts

    def _ended(self, finished) -> list:
        """The attempts that ended, as (Finished, name, spec), their resources given back
        (or handed to the successor that started in their place). A successor that never
        started is queued again, or ends here when the build stopped."""
        running, successor, taken = self.running, self.successor, self.taken
        ended = []
        for fin in finished:
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
                    self._queue(name, spec)
                continue
            nxt = successor.pop(fin.handle, None)
            if nxt is not None and nxt in running and fin.exit_code == 0:
                taken.discard(nxt)  # started in its place: it holds these resources now
                self.runner.started(running[nxt][1])
            else:
                self.pool.give(spec.resources)
            ended.append((fin, name, spec))
        return ended

    def _finished(self, name: str, spec, fin) -> None:
        """An attempt ended: the runner says what comes next (a result, another spec)."""
        nxt = self.runner.finished(name, spec, fin)
        if nxt is None:
            return  # the node settled elsewhere
        if isinstance(nxt, NodeResult):
            self._settle(name, nxt)
        elif self.stopped:
            self._settle(name, NodeResult(name, Outcome.FAILED, message="build stopped"))
        else:
            self._queue(name, nxt)


def _needs(spec) -> frozenset:
    """The resources a spec takes some of (what can make it wait)."""
    return frozenset(k for k, v in spec.resources.items() if v > 0)


def _clean(fin) -> bool:
    """Did the attempt end well, as far as its exit says (outputs are checked after)?"""
    return fin.exit_code == 0 and not fin.error and not fin.cancelled and not fin.timed_out
