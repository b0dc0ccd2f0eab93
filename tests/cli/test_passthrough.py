"""Acceptance 11: the `node` console script hands foreign command lines to Node.js."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import base_env, describe, write

# The real console scripts live next to the interpreter (shutil.which may find a
# pyenv shim instead, which would run whatever Python pyenv picks).
SCRIPTS = Path(sys.executable).parent


@pytest.fixture
def scripts_dir() -> Path:
    for name in ("node", "nodefile"):
        p = SCRIPTS / name
        if not (p.is_file() and os.access(p, os.X_OK)):
            pytest.skip(f"console script {p} is not installed (pip install -e .)")
        head = p.read_bytes()[:4096]
        if b"nodefile" not in head:
            pytest.skip(f"{p} is not nodefile's console script")
    return SCRIPTS


def nodes_on(path: str) -> list[str]:
    """Every executable `node` reachable through PATH."""
    found = []
    for d in path.split(os.pathsep):
        p = os.path.join(d or ".", "node")
        if os.path.isfile(p) and os.access(p, os.X_OK):
            found.append(os.path.realpath(p))
    return found


def node(path: str, *args, cwd) -> subprocess.CompletedProcess:
    """Run `node ARGS` as a shell would: looked up on PATH = path (subprocess
    searches the child's PATH)."""
    return subprocess.run(["node", *args], cwd=cwd, env=base_env(PATH=path), capture_output=True,
                          text=True, timeout=30)


@pytest.fixture
def fake_node(tmp_path) -> Path:
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    fake = bin_dir / "node"
    fake.write_text('#!/bin/sh\necho "FAKE-NODE $@"\n')
    fake.chmod(0o755)
    return bin_dir


PROJECT = {"Nodefile.toml": """
    [nodes.hello]
    outputs = "hello.txt"
    shell = "echo hello > {outputs}"
    """}


def test_foreign_command_lines_go_to_the_next_node_on_path(tmp_path, scripts_dir, fake_node):
    path = os.pathsep.join([str(scripts_dir), str(fake_node), "/usr/bin", "/bin"])
    assert nodes_on(path)[:2] == [str((scripts_dir / "node").resolve()), str((fake_node / "node").resolve())]
    project = write(tmp_path / "proj", PROJECT)

    for args in (["--version"], ["x.js"], ["-e", "console.log(1)"], ["x.js", "build"]):
        proc = node(path, *args, cwd=project)
        assert proc.returncode == 0, describe(proc)
        assert proc.stdout.strip() == "FAKE-NODE " + " ".join(args), describe(proc)

    proc = node(path, "build", cwd=project)
    assert proc.returncode == 0, describe(proc)
    assert "FAKE-NODE" not in proc.stdout, describe(proc)
    assert (project / "hello.txt").read_text() == "hello\n"
    proc = node(path, "build", cwd=project)
    assert "nothing to do" in proc.stdout, describe(proc)


def test_without_node_js_version_is_nodefiles(tmp_path, scripts_dir):
    # /bin and /usr/bin may hold a real Node.js: PATH is the scripts folder alone
    # (the console scripts start their interpreter by absolute path).
    path = str(scripts_dir)
    assert nodes_on(path) == [str((scripts_dir / "node").resolve())], "another node is reachable"
    project = write(tmp_path / "proj", PROJECT)

    proc = node(path, "--version", cwd=project)
    assert proc.returncode == 0, describe(proc)
    assert "nodefile" in proc.stdout, describe(proc)

    proc = node(path, "x.js", cwd=project)
    assert proc.returncode == 2, describe(proc)
    assert "Traceback" not in proc.stderr and "Node.js" in proc.stderr, describe(proc)

    proc = node(path, "build", cwd=project)
    assert proc.returncode == 0, describe(proc)
    assert (project / "hello.txt").exists()


def test_nodefile_script_never_passes_through(tmp_path, scripts_dir, fake_node):
    path = os.pathsep.join([str(scripts_dir), str(fake_node), "/usr/bin", "/bin"])
    proc = subprocess.run(["nodefile", "--version"], cwd=tmp_path, env=base_env(PATH=path),
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, describe(proc)
    assert "nodefile" in proc.stdout and "FAKE-NODE" not in proc.stdout, describe(proc)
