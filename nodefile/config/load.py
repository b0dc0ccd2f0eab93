"""Read and validate a Nodefile into a Project.

Every problem found is collected; a ConfigError carries all of them, each with
file, line and key, so `node check` can report everything at once.
"""
from __future__ import annotations

import difflib
import glob as globmod
import os
import posixpath
import re
import sys

from ..errors import ConfigError, Problem
from ..model import Entry, Node, Project, Recipe, RECIPE_KINDS, Store
from .. import placeholders
from .locate import Locator

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

NODEFILE = "Nodefile.toml"
TOP_KEYS = ("project", "params", "stores", "nodes", "use")
PROJECT_KEYS = ("name", "default", "jobs", "cache", "python")
STORE_KEYS = ("url", "push", "options")
RECIPE_OPTS = ("name", "args", "env", "timeout", "retries", "resources")
NODE_KEYS = ("outputs", "inputs", "params", "recipes", "priority", "wildcards", "matrix") \
    + RECIPE_KINDS + RECIPE_OPTS[1:]
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")
_GLOB = re.compile(r"[*?\[]")


def find_nodefile(start: str | None = None) -> str:
    """The Nodefile.toml in `start` or its nearest ancestor folder."""
    here = os.path.abspath(start or os.getcwd())
    if os.path.isfile(here):
        return here
    d = here
    while True:
        cand = os.path.join(d, NODEFILE)
        if os.path.isfile(cand):
            return cand
        parent = os.path.dirname(d)
        if parent == d:
            raise ConfigError(f"no {NODEFILE} in {here} or any parent folder")
        d = parent


def did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def read_toml(path: str, display: str) -> tuple[dict, str]:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ConfigError(f"{display}: cannot read: {e.strerror}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{display}: not UTF-8 ({e.reason} at byte {e.start})")
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
        line = int(m.group(1)) if m else None
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", msg)
        raise ConfigError([Problem(f"invalid TOML: {msg}", display, line)])


class _Ctx:
    """Problems collected while loading one Nodefile."""

    def __init__(self, display: str, text: str):
        self.display = display
        self.loc = Locator(text)
        self.problems: list[Problem] = []

    def err(self, msg: str, table: tuple = (), key: str | None = None) -> None:
        keyname = ".".join(table + ((key,) if key else ()))
        self.problems.append(Problem(msg, self.display, self.loc.line(table, key), keyname))


def load_project(path: str | None = None, overrides: dict | None = None,
                 check_sources: bool = True) -> Project:
    nodefile = find_nodefile(path)
    root = os.path.dirname(nodefile)
    display = os.path.relpath(nodefile)
    data, text = read_toml(nodefile, display)
    ctx = _Ctx(display, text)
    return _Builder(root, nodefile, data, ctx, overrides or {}, check_sources).build()


def norm(path: str, base: str = "") -> str:
    """Project-relative, normalised, '/'-separated path (a trailing '/' is kept)."""
    is_dir = path.endswith("/")
    p = path if os.path.isabs(path) else posixpath.join(base, path)
    p = posixpath.normpath(p)
    if p == ".":
        p = ""
    return p + "/" if is_dir and p else p


class _Builder:
    def __init__(self, root, nodefile, data, ctx, overrides, check_sources):
        self.root = root
        self.nodefile = nodefile
        self.data = data
        self.ctx = ctx
        self.overrides = overrides
        self.check_sources = check_sources

    # -- top level -----------------------------------------------------------------
    def build(self) -> Project:
        c = self.ctx
        for k in self.data:
            if k not in TOP_KEYS:
                c.err(f"unknown top-level table '{k}'{did_you_mean(k, TOP_KEYS)}", (), k)
        proj = self._table(self.data.get("project", {}), ("project",))
        for k in proj:
            if k not in PROJECT_KEYS:
                c.err(f"unknown key '{k}'{did_you_mean(k, PROJECT_KEYS)}", ("project",), k)
        params = dict(self._table(self.data.get("params", {}), ("params",)))
        for k, v in self.overrides.items():
            if k not in params:
                c.problems.append(Problem(
                    f"--set {k}: no such param in [params]{did_you_mean(k, params)}", c.display,
                    c.loc.line(("params",)), "params"))
            else:
                params[k] = v
        self.params = params
        stores = self._stores()
        if "use" in self.data:
            c.err("[use] (templates and sub-pipelines) is not supported by this version", ("use",))
        raw_nodes = self._table(self.data.get("nodes", {}), ("nodes",))
        nodes = self._nodes(raw_nodes, stores)
        default = self._default(proj, nodes)
        jobs = proj.get("jobs")
        if jobs is not None and (not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1):
            c.err("jobs must be a positive integer", ("project",), "jobs")
        cache = proj.get("cache", True)
        if not isinstance(cache, bool):
            c.err("cache must be true or false", ("project",), "cache")
        python = proj.get("python")
        if python is not None and not isinstance(python, str):
            c.err("python must be a string (an interpreter path)", ("project",), "python")
        if c.problems:
            raise ConfigError(c.problems)
        producers = {p.rstrip("/"): n.name for n in nodes.values() for p in n.output_paths}
        dirs = tuple((p, n.name) for n in nodes.values() for p in n.output_paths if p.endswith("/"))
        return Project(root=self.root, file=self.nodefile, name=str(proj.get("name") or os.path.basename(self.root)),
                       nodes=nodes, producers=producers, params=params, default=default,
                       jobs=jobs, cache=cache, python=python, stores=stores, dir_outputs=dirs,
                       sources=(self.nodefile,))

    def _table(self, value, table: tuple) -> dict:
        if not isinstance(value, dict):
            self.ctx.err(f"must be a table, not {type(value).__name__}", table[:-1], table[-1])
            return {}
        return value

    def _stores(self) -> dict:
        out = {}
        for name, st in self._table(self.data.get("stores", {}), ("stores",)).items():
            t = ("stores", name)
            if not isinstance(st, dict):
                self.ctx.err("a store must be a table with a url", ("stores",), name)
                continue
            for k in st:
                if k not in STORE_KEYS:
                    self.ctx.err(f"unknown key '{k}'{did_you_mean(k, STORE_KEYS)}", t, k)
            url = st.get("url")
            if not isinstance(url, str) or not url:
                self.ctx.err("a store needs a url (a path or an fsspec URL)", t, "url")
                continue
            if "://" not in url and not os.path.isabs(url):
                url = os.path.normpath(os.path.join(self.root, url))
            opts = st.get("options", {})
            if not isinstance(opts, dict):
                self.ctx.err("options must be a table of fsspec storage options", t, "options")
                opts = {}
            out[name] = Store(name, url, bool(st.get("push", False)), tuple(opts.items()))
        return out

    def _default(self, proj, nodes) -> tuple[str, ...]:
        d = proj.get("default")
        if d is None:
            needed = {dep for n in nodes.values() for dep in n.deps}
            return tuple(n for n in nodes if n not in needed)
        if isinstance(d, str):
            d = [d]
        if not isinstance(d, list) or not all(isinstance(x, str) for x in d):
            self.ctx.err("default must be a node name or a list of them", ("project",), "default")
            return ()
        for x in d:
            if x not in nodes:
                self.ctx.err(f"default names unknown node '{x}'{did_you_mean(x, nodes)}", ("project",), "default")
        return tuple(d)

    # -- nodes -------------------------------------------------------------------------
    def _nodes(self, raw: dict, stores: dict) -> dict:
        c = self.ctx
        decls = []
        for order, (name, spec) in enumerate(raw.items()):
            t = ("nodes", name)
            if not _NAME.match(name):
                c.err(f"invalid node name '{name}' (letters, digits, '_' and '-')", ("nodes",), name)
                continue
            if not isinstance(spec, dict):
                c.err("a node must be a table", ("nodes",), name)
                continue
            for k in spec:
                if k not in NODE_KEYS:
                    c.err(f"unknown key '{k}'{did_you_mean(k, NODE_KEYS)}", t, k)
            if "matrix" in spec or "wildcards" in spec:
                c.err("pattern nodes (matrix, wildcards) are not supported by this version", t,
                      "matrix" if "matrix" in spec else "wildcards")
            outputs = self._entries(spec.get("outputs", []), t, "outputs")
            for e in outputs:
                for p in e.paths:
                    if p.startswith("../") or p == ".." or os.path.isabs(p):
                        c.err(f"output '{e.source}' lies outside the project root", t, "outputs")
                    elif "{" in p:
                        c.err(f"output '{p}' has a wildcard: pattern nodes are not supported by this version", t, "outputs")
            recipes = self._recipes(spec, t, stores)
            if recipes and not outputs:
                c.err("a node with a recipe must declare outputs", t)
            if not recipes and outputs:
                c.err("a node with outputs needs a recipe (python, r, shell, call or recipes = [...])", t)
            params = self._params(spec.get("params", []), t)
            priority = spec.get("priority", 0)
            if not isinstance(priority, int) or isinstance(priority, bool):
                c.err("priority must be an integer", t, "priority")
                priority = 0
            decls.append((name, spec, t, outputs, recipes, params, priority, order))
        # producers: literal outputs and directory outputs
        producers: dict[str, str] = {}
        dirs: list[tuple[str, str]] = []
        for name, spec, t, outputs, *_ in decls:
            for e in outputs:
                for p in e.paths:
                    key = p.rstrip("/")
                    if key in producers and producers[key] != name:
                        c.err(f"output '{p}' is also declared by node '{producers[key]}'", t, "outputs")
                    producers[key] = name
                    if p.endswith("/"):
                        dirs.append((key + "/", name))
        for d, owner in dirs:
            for p, name in producers.items():
                if name != owner and p.startswith(d):
                    c.err(f"output '{p}' lies inside directory output '{d}' of node '{owner}'",
                          ("nodes", name), "outputs")
        names = [d[0] for d in decls]
        nodes: dict[str, Node] = {}
        missing: dict[str, list[tuple[str, tuple]]] = {}
        for name, spec, t, outputs, recipes, params, priority, order in decls:
            inputs, deps = self._inputs(spec.get("inputs", []), t, names, producers, dirs, missing, decls)
            script_inputs = []
            for r in recipes:
                if r.script:
                    owner = _producer_of(r.script, producers, dirs)
                    if owner:
                        deps.append(owner)
                    elif self.check_sources and not os.path.isfile(os.path.join(self.root, r.script)):
                        c.err(f"{r.kind} script '{r.script}' does not exist", t, r.kind if r.kind in spec else "recipes")
                    script_inputs.append(r.script)
            node = Node(name=name, outputs=outputs, inputs=inputs, params=params, recipes=recipes,
                        cwd="", file=self.ctx.display, line=c.loc.line(t), priority=priority,
                        order=order, deps=tuple(dict.fromkeys(d for d in deps if d != name)),
                        script_inputs=tuple(script_inputs))
            self._check_placeholders(node, t)
            nodes[name] = node
        for path, needers in sorted(missing.items()):
            who = ", ".join(sorted({n for n, _ in needers}))
            hint = did_you_mean(path, names)
            c.err(f"missing source '{path}' (no node produces it), needed by {who}{hint}",
                  needers[0][1], "inputs")
        if True:
            from ..graph import find_cycle
            cyc = find_cycle(nodes)
            if cyc:
                c.err("dependency cycle: " + " -> ".join(cyc), ("nodes", cyc[0]), "inputs")
        return nodes

    def _entries(self, value, t: tuple, key: str, allow_names=False) -> tuple[Entry, ...]:
        """Normalise outputs (or raw inputs) to Entries; inputs are resolved later."""
        c = self.ctx
        out: list[Entry] = []

        def one(name, v):
            if isinstance(v, str):
                if not v:
                    c.err(f"empty path in {key}", t, key)
                    return
                out.append(Entry(name, (v if allow_names else norm(v),), False, v))
            elif isinstance(v, list) and all(isinstance(x, str) and x for x in v):
                out.append(Entry(name, tuple(v if allow_names else [norm(x) for x in v]), True, ", ".join(v)))
            else:
                c.err(f"{key} entries must be paths (strings) or lists of paths", t, key)

        if isinstance(value, str):
            one(None, value)
        elif isinstance(value, list):
            for v in value:
                if isinstance(v, str):
                    one(None, v)
                else:
                    c.err(f"{key} as a list must hold strings; use a table for named entries", t, key)
        elif isinstance(value, dict):
            for n, v in value.items():
                one(n, v)
        else:
            c.err(f"{key} must be a string, a list or a table", t, key)
        return tuple(out)

    def _inputs(self, value, t, names, producers, dirs, missing, decls):
        c = self.ctx
        raw = self._entries(value, t, "inputs", allow_names=True)
        outputs_of = {d[0]: d[3] for d in decls}
        entries: list[Entry] = []
        deps: list[str] = []
        for e in raw:
            paths: list[str] = []
            kind = "path"
            for item in e.paths:
                if item in outputs_of:
                    kind = "node"
                    deps.append(item)
                    paths.extend(p for oe in outputs_of[item] for p in oe.paths)
                    continue
                p = norm(item)
                if _GLOB.search(p):
                    kind = "glob"
                    matched = self._glob(p, producers)
                    for m in matched:
                        owner = _producer_of(m, producers, dirs)
                        if owner:
                            deps.append(owner)
                    if not matched and self.check_sources:
                        c.err(f"input glob '{item}' matches no file", t, "inputs")
                    paths.extend(matched)
                    continue
                owner = _producer_of(p, producers, dirs)
                if owner:
                    deps.append(owner)
                elif self.check_sources and not os.path.exists(os.path.join(self.root, p)):
                    missing.setdefault(p if item == p else item, []).append((t[-1], t))
                paths.append(p)
            many = e.many or (kind != "path" and len(paths) != 1)
            entries.append(Entry(e.name, tuple(paths), many, e.source, kind))
        return tuple(entries), deps

    def _glob(self, pattern: str, producers: dict) -> list[str]:
        found = set()
        for m in globmod.glob(os.path.join(self.root, pattern), recursive=True):
            found.add(os.path.relpath(m, self.root).replace(os.sep, "/"))
        import fnmatch
        found.update(p for p in producers if fnmatch.fnmatchcase(p, pattern))
        return sorted(found)

    def _params(self, value, t) -> tuple:
        c = self.ctx
        out: dict = {}
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, str):
                if item not in self.params:
                    c.err(f"unknown param '{item}' (not in [params]){did_you_mean(item, self.params)}", t, "params")
                else:
                    out[item] = self.params[item]
            elif isinstance(item, dict):
                out.update(item)
            else:
                c.err("params must be names of [params] entries, an inline table, or a list of both", t, "params")
        return tuple(out.items())

    def _recipes(self, spec: dict, t: tuple, stores: dict) -> tuple[Recipe, ...]:
        c = self.ctx
        kinds = [k for k in RECIPE_KINDS if k in spec]
        defaults = {k: spec[k] for k in RECIPE_OPTS[1:] if k in spec}
        raw: list[tuple[dict, tuple]] = []
        if "recipes" in spec:
            if kinds:
                c.err(f"use either '{kinds[0]} = ...' or 'recipes = [...]', not both", t, kinds[0])
            rl = spec["recipes"]
            if not isinstance(rl, list) or not all(isinstance(r, dict) for r in rl):
                c.err("recipes must be a list of tables, e.g. [{ python = \"x.py\" }]", t, "recipes")
                return ()
            raw = [({**defaults, **r}, t) for r in rl]
        elif len(kinds) > 1:
            c.err(f"a node has one short-form recipe; found {', '.join(kinds)} (use recipes = [...])", t, kinds[1])
            return ()
        elif kinds:
            raw = [({kinds[0]: spec[kinds[0]], **defaults}, t)]
        recipes = []
        used_names: set[str] = set()
        for i, (r, tt) in enumerate(raw):
            rk = [k for k in RECIPE_KINDS if k in r]
            where = "recipes" if "recipes" in spec else (rk[0] if rk else None)
            unknown = [k for k in r if k not in RECIPE_KINDS and k not in RECIPE_OPTS]
            for k in unknown:
                c.err(f"unknown recipe key '{k}'{did_you_mean(k, RECIPE_KINDS + RECIPE_OPTS)}", tt, where)
            if len(rk) != 1:
                c.err(f"recipe {i + 1} must have exactly one of {', '.join(RECIPE_KINDS)}", tt, where)
                continue
            kind = rk[0]
            target = r[kind]
            if not isinstance(target, str) or not target:
                c.err(f"{kind} must be a non-empty string", tt, where)
                continue
            if kind in ("python", "r"):
                target = norm(target)
            if kind == "fetch" and target not in stores:
                c.err(f"fetch names unknown store '{target}'{did_you_mean(target, stores)}", tt, where)
            if kind == "call" and ":" not in target:
                c.err("call must be 'package.module:function'", tt, where)
            name = r.get("name") or kind
            if not isinstance(name, str):
                c.err("recipe name must be a string", tt, where)
                name = kind
            base, n = name, 2
            while name in used_names:
                name, n = f"{base}#{n}", n + 1
            used_names.add(name)
            args = r.get("args", [])
            if not isinstance(args, list):
                c.err("args must be a list of strings", tt, "args" if "args" in spec else where)
                args = []
            env = r.get("env", {})
            if not isinstance(env, dict):
                c.err("env must be a table of NAME = \"value\"", tt, "env" if "env" in spec else where)
                env = {}
            timeout = r.get("timeout")
            if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0):
                c.err("timeout must be a positive number of seconds", tt, "timeout" if "timeout" in spec else where)
                timeout = None
            retries = r.get("retries", 0)
            if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
                c.err("retries must be a non-negative integer", tt, where)
                retries = 0
            res = r.get("resources", {})
            if not isinstance(res, dict) or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in res.values()):
                c.err("resources must be a table of name = number, e.g. { cores = 2, mem_gb = 8 }", tt, where)
                res = {}
            recipes.append(Recipe(kind=kind, target=target, name=name,
                                  args=tuple(_toml_str(a) for a in args),
                                  env=tuple((str(k), _toml_str(v)) for k, v in env.items()),
                                  timeout=float(timeout) if timeout else None, retries=retries,
                                  resources=tuple(sorted((str(k), float(v)) for k, v in res.items()))))
        return tuple(recipes)

    def _check_placeholders(self, node: Node, t: tuple) -> None:
        ctx = placeholder_context(node)
        for r in node.recipes:
            templates = list(r.args) + [v for _, v in r.env]
            if r.kind == "shell":
                templates.append(r.target)
            for tpl in templates:
                for ref in placeholders.names_in(tpl):
                    try:
                        placeholders.resolve(ref, ctx)
                    except placeholders.PlaceholderError as e:
                        self.ctx.err(str(e), t, "shell" if r.kind == "shell" else "args")


def _toml_str(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _producer_of(path: str, producers: dict, dirs) -> str | None:
    p = path.rstrip("/")
    if p in producers:
        return producers[p]
    for d, owner in dirs:
        if p.startswith(d):
            return owner
    return None


def relative_to(path: str, cwd: str) -> str:
    """A project-relative path as seen from the recipe's working directory."""
    if not cwd or os.path.isabs(path):
        return path
    trail = "/" if path.endswith("/") else ""
    return posixpath.relpath(path, cwd) + trail


def placeholder_context(node: Node) -> dict:
    return {
        "inputs": [(e.name, [relative_to(p, node.cwd) for p in e.paths]) for e in node.inputs],
        "outputs": [(e.name, [relative_to(p, node.cwd) for p in e.paths]) for e in node.outputs],
        "params": node.params_dict,
        "wildcards": dict(node.wildcards),
        "node": node.name,
    }
