"""A Nodefile's nodes as doit tasks, for teams that move from doit gradually.

In a dodo.py (next to its own doit tasks, or alone; `doit -f FILE` names it as usual):

    from nodefile.doit_loader import task_nodes   # doit finds it: one task per node

As doit's task loader, with no dodo.py (doit.cfg, or [tool.doit] in pyproject.toml):

    [GLOBAL]
    loader = nodefile
    [LOADER]
    nodefile = nodefile.doit_loader:NodefileLoader

Each task's action runs `python -m nodefile build NODE` in the project root, so
nodefile decides what is stale and runs the recipes; doit's own up-to-date check
asks nodefile (`nodefile.status`). doit is imported only inside the functions
doit calls: importing this module does not need it.
"""
from __future__ import annotations

import os
import sys


def nodefile_tasks(path: str | None = None, prefix: str = ""):
    """doit task dicts, one per node of the Nodefile at (or searched upwards from) path
    (default: the current folder, which doit sets to the dodo file's folder)."""
    import nodefile
    project = _load(path)
    names = {n: prefix + doit_name(n) for n in project.nodes}
    state = {}

    def up_to_date(node: str) -> bool:
        if "plan" not in state:  # one status for every task of this doit run
            state["plan"] = nodefile.status(path=project.file)
        verdict = state["plan"].get(node)
        return verdict is not None and not verdict.stale

    for name, node in project.nodes.items():
        task = {"basename": names[name], "doc": _doc(node),
                "task_dep": [names[d] for d in node.deps if d in names]}
        if node.is_alias:
            task["actions"] = None
        else:
            task.update(actions=[_build(project.root, name)], clean=[_build(project.root, name, "clean")],
                        file_dep=[_here(project.root, p) for p in node.input_paths if _is_file(project.root, p)],
                        targets=[_here(project.root, p.rstrip("/")) for p in node.output_paths],
                        uptodate=[(up_to_date, [name])])
        yield task


def _load(path):
    """The project; a Nodefile error as doit's InvalidDodoFile (doit prints it, no traceback)."""
    import nodefile
    from doit.exceptions import InvalidDodoFile
    try:
        return nodefile.load_project(path)
    except nodefile.NodefileError as e:
        raise InvalidDodoFile(f"nodefile: {e}") from None


def task_nodes():
    """doit task creator: the nodes of the Nodefile (doit names it `nodes`; the tasks
    keep the node names)."""
    yield from nodefile_tasks()


def doit_name(node: str) -> str:
    """A node name as a doit task name: doit forbids `=` (in pattern instances)."""
    return node.replace("=", ":")


def _build(root: str, node: str, command: str = "build"):
    from doit.action import CmdAction
    return CmdAction([sys.executable, "-m", "nodefile", command, node], cwd=root, shell=False)


def _here(root: str, path: str) -> str:
    """A project path as doit reads it: relative to doit's working directory."""
    return os.path.relpath(os.path.join(root, path))


def _is_file(root: str, path: str) -> bool:
    """doit's file_dep are files: folders (directory inputs and outputs) are left out."""
    return not path.endswith("/") and not os.path.isdir(os.path.join(root, path))


def _doc(node) -> str:
    if node.is_alias:
        return f"alias of {', '.join(node.deps)}"
    return f"nodefile node ({', '.join(r.kind for r in node.recipes)})"


class NodefileLoader:
    """doit's TaskLoader2 API: `loader = nodefile` in doit's configuration; doit's `-f`
    names the Nodefile (default: searched upwards from the current folder)."""

    API = 2
    cmd_options = ({"name": "nodefile", "short": "f", "long": "file", "type": str, "default": None,
                    "help": "the Nodefile (default: Nodefile.toml, searched upwards)"},)

    def __init__(self):
        self.cmd_names = []
        self.config = None
        self.task_opts = None
        self.path = None

    def setup(self, opt_values):
        self.path = opt_values.get("nodefile")
        if self.path and not os.path.exists(self.path):
            from doit.exceptions import InvalidCommand
            raise InvalidCommand(f"nodefile: {self.path}: no such Nodefile")

    def load_doit_config(self):
        project = _load(self.path)
        return {"default_tasks": [doit_name(n) for n in project.default]}

    def load_tasks(self, cmd, pos_args):
        from doit.loader import generate_tasks
        return generate_tasks("nodes", nodefile_tasks(self.path), "the Nodefile's nodes")
