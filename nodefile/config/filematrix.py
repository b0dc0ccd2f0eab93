"""Instances from files: `matrix = "books/{book}.txt"` on a pattern node lists its
instances from the files that exist when the Nodefile is read (make's
`$(wildcard books/*.txt)`, Snakemake's `glob_wildcards`).

Each wildcard matches within one path segment (as `*` does) and its
`wildcards = { NAME = "REGEX" }` constraint, if any. What a scan found is kept in
the Project (Project.scans): the project cache (cache.py) re-lists it before
trusting an entry, and the no-op fast path stats the folders listed
(scan_folders), so a new or removed file is seen and a touched one is not.
"""
from __future__ import annotations

import glob as globmod
import os
import re

from . import patterns

_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")


def glob_of(pattern: str) -> str:
    """The glob listing a pattern's candidates: each wildcard a `*`, the rest literal."""
    out, pos = [], 0
    for m in _TOKEN.finditer(pattern):
        out.append(globmod.escape(pattern[pos:m.start()]))
        out.append(m.group(0)[0] if m.group(1) is None else "*")
        pos = m.end()
    out.append(globmod.escape(pattern[pos:]))
    return "".join(out)


def listing(root: str, glob: str) -> tuple[str, ...]:
    """The project-relative paths a glob matches now, sorted (hidden files excluded, as
    by the shell); never anything under .nodefile/."""
    found = []
    for m in globmod.glob(os.path.join(root, glob)):
        rel = os.path.relpath(m, root).replace(os.sep, "/")
        if not rel.startswith(".nodefile/") and not rel.startswith("../"):
            found.append(rel)
    return tuple(sorted(found))


def scan(root: str, pattern: str, constraints: dict) -> tuple[str, tuple[str, ...], list[dict]]:
    """(the glob, the files it lists, the wildcard values of those the pattern matches)."""
    glob = glob_of(pattern)
    files = listing(root, glob)
    rx = patterns.compile_output(pattern, constraints)
    values = []
    for f in files:
        m = rx.match(f)
        if m and all("/" not in v for v in m.groupdict().values()):
            values.append(m.groupdict())
    return glob, files, values


def scan_folders(root: str, glob: str) -> set[str]:
    """The folders whose listing decides what a glob matches: a file added to or removed
    from any of them changes its mtime (the fast path stats them)."""
    parts = glob.split("/")[:-1]
    folders = {"."}
    level = ["."]
    for part in parts:
        nxt = []
        for d in level:
            base = "" if d == "." else d + "/"
            if globmod.has_magic(part):
                nxt += [p for p in listing(root, base + part) if os.path.isdir(os.path.join(root, p))]
            else:
                nxt.append(base + part)
        level = nxt
        folders.update(level)
    return folders


def instance_values(name: str, base: str, wild: list[str]) -> dict | None:
    """The wildcard values in an instance's name (`count[book=a,lang=en]`), or None."""
    if not name.startswith(base + "[") or not name.endswith("]") or not wild:
        return None
    inner = name[len(base) + 1:-1]
    values = {}
    for i, w in enumerate(wild):
        head = f"{w}="
        if not inner.startswith(head):
            return None
        inner = inner[len(head):]
        if i + 1 < len(wild):
            at = inner.find(f",{wild[i + 1]}=")
            if at < 0:
                return None
            values[w], inner = inner[:at], inner[at + 1:]
        else:
            values[w] = inner
    return values
