"""The DAG as plain data: closure of targets, topological order, cycles, chains."""
from __future__ import annotations


def find_cycle(nodes: dict) -> list[str] | None:
    """A cycle as a path `a -> b -> a`, or None. Iterative DFS (deep graphs are fine)."""
    WHITE, GREY, BLACK = 0, 1, 2
    color = dict.fromkeys(nodes, WHITE)
    for start in nodes:
        if color[start] != WHITE:
            continue
        stack = [(start, iter(nodes[start].deps))]
        path = [start]
        color[start] = GREY
        while stack:
            name, it = stack[-1]
            for dep in it:
                if dep not in color:
                    continue
                if color[dep] == GREY:
                    i = path.index(dep)
                    return path[i:] + [dep]
                if color[dep] == WHITE:
                    color[dep] = GREY
                    path.append(dep)
                    stack.append((dep, iter(nodes[dep].deps)))
                    break
            else:
                color[name] = BLACK
                stack.pop()
                path.pop()
    return None


def closure(nodes: dict, targets) -> list[str]:
    """Every node the targets need, in topological order (dependencies first)."""
    order: list[str] = []
    seen: set[str] = set()
    for t in targets:
        if t in seen:
            continue
        stack = [(t, iter(nodes[t].deps))]
        seen.add(t)
        while stack:
            name, it = stack[-1]
            for dep in it:
                if dep not in seen:
                    seen.add(dep)
                    stack.append((dep, iter(nodes[dep].deps)))
                    break
            else:
                order.append(name)
                stack.pop()
    return order


def dependents(nodes: dict, names) -> dict[str, list[str]]:
    wanted = set(names)
    out: dict[str, list[str]] = {n: [] for n in names}
    for n in names:
        for d in nodes[n].deps:
            if d in wanted:
                out[d].append(n)
    return out


def bottom_levels(order: list[str], nodes: dict, weight) -> dict[str, float]:
    """Critical-path priority: weight(n) + the longest chain of weights below it
    (towards the targets). `order` is topological (dependencies first).

    Worked example: a -> b -> c (c needs b, b needs a), weights 1, 2, 3:
    level(c) = 3, level(b) = 2 + 3 = 5, level(a) = 1 + 5 = 6, so a starts first.
    """
    levels = LazyLevels(order, nodes, weight)
    return {n: levels[n] for n in order}


class LazyLevels:
    """bottom_levels computed on demand: level(n) = weight(n) + the largest level
    among the nodes that need n. Only the nodes asked for, and the nodes below
    them, are weighed: when one node of 10,000 is stale, one chain is computed,
    not the whole graph. Iterative (deep chains are fine) and memoised."""

    def __init__(self, order: list[str], nodes: dict, weight):
        self.users = dependents(nodes, order)
        self.weight = weight
        self.memo: dict[str, float] = {}

    def __getitem__(self, name: str) -> float:
        memo = self.memo
        if name in memo:
            return memo[name]
        stack = [name]
        while stack:
            n = stack[-1]
            pending = [u for u in self.users[n] if u not in memo]
            if pending:
                stack.extend(pending)
                continue
            stack.pop()
            if n not in memo:
                memo[n] = self.weight(n) + max((memo[u] for u in self.users[n]), default=0.0)
        return memo[name]


def blocked(project, names) -> dict[str, str]:
    """Nodes among `names` (topological) that cannot be built because a source is
    missing (Project.missing), with the reason: the missing file, or the blocked
    node they need."""
    out: dict[str, str] = {}
    if not project.missing:
        return out
    direct: dict[str, list[str]] = {}
    for path, needers, _ in project.missing:
        for n in needers:
            direct.setdefault(n, []).append(path)
    for n in names:
        if n in direct:
            out[n] = "missing source " + ", ".join(f"'{p}'" for p in direct[n])
        else:
            up = next((d for d in project.nodes[n].deps if d in out), None)
            if up is not None:
                out[n] = f"needs {up}, which is blocked"
    return out
