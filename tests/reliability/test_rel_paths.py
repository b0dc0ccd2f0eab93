"""Odd paths (SPEC §9): outputs through a symlinked folder that leads outside the
project, outputs under .nodefile/, recipe names with ../, globs over symlink
loops. Nothing outside the project, and nothing of .nodefile/'s own state, is
ever written, moved or deleted: a folder next to the project is snapshot
before and after every command, `node clean` included."""
from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import pytest

from cli_helpers import run, write


def snapshot(folder: Path) -> dict:
    """Every entry under folder: its kind and content (a symlink: its target)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, folder)
            if os.path.islink(p):
                out[rel] = ("link", os.readlink(p))
            elif os.path.isdir(p):
                out[rel] = ("dir",)
            else:
                with open(p, "rb") as f:
                    out[rel] = ("file", hashlib.sha1(f.read()).hexdigest(), os.stat(p).st_mtime_ns)
    return out


@pytest.fixture
def world(tmp_path):
    """tmp_path/project (the project) and tmp_path/outside (a folder that must never change)."""
    project = tmp_path / "project"
    outside = tmp_path / "outside"
    project.mkdir()
    (outside / "sub").mkdir(parents=True)
    (outside / "sub" / "a.txt").write_text("precious\n")
    (outside / "victim.txt").write_text("precious\n")
    return project, outside


def test_an_output_through_a_symlink_outside_is_refused_by_check_build_and_clean(world):
    project, outside = world
    os.symlink(outside / "sub", project / "sub")
    write(project, {"Nodefile.toml": """
        [nodes.a]
        outputs = "sub/a.txt"
        shell = "echo overwritten > {outputs}"
    """})
    before = snapshot(outside)
    for cmd in (["check"], ["build"], ["build", "-B", "a"], ["clean"], ["status"]):
        proc = run(project, *cmd)
        assert proc.returncode == 2, proc.stderr
        assert "Nodefile.toml:2: [nodes.a.outputs] output 'sub/a.txt' lies outside the project" in proc.stderr
        assert "Traceback" not in proc.stderr
    assert snapshot(outside) == before


def test_a_symlink_that_appears_after_the_check_stops_the_runner(world):
    """The build after a successful one reuses the parsed project (no new check): the
    runner looks again at the moment it would move the old output aside and write."""
    project, outside = world
    write(project, {"Nodefile.toml": """
        [nodes.a]
        outputs = "sub/a.txt"
        shell = "echo built > {outputs}"

        [nodes.b]
        outputs = "b.txt"
        shell = "echo b > {outputs}"
    """})
    run(project, "build", check=0)
    (project / "sub" / "a.txt").unlink()
    (project / "sub").rmdir()
    os.symlink(outside / "sub", project / "sub")
    before = snapshot(outside)
    proc = run(project, "build", "-B", "-k")
    assert proc.returncode == 1, proc.stderr
    assert "output 'sub/a.txt' lies outside the project" in proc.stdout + proc.stderr
    assert "nothing was written" in proc.stdout + proc.stderr
    assert (project / "b.txt").read_text() == "b\n"  # the other node still builds
    assert snapshot(outside) == before
    assert not (project / ".nodefile" / "previous" / "a").exists()  # nothing moved in from outside


def test_clean_looks_again_at_the_moment_it_deletes(world, monkeypatch):
    """A project parsed before the folder became a symlink: clean removes nothing outside."""
    project, outside = world
    write(project, {"Nodefile.toml": """
        [nodes.a]
        outputs = ["sub/a.txt", "mine.txt"]
        shell = "true"
    """, "mine.txt": "mine\n"})
    (project / "sub").mkdir()
    monkeypatch.chdir(project)
    from nodefile import commands
    from nodefile.config.load import load_project
    from nodefile.report.console import Console
    parsed = load_project(str(project), use_cache=False)
    (project / "sub").rmdir()
    os.symlink(outside / "sub", project / "sub")
    monkeypatch.setattr(commands, "project_of", lambda args, check_sources=True: parsed)
    before = snapshot(outside)

    class Args:
        targets = []
    assert commands.cmd_clean(Args(), Console(verbosity=-1)) == 1
    assert snapshot(outside) == before
    assert not (project / "mine.txt").exists()  # what lies inside is still cleaned


@pytest.mark.parametrize("out", [".nodefile/state.db", ".nodefile/", "x/../.nodefile/cache/blob"])
def test_an_output_under_dot_nodefile_never_replaces_the_state(world, out):
    project, outside = world
    write(project, {"Nodefile.toml": """
        [nodes.ok]
        outputs = "ok.txt"
        shell = "echo ok > {outputs}"
    """})
    run(project, "build", check=0)
    state = project / ".nodefile" / "state.db"
    db_before = state.read_bytes()
    write(project, {"Nodefile.toml": f"""
        [nodes.ok]
        outputs = "ok.txt"
        shell = "echo ok > {{outputs}}"

        [nodes.bad]
        outputs = "{out}"
        shell = "echo junk > {{outputs}}"
    """})
    for cmd in ("check", "build", "clean"):
        proc = run(project, cmd)
        assert proc.returncode == 2 and "lies inside .nodefile/" in proc.stderr, proc.stderr
        assert "[nodes.bad.outputs]" in proc.stderr
    assert state.read_bytes() == db_before
    sqlite3.connect(state).execute("select count(*) from sqlite_master").fetchone()  # still a database
    write(project, {"Nodefile.toml": """
        [nodes.ok]
        outputs = "ok.txt"
        shell = "echo ok > {outputs}"
    """})
    assert "up to date" in run(project, "status", check=0).stdout


def test_a_recipe_name_with_dotdot_keeps_its_log_inside_dot_nodefile(world):
    project, outside = world
    write(project, {"Nodefile.toml": """
        [nodes.a]
        outputs = "a.txt"
        recipes = [{ shell = "echo talking; echo a > a.txt", name = "../../../../../outside/pwned" }]
    """})
    before = snapshot(project.parent / "outside")
    run(project, "build", check=0)
    assert snapshot(project.parent / "outside") == before
    logs = [p for p in (project / ".nodefile" / "logs").rglob("*") if p.is_file()]
    assert len(logs) == 1 and logs[0].read_text() == "talking\n"
    assert "talking" in run(project, "log", "a", check=0).stdout
    outside_files = {p.relative_to(project.parent) for p in project.parent.rglob("*")} - \
        {p.relative_to(project.parent) for p in project.rglob("*")}
    assert {str(p) for p in outside_files} == {"project", "outside", "outside/sub", "outside/sub/a.txt",
                                               "outside/victim.txt"}


def test_a_matrix_value_with_slashes_and_dots_stays_in_its_files(world):
    project, outside = world
    write(project, {"Nodefile.toml": """
        [nodes.f]
        outputs = "out/{v}.txt"
        shell = "echo noisy; mkdir -p $(dirname {outputs}); echo x > {outputs}"
        matrix = { v = ["a/b", "../../outside/x"] }
    """})
    proc = run(project, "check")
    assert proc.returncode == 2 and "lies outside the project root" in proc.stderr
    write(project, {"Nodefile.toml": """
        [nodes.f]
        outputs = "out/{v}.txt"
        shell = "echo noisy; mkdir -p $(dirname {outputs}); echo x > {outputs}"
        matrix = { v = ["a/b", "c/..d"] }
    """})
    before = snapshot(outside)
    run(project, "build", check=0)
    assert (project / "out" / "a" / "b.txt").exists()
    assert snapshot(outside) == before
    names = sorted(p.name for p in (project / ".nodefile" / "logs").rglob("*.log"))
    assert len(names) == 2 and all("/" not in n for n in names)


@pytest.mark.parametrize("loops", [1, 2])
def test_a_glob_over_symlink_loops_finishes_and_lists_each_file_once(world, loops):
    project, outside = world
    write(project, {"Nodefile.toml": """
        [nodes.all]
        outputs = "all.txt"
        inputs = ["data/**/*.csv"]
        shell = "cat {inputs} > {outputs}"
    """, "data/a.csv": "a\n", "data/sub/b.csv": "b\n"})
    os.symlink("..", project / "data" / "sub" / "loop")
    if loops == 2:
        os.symlink("../..", project / "data" / "sub" / "loop2")
    run(project, "check", check=0, timeout=30)
    run(project, "build", check=0, timeout=30)
    assert (project / "all.txt").read_text() == "a\nb\n"
    assert "up to date" in run(project, "status", check=0, timeout=30).stdout


def test_a_nul_reaching_a_command_line_through_a_param_fails_the_node_cleanly(world):
    project, outside = world
    write(project, {"Nodefile.toml": """
        [params]
        p = "a\\u0000b"

        [nodes.a]
        outputs = "a.txt"
        shell = "echo {params.p} > {outputs}"
        params = ["p"]
    """})
    proc = run(project, "build")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "cannot start /bin/sh: embedded null byte" in proc.stdout + proc.stderr
