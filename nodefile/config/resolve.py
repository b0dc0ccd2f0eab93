"""Drafts -> Nodes: what each input names (a node, a pattern or [use] group, a
glob, a file some node writes, a pattern instance, or a source on disk), the
producers of every output, the instances requested paths name, missing sources
and dependency cycles."""
from __future__ import annotations

import collections
import os

from .. import placeholders
from ..errors import Problem
from ..model import Entry, Node
from ..pathsafe import glob_files, undecodable
from .schema import GLOB, did_you_mean, norm


class Ambiguous(Exception):
    def __init__(self, path, names):
        super().__init__(path)
        self.path, self.names = path, names


def glob_matches(root: str, pattern: str, producers: dict) -> list[str]:
    """Files matching a glob: on disk (never through a symlink loop), and outputs
    that nodes will write."""
    import fnmatch
    found = set(glob_files(root, pattern))
    found.update(p for p in producers if fnmatch.fnmatchcase(p, pattern))
    return sorted(found)


def producer_of(path: str, producers: dict, dirs) -> str | None:
    p = path.rstrip("/")
    if p in producers:
        return producers[p]
    for d, owner in dirs:
        if p.startswith(d):
            return owner
    return None


def scoped(item: str, scopes, drafts) -> str | None:
    """The node an input string names, searching the declaring scope outwards."""
    for prefix in scopes:
        if prefix + item in drafts:
            return prefix + item
    return None


class Resolver:
    """One load's drafts resolved into Nodes. `builder` makes pattern instances
    (`instance`) and raw input entries (`entries`) and checks placeholders
    (`recipe_parser`); problems go to each declaring file's Ctx."""

    def __init__(self, builder, drafts: dict, pats: list, groups: dict, stores: dict):
        self.builder = builder
        self.root = builder.root
        self.check_sources = builder.check_sources
        self.drafts, self.pats, self.groups, self.stores = drafts, pats, groups, stores
        self.producers: dict[str, str] = {}  # literal outputs of concrete nodes
        self.dirs: list[tuple[str, str]] = []
        self.work: collections.deque | list = []
        self.missing: dict[str, list[tuple[str, tuple, object]]] = {}
        self.missing_sources: list[tuple] = []  # (path, nodes needing it, message): Project.missing
        self.missing_problems: list[Problem] = []  # the same, said with the Nodefile's other errors
        self.checked: set[str] = set()  # patterns whose instances' placeholders were checked

    def run(self) -> dict:
        for d in self.drafts.values():
            if not d.is_pattern:
                self.add_producer(d)
        self.check_nesting()
        self.requested()
        nodes: dict[str, Node] = {}
        self.work = collections.deque(self.drafts)
        done: set[str] = set()
        while self.work:
            name = self.work.popleft()
            if name in done:
                continue
            done.add(name)
            d = self.drafts[name]
            if d.is_pattern:
                continue
            nodes[name] = self.resolve(d)
        self.aliases(nodes)
        self.report_missing()
        from ..graph import find_cycle
        cyc = find_cycle(nodes)
        if cyc:
            d = self.drafts.get(cyc[0])
            (d.decl.ctx if d else self.builder.ctx).err("dependency cycle: " + " -> ".join(cyc),
                                                        d.decl.table if d else (), "inputs")
        ordered = sorted(nodes.values(), key=lambda n: n.order)
        return {n.name: n for n in ordered}

    def add_producer(self, d) -> None:
        producers = self.producers
        for e in d.outputs:
            for p in e.paths:
                key = p.rstrip("/")
                if key in producers and producers[key] != d.name:
                    d.decl.ctx.err(f"output '{p}' is also declared by node '{producers[key]}'",
                                   d.decl.table, "outputs")
                producers[key] = d.name
                if p.endswith("/"):
                    self.dirs.append((key + "/", d.name))

    def check_nesting(self) -> None:
        """No output of one node inside another's directory output."""
        for dpath, owner in self.dirs:
            for p, name in self.producers.items():
                if name != owner and p.startswith(dpath):
                    self.drafts[name].decl.ctx.err(f"output '{p}' lies inside directory output '{dpath}' of node "
                                                   f"'{owner}'", self.drafts[name].decl.table, "outputs")

    def match_pattern(self, path: str):
        """The instance draft for a path only a pattern produces; None when none does."""
        hits = []
        for pd in self.pats:
            for rx in pd.regexes:
                m = rx.match(path)
                if m:
                    hits.append((pd, m.groupdict()))
                    break
        if not hits:
            return None
        if len(hits) > 1:
            raise Ambiguous(path, [h[0].name for h in hits])
        pd, values = hits[0]
        from . import patterns
        name = patterns.instance_name(pd.name, pd.wild_names, values)
        if name not in self.drafts:
            inst = self.builder.instance(pd, values, self.stores)
            if inst is None:
                return None
            self.drafts[name] = inst
            self.add_producer(inst)
            self.work.append(name)
        return self.drafts[name]

    def requested(self) -> None:
        """Requested paths (command line) may name pattern instances."""
        c = self.builder.ctx
        for req in self.builder.requests:
            if req in self.drafts:
                continue
            if undecodable([req]):  # bytes from the command line that are not UTF-8: not recordable
                c.err(f"target {req!r} is not valid UTF-8 text")
                continue
            p = norm(os.path.relpath(os.path.abspath(req), self.root).replace(os.sep, "/"))
            if p.rstrip("/") not in self.producers:
                try:
                    self.match_pattern(p.rstrip("/"))
                except Ambiguous as a:
                    c.err(f"'{req}' matches more than one pattern: {' and '.join(a.names)}; "
                          f"make one of them literal or constrain its wildcards")

    def aliases(self, nodes: dict) -> None:
        """Pattern and [use] names become aliases of their members."""
        for gname, members in self.groups.items():
            members = [m for m in members if m in nodes]
            paths = tuple(p for m in members for p in nodes[m].output_paths)
            d = self.drafts.get(gname)
            file = d.decl.ctx.display if d else self.builder.ctx.display
            nodes[gname] = Node(name=gname, outputs=(), inputs=(Entry(None, paths, True, gname, "node"),),
                                params=(), recipes=(), cwd="", file=file,
                                line=None, order=d.order if d else 10 ** 9, deps=tuple(members))

    def report_missing(self) -> None:
        for path, needers in sorted(self.missing.items()):
            who = ", ".join(sorted({n for n, _, _ in needers}))
            names = [n for n in self.drafts]
            hint = did_you_mean(path, names)
            msg = f"missing source '{path}' (no node produces it), needed by {who}{hint}"
            if self.builder.strict:  # node check: every problem; other commands: only the nodes needing it
                needers[0][2].err(msg, needers[0][1], "inputs")
            else:
                cx, tt = needers[0][2], needers[0][1]
                problem = Problem(msg, cx.display, cx.loc.line(tt, "inputs"), ".".join(tt + ("inputs",)))
                self.missing_sources.append((path, tuple(sorted({n for n, _, _ in needers})), str(problem)))
                self.missing_problems.append(problem)

    # -- one node ------------------------------------------------------------------------
    def resolve(self, d) -> Node:
        decl, c, t = d.decl, d.decl.ctx, d.decl.table
        deps: list[str] = []
        inputs = []
        raw = self.builder.entries(decl.spec.get("inputs", []), t, "inputs", allow_names=True, ctx=c)
        for e in raw:
            paths: list[str] = []
            kind = "path"
            group_ref = False
            for item in e.paths:
                how = self.item(item, d, deps, paths)
                if how == "group":
                    kind, group_ref = "node", True  # a pattern or [use] name: always a list, whatever its size
                elif how:
                    kind = how
            many = e.many or group_ref or kind == "glob" or (kind != "path" and len(paths) != 1)
            inputs.append(Entry(e.name, tuple(paths), many, e.source, kind))
        script_inputs = self.scripts(d, deps)
        if d.name in deps:
            c.err(f"dependency cycle: {d.name} -> {d.name} (the node reads its own output)", t, "inputs")
        node = Node(name=d.name, outputs=d.outputs, inputs=tuple(inputs), params=d.params, recipes=d.recipes,
                    cwd=decl.cwd, file=c.display, line=c.loc.line(t), wildcards=decl.wildcards,
                    priority=d.priority, order=d.order, deps=tuple(dict.fromkeys(x for x in deps if x != d.name)),
                    script_inputs=tuple(script_inputs), always=d.always)
        for r in node.recipes:
            if r.stdout:
                try:
                    placeholders.stdout_path(node, r.stdout)
                except placeholders.PlaceholderError as e:
                    c.err(str(e), t, "stdout" if "stdout" in decl.spec else "recipes")
        if decl.pattern is None or decl.pattern not in self.checked:
            self.builder.recipe_parser.check_placeholders(node, t, c)  # instances of one pattern share templates
            if decl.pattern is not None:
                self.checked.add(decl.pattern)
        return node

    def item(self, item: str, d, deps: list, paths: list) -> str | None:
        """One string of an input entry: its paths and producers added. Returns what
        it named: "node", "group" (a pattern or [use] name), "glob", or None (a path)."""
        decl = d.decl
        target = scoped(item, decl.scopes, self.drafts) or scoped(item, decl.scopes, self.groups)
        if target is not None:
            td = self.drafts.get(target)
            if td is None or td.is_pattern or target in self.groups:
                members = self.groups.get(target, [])
                deps.extend(members)
                for m in members:
                    paths.extend(p for oe in self.drafts[m].outputs for p in oe.paths)
                return "group"
            deps.append(target)
            paths.extend(p for oe in td.outputs for p in oe.paths)
            return "node"
        p = norm(item, decl.cwd)
        if GLOB.search(p):
            self.glob_input(item, p, d, deps, paths)
            return "glob"
        self.path_input(item, p, d, deps, paths)
        return None

    def glob_input(self, item: str, p: str, d, deps: list, paths: list) -> None:
        c, t = d.decl.ctx, d.decl.table
        matched = glob_matches(self.root, p, self.producers)
        odd = undecodable(matched)
        if odd:
            c.err(f"input glob '{item}' matches {odd!r}, whose name is not valid UTF-8: rename it", t, "inputs")
            matched = [m for m in matched if m != odd]
        for m in matched:
            owner = producer_of(m, self.producers, self.dirs)
            if owner:
                deps.append(owner)
        if not matched and self.check_sources:
            c.err(f"input glob '{item}' matches no file", t, "inputs")
        paths.extend(matched)

    def path_input(self, item: str, p: str, d, deps: list, paths: list) -> None:
        c, t = d.decl.ctx, d.decl.table
        owner = producer_of(p, self.producers, self.dirs)
        if owner is None:
            try:
                inst = self.match_pattern(p.rstrip("/"))
            except Ambiguous as a:
                c.err(f"input '{item}' matches more than one pattern: {' and '.join(a.names)}", t, "inputs")
                paths.append(p)
                return  # reported once: not also a missing source
            owner = inst.name if inst is not None else None
        if owner:
            deps.append(owner)
        elif self.check_sources and not os.path.exists(os.path.join(self.root, p)):
            self.missing.setdefault(p, []).append((d.name, t, c))
        paths.append(p)

    def scripts(self, d, deps: list) -> list[str]:
        """The node's recipe scripts: inputs, made by a node or on disk."""
        decl, c, t = d.decl, d.decl.ctx, d.decl.table
        script_inputs = []
        for r in d.recipes:
            if r.script:
                owner = producer_of(r.script, self.producers, self.dirs)
                if owner:
                    deps.append(owner)
                elif self.check_sources and not os.path.isfile(os.path.join(self.root, r.script)):
                    who = f" (for instance {d.name})" if decl.pattern is not None else ""
                    c.err(f"{r.kind} script '{r.label or r.script}' does not exist{who}", t,
                          r.kind if r.kind in decl.spec else "recipes")
                script_inputs.append(r.script)
        return script_inputs
