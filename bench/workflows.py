"""The same synthetic workflow, written for every tool.

A workflow is a list of tasks in topological order. Every task writes one file,
``out/<name>``, with the recipe ``touch <output>``, and has at least one file
input, so that every tool can decide "up to date":

* ``indep``   N independent tasks:        n<i>      <- src/s<i>
* ``chain``   N tasks in one chain:       n0        <- src/s0
                                          n<i>      <- n<i-1>
* ``lattice`` L layers x W columns ("diamond lattice"), W = int(sqrt(10 N)), L = N // W
              (1000 -> 10 x 100; 10000 -> 31 x 316 = 9796; 100000 -> 100 x 1000):
                                          n0_<c>    <- src/s<c>
                                          n<r>_<c>  <- n<r-1>_<c>, n<r-1>_<c-1>   (c > 0)
                                          n<r>_0    <- n<r-1>_0

Files written under ``<dir>/<tool>/``: ``Makefile`` (make), ``build.ninja``
(ninja), ``dodo.py`` (doit), ``Snakefile`` (snakemake), ``Nodefile.toml``
(nodefile), the sources ``src/*`` (empty files) and an empty ``out/``.
"""
from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass, field

SHAPES = ("indep", "chain", "lattice")


@dataclass
class Task:
    name: str
    deps: list = field(default_factory=list)  # names of tasks this one needs
    srcs: list = field(default_factory=list)  # source files (relative paths)

    @property
    def output(self) -> str:
        return f"out/{self.name}"

    @property
    def inputs(self) -> list:
        """Input paths, in declared order (sources first, then dependencies' outputs)."""
        return list(self.srcs) + [f"out/{d}" for d in self.deps]


@dataclass
class Workflow:
    shape: str
    n_requested: int
    tasks: list
    sources: list
    dims: tuple = ()

    @property
    def n(self) -> int:
        return len(self.tasks)

    @property
    def outputs(self) -> list:
        return [t.output for t in self.tasks]

    def users(self) -> dict:
        """source path or task name -> names of the tasks that read it directly."""
        out: dict = {}
        for t in self.tasks:
            for s in t.srcs:
                out.setdefault(s, []).append(t.name)
            for d in t.deps:
                out.setdefault(d, []).append(t.name)
        return out

    def change_target(self):
        """(source to edit for the rebuild case, direct readers, whole downstream cone),
        or None when the shape has no source whose change is a small rebuild."""
        if self.shape == "indep":
            src = f"src/s{self.n // 2}"
        elif self.shape == "lattice":
            W, _ = self.dims
            src = f"src/s{W - 1}"  # the last column: its cone is that column only (L nodes)
        else:
            return None  # chain: its only source feeds every node (that is the full build)
        users = self.users()
        direct = list(users.get(src, []))
        cone, stack = set(), list(direct)
        while stack:
            n = stack.pop()
            if n in cone:
                continue
            cone.add(n)
            stack.extend(users.get(n, []))
        return src, sorted(direct), sorted(cone)

    def sinks(self) -> list:
        needed = {d for t in self.tasks for d in t.deps}
        return [t.name for t in self.tasks if t.name not in needed]


def make_workflow(shape: str, n: int) -> Workflow:
    tasks: list = []
    srcs: list = []
    dims: tuple = ()
    if shape == "indep":
        for i in range(n):
            srcs.append(f"src/s{i}")
            tasks.append(Task(f"n{i}", srcs=[f"src/s{i}"]))
    elif shape == "chain":
        srcs.append("src/s0")
        tasks.append(Task("n0", srcs=["src/s0"]))
        for i in range(1, n):
            tasks.append(Task(f"n{i}", deps=[f"n{i - 1}"]))
    elif shape == "lattice":
        W = max(2, int(math.sqrt(n * 10)))
        L = max(1, n // W)
        dims = (W, L)
        for c in range(W):
            srcs.append(f"src/s{c}")
            tasks.append(Task(f"n0_{c}", srcs=[f"src/s{c}"]))
        for r in range(1, L):
            for c in range(W):
                deps = [f"n{r - 1}_{c}"] + ([f"n{r - 1}_{c - 1}"] if c > 0 else [])
                tasks.append(Task(f"n{r}_{c}", deps=deps))
    else:
        raise ValueError(f"unknown shape {shape!r} (one of {', '.join(SHAPES)})")
    return Workflow(shape, n, tasks, srcs, dims)


# -- writers, one per tool ---------------------------------------------------------------
def write_make(wf: Workflow, d: str) -> None:
    lines = [".PHONY: all", "all: " + " ".join(wf.outputs), ""]
    for t in wf.tasks:
        lines += [f"{t.output}: {' '.join(t.inputs)}", "\ttouch $@", ""]
    _write(os.path.join(d, "Makefile"), "\n".join(lines))


def write_ninja(wf: Workflow, d: str) -> None:
    lines = ["rule touch", "  command = touch $out", ""]
    lines += [f"build {t.output}: touch {' '.join(t.inputs)}" for t in wf.tasks]
    lines += ["", "build all: phony " + " ".join(wf.outputs), "default all", ""]
    _write(os.path.join(d, "build.ninja"), "\n".join(lines))


def write_doit(wf: Workflow, d: str) -> None:
    # doit orders tasks by matching file_dep against other tasks' targets
    tasks = [(t.output, t.inputs) for t in wf.tasks]
    txt = ("DOIT_CONFIG = {'verbosity': 0}\n"
           f"TASKS = {json.dumps(tasks)}\n"
           "def task_t():\n"
           "    for o, ins in TASKS:\n"
           "        yield {'name': o, 'actions': ['touch ' + o], 'file_dep': ins, 'targets': [o]}\n")
    _write(os.path.join(d, "dodo.py"), txt)


def write_snakemake(wf: Workflow, d: str) -> None:
    # idiomatic: one wildcard rule, with an input function for chain and lattice
    n = wf.n
    if wf.shape == "indep":
        body = (f"rule all:\n    input: expand('out/n{{i}}', i=range({n}))\n\n"
                "rule t:\n    input: 'src/s{i}'\n    output: 'out/n{i}'\n"
                "    wildcard_constraints: i=r'\\d+'\n    shell: 'touch {output}'\n")
    elif wf.shape == "chain":
        # Snakemake builds the DAG recursively: a deep chain overflows the default limit
        body = (f"import sys\nsys.setrecursionlimit(max(10000, 10 * {n}))\n"
                f"rule all:\n    input: 'out/n{n - 1}'\n\n"
                "def prev(wc):\n    i = int(wc.i)\n    return 'src/s0' if i == 0 else f'out/n{i - 1}'\n\n"
                "rule t:\n    input: prev\n    output: 'out/n{i}'\n"
                "    wildcard_constraints: i=r'\\d+'\n    shell: 'touch {output}'\n")
    else:
        W, L = wf.dims
        body = (f"W = {W}\nL = {L}\n"
                "rule all:\n    input: [f'out/n{r}_{c}' for r in range(L) for c in range(W)]\n\n"
                "def deps(wc):\n    r, c = int(wc.r), int(wc.c)\n"
                "    if r == 0:\n        return [f'src/s{c}']\n"
                "    return [f'out/n{r - 1}_{c}'] + ([f'out/n{r - 1}_{c - 1}'] if c > 0 else [])\n\n"
                "rule t:\n    input: deps\n    output: 'out/n{r}_{c}'\n"
                "    wildcard_constraints: r=r'\\d+', c=r'\\d+'\n    shell: 'touch {output}'\n")
    _write(os.path.join(d, "Snakefile"), body)


def write_nodefile(wf: Workflow, d: str) -> None:
    # no [project] default: a bare `nodefile build` builds every node no other node needs
    parts = ['[project]\nname = "bench"\n']
    for t in wf.tasks:
        ins = ", ".join(json.dumps(x) for x in list(t.srcs) + list(t.deps))
        parts.append(f'[nodes.{t.name}]\noutputs = "{t.output}"\ninputs = [{ins}]\nshell = "touch {{outputs}}"\n')
    _write(os.path.join(d, "Nodefile.toml"), "\n".join(parts))


WRITERS = {"make": write_make, "ninja": write_ninja, "doit": write_doit,
           "snakemake": write_snakemake, "nodefile": write_nodefile}


def generate(wf: Workflow, base: str, tools, writes: dict | None = None) -> dict:
    """Write the workflow for each tool under base/<tool>/ (replacing what was there), in the
    format of WRITERS[writes.get(tool, tool)]; returns tool -> directory."""
    dirs = {}
    for tool in tools:
        d = os.path.join(base, tool)
        if os.path.exists(d):
            shutil.rmtree(d)
        os.makedirs(os.path.join(d, "src"))
        os.makedirs(os.path.join(d, "out"))
        for s in wf.sources:
            open(os.path.join(d, s), "w").close()
        WRITERS[(writes or {}).get(tool, tool)](wf, d)
        dirs[tool] = d
    return dirs


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)
