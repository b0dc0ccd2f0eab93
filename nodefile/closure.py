"""The code closure of a recipe script: the local files it imports or sources,
transitively, so that editing a helper rebuilds exactly the nodes that use it.

Python: `import a.b`, `from . import c`, `from a import b` (b a module or a name
in a), resolved against the script's folder, the node's folder and the project
root (the last two are on PYTHONPATH for recipes). A `call` recipe's module is resolved against the node's folder and
the project root, then followed the same way. Package `__init__.py` files along the way
count (they run on import). Only files under the project root are followed.
R: every literal `source("...")` / `sys.source("...")`, resolved against the
working directory (the node's folder), as R itself does.

Each file's direct dependencies are cached by (path, content hash) in the
state store, so a no-op build parses nothing.
"""
from __future__ import annotations

import json
import os
import re

_R_SOURCE = re.compile(r"""(?<![\w.])(?:sys\.)?source\s*\(\s*(?:file\s*=\s*)?(["'])((?:(?!\1).)+)\1""")


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root + os.sep)


class Closure:
    def __init__(self, root: str, hasher, db=None):
        self.root = os.path.realpath(root)
        self.hasher = hasher
        self.db = db
        self.memo: dict[tuple, list[str]] = {}
        self._loaded = False
        self._cache: dict[tuple, list[str]] = {}
        self._new: dict[tuple, list[str]] = {}

    # -- persistence -------------------------------------------------------------------
    def _load(self) -> None:
        self._loaded = True
        if self.db is None:
            return
        self.db.execute("CREATE TABLE IF NOT EXISTS closures(path TEXT, kind TEXT, ctx TEXT, hash TEXT, deps TEXT, "
                        "PRIMARY KEY(path, kind, ctx))")
        for path, kind, ctx, h, deps in self.db.execute("SELECT path, kind, ctx, hash, deps FROM closures"):
            self._cache[(path, kind, ctx, h)] = json.loads(deps)

    def save(self) -> None:
        if self.db is None or not self._new:
            return
        rows = [(p, k, c, h, json.dumps(d)) for (p, k, c, h), d in self._new.items()]
        self._new = {}
        try:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany("INSERT OR REPLACE INTO closures VALUES (?,?,?,?,?)", rows)
            self.db.execute("COMMIT")
        except Exception:
            try:
                self.db.execute("ROLLBACK")
            except Exception:
                pass

    # -- the closure -------------------------------------------------------------------
    def __call__(self, node, recipe) -> list[str]:
        """Project-relative paths of the files the script needs, transitively (not itself)."""
        if recipe.kind == "call":
            return self._call(node, recipe)
        if recipe.kind == "r_call":
            return [recipe.target.partition("::")[0]]
        if not recipe.script or recipe.kind not in ("python", "r"):
            return []
        key = (recipe.script, recipe.kind, node.cwd)
        if key in self.memo:
            return self.memo[key]
        seen: list[str] = []
        todo = [recipe.script]
        visited = {recipe.script}
        while todo:
            cur = todo.pop()
            for dep in self._direct(cur, recipe.kind, node.cwd):
                if dep not in visited:
                    visited.add(dep)
                    seen.append(dep)
                    todo.append(dep)
        self.memo[key] = sorted(seen)
        return self.memo[key]

    def _call(self, node, recipe) -> list[str]:
        """A `call` recipe's module (under the project root) and what it imports."""
        key = (recipe.target, "call", node.cwd)
        if key in self.memo:
            return self.memo[key]
        module = recipe.target.split(":", 1)[0]
        files = self.module_files(module, [os.path.join(self.root, node.cwd), self.root])
        seen: list[str] = []
        todo = []
        for f in files:
            real = os.path.realpath(f)
            if _under(real, self.root):
                rel = os.path.relpath(real, self.root).replace(os.sep, "/")
                if rel not in seen:
                    seen.append(rel)
                    todo.append(rel)
        while todo:
            cur = todo.pop()
            for dep in self._direct(cur, "python", node.cwd):
                if dep not in seen:
                    seen.append(dep)
                    todo.append(dep)
        self.memo[key] = sorted(seen)
        return self.memo[key]

    def facts(self, rel: str, kind: str, compute):
        """What `compute(full path, text)` says about one project file (a JSON value),
        cached by the file's content hash like its imports; None when the file is
        missing or compute returns None (not cached then)."""
        return self._cached(rel, kind, "", compute)

    def _cached(self, rel: str, kind: str, ctx: str, compute):
        """compute(full path, text) of a project file, cached by (file, kind, ctx, content hash)."""
        h = self.hasher.hash(rel)
        if h is None:
            return None
        if not self._loaded:
            self._load()
        k = (rel, kind, ctx, h)
        if k in self._cache:
            return self._cache[k]
        full = self.hasher.abspath(rel)
        try:
            with open(full, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return None
        out = compute(full, text)
        if out is not None:
            self._cache[k] = self._new[k] = out
        return out

    def code(self, node, recipe) -> dict:
        """Key parts of a function recipe (`call`, `r_call`): the function and the
        project code it uses, per function (codeclosure.py)."""
        from . import codeclosure
        return codeclosure.parts(self, node, recipe)

    def _direct(self, rel: str, kind: str, cwd: str) -> list[str]:
        # cwd: R resolves source() against it; Python searches it (a sub-pipeline's folder)
        return self._cached(rel, kind, cwd, lambda full, text: self._deps(full, text, kind, cwd)) or []

    def _deps(self, full: str, text: str, kind: str, cwd: str) -> list[str]:
        """The project files one file's code names directly (sorted, relative to the root)."""
        deps = self._python(full, text, cwd) if kind == "python" else self._r(text, cwd)
        out = set()
        for d in deps:
            real = os.path.realpath(d)
            if _under(real, self.root) and os.path.isfile(real):
                out.add(os.path.relpath(real, self.root).replace(os.sep, "/"))
        return sorted(out)

    def _r(self, text: str, cwd: str) -> list[str]:
        base = os.path.join(self.root, cwd)
        out = []
        for line in text.splitlines():
            code = line.split("#", 1)[0] if "#" in line and '"#' not in line and "'#" not in line else line
            for m in _R_SOURCE.finditer(code):
                out.append(os.path.normpath(os.path.join(base, m.group(2))))
        return out

    def _python(self, full: str, text: str, cwd: str = "") -> list[str]:
        try:
            import ast  # ~3 ms: only when a script is parsed (its deps are cached by hash)
            tree = ast.parse(text, filename=full)
        except (SyntaxError, ValueError):
            return []
        here = os.path.dirname(full)
        search = [here] + ([os.path.join(self.root, cwd)] if cwd else []) + [self.root]
        out: list[str] = []
        for n in ast.walk(tree):
            if isinstance(n, ast.Import):
                for a in n.names:
                    out += self.module_files(a.name, search)
            elif isinstance(n, ast.ImportFrom):
                if n.level:
                    base = here
                    for _ in range(n.level - 1):
                        base = os.path.dirname(base)
                    bases = [base]
                    mod = n.module or ""
                    found = self.module_files_in(base, mod) if mod else [os.path.join(base, "__init__.py")]
                else:
                    bases = search
                    mod = n.module or ""
                    found = self.module_files(mod, search)
                out += found
                for a in n.names:
                    if a.name == "*":
                        continue
                    sub = f"{mod}.{a.name}" if mod else a.name
                    for b in bases:
                        out += self.module_files_in(b, sub, only_last=True)
        return out

    def module_files(self, dotted: str, search) -> list[str]:
        for base in search:
            found = self.module_files_in(base, dotted)
            if found:
                return found
        return []

    def module_files_in(self, base: str, dotted: str, only_last: bool = False) -> list[str]:
        """Files a dotted module resolves to under base: each package's __init__.py and the module."""
        parts = dotted.split(".")
        out = []
        cur = base
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            pkg = os.path.join(cur, part)
            if os.path.isfile(os.path.join(pkg, "__init__.py")):
                if not only_last or last:
                    out.append(os.path.join(pkg, "__init__.py"))
                cur = pkg
                continue
            if last and os.path.isfile(pkg + ".py"):
                out.append(pkg + ".py")
                return out
            if os.path.isdir(pkg) and not last:  # a namespace package
                cur = pkg
                continue
            return [] if not out or not only_last else []
        return out
