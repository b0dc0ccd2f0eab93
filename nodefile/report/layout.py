"""Where the DAG's boxes and edges go, left to right, for `node graph --format
svg|html` and `node report`: graphviz's `dot` when it is installed (a subprocess,
`-Tjson`), a pure-Python layered layout otherwise (`NODEFILE_LAYOUT=python|dot|auto`).

The pure-Python layout (Sugiyama): a node's column is its longest path from a
source (a source is pulled next to its first user); an edge that spans several
columns gets a bend point (a dummy vertex) in each column it crosses, which takes
a slot in that column like a box; barycenter sweeps down and up order each column
to reduce crossings (the best order seen is kept). Boxes of a column share its
width and edges run between columns, or across a column at their own slot, so
no edge passes under a box it does not belong to.

Both give the same result: boxes (x, y, w, h: top left) and each edge as a
polyline from its tail's box to its head's box (dot's splines are sampled).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from bisect import bisect_right, insort

NODE_H = 38
CHAR_W = 7.2  # pixels per character of a 12 px sans-serif label, roughly
MIN_W = 96
GAP_X = 64  # between columns
GAP_Y = 18  # between slots of a column
DUMMY_H = 6  # the slot of an edge crossing a column
MARGIN = 12
STUB = 10  # the straight ends of an edge, so its arrowhead meets the box square on
SWEEPS = 24
TRANSPOSE_MAX = 400  # vertices (boxes and bend points): above, barycenter sweeps only


class Layout:
    def __init__(self, boxes: dict, edges: list, width: float, height: float, engine: str):
        self.boxes = boxes  # name -> (x, y, w, h), top left
        self.edges = edges  # [(tail, head, [(x, y), ...])]
        self.width = width
        self.height = height
        self.engine = engine


def box_width(label: str) -> float:
    return max(MIN_W, round(len(label) * CHAR_W + 20))


def layout(names, edges, widths: dict, engine: str | None = None) -> Layout:
    """Lay out `names` with `edges` [(tail, head)]; `widths`: name -> box width.
    engine: "dot", "python" or "auto" (default: $NODEFILE_LAYOUT, else auto: dot when
    it is on PATH and runs)."""
    choice = (engine or os.environ.get("NODEFILE_LAYOUT") or "auto").lower()
    if choice != "python" and names:
        exe = shutil.which("dot")
        if exe:
            try:
                return dot_layout(exe, names, edges, widths)
            except (OSError, subprocess.SubprocessError, ValueError, KeyError, IndexError):
                pass  # a broken graphviz: the pure-Python layout still draws the graph
    return layered_layout(names, edges, widths)


# -- graphviz ------------------------------------------------------------------------------
def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def dot_layout(exe: str, names, edges, widths: dict) -> Layout:
    src = ["digraph nodefile {", "  rankdir=LR; nodesep=0.3; ranksep=0.8;",
           '  node [shape=box, fixedsize=true, label=""];']
    src += [f"  {_q(n)} [width={widths[n] / 72:.3f}, height={NODE_H / 72:.3f}];" for n in names]
    src += [f"  {_q(t)} -> {_q(h)};" for t, h in edges]
    src.append("}")
    proc = subprocess.run([exe, "-Tjson"], input="\n".join(src), capture_output=True, text=True,
                          timeout=60, check=True)
    g = json.loads(proc.stdout)
    x0, y0, x1, y1 = (float(v) for v in g["bb"].split(","))

    def pt(s: str) -> tuple[float, float]:
        x, y = s.split(",")[-2:]
        return round(float(x) - x0 + MARGIN, 1), round(y1 - float(y) + MARGIN, 1)

    objects = g.get("objects", [])
    boxes = {}
    for o in objects:
        cx, cy = pt(o["pos"])
        w, h = float(o["width"]) * 72, float(o["height"]) * 72
        boxes[o["name"]] = (round(cx - w / 2, 1), round(cy - h / 2, 1), round(w, 1), round(h, 1))
    out = []
    for e in g.get("edges", []):
        tail, head = objects[e["tail"]]["name"], objects[e["head"]]["name"]
        parts = e["pos"].split()
        tip = next((pt(p) for p in parts if p.startswith("e,")), None)
        ctrl = [pt(p) for p in parts if not p.startswith(("e,", "s,"))]
        line = _sample(ctrl)
        if tip is not None:
            line.append(tip)
        out.append((tail, head, line))
    return Layout(boxes, out, x1 - x0 + 2 * MARGIN, y1 - y0 + 2 * MARGIN, "dot")


def _sample(ctrl: list, steps: int = 8) -> list:
    """A piecewise cubic Bézier (1 + 3k control points) as a polyline."""
    pts = [ctrl[0]]
    for i in range(0, len(ctrl) - 3, 3):
        p0, p1, p2, p3 = ctrl[i:i + 4]
        for k in range(1, steps + 1):
            t = k / steps
            a, b, c, d = (1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t ** 2, t ** 3
            pts.append((round(a * p0[0] + b * p1[0] + c * p2[0] + d * p3[0], 1),
                        round(a * p0[1] + b * p1[1] + c * p2[1] + d * p3[1], 1)))
    return pts


# -- pure Python ---------------------------------------------------------------------------
def columns(names, edges) -> dict:
    """Each node's column: the longest path from a source; a source sits just left
    of its nearest user."""
    deps: dict = {n: [] for n in names}
    users: dict = {n: [] for n in names}
    for t, h in edges:
        deps[h].append(t)
        users[t].append(h)
    col: dict = {}
    pending = list(names)
    while pending:  # names are topological, so one pass usually does; any order works
        rest = []
        for n in pending:
            if all(d in col for d in deps[n]):
                col[n] = 1 + max((col[d] for d in deps[n]), default=-1)
            else:
                rest.append(n)
        if len(rest) == len(pending):  # a cycle (the loader refuses those): break it
            col[rest[0]] = 0
            rest = rest[1:]
        pending = rest
    for n in names:
        if not deps[n] and users[n]:
            col[n] = max(col[n], min(col[u] for u in users[n]) - 1)
    return col


def _crossings(upper: dict, lower_edges: list) -> int:
    """Crossings between two adjacent columns: inversions of the lower ends when the
    edges are sorted by their upper ends."""
    seen: list = []
    count = 0
    for a, b in sorted(lower_edges, key=lambda e: (upper[e[0]], e[1])):
        count += len(seen) - bisect_right(seen, b)
        insort(seen, b)
    return count


def layered_layout(names, edges, widths: dict) -> Layout:
    col = columns(names, edges)
    ncol = 1 + max(col.values(), default=-1)
    ranks: list[list] = [[] for _ in range(ncol)]
    for n in names:
        ranks[col[n]].append(n)
    up: dict = {n: [] for n in names}
    down: dict = {n: [] for n in names}
    chains = []  # (tail, head, [tail, dummies..., head])
    for t, h in edges:
        chain = [t]
        for c in range(col[t] + 1, col[h]):
            d = ("dummy", t, h, c)
            ranks[c].append(d)
            up[d], down[d] = [], []
            chain.append(d)
        chain.append(h)
        for a, b in zip(chain, chain[1:]):
            down[a].append(b)
            up[b].append(a)
        chains.append((t, h, chain))
    _order(ranks, up, down)
    return _place(ranks, up, down, chains, widths)


def _order(ranks: list, up: dict, down: dict) -> None:
    """Barycenter sweeps, in place; the order with the fewest crossings wins."""
    def between(c: int) -> int:  # crossings between columns c and c + 1
        if c < 0 or c + 1 >= len(ranks):
            return 0
        pos = {v: i for i, v in enumerate(ranks[c])}
        low = {v: i for i, v in enumerate(ranks[c + 1])}
        return _crossings(pos, [(a, low[b]) for a in ranks[c] for b in down[a]])

    def total() -> int:
        return sum(between(c) for c in range(len(ranks) - 1))

    def transpose() -> None:  # swap neighbours in a column while that removes crossings
        for c, r in enumerate(ranks):
            here = between(c - 1) + between(c)
            i = 0
            while i < len(r) - 1 and here:
                r[i], r[i + 1] = r[i + 1], r[i]
                now = between(c - 1) + between(c)
                if now < here:
                    here = now
                else:
                    r[i], r[i + 1] = r[i + 1], r[i]
                i += 1

    small = sum(len(r) for r in ranks) <= TRANSPOSE_MAX
    best, best_n = [list(r) for r in ranks], total()
    for sweep in range(SWEEPS):
        if best_n == 0:
            break
        downward = sweep % 2 == 0
        seq = range(1, len(ranks)) if downward else range(len(ranks) - 2, -1, -1)
        for c in seq:
            ref = ranks[c - 1] if downward else ranks[c + 1]
            pos = {v: i for i, v in enumerate(ref)}
            nb = up if downward else down

            def bary(iv, nb=nb, pos=pos):
                i, v = iv
                ps = [pos[u] for u in nb[v] if u in pos]
                return sum(ps) / len(ps) if ps else i
            ranks[c] = [v for _, v in sorted(enumerate(ranks[c]), key=bary)]
        if small:
            transpose()
        n = total()
        if n < best_n:
            best, best_n = [list(r) for r in ranks], n
    ranks[:] = best


def _place(ranks: list, up: dict, down: dict, chains: list, widths: dict) -> Layout:
    def h(v) -> float:
        return DUMMY_H if isinstance(v, tuple) else NODE_H

    colw = [max((widths[v] for v in r if not isinstance(v, tuple)), default=MIN_W) for r in ranks]
    colx, x = [], MARGIN
    for w in colw:
        colx.append(x)
        x += w + GAP_X
    y: dict = {}
    for r in ranks:  # stacked, top to bottom
        at = 0.0
        for v in r:
            y[v] = at + h(v) / 2
            at += h(v) + GAP_Y
    for sweep in range(8):  # each slot toward its neighbours' mean, order and spacing kept
        seq = list(range(len(ranks))) if sweep % 2 == 0 else list(range(len(ranks) - 1, -1, -1))
        for c in seq:
            r = ranks[c]
            if not r:
                continue
            want = []
            for v in r:
                nb = up[v] + down[v]
                want.append(sum(y[u] for u in nb) / len(nb) if nb else y[v])
            placed = []
            for i, v in enumerate(r):
                lo = placed[-1] + (h(r[i - 1]) + h(v)) / 2 + GAP_Y if i else want[i]
                placed.append(max(want[i], lo))
            shift = sum(w - p for w, p in zip(want, placed)) / len(r)
            for v, p in zip(r, placed):
                y[v] = p + shift
    top = min((y[v] - h(v) / 2 for r in ranks for v in r), default=0.0)
    for v in y:
        y[v] += MARGIN - top
    boxes = {}
    for c, r in enumerate(ranks):
        for v in r:
            if not isinstance(v, tuple):
                boxes[v] = (colx[c], round(y[v] - NODE_H / 2, 1), colw[c], NODE_H)
    ports_out = _ports(chains, y, 1)
    ports_in = _ports(chains, y, -2)
    out = []
    for k, (t, hd, chain) in enumerate(chains):
        bx, by, bw, bh = boxes[t]
        sy = ports_out[k]
        pts = [(bx + bw, sy), (bx + bw + STUB, sy)]
        for d in chain[1:-1]:
            c = d[3]
            pts += [(colx[c], y[d]), (colx[c] + colw[c], y[d])]
        hx = boxes[hd][0]
        ey = ports_in[k]
        pts += [(hx - STUB, ey), (hx, ey)]
        out.append((t, hd, [(round(a, 1), round(b, 1)) for a, b in pts]))
    height = max((b[1] + b[3] for b in boxes.values()), default=0) + MARGIN
    height = max(height, max((y[v] + DUMMY_H for r in ranks for v in r), default=0) + MARGIN)
    return Layout(boxes, out, x - GAP_X + MARGIN, height, "python")


def _ports(chains: list, y: dict, side: int) -> dict:
    """Where each edge leaves (side 1: the vertex after its tail) or enters (side -2: the
    vertex before its head) a box: spread over the box's height in the order of the
    other ends, so edges sharing a box do not cross at it."""
    by_box: dict = {}
    for k, (t, h, chain) in enumerate(chains):
        box = t if side == 1 else h
        by_box.setdefault(box, []).append((y[chain[side]], k))
    ports = {}
    for box, ends in by_box.items():
        ends.sort()
        for i, (_, k) in enumerate(ends):
            ports[k] = round(y[box] - NODE_H / 2 + NODE_H * (i + 1) / (len(ends) + 1), 1)
    return ports
