"""Acceptance 11: the `node` console script hands foreign command lines to Node.js."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import base_env, describe, no_traceback, write

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


# -- the installed launcher (scripts/node) with a real Node.js ---------------------------
LAUNCHER = Path(__file__).resolve().parents[2] / "scripts" / "node"


def _real_node() -> str | None:
    """A Node.js `node` (not nodefile's), from PATH or /usr/bin."""
    for d in os.environ.get("PATH", "").split(os.pathsep) + ["/usr/bin", "/usr/local/bin"]:
        p = os.path.join(d or ".", "node")
        if not (os.path.isfile(p) and os.access(p, os.X_OK)):
            continue
        with open(p, "rb") as f:
            head = f.read(4096)
        if b"nodefile" in head or b"pyenv" in head:
            continue
        return p
    return None


def _require(what: str, path: str | None) -> str:
    if path is None:
        if os.environ.get("NODEFILE_REQUIRE_NODEJS") == "1":
            pytest.fail(f"{what} is not installed, and NODEFILE_REQUIRE_NODEJS=1 makes the Node.js tests mandatory")
        pytest.skip(f"{what} is not installed")
    return path


@pytest.fixture
def nodejs() -> str:
    return _require("Node.js (node)", _real_node())


@pytest.fixture
def launcher_path(tmp_path, nodejs) -> str:
    """PATH with nodefile's launcher first (as pip installs it: `node` beside a `nodefile`
    that runs this Python), then Node.js."""
    bin_dir = tmp_path / "venvbin"
    bin_dir.mkdir()
    shutil.copy(LAUNCHER, bin_dir / "node")
    (bin_dir / "nodefile").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m nodefile "$@"\n')
    for p in bin_dir.iterdir():
        p.chmod(0o755)
    return os.pathsep.join([str(bin_dir), os.path.dirname(nodejs), "/usr/bin", "/bin"])


def sh(path: str, *args, cwd, stdin: str | None = None, prog="node") -> subprocess.CompletedProcess:
    return subprocess.run([prog, *args], cwd=cwd, env=base_env(PATH=path), input=stdin, capture_output=True,
                          text=True, timeout=60)


def test_node_js_command_lines_reach_node_js(tmp_path, launcher_path, nodejs):
    work = write(tmp_path / "js", {"hello.js": "console.log('hello from ' + process.argv.slice(2).join(' '))\n"})
    proc = sh(launcher_path, cwd=work, stdin="console.log(6 * 7)\n")  # a stdin script
    assert (proc.returncode, proc.stdout) == (0, "42\n"), describe(proc)
    proc = sh(launcher_path, "-i", cwd=work, stdin="1 + 41\n.exit\n")  # the REPL through stdin
    assert proc.returncode == 0 and "42" in proc.stdout, describe(proc)
    proc = sh(launcher_path, "-e", "console.log(process.version)", cwd=work)
    direct = subprocess.run([nodejs, "--version"], capture_output=True, text=True)
    assert proc.stdout == direct.stdout, describe(proc)
    proc = sh(launcher_path, "--version", cwd=work)
    assert (proc.returncode, proc.stdout) == (0, direct.stdout), describe(proc)
    proc = sh(launcher_path, "-h", cwd=work)
    assert proc.returncode == 0 and "Usage: node" in proc.stdout, describe(proc)
    for script in ("hello.js", "hello"):  # Node.js finds hello.js for `node hello`
        proc = sh(launcher_path, script, "build", "status", cwd=work)
        assert (proc.returncode, proc.stdout) == (0, "hello from build status\n"), describe(proc)
    # Node.js's own -C (--conditions) is not nodefile's -C when no command follows
    proc = sh(launcher_path, "-C", "development", "hello.js", cwd=work)
    assert (proc.returncode, proc.stdout) == (0, "hello from \n"), describe(proc)


def test_sveltekit_build_runs_node_js_until_there_is_a_nodefile(tmp_path, launcher_path):
    app = write(tmp_path / "app", {"build/index.js": "console.log('listening on 3000')\n"})
    proc = sh(launcher_path, "build", cwd=app)
    assert (proc.returncode, proc.stdout) == (0, "listening on 3000\n"), describe(proc)
    proc = sh(launcher_path, "build", cwd=app, prog="nodefile")  # `nodefile` is always ours
    assert proc.returncode == 2 and "no Nodefile.toml" in proc.stderr, describe(proc)
    no_traceback(proc)
    write(app, {"Nodefile.toml": """
        [nodes.bundle]
        outputs = "bundle.txt"
        shell = "echo bundled > {outputs}"
        """})
    proc = sh(launcher_path, "build", cwd=app)
    assert proc.returncode == 0 and "listening" not in proc.stdout, describe(proc)
    assert (app / "bundle.txt").read_text() == "bundled\n"


def test_npm_runs_through_the_launcher(tmp_path, launcher_path, nodejs):
    npm = _require("npm", shutil.which("npm", path=os.path.dirname(nodejs)) or shutil.which("npm"))
    direct = subprocess.run([npm, "--version"], capture_output=True, text=True, timeout=60)
    assert direct.returncode == 0, describe(direct)
    proc = sh(launcher_path, "--version", cwd=tmp_path, prog="npm")  # npm's `#!/usr/bin/env node`
    assert (proc.returncode, proc.stdout) == (0, direct.stdout), describe(proc)


def test_nodefile_commands_typos_and_options(tmp_path, launcher_path):
    project = write(tmp_path / "proj", PROJECT)
    proc = sh(launcher_path, "build", cwd=project)
    assert proc.returncode == 0 and (project / "hello.txt").exists(), describe(proc)
    proc = sh(launcher_path, "status", cwd=project)
    assert proc.returncode == 0 and "up to date" in proc.stdout, describe(proc)

    for typo, meant in (("bulid", "build"), ("stauts", "status")):
        proc = sh(launcher_path, typo, cwd=project)
        assert proc.returncode == 2, describe(proc)
        assert f"'{typo}' is not a nodefile command (did you mean {meant}?)" in proc.stderr, describe(proc)
        no_traceback(proc)
    # a word naming a script is Node.js's, however close to a command
    write(project, {"bulid.js": "console.log('my bulid script')\n"})
    proc = sh(launcher_path, "bulid", cwd=project)
    assert (proc.returncode, proc.stdout) == (0, "my bulid script\n"), describe(proc)
    # no Nodefile here: a typo of a project command is Node.js's (its own error)
    proc = sh(launcher_path, "stauts", cwd=tmp_path)
    assert proc.returncode == 1 and "Cannot find module" in proc.stderr, describe(proc)

    # -C and -f claim the command line even where no Nodefile is
    (project / "hello.txt").unlink()
    proc = sh(launcher_path, "-C", "proj", "build", cwd=tmp_path)
    assert proc.returncode == 0 and (project / "hello.txt").exists(), describe(proc)
    proc = sh(launcher_path, "-f", "proj/Nodefile.toml", "status", cwd=tmp_path)
    assert proc.returncode == 0 and "hello  up to date" in proc.stdout, describe(proc)
    proc = sh(launcher_path, "-C", str(tmp_path / "nonexistent"), "status", cwd=tmp_path)
    assert proc.returncode == 2, describe(proc)
    assert proc.stderr.strip().splitlines() == [f"error: -C {tmp_path / 'nonexistent'}: No such file or directory"]
    proc = sh(launcher_path, "-f", "nope.toml", "status", cwd=tmp_path)
    assert proc.returncode == 2 and "nope.toml: no such file" in proc.stderr, describe(proc)
    no_traceback(proc)


def test_the_same_decisions_without_the_shell_launcher(tmp_path, nodejs):
    """The Python side decides alone (NODEFILE_AS_NODE=1: the launcher's hand-off, or an
    older `node` console script)."""
    path = os.pathsep.join([os.path.dirname(nodejs), "/usr/bin", "/bin"])
    app = write(tmp_path / "app", {"build/index.js": "console.log('server')\n"})
    env = base_env(PATH=path, NODEFILE_AS_NODE="1")
    for args, out in ((["build"], "server\n"), (["-e", "console.log(1)"], "1\n"), ([], "")):
        proc = subprocess.run([sys.executable, "-m", "nodefile", *args], cwd=app, env=env, input="",
                              capture_output=True, text=True, timeout=60)
        assert (proc.returncode, proc.stdout) == (0, out), describe(proc)
