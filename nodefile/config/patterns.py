"""Pattern nodes: wildcards in outputs (`fits/{model}.json`), matrix instances.

A wildcard matches any non-empty string unless `wildcards = { NAME = "REGEX" }`
constrains it. An instance is named `fit[model=lin,seed=1]` (wildcards in the
order they first appear in the outputs).
"""
from __future__ import annotations

import itertools
import re

from ..placeholders import toml_text as fmt  # scalars as TOML writes them

_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")


def wildcards_in(s: str) -> list[str]:
    out = []
    for m in _TOKEN.finditer(s):
        if m.group(1) and m.group(1) not in out:
            out.append(m.group(1))
    return out


def has_wildcards(s: str) -> bool:
    return any(m.group(1) for m in _TOKEN.finditer(s))


def compile_output(pattern: str, constraints: dict) -> re.Pattern:
    parts = []
    seen = set()
    pos = 0
    for m in _TOKEN.finditer(pattern):
        parts.append(re.escape(pattern[pos:m.start()]))
        tok = m.group(0)
        if tok in ("{{", "}}"):
            parts.append(re.escape(tok[0]))
        else:
            name = m.group(1)
            if name in seen:
                parts.append(f"(?P={name})")
            else:
                seen.add(name)
                parts.append(f"(?P<{name}>{constraints.get(name, '.+')})")
        pos = m.end()
    parts.append(re.escape(pattern[pos:]))
    return re.compile("".join(parts) + r"\Z")


def fill(s: str, values: dict) -> str:
    """Substitute wildcard values; other {placeholders} ({inputs}, ...) are kept."""
    def repl(m):
        if m.group(1) is None:
            return m.group(0)
        return values.get(m.group(1), m.group(0))
    return _TOKEN.sub(repl, s)


def fill_paths(s: str, values: dict) -> str:
    """Like fill, and {{ / }} become literal braces: for paths."""
    def repl(m):
        if m.group(1) is None:
            return m.group(0)[0]
        return values.get(m.group(1), m.group(0))
    return _TOKEN.sub(repl, s)




def instance_name(base: str, names: list[str], values: dict) -> str:
    return f"{base}[{','.join(f'{n}={values[n]}' for n in names)}]"


def matrix_instances(matrix) -> list[dict] | str:
    """The instances a matrix stands for, or an error message."""
    if isinstance(matrix, dict):
        keys = list(matrix)
        lists = []
        for k in keys:
            v = matrix[k]
            if not isinstance(v, list) or not v:
                return f"matrix.{k} must be a non-empty list"
            lists.append([fmt(x) for x in v])
        return [dict(zip(keys, combo)) for combo in itertools.product(*lists)]
    if isinstance(matrix, list) and all(isinstance(x, dict) for x in matrix) and matrix:
        return [{k: fmt(v) for k, v in x.items()} for x in matrix]
    return "matrix must be a table of lists or a list of tables"
