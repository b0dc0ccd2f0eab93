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
from ..model import Node, Project, Recipe

_JOB_JSON = json_encoder((",", ":"), default=str)
R_BOOTSTRAP = os.path.join(os.path.dirname(os.path.dirname(__file__)), "r", "run.R")


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
    """R code that defines the list `node` from a manifest."""
    from .rlang import r_named_list, r_string, r_value  # R recipes only (it imports datetime)
    def lst(es):
        return r_named_list([(e["name"], e["value"]) for e in es])

    fields = [
        ("node", r_string(m["node"])),
        ("inputs", lst(m["inputs"])),
        ("outputs", lst(m["outputs"])),
        ("params", r_value(m["params"]) if m["params"] else "structure(list(), names = character(0))"),
        ("wildcards", r_value(m["wildcards"]) if m["wildcards"] else "structure(list(), names = character(0))"),
        ("attempt", r_value(m["attempt"])),
        ("log", r_value(m["log"])),
        ("project", r_string(m["project"])),
        ("root", r_string(m["root"])),
    ]
    body = ",\n  ".join(f"{k} = {v}" for k, v in fields)
    return f"# written by nodefile for node {m['node']}\nnode <- list(\n  {body}\n)\n"


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
        return [rscript(), R_BOOTSTRAP] + args
    if recipe.kind == "shell":
        line = placeholders.substitute(recipe.target, ctx, quote=True)
        if not any(k == "PATH" for k, _ in recipe.env):
            words = simple_words(line)
            if words:
                return words
        return ["/bin/sh", "-c", line]
    if recipe.kind == "call":
        return [project.python or sys.executable, "-m", "nodefile._call", recipe.target] + args
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


def rscript() -> str:
    import shutil
    return shutil.which("Rscript") or "Rscript"


def prepare(project: Project, node: Node, recipe: Recipe, attempt: int, log: str, jobdir: str,
            index: int = 0, base_env: dict | None = None) -> Spec:
    m = manifest(project, node, recipe, attempt, log)
    mpath, rpath = write_job(jobdir, m, with_r=recipe.kind == "r")
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
        env["NODEFILE_JOB_R"] = rpath
        env["NODEFILE_SCRIPT"] = relative_to(recipe.target, node.cwd)
    cwd = os.path.join(project.root, node.cwd) if node.cwd else project.root
    res = dict(recipe.resources)
    res.setdefault("cores", 1.0)
    return Spec(node.name, recipe, tuple(command(project, node, recipe, ctx)), env, cwd, log, mpath,
                recipe.timeout, res, attempt, index)


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
        env += f" NODEFILE_JOB_R={shlex.quote(os.path.relpath(rpath, os.path.join(project.root, node.cwd)))}"
        env += f" NODEFILE_SCRIPT={shlex.quote(relative_to(recipe.target, node.cwd))}"
    return env + " " + " ".join(shlex.quote(a) for a in argv)
