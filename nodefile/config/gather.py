"""Gather every node declaration of a project into one flat list of Decls:
the root Nodefile's nodes, templates' nodes (`[use.X] template`, named X.NODE,
with `${NAME}` filled from `with`) and sub-pipelines' nodes (`[use.X] nodefile`,
named X.NODE, paths relative to their own folder). Templates may use templates.

A template file is a TOML fragment:

    [template]
    needs = ["model", "data"]        # `with` must give these
    optional = { seed = 1 }          # `with` may give these (defaults)

    [nodes.train]
    outputs = "models/${model}.rds"
    inputs = ["${data}"]
    r = "train.R"                    # recipe scripts: relative to the template's folder

Inside a template, every string may use `${NAME}`; a string that is exactly
`${NAME}` takes the value with its type (a list, a number). Node names used as
inputs resolve first among the template's own nodes, then in the scope that
uses the template, then globally.
"""
from __future__ import annotations

import os
import re
from ..records import field, record

from ..errors import Problem
from ..placeholders import toml_text
from .checks import names_problem
from .schema import PROJECT_KEYS, TOP_KEYS, did_you_mean

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
USE_KEYS = ("template", "nodefile", "with")
TEMPLATE_KEYS = ("template", "nodes", "use")


@record
class Decl:
    name: str  # full name: "clean", "ingest.clean", "xgb.train"
    spec: dict
    ctx: object  # the Ctx of the file that declares it (messages, lines)
    table: tuple  # ("nodes", local name): where in that file
    cwd: str  # project-relative folder: paths and recipes
    script_base: str  # folder recipe scripts are relative to (project-relative, or absolute outside)
    params: dict  # [params] visible to the node
    scopes: tuple  # name prefixes to resolve node names in, innermost first
    wildcards: tuple = ()
    pattern: str | None = None  # for an instance: the pattern node's name
    group: str | None = None  # set for [use] aliases


@record
class Gathered:
    decls: list = field(default_factory=list)
    stores: dict = field(default_factory=dict)  # name -> (raw table, ctx, base folder)
    sources: list = field(default_factory=list)  # files read: Nodefiles and templates
    groups: dict = field(default_factory=dict)  # use name -> (ctx, table, member prefix, default)


def substitute(value, values: dict, missing: set):
    """Fill ${NAME} in every string of a TOML value."""
    if isinstance(value, str):
        m = _VAR.fullmatch(value)
        if m:
            if m.group(1) in values:
                return values[m.group(1)]
            missing.add(m.group(1))
            return value

        def repl(mm):
            if mm.group(1) in values:
                v = values[mm.group(1)]
                return v if isinstance(v, str) else toml_text(v)
            missing.add(mm.group(1))
            return mm.group(0)
        return _VAR.sub(repl, value)
    if isinstance(value, list):
        return [substitute(v, values, missing) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, values, missing) for k, v in value.items()}
    return value


class Gatherer:
    def __init__(self, loader):
        self.loader = loader  # the load._Builder: read files, make Ctxs, norm paths
        self.out = Gathered()

    def run(self, data, ctx, file_dir_rel: str, params: dict) -> Gathered:
        self.out.sources.append(ctx.path)
        self.walk(data, ctx, cwd=file_dir_rel, script_base=file_dir_rel, params=params, scope="",
                  scopes=("",), stack=(ctx.path,))
        return self.out

    def walk(self, data, ctx, cwd, script_base, params, scope, scopes, stack):
        nodes = data.get("nodes", {})
        if not isinstance(nodes, dict):
            ctx.err("[nodes] must be a table", (), "nodes")
            nodes = {}
        for name, spec in nodes.items():
            self.out.decls.append(Decl(scope + name, spec, ctx, ("nodes", name), cwd, script_base, params, scopes))
        for sname, st in (data.get("stores") or {}).items() if isinstance(data.get("stores"), dict) else []:
            if sname in self.out.stores and self.out.stores[sname][0] != st:
                ctx.err(f"store '{sname}' is also defined differently in {self.out.stores[sname][1].display}",
                        ("stores", sname))
            self.out.stores.setdefault(sname, (st, ctx, cwd))
        uses = data.get("use", {})
        if not isinstance(uses, dict):
            ctx.err("[use] must hold tables: [use.NAME]", (), "use")
            return
        for uname, u in uses.items():
            self.use(uname, u, ctx, cwd, params, scope, scopes, stack)

    def use(self, uname, u, ctx, cwd, params, scope, scopes, stack):
        t = ("use", uname)
        if not isinstance(u, dict):
            ctx.err("[use.NAME] must be a table with template = ... or nodefile = ...", ("use",), uname)
            return
        ctx.unknown_keys(u, USE_KEYS, t)
        kinds = [k for k in ("template", "nodefile") if k in u]
        if len(kinds) != 1:
            ctx.err("[use.NAME] needs exactly one of template = \"...\" or nodefile = \"...\"", t)
            return
        ref = u[kinds[0]]
        if not isinstance(ref, str) or not ref:
            ctx.err(f"{kinds[0]} must be a path", t, kinds[0])
            return
        new_scope = scope + uname + "."
        path, label = self.loader.locate_use(ref, ctx, cwd, kinds[0] == "template")
        if path is None:
            ctx.err(f"{kinds[0]} '{ref}' not found", t, kinds[0])
            return
        if path in stack:
            chain = " -> ".join(os.path.relpath(p, self.loader.root) for p in stack + (path,))
            ctx.err(f"{kinds[0]} '{ref}' uses itself: {chain}", t, kinds[0])
            return
        sub = self.loader.read(path, label)
        if sub is None:
            return
        data, sctx = sub
        self.out.sources.append(path)
        if kinds[0] == "template":
            data = self.template(data, sctx, u.get("with", {}), ctx, t, label)
            if data is None:
                return
            folder = os.path.dirname(path)
            base = self.loader.rel_or_abs(folder)
            self.out.groups[scope + uname] = (ctx, t, new_scope, None)
            self.walk(data, sctx, cwd=cwd, script_base=base, params=params, scope=new_scope,
                      scopes=(new_scope,) + scopes, stack=stack + (path,))
        else:
            if "with" in u:
                ctx.err("with = ... applies to templates; a sub-pipeline has its own [params]", t, "with")
            folder = self.loader.rel_or_abs(os.path.dirname(path))
            if os.path.isabs(folder) or folder.startswith(".."):
                ctx.err(f"sub-pipeline '{ref}' lies outside the project root", t, "nodefile")
                return
            sub_params = self.loader.merged_params(data, sctx, os.path.dirname(path))
            if isinstance(data.get("project"), dict):
                sctx.unknown_keys(data["project"], PROJECT_KEYS, ("project",))
            sctx.unknown_keys(data, TOP_KEYS, (), "top-level table")
            default = (data.get("project") or {}).get("default") if isinstance(data.get("project"), dict) else None
            if default is not None and names_problem(default, "default"):
                sctx.err(names_problem(default, "default"), ("project",), "default")
                default = None
            self.out.groups[scope + uname] = (ctx, t, new_scope, default)
            self.walk(data, sctx, cwd=folder, script_base=folder, params=sub_params, scope=new_scope,
                      scopes=(new_scope,), stack=stack + (path,))

    def template(self, data, tctx, with_values, ctx, t, label):
        if not isinstance(with_values, dict):
            ctx.err("with must be a table of NAME = value", t, "with")
            return None
        head = data.get("template", {})
        if not isinstance(head, dict):
            tctx.err("[template] must be a table with needs = [...]", (), "template")
            return None
        tctx.unknown_keys(data, TEMPLATE_KEYS, (), "top-level table in a template")
        tctx.unknown_keys(head, ("needs", "optional"), ("template",))
        needs = head.get("needs", [])
        optional = head.get("optional", {})
        if not isinstance(needs, list) or not isinstance(optional, dict):
            tctx.err("needs must be a list of names and optional a table of defaults", ("template",))
            return None
        if names_problem(needs, "needs"):
            tctx.err(names_problem(needs, "needs"), ("template",), "needs")
            return None
        ok = True
        for n in needs:
            if n not in with_values:
                ctx.err(f"template '{label}' needs '{n}': add it to with = {{ ... }}", t, "with")
                ok = False
        known = list(needs) + list(optional)
        for k in with_values:
            if k not in known:
                ctx.err(f"template '{label}' has no parameter '{k}'{did_you_mean(k, known)} "
                        f"(it takes: {', '.join(known) or 'none'})", t, "with")
                ok = False
        if not ok:
            return None
        values = {**optional, **with_values}
        missing: set = set()
        body = {k: substitute(v, values, missing) for k, v in data.items() if k in ("nodes", "use")}
        for m in sorted(missing):
            tctx.err(f"'${{{m}}}' is not a parameter of template '{label}' "
                           f"(declare it in [template] needs or optional)", ("template",))
        return body if not missing else None


def problems_dedup(problems: list[Problem]) -> list[Problem]:
    seen = set()
    out = []
    for p in problems:
        k = (p.message, p.file, p.line, p.key)
        if k not in seen:
            seen.add(k)
            out.append(p)
    return out
