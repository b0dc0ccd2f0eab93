"""Where nodefile may write (SPEC §9): outputs by their real location, names made
safe for file names, and globs that never follow a symlink loop.

- An output lies in the project by its real path: the folder holding it is
  resolved (symlinks followed) and must be the project root or inside it, and
  never `.nodefile/` (nodefile's own state). The output itself may be a
  symlink: it is moved aside or removed, never followed. `node check` applies
  the rule to the Nodefile; the runner and `node clean` apply it again at the
  moment they write, move or delete (a symlink may appear after the check).
- A node or recipe name put into a file name (logs, job manifests, folders
  under `.nodefile/`) goes through safe_filename: never a path separator, a
  control character, `.`/`..` or a name too long for the file system.
- A `**` glob follows a symlinked folder at most once and never into one it
  has already walked (a loop): each real folder is listed once, by its real
  path when it lies in the walked tree.
"""
from __future__ import annotations

import fnmatch
import glob as globmod
import os
import re
import stat

from .errors import NodefileError

STATE_DIR = ".nodefile"
# the folders of .nodefile/ that hold artifacts nodefile itself declares as outputs: function
# nodes' return values (.nodefile/values/NODE) and the stamps of imported doit tasks without targets
ARTIFACT_DIRS = ("values", "doit")
_UNSAFE = re.compile(r"[/\\\x00-\x1f\x7f\ud800-\udfff]")  # separators, controls, undecodable bytes
_NAME_BYTES = 120  # room left in a 255-byte file name for ".N.recipe.log" and the like


class UnsafeOutput(NodefileError):
    """An output's real location is outside the project or under .nodefile/."""

    exit_code = 1


def safe_filename(name: str) -> str:
    """`name` as one safe file name component. Names that need no change are kept as
    they are (`fit[model=lin]`); a changed one gets a short hash of the original so
    two names never share a file (`a/b` and `a_b`)."""
    safe = _UNSAFE.sub("_", name)
    if safe == name and safe not in ("", ".", "..") and len(safe.encode()) <= _NAME_BYTES:
        return name
    import hashlib
    digest = hashlib.sha1(name.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    short = safe.encode()[:_NAME_BYTES - 12].decode("utf-8", "ignore")
    return f"{short}~{digest}"


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder if folder.endswith("/") else folder + "/")


class OutputGuard:
    """Checks output paths (project-relative, normalised) against the project's real
    location. `memo` caches resolved folders: pass one for a whole Nodefile check,
    none at the moment of writing (a folder may have become a symlink since)."""

    def __init__(self, root: str):
        self.root = os.path.realpath(root)
        self.state = os.path.join(self.root, STATE_DIR)
        self.state_real = os.path.realpath(self.state)

    def real_dir(self, rel_dir: str, memo: dict | None = None) -> str:
        """The real path of the project folder `rel_dir` ('' is the root): each part
        is lstat-ed; a symlink is resolved; a missing part ends the resolving (what
        follows will be created as real folders)."""
        if memo is not None and rel_dir in memo:
            return memo[rel_dir]
        cur = self.root
        if rel_dir:
            parts = rel_dir.split("/")
            for i, name in enumerate(parts):
                full = os.path.join(cur, name)
                try:
                    mode = os.lstat(full).st_mode
                except (OSError, ValueError):
                    cur = os.path.join(full, *parts[i + 1:])
                    break
                cur = os.path.realpath(full) if stat.S_ISLNK(mode) else full
        if memo is not None:
            memo[rel_dir] = cur
        return cur

    def problem(self, path: str, memo: dict | None = None) -> str | None:
        """Why the output `path` may not be written, moved or deleted; None when it may."""
        p = path.rstrip("/")
        if not p or p.startswith("/") or p == ".." or p.startswith("../"):
            return f"output '{path}' lies outside the project root"
        if "\x00" in p:
            return f"output {path!r} holds a NUL character, which no file name can"
        folder, _, leaf = p.rpartition("/")
        real_folder = self.real_dir(folder, memo)
        real = os.path.join(real_folder, leaf)
        if not _inside(real, self.root):
            return (f"output '{path}' lies outside the project: its folder '{folder}' is a symlink "
                    f"to {real_folder}")
        owned = [os.path.join(s, d) for s in (self.state, self.state_real) for d in ARTIFACT_DIRS]
        if any(_inside(real, d) and real != d for d in owned):
            return None  # nodefile's own artifacts: function values, imported doit tasks' stamps
        if _inside(real, self.state) or _inside(real, self.state_real):
            return f"output '{path}' lies inside {STATE_DIR}/, which holds nodefile's own state"
        return None

    def check(self, paths) -> None:
        """Raise UnsafeOutput for the first of `paths` that may not be written."""
        for p in paths:
            why = self.problem(p)
            if why:
                raise UnsafeOutput(f"{why}; nothing was written")


def undecodable(paths) -> str | None:
    """The first path whose name is not valid UTF-8 (os gives its bytes as lone
    surrogates), or None: such a name cannot be recorded, so a glob may not match it."""
    for p in paths:
        try:
            p.encode()
        except UnicodeEncodeError:
            return p
    return None


def glob_files(root: str, pattern: str) -> list[str]:
    """Project-relative paths matching `pattern` (glob.glob(recursive=True)
    semantics), sorted. A `**` never follows a symlink loop."""
    if "\x00" in pattern:  # no file name holds one (and os calls refuse it)
        return []
    parts = pattern.split("/")
    if "**" not in parts:  # a bounded walk: one folder level per part
        return sorted({os.path.relpath(m, root).replace(os.sep, "/")
                       for m in globmod.glob(os.path.join(root, pattern))})
    found: set[str] = set()
    _match(root, "", parts, found)
    return sorted(found)


def _match(root: str, rel: str, parts: list[str], found: set) -> None:
    """Add to `found` every path under folder `rel` that matches `parts`."""
    head, rest = parts[0], parts[1:]
    here = os.path.join(root, rel) if rel else root
    if head == "**":
        for d in _walk_dirs(root, rel):
            if rest == [""]:  # "**/": folders only
                if d:
                    found.add(d)
            elif rest:
                _match(root, d, rest, found)
            else:
                if d:
                    found.add(d)
                found.update(_join(d, e.name) for e in _entries(os.path.join(root, d) if d else root)
                             if not e.name.startswith("."))
        return
    if not globmod.has_magic(head):
        names = [head] if head and os.path.lexists(os.path.join(here, head)) else []
    else:
        hidden = head.startswith(".")
        names = [e.name for e in _entries(here)
                 if (hidden or not e.name.startswith(".")) and fnmatch.fnmatchcase(e.name, head)]
    for name in names:
        sub = _join(rel, name)
        if not rest:
            found.add(sub)
        elif rest == [""]:  # a trailing "/": folders only
            if os.path.isdir(os.path.join(root, sub)):
                found.add(sub)
        elif os.path.isdir(os.path.join(root, sub)):
            _match(root, sub, rest, found)


def _join(rel: str, name: str) -> str:
    return f"{rel}/{name}" if rel else name


def _entries(folder: str) -> list:
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: e.name)
    except (OSError, ValueError):
        return []


def _walk_dirs(root: str, rel: str) -> list[str]:
    """`rel` and every folder below it (not hidden), each real folder once: the tree
    itself first, then symlinked folders that lead elsewhere. A symlink to a folder
    already walked, or to one of the link's own ancestors (a loop), is not entered."""
    start = os.path.join(root, rel) if rel else root
    seen: set = set()
    real = os.path.realpath(start)
    while True:  # the start's ancestors: a link back to one of them is a loop
        try:
            st = os.stat(real)
            seen.add((st.st_dev, st.st_ino))
        except OSError:
            pass
        if real == os.path.dirname(real):
            break
        real = os.path.dirname(real)
    seen.discard(_ident(start))
    out: list[str] = []
    links: list[str] = []
    _walk_tree(root, rel, seen, out, links)
    i = 0
    while i < len(links):  # links found while walking a link's tree are appended
        link = links[i]
        full = os.path.join(root, link)
        target = os.path.realpath(full)
        if not _inside(os.path.realpath(os.path.dirname(full)), target):
            _walk_tree(root, link, seen, out, links)
        i += 1
    return out


def _ident(path: str):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _walk_tree(root: str, top: str, seen: set, out: list, links: list) -> None:
    """Folders under `top` without following symlinks; symlinked folders go to `links`."""
    stack = [top]
    while stack:
        cur = stack.pop()
        ident = _ident(os.path.join(root, cur) if cur else root)
        if ident is None or ident in seen:
            continue
        seen.add(ident)
        out.append(cur)
        subs = []
        for e in _entries(os.path.join(root, cur) if cur else root):
            if e.name.startswith("."):
                continue
            try:
                if e.is_dir(follow_symlinks=False):
                    subs.append(_join(cur, e.name))
                elif e.is_symlink() and e.is_dir():
                    links.append(_join(cur, e.name))
            except OSError:
                continue
        stack.extend(reversed(subs))
