"""The benchmark harness's smoke mode still works end to end (about 40 s).

`python bench/run.py --smoke` runs every part at tiny sizes with the tools
available without network (make, nodefile, and ninja/doit/snakemake only if
already there) and exits non-zero when a tool's outputs are wrong or a part fails.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_bench_smoke(tmp_path):
    out = tmp_path / "smoke.json"
    r = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "run.py"), "--smoke", "--out", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"bench smoke failed (exit {r.returncode}):\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    data = json.loads(out.read_text())
    rows = [row for row in data["cases"] if row["tool"] == "nodefile"]
    assert rows, "no nodefile row in the results"
    for row in rows:
        assert row["error"] is None, row["error"]
        assert row["full_median_s"] is not None and row["noop_median_s"] is not None
    assert any(row["tool"] == "make" and row["error"] is None for row in data["cases"])
    assert data["startup"]["noop10_median_s"] is not None
    assert data["hashing"]["error"] is None and data["hashing"]["cat_gib_s"] and data["hashing"]["inproc_gib_s"]
    assert not (tmp_path / "big.bin").exists()
    assert {g["goal"] for g in data["goals"]}


def test_spawn_floor_smoke(tmp_path):
    """bench/spawn_floor.py (the spawn helper alone against make) runs and checks its outputs."""
    r = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "spawn_floor.py"), "--n", "30", "--rounds", "1",
                        "--work", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "spawn helper alone" in r.stdout and "x make" in r.stdout, r.stdout
    assert len(list((tmp_path / "out").iterdir())) == 30


def test_compare_smoke(tmp_path):
    """`bench/run.py --compare REV` measures nodefile at REV and this checkout side by side and
    removes the temporary worktree it checked REV out into."""
    if subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True).returncode:
        import pytest
        pytest.skip("not a git checkout")
    out = tmp_path / "compare.json"
    r = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "run.py"), "--compare", "HEAD", "--sizes", "30",
                        "--repeat", "1", "--quick", "--makespan-rounds", "1", "--work", str(tmp_path / "w"),
                        "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"compare failed (exit {r.returncode}):\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    data = json.loads(out.read_text())
    rows = {row["row"].split(",")[0].split(" (")[0]: row for row in data["table"]}
    assert {"full build -j2", "no-op", "rebuild", "makespan / LB -j2", "makespan / LB -j4", "regret"} <= set(rows), rows
    for row in data["table"]:
        assert row["before"] and row["after"] and row["ratio"], row
    assert "| row | before (median) | after (median) | after / before | runs |" in r.stdout
    assert not list((tmp_path / "w").glob("compare-*")), "the temporary worktree was left behind"
    worktrees = subprocess.run(["git", "worktree", "list"], cwd=ROOT, capture_output=True, text=True).stdout
    assert str(tmp_path) not in worktrees
