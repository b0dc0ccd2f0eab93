"""Acceptance 1-2: the README's main job, `node build` at the repository root."""
from __future__ import annotations

import shutil

import pytest

from conftest import REPO, describe, no_traceback, run


@pytest.fixture
def repo_copy(tmp_path):
    """The repository's root Nodefile and examples/, without built outputs or state."""
    shutil.copy(REPO / "Nodefile.toml", tmp_path / "Nodefile.toml")
    shutil.copytree(REPO / "examples", tmp_path / "examples",
                    ignore=shutil.ignore_patterns("out", ".nodefile", "__pycache__"))
    assert not (tmp_path / "examples/mtcars/out").exists()
    return tmp_path


@pytest.mark.needs_r
def test_root_build_makes_the_mtcars_report_then_nothing_to_do(repo_copy):
    first = run(repo_copy, "build", timeout=120)
    assert first.returncode == 0, describe(first)
    no_traceback(first)
    out = repo_copy / "examples/mtcars/out"
    for name in ("mtcars.csv", "fit.json", "plot.png", "report.html"):
        assert (out / name).is_file(), f"{name} missing\n{describe(first)}"
    assert (out / "report.html").stat().st_size > 0
    # every node ran once, in the plain progress format
    for node in ("data", "fit", "plot", "report"):
        assert f"run  {node}" in first.stdout, describe(first)
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}

    # acceptance 2: a second build right away runs nothing and says so
    second = run(repo_copy, "build", timeout=60)
    assert second.returncode == 0, describe(second)
    assert "nothing to do" in second.stdout, describe(second)
    assert "run  " not in second.stdout, describe(second)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == mtimes

    dry = run(repo_copy, "build", "-n")
    assert dry.returncode == 0 and "nothing to do" in dry.stdout, describe(dry)
