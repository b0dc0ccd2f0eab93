"""`node report`: one self-contained HTML page (no scripts, no network): the DAG
coloured by status, a timeline of one build (the last that ran recipes, or
`--build N`: which recipe ran, how long, in which slot), and the learned
estimates per node.

Timeline: an attempt's bar is its process's real lifetime (it ended when the
executor reaped it, `duration` seconds after it started). Lanes are the build's
slots: processes are packed into the fewest lanes in which no two overlap, which
is the largest number running at once, so never more than -j. Transfers (load,
fetch) run in threads beside the slots and get lanes of their own.
"""
from __future__ import annotations

import html
import time

COLOURS = {"up to date": "#b7e4b0", "stale": "#ffe08a", "missing": "#f4a7a7", "alias": "#dddddd"}
OUTCOME = {"ok": "#5aa469", "failed": "#d9534f", "cancelled": "#999999", "stopped": "#e0a030"}
TRANSFER_KINDS = ("load", "fetch")
TOUCHING = 0.005  # seconds: a process started as the one before it in the slot was reaped


def _esc(s) -> str:
    return html.escape(str(s), quote=True)


def dag_svg(names, nodes, status) -> str:
    """Layered left-to-right drawing: a node's column is its depth."""
    depth: dict[str, int] = {}
    for n in names:  # topological order
        depth[n] = 1 + max((depth[d] for d in nodes[n].deps if d in depth), default=-1)
    cols: dict[int, list[str]] = {}
    for n in names:
        cols.setdefault(depth[n], []).append(n)
    w, h, gx, gy = 170, 26, 60, 12
    pos = {}
    for c, members in cols.items():
        for r, n in enumerate(members):
            pos[n] = (10 + c * (w + gx), 10 + r * (h + gy))
    width = 20 + (max(cols) + 1 if cols else 1) * (w + gx)
    height = 20 + max((len(m) for m in cols.values()), default=1) * (h + gy)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-size="11" '
           f'font-family="sans-serif">']
    for n in names:
        for d in nodes[n].deps:
            if d in pos:
                x1, y1 = pos[d][0] + w, pos[d][1] + h / 2
                x2, y2 = pos[n][0], pos[n][1] + h / 2
                out.append(f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="#888"/>')
    for n in names:
        x, y = pos[n]
        st = status.get(n, "alias")
        label = n if len(n) <= 26 else n[:25] + "…"
        out.append(f'<g><title>{_esc(n)}: {_esc(st)}</title><rect x="{x}" y="{y}" width="{w}" height="{h}" rx="4" '
                   f'fill="{COLOURS.get(st, "#ddd")}" stroke="#555"/><text x="{x + 6}" y="{y + 17}">'
                   f'{_esc(label)}</text></g>')
    out.append("</svg>")
    return "\n".join(out)


def lanes_of(attempts) -> list[tuple[int, float, float, dict]]:
    """(lane, start s, end s, attempt) with times from the first start: each attempt in
    the first lane free when it starts (interval partitioning: as many lanes as
    attempts ever ran at once)."""
    real = [a for a in attempts if a.get("recipe") and a.get("start_ns")]
    if not real:
        return []
    t0 = min(a["start_ns"] for a in real) / 1e9
    free: list[float] = []
    rows = []
    for a in sorted(real, key=lambda a: (a["start_ns"], a.get("id", 0))):
        s = a["start_ns"] / 1e9 - t0
        e = s + (a["duration"] or 0)
        for i, end in enumerate(free):
            if end <= s + TOUCHING:
                free[i] = e
                break
        else:
            free.append(e)
            i = len(free) - 1
        rows.append((i, s, e, a))
    return rows


def timeline_svg(attempts) -> str:
    """Attempts of one build as bars: process recipes in their slots, transfers below."""
    procs = lanes_of([a for a in attempts if a.get("kind") not in TRANSFER_KINDS])
    transfers = lanes_of([a for a in attempts if a.get("kind") in TRANSFER_KINDS])
    if not procs and not transfers:
        return "<p>No build recorded yet.</p>"
    slots = 1 + max((i for i, *_ in procs), default=-1)
    labels = [f"slot {i + 1}" for i in range(slots)]
    labels += [f"transfer {i + 1}" for i in range(1 + max((i for i, *_ in transfers), default=-1))]
    rows = procs + [(slots + i, s, e, a) for i, s, e, a in transfers]
    if procs and transfers:  # one time axis for both
        t0 = min(a["start_ns"] for _, _, _, a in rows) / 1e9
        rows = [(i, a["start_ns"] / 1e9 - t0, a["start_ns"] / 1e9 - t0 + (a["duration"] or 0), a)
                for i, _, _, a in rows]
    span = max(max(e for _, _, e, _ in rows), 1e-3)
    lanes = labels
    width, lh = 900, 22
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width + 120}" height="{len(lanes) * lh + 30}" '
           f'font-size="10" font-family="sans-serif" data-slots="{slots}">']
    for i, s, e, a in rows:
        x = 100 + s / span * width
        bw = max(2.0, (e - s) / span * width)
        colour = OUTCOME.get(a["outcome"], "#999")
        out.append(f'<g class="attempt" data-lane="{i}" data-start="{s:.4f}" data-end="{e:.4f}" '
                   f'data-node="{_esc(a["node"])}"><title>{_esc(a["node"])} via {_esc(a["recipe"])}: '
                   f'{_esc(a["outcome"])}, {(a["duration"] or 0):.2f}s</title><rect x="{x:.1f}" y="{i * lh + 4}" '
                   f'width="{bw:.1f}" height="{lh - 6}" fill="{colour}"/>'
                   f'<text x="{x + 2:.1f}" y="{i * lh + 16}" fill="#fff">{_esc(a["node"]) if bw > 40 else ""}</text></g>')
    for i, label in enumerate(lanes):
        out.append(f'<text x="4" y="{i * lh + 16}">{label}</text>')
    out.append(f'<text x="100" y="{len(lanes) * lh + 20}">0 s</text>'
               f'<text x="{100 + width - 40}" y="{len(lanes) * lh + 20}">{span:.1f} s</text></svg>')
    return "\n".join(out)


def render(project, names, plan, attempts, estimates, build_id=None) -> str:
    status = {n: ("alias" if project.nodes[n].is_alias else plan[n].status.value) for n in names}
    rows = []
    for n in names:
        if project.nodes[n].is_alias:
            continue
        v = plan[n]
        est = estimates.get(n)
        rows.append(f"<tr><td>{_esc(n)}</td><td style='background:{COLOURS[v.status.value]}'>{_esc(v.status.value)}</td>"
                    f"<td>{_esc('; '.join(str(r) for r in v.reasons[:3]))}</td>"
                    f"<td>{_esc(est or '')}</td></tr>")
    last = f"build {build_id if build_id is not None else attempts[0]['build_id']}" if attempts else "none"
    total = sum(a["duration"] or 0 for a in attempts)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>nodefile report: {_esc(project.name)}</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:left}} .scroll{{overflow-x:auto}}</style>
</head><body>
<h1>{_esc(project.name)}</h1>
<p>Written {time.strftime('%Y-%m-%d %H:%M:%S')} by nodefile. {sum(1 for n in names if not project.nodes[n].is_alias)} nodes.</p>
<h2>Graph</h2><div class="scroll">{dag_svg(names, project.nodes, status)}</div>
<h2>Build timeline ({_esc(last)}, {len(attempts)} attempts, {total:.1f} recipe-seconds)</h2>
<div class="scroll">{timeline_svg(attempts)}</div>
<h2>Nodes</h2>
<table><tr><th>node</th><th>status</th><th>why</th><th>learned recipe choice</th></tr>
{''.join(rows)}
</table></body></html>
"""
