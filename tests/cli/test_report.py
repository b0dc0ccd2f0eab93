"""`node report` and `node graph`: what a user opens to see the pipeline."""
import json
import textwrap


from conftest import run as _run  # the suite's CLI runner (plain progress, bounded)


def _project(tmp_path):
    (tmp_path / "Nodefile.toml").write_text(textwrap.dedent("""
        [nodes.prep]
        outputs = "prep.txt"
        shell = "echo prep > {outputs}"

        [nodes.fail]
        outputs = "fail.txt"
        shell = "exit 4"

        [nodes.final]
        outputs = "final.txt"
        inputs = ["prep"]
        shell = "cat {inputs} > {outputs}"
        """))
    return tmp_path


def test_report_shows_the_graph_the_last_build_and_failures(tmp_path):
    p = _project(tmp_path)
    assert _run(p, "build", "-k").returncode == 1
    r = _run(p, "report", "-o", "r.html")
    assert r.returncode == 0, r.stderr
    page = (p / "r.html").read_text()
    for name in ("prep", "final", "fail"):
        assert f">{name}<" in page  # every node is drawn
    assert "<svg" in page and "slot 1" in page  # the timeline of the last build
    assert "failed" in page and "#d9534f" in page  # the failed attempt stands out
    assert "up to date" in page and "missing" in page


def test_graph_json_has_every_edge_and_status(tmp_path):
    p = _project(tmp_path)
    _run(p, "build", "prep")
    g = json.loads(_run(p, "graph", "--format", "json").stdout)
    status = {n["name"]: n["status"] for n in g["nodes"]}
    assert status == {"prep": "up to date", "fail": "missing", "final": "missing"}
    assert ["prep", "final"] in g["edges"]
    dot = _run(p, "graph").stdout
    assert '"prep" -> "final"' in dot


def test_the_timeline_has_at_most_j_slots_and_bars_are_real_process_lifetimes(tmp_path):
    """Eight 0.3 s recipes at -j 2: two lanes, and each bar where the recipe itself says
    it ran (its own clock at its first and last line). A later build that only restores
    outputs from the cache leaves the timeline on the build that ran them."""
    import re
    nodes = "".join(f"""
        [nodes.n{i}]
        outputs = "out/n{i}"
        shell = "echo {{node}} start $(date +%s.%N) >> times.log; sleep 0.3; echo {{node}} end $(date +%s.%N) >> times.log; echo {i} > {{outputs}}"
        """ for i in range(8))
    (tmp_path / "Nodefile.toml").write_text(textwrap.dedent(nodes))
    assert _run(tmp_path, "build", "-j", "2").returncode == 0
    own: dict[str, dict[str, float]] = {}
    for line in (tmp_path / "times.log").read_text().splitlines():
        node, what, t = line.split()
        own.setdefault(node, {})[what] = float(t)
    _run(tmp_path, "clean")
    restored = _run(tmp_path, "build", "-j", "2")  # from the local cache: no recipe runs
    assert restored.returncode == 0 and "via load" in restored.stdout, restored.stdout
    r = _run(tmp_path, "report", "-o", "r.html")
    assert r.returncode == 0, r.stderr
    page = (tmp_path / "r.html").read_text()
    assert "build 1," in page, page[:2000]  # the build that ran the recipes, not the restore
    bars = re.findall(r'data-lane="(\d+)" data-start="([\d.]+)" data-end="([\d.]+)" data-node="(\w+)"', page)
    assert sorted(b[3] for b in bars) == [f"n{i}" for i in range(8)]
    assert {int(b[0]) for b in bars} == {0, 1} and "slot 3" not in page  # never more lanes than -j
    t0 = min(t["start"] for t in own.values())
    for lane, start, end, node in bars:
        assert abs(float(start) - (own[node]["start"] - t0)) < 0.1, (node, start, own[node])
        assert abs(float(end) - (own[node]["end"] - t0)) < 0.1, (node, end, own[node])
    by_lane: dict[str, list] = {}
    for lane, start, end, _ in bars:  # within a lane, bars never overlap
        by_lane.setdefault(lane, []).append((float(start), float(end)))
    for spans in by_lane.values():
        spans.sort()
        assert all(b[0] >= a[1] - 0.005 for a, b in zip(spans, spans[1:])), spans
    second = _run(tmp_path, "report", "--build", "2", "-o", "r2.html")
    assert second.returncode == 0 and "build 2," in (tmp_path / "r2.html").read_text()
    missing = _run(tmp_path, "report", "--build", "9")
    assert missing.returncode == 2 and "--build 9" in missing.stderr and "Traceback" not in missing.stderr
