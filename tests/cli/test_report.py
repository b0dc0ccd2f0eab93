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
