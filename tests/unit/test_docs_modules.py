"""docs/architecture.md's module table matches the code (issue 18): every module of
the package has a row, and every row names a module that exists. A package's
`__init__.py` needs a row only when it holds more than imports and a docstring."""
from __future__ import annotations

import ast
import os
import re

ROOT = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir)
PKG = os.path.join(ROOT, "nodefile")


def _rows() -> set[str]:
    with open(os.path.join(ROOT, "docs", "architecture.md"), encoding="utf-8") as f:
        text = f.read()
    table = text.split("\n## Modules", 1)[1].split("\n### ", 1)[0]
    return set(re.findall(r"^\| `([^`]+\.py)` \|", table, re.M))


def _holds_code(path: str) -> bool:
    with open(path, encoding="utf-8") as f:
        body = ast.parse(f.read()).body
    def bare(n) -> bool:  # imports, the docstring, __all__
        return isinstance(n, (ast.Import, ast.ImportFrom, ast.Expr)) or (
            isinstance(n, ast.Assign) and [getattr(t, "id", None) for t in n.targets] == ["__all__"])
    return not all(bare(n) for n in body)


def _modules() -> set[str]:
    out = set()
    for folder, dirs, files in os.walk(PKG):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for f in files:
            path = os.path.join(folder, f)
            if f.endswith(".py") and (f != "__init__.py" or folder == PKG or _holds_code(path)):
                out.add(os.path.relpath(path, PKG).replace(os.sep, "/"))
    return out


def test_every_module_has_a_row_in_the_architecture_table():
    assert sorted(_modules() - _rows()) == []


def test_every_row_of_the_architecture_table_is_a_module():
    exists = {m for m in _rows() if os.path.isfile(os.path.join(PKG, m))}
    assert sorted(_rows() - exists) == []
