"""What the no-op record (fastpath.py) tells a build that is not a no-op.

- record_noop(): after a build that left every node up to date, what the record
  lists (every file the build's decisions read, and the folders whose listing
  matters), and the node index beside it.
- The node index (`.nodefile/noop/<record>.nodes`): each node pickled on its own,
  which nodes own each path, who uses each node. Written and read here only.
- partial_build(): when a few recorded files changed, the nodes downstream of them,
  read from the node index without loading the project (engine.build_incremental
  runs them).
- unaffected(): in a full build, the nodes known to be up to date without hashing
  anything.

fastpath.py owns the record itself (its format, try_noop, write_record) and stays
standard library only; this module is the engine's side of it.
"""
from __future__ import annotations

import os

from . import graph
from .fastpath import VERSION, Pending, changed_since_record, record_path, write_record
from .model import Project
from .session import Session


class Partial:
    """A build of the few nodes downstream of what changed since the no-op record,
    with the project read from the node index (write_index)."""

    def __init__(self, paths, count: int, digest, unchanged):
        self.paths = paths  # the record's paths: the new record keeps them
        self.count = count  # nodes the record covers
        self.digest = digest
        self.unchanged = unchanged  # names of the nodes not rebuilt (up to date)


def partial_build(noop: Pending):
    """(project, order, Partial) when try_noop found a few recorded files changed and
    the node index has every node downstream of them: a project of just those nodes.
    None when the shortcut does not apply (no index for this exact project, a
    Nodefile or a file no node owns changed, or too many nodes affected): then the
    normal build runs."""
    if noop.record is None:
        return None
    raw = read_index(noop, noop.root, noop.record.digest)
    if raw is None:
        return None
    try:
        ix = _Index(raw)
    except Exception:  # another version's layout: no shortcut
        raw["close"]()
        return None
    try:
        return _select(ix, noop)
    finally:
        ix.close()


def _select(ix: _Index, noop: Pending):
    from .records import replace
    changed = changed_since_record(noop, noop.root)
    if not changed or changed & ix.sources:
        return None
    names = ix.names
    affected = _downstream(changed, ix.owners, ix.users.__getitem__)
    if affected is None or len(affected) > max(200, len(names) // 10):
        return None  # a big rebuild: the full project is worth loading
    idx = sorted(affected)  # the index lists nodes in build order
    order = [names[i] for i in idx]
    try:
        project = replace(ix.shell, nodes={names[i]: ix.node(i) for i in idx})
    except Exception:  # written by another version of nodefile: no shortcut
        return None
    chosen = set(order)
    rec = noop.record
    return project, order, Partial(noop.paths, rec.count, rec.digest, [n for n in names if n not in chosen])


def unaffected(project: Project, order: list[str], noop: Pending) -> set[str]:
    """Nodes still up to date, known without hashing anything: after an all-up-to-date
    build of this command line (its no-op record), only the files listed as changed
    moved, and no node record changed (any record write deletes the no-op records).
    A node touching none of them, and not downstream of one that does, is unchanged.
    Anything that cannot be attributed to a node's own inputs, scripts or outputs
    (a Nodefile or template, an imported helper, a folder listing) gives the empty
    set: the full check."""
    changed = changed_since_record(noop, project.root)
    if not changed:
        return set()  # no record, too much changed, or nothing changed (the fast path said no)
    sources = {os.path.relpath(p, project.root) for p in project.sources}
    if changed & sources:
        return set()
    owners = _path_owners(project, order)
    affected = _downstream(changed, lambda p: owners.get(p, ()), graph.dependents(project.nodes, order).__getitem__)
    return set() if affected is None else set(order) - affected


def _path_owners(project: Project, order) -> dict[str, list[str]]:
    """path -> the nodes (in `order`) that read, run or write it."""
    owners: dict[str, list[str]] = {}
    for n in order:
        node = project.nodes[n]
        for p in node.input_paths + node.script_inputs + node.output_paths:
            owners.setdefault(p.rstrip("/"), []).append(n)
    return owners


def _downstream(changed, owners, users) -> set | None:
    """The nodes owning a changed path (the file itself, or a directory input or
    output holding it) and every node that uses them, transitively. None when a
    change belongs to no node (an imported helper, a folder listing): only the full
    check can find who it affects. owners(path) and users(node) give node ids."""
    affected: set = set()
    for c in changed:
        found = []
        p, up = c, None
        while p and p != "." and p != up:
            found += owners(p)
            p, up = os.path.dirname(p), p
        if not found:
            return None
        affected.update(found)
    stack = list(affected)
    while stack:
        for u in users(stack.pop()):
            if u not in affected:
                affected.add(u)
                stack.append(u)
    return affected


def record_noop(session: Session, order, noop: Pending, count: int, prior=(), partial: Partial | None = None) -> None:
    """Record this build's command line as a no-op (fastpath.write_record): every node of
    `order` is up to date. prior: the paths of the record it was checked through."""
    from .config import cache
    project = session.project
    fresh = set(session.hasher.seen)
    paths = set(fresh)
    sources = [os.path.relpath(p, project.root) for p in project.sources]
    paths.update(sources)
    folders = _listed_folders(project, order)
    paths |= folders
    fresh |= folders  # stat them now; one that changed since the command began is recorded racy
    digest = partial.digest if partial is not None else cache.digest_of(project)
    write_record(noop, project.root, paths, count, fresh=fresh, digest=digest, prior=prior,
                 hashed=session.hasher.stats, sources=sources)
    if partial is None and digest is not None and index_digest(noop, project.root) != digest:
        write_index(noop, project.root, digest, _node_index(project, order))


def _listed_folders(project: Project, order) -> set[str]:
    """The folders whose listing the build's decisions depend on: a file added there
    could change what a node reads or imports, or which nodes there are."""
    folders = set()
    for n in order:
        node = project.nodes[n]
        if node.script_inputs or any(r.kind == "call" for r in node.recipes):
            folders.add(".")  # a new top-level module or package could change what a script imports
        for e in node.inputs:
            if e.kind == "glob":  # a new file matching the glob changes its folder
                pat = e.source
                folders.add(os.path.dirname(pat.split("*")[0].split("?")[0].split("[")[0]) or ".")
        for s in node.script_inputs:
            folders.add(os.path.dirname(s) or ".")  # a new module there could change import resolution
    if project.scans:  # instances from files: a file added or removed there changes the project
        from .config.filematrix import scan_folders
        for scan in project.scans:
            folders |= scan_folders(project.root, scan[2])
    return folders


# -- the node index: rebuild a few nodes without loading the whole project ---------------
def _node_index(project: Project, order) -> dict:
    """What partial_build needs to build a few nodes without the whole project:
    each node pickled on its own, which nodes own each path, who uses each node.
    Flat strings and arrays (marshal loads them at memcpy speed; a dict of 20,000
    paths or 10,000 small objects costs more to load than the whole rebuild)."""
    import array
    import pickle
    from .records import replace
    pos = {n: i for i, n in enumerate(order)}
    owners = _path_owners(project, order)
    users = graph.dependents(project.nodes, order)
    blobs, blob_offs = [], array.array("q", [0])
    for n in order:
        blobs.append(pickle.dumps(project.nodes[n], protocol=pickle.HIGHEST_PROTOCOL))
        blob_offs.append(blob_offs[-1] + len(blobs[-1]))
    paths = sorted(owners)
    own, own_offs = array.array("q"), array.array("q", [0])
    for p in paths:
        own.extend(pos[n] for n in owners[p])
        own_offs.append(len(own))
    return {"names": list(order), "blob": b"".join(blobs), "blob_offs": blob_offs.tobytes(),
            "paths": "\0" + "\0".join(paths) + "\0", "own": own.tobytes(), "own_offs": own_offs.tobytes(),
            "users": [tuple(pos[u] for u in users[n]) for n in order],
            "sources": sorted(os.path.relpath(p, project.root) for p in project.sources),
            "shell": pickle.dumps(replace(project, nodes={}, producers={}), protocol=pickle.HIGHEST_PROTOCOL)}


class _Index:
    """A node index as partial_build reads it."""

    def __init__(self, ix: dict):
        import array
        import pickle
        self.ix = ix
        self.names = ix["names"]
        self.users = ix["users"]
        self.sources = set(ix["sources"])
        self._paths = ix["paths"]
        self._own = array.array("q", ix["own"])
        self._own_offs = array.array("q", ix["own_offs"])
        self._blob_offs = array.array("q", ix["blob_offs"])
        self.shell = pickle.loads(ix["shell"])

    def owners(self, path: str) -> list[int]:
        at = self._paths.find("\0" + path + "\0")
        if at < 0:
            return []
        k = self._paths.count("\0", 0, at)  # the path's position in the sorted list
        return list(self._own[self._own_offs[k]:self._own_offs[k + 1]])

    def node(self, i: int):
        import pickle
        return pickle.loads(self.ix["blob"](self._blob_offs[i], self._blob_offs[i + 1]))

    def close(self) -> None:
        self.ix["close"]()


def index_path(noop: Pending, root: str) -> str:
    return record_path(root, noop.argv, noop.cwd) + ".nodes"


def _index_head(f):
    """An index file's header: (VERSION, the digest of the project it was written
    for, the size of the body that follows), or None."""
    import marshal
    head = marshal.load(f)
    return head if isinstance(head, tuple) and len(head) == 3 and head[0] == VERSION else None


def read_index(noop: Pending, root: str, digest):
    """The index written for the project with this digest, or None. Its "blob" (every
    node pickled, megabytes at 10,000 nodes) is not read: `blob(start, end)` reads
    the slices the few rebuilt nodes need from the open file."""
    import marshal
    try:
        f = open(index_path(noop, root), "rb")
    except OSError:
        return None
    try:
        head = _index_head(f)
        if digest is None or head is None or head[1] != digest:
            f.close()
            return None
        body = marshal.loads(f.read(head[2]))  # one read: marshal.load(f) reads object by object
        base = f.tell()
    except Exception:  # partial or from another version: no shortcut
        f.close()
        return None

    def blob(start: int, end: int) -> bytes:
        f.seek(base + start)
        return f.read(end - start)

    body["blob"] = blob
    body["close"] = f.close
    return body


def index_digest(noop: Pending, root: str):
    """The digest of the project the index on disk was written for (its header only)."""
    try:
        with open(index_path(noop, root), "rb") as f:
            head = _index_head(f)
            return head[1] if head is not None else None
    except Exception:
        return None


def write_index(noop: Pending, root: str, digest, body: dict) -> None:
    """body["blob"] (bytes) is written raw after the rest, for read_index to slice."""
    import marshal
    path = index_path(noop, root)
    tmp = f"{path}.{os.getpid()}.tmp"
    rest = {k: v for k, v in body.items() if k != "blob"}
    try:
        data = marshal.dumps(rest)
        with open(tmp, "wb") as f:
            marshal.dump((VERSION, digest, len(data)), f)
            f.write(data)
            f.write(body.get("blob", b""))
        os.replace(tmp, path)
    except (OSError, ValueError):
        pass  # an optimisation: never a reason to fail
