"""`node graph --format svg|html` and `node report`'s DAG (SPEC §6, issue 24 item 7):
both layouts (graphviz's dot, the pure-Python layered one), checked on the geometry
the SVG states, and rendered in headless Chromium (its DOM and a screenshot)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conftest import REPO, base_env, run, write

CHROMIUM = next((c for c in (shutil.which("chromium"), shutil.which("chromium-browser"),
                             shutil.which("google-chrome")) if c), None)
LAYOUTS = ["python", pytest.param("dot", marks=pytest.mark.skipif(not shutil.which("dot"),
                                                                   reason="graphviz's dot is not installed"))]


class Dag(HTMLParser):
    """Node boxes and edge polylines as the SVG states them."""

    def __init__(self, text: str):
        super().__init__()
        self.boxes: dict[str, tuple] = {}
        self.edges: list[tuple] = []
        self.edge = None
        self.layout = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "svg" and a.get("class") == "nodefile-dag":
            self.layout = a.get("data-layout")
        if tag == "g" and a.get("class") == "node":
            self.boxes[a["data-node"]] = tuple(float(a[k]) for k in ("data-x", "data-y", "data-w", "data-h"))
        elif tag == "g" and a.get("class") == "edge":
            self.edge = (a["data-from"], a["data-to"])
        elif tag == "polyline" and self.edge:
            pts = [tuple(map(float, p.split(","))) for p in a["data-points"].split()]
            self.edges.append((*self.edge, pts))
            self.edge = None


def hits(p, q, box, inset=1.0) -> bool:
    """Does segment p-q pass through the box (shrunk by `inset` on every side)?"""
    x, y, w, h = box
    x0, y0, x1, y1 = x + inset, y + inset, x + w - inset, y + h - inset
    t0, t1 = 0.0, 1.0  # Liang-Barsky clipping
    dx, dy = q[0] - p[0], q[1] - p[1]
    for pk, qk in ((-dx, p[0] - x0), (dx, x1 - p[0]), (-dy, p[1] - y0), (dy, y1 - p[1])):
        if pk == 0:
            if qk < 0:
                return False
        else:
            t = qk / pk
            if pk < 0:
                t0 = max(t0, t)
            else:
                t1 = min(t1, t)
    return t0 < t1


def check_geometry(dag: Dag, nodes: list[str], edges: set) -> None:
    assert sorted(dag.boxes) == sorted(nodes)
    assert {(t, h) for t, h, _ in dag.edges} == edges and len(dag.edges) == len(edges)
    for t, h, pts in dag.edges:
        assert len(pts) >= 2
        for p, q in zip(pts, pts[1:]):
            for n, box in dag.boxes.items():
                if n not in (t, h):
                    assert not hits(p, q, box), f"edge {t}->{h} passes under {n}: {p}-{q} vs {box}"
        # it starts at its tail's box and ends at its head's (the arrowhead's tip)
        for end, n in ((pts[0], t), (pts[-1], h)):
            x, y, w, hh = dag.boxes[n]
            assert x - 3 <= end[0] <= x + w + 3 and y - 3 <= end[1] <= y + hh + 3, (n, end, dag.boxes[n])


def mtcars(tmp_path) -> Path:
    dst = tmp_path / "mtcars"
    shutil.copytree(REPO / "examples" / "mtcars", dst)
    return dst


MTCARS_NODES = ["data", "fit", "plot", "report"]
MTCARS_EDGES = {("data", "fit"), ("data", "plot"), ("fit", "plot"), ("fit", "report"), ("plot", "report")}


def chromium(args: list, tmp_path) -> subprocess.CompletedProcess:
    if CHROMIUM is None:
        if os.environ.get("NODEFILE_REQUIRE_CHROMIUM") == "1":
            pytest.fail("NODEFILE_REQUIRE_CHROMIUM=1 but chromium is not installed")
        pytest.skip("chromium is not installed")
    profile = tempfile.mkdtemp(prefix="chromium-", dir=tmp_path)
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_svg_and_html_hold_every_node_and_edge_and_no_edge_hides(tmp_path, layout):
    p = mtcars(tmp_path)
    env = base_env(NODEFILE_LAYOUT=layout)
    svg = run(p, "graph", "--format", "svg", env=env, check=0).stdout
    dag = Dag(svg)
    assert dag.layout == layout
    check_geometry(dag, MTCARS_NODES, MTCARS_EDGES)
    assert svg.lstrip().startswith("<svg") and 'marker-end="url(#nf-arrow)"' in svg
    assert "<title>data: missing" in svg  # the reason on hover
    for key in ("up to date", "stale", "missing", "blocked"):  # the legend
        assert f">{key}" in svg
    page = run(p, "graph", "--format", "html", env=env, check=0).stdout
    assert page.startswith("<!doctype html>") and "<script" not in page and "http" not in page.replace(
        "http://www.w3.org/2000/svg", "")  # self-contained: nothing fetched
    check_geometry(Dag(page), MTCARS_NODES, MTCARS_EDGES)


def test_a_wide_graph_crossing_minimised_long_edges_routed_around_boxes(tmp_path):
    """Long edges (a source to a late node) and a fan: the pure-Python layout still hides nothing."""
    toml = ['[project]\ndefault = ["z"]\n']
    for i in range(6):
        toml.append(f'[nodes.s{i}]\noutputs = {{ o = "s{i}.txt" }}\nshell = "echo > s{i}.txt"\n')
    chain = ["s0"]
    for i in range(5):
        deps = [chain[-1]] + ([f"s{i + 1}"] if i < 5 else [])
        toml.append(f'[nodes.c{i}]\noutputs = {{ o = "c{i}.txt" }}\ninputs = {{ {", ".join(f"{d} = {d!r}".replace(chr(39), chr(34)) for d in deps)} }}\nshell = "echo > c{i}.txt"\n')
        chain.append(f"c{i}")
    toml.append('[nodes.z]\noutputs = { o = "z.txt" }\ninputs = { a = "s0", b = "c4", c = "s3", d = "c1" }\n'
                'shell = "echo > z.txt"\n')
    p = write(tmp_path, {"Nodefile.toml": "".join(toml)})
    for layout in ("python",) + (("dot",) if shutil.which("dot") else ()):
        svg = run(p, "graph", "--format", "svg", env=base_env(NODEFILE_LAYOUT=layout), check=0).stdout
        dag = Dag(svg)
        names = [f"s{i}" for i in range(6)] + [f"c{i}" for i in range(5)] + ["z"]
        edges = {("s0", "c0")} | {(f"c{i}", f"c{i + 1}") for i in range(4)} | {(f"s{i + 1}", f"c{i}") for i in range(5)}
        edges |= {("s0", "z"), ("c4", "z"), ("s3", "z"), ("c1", "z")}
        check_geometry(dag, names, edges)


def test_the_pure_python_layout_removes_crossings():
    from nodefile.report.layout import layered_layout
    # a-c and b-d given in an order that crosses: the sweeps uncross them
    names = ["a", "b", "c", "d"]
    lay = layered_layout(names, [("a", "d"), ("b", "c")], {n: 96 for n in names})
    ya = {n: lay.boxes[n][1] for n in names}
    assert (ya["a"] < ya["b"]) == (ya["d"] < ya["c"])


@pytest.mark.parametrize("layout", LAYOUTS)
def test_rendered_in_chromium(tmp_path, layout):
    """The report and the HTML graph as a browser renders them: the DOM after load holds
    every node and edge, no edge passes under a box; a screenshot is written."""
    p = mtcars(tmp_path)
    env = base_env(NODEFILE_LAYOUT=layout)
    run(p, "report", "-o", str(tmp_path / "report.html"), env=env, check=0)
    (tmp_path / "graph.html").write_text(run(p, "graph", "--format", "html", env=env, check=0).stdout)
    for page in ("report.html", "graph.html"):
        url = (tmp_path / page).as_uri()
        dom = chromium(["--dump-dom", url], tmp_path)
        assert dom.returncode == 0, dom.stderr
        dag = Dag(dom.stdout)
        assert dag.layout == layout, dom.stdout[:2000]
        check_geometry(dag, MTCARS_NODES, MTCARS_EDGES)
        shot = tmp_path / f"{page}.{layout}.png"
        sc = chromium([f"--screenshot={shot}", "--window-size=1200,900", url], tmp_path)
        assert sc.returncode == 0 and shot.stat().st_size > 5000, sc.stderr
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_durations_statuses_and_reasons_on_the_nodes(tmp_path):
    p = write(tmp_path, {"Nodefile.toml": """
        [nodes.a]
        outputs = "a.txt"
        shell = "sleep 0.2; echo > {outputs}"
        [nodes.b]
        outputs = "b.txt"
        inputs = ["a", "b.in"]
        shell = "cat a.txt b.in > {outputs}"
        [nodes.c]
        outputs = "c.txt"
        inputs = ["raw.csv"]
        shell = "cp raw.csv {outputs}"
        """, "b.in": "x\n"})
    run(p, "build", "b", check=0)
    (p / "b.in").write_text("y\n")
    for layout in ["python"] + (["dot"] if shutil.which("dot") else []):
        svg = run(p, "graph", "--format", "svg", env=base_env(NODEFILE_LAYOUT=layout), check=0).stdout
        groups = dict(re.findall(r'<g class="node" data-node="(\w)" (.*?)</g>', svg, re.S))
        assert 'data-status="up to date"' in groups["a"] and "#b7e4b0" in groups["a"]
        assert re.search(r">(2\d\dms|0\.\ds)</text>", groups["a"]), groups["a"]  # its last recipe's duration
        assert 'data-status="stale"' in groups["b"] and "b.in" in groups["b"]  # why, on hover
        assert 'data-status="blocked"' in groups["c"] and "raw.csv" in groups["c"], groups["c"]


def test_chromium_is_required_when_ci_says_so(monkeypatch, tmp_path):
    monkeypatch.setitem(globals(), "CHROMIUM", None)
    monkeypatch.setenv("NODEFILE_REQUIRE_CHROMIUM", "1")
    with pytest.raises(pytest.fail.Exception, match="chromium is not installed"):
        chromium(["--version"], tmp_path)


@pytest.mark.parametrize("engine", LAYOUTS)
def test_no_edge_hides_on_random_dags(engine):
    """Random DAGs with long edges, fans and labels of any width: every edge drawn,
    none under a box it does not connect."""
    import random

    from nodefile.report.layout import box_width, layout
    rng = random.Random(7)
    for _ in range(12):
        n = rng.randint(2, 40)
        names = [("x" * rng.randint(1, 30)) + str(i) for i in range(n)]
        edges = {(names[rng.randint(0, i - 1)], names[i]) for i in range(1, n) for _ in range(rng.randint(0, 3))}
        lay = layout(names, sorted(edges), {m: box_width(m) for m in names}, engine)
        assert lay.engine == engine
        dag = Dag("")
        dag.boxes = lay.boxes
        dag.edges = lay.edges
        check_geometry(dag, names, edges)
