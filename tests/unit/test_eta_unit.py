"""report/eta.py (the reporter's ETA, pure): what a build has left,
max(remaining critical path, remaining work / slots)."""
from __future__ import annotations

import pytest

from nodefile.report.eta import Eta

DEPS = {"a": [], "b": ["a"], "c": ["b"], "x": [], "y": [], "z": []}  # a chain of 3, three loose nodes


def eta(weights, slots, known=()):
    return Eta(list(DEPS), DEPS, lambda n: (weights[n], n not in known), slots)


def test_the_critical_path_or_the_work_over_the_slots_whichever_is_longer():
    w = dict(a=2.0, b=2.0, c=2.0, x=1.0, y=1.0, z=1.0)
    assert eta(w, 4).left({}) == (6.0, True)  # the chain: 6 s; the work: 9 / 4
    assert eta(w, 1).left({}) == (9.0, True)  # one slot: all the work, waiting nodes included


def test_running_nodes_count_what_is_left_of_them_and_done_nodes_nothing():
    e = eta(dict(a=2.0, b=2.0, c=2.0, x=1.0, y=1.0, z=1.0), 4)
    e.settle("x")
    assert e.left({"a": 1.5}) == (pytest.approx(4.5), True)
    e.settle("a")
    e.settle("b")
    assert e.left({"c": 3.0}) == (pytest.approx(1.0), True)  # y and z: 1 s each; c overran: 0
    for n in DEPS:
        e.settle(n)
    assert e.left({}) == (0.0, True)


def test_a_duration_never_measured_makes_a_lower_bound_and_nothing_measured_is_unknown():
    w = dict(a=2.0, b=30.0, c=2.0, x=1.0, y=1.0, z=1.0)
    assert eta(w, 4, known={"b"}).left({}) == (4.0, False)  # b's guess counts 0: at least 4 s
    assert eta(w, 4, known=set(DEPS)).left({}) == (None, False)


def test_a_decided_node_is_weighed_again():
    w = dict(a=2.0, b=2.0, c=2.0, x=1.0, y=1.0, z=1.0)
    e = eta(w, 4)
    assert e.left({})[0] == 6.0
    w["b"] = 10.0  # its chosen order is slower than the estimate before it was decided
    assert e.left({})[0] == 6.0
    e.decided("b")
    assert e.left({})[0] == 14.0
