"""report/__init__.py: the Reporter contract, and the console's progress state
(what each running node is expected to take, the build's ETA) fed by its events."""
from __future__ import annotations

import io
from types import SimpleNamespace

import pytest

from nodefile.report import Reporter
from nodefile.report.console import Console


class Lines(Reporter):
    """A reporter that only keeps its lines: the build events are the contract's no-ops."""

    def __init__(self):
        self.lines = []

    def print(self, text=""):
        self.lines.append(text)

    info = detail = print

    def warn(self, text):
        self.lines.append(f"warning: {text}")

    def error(self, text):
        self.lines.append(f"error: {text}")


def test_a_reporter_needs_only_its_lines_the_build_events_default_to_nothing():
    rep = Lines()
    rep.build_started(["a"], {"a": []}, lambda n: (1.0, True), 1.0)
    rep.planned("a", SimpleNamespace(estimates=[]))
    rep.started(SimpleNamespace(node="a"))
    rep.tick([], 0, 1)
    rep.done(SimpleNamespace(node="a"))
    rep.waiting("store 'nas' is slow")
    rep.summary(SimpleNamespace())
    rep.flush()
    assert rep.lines == [] and rep.verbosity == 0


def test_a_reporter_without_its_lines_cannot_be_made():
    class NoLines(Reporter):
        pass
    with pytest.raises(TypeError):
        NoLines()


def _estimate(duration, known=True, floor=False):
    return SimpleNamespace(duration=duration, known=known, floor=floor)


def test_the_console_shows_each_planned_nodes_first_recipe_and_weighs_it_again():
    weights = {"a": (2.0, True), "b": (3.0, True)}
    con = Console(verbosity=0, out=io.StringIO(), err=io.StringIO(), tty=False)
    con.build_started(["a", "b"], {"a": [], "b": ["a"]}, lambda n: weights[n], 1.0)
    assert con.eta_text([], 0.0) == "ETA 5.0s"
    weights["b"] = (10.0, True)  # its chosen order is slower than the estimate before
    con.planned("b", SimpleNamespace(estimates=[_estimate(10.0)]))
    con.planned("a", SimpleNamespace(estimates=[_estimate(2.0, known=False)]))
    assert con.expected == {"b": 10.0, "a": None}  # never measured: shown as "?"
    assert con.eta_text([], 0.0) == "ETA 12.0s"
    con.planned("c", SimpleNamespace(estimates=[]))  # nothing to show for it
    assert "c" not in con.expected


def test_a_console_with_no_build_started_has_no_eta():
    con = Console(verbosity=0, out=io.StringIO(), err=io.StringIO(), tty=False)
    con.planned("a", SimpleNamespace(estimates=[_estimate(1.0, floor=True)]))
    assert con.expected == {"a": None} and con.eta_text([], 0.0) == ""
