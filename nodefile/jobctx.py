"""The job a recipe receives: `job = nodefile.job()` inside a recipe script.

Inside a build the manifest comes from NODEFILE_JOB. Outside one,
`nodefile.job("TARGET")` computes it from the Nodefile, so a recipe script can
run and be debugged on its own.
"""
from __future__ import annotations

import json
import os


class Entries:
    """Inputs or outputs: by position (`job.inputs[0]`) and, where named, by name
    (`job.inputs.raw`, `job.inputs["raw"]`). Values are paths (str), or lists of
    paths where the entry names several."""

    def __init__(self, entries: list[dict]):
        self._entries = [(e.get("name"), e["value"]) for e in entries]

    def __getattribute__(self, name):
        # an entry named like a method (items, paths, names) is reachable by attribute
        if not name.startswith("_"):
            for n, v in object.__getattribute__(self, "_entries"):
                if n == name:
                    return v
        return object.__getattribute__(self, name)

    def __getitem__(self, key):
        if isinstance(key, slice):
            return [v for _, v in self._entries[key]]
        if isinstance(key, str):
            for n, v in self._entries:
                if n == key:
                    return v
            raise KeyError(key)
        return self._entries[key][1]

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        for n, v in self._entries:
            if n == name:
                return v
        known = ", ".join(n for n, _ in self._entries if n) or "none are named"
        raise AttributeError(f"no entry named '{name}' ({known})")

    def __len__(self):
        return len(self._entries)

    def __iter__(self):
        return iter(v for _, v in self._entries)

    def names(self) -> list:
        return [n for n, _ in self._entries]

    def items(self):
        return [(n, v) for n, v in self._entries]

    def paths(self) -> list[str]:
        """Every path, flattened, in declared order."""
        out = []
        for _, v in self._entries:
            out.extend(v if isinstance(v, list) else [v])
        return out

    def __repr__(self):
        return f"Entries({self._entries!r})"


class Values(dict):
    """Params and wildcards: `job.params.seed` or `job.params["seed"]` (a dict)."""

    def __getattribute__(self, name):
        # a param named like a dict method (values, keys, items) is reachable by attribute
        if not name.startswith("_") and dict.__contains__(self, name):
            return dict.__getitem__(self, name)
        return dict.__getattribute__(self, name)

    def __getattr__(self, name):
        raise AttributeError(f"no param '{name}' (declared: {', '.join(self) or 'none'})")


class Job:
    def __init__(self, m: dict):
        self.manifest = m
        self.node = m["node"]
        self.inputs = Entries(m["inputs"])
        self.outputs = Entries(m["outputs"])
        self.params = Values(m.get("params") or {})
        self.wildcards = Values(m.get("wildcards") or {})
        self.attempt = m.get("attempt", 1)
        self.resources = Values(m.get("resources") or {})
        self.log = m.get("log")
        self.root = m.get("root")

    def __repr__(self):
        return f"Job(node={self.node!r})"


def job(target: str | None = None, path: str | None = None) -> Job:
    """The current job. With TARGET (or no NODEFILE_JOB), computed from the Nodefile."""
    env = os.environ.get("NODEFILE_JOB")
    if target is None and env:
        with open(env) as f:
            return Job(json.load(f))
    if target is None:
        raise RuntimeError("not running inside `node build`: pass a target, e.g. nodefile.job(\"clean\")")
    from .config import load_project
    from .recipes import manifest
    from .engine import resolve_targets
    project = load_project(path)
    (name,) = resolve_targets(project, [target])
    node = project.nodes[name]
    recipe = next((r for r in node.recipes if r.kind != "fetch"), None)
    return Job(manifest(project, node, recipe))
