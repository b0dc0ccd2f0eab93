"""The house rules, checked on the source with `ast` (issue 18, item 8).

- no import cycle among nodefile's modules, lazy imports (inside functions) included;
- imports follow the layer table below (docs/architecture.md, "Import direction"):
  a module imports modules of its own row or of rows above it, never below;
- no private name (`_x`) imported from another module;
- no module over 600 lines, no function over 80.

Each rule has a short allow-list, each entry with its reason. The lists are exact: an
entry that no longer breaks its rule fails the test too, so they only shrink. A new
module is placed in the layer table (by its package, or by name).
"""
from __future__ import annotations

import ast
import os

import pytest

PKG = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "nodefile")
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80

# Top to bottom. A name stands for that module and, when it is a package, every module
# under it that no longer name places elsewhere.
LAYERS = {
    "leaves": ("errors", "records", "model", "placeholders", "graph", "fastpath", "fsclock", "statedir",
               "interrupts", "pathsafe", "values", "fncall", "recipes.rlang", "executors", "workers",
               "report.eta"),
    "data": ("config", "hashing", "stale", "plan", "scheduler", "closure", "codeclosure", "report"),
    "state": ("state",),
    "services": ("learn", "stores", "recipes", "session", "incremental"),
    "engine": ("attempts", "runner", "engine"),
    "entry points": ("jobctx", "watch", "commands", "history", "upkeep", "cli", "", "__main__", "logs", "scaffold", "pipeline",
                     "_call", "doit_import", "doit_adapter", "doit_loader"),
}

# (importer, imported) -> why an import goes up the table. Each must be lazy.
UPWARD = {
    ("codeclosure", "recipes"): "`rscript`, lazily, to run R's static analysis of an R script",
    ("config.cache", ""): "`__version__`, lazily, part of the parse cache's key",
}

# (importer, imported) -> why this import may close a cycle. Each must be lazy.
CYCLES = {
    ("commands", "cli"): "`parse_set` / `parse_resources`, lazily: cli dispatches to commands",
    ("scaffold", "cli"): "`node completion` lists the parser's options, lazily",
    ("pipeline", ""): "the Python API (`nodefile.build`, ...), lazily: `nodefile` exposes `Pipeline` lazily",
}

# (importer, imported, name) -> why a private name crosses a module boundary.
PRIVATE: dict[tuple[str, str, str], str] = {}

# module -> why it may exceed MAX_MODULE_LINES.
LONG_MODULES = {
}

# "module:qualified.name" -> why the function may exceed MAX_FUNCTION_LINES.
LONG_FUNCTIONS = {
    "cli:make_parser": "one argparse declaration per option, read top to bottom",
}


# -- reading the package ---------------------------------------------------------------------
def _modules() -> dict[str, str]:
    """Dotted name relative to nodefile ("" is nodefile itself) -> file path."""
    out = {}
    for folder, dirs, files in os.walk(PKG):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(folder, f)
                parts = os.path.relpath(path, PKG)[:-3].split(os.sep)
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                out[".".join(parts)] = path
    return out


MODULES = _modules()
TREES = {m: ast.parse(open(p, encoding="utf-8").read(), p) for m, p in MODULES.items()}


def _walk(node, lazy: bool):
    """Every node under `node`, with whether it runs only when a function is called."""
    for child in ast.iter_child_nodes(node):
        yield child, lazy
        yield from _walk(child, lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))


def _imports(module: str):
    """(imported module, name or None, line, lazy) of every import in `module`: at the
    top, inside functions, under `if`. Names imported from a package that are its
    modules count as imports of those modules."""
    package = module.split(".") if module else []
    if not MODULES[module].endswith("__init__.py"):
        package = package[:-1]
    for node, lazy in _walk(TREES[module], False):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "nodefile" or alias.name.startswith("nodefile."):
                    yield alias.name[len("nodefile."):] if "." in alias.name else "", None, node.lineno, lazy
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module == "nodefile" or (node.module or "").startswith("nodefile."):
                target = node.module[len("nodefile."):] if "." in node.module else ""
            else:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}" if target else alias.name
                if sub in MODULES:
                    yield sub, None, node.lineno, lazy
                else:
                    yield target, alias.name, node.lineno, lazy


IMPORTS = {m: list(_imports(m)) for m in MODULES}


def _edges() -> dict[tuple[str, str], list[tuple[int, bool]]]:
    edges: dict[tuple[str, str], list[tuple[int, bool]]] = {}
    for m, found in IMPORTS.items():
        for target, _name, line, lazy in found:
            if target != m:
                edges.setdefault((m, target), []).append((line, lazy))
    return edges


EDGES = _edges()


def _layer(module: str) -> int | None:
    best, found = -1, None
    for i, names in enumerate(LAYERS.values()):
        for name in names:
            if (module == name or (name and module.startswith(name + "."))) and len(name) > best:
                best, found = len(name), i
    return found


def _reaches(start: str, goal: str, edges) -> list[str] | None:
    """A path of imports start -> ... -> goal, or None."""
    graph: dict[str, list[str]] = {}
    for a, b in edges:
        graph.setdefault(a, []).append(b)
    came = {start: None}
    todo = [start]
    while todo:
        node = todo.pop()
        if node == goal:
            path = [node]
            while came[path[-1]] is not None:
                path.append(came[path[-1]])
            return path[::-1]
        for nxt in graph.get(node, ()):
            if nxt not in came:
                came[nxt] = node
                todo.append(nxt)
    return None


def _name(module: str) -> str:
    return f"nodefile.{module}" if module else "nodefile"


# -- the rules ---------------------------------------------------------------------------------
def test_every_module_has_a_layer():
    assert [m for m in MODULES if _layer(m) is None] == []


def test_imports_follow_the_layer_table():
    upward = {(a, b): f"{_name(a)} ({_layer_name(a)}) imports {_name(b)} ({_layer_name(b)}), line {v[0][0]}"
              for (a, b), v in EDGES.items() if _layer(b) > _layer(a)}
    assert sorted(set(upward) - set(UPWARD)) == [], "\n".join(upward[e] for e in sorted(set(upward) - set(UPWARD)))
    assert sorted(set(UPWARD) - set(upward)) == [], "no longer an upward import: take it off UPWARD"


def _layer_name(module: str) -> str:
    return list(LAYERS)[_layer(module)]


def test_no_import_cycle():
    """With the allow-listed lazy imports taken out, the import graph has no cycle."""
    allowed = set(CYCLES) | set(UPWARD)
    rest = [e for e in EDGES if e not in allowed]
    cycles = []
    for a, b in rest:
        back = _reaches(b, a, rest)
        if back is not None:
            cycles.append(" -> ".join(_name(m) for m in [a] + back))
    assert cycles == [], "\n".join(cycles)


def test_cycle_allow_list_is_exact():
    stale = [e for e in CYCLES if e not in EDGES or _reaches(e[1], e[0], EDGES) is None]
    assert stale == [], "these imports no longer close a cycle: take them off CYCLES"


@pytest.mark.parametrize("edge", sorted(set(CYCLES) | set(UPWARD)))
def test_allowed_back_edges_are_lazy(edge):
    """An import allowed to go up or close a cycle runs at call time, never at import time."""
    top = [line for line, lazy in EDGES.get(edge, ()) if not lazy]
    assert top == [], f"{_name(edge[0])} imports {_name(edge[1])} at import time (line {top})"


def test_no_private_name_imported_across_modules():
    found = {(m, target, name): line for m, imports in IMPORTS.items()
             for target, name, line, _lazy in imports
             if name and name.startswith("_") and not name.startswith("__") and target != m}
    extra = sorted(set(found) - set(PRIVATE))
    assert extra == [], "\n".join(f"{_name(m)}:{found[(m, t, n)]} imports {n} from {_name(t)}" for m, t, n in extra)
    assert sorted(set(PRIVATE) - set(found)) == [], "no longer imported: take it off PRIVATE"


def test_no_module_over_the_limit():
    long = {m: len(open(p, encoding="utf-8").read().splitlines()) for m, p in MODULES.items()}
    long = {m: n for m, n in long.items() if n > MAX_MODULE_LINES}
    assert sorted(set(long) - set(LONG_MODULES)) == [], {m: long[m] for m in set(long) - set(LONG_MODULES)}
    assert sorted(set(LONG_MODULES) - set(long)) == [], "short enough now: take it off LONG_MODULES"


def _functions(module: str):
    def walk(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield prefix + child.name, child.end_lineno - child.lineno + 1
                yield from walk(child, prefix + child.name + ".")
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, prefix + child.name + ".")
            else:
                yield from walk(child, prefix)
    yield from walk(TREES[module], "")


def test_no_function_over_the_limit():
    long = {f"{m}:{name}": n for m in MODULES for name, n in _functions(m) if n > MAX_FUNCTION_LINES}
    assert sorted(set(long) - set(LONG_FUNCTIONS)) == [], {f: long[f] for f in set(long) - set(LONG_FUNCTIONS)}
    assert sorted(set(LONG_FUNCTIONS) - set(long)) == [], "short enough now: take it off LONG_FUNCTIONS"


def test_allow_lists_give_reasons():
    for table in (UPWARD, CYCLES, PRIVATE, LONG_MODULES, LONG_FUNCTIONS):
        assert all(isinstance(why, str) and why.strip() for why in table.values())
    named = {m for e in list(UPWARD) + list(CYCLES) for m in e} | {e[0] for e in PRIVATE} | set(LONG_MODULES)
    assert sorted(named - set(MODULES)) == []
