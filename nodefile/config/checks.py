"""Small validators of Nodefile values, shared by the loader and the gatherer.
Each returns an error message, or None when the value is valid."""
from __future__ import annotations

import math

_TYPE_NAMES = {str: "a string", list: "an array", dict: "a table", bool: "a boolean"}


def describe(value) -> str:
    """A TOML value as a message names it: `nan`, `-1`, `a string`, `an array`."""
    for t, name in _TYPE_NAMES.items():
        if type(value) is t:
            return f"{name} ({'true' if value else 'false'})" if t is bool else name
    if isinstance(value, (int, float)):
        text = str(value)
        return text if len(text) < 24 else f"{text[:12]}...({len(text)} digits)"
    return type(value).__name__


def is_amount(value) -> bool:
    """A finite number (an int too large for a float is not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def timeout_problem(value) -> str | None:
    """A recipe's `timeout`: a positive, finite number of seconds."""
    if not is_amount(value) or value <= 0:
        return f"timeout must be a positive number of seconds (finite), not {describe(value)}"
    return None


def nul_problem(kind: str, target: str, args: list, env: dict) -> str | None:
    """A command line and an environment cannot hold a NUL character."""
    for what, values in ((kind, [target]), ("args", args), ("env", list(env) + list(env.values()))):
        if any(isinstance(v, str) and "\x00" in v for v in values):
            return f"{what} holds a NUL character, which no command line or environment can"
    return None


def names_problem(value, what: str) -> str | None:
    """A list of names (strings): template `needs`, a sub-pipeline's `default`."""
    if isinstance(value, str):
        return None
    if not isinstance(value, list):
        return f"{what} must be a name or a list of names, not {describe(value)}"
    bad = [x for x in value if not isinstance(x, str) or not x]
    if bad:
        return f"{what} must hold names (non-empty strings), not {describe(bad[0])}"
    return None
