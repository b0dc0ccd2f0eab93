"""nodefile.graph: cycles, closure in topological order, critical-path bottom levels."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from nodefile.graph import bottom_levels, closure, dependents, find_cycle


def g(**deps):
    """g(b="a", c="ab") -> nodes whose .deps are the letters given."""
    return {n: SimpleNamespace(deps=tuple(d.split()) if " " in d else tuple(d)) for n, d in deps.items()}


def assert_topological(order, nodes):
    pos = {n: i for i, n in enumerate(order)}
    for n in order:
        for d in nodes[n].deps:
            assert pos[d] < pos[n], (d, n, order)


# -- find_cycle ----------------------------------------------------------------------------

def test_no_cycle():
    assert find_cycle(g(a="", b="a", c="ab", d="c")) is None
    assert find_cycle({}) is None


def test_two_node_cycle_is_a_closed_path():
    assert find_cycle(g(a="b", b="a")) == ["a", "b", "a"]


def test_cycle_path_starts_where_it_closes():
    # x is upstream of the cycle b -> c -> d -> b; the path shows only the cycle
    cyc = find_cycle(g(x="b", b="c", c="d", d="b"))
    assert cyc == ["b", "c", "d", "b"]


def test_self_loop():
    assert find_cycle(g(a="a")) == ["a", "a"]


def test_deps_outside_the_graph_are_ignored():
    assert find_cycle(g(a="z")) is None


def test_deep_chain_is_iterative():
    n = 20000
    nodes = {f"n{i}": SimpleNamespace(deps=(f"n{i - 1}",) if i else ()) for i in range(n)}
    assert find_cycle(nodes) is None
    nodes["n0"] = SimpleNamespace(deps=(f"n{n - 1}",))
    cyc = find_cycle(nodes)
    assert cyc[0] == cyc[-1] and len(cyc) == n + 1


# -- closure -------------------------------------------------------------------------------

def test_closure_is_topological_and_minimal():
    nodes = g(a="", b="a", c="a", d="bc", other="")
    order = closure(nodes, ["d"])
    assert set(order) == {"a", "b", "c", "d"}
    assert_topological(order, nodes)
    assert order[-1] == "d" and order[0] == "a"


def test_closure_of_several_targets_has_no_duplicates():
    nodes = g(a="", b="a", c="a", d="b")
    order = closure(nodes, ["c", "d", "a", "c"])
    assert sorted(order) == ["a", "b", "c", "d"]
    assert_topological(order, nodes)


def test_closure_follows_dependency_declaration_order():
    nodes = g(a="", b="", c="ba")
    assert closure(nodes, ["c"]) == ["b", "a", "c"]


def test_closure_deep_chain():
    n = 20000
    nodes = {f"n{i}": SimpleNamespace(deps=(f"n{i - 1}",) if i else ()) for i in range(n)}
    order = closure(nodes, [f"n{n - 1}"])
    assert order == [f"n{i}" for i in range(n)]


def test_dependents():
    nodes = g(a="", b="a", c="ab", x="a")
    assert dependents(nodes, ["a", "b", "c"]) == {"a": ["b", "c"], "b": ["c"], "c": []}


# -- bottom levels (critical path) -------------------------------------------------------

def test_bottom_levels_worked_example_from_the_docstring():
    # a -> b -> c (c needs b, b needs a), weights 1, 2, 3
    nodes = g(a="", b="a", c="b")
    w = {"a": 1, "b": 2, "c": 3}
    levels = bottom_levels(closure(nodes, ["c"]), nodes, w.__getitem__)
    assert levels == {"c": 3, "b": 5, "a": 6}


def test_bottom_levels_take_the_longest_chain_below():
    #      a
    #    /   \
    #   b(1)  c(10)
    #    \   /
    #      d(2)
    nodes = g(a="", b="a", c="a", d="bc", e="")
    w = {"a": 1, "b": 1, "c": 10, "d": 2, "e": 4}
    order = closure(nodes, ["d", "e"])
    levels = bottom_levels(order, nodes, w.__getitem__)
    assert levels == {"d": 2, "b": 3, "c": 12, "a": 13, "e": 4}
    # the critical path (a, c, d) outranks the short side branch and the lone node
    assert sorted(levels, key=levels.get, reverse=True)[:2] == ["a", "c"]


def test_bottom_levels_only_count_nodes_in_the_order():
    nodes = g(a="", b="a", c="a")
    levels = bottom_levels(["a", "b"], nodes, lambda n: 1.0)
    assert levels == {"a": 2.0, "b": 1.0}


@pytest.mark.parametrize("weight", [0.0, 2.5])
def test_bottom_levels_of_isolated_nodes_are_their_weight(weight):
    nodes = g(a="", b="")
    assert bottom_levels(["a", "b"], nodes, lambda n: weight) == {"a": weight, "b": weight}


def test_lazy_levels_equal_bottom_levels_on_random_dags():
    import random
    from types import SimpleNamespace as NS
    from nodefile.graph import LazyLevels, bottom_levels, closure
    rng = random.Random(7)
    for _ in range(20):
        n = rng.randint(1, 60)
        names = [f"n{i}" for i in range(n)]
        nodes = {m: NS(deps=tuple(rng.sample(names[:i], k=min(i, rng.randint(0, 3))))) for i, m in enumerate(names)}
        order = closure(nodes, names)
        weights = {m: rng.uniform(0.1, 10) for m in names}
        eager = bottom_levels(order, nodes, weights.get)
        lazy = LazyLevels(order, nodes, weights.get)
        asked = rng.sample(names, k=max(1, n // 3))
        assert all(abs(lazy[m] - eager[m]) < 1e-9 for m in asked)
        assert set(lazy.memo) <= set(names)  # only what was asked and what lies below it
