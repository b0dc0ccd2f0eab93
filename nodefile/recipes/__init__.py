"""Recipes: turn a node + recipe into something to run (argv, env, cwd) and the
job manifest every recipe receives (NODEFILE_JOB).
"""
from __future__ import annotations

import os
import sys
from ..records import record

from .. import placeholders
from ..hashing import json_encoder
from ..stores import write_file
from ..placeholders import placeholder_context, relative_to
from ..executors.base import to_stdout_file
from ..model import Node, Project, Recipe

_JOB_JSON = json_encoder((",", ":"), default=str)
R_BOOTSTRAP = os.path.join(os.path.dirname(os.path.dirname(__file__)), "r", "run.R")  # read as R_PROFILE_USER
R_NODE = os.path.join(os.path.dirname(R_BOOTSTRAP), "node.R")
# recipe target -> live(project, node, log): the function a thread runs for a Pipeline's
# function node; pipeline.py fills it (recipes never imports the Python API)
LIVE: dict = {}


@record(frozen=True)
class Spec:
    """A process to start for one attempt."""

    node: str
    recipe: Recipe
    argv: tuple[str, ...]
    env: dict
    cwd: str
    log: str
    manifest: str
    timeout: float | None
    resources: dict
    attempt: int
    index: int = 0  # position of the recipe in the node's order for this build
    func: object = None  # transfers (load, fetch): a callable run in a thread instead of a process
    warm: str | None = None  # the warm worker that may run it ("python", "r"), or None: always cold


def manifest(project: Project, node: Node, recipe: Recipe | None = None, attempt: int = 1,
             log: str | None = None) -> dict:
    def entries(es):
        out = []
        for e in es:
            paths = [relative_to(p, node.cwd) for p in e.paths]
            value = paths if (e.many or len(paths) != 1) else paths[0]
            out.append({"name": e.name, "value": value})
        return out

    return {
        "format": 1,
        "node": node.name,
        "project": project.name,
        "root": project.root,
        "cwd": os.path.join(project.root, node.cwd) if node.cwd else project.root,
        "inputs": entries(node.inputs),
        "outputs": entries(node.outputs),
        "params": node.params_dict,
        "wildcards": dict(node.wildcards),
        "recipe": None if recipe is None else {
            "kind": recipe.kind, "name": recipe.name, "target": recipe.target, "args": list(recipe.args)},
        "attempt": attempt,
        "resources": dict(recipe.resources) if recipe else {},
        "log": log,
    }


def r_job_source(m: dict) -> str:
    """R code that defines the list `node` from a manifest (strict lists: r/node.R)."""
    from .rlang import r_named_list, r_string, r_value  # R recipes only (it imports datetime)

    def strict(field, code):
        return f'structure({code}, class = c("nodefile_{field}", "nodefile_entries", "list"))'

    def values(v):
        return r_value(v) if v else "structure(list(), names = character(0))"

    fields = [
        ("node", r_string(m["node"])),
        ("inputs", strict("inputs", r_named_list([(e["name"], e["value"]) for e in m["inputs"]]))),
        ("outputs", strict("outputs", r_named_list([(e["name"], e["value"]) for e in m["outputs"]]))),
        ("params", strict("params", values(m["params"]))),
        ("wildcards", strict("wildcards", values(m["wildcards"]))),
        ("attempt", r_value(m["attempt"])),
        ("log", r_value(m["log"])),
        ("project", r_string(m["project"])),
        ("root", r_string(m["root"])),
    ]
    body = ",\n  ".join(f"{k} = {v}" for k, v in fields)
    with open(R_NODE, encoding="utf-8") as f:
        strict_lists = f.read()
    node = strict("node", f"list(\n  {body}\n)")
    return f"# written by nodefile for node {m['node']}\n{strict_lists}node <- {node}\n"


def write_job(jobdir: str, m: dict, with_r: bool) -> tuple[str, str | None]:
    base = os.path.join(jobdir, _safe(m["node"]))
    path = base + ".json"
    write_file(path, _JOB_JSON(m).encode())  # one writer per node at a time
    rpath = None
    if with_r:
        rpath = base + ".R"
        with open(rpath + ".tmp", "w") as f:
            f.write(r_job_source(m))
        os.replace(rpath + ".tmp", rpath)
    return path, rpath


def _safe(name: str) -> str:
    from ..pathsafe import safe_filename
    return safe_filename(name)


def command(project: Project, node: Node, recipe: Recipe, ctx: dict | None = None) -> list[str]:
    """argv of a run recipe (without the environment)."""
    if ctx is None:
        ctx = placeholder_context(node)
    args = placeholders.expand_args(recipe.args, ctx)
    if recipe.kind == "python":
        return [project.python or sys.executable, relative_to(recipe.target, node.cwd)] + args
    if recipe.kind == "r":
        return [rscript(), relative_to(recipe.target, node.cwd)] + args
    if recipe.kind == "shell":
        line = placeholders.substitute(recipe.target, ctx, quote=True)
        if not any(k == "PATH" for k, _ in recipe.env):
            words = simple_words(line)
            if words:
                return words
        return ["/bin/sh", "-c", line]
    if recipe.kind == "call":
        return [project.python or sys.executable, "-m", "nodefile._call", recipe.target] + args
    if recipe.kind == "r_call":
        return [rscript(), "CALL.R"] + args  # prepare() writes the call and puts its path here
    raise ValueError(f"not a run recipe: {recipe.kind}")


# Characters that make a command line need the shell (outside single quotes), as
# make decides it (job.c, sh_chars): anything else is words separated by blanks.
_SHELL_CHARS = frozenset('"\\$`|&;<>()*?[]{}#~!\n')
_SHELL_WORDS = frozenset(
    ". : [ alias bg break cd command continue echo eval exec exit export false fg getopts hash jobs kill "
    "local printf pwd read readonly return set shift test times trap true type ulimit umask unalias unset "
    "wait if then else elif fi case esac for while until do done in function select time".split())


def simple_words(line: str) -> list[str] | None:
    """The argv of a shell command line that is plain words (single quotes allowed),
    to exec without a shell as make does; None when the shell is needed (any
    expansion, redirection, operator, assignment, builtin or keyword)."""
    if "'" not in line and line.isascii() and line.isprintable():
        if not _SHELL_CHARS.isdisjoint(line):  # printable ASCII without quotes: words split at spaces
            return None
        words = line.split()
    else:
        import re
        import shlex
        unquoted = re.sub(r"'[^']*'", "", line)  # an unclosed quote leaves its ' here
        if "'" in unquoted or not _SHELL_CHARS.isdisjoint(unquoted):
            return None
        words = shlex.split(line)  # what sh makes of plain words and single quotes
    # a path as the command may be a script without #! line, which only sh runs
    if not words or words[0] in _SHELL_WORDS or "=" in words[0] or "/" in words[0]:
        return None
    return words


def python_path(project: Project, node: Node) -> list[str]:
    """Folders put on PYTHONPATH: the declaring Nodefile's folder (a sub-pipeline's
    own helpers), then the project root."""
    here = os.path.join(project.root, node.cwd) if node.cwd else project.root
    return [here] if here == project.root else [here, project.root]


def interpreter_first(project: Project, path: str | None) -> str:
    """PATH for a shell recipe: the folder of the project's Python (`[project] python`,
    else the interpreter running nodefile) first, so `python` there is the one the
    python recipes beside it run with, venv activated or not."""
    folder = os.path.dirname(interpreter(project))
    rest = path if path is not None else os.defpath
    if not folder or rest.split(os.pathsep, 1)[0] == folder:
        return rest
    return folder + os.pathsep + rest if rest else folder


def interpreter(project: Project) -> str:
    """The Python that python recipes run with, as an absolute path when it can be found."""
    exe = project.python
    if not exe:
        return sys.executable
    if os.sep in exe:
        return exe if os.path.isabs(exe) else os.path.normpath(os.path.join(project.root, exe))
    import shutil
    return shutil.which(exe) or exe


def rscript() -> str:
    import shutil
    return shutil.which("Rscript") or "Rscript"


def r_env(env, rpath: str) -> dict:
    """What an `r` recipe adds to its environment: Rscript reads the bootstrap as
    the user profile (R_PROFILE_USER); the bootstrap puts the user's own
    R_PROFILE_USER back (from NODEFILE_R_PROFILE_USER) and loads that profile."""
    out = {"NODEFILE_JOB_R": rpath, "R_PROFILE_USER": R_BOOTSTRAP}
    if "R_PROFILE_USER" in env:
        out["NODEFILE_R_PROFILE_USER"] = env["R_PROFILE_USER"]
    return out


def prepare(project: Project, node: Node, recipe: Recipe, attempt: int, log: str, jobdir: str,
            index: int = 0, base_env: dict | None = None) -> Spec:
    if recipe.kind == "call":
        live = LIVE.get(recipe.target)
        if live is not None:  # a Pipeline's function: run in a thread of this process
            return Spec(node.name, recipe, (), {}, project.root, log, "", recipe.timeout, {"cores": 1.0}, attempt,
                        index, live(project, node, log))
    m = manifest(project, node, recipe, attempt, log)
    mpath, rpath = write_job(jobdir, m, with_r=recipe.kind in ("r", "r_call"))
    ctx = placeholder_context(node)
    env = dict(os.environ if base_env is None else base_env)
    for k, v in recipe.env:
        env[k] = placeholders.substitute(v, ctx)
    env["NODEFILE_JOB"] = mpath
    env["NODEFILE_NODE"] = node.name
    env["PYTHONUNBUFFERED"] = "1"
    if recipe.kind in ("python", "call"):
        pp = env.get("PYTHONPATH")
        env["PYTHONPATH"] = os.pathsep.join(python_path(project, node) + ([pp] if pp else []))
    if recipe.kind == "r":
        env.pop("NODEFILE_R_PROFILE_USER", None)
        env.update(r_env(env, rpath))
    if recipe.kind in ("call", "r_call"):
        from .. import fncall  # a function's return value saved as the node's output
        env.update(fncall.python_env(project, node, recipe))
        if recipe.kind == "r_call":
            env.pop("NODEFILE_R_PROFILE_USER", None)
            env.update(r_env(env, rpath))
    if recipe.kind == "shell" and not any(k == "PATH" for k, _ in recipe.env):
        env["PATH"] = interpreter_first(project, env.get("PATH"))
    cwd = os.path.join(project.root, node.cwd) if node.cwd else project.root
    res = dict(recipe.resources)
    res.setdefault("cores", 1.0)
    argv = command(project, node, recipe, ctx)
    if recipe.kind == "r_call":  # Rscript runs the call written for this node
        from .. import fncall
        argv = [argv[0], fncall.r_script(project, node, recipe, jobdir)] + argv[2:]
    if recipe.stdout:
        env["NODEFILE_STDOUT"] = os.path.join(project.root, placeholders.stdout_path(node, recipe.stdout))
        argv = to_stdout_file(argv)
    return Spec(node.name, recipe, tuple(argv), env, cwd, log, mpath, recipe.timeout, res, attempt, index,
                warm=warm_language(project, recipe))


def warm_language(project: Project, recipe: Recipe) -> str | None:
    """Which warm worker may run the recipe: Python recipes run by the interpreter
    running nodefile, and R recipes (the worker embeds R); None for the rest."""
    if not (project.warm and recipe.warm):
        return None
    if recipe.kind in ("python", "call") and (project.python is None or project.python == sys.executable):
        return "python"
    if recipe.kind == "r":
        return "r"
    return None


def hand_command(project: Project, node: Node, recipe: Recipe, mpath: str, rpath: str | None) -> str:
    """The one line a user runs to execute the recipe by hand (from the recipe's folder)."""
    import shlex
    argv = command(project, node, recipe)
    rel = os.path.relpath(mpath, os.path.join(project.root, node.cwd))
    env = f"NODEFILE_JOB={shlex.quote(rel)}"
    if recipe.kind in ("python", "call"):
        here = os.path.join(project.root, node.cwd)
        rels = ":".join(os.path.relpath(p, here) for p in python_path(project, node))
        env += f" PYTHONPATH={shlex.quote(rels)}${{PYTHONPATH:+:$PYTHONPATH}}"
    if recipe.kind == "r":
        rel = os.path.relpath(rpath, os.path.join(project.root, node.cwd))
        env += "".join(f" {k}={shlex.quote(v)}" for k, v in r_env(os.environ, rel).items())
    if recipe.kind == "r_call":
        from .. import fncall
        here = os.path.join(project.root, node.cwd)
        script = fncall.r_script(project, node, recipe, os.path.dirname(mpath))
        env += "".join(f" {k}={shlex.quote(v)}" for k, v in r_env(os.environ, os.path.relpath(rpath, here)).items())
        argv = [argv[0], os.path.relpath(script, here)] + argv[2:]
    if recipe.kind == "call" and recipe.returns:
        from .. import fncall
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in fncall.python_env(project, node, recipe).items()) + " " + env
    line = env + " " + " ".join(shlex.quote(a) for a in argv)
    if recipe.stdout:
        out = placeholders.stdout_path(node, recipe.stdout)
        line += " > " + shlex.quote(relative_to(out, node.cwd))
    return line
