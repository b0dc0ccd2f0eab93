"""Run a doit task's actions as a `call` recipe (what `node import dodo.py` writes).

    call = "nodefile.doit_adapter:run"
    args = ["sh:mkdir -p out", "py:dodo:clean", "args:[3]", "kwargs:{{\\"sep\\": \\",\\"}}"]

Each `py:MODULE:FUNCTION` (with the `args:` / `kwargs:` JSON after it) is a Python
action, each `sh:COMMAND` a command action, run in order until one fails. A Python
action receives what doit would give it: its own args and kwargs, then, for the
parameters its signature names, `targets`, `dependencies`, `changed` and `task`,
and the task's params (the node's params). Returning False fails the action (as in
doit); True, None, a string or a dict succeed. An output entry named `stamp` (a
task without targets) is created when every action succeeded. doit is not needed.
"""
from __future__ import annotations

import importlib
import inspect
import json
import subprocess
import sys

from .jobctx import Entries

_META = ("task", "targets", "dependencies", "changed")
CONFIG_PARAM = "doit_config_changed"  # a config_changed value (doit_import): a param, not a doit option


class DoitTask:
    """What a Python action asking for `task` gets: the attributes doit's Task has
    that make sense outside doit (name is the node's name)."""

    def __init__(self, name: str, targets: list, file_dep: list, options: dict):
        self.name = name
        self.targets = targets
        self.file_dep = set(file_dep)
        self.dep_changed = list(file_dep)
        self.options = options
        self.values: dict = {}
        self.doc = None

    def __repr__(self):
        return f"<DoitTask {self.name}>"


def parse(argv: list[str]) -> list[tuple]:
    """The recipe's args -> [("sh", command) | ("py", ref, args, kwargs)]."""
    steps: list = []
    for a in argv:
        kind, _, value = a.partition(":")
        if kind == "sh":
            steps.append(("sh", value))
        elif kind == "py":
            steps.append(("py", value, [], {}))
        elif kind in ("args", "kwargs") and steps and steps[-1][0] == "py":
            step = steps[-1]
            steps[-1] = ("py", step[1], json.loads(value), step[3]) if kind == "args" else \
                ("py", step[1], step[2], json.loads(value))
        else:
            raise ValueError(f"nodefile.doit_adapter: unexpected argument {a!r}")
    return steps


def doit_kwargs(func, args: list, kwargs: dict, meta: dict, options: dict) -> dict:
    """doit's rules (doit.action.BaseAction._prepare_kwargs): meta values only for
    parameters the signature names and the positional args leave free; options also
    to a **kwargs."""
    sig = inspect.signature(func)
    has_var_kw = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
    bound = sig.bind_partial(*args).arguments
    out = dict(kwargs)
    for key in _META:
        if key in sig.parameters and key not in bound:
            out[key] = meta[key]
    for key, value in options.items():
        if key in sig.parameters:
            if key not in bound:
                out[key] = value
        elif has_var_kw and key not in out:
            out[key] = value
    return out


def resolve(ref: str):
    module, _, qual = ref.partition(":")
    obj = importlib.import_module(module)
    for part in qual.split("."):
        obj = getattr(obj, part)
    return obj


def run(job) -> int:
    steps = parse(sys.argv[1:])
    targets = [v for n, v in Entries.items(job.outputs) if n != "stamp"]
    targets = [p.rstrip("/") or p for v in targets for p in (v if isinstance(v, list) else [v])]  # doit's spelling
    if "file_dep" in Entries.names(job.inputs):
        deps = job.inputs.file_dep
        deps = deps if isinstance(deps, list) else [deps]
    elif any(n is not None for n in Entries.names(job.inputs)):
        deps = []  # only task_dep
    else:
        deps = Entries.paths(job.inputs)
    options = {k: v for k, v in dict.items(job.params) if not k.startswith(CONFIG_PARAM)}  # not doit options
    task = DoitTask(job.node, targets, deps, options)
    meta = {"task": task, "targets": list(targets), "dependencies": list(deps), "changed": list(deps)}
    for step in steps:
        if step[0] == "sh":
            code = subprocess.call(step[1], shell=True)
            if code != 0:
                print(f"doit action failed: {step[1]!r} returned {code}", file=sys.stderr)
                return code
            continue
        _, ref, args, kwargs = step
        func = resolve(ref)
        result = func(*args, **doit_kwargs(func, args, kwargs, meta, options))
        if result is False:
            print(f"doit action {ref} returned False: the task failed", file=sys.stderr)
            return 1
        if type(result).__name__ in ("TaskFailed", "TaskError"):
            print(f"doit action {ref} failed: {result}", file=sys.stderr)
            return 1
        if not (result is None or result is True or isinstance(result, (str, dict))):
            print(f"doit action {ref} returned {result!r}: a doit action returns False (failed), "
                  "or True, None, a string or a dict (succeeded)", file=sys.stderr)
            return 1
    stamp = [v for n, v in Entries.items(job.outputs) if n == "stamp"]
    for path in stamp:
        open(path, "w").close()
    return 0
