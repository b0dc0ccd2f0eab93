"""Read and validate a Nodefile into a Project.

Every problem found is collected; a ConfigError carries all of them, each with
file, line and key, so `node check` can report everything at once.
"""
from __future__ import annotations

import collections
import difflib
import os
import posixpath
import re

from ..errors import ConfigError, Problem
from ..model import Entry, Node, Project, Recipe, RECIPE_KINDS, Store
from .. import placeholders
from ..pathsafe import OutputGuard, glob_files, undecodable
from ..placeholders import placeholder_context
from .checks import is_amount, nul_problem, timeout_problem
from .locate import Locator

try:  # tomli's wheels are compiled (mypyc): 3x faster than the standard library's
    import tomli as tomllib  # copy of it (7.5 against 24 ms for 1,000 nodes)
except ImportError:  # pragma: no cover - a pure-Python install: the same parser
    import tomllib

NODEFILE = "Nodefile.toml"
TOP_KEYS = ("project", "params", "stores", "nodes", "use", "workers", "executor")
PROJECT_KEYS = ("name", "default", "jobs", "cache", "python", "params", "warm")
STORE_KEYS = ("url", "push", "options", "timeout")
RECIPE_OPTS = ("name", "args", "env", "timeout", "retries", "resources", "stdout", "warm", "returns")
_RECIPE_KEYS = RECIPE_KINDS + RECIPE_OPTS + ("recipes",)  # what a node's recipes are parsed from
NODE_KEYS = ("outputs", "inputs", "params", "recipes", "priority", "wildcards", "matrix", "always") \
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
    except RecursionError:  # tomli refuses arrays/tables nested over 400 deep this way
        raise ConfigError([Problem("invalid TOML: arrays or tables nested too deep", display)])
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
        line = int(m.group(1)) if m else None
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", msg)
        raise ConfigError([Problem(f"invalid TOML: {msg}", display, line)])
    except ValueError as e:  # an integer of more than 4,300 digits
        raise ConfigError([Problem(f"invalid TOML: {str(e).split(';')[0]}", display)])


class _Ctx:
    """One Nodefile or template: its display name, line locator, and the
    project-wide list of problems it reports into."""

    def __init__(self, display: str, text: str, problems: list | None = None, path: str = ""):
        self.display = display
        self.path = path
        self.loc = Locator(text)
        self.problems: list[Problem] = problems if problems is not None else []

    def err(self, msg: str, table: tuple = (), key: str | None = None) -> None:
        keyname = ".".join(table + ((key,) if key else ()))
        self.problems.append(Problem(msg, self.display, self.loc.line(table, key), keyname))

    def unknown_keys(self, table_value: dict, allowed, table: tuple, what: str = "key") -> None:
        """An error, with a did-you-mean, for every key not in `allowed`."""
        for k in table_value:
            if k not in allowed:
                self.err(f"unknown {what} '{k}'{did_you_mean(k, allowed)}", table, k)


def load_project(path: str | None = None, overrides: dict | None = None,
                 check_sources: bool = True, requests=(), use_cache: bool = True, strict: bool = False) -> Project:
    """Load and validate the project. `requests`: target paths (relative to the
    current folder) that may name instances of pattern nodes. With use_cache, a
    project parsed before from the same files is reused (config/cache.py). strict
    (node check): a missing source is an error; otherwise it is kept in
    Project.missing and blocks only the nodes that need it (engine.check_missing)."""
    from . import cache
    nodefile = find_nodefile(path)
    root = os.path.dirname(nodefile)
    key = cache.cache_key(nodefile, overrides or {}, requests, os.getcwd()) if use_cache and check_sources else None
    if key is not None:
        project = cache.load(root, key)
        if project is not None:
            return project
    display = os.path.relpath(nodefile)
    with cache.gc_paused():
        data, text = read_toml(nodefile, display)
        ctx = _Ctx(display, text, path=nodefile)
        builder = _Builder(root, nodefile, data, ctx, overrides or {}, check_sources, requests)
        builder.strict = strict
        project = builder.build()
    if key is not None:
        cache.store(project, key)
    return project


def norm(path: str, base: str = "") -> str:
    """Project-relative, normalised, '/'-separated path (a trailing '/' is kept)."""
    if not base and path and path[0] != "/" and "//" not in path and "./" not in path \
            and not path.endswith(".") and "\\" not in path:
        return path  # already normal: no empty, '.' or '..' part (the common case)
    is_dir = path.endswith("/")
    p = path if os.path.isabs(path) else posixpath.join(base, path)
    p = posixpath.normpath(p)
    if p == ".":
        p = ""
    return p + "/" if is_dir and p else p


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
        self._checked: set[str] = set()
        self._recipe_memo: dict = {}  # a node's recipe keys, as written -> its Recipes (when valid)
        self._placeholders_ok: set = set()  # (templates, node shape) whose placeholders resolve
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
        return data, _Ctx(display, text, self.ctx.problems, path)

    def rel_or_abs(self, folder: str) -> str:
        rel = os.path.relpath(folder, self.root).replace(os.sep, "/")
        if rel == ".":
            return ""
        return folder if rel.startswith("../") or rel == ".." else rel

    # -- top level -----------------------------------------------------------------
    def build(self) -> Project:
        from .gather import Gatherer, problems_dedup
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
        stores = self._stores(gathered.stores)
        nodes = self._nodes(gathered, stores)
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
        warm, preload = workers_options(self.data, proj, c)
        executor = executor_table(self.data, c)
        if c.problems:
            raise ConfigError(problems_dedup(c.problems + self.missing_problems))
        producers = {p.rstrip("/"): n.name for n in nodes.values() if n.recipes for p in n.output_paths}
        dirs = tuple((p, n.name) for n in nodes.values() if n.recipes for p in n.output_paths if p.endswith("/"))
        return Project(root=self.root, file=self.nodefile, name=str(proj.get("name") or os.path.basename(self.root)),
                       nodes=nodes, producers=producers, params=params, default=default,
                       jobs=jobs, cache=cache, python=python, stores=stores, dir_outputs=dirs,
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

    def _stores(self, raw: dict) -> dict:
        out = {}
        for name, (st, ctx, cwd) in raw.items():
            t = ("stores", name)
            if not isinstance(st, dict):
                ctx.err("a store must be a table with a url", ("stores",), name)
                continue
            ctx.unknown_keys(st, STORE_KEYS, t)
            url = st.get("url")
            if not isinstance(url, str) or not url:
                ctx.err("a store needs a url (a path or an fsspec URL)", t, "url")
                continue
            if "://" not in url and not os.path.isabs(url):
                url = os.path.normpath(os.path.join(self.root, cwd, url))
            opts = st.get("options", {})
            if not isinstance(opts, dict):
                ctx.err("options must be a table of fsspec storage options", t, "options")
                opts = {}
            out[name] = Store(name, url, bool(st.get("push", False)), tuple(opts.items()),
                              self._store_timeout(st, ctx, t, url))
        return out

    @staticmethod
    def _store_timeout(st: dict, ctx, t: tuple, url: str) -> float | None:
        timeout = st.get("timeout")
        if timeout is None:
            return None
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < float("inf"):
            ctx.err("timeout must be a positive number of seconds", t, "timeout")
            return None
        if "://" not in url or url.startswith("file://"):
            ctx.err("timeout applies to remote stores (an fsspec URL such as s3://); this store is a local folder",
                    t, "timeout")
            return None
        return float(timeout)

    def _default(self, proj, nodes) -> tuple[str, ...]:
        d = proj.get("default")
        if d is None:
            needed = {dep for n in nodes.values() for dep in n.deps}
            grouped = {m for n in nodes.values() if n.is_alias for m in n.deps}
            return tuple(n for n in nodes if n not in needed and n not in grouped)
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
    def _draft(self, decl, stores, order: int) -> _Draft | None:
        from . import patterns
        c, spec, t, name = decl.ctx, decl.spec, decl.table, decl.name
        if not _NAME.match(t[-1]):
            c.err(f"invalid node name '{t[-1]}' (letters, digits, '_' and '-')", ("nodes",), t[-1])
            return None
        if not isinstance(spec, dict):
            c.err("a node must be a table", ("nodes",), t[-1])
            return None
        c.unknown_keys(spec, NODE_KEYS, t)
        d = _Draft()
        d.decl, d.name, d.order = decl, name, order
        d.outputs = self._entries(spec.get("outputs", []), t, "outputs", base=decl.cwd, ctx=c)
        wild: list[str] = []
        for e in d.outputs:
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
        d.is_pattern = bool(wild) and not decl.wildcards
        d.wild_names = wild
        d.regexes = []
        d.constraints = {}
        if d.is_pattern:
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
        elif "matrix" in spec or "wildcards" in spec:
            if not decl.wildcards:
                c.err("matrix and wildcards need wildcards in the outputs, e.g. outputs = \"fits/{model}.json\"",
                      t, "matrix" if "matrix" in spec else "wildcards")
        d.recipes = self._recipes(spec, t, stores, decl)
        d.outputs = _value_outputs(d, c, t)
        if d.recipes and not d.outputs:
            c.err("a node with a recipe must declare outputs", t)
        if not d.recipes and d.outputs:
            c.err("a node with outputs needs a recipe (python, r, shell, call or recipes = [...])", t)
        d.params = self._params(spec.get("params", []), t, decl)
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

    def _instance(self, pat: _Draft, values: dict, stores, order: int) -> _Draft | None:
        """An instance of a pattern node: the pattern's parsed draft with the wildcard
        values filled into its outputs (and, at resolution, its inputs). Recipes,
        params and placeholder checks are shared with the pattern: parsed once."""
        from . import patterns
        from .gather import Decl
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
        d.recipes, d.params, d.priority = _instance_recipes(pat.recipes, values), pat.params, pat.priority
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
        from . import patterns
        c = self.ctx
        drafts: dict[str, _Draft] = {}
        pats: list[_Draft] = []
        groups: dict[str, list[str]] = {}
        order = 0
        for decl in gathered.decls:
            d = self._draft(decl, stores, order)
            order += 1
            if d is None:
                continue
            if d.name in drafts:
                decl.ctx.err(f"node '{d.name}' is declared twice", decl.table)
                continue
            if d.is_pattern:
                pats.append(d)
                spec = decl.spec
                members: list[str] = []
                if "matrix" in spec:
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
                        i = self._instance(d, values, stores, order)
                        order += 1
                        if i is not None and i.name not in drafts:
                            drafts[i.name] = i
                            members.append(i.name)
                groups[d.name] = members
                drafts[d.name] = d  # the pattern's name: an alias of its instances
            else:
                drafts[d.name] = d
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
        # producers: literal outputs of concrete nodes
        producers: dict[str, str] = {}
        dirs: list[tuple[str, str]] = []

        def add_producer(d: _Draft) -> None:
            for e in d.outputs:
                for p in e.paths:
                    key = p.rstrip("/")
                    if key in producers and producers[key] != d.name:
                        d.decl.ctx.err(f"output '{p}' is also declared by node '{producers[key]}'",
                                       d.decl.table, "outputs")
                    producers[key] = d.name
                    if p.endswith("/"):
                        dirs.append((key + "/", d.name))

        for d in drafts.values():
            if not d.is_pattern:
                add_producer(d)
        for dpath, owner in dirs:
            for p, name in producers.items():
                if name != owner and p.startswith(dpath):
                    drafts[name].decl.ctx.err(f"output '{p}' lies inside directory output '{dpath}' of node "
                                              f"'{owner}'", drafts[name].decl.table, "outputs")

        def match_pattern(path: str):
            """The instance draft for a path only a pattern produces; None when none does."""
            hits = []
            for pd in pats:
                for rx in pd.regexes:
                    m = rx.match(path)
                    if m:
                        hits.append((pd, m.groupdict()))
                        break
            if not hits:
                return None
            if len(hits) > 1:
                raise _Ambiguous(path, [h[0].name for h in hits])
            pd, values = hits[0]
            name = patterns.instance_name(pd.name, pd.wild_names, values)
            if name not in drafts:
                nonlocal order
                inst = self._instance(pd, values, stores, order)
                order += 1
                if inst is None:
                    return None
                drafts[name] = inst
                add_producer(inst)
                work.append(name)
            return drafts[name]

        # requested paths (command line) may name pattern instances
        for req in self.requests:
            if req in drafts:
                continue
            if undecodable([req]):  # bytes from the command line that are not UTF-8: not recordable
                c.err(f"target {req!r} is not valid UTF-8 text")
                continue
            p = norm(os.path.relpath(os.path.abspath(req), self.root).replace(os.sep, "/"))
            if p.rstrip("/") not in producers:
                work = []
                try:
                    match_pattern(p.rstrip("/"))
                except _Ambiguous as a:
                    c.err(f"'{req}' matches more than one pattern: {' and '.join(a.names)}; "
                          f"make one of them literal or constrain its wildcards")
        nodes: dict[str, Node] = {}
        missing: dict[str, list[tuple[str, tuple, object]]] = {}
        work = collections.deque(drafts)
        done: set[str] = set()
        while work:
            name = work.popleft()
            if name in done:
                continue
            done.add(name)
            d = drafts[name]
            if d.is_pattern:
                continue
            nodes[name] = self._resolve(d, drafts, groups, producers, dirs, missing, match_pattern)
        # pattern and [use] names become aliases of their members
        for gname, members in groups.items():
            members = [m for m in members if m in nodes]
            paths = tuple(p for m in members for p in nodes[m].output_paths)
            d = drafts.get(gname)
            nodes[gname] = Node(name=gname, outputs=(), inputs=(Entry(None, paths, True, gname, "node"),),
                                params=(), recipes=(), cwd="", file=d.decl.ctx.display if d else c.display,
                                line=None, order=d.order if d else 10 ** 9, deps=tuple(members))
        for path, needers in sorted(missing.items()):
            who = ", ".join(sorted({n for n, _, _ in needers}))
            names = [n for n in drafts]
            hint = did_you_mean(path, names)
            msg = f"missing source '{path}' (no node produces it), needed by {who}{hint}"
            if self.strict:  # node check: every problem; other commands: only the nodes needing it
                needers[0][2].err(msg, needers[0][1], "inputs")
            else:
                cx, tt = needers[0][2], needers[0][1]
                problem = Problem(msg, cx.display, cx.loc.line(tt, "inputs"), ".".join(tt + ("inputs",)))
                self.missing.append((path, tuple(sorted({n for n, _, _ in needers})), str(problem)))
                self.missing_problems.append(problem)
        from ..graph import find_cycle
        cyc = find_cycle(nodes)
        if cyc:
            d = drafts.get(cyc[0])
            (d.decl.ctx if d else c).err("dependency cycle: " + " -> ".join(cyc),
                                         d.decl.table if d else (), "inputs")
        ordered = sorted(nodes.values(), key=lambda n: n.order)
        return {n.name: n for n in ordered}

    def _resolve(self, d: _Draft, drafts, groups, producers, dirs, missing, match_pattern) -> Node:
        decl, c, t = d.decl, d.decl.ctx, d.decl.table
        deps: list[str] = []
        inputs = []
        raw = self._entries(decl.spec.get("inputs", []), t, "inputs", allow_names=True, ctx=c)
        for e in raw:
            paths: list[str] = []
            kind = "path"
            group_ref = False
            for item in e.paths:
                target = _scoped(item, decl.scopes, drafts) or _scoped(item, decl.scopes, groups)
                if target is not None:
                    kind = "node"
                    td = drafts.get(target)
                    if td is None or td.is_pattern or target in groups:
                        group_ref = True  # a pattern or [use] name: always a list, whatever its size
                        members = groups.get(target, [])
                        deps.extend(members)
                        for m in members:
                            paths.extend(p for oe in drafts[m].outputs for p in oe.paths)
                    else:
                        deps.append(target)
                        paths.extend(p for oe in td.outputs for p in oe.paths)
                    continue
                p = norm(item, decl.cwd)
                if _GLOB.search(p):
                    kind = "glob"
                    matched = self._glob(p, producers)
                    odd = undecodable(matched)
                    if odd:
                        c.err(f"input glob '{item}' matches {odd!r}, whose name is not valid UTF-8: rename it",
                              t, "inputs")
                        matched = [m for m in matched if m != odd]
                    for m in matched:
                        owner = _producer_of(m, producers, dirs)
                        if owner:
                            deps.append(owner)
                    if not matched and self.check_sources:
                        c.err(f"input glob '{item}' matches no file", t, "inputs")
                    paths.extend(matched)
                    continue
                owner = _producer_of(p, producers, dirs)
                if owner is None:
                    try:
                        inst = match_pattern(p.rstrip("/"))
                    except _Ambiguous as a:
                        c.err(f"input '{item}' matches more than one pattern: {' and '.join(a.names)}", t, "inputs")
                        paths.append(p)
                        continue  # reported once: not also a missing source
                    owner = inst.name if inst is not None else None
                if owner:
                    deps.append(owner)
                elif self.check_sources and not os.path.exists(os.path.join(self.root, p)):
                    missing.setdefault(p, []).append((d.name, t, c))
                paths.append(p)
            many = e.many or group_ref or kind == "glob" or (kind != "path" and len(paths) != 1)
            inputs.append(Entry(e.name, tuple(paths), many, e.source, kind))
        script_inputs = []
        for r in d.recipes:
            if r.script:
                owner = _producer_of(r.script, producers, dirs)
                if owner:
                    deps.append(owner)
                elif self.check_sources and not os.path.isfile(os.path.join(self.root, r.script)):
                    who = f" (for instance {d.name})" if decl.pattern is not None else ""
                    c.err(f"{r.kind} script '{r.label or r.script}' does not exist{who}", t,
                          r.kind if r.kind in decl.spec else "recipes")
                script_inputs.append(r.script)
        if d.name in deps:
            c.err(f"dependency cycle: {d.name} -> {d.name} (the node reads its own output)", t, "inputs")
        node = Node(name=d.name, outputs=d.outputs, inputs=tuple(inputs), params=d.params, recipes=d.recipes,
                    cwd=decl.cwd, file=c.display, line=c.loc.line(t), wildcards=decl.wildcards,
                    priority=d.priority, order=d.order, deps=tuple(dict.fromkeys(x for x in deps if x != d.name)),
                    script_inputs=tuple(script_inputs), always=d.always)
        for r in node.recipes:
            if r.stdout:
                try:
                    placeholders.stdout_path(node, r.stdout)
                except placeholders.PlaceholderError as e:
                    c.err(str(e), t, "stdout" if "stdout" in decl.spec else "recipes")
        if decl.pattern is None or decl.pattern not in self._checked:
            self._check_placeholders(node, t, c)  # instances of one pattern share their templates
            if decl.pattern is not None:
                self._checked.add(decl.pattern)
        return node

    def _entries(self, value, t: tuple, key: str, allow_names=False, base: str = "",
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

    def _glob(self, pattern: str, producers: dict) -> list[str]:
        return self._glob_static(self.root, pattern, producers)

    @staticmethod
    def _glob_static(root: str, pattern: str, producers: dict) -> list[str]:
        """Files matching a glob: on disk (never through a symlink loop), and outputs
        that nodes will write."""
        import fnmatch
        found = set(glob_files(root, pattern))
        found.update(p for p in producers if fnmatch.fnmatchcase(p, pattern))
        return sorted(found)

    def _params(self, value, t, decl) -> tuple:
        c = decl.ctx
        params = decl.params
        out: dict = {}
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, str):
                if item not in params:
                    c.err(f"unknown param '{item}' (not in [params]){did_you_mean(item, params)}", t, "params")
                else:
                    out[item] = params[item]
            elif isinstance(item, dict):
                out.update(item)
            else:
                c.err("params must be names of [params] entries, an inline table, or a list of both", t, "params")
        return tuple(out.items())

    def _recipes(self, spec: dict, t: tuple, stores: dict, decl) -> tuple[Recipe, ...]:
        """The node's recipes. Nodes written alike (10,000 with `shell = "touch {outputs}"`)
        share one parse: a valid result is remembered by the recipe keys' text."""
        memo = repr([(k, spec[k]) for k in _RECIPE_KEYS if k in spec]), decl.script_base
        found = self._recipe_memo.get(memo)
        if found is not None:
            return found
        before = len(decl.ctx.problems)
        recipes = self._parse_recipes(spec, t, stores, decl)
        if len(decl.ctx.problems) == before:
            self._recipe_memo[memo] = recipes
        return recipes

    def _parse_recipes(self, spec: dict, t: tuple, stores: dict, decl) -> tuple[Recipe, ...]:
        c = decl.ctx
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
            label = ""
            if kind in ("python", "r"):
                target = norm(target, decl.script_base)
                if os.path.isabs(target):
                    # outside the project (a template's own script): a portable name for the key
                    label = f"{os.path.basename(os.path.dirname(target))}/{os.path.basename(target)}"
            if kind == "fetch" and target not in stores:
                c.err(f"fetch names unknown store '{target}'{did_you_mean(target, stores)}", tt, where)
            if kind == "call" and ":" not in target:
                c.err("call must be 'package.module:function'", tt, where)
            if kind == "r_call":
                target = _r_call_target(target, decl, self.root, c, tt, where)
            returns = r.get("returns", "value" if kind == "r_call" else "")
            if returns and (kind not in ("call", "r_call") or not isinstance(returns, str)):
                c.err("returns names the output that holds a function's return value (call or r_call only)", tt,
                      "returns" if "returns" in spec else where)
                returns = ""
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
            if timeout is not None and timeout_problem(timeout):
                c.err(timeout_problem(timeout), tt, "timeout" if "timeout" in spec else where)
                timeout = None
            retries = r.get("retries", 0)
            if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
                c.err("retries must be a non-negative integer", tt, "retries" if "retries" in spec else where)
                retries = 0
            res = r.get("resources", {})
            if not isinstance(res, dict) or not all(is_amount(v) and v >= 0 for v in res.values()):
                c.err("resources must be a table of name = number, e.g. { cores = 2, mem_gb = 8 }", tt,
                      "resources" if "resources" in spec else where)
                res = {}
            nul = nul_problem(kind, target, args, env)
            if nul:
                c.err(nul, tt, where)
            warm = r.get("warm", True)
            if not isinstance(warm, bool):
                c.err("warm must be true or false", tt, "warm" if "warm" in spec else where)
            stdout = r.get("stdout", "") if kind != "fetch" else ""  # a fetch restores, prints nothing
            if not isinstance(stdout, str) or (not stdout and "stdout" in r and kind != "fetch"):
                c.err("stdout must name one of the node's outputs, e.g. stdout = \"{outputs.results}\"", tt,
                      "stdout" if "stdout" in spec else where)
                stdout = ""
            recipes.append(Recipe(kind=kind, target=target, name=name, label=label, stdout=stdout, warm=warm is not False, returns=returns,
                                  args=tuple(placeholders.toml_text(a) for a in args),
                                  env=tuple((str(k), placeholders.toml_text(v)) for k, v in env.items()),
                                  timeout=float(timeout) if timeout else None, retries=retries,
                                  resources=tuple(sorted((str(k), float(v)) for k, v in res.items()))))
        return tuple(recipes)

    def _check_placeholders(self, node: Node, t: tuple, c) -> None:
        """Every placeholder of the node's recipes names something the node has. Whether
        one resolves depends on the names (and number) of entries, params and wildcards,
        never on paths or values: a node shaped like one already checked is not again."""
        shape = (tuple(e.name for e in node.inputs), tuple(e.name for e in node.outputs),
                 tuple(k for k, _ in node.params), tuple(w for w, _ in node.wildcards))
        todo = []
        for r in node.recipes:
            templates = list(r.args) + [v for _, v in r.env]
            if r.kind == "shell":
                templates.append(r.target)
            todo.append((r.kind, tuple(templates)))
        memo = (tuple(todo), shape)
        if memo in self._placeholders_ok:
            return
        ctx = placeholder_context(node)
        before = len(c.problems)
        for kind, templates in todo:
            for tpl in templates:
                for ref in placeholders.names_in(tpl):
                    try:
                        placeholders.resolve(ref, ctx)
                    except placeholders.PlaceholderError as e:
                        c.err(str(e), t, "shell" if kind == "shell" else "args")
        if len(c.problems) == before:
            self._placeholders_ok.add(memo)


class _Ambiguous(Exception):
    def __init__(self, path, names):
        super().__init__(path)
        self.path, self.names = path, names


def _fullmatch(rx: str, value: str) -> bool:
    try:
        return re.fullmatch(rx, value) is not None
    except (re.error, OverflowError, RecursionError):
        return True


def _instance_recipes(recipes, values: dict) -> tuple:
    """A pattern's recipes for one instance: wildcards in a script's path filled in
    (`r = "src/figures/{figure}.R"`), so each instance runs, and is keyed by, its own."""
    from . import patterns
    from ..records import replace
    out = []
    for r in recipes:
        if r.script and patterns.has_wildcards(r.target):
            target = patterns.fill_paths(r.target, values)
            label = f"{os.path.basename(os.path.dirname(target))}/{os.path.basename(target)}" if r.label else ""
            r = replace(r, target=target, label=label)
        out.append(r)
    return tuple(out)


def _scoped(item: str, scopes, drafts) -> str | None:
    """The node an input string names, searching the declaring scope outwards."""
    for prefix in scopes:
        if prefix + item in drafts:
            return prefix + item
    return None


def _map_strings(value, f):
    if isinstance(value, str):
        return f(value)
    if isinstance(value, list):
        return [_map_strings(v, f) for v in value]
    if isinstance(value, dict):
        return {k: _map_strings(v, f) for k, v in value.items()}
    return value


def _producer_of(path: str, producers: dict, dirs) -> str | None:
    p = path.rstrip("/")
    if p in producers:
        return producers[p]
    for d, owner in dirs:
        if p.startswith(d):
            return owner
    return None


def workers_options(data: dict, proj: dict, c) -> tuple[bool, tuple]:
    """`[project] warm` and `[workers.python|r] preload = [...]` (SPEC §2, §5)."""
    warm = proj.get("warm", True)
    if not isinstance(warm, bool):
        c.err("warm must be true or false", ("project",), "warm")
    workers = data.get("workers", {})
    if not isinstance(workers, dict):
        c.err("workers must be a table, e.g. [workers.python] preload = [\"pandas\"]", (), "workers")
        return warm is not False, ()
    preload = []
    for lang, table in workers.items():
        t = ("workers", lang)
        if lang not in ("python", "r"):
            c.err(f"unknown worker '{lang}'{did_you_mean(lang, ('python', 'r'))}", ("workers",), lang)
            continue
        if not isinstance(table, dict):
            c.err("must be a table with preload = [...]", ("workers",), lang)
            continue
        c.unknown_keys(table, ("preload",), t)
        names = table.get("preload", [])
        if not isinstance(names, list) or not all(isinstance(x, str) and x for x in names):
            c.err("preload must be a list of module (python) or package (r) names", t, "preload")
            continue
        preload.append((lang, tuple(names)))
    return warm is not False, tuple(preload)


def executor_table(data: dict, c) -> tuple[str, str | None]:
    """`[executor] kind = "local" | "dask"` and `address = "tcp://HOST:8786"` (SPEC §2, §5)."""
    table = data.get("executor", {})
    if not isinstance(table, dict):
        c.err("executor must be a table: [executor] kind = \"dask\"", (), "executor")
        return ("local", None)
    c.unknown_keys(table, ("kind", "address"), ("executor",))
    kind = table.get("kind", "local")
    if kind not in ("local", "dask"):
        c.err(f"kind must be \"local\" or \"dask\", not {kind!r}", ("executor",), "kind")
        kind = "local"
    address = table.get("address")
    if address is not None and (not isinstance(address, str) or not address):
        c.err("address must be the Dask scheduler's address, e.g. \"tcp://10.0.0.5:8786\"", ("executor",), "address")
        address = None
    return (kind, address)


def _r_call_target(target: str, decl, root: str, c, t, where) -> str:
    """`r_call = "R/functions.R::fit"`: the file relative to the project root, the function."""
    path, sep, fn = target.partition("::")
    if not sep or not path or not fn:
        c.err('r_call must be "FILE.R::function", e.g. r_call = "R/functions.R::fit_model"', t, where)
        return target
    path = norm(path, decl.script_base)
    if not os.path.isfile(os.path.join(root, path)):
        c.err(f"r_call file '{path}' does not exist", t, where)
    return f"{path}::{fn}"


def _value_outputs(d, c, t) -> tuple:
    """A function recipe's `returns` names an output; when the node has none of that
    name, its value goes to .nodefile/values/NODE (an output added here)."""
    wanted = {r.returns for r in d.recipes if r.returns}
    outs = tuple(d.outputs)
    for name in sorted(wanted):
        if any(e.name == name for e in outs):
            continue
        if d.is_pattern:
            c.err(f"returns = '{name}': a pattern node's value needs an output of that name with its wildcards", t,
                  "returns")
            continue
        outs += (Entry(name, (f".nodefile/values/{d.name}",), False, name),)
    return outs
