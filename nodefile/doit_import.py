"""`node import dodo.py`: a doit dodo file, loaded by doit's own loader, written as a Nodefile.

One node per doit task and sub-task. `file_dep` -> inputs, `targets` -> outputs,
`task_dep` -> inputs naming the upstream node; command actions -> a `shell`
recipe, Python actions -> a `call` recipe through `nodefile.doit_adapter:run`.
A task without targets gets a stamp output under `.nodefile/doit/`; a task
without actions is an alias. What cannot be converted is reported as a Finding
(never dropped silently). doit is imported here only, inside `load_dodo`.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shlex
import sys

from .doit_adapter import CONFIG_PARAM
from .errors import ConfigError

STAMP_DIR = ".nodefile/doit"
ADAPTER = "nodefile.doit_adapter:run"
_BAD_CHAR = re.compile(r"[^A-Za-z0-9_\-]")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_\-]+$")
_TOKEN = "\x00{}\x00"  # a doit substitution, replaced by a nodefile placeholder after brace escaping


class Finding:
    """One thing about a doit task: `skipped` (not converted; --strict fails) or a note."""

    __slots__ = ("task", "what", "why", "skipped")

    def __init__(self, task: str, what: str, why: str, skipped: bool):
        self.task, self.what, self.why, self.skipped = task, what, why, skipped

    def __str__(self) -> str:
        head = "not converted" if self.skipped else "note"
        return f"{head}: task '{self.task}': {self.what}: {self.why}"


class Draft:
    """A node to write: the doit task it comes from and the Nodefile keys."""

    def __init__(self, task: str, name: str, doc: str | None):
        self.task, self.name, self.doc = task, name, doc
        self.inputs: object = None
        self.outputs: object = None
        self.params: list = []
        self.recipe: tuple | None = None  # ("shell", line) or ("call", [args])
        self.notes: list[str] = []
        self.config: dict = {}  # config_changed values, as params of their own


# -- loading ------------------------------------------------------------------------------
class _ListCmd:
    """What doit's loader asks of the running command: delayed tasks stay delayed."""
    execute_tasks = True


def load_dodo(path: str) -> tuple[list, dict]:
    """(tasks, DOIT_CONFIG) of a dodo file, through doit's DodoTaskLoader
    (which changes the working directory to the dodo's folder)."""
    try:
        from doit.cmd_base import DodoTaskLoader, get_loader
        from doit.doit_cmd import DoitMain
        from doit.exceptions import InvalidCommand, InvalidDodoFile, InvalidTask
    except ImportError:
        raise ConfigError("node import needs doit, which is not installed: pip install 'nodefile[doit]'") from None
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: no such dodo file")
    loader = get_loader({}, DodoTaskLoader())
    loader.cmd_names = sorted(c.get_name() for c in DoitMain.DOIT_CMDS)  # doit refuses a task named `list`
    try:
        with contextlib.redirect_stdout(sys.stderr):  # what the dodo prints is not the Nodefile (-o -)
            loader.setup({"dodoFile": os.path.abspath(path), "cwdPath": None, "seek_file": False})
            config = loader.load_doit_config()
            tasks = loader.load_tasks(_ListCmd(), [])
    except (InvalidDodoFile, InvalidTask, InvalidCommand) as e:
        raise ConfigError(f"{path}: doit could not load it: {e}".rstrip()) from None
    except Exception as e:  # the user's code raised while doit loaded it
        raise ConfigError(f"{path}: loading it raised {type(e).__name__}: {e}{_where(e, path)}") from None
    return tasks, config


def _where(exc: BaseException, path: str) -> str:
    import traceback
    real = os.path.realpath(path)
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if os.path.realpath(f.filename) == real]
    if isinstance(exc, SyntaxError) and exc.lineno:
        return f" (line {exc.lineno})"
    return f" (line {frames[-1].lineno})" if frames else ""


# -- names -----------------------------------------------------------------------------
def node_names(task_names: list[str]) -> dict[str, str]:
    """doit task name -> a valid, unique node name (`compile:main.c` -> `compile-main_c`)."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for t in task_names:
        base = _BAD_CHAR.sub("_", t.replace(":", "-"))
        if not re.match(r"[A-Za-z_]", base):
            base = "_" + base
        name, i = base, 2
        while name in used:
            name, i = f"{base}-{i}", i + 1
        used.add(name)
        out[t] = name
    return out


# -- conversion ------------------------------------------------------------------------
def convert(tasks: list, config: dict) -> tuple[list[Draft], dict, list[Finding], list[str]]:
    """doit tasks -> (drafts, root params, findings, default node names)."""
    import fnmatch
    names = node_names([t.name for t in tasks])
    findings: list[Finding] = []
    drafts: list[Draft] = []
    options = {t.name: _options(t, findings) for t in tasks}
    root_params = _shared_params(options)
    fmt = config.get("action_string_formatting", "old")
    for task in tasks:
        deps = list(task.task_dep)
        for pattern in task.wild_dep:
            deps += [t.name for t in tasks if fnmatch.fnmatchcase(t.name, pattern) and t.name != task.name]
        d = _draft(task, names, deps, options[task.name], root_params, fmt, findings)
        if d is not None:
            drafts.append(d)
    kept = {d.task for d in drafts}
    _drop_missing(drafts, {names[t]: t for t in names if t not in kept}, findings)
    drafts = [d for d in drafts if d.recipe is not None or d.inputs]  # an alias left without members
    default = config.get("default_tasks") or []
    default_nodes = [names[t] for t in default if t in kept]
    for t in default:
        if t not in kept:
            findings.append(Finding(t, "DOIT_CONFIG default_tasks", "names no converted task", skipped=True))
    other = sorted(k for k in config if k not in ("default_tasks", "action_string_formatting"))
    if other:
        findings.append(Finding("DOIT_CONFIG", ", ".join(other), "doit settings, not used by nodefile", skipped=False))
    return drafts, root_params, findings, default_nodes


def _drop_missing(drafts: list[Draft], dropped: dict, findings) -> None:
    """Inputs naming a task that was not converted: removed, and said so."""
    for d in drafts:
        deps = d.inputs.get("task_dep", []) if isinstance(d.inputs, dict) else d.inputs or []
        for n in [n for n in deps if n in dropped]:
            deps.remove(n)
            findings.append(Finding(d.task, f"task_dep '{dropped[n]}'", "that task was not converted", skipped=True))
        if isinstance(d.inputs, dict) and not deps:
            del d.inputs["task_dep"]


def _options(task, findings) -> dict:
    """The task's params (and @task_params) with their default values, as TOML can hold them."""
    try:
        task.init_options()
    except Exception as e:
        findings.append(Finding(task.name, "params", f"doit could not read them: {e}", skipped=True))
        return {}
    out = {}
    for k, v in (task.options or {}).items():
        v = _plain(v)
        if v is _NOT_PLAIN or not _tomlable(v):
            findings.append(Finding(task.name, f"param '{k}'", "its default cannot be written in TOML", skipped=True))
        else:
            out[k] = v
    if task.creator_params:
        findings.append(Finding(task.name, "@task_params", "the tasks were created with the parameters' defaults",
                                skipped=False))
    if task.pos_arg:
        findings.append(Finding(task.name, "pos_arg", "positional command-line arguments have no equivalent",
                                skipped=True))
    return out


def _shared_params(options: dict) -> dict:
    """Params every task that declares them gives the same default: they go to [params]
    (so `node build --set NAME=VALUE` overrides them, as `doit TASK --NAME` does)."""
    seen: dict = {}
    clash: set = set()
    for opts in options.values():
        for k, v in opts.items():
            if k in seen and seen[k] != v:
                clash.add(k)
            seen.setdefault(k, v)
    return {k: v for k, v in seen.items() if k not in clash}


def _draft(task, names, deps, opts, root_params, fmt, findings) -> Draft | None:
    name = task.name
    if getattr(task, "loader", None) is not None:
        after = task.loader.task_dep
        why = (f"its tasks are created only after task '{after}' runs" if after
               else "its tasks are created only when doit runs")
        findings.append(Finding(name, "create_after (a delayed task)", why + ": convert the tasks it creates by hand",
                                skipped=True))
        return None
    d = Draft(name, names[name], task.doc)
    _notes(task, d, findings)
    node_set = set(names.values())
    file_dep = [f"./{p}" if p in node_set else p for p in sorted(task.file_dep)]  # a path, not that node
    known = [t for t in deps if t in names]
    for t in deps:
        if t not in names:
            findings.append(Finding(name, f"task_dep '{t}'", "no such task", skipped=True))
    dep_nodes = list(dict.fromkeys(names[t] for t in known))
    if not task.actions:
        if task.targets:
            findings.append(Finding(name, "targets", "a task without actions: nothing would make them", skipped=True))
            return None
        if not (file_dep or dep_nodes):
            findings.append(Finding(name, "task", "no actions, targets or dependencies: nothing to build",
                                    skipped=False))
            return None
        d.inputs = file_dep + dep_nodes  # an alias: building it builds these
        return d
    d.inputs = {"file_dep": file_dep, "task_dep": dep_nodes} if dep_nodes else file_dep
    if dep_nodes and not file_dep:
        del d.inputs["file_dep"]
    stamp = not task.targets
    d.outputs = {"stamp": f"{STAMP_DIR}/{d.name}.done"} if stamp else [_output(t) for t in task.targets]
    d.params = [k for k in opts if k in root_params]
    inline = {k: v for k, v in opts.items() if k not in root_params}
    inline.update(d.config)
    if inline:
        d.params.append(inline)
    subs = _substitutions(opts, bool(file_dep), bool(dep_nodes), stamp)
    d.recipe = _recipe(task, subs, fmt, stamp, findings)
    return d


def _output(target: str) -> str:
    """A target as an output; one that is a directory now is a directory output."""
    t = str(target)
    return t.rstrip("/") + "/" if os.path.isdir(t) and not t.endswith("/") else t


def _notes(task, d: Draft, findings) -> None:
    """Attributes that do not convert (skipped) or convert with a difference (notes)."""
    name = task.name

    def skip(what, why):
        findings.append(Finding(name, what, why, skipped=True))

    def note(what, why):
        findings.append(Finding(name, what, why, skipped=False))
        d.notes.append(f"{what}: {why}")

    if task.calc_dep:
        skip("calc_dep", f"dependencies computed at run time by {', '.join(sorted(task.calc_dep))}; "
                         "list them in file_dep")
    if task.getargs:
        skip("getargs", "values taken from other tasks' results have no equivalent")
    sources = {src for src, _key in task.getargs.values()}  # doit makes them setup tasks: listed as getargs
    setup = [t for t in task.setup_tasks if t not in sources]
    if setup:
        skip("setup", f"setup tasks ({', '.join(setup)}) have no equivalent; "
                      "make them a task_dep if their outputs are needed")
    if task.teardown:
        skip("teardown", "teardown actions have no equivalent")
    _uptodate(task, d, skip, note)
    if task.clean_actions:
        note("clean", "its clean actions are not run: `node clean` removes the declared outputs")
    elif getattr(task, "_remove_targets", False):
        note("clean", "`node clean` removes the outputs, as `doit clean` does")
    if task.verbosity is not None:
        note("verbosity", f"{task.verbosity}: a recipe's output goes to its log (`node log NODE`), "
                          "and is shown when it fails")
    if task.custom_title is not None:
        note("title", "nodefile's progress lines show the node's name")
    if task.io.capture is False:
        note("io", "a recipe's output goes to its log (`node log NODE`), not to the terminal")
    if task.watch:
        note("watch", "`node watch` follows the inputs")
    if task.actions and not task.file_dep and all(u is None for u, _, _ in task.uptodate):
        note("no file_dep", "doit runs it every time; nodefile runs it once, then when its outputs change "
                            "(`node build -B NODE` forces it)")


def _uptodate(task, d: Draft, skip, note) -> None:
    from doit.task import result_dep
    from doit.tools import config_changed, run_once
    for utd, _args, _kwargs in task.uptodate:
        if isinstance(utd, result_dep) and task.getargs:
            continue  # doit added it for getargs, listed there
        value = _plain(utd.config) if isinstance(utd, config_changed) and utd.encoder is None else _NOT_PLAIN
        if value is not _NOT_PLAIN and _tomlable(value):
            key = CONFIG_PARAM + (f"_{len(d.config) + 1}" if d.config else "")
            d.config[key] = value
            note("uptodate config_changed", f"the value is the param {key}: the node reruns when it changes")
        elif utd is run_once:
            note("uptodate run_once", "nodefile's default: run once, then when inputs or outputs change")
        elif utd is True:
            note("uptodate True", "doit runs it only while a target is missing (without targets, never); "
                                  "nodefile runs it once, then when its inputs or outputs change")
        elif utd is False:
            note("uptodate False", "doit runs it every time; nodefile when its inputs change "
                                   "(`node build -B NODE` forces it)")
        elif utd is None:
            note("uptodate None", "ignored, as doit ignores it")
        else:
            what = utd if isinstance(utd, str) else getattr(utd, "__qualname__", None) or type(utd).__name__
            skip(f"uptodate {what}", "a custom up-to-date check has no equivalent; declare what it checks "
                                     "as inputs or params")


# -- actions -------------------------------------------------------------------------
def _substitutions(opts: dict, has_file_dep: bool, named_inputs: bool, stamp: bool) -> dict:
    """doit's `%(NAME)s` keys -> nodefile placeholders."""
    deps = ("{inputs.file_dep}" if named_inputs else "{inputs}") if has_file_dep else ""
    subs = {"targets": "" if stamp else "{outputs}", "dependencies": deps, "changed": deps}
    subs.update({k: "{params.%s}" % k for k in opts})
    return subs


def command_text(action: str, subs: dict, fmt: str = "old") -> str:
    """A doit command string with its substitutions as nodefile placeholders (braces
    escaped); doit's own formatting rules, so `%%` and `{{` mean what they meant."""
    tokens = {k: _TOKEN.format(k) for k in subs}
    if fmt == "new":
        text = action.format(**tokens)
    elif fmt == "both":
        text = action.format(**tokens) % tokens
    else:
        text = action % tokens
    text = text.replace("{", "{{").replace("}", "}}")
    for k, v in subs.items():
        text = text.replace(_TOKEN.format(k), v)
    return text


def _recipe(task, subs, fmt, stamp, findings) -> tuple:
    from doit.action import CmdAction, PythonAction
    steps: list[tuple[str, object]] = []  # ("sh", text) | ("py", (ref, args, kwargs))
    for i, a in enumerate(task.actions, 1):
        where = f"action {i}"
        if isinstance(a, CmdAction):
            step = _cmd_step(a, subs, fmt)
        elif isinstance(a, PythonAction):
            step = _py_step(a)
        else:
            step = f"an action of class {type(a).__name__} has no equivalent"
        if isinstance(step, str):
            findings.append(Finding(task.name, where, step, skipped=True))
            message = shlex.quote(f"doit task {task.name}: {where} was not converted: {step}")
            return ("shell", _braces(f"echo {message} >&2 && exit 1"))
        steps.append(step)
    if all(kind == "sh" for kind, _ in steps):
        lines = [text for _, text in steps]
        if stamp:
            lines.append("touch {outputs.stamp}")
        return ("shell", lines[0] if len(lines) == 1 else " && ".join(_grouped(t) for t in lines))
    args = []
    for kind, value in steps:
        if kind == "sh":
            args.append("sh:" + value)
            continue
        ref, pargs, pkwargs = value
        args.append("py:" + ref)
        if pargs:
            args.append("args:" + _braces(json.dumps(pargs)))
        if pkwargs:
            args.append("kwargs:" + _braces(json.dumps(pkwargs)))
    return ("call", args)


def _braces(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


_SEPARATE = re.compile(r";|\|\||(?<![&>])&(?![&>])|\n|#|<<")
_STATEFUL = ("cd", "pushd", "popd", "export", "unset", "set", "umask", "exec", "exit", "alias", "source", ".",
             "shift", "trap", "readonly", "local", "eval")


def _grouped(line: str) -> str:
    """One action of several joined with &&, in a subshell when it could reach the
    next one (a `;`, `||`, `&`, comment, here-document, `cd`, `export` or assignment),
    as doit runs each action in a shell of its own."""
    words = line.split(None, 1)
    first = words[0] if words else ""
    if _SEPARATE.search(line) or first in _STATEFUL or "=" in first:
        return f"({line})"
    return line


def _cmd_step(a, subs: dict, fmt: str):
    raw = a._action  # the command as written: str, list, or a callable making it
    if a.pkwargs:
        return f"a command with Popen options ({', '.join(sorted(a.pkwargs))}) has no equivalent"
    if isinstance(raw, (list, tuple)):
        return ("sh", _braces(shlex.join(str(x) for x in raw)))
    if not isinstance(raw, str):
        return "a command made by a Python callable at run time has no equivalent"
    try:
        return ("sh", command_text(raw, subs, fmt))
    except (KeyError, ValueError, TypeError, IndexError) as e:
        return f"its command {raw!r} uses a substitution nodefile cannot give ({type(e).__name__}: {e})"


def _py_step(a):
    import functools
    func, args, kwargs = a.py_callable, list(a.args), dict(a.kwargs)
    while isinstance(func, functools.partial):
        args, kwargs = list(func.args) + args, {**func.keywords, **kwargs}
        func = func.func
    ref = callable_ref(func)
    if ref is None:
        what = getattr(func, "__qualname__", type(func).__name__)
        return f"the Python callable {what} cannot be imported (a lambda, a nested function or an object): " \
               "move it to module level"
    pargs, pkwargs = _plain(args), _plain(kwargs)
    if pargs is _NOT_PLAIN or pkwargs is _NOT_PLAIN:
        return f"the arguments of {ref} cannot be written in a Nodefile (only strings, numbers, booleans, " \
               "None, paths, lists and dicts can)"
    return ("py", (ref, pargs, pkwargs))


def callable_ref(func) -> str | None:
    """'module:qualname' when importing it gives back the same function, else None."""
    import importlib
    mod, qual = getattr(func, "__module__", None), getattr(func, "__qualname__", None)
    if not mod or not qual or "<" in qual:
        return None
    try:
        obj = importlib.import_module(mod)
        for part in qual.split("."):
            obj = getattr(obj, part)
    except Exception:
        return None
    return f"{mod}:{qual}" if obj is func else None


_NOT_PLAIN = object()


def _plain(v):
    """A value as JSON and TOML hold it (paths as strings, tuples as lists), or _NOT_PLAIN."""
    from pathlib import PurePath
    if v is None or isinstance(v, (str, bool, int, float)):
        return v
    if isinstance(v, PurePath):
        return str(v)
    if isinstance(v, (list, tuple)):
        out = [_plain(x) for x in v]
        return _NOT_PLAIN if any(x is _NOT_PLAIN for x in out) else out
    if isinstance(v, dict) and all(isinstance(k, str) for k in v):
        out = {k: _plain(x) for k, x in v.items()}
        return _NOT_PLAIN if any(x is _NOT_PLAIN for x in out.values()) else out
    return _NOT_PLAIN


# -- TOML ----------------------------------------------------------------------------
def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return ("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")) if not math.isfinite(v) else repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{toml_key(k)} = {toml_value(x)}" for k, x in v.items()) + " }" if v else "{}"
    raise ValueError(f"no TOML for {v!r}")


def toml_key(k: str) -> str:
    return k if _BARE_KEY.match(k) else json.dumps(k, ensure_ascii=False)


def _tomlable(v) -> bool:
    if v is None:
        return False
    if isinstance(v, list):
        return all(_tomlable(x) for x in v)
    if isinstance(v, dict):
        return all(_tomlable(x) for x in v.values())
    return True


def render(drafts: list[Draft], root_params: dict, default: list[str], source: str,
           findings: list[Finding]) -> str:
    lines = [f"# Written by `node import {source}` from its doit tasks (doit's own loader).",
             "# Python actions run through nodefile.doit_adapter, which gives them doit's keyword",
             "# arguments (targets, dependencies, changed, task) and the task's params."]
    skipped = [f for f in findings if f.skipped]
    if skipped:
        lines.append("# Not converted (see the notes at each node):")
        lines += [f"#   {f.task}: {f.what}: {f.why}" for f in skipped]
    lines.append("")
    if default:
        lines += ["[project]", f"default = {toml_value(default)}", ""]
    if root_params:
        lines.append("[params]")
        lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in root_params.items()]
        lines.append("")
    by_task: dict[str, list[Finding]] = {}
    for f in skipped:
        by_task.setdefault(f.task, []).append(f)
    for d in drafts:
        head = f"# doit task '{d.task}'" + (f": {d.doc}" if d.doc else "")
        lines.append(head)
        lines += [f"# not converted: {f.what}: {f.why}" for f in by_task.get(d.task, [])]
        lines += [f"# note: {n}" for n in d.notes]
        lines.append(f"[nodes.{d.name}]")
        if d.inputs:
            lines.append(f"inputs = {toml_value(d.inputs)}")
        if d.outputs:
            lines.append(f"outputs = {toml_value(d.outputs)}")
        if d.params:
            lines.append(f"params = {toml_value(d.params)}")
        if d.recipe is not None:
            kind, value = d.recipe
            if kind == "shell":
                lines.append(f"shell = {toml_value(value)}")
            else:
                lines.append(f"call = {toml_value(ADAPTER)}")
                lines.append(f"args = {toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


# -- the command -------------------------------------------------------------------
def _say(rep, text: str) -> None:
    """A line on stderr (stdout may be the Nodefile itself, with -o -)."""
    rep.err.write(text + "\n")
    rep.err.flush()


def import_dodo(dodo: str, output: str | None, strict: bool, force: bool, rep) -> int:
    """Write the Nodefile for a dodo file; report what did not convert. Exit status."""
    dodo_dir = os.path.dirname(os.path.abspath(dodo))
    out = None if output == "-" else os.path.abspath(output or os.path.join(dodo_dir, "Nodefile.toml"))
    if out is not None:
        if os.path.dirname(out) != dodo_dir:
            raise ConfigError(f"{output}: the Nodefile must be written beside {dodo} "
                              "(its paths are relative to that folder)")
        if os.path.exists(out) and not force:
            raise ConfigError(f"{os.path.relpath(out)} exists: not overwritten "
                              "(--force replaces it; -o FILE writes another file; -o - prints it)")
    here = os.getcwd()
    try:  # doit's paths are relative to the dodo's folder, and its loader changes to it
        tasks, config = load_dodo(dodo)
        drafts, root_params, findings, default = convert(tasks, config)
    finally:
        os.chdir(here)
    for f in findings:
        _say(rep, str(f))
    skipped = sum(f.skipped for f in findings)
    if strict and skipped:
        rep.error(f"{skipped} thing(s) could not be converted (--strict): nothing written")
        return 2
    text = render(drafts, root_params, default, os.path.basename(dodo), findings)
    if out is None:
        sys.stdout.write(text)
        return 0
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, out)
    _say(rep, f"wrote {os.path.relpath(out)}: {len(drafts)} node(s) from {len(tasks)} doit task(s)"
             + (f"; {skipped} thing(s) not converted, listed above" if skipped else ""))
    return 0
