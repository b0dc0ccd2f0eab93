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

from ..model import TRANSFER_KINDS, Outcome, Status

COLOURS = {Status.UP_TO_DATE.value: "#b7e4b0", Status.STALE.value: "#ffe08a", Status.MISSING.value: "#f4a7a7",
           "blocked": "#c9c9d6", "alias": "#eeeeee"}
OUTCOME = {Outcome.OK: "#5aa469", Outcome.FAILED: "#d9534f", Outcome.CANCELLED: "#999999", Outcome.STOPPED: "#e0a030"}
TOUCHING = 0.005  # seconds: a process started as the one before it in the slot was reaped


def _esc(s) -> str:
    return html.escape(str(s), quote=True)


LEGEND = (("up to date", "up to date"), ("stale", "stale: will run"), ("missing", "missing: never built"),
          ("blocked", "blocked: a source is missing"), ("alias", "alias"))


def dag_svg(names, nodes, status, reasons=None, durations=None, engine=None) -> str:
    """The DAG left to right (report.layout: dot, or the pure-Python layered layout):
    boxes coloured by status with the node's last recipe duration, edges with
    arrowheads, the reason on hover (<title>), a legend below. Plain coordinates for
    tools and tests: data-x/y/w/h on each node's group, data-points on each edge."""
    from .layout import box_width, layout
    reasons = reasons or {}
    durations = durations or {}
    shown = set(names)
    edges = [(d, n) for n in names for d in nodes[n].deps if d in shown]
    lay = layout(list(names), edges, {n: box_width(n) for n in names}, engine)
    legend_y = lay.height + 8
    legend_w = 10 + sum(30 + len(text) * 6.6 for _, text in LEGEND)
    width, height = max(lay.width, legend_w), legend_y + 30
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="nodefile-dag" width="{width:.0f}" '
           f'height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" font-size="12" '
           f'font-family="sans-serif" data-layout="{lay.engine}">',
           '<defs><marker id="nf-arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
           'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>']
    for t, h, pts in lay.edges:
        flat = " ".join(f"{x:g},{y:g}" for x, y in pts)
        out.append(f'<g class="edge" data-from="{_esc(t)}" data-to="{_esc(h)}"><title>{_esc(t)} → {_esc(h)}'
                   f'</title><polyline points="{flat}" data-points="{flat}" fill="none" stroke="#666" '
                   f'stroke-width="1.3" marker-end="url(#nf-arrow)"/></g>')
    for n in names:
        x, y, w, h = lay.boxes[n]
        st = status.get(n, "alias")
        why = reasons.get(n) or ""
        tip = f"{n}: {st}" + (f" ({why})" if why else "")
        if n in durations:
            tip += f"\nlast recipe: {durations[n]}"
        label = n if len(n) <= 40 else n[:39] + "…"
        dur = durations.get(n, "")
        out.append(f'<g class="node" data-node="{_esc(n)}" data-status="{_esc(st)}" data-x="{x:g}" data-y="{y:g}" '
                   f'data-w="{w:g}" data-h="{h:g}"><title>{_esc(tip)}</title>'
                   f'<rect x="{x:g}" y="{y:g}" width="{w:g}" height="{h:g}" rx="5" '
                   f'fill="{COLOURS.get(st, "#ddd")}" stroke="#555"/>'
                   f'<text x="{x + w / 2:g}" y="{y + (16 if dur else 23):g}" text-anchor="middle">{_esc(label)}</text>'
                   + (f'<text x="{x + w / 2:g}" y="{y + 31:g}" text-anchor="middle" font-size="10" fill="#333">'
                      f'{_esc(dur)}</text>' if dur else "") + "</g>")
    x = 10.0
    out.append(f'<g class="legend" transform="translate(0,{legend_y:g})">')
    for key, text in LEGEND:
        out.append(f'<rect x="{x:g}" y="4" width="14" height="14" rx="3" fill="{COLOURS[key]}" stroke="#555"/>'
                   f'<text x="{x + 19:g}" y="15">{_esc(text)}</text>')
        x += 30 + len(text) * 6.6
    out.append("</g></svg>")
    return "\n".join(out)


def graph_page(title: str, svg: str) -> str:
    """`node graph --format html`: the SVG in a page of its own (no scripts, no network)."""
    return (f'<!doctype html>\n<html><head><meta charset="utf-8"><title>{_esc(title)}</title>'
            f'<style>body{{font-family:sans-serif;margin:1.5em}}</style></head><body>\n'
            f'<h1>{_esc(title)}</h1>\n{svg}\n</body></html>\n')


def last_durations(attempts) -> dict:
    """node -> its last successful recipe's duration ("1.2s"), restores and fetches left out."""
    from .console import fmt_seconds
    out = {}
    for a in attempts:  # in id order: the last wins
        if a.outcome == Outcome.OK and a.recipe and a.kind not in TRANSFER_KINDS:
            out[a.node] = fmt_seconds(a.duration or 0)
    return out


def lanes_of(attempts) -> list[tuple[int, float, float, dict]]:
    """(lane, start s, end s, attempt) with times from the first start: each attempt in
    the first lane free when it starts (interval partitioning: as many lanes as
    attempts ever ran at once)."""
    real = [a for a in attempts if a.recipe and a.start_ns]
    if not real:
        return []
    t0 = min(a.start_ns for a in real) / 1e9
    free: list[float] = []
    rows = []
    for a in sorted(real, key=lambda a: (a.start_ns, a.id)):
        s = a.start_ns / 1e9 - t0
        e = s + (a.duration or 0)
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
    procs = lanes_of([a for a in attempts if a.kind not in TRANSFER_KINDS])
    transfers = lanes_of([a for a in attempts if a.kind in TRANSFER_KINDS])
    if not procs and not transfers:
        return "<p>No build recorded yet.</p>"
    slots = 1 + max((i for i, *_ in procs), default=-1)
    labels = [f"slot {i + 1}" for i in range(slots)]
    labels += [f"transfer {i + 1}" for i in range(1 + max((i for i, *_ in transfers), default=-1))]
    rows = procs + [(slots + i, s, e, a) for i, s, e, a in transfers]
    if procs and transfers:  # one time axis for both
        t0 = min(a.start_ns for _, _, _, a in rows) / 1e9
        rows = [(i, a.start_ns / 1e9 - t0, a.start_ns / 1e9 - t0 + (a.duration or 0), a)
                for i, _, _, a in rows]
    span = max(max(e for _, _, e, _ in rows), 1e-3)
    lanes = labels
    width, lh = 900, 22
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width + 120}" height="{len(lanes) * lh + 30}" '
           f'font-size="10" font-family="sans-serif" data-slots="{slots}">']
    for i, s, e, a in rows:
        x = 100 + s / span * width
        bw = max(2.0, (e - s) / span * width)
        colour = OUTCOME.get(a.outcome, "#999")
        out.append(f'<g class="attempt" data-lane="{i}" data-start="{s:.4f}" data-end="{e:.4f}" '
                   f'data-node="{_esc(a.node)}"><title>{_esc(a.node)} via {_esc(a.recipe)}: '
                   f'{_esc(a.outcome)}, {(a.duration or 0):.2f}s</title><rect x="{x:.1f}" y="{i * lh + 4}" '
                   f'width="{bw:.1f}" height="{lh - 6}" fill="{colour}"/>'
                   f'<text x="{x + 2:.1f}" y="{i * lh + 16}" fill="#fff">{_esc(a.node) if bw > 40 else ""}</text></g>')
    for i, label in enumerate(lanes):
        out.append(f'<text x="4" y="{i * lh + 16}">{label}</text>')
    out.append(f'<text x="100" y="{len(lanes) * lh + 20}">0 s</text>'
               f'<text x="{100 + width - 40}" y="{len(lanes) * lh + 20}">{span:.1f} s</text></svg>')
    return "\n".join(out)


def render(project, names, plan, attempts, estimates, build_id=None, durations=None, blocked=None) -> str:
    blocked = blocked or {}
    status = {n: ("alias" if project.nodes[n].is_alias else "blocked" if n in blocked else plan[n].status.value)
              for n in names}
    why = {n: blocked.get(n) or "; ".join(str(r) for r in plan[n].reasons[:3]) for n in names}
    rows = []
    for n in names:
        if project.nodes[n].is_alias:
            continue
        v = plan[n]
        est = estimates.get(n)
        rows.append(f"<tr><td>{_esc(n)}</td><td style='background:{COLOURS[v.status.value]}'>{_esc(v.status.value)}</td>"
                    f"<td>{_esc('; '.join(str(r) for r in v.reasons[:3]))}</td>"
                    f"<td>{_esc(est or '')}</td></tr>")
    last = f"build {build_id if build_id is not None else attempts[0].build_id}" if attempts else "none"
    total = sum(a.duration or 0 for a in attempts)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>nodefile report: {_esc(project.name)}</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:left}} .scroll{{overflow-x:auto}}</style>
</head><body>
<h1>{_esc(project.name)}</h1>
<p>Written {time.strftime('%Y-%m-%d %H:%M:%S')} by nodefile. {sum(1 for n in names if not project.nodes[n].is_alias)} nodes.</p>
<h2>Graph</h2><div class="scroll">{dag_svg(names, project.nodes, status, why, durations)}</div>
<h2>Build timeline ({_esc(last)}, {len(attempts)} attempts, {total:.1f} recipe-seconds)</h2>
<div class="scroll">{timeline_svg(attempts)}</div>
<h2>Nodes</h2>
<table><tr><th>node</th><th>status</th><th>why</th><th>learned recipe choice</th></tr>
{''.join(rows)}
</table></body></html>
"""
