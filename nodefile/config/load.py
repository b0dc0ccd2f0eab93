"""Read and validate a Nodefile into a Project.

Every problem found is collected; a ConfigError carries all of them, each with
file, line and key, so `node check` can report everything at once.

The steps of a load (_Builder.build): the top-level tables, the declarations
gathered from Nodefiles and templates (gather.py), each validated into a draft
(recipes by recipes.py), pattern instances, then inputs resolved (resolve.py).
The vocabulary of keys and the project-wide tables are in schema.py.
"""
from __future__ import annotations

import os
import re

from ..errors import ConfigError, Problem
from ..model import Entry, Project
from ..pathsafe import OutputGuard
from . import cache, schema
from .locate import Ctx, read_toml
from .schema import NAME, NODE_KEYS, PROJECT_KEYS, TOP_KEYS, did_you_mean, find_nodefile, norm


def load_project(path: str | None = None, overrides: dict | None = None,
                 check_sources: bool = True, requests=(), use_cache: bool = True, strict: bool = False,
                 freeze: bool = False) -> Project:
    """Load and validate the project. `requests`: target paths (relative to the
    current folder) that may name instances of pattern nodes. With use_cache, a
    project parsed before from the same files is reused (config/cache.py). strict
    (node check): a missing source is an error; otherwise it is kept in
    Project.missing and blocks only the nodes that need it (engine.check_missing).
    freeze: what exists after the load is frozen for the garbage collector (a
    one-shot command; cache.gc_paused)."""
    nodefile = find_nodefile(path)
    root = os.path.dirname(nodefile)
    key = cache.cache_key(nodefile, overrides or {}, requests, os.getcwd()) if use_cache and check_sources else None
    if key is not None:
        project = cache.load(root, key, freeze)
        if project is not None:
            return project
    display = os.path.relpath(nodefile)
    with cache.gc_paused(freeze):
        data, text = read_toml(nodefile, display)
        ctx = Ctx(display, text, path=nodefile)
        builder = _Builder(root, nodefile, data, ctx, overrides or {}, check_sources, requests)
        builder.strict = strict
        project = builder.build()
    if key is not None:
        cache.store(project, key)
    return project


class _Draft:
    """A node declaration validated on its own, before inputs are resolved."""
    __slots__ = ("decl", "name", "outputs", "recipes", "params", "priority", "always", "order", "is_pattern",
                 "wild_names", "regexes", "constraints")


class _Builder:
    def __init__(self, root, nodefile, data, ctx, overrides, check_sources, requests=()):
        self.root = root
        self.nodefile = nodefile
        self.data = data
        self.ctx = ctx
        self.overrides = overrides
        self.check_sources = check_sources
        self.requests = requests
        from .recipes import RecipeParser  # the parser's parts: not needed when the cache answers
        self.recipe_parser = RecipeParser(root)  # recipes parsed once for nodes written alike
        self.order = 0  # the next declaration order (Node.order): drafts, then instances as made
        self.params_failed = False
        self.scans: list[tuple] = []  # instances from files (Project.scans)
        self.strict = False  # node check: a missing source is an error (else Project.missing)
        self.missing: list[tuple] = []  # (path, nodes needing it, message): Project.missing
        self.missing_problems: list[Problem] = []  # the same, said with the Nodefile's other errors
        self.param_files: list[str] = []  # `[project] params` files read: sources of the project
        self.guard = OutputGuard(root)  # outputs by their real location (pathsafe.py)
        self._real_dirs: dict = {}

    # -- files -------------------------------------------------------------------------
    def locate_use(self, ref: str, ctx, cwd: str, is_template: bool):
        if ref.startswith("package:"):
            pkg, _, sub = ref[8:].partition(":")
            if not sub:
                pkg, _, sub = ref[8:].partition("/")
            try:
                import importlib.resources as ir
                p = str(ir.files(pkg).joinpath(sub))
            except Exception:  # not importable, or its import fails: not found
                return None, ref
            return (p if os.path.isfile(p) else None), ref
        base = os.path.dirname(ctx.path)
        p = os.path.normpath(os.path.join(base, ref))
        return (p if os.path.isfile(p) else None), ref

    def read(self, path: str, label: str):
        display = os.path.relpath(path) if not label.startswith("package:") else label
        try:
            data, text = read_toml(path, display)
        except ConfigError as e:
            self.ctx.problems.extend(e.problems)
            return None
        return data, Ctx(display, text, self.ctx.problems, path)

    def rel_or_abs(self, folder: str) -> str:
        rel = os.path.relpath(folder, self.root).replace(os.sep, "/")
        if rel == ".":
            return ""
        return folder if rel.startswith("../") or rel == ".." else rel

    # -- top level -----------------------------------------------------------------
    def build(self) -> Project:
        from .gather import Gatherer, problems_dedup  # with the parser: not needed when the cache answers
        c = self.ctx
        c.unknown_keys(self.data, TOP_KEYS, (), "top-level table")
        proj = self._table(self.data.get("project", {}), ("project",))
        c.unknown_keys(proj, PROJECT_KEYS, ("project",))
        params = self.merged_params(self.data, c, self.root)
        for k, v in self.overrides.items():
            if k not in params:
                c.problems.append(Problem(
                    f"--set {k}: no such param in [params]{did_you_mean(k, params)}", c.display,
                    c.loc.line(("params",)), "params"))
            else:
                params[k] = v
        self.params = params
        gathered = Gatherer(self).run(self.data, c, "", params)
        if self.params_failed:  # every node's params would be reported unknown: say only why
            raise ConfigError(problems_dedup(c.problems))
        stores = schema.stores(gathered.stores, self.root)
        nodes = self._nodes(gathered, stores)
        default = schema.default_targets(proj, nodes, c)
        jobs, cache_on, python = schema.project_values(proj, c)
        warm, preload = schema.workers_options(self.data, proj, c)
        executor = schema.executor_table(self.data, c)
        if c.problems:
            raise ConfigError(problems_dedup(c.problems + self.missing_problems))
        producers = {p.rstrip("/"): n.name for n in nodes.values() if n.recipes for p in n.output_paths}
        dirs = tuple((p, n.name) for n in nodes.values() if n.recipes for p in n.output_paths if p.endswith("/"))
        return Project(root=self.root, file=self.nodefile, name=str(proj.get("name") or os.path.basename(self.root)),
                       nodes=nodes, producers=producers, params=params, default=default,
                       jobs=jobs, cache=cache_on, python=python, stores=stores, dir_outputs=dirs,
                       warm=warm, preload=preload, executor=executor,
                       sources=tuple(dict.fromkeys(gathered.sources + self.param_files)), scans=tuple(self.scans),
                       missing=tuple(self.missing))

    def merged_params(self, data: dict, ctx, folder: str) -> dict:
        """A Nodefile's [params] over the values of its `[project] params` file (if any)."""
        params = data.get("params", {})
        if not isinstance(params, dict):
            ctx.err(f"must be a table, not {type(params).__name__}", (), "params")
            params = {}
        proj = data.get("project")
        ref = proj.get("params") if isinstance(proj, dict) else None
        if ref is None:
            return dict(params)
        if not isinstance(ref, str) or not ref:
            ctx.err("params must name a file of params (TOML, JSON or YAML)", ("project",), "params")
            return dict(params)
        from .paramfile import read_params
        path = os.path.normpath(os.path.join(folder, ref))
        self.param_files.append(path)
        try:
            from_file = read_params(path, os.path.relpath(path))
        except ConfigError as e:
            self.params_failed = True
            for p in e.problems:  # where the Nodefile names the file, when the file says no more
                ctx.problems.append(p if p.file else Problem(p.message, ctx.display,
                                                             ctx.loc.line(("project",), "params"), "project.params"))
            return dict(params)
        return {**from_file, **params}

    def _table(self, value, table: tuple) -> dict:
        if not isinstance(value, dict):
            self.ctx.err(f"must be a table, not {type(value).__name__}", table[:-1], table[-1])
            return {}
        return value

    # -- nodes -------------------------------------------------------------------------
    def _draft(self, decl, stores, order: int) -> _Draft | None:
        c, spec, t, name = decl.ctx, decl.spec, decl.table, decl.name
        if not NAME.match(t[-1]):
            c.err(f"invalid node name '{t[-1]}' (letters, digits, '_' and '-')", ("nodes",), t[-1])
            return None
        if not isinstance(spec, dict):
            c.err("a node must be a table", ("nodes",), t[-1])
            return None
        c.unknown_keys(spec, NODE_KEYS, t)
        d = _Draft()
        d.decl, d.name, d.order = decl, name, order
        d.outputs = self.entries(spec.get("outputs", []), t, "outputs", base=decl.cwd, ctx=c)
        wild = self._output_wildcards(d.outputs, c, t)
        d.is_pattern = bool(wild) and not decl.wildcards
        d.wild_names = wild
        d.regexes = []
        d.constraints = {}
        if d.is_pattern:
            _pattern_outputs(d, spec, c, t)
        elif "matrix" in spec or "wildcards" in spec:
            if not decl.wildcards:
                c.err("matrix and wildcards need wildcards in the outputs, e.g. outputs = \"fits/{model}.json\"",
                      t, "matrix" if "matrix" in spec else "wildcards")
        d.recipes = self.recipe_parser.recipes(spec, t, stores, decl)
        d.outputs = self.recipe_parser.value_outputs(d, c, t)
        if d.recipes and not d.outputs:
            c.err("a node with a recipe must declare outputs", t)
        if not d.recipes and d.outputs:
            c.err("a node with outputs needs a recipe (python, r, shell, call or recipes = [...])", t)
        d.params = self.recipe_parser.params(spec.get("params", []), t, decl)
        pr = spec.get("priority", 0)
        if not isinstance(pr, int) or isinstance(pr, bool):
            c.err("priority must be an integer", t, "priority")
            pr = 0
        d.priority = pr
        d.always = spec.get("always", False)
        if not isinstance(d.always, bool):
            c.err("always must be true or false", t, "always")
            d.always = False
        return d

    def _output_wildcards(self, outputs, c, t: tuple) -> list[str]:
        """Every output checked to lie inside the project; the wildcards they use."""
        from . import patterns
        wild: list[str] = []
        for e in outputs:
            for p in e.paths:
                if p.startswith("../") or p == ".." or os.path.isabs(p):
                    c.err(f"output '{e.source}' lies outside the project root", t, "outputs")
                elif p in ("", "/"):
                    c.err(f"output '{e.source}' is the project root itself", t, "outputs")
                elif self.guard.problem(p, self._real_dirs):
                    c.err(self.guard.problem(p, self._real_dirs), t, "outputs")
                for w in patterns.wildcards_in(p):
                    if w not in wild:
                        wild.append(w)
        return wild

    def instance(self, pat: _Draft, values: dict, stores) -> _Draft | None:
        """An instance of a pattern node: the pattern's parsed draft with the wildcard
        values filled into its outputs (and, at resolution, its inputs). Recipes,
        params and placeholder checks are shared with the pattern: parsed once.
        It takes the next declaration order, made or not."""
        from . import patterns
        from .gather import Decl
        order = self.order
        self.order += 1
        decl = pat.decl
        spec = {k: v for k, v in decl.spec.items() if k not in ("matrix", "wildcards")}
        if "inputs" in spec:
            spec["inputs"] = _map_strings(spec["inputs"], lambda s: patterns.fill_paths(s, values))
        name = patterns.instance_name(decl.name, pat.wild_names, values)
        inst = Decl(name, spec, decl.ctx, decl.table, decl.cwd, decl.script_base, decl.params, decl.scopes,
                    tuple((w, values[w]) for w in pat.wild_names), decl.name)
        d = _Draft()
        d.decl, d.name, d.order = inst, name, order
        outs = []
        for e in pat.outputs:
            paths = tuple(norm(patterns.fill_paths(p, values)) for p in e.paths)
            for p in paths:
                if p.startswith("../") or p == ".." or os.path.isabs(p) or p in ("", "/"):
                    decl.ctx.err(f"instance {name}: output '{p}' lies outside the project root", decl.table, "outputs")
                    return None
                why = self.guard.problem(p, self._real_dirs)
                if why:
                    decl.ctx.err(f"instance {name}: {why}", decl.table, "outputs")
                    return None
            outs.append(Entry(e.name, paths, e.many, e.source))
        d.outputs = tuple(outs)
        d.recipes, d.params, d.priority = self.recipe_parser.for_instance(pat.recipes, values), pat.params, pat.priority
        d.always = pat.always
        d.is_pattern, d.wild_names, d.regexes, d.constraints = False, pat.wild_names, [], {}
        return d

    def _file_instances(self, d: _Draft, text: str) -> list[dict]:
        """`matrix = "books/{book}.txt"`: the wildcard values of the files that exist."""
        from . import filematrix, patterns
        c, t = d.decl.ctx, d.decl.table
        pat = norm(text, d.decl.cwd) if text else ""
        wild = patterns.wildcards_in(pat)
        if not wild or set(wild) != set(d.wild_names):
            c.err(f"matrix '{text}': a pattern of files must use the outputs' wildcards "
                  f"({', '.join(d.wild_names)}), e.g. matrix = \"books/{{{d.wild_names[0]}}}.txt\"", t, "matrix")
            return []
        if pat.startswith("../") or os.path.isabs(pat):
            c.err(f"matrix '{text}' lies outside the project root", t, "matrix")
            return []
        glob, files, values = filematrix.scan(self.root, pat, d.constraints)
        self.scans.append((d.name, pat, glob, files, tuple(d.wild_names)))
        return [{w: v[w] for w in d.wild_names} for v in values]

    def _nodes(self, gathered, stores: dict) -> dict:
        drafts: dict[str, _Draft] = {}
        pats: list[_Draft] = []
        groups: dict[str, list[str]] = {}
        for decl in gathered.decls:
            d = self._draft(decl, stores, self.order)
            self.order += 1
            if d is None:
                continue
            if d.name in drafts:
                decl.ctx.err(f"node '{d.name}' is declared twice", decl.table)
                continue
            if d.is_pattern:
                pats.append(d)
                groups[d.name] = self._matrix(d, stores, drafts)
            drafts[d.name] = d  # a pattern's name: an alias of its instances
        self._use_groups(gathered, drafts, groups)
        from .resolve import Resolver
        resolver = Resolver(self, drafts, pats, groups, stores)
        nodes = resolver.run()
        self.missing, self.missing_problems = resolver.missing_sources, resolver.missing_problems
        return nodes

    def _matrix(self, d: _Draft, stores, drafts: dict) -> list[str]:
        """A pattern's `matrix` instances (a table of values, or files): their names."""
        from . import patterns
        decl = d.decl
        spec = decl.spec
        members: list[str] = []
        if "matrix" not in spec:
            return members
        inst = self._file_instances(d, spec["matrix"]) if isinstance(spec["matrix"], str) \
            else patterns.matrix_instances(spec["matrix"])
        if isinstance(inst, str):
            decl.ctx.err(inst, decl.table, "matrix")
            inst = []
        for values in inst:
            if set(values) != set(d.wild_names):
                decl.ctx.err(f"matrix gives {', '.join(sorted(values))}; the outputs' wildcards are "
                             f"{', '.join(d.wild_names)}", decl.table, "matrix")
                break
            off = [f"{w}={values[w]}" for w in d.wild_names
                   if w in d.constraints and not _fullmatch(d.constraints[w], values[w])]
            if off:
                decl.ctx.err(f"matrix value {', '.join(off)} does not match its wildcards "
                             f"constraint", decl.table, "matrix")
                continue
            i = self.instance(d, values, stores)
            if i is not None and i.name not in drafts:
                drafts[i.name] = i
                members.append(i.name)
        return members

    @staticmethod
    def _use_groups(gathered, drafts: dict, groups: dict) -> None:
        """[use] names: aliases of the sub-pipeline's default nodes, or of all of its nodes."""
        for gname, (gctx, gt, prefix, default) in gathered.groups.items():
            if gname in drafts:
                gctx.err(f"'{gname}' is both a node and a [use] name", gt)
                continue
            if default:
                members = [prefix + x for x in ([default] if isinstance(default, str) else default)]
                for m in members:
                    if m not in drafts:
                        gctx.err(f"sub-pipeline's default names unknown node '{m[len(prefix):]}'", gt, "nodefile")
                members = [m for m in members if m in drafts]
            else:
                members = [n for n in drafts if n.startswith(prefix) and "[" not in n[len(prefix):].split(".")[0]]
            groups[gname] = members

    def entries(self, value, t: tuple, key: str, allow_names=False, base: str = "",
                 ctx=None) -> tuple[Entry, ...]:
        """Normalise outputs (or raw inputs) to Entries; inputs are resolved later."""
        c = ctx or self.ctx
        out: list[Entry] = []

        def one(name, v):
            if isinstance(v, str):
                if not v:
                    c.err(f"empty path in {key}", t, key)
                    return
                out.append(Entry(name, (v if allow_names else norm(v, base),), False, v))
            elif isinstance(v, list) and all(isinstance(x, str) and x for x in v):
                out.append(Entry(name, tuple(v if allow_names else [norm(x, base) for x in v]), True, ", ".join(v)))
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

def _pattern_outputs(d: _Draft, spec: dict, c, t: tuple) -> None:
    """A pattern node's wildcard constraints checked, and each output's regex."""
    from . import patterns
    wild = d.wild_names
    cons = spec.get("wildcards", {})
    if not isinstance(cons, dict) or not all(isinstance(v, str) for v in cons.values()):
        c.err('wildcards must be a table of NAME = "REGEX"', t, "wildcards")
        cons = {}
    d.constraints = cons
    for k in cons:
        if k not in wild:
            c.err(f"wildcards.{k}: '{k}' is not a wildcard of the outputs ({', '.join(wild)})", t, "wildcards")
    for e in d.outputs:
        for p in e.paths:
            missing = [w for w in wild if w not in patterns.wildcards_in(p)]
            if missing:
                c.err(f"output '{p}' lacks wildcard(s) {', '.join(missing)}: every output of a pattern "
                      f"node must use all of them", t, "outputs")
                continue  # not matched against requested paths: it names no instance
            try:
                d.regexes.append(patterns.compile_output(p, cons))
            except (re.error, OverflowError, RecursionError) as ex:  # `a{99999999999}`, deep nesting
                c.err(f"invalid wildcard regex: {ex}", t, "wildcards")


def _fullmatch(rx: str, value: str) -> bool:
    try:
        return re.fullmatch(rx, value) is not None
    except (re.error, OverflowError, RecursionError):
        return True


def _map_strings(value, f):
    if isinstance(value, str):
        return f(value)
    if isinstance(value, list):
        return [_map_strings(v, f) for v in value]
    if isinstance(value, dict):
        return {k: _map_strings(v, f) for k, v in value.items()}
    return value
