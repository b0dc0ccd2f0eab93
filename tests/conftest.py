"""Options shared by every test folder.

`--long` runs the reliability suite (tests/reliability/) with its full trial
counts; without it, each trial loop runs a count that keeps CI short.
"""
from __future__ import annotations

import pytest


def pytest_addoption(parser):
    parser.addoption("--long", action="store_true", default=False,
                     help="reliability suite: run the full trial counts (minutes, not seconds)")


@pytest.fixture
def trials(request):
    """trials(short, long) -> the count for this run: `long` under --long, else `short`."""
    long_mode = request.config.getoption("--long")

    def count(short: int, long: int) -> int:
        return long if long_mode else short
    return count
