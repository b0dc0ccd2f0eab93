"""A node's recipe keys -> its Recipes (parsed once for nodes written alike), its
params, the value outputs of function recipes, and the check that every
placeholder of its recipes names something the node has."""
from __future__ import annotations

import os

from .. import placeholders
from ..model import Entry, Node, RECIPE_KINDS, Recipe
from ..placeholders import placeholder_context
from .checks import is_amount, nul_problem, timeout_problem
from .schema import RECIPE_KEYS, RECIPE_OPTS, did_you_mean, norm


class RecipeParser:
    """A node's recipes, params and value outputs; recipes and placeholder checks are
    remembered across the nodes of one load."""

    def __init__(self, root: str):
        self.root = root
        self.memo: dict = {}  # a node's recipe keys, as written -> its Recipes (when valid)
        self.placeholders_ok: set = set()  # (templates, node shape) whose placeholders resolve

    def recipes(self, spec: dict, t: tuple, stores: dict, decl) -> tuple[Recipe, ...]:
        """The node's recipes. Nodes written alike (10,000 with `shell = "touch {outputs}"`)
        share one parse: a valid result is remembered by the recipe keys' text."""
        memo = repr([(k, spec[k]) for k in RECIPE_KEYS if k in spec]), decl.script_base
        found = self.memo.get(memo)
        if found is not None:
            return found
        before = len(decl.ctx.problems)
        recipes = self.parse(spec, t, stores, decl)
        if len(decl.ctx.problems) == before:
            self.memo[memo] = recipes
        return recipes

    def parse(self, spec: dict, t: tuple, stores: dict, decl) -> tuple[Recipe, ...]:
        raw = _raw_recipes(spec, t, decl.ctx)
        recipes = []
        used_names: set[str] = set()
        for i, (r, tt) in enumerate(raw):
            recipe = self.one(i, r, tt, spec, stores, decl, used_names)
            if recipe is not None:
                recipes.append(recipe)
        return tuple(recipes)

    def one(self, i: int, r: dict, tt: tuple, spec: dict, stores: dict, decl, used_names: set) -> Recipe | None:
        """Recipe number i+1 of a node (its table `r`, node-level defaults filled in)."""
        c = decl.ctx
        rk = [k for k in RECIPE_KINDS if k in r]
        where = "recipes" if "recipes" in spec else (rk[0] if rk else None)
        unknown = [k for k in r if k not in RECIPE_KINDS and k not in RECIPE_OPTS]
        for k in unknown:
            c.err(f"unknown recipe key '{k}'{did_you_mean(k, RECIPE_KINDS + RECIPE_OPTS)}", tt, where)
        if len(rk) != 1:
            c.err(f"recipe {i + 1} must have exactly one of {', '.join(RECIPE_KINDS)}", tt, where)
            return None
        kind = rk[0]
        target = r[kind]
        if not isinstance(target, str) or not target:
            c.err(f"{kind} must be a non-empty string", tt, where)
            return None
        target, label = self.target(kind, target, stores, decl, tt, where)
        returns = r.get("returns", "value" if kind == "r_call" else "")
        if returns and (kind not in ("call", "r_call") or not isinstance(returns, str)):
            c.err("returns names the output that holds a function's return value (call or r_call only)", tt,
                  "returns" if "returns" in spec else where)
            returns = ""
        name = _unique_name(r, kind, used_names, c, tt, where)
        args, env, timeout, retries, res = _run_options(r, spec, c, tt, where)
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
        return Recipe(kind=kind, target=target, name=name, label=label, stdout=stdout, warm=warm is not False,
                      returns=returns, args=tuple(placeholders.toml_text(a) for a in args),
                      env=tuple((str(k), placeholders.toml_text(v)) for k, v in env.items()),
                      timeout=float(timeout) if timeout else None, retries=retries,
                      resources=tuple(sorted((str(k), float(v)) for k, v in res.items())))

    def target(self, kind: str, target: str, stores: dict, decl, tt: tuple, where) -> tuple[str, str]:
        """A recipe's target checked (a script's path normalised), and its label."""
        c = decl.ctx
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
            target = r_call_target(target, decl, self.root, c, tt, where)
        return target, label

    def check_placeholders(self, node: Node, t: tuple, c) -> None:
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
        if memo in self.placeholders_ok:
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
            self.placeholders_ok.add(memo)

    @staticmethod
    def params(value, t, decl) -> tuple:
        """A node's `params`: names of [params] entries, inline tables, or a list of both."""
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

    @staticmethod
    def for_instance(recipes, values: dict) -> tuple:
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

    @staticmethod
    def value_outputs(d, c, t) -> tuple:
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


def _raw_recipes(spec: dict, t: tuple, c) -> list[tuple[dict, tuple]]:
    """The node's recipe tables, the node-level options filled into each."""
    kinds = [k for k in RECIPE_KINDS if k in spec]
    defaults = {k: spec[k] for k in RECIPE_OPTS[1:] if k in spec}
    if "recipes" in spec:
        if kinds:
            c.err(f"use either '{kinds[0]} = ...' or 'recipes = [...]', not both", t, kinds[0])
        rl = spec["recipes"]
        if not isinstance(rl, list) or not all(isinstance(r, dict) for r in rl):
            c.err("recipes must be a list of tables, e.g. [{ python = \"x.py\" }]", t, "recipes")
            return []
        return [({**defaults, **r}, t) for r in rl]
    if len(kinds) > 1:
        c.err(f"a node has one short-form recipe; found {', '.join(kinds)} (use recipes = [...])", t, kinds[1])
        return []
    if kinds:
        return [({kinds[0]: spec[kinds[0]], **defaults}, t)]
    return []


def _unique_name(r: dict, kind: str, used_names: set, c, tt: tuple, where) -> str:
    name = r.get("name") or kind
    if not isinstance(name, str):
        c.err("recipe name must be a string", tt, where)
        name = kind
    base, n = name, 2
    while name in used_names:
        name, n = f"{base}#{n}", n + 1
    used_names.add(name)
    return name


def _run_options(r: dict, spec: dict, c, tt: tuple, where) -> tuple:
    """A recipe's args, env, timeout, retries and resources, checked."""
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
    return args, env, timeout, retries, res


def r_call_target(target: str, decl, root: str, c, t, where) -> str:
    """`r_call = "R/functions.R::fit"`: the file relative to the project root, the function."""
    path, sep, fn = target.partition("::")
    if not sep or not path or not fn:
        c.err('r_call must be "FILE.R::function", e.g. r_call = "R/functions.R::fit_model"', t, where)
        return target
    path = norm(path, decl.script_base)
    if not os.path.isfile(os.path.join(root, path)):
        c.err(f"r_call file '{path}' does not exist", t, where)
    return f"{path}::{fn}"
