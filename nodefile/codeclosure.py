"""Code tracked per function: the key parts of a `call` or `r_call` recipe.

A function's part is the hash of its own definition (Python: its syntax tree, so
comments and blank lines do not count; R: its deparsed body) plus one part per
project function, class or module-level constant it uses, transitively. Names
are found statically: in Python with `ast` (the names and `module.attr` the body
reads, resolved in its module and in the project modules it imports from); in R
with codetools::findGlobals on every function the file defines. A module used
as a whole (`from m import *`, a module passed around) counts as its whole file.

Per file, the facts (definitions, their hashes and the names they use) are
cached by the file's content hash (closure.Closure.facts), so a no-op build
parses nothing and starts no R.
"""
from __future__ import annotations

import os

from .hashing import hash_bytes


def parts(closure, node, recipe) -> dict:
    if recipe.kind == "r_call":
        rel, _, fn = recipe.target.partition("::")
        rel = _project_rel(closure.root, os.path.join(closure.root, node.cwd, rel))
        return r_parts(closure, rel, fn)
    module, _, qualname = recipe.target.partition(":")
    search = [os.path.join(closure.root, node.cwd), closure.root]
    rel = python_module_file(closure, module, search)
    if rel is None:
        return {}
    out: dict = {}
    _python_walk(closure, rel, qualname.split(".")[0], out, search)
    return out


def _project_rel(root: str, path: str) -> str:
    return os.path.relpath(os.path.realpath(path), root).replace(os.sep, "/")


def python_module_file(closure, module: str, search) -> str | None:
    """Project-relative file of `module` (dotted, or a path ending in .py), None when outside."""
    if module.endswith(".py"):
        full = module if os.path.isabs(module) else os.path.join(closure.root, module)
        files = [full] if os.path.isfile(full) else []
    else:
        files = closure.module_files(module, search)
    if not files:
        return None
    rel = _project_rel(closure.root, files[-1])
    return None if rel.startswith("../") else rel


# -- Python -------------------------------------------------------------------------------
def python_facts(full: str, text: str) -> dict | None:
    """defs: name -> [hash, names used, attributes used]; imports: local -> [module, attr, level];
    star: modules imported with *."""
    import ast
    try:
        tree = ast.parse(text, filename=full)
    except (SyntaxError, ValueError):
        return None
    defs: dict[str, list] = {}
    imports: dict[str, list] = {}
    star: list = []
    for stmt in tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            _add_def(defs, stmt.name, stmt)
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            for t in targets:
                for n in ast.walk(t):
                    if isinstance(n, ast.Name):
                        _add_def(defs, n.id, stmt)
        elif isinstance(stmt, ast.Import):
            for a in stmt.names:
                local = a.asname or a.name.split(".")[0]
                imports[local] = [a.name if a.asname else a.name.split(".")[0], None, 0]
        elif isinstance(stmt, ast.ImportFrom):
            for a in stmt.names:
                if a.name == "*":
                    star.append([stmt.module or "", stmt.level])
                else:
                    imports[a.asname or a.name] = [stmt.module or "", a.name, stmt.level]
    return {"defs": defs, "imports": imports, "star": star}


def _add_def(defs: dict, name: str, stmt) -> None:
    import ast
    names, attrs = set(), set()
    for n in ast.walk(stmt):
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load):
            names.add(n.id)
        elif isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name):
            attrs.add(f"{n.value.id}.{n.attr}")
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):  # its own locals are not globals
        a = stmt.args
        local = {x.arg for x in a.posonlyargs + a.args + a.kwonlyargs + [a.vararg, a.kwarg] if x is not None}
        local |= {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        names -= local
        attrs = {x for x in attrs if x.split(".", 1)[0] not in local}
    h = hash_bytes(ast.dump(stmt).encode())
    if name in defs:  # assigned more than once: every statement counts
        old = defs[name]
        defs[name] = [hash_bytes((old[0] + h).encode()), sorted(set(old[1]) | names), sorted(set(old[2]) | attrs)]
    else:
        defs[name] = [h, sorted(names), sorted(attrs)]


def _python_walk(closure, rel: str, name: str, out: dict, search, seen=None) -> None:
    seen = set() if seen is None else seen
    if (rel, name) in seen:
        return
    seen.add((rel, name))
    facts = closure.facts(rel, "pyfacts:1", python_facts)
    if facts is None:
        out.setdefault(f"import:{rel}", closure.hasher.hash(rel))
        return
    here = [os.path.dirname(os.path.join(closure.root, rel))] + list(search)
    if name in facts["defs"]:
        h, names, attrs = facts["defs"][name]
        out[f"code:{rel}:{name}"] = h
        for n in names:
            _python_name(closure, rel, facts, n, [a.split(".", 1)[1] for a in attrs if a.split(".", 1)[0] == n],
                         out, here, seen)
        return
    _python_name(closure, rel, facts, name, [], out, here, seen)


def _python_name(closure, rel, facts, n, used_attrs, out, search, seen) -> None:
    if n in facts["defs"]:
        _python_walk(closure, rel, n, out, search, seen)
        return
    if n in facts["imports"]:
        module, attr, level = facts["imports"][n]
        target = _resolve(closure, rel, module, level, search)
        if target is None:
            return  # not a project module
        if attr is not None:
            sub = _resolve(closure, rel, f"{module}.{attr}" if module else attr, level, search)
            if sub is not None and sub != target:  # `from pkg import module`
                _module_use(closure, sub, used_attrs, out, search, seen)
            else:
                _python_walk(closure, target, attr, out, search, seen)
        else:
            _module_use(closure, target, used_attrs, out, search, seen)
        return
    for module, level in facts["star"]:
        target = _resolve(closure, rel, module, level, search)
        if target is not None:
            out.setdefault(f"import:{target}", closure.hasher.hash(target))


def _module_use(closure, rel, used_attrs, out, search, seen) -> None:
    """A project module used as `mod.attr`: those attributes; used whole: the whole file."""
    if not used_attrs:
        out.setdefault(f"import:{rel}", closure.hasher.hash(rel))
    for a in used_attrs:
        _python_walk(closure, rel, a, out, search, seen)


def _resolve(closure, rel: str, module: str, level: int, search) -> str | None:
    if level:
        base = os.path.dirname(os.path.join(closure.root, rel))
        for _ in range(level - 1):
            base = os.path.dirname(base)
        files = closure.module_files_in(base, module) if module else [os.path.join(base, "__init__.py")]
        files = [f for f in files if os.path.isfile(f)]
    else:
        files = closure.module_files(module, search) if module else []
    if not files:
        return None
    out = _project_rel(closure.root, files[-1])
    return None if out.startswith("../") else out


# -- R ------------------------------------------------------------------------------------
R_FACTS = r"""
args <- commandArgs(trailingOnly = TRUE)
exprs <- parse(file = args[[1]], keep.source = FALSE)
defs <- list()
for (e in exprs) {
  if (is.call(e) && as.character(e[[1L]])[1L] %in% c("<-", "=", "<<-") && is.name(e[[2L]])) {
    defs[[as.character(e[[2L]])]] <- e[[3L]]
  }
}
known <- names(defs)
for (n in known) {
  rhs <- defs[[n]]
  # nothing is evaluated: a function's code, or any other value's expression, as a function body
  fn <- if (is.call(rhs) && identical(rhs[[1L]], as.name("function"))) eval(rhs, baseenv()) else
    as.function(c(alist(), rhs), envir = baseenv())
  uses <- intersect(codetools::findGlobals(fn, merge = TRUE), known)
  cat("def\t", n, "\t", paste(c(uses, ""), collapse = " "), "\n", sep = "")
  cat(paste(deparse(rhs, control = c("keepInteger", "niceNames", "showAttributes")), collapse = "\n"), "\n", sep = "")
  cat("\f\n")
}
"""


def r_facts(full: str, text: str) -> dict | None:
    """name -> [hash of its deparsed definition, project names it uses] for every
    top-level assignment of the file (one Rscript per content of the file, which
    parses the file and evaluates nothing of it)."""
    import subprocess
    from .recipes import rscript
    try:
        p = subprocess.run([rscript(), "--vanilla", "-e", R_FACTS, full], capture_output=True, text=True,
                           timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if p.returncode != 0:
        return None
    defs = {}
    for block in p.stdout.split("\f\n"):
        head, _, body = block.lstrip("\n").partition("\n")
        if not head.startswith("def\t"):
            continue
        _, name, uses = head.split("\t", 2)
        defs[name] = [hash_bytes(body.encode()), uses.split()]
    return {"defs": defs}


def r_parts(closure, rel: str, fn: str) -> dict:
    facts = closure.facts(rel, "rfacts:2", r_facts)
    if facts is None or fn not in facts["defs"]:
        return {f"import:{rel}": closure.hasher.hash(rel)}  # not parsed: the whole file counts
    out: dict = {}
    todo = [fn]
    while todo:
        n = todo.pop()
        if f"code:{rel}:{n}" in out:
            continue
        h, uses = facts["defs"][n]
        out[f"code:{rel}:{n}"] = h
        todo.extend(u for u in uses if u in facts["defs"])
    return dict(sorted(out.items()))
