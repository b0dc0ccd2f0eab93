"""The Nodefile's vocabulary: its file name, the keys each table may hold, the
project-wide tables (stores, workers, executor, [project] values) checked, and the
helpers every part of the loader shares (norm, did_you_mean).

Light on purpose: `session` and `watch` import `norm` and `did_you_mean` from here
without importing the parser."""
from __future__ import annotations

import difflib
import os
import posixpath
import re

from ..errors import ConfigError
from ..model import RECIPE_KINDS, Store

NODEFILE = "Nodefile.toml"
TOP_KEYS = ("project", "params", "stores", "nodes", "use", "workers", "executor")
PROJECT_KEYS = ("name", "default", "jobs", "cache", "python", "params", "warm")
STORE_KEYS = ("url", "push", "options", "timeout")
RECIPE_OPTS = ("name", "args", "env", "timeout", "retries", "resources", "stdout", "warm", "returns")
RECIPE_KEYS = RECIPE_KINDS + RECIPE_OPTS + ("recipes",)  # what a node's recipes are parsed from
NODE_KEYS = ("outputs", "inputs", "params", "recipes", "priority", "wildcards", "matrix", "always") \
    + RECIPE_KINDS + RECIPE_OPTS[1:]
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")
GLOB = re.compile(r"[*?\[]")


def find_nodefile(start: str | None = None) -> str:
    """The Nodefile.toml in `start` or its nearest ancestor folder."""
    here = os.path.abspath(start or os.getcwd())
    if os.path.isfile(here):
        return here
    d = here
    while True:
        cand = os.path.join(d, NODEFILE)
        if os.path.isfile(cand):
            return cand
        parent = os.path.dirname(d)
        if parent == d:
            raise ConfigError(f"no {NODEFILE} in {here} or any parent folder")
        d = parent


def did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def norm(path: str, base: str = "") -> str:
    """Project-relative, normalised, '/'-separated path (a trailing '/' is kept)."""
    if not base and path and path[0] != "/" and "//" not in path and "./" not in path \
            and not path.endswith(".") and "\\" not in path:
        return path  # already normal: no empty, '.' or '..' part (the common case)
    is_dir = path.endswith("/")
    p = path if os.path.isabs(path) else posixpath.join(base, path)
    p = posixpath.normpath(p)
    if p == ".":
        p = ""
    return p + "/" if is_dir and p else p


def project_values(proj: dict, c) -> tuple:
    """`[project] jobs`, `cache` and `python`, checked."""
    jobs = proj.get("jobs")
    if jobs is not None and (not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1):
        c.err("jobs must be a positive integer", ("project",), "jobs")
    cache = proj.get("cache", True)
    if not isinstance(cache, bool):
        c.err("cache must be true or false", ("project",), "cache")
    python = proj.get("python")
    if python is not None and not isinstance(python, str):
        c.err("python must be a string (an interpreter path)", ("project",), "python")
    return jobs, cache, python


def default_targets(proj: dict, nodes: dict, c) -> tuple[str, ...]:
    """`[project] default`; when absent, the nodes nothing else needs."""
    d = proj.get("default")
    if d is None:
        needed = {dep for n in nodes.values() for dep in n.deps}
        grouped = {m for n in nodes.values() if n.is_alias for m in n.deps}
        return tuple(n for n in nodes if n not in needed and n not in grouped)
    if isinstance(d, str):
        d = [d]
    if not isinstance(d, list) or not all(isinstance(x, str) for x in d):
        c.err("default must be a node name or a list of them", ("project",), "default")
        return ()
    for x in d:
        if x not in nodes:
            c.err(f"default names unknown node '{x}'{did_you_mean(x, nodes)}", ("project",), "default")
    return tuple(d)


def stores(raw: dict, root: str) -> dict:
    """`[stores.NAME]` tables (gathered from every Nodefile) -> Stores."""
    out = {}
    for name, (st, ctx, cwd) in raw.items():
        t = ("stores", name)
        if not isinstance(st, dict):
            ctx.err("a store must be a table with a url", ("stores",), name)
            continue
        ctx.unknown_keys(st, STORE_KEYS, t)
        url = st.get("url")
        if not isinstance(url, str) or not url:
            ctx.err("a store needs a url (a path or an fsspec URL)", t, "url")
            continue
        if "://" not in url and not os.path.isabs(url):
            url = os.path.normpath(os.path.join(root, cwd, url))
        opts = st.get("options", {})
        if not isinstance(opts, dict):
            ctx.err("options must be a table of fsspec storage options", t, "options")
            opts = {}
        out[name] = Store(name, url, bool(st.get("push", False)), tuple(opts.items()),
                          store_timeout(st, ctx, t, url))
    return out


def store_timeout(st: dict, ctx, t: tuple, url: str) -> float | None:
    timeout = st.get("timeout")
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < float("inf"):
        ctx.err("timeout must be a positive number of seconds", t, "timeout")
        return None
    if "://" not in url or url.startswith("file://"):
        ctx.err("timeout applies to remote stores (an fsspec URL such as s3://); this store is a local folder",
                t, "timeout")
        return None
    return float(timeout)

def workers_options(data: dict, proj: dict, c) -> tuple[bool, tuple]:
    """`[project] warm` and `[workers.python|r] preload = [...]` (SPEC §2, §5)."""
    warm = proj.get("warm", True)
    if not isinstance(warm, bool):
        c.err("warm must be true or false", ("project",), "warm")
    workers = data.get("workers", {})
    if not isinstance(workers, dict):
        c.err("workers must be a table, e.g. [workers.python] preload = [\"pandas\"]", (), "workers")
        return warm is not False, ()
    preload = []
    for lang, table in workers.items():
        t = ("workers", lang)
        if lang not in ("python", "r"):
            c.err(f"unknown worker '{lang}'{did_you_mean(lang, ('python', 'r'))}", ("workers",), lang)
            continue
        if not isinstance(table, dict):
            c.err("must be a table with preload = [...]", ("workers",), lang)
            continue
        c.unknown_keys(table, ("preload",), t)
        names = table.get("preload", [])
        if not isinstance(names, list) or not all(isinstance(x, str) and x for x in names):
            c.err("preload must be a list of module (python) or package (r) names", t, "preload")
            continue
        preload.append((lang, tuple(names)))
    return warm is not False, tuple(preload)


def executor_table(data: dict, c) -> tuple[str, str | None]:
    """`[executor] kind = "local" | "dask"` and `address = "tcp://HOST:8786"` (SPEC §2, §5)."""
    table = data.get("executor", {})
    if not isinstance(table, dict):
        c.err("executor must be a table: [executor] kind = \"dask\"", (), "executor")
        return ("local", None)
    c.unknown_keys(table, ("kind", "address"), ("executor",))
    kind = table.get("kind", "local")
    if kind not in ("local", "dask"):
        c.err(f"kind must be \"local\" or \"dask\", not {kind!r}", ("executor",), "kind")
        kind = "local"
    address = table.get("address")
    if address is not None and (not isinstance(address, str) or not address):
        c.err("address must be the Dask scheduler's address, e.g. \"tcp://10.0.0.5:8786\"", ("executor",), "address")
        address = None
    return (kind, address)
