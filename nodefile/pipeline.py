"""Function nodes (SPEC §7): a decorator and a call turn Python functions into
nodes of the normal Project.

    pipe = nodefile.Pipeline()        # joins ./Nodefile.toml's DAG when there is one
    @pipe.node
    def subset(path: str, cutoff: float = 0.5): ...
    @pipe.node
    def summary(subset): ...          # a parameter named after a node receives its value
    pipe.build("summary", jobs=4); pipe.get("summary")

Each function becomes a Node whose one output, `.nodefile/values/NAME`, holds its
return value (values.py), with a `call` recipe naming the function: staleness, the
scheduler, the local cache, stores and `node explain` are the engine's. The key
holds the function's code and the project code it uses (codeclosure.py), its
arguments (as params) and its inputs' hashes. Functions run in this process, in
the executor's threads (the recipe's Spec carries the callable).
"""
from __future__ import annotations

import inspect
import os

from .errors import ConfigError

VALUES_DIR = ".nodefile/values"
_NOTHING = object()


class FunctionNode:
    def __init__(self, name: str, func, format: str, args: dict):
        self.name, self.func, self.format, self.args = name, func, format, dict(args)
        self.actual: dict = {}  # the arguments of the last project() (live objects, not their key form)


class Pipeline:
    """Function nodes beside (or instead of) a Nodefile."""

    def __init__(self, path: str | None = None, params: dict | None = None):
        self.path = path
        self.params = params
        self.functions: dict[str, FunctionNode] = {}

    def node(self, func=None, *, name: str | None = None, format: str = "auto", **args):
        """Declare a function node: `@pipe.node` or `@pipe.node(name=..., format=..., ARG=VALUE)`.
        The function is returned unchanged (it can still be called directly)."""
        from .values import FORMATS
        if format not in FORMATS:
            raise ConfigError(f"format must be one of {', '.join(FORMATS)}, not '{format}'")

        def declare(f):
            n = name or f.__name__
            self.functions[n] = FunctionNode(n, f, format, args)
            return f
        return declare(func) if func is not None else declare

    # -- the project ------------------------------------------------------------------
    def project(self, args: dict | None = None):
        """The Nodefile's project (when there is one) with the function nodes added."""
        import functools
        from .model import Project
        from .records import replace
        from .recipes import LIVE
        nodefile = self.path or "Nodefile.toml"
        if os.path.isdir(nodefile):
            nodefile = os.path.join(nodefile, "Nodefile.toml")
        if os.path.exists(nodefile):
            from .config import load_project
            base = load_project(nodefile, self.params)
        else:
            root = os.path.abspath(os.path.dirname(nodefile) or ".")
            base = Project(root=root, file=os.path.abspath(nodefile), name=os.path.basename(root), nodes={},
                           producers={}, params={}, default=())
        nodes = dict(base.nodes)
        producers = dict(base.producers)
        clash = [n for n in self.functions if n in nodes]
        if clash:
            raise ConfigError(f"function node '{clash[0]}' has the name of a node of {os.path.relpath(base.file)}")
        for i, fn in enumerate(self.functions.values()):
            node = self._node(base, fn, nodes, dict(args or {}), len(nodes) + i)
            producers[node.output_paths[0]] = node.name
            LIVE[node.recipes[0].target] = functools.partial(live_run, fn)
            nodes[fn.name] = node
        nodes = {n: self._rewire(node, nodes) for n, node in nodes.items()}
        from .graph import find_cycle
        cycle = find_cycle(nodes)
        if cycle:
            raise ConfigError("dependency cycle: " + " -> ".join(cycle))
        missing = tuple(m for m in base.missing if m[0] not in self.functions)
        return replace(base, nodes=nodes, producers=producers, missing=missing)

    def _node(self, project, fn: FunctionNode, nodes: dict, given: dict, order: int):
        from .model import Entry, Node, Recipe
        f = fn.func
        target = function_target(project.root, f)
        inputs, params, deps = [], [], []
        fn.actual = {}
        for p in inspect.signature(f).parameters.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            value = given.get(p.name, fn.args.get(p.name, _NOTHING))
            if value is _NOTHING and (p.name in self.functions or p.name in nodes):
                dep = p.name
                paths = nodes[dep].output_paths if dep in nodes else (value_path(dep),)
                inputs.append(Entry(p.name, tuple(paths), False, dep, "node"))
                deps.append(dep)
                continue
            if value is _NOTHING:
                value = p.default
            if value is inspect.Parameter.empty:
                raise ConfigError(f"function node '{fn.name}' ({target}): parameter '{p.name}' has no value "
                                  f"(not a node, no default, not given to pipe.node() or build())")
            params.append((p.name, key_value(value)))
            fn.actual[p.name] = value
        args = () if fn.format == "auto" else (f"--format={fn.format}",)
        if not target.split(":")[0].endswith(".py"):  # not a project file (a notebook, -c): its own code
            args += (f"--code={live_code_hash(f)}",)
        recipe = Recipe(kind="call", target=target, name="function", returns="value", args=args)
        line = getattr(getattr(f, "__code__", None), "co_firstlineno", None)
        return Node(name=fn.name, outputs=(Entry("value", (value_path(fn.name),)),), inputs=tuple(inputs),
                    params=tuple(params), recipes=(recipe,), cwd="", file=target.split(":")[0], line=line,
                    order=order, deps=tuple(dict.fromkeys(deps)))

    def _rewire(self, node, nodes: dict):
        """A Nodefile node whose input names a function node depends on it (the loader,
        which knew no such node, took the name for a missing file)."""
        from .model import Entry
        from .records import replace
        if node.name in self.functions or not any(e.kind == "path" and p in self.functions
                                                 for e in node.inputs for p in e.paths):
            return node
        inputs, deps = [], list(node.deps)
        for e in node.inputs:
            if e.kind == "path" and len(e.paths) == 1 and e.paths[0] in self.functions:
                dep = e.paths[0]
                inputs.append(Entry(e.name, (value_path(dep),), e.many, dep, "node"))
                deps.append(dep)
            else:
                inputs.append(e)
        return replace(node, inputs=tuple(inputs), deps=tuple(dict.fromkeys(deps)))

    # -- building and values --------------------------------------------------------------
    def build(self, targets=None, jobs: int | None = None, keep_going: bool = False, quiet: bool = True,
              always_make: bool = False, **args):
        """Build targets (a name, a list, or None: every function node); keyword
        arguments override the functions' arguments of those names. Returns the
        Summary; raises BuildError when a node fails."""
        from . import BuildError
        from .engine import Options, build
        from .report.console import Console
        project = self.project(args)
        names = _targets(targets) or list(self.functions) or None
        here = os.getcwd()
        try:
            summary = build(project, names or [], Options(jobs=jobs, keep_going=keep_going, always_make=always_make),
                            Console(verbosity=-1 if quiet else 0))
        finally:
            os.chdir(here)
        if not summary.ok:
            raise BuildError(f"build failed: {', '.join(summary.failed or summary.skipped) or 'interrupted'}",
                             summary)
        return summary

    def get(self, name: str, build: bool = True, **args):
        """The value of a node (built first unless build=False): a function node's (or a
        Nodefile node's with `returns`) return value; a file node's path(s)."""
        if build:
            self.build(name, **args)
        project = self.project(args)
        if name not in project.nodes:
            raise ConfigError(f"no node named '{name}'")
        return node_value(project, project.nodes[name])

    def status(self, targets=None) -> dict:
        from . import graph
        from .engine import Session, resolve_targets
        project = self.project()
        names = graph.closure(project.nodes, resolve_targets(project, _targets(targets) or list(self.functions)))
        session = Session(project, readonly=True)
        try:
            return session.plan(names)
        finally:
            session.close()


def _targets(targets) -> list:
    return [targets] if isinstance(targets, str) else list(targets or [])


def value_path(name: str) -> str:
    return f"{VALUES_DIR}/{name}"


def function_target(root: str, f) -> str:
    """`file.py:qualname` for a function under the project root, else `module:qualname`."""
    try:
        src = inspect.getsourcefile(f)
    except TypeError:
        src = None
    if src:
        rel = os.path.relpath(os.path.realpath(src), os.path.realpath(root)).replace(os.sep, "/")
        if not rel.startswith("../"):
            return f"{rel}:{f.__qualname__}"
    return f"{f.__module__}:{f.__qualname__}"


def live_code_hash(f) -> str:
    """The code of a function whose file is not under the project root: its syntax
    tree when its source can be read, else its bytecode."""
    import ast
    from .hashing import hash_bytes
    try:
        import textwrap
        return hash_bytes(ast.dump(ast.parse(textwrap.dedent(inspect.getsource(f)))).encode())
    except (OSError, TypeError, SyntaxError):
        import marshal
        return hash_bytes(marshal.dumps(f.__code__))


def key_value(value):
    """An argument as it enters the key: TOML-like values as they are, anything else
    by the hash of its pickle."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)) and all(v is None or isinstance(v, (str, int, float, bool)) for v in value):
        return list(value)
    if isinstance(value, dict) and all(isinstance(k, str) and (v is None or isinstance(v, (str, int, float, bool)))
                                       for k, v in value.items()):
        return dict(value)
    import pickle
    from .hashing import hash_bytes
    try:
        return f"<{type(value).__name__} {hash_bytes(pickle.dumps(value, protocol=4))}>"
    except Exception:
        return f"<{type(value).__name__} {value!r}>"


def node_value(project, node):
    """What a parameter named after `node` receives."""
    from . import values
    from .fncall import returns_entry
    entry = returns_entry(node)
    if entry is not None:
        return values.load(os.path.join(project.root, entry.paths[0]))
    paths = [os.path.join(project.root, p) for p in node.output_paths]
    return paths[0] if len(paths) == 1 else paths


def arguments(project, node, actual: dict) -> dict:
    """The keyword arguments of a Pipeline function (fncall.plan): values loaded,
    params as the live objects given (`actual`)."""
    from . import values
    from .fncall import plan
    out = {}
    for name, (kind, v) in plan(project, node).items():
        out[name] = values.load(v) if kind == "value" else actual.get(name, v) if kind == "param" else v
    return out


def live_run(fn: FunctionNode, project, node, log: str):
    """What a thread of this process runs for the Pipeline function `fn` (recipes.LIVE)."""
    fmt = fn.format

    def run():
        import traceback
        from . import values
        try:
            result = fn.func(**arguments(project, node, fn.actual))
            values.save(result, os.path.join(project.root, node.output_paths[0]), fmt)
        except BaseException as e:
            os.makedirs(os.path.dirname(log), exist_ok=True)
            with open(log, "a") as f:
                f.write(traceback.format_exc())
            raise RuntimeError(f"raised {type(e).__name__}: {e}") from None
    return run
