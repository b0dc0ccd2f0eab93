"""What a warm worker preloads: the third-party modules the project's Python
recipes import and the R packages its R recipes use, found from their code
(and the local files they import or source), plus `[workers.LANG] preload`.

Python: every `import a.b` / `from a.b import c` whose top-level name is not a
project file or folder and not in the standard library (those are cheap and
shared anyway). R: `library(pkg)`, `require(pkg)`, `requireNamespace("pkg")`
and `pkg::name` / `pkg:::name`.
"""
from __future__ import annotations

import ast
import os
import re
import sys

_R_LIBRARY = re.compile(r"""(?<![\w.])(?:library|require|requireNamespace)\s*\(\s*(?:package\s*=\s*)?["']?"""
                        r"""([A-Za-z][A-Za-z0-9.]*)""")
_R_COLONS = re.compile(r"(?<![\w.])([A-Za-z][A-Za-z0-9.]*):::?[A-Za-z.`]")
_STDLIB = getattr(sys, "stdlib_module_names", frozenset())


def python_modules(files, local_names) -> list[str]:
    """The third-party modules imported by the Python files, in first-seen order."""
    seen: dict[str, None] = {}
    for path in files:
        for name in _imports(path):
            top = name.split(".")[0]
            if top in _STDLIB or top in local_names or top == "nodefile" or top == "__future__":
                continue
            seen.setdefault(name, None)
    return list(seen)


def _imports(path: str) -> list[str]:
    try:
        with open(path, "rb") as f:
            tree = ast.parse(f.read(), path)
    except (OSError, SyntaxError, ValueError):
        return []
    out = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            out += [a.name for a in n.names]
        elif isinstance(n, ast.ImportFrom) and n.level == 0 and n.module:
            out.append(n.module)
    return out


def r_packages(files) -> list[str]:
    """The R packages the R files load or call into, in first-seen order."""
    seen: dict[str, None] = {}
    for path in files:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError:
            continue
        code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
        for m in _R_LIBRARY.finditer(code):
            seen.setdefault(m.group(1), None)
        for m in _R_COLONS.finditer(code):
            if m.group(1) not in ("base",):
                seen.setdefault(m.group(1), None)
    return list(seen)


def local_names(root: str, folders) -> set[str]:
    """Top-level module names that resolve to project files (never preloaded)."""
    names = set()
    for d in {root, *folders}:
        try:
            entries = os.listdir(d)
        except OSError:
            continue
        for e in entries:
            if e.endswith(".py"):
                names.add(e[:-3])
            elif os.path.isdir(os.path.join(d, e)):
                names.add(e)
    return names


def find(project, lang: str, closure=None, extra=()) -> list[str]:
    """What the `lang` worker of this project preloads."""
    kinds = ("python", "call") if lang == "python" else ("r",)
    files: dict[str, None] = {}
    folders = set()
    for node in project.nodes.values():
        for recipe in node.recipes:
            if recipe.kind not in kinds:
                continue
            if recipe.kind != "call":
                script = os.path.join(project.root, recipe.target)
                files.setdefault(script, None)
                folders.add(os.path.dirname(script))
            if closure is not None:
                try:
                    for dep in closure(node, recipe):
                        files.setdefault(os.path.join(project.root, dep), None)
                except Exception:  # noqa: BLE001 - a closure problem is reported by the build itself
                    pass
    if lang == "python":
        found = python_modules(files, local_names(project.root, folders))
    else:
        found = r_packages(files)
    return list(dict.fromkeys([*extra, *found]))
