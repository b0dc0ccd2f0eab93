"""The command line's surface (issue 24): help, init, errors of -C/-f, .nodefile/.gitignore,
touch and status agreeing, CI checks, forcing, JSON output, completion, the Python API."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import pytest

from conftest import base_env, describe, no_traceback, run, runs, write

CHAIN = {"Nodefile.toml": """
    [project]
    default = ["c"]

    [params]
    n = 32

    [nodes.a]
    outputs = "a.txt"
    params = ["n"]
    shell = "echo a >> runs.log; echo {params.n} > {outputs}"

    [nodes.b]
    outputs = "b.txt"
    inputs = ["a"]
    shell = "echo b >> runs.log; cat {inputs} > {outputs}"

    [nodes.c]
    outputs = "c.txt"
    inputs = ["b"]
    shell = "echo c >> runs.log; cat {inputs} > {outputs}"

    [nodes.other]
    outputs = "other.txt"
    shell = "echo other >> runs.log; echo o > {outputs}"
    """}


# -- help -----------------------------------------------------------------------------------
def test_help_for_every_command_and_option(tmp_path):
    top = run(tmp_path, "help", check=0)
    assert "build" in top.stdout and "node help build" in top.stdout, describe(top)
    from nodefile.cli import COMMANDS, make_parser
    parser = make_parser()
    for name in COMMANDS:
        proc = run(tmp_path, "help", name, check=0)
        assert proc.stdout.startswith(f"usage: node {name}"), describe(proc)
        assert "\nexamples:\n  " in proc.stdout and "node " in proc.stdout.split("examples:")[1], describe(proc)
        for action in parser.commands[name]._actions:
            if action.option_strings and action.help is None:
                pytest.fail(f"node {name} {'/'.join(action.option_strings)} has no help text")
    build = run(tmp_path, "help", "build", check=0).stdout
    for option in ("-v, --verbose", "-q, --quiet", "--executor", "--check", "--force", "--json"):
        assert option in build, build
    proc = run(tmp_path, "help", "bulid", check=2)
    assert "did you mean build?" in proc.stderr, describe(proc)
    assert run(tmp_path, "build", "--help", check=0).stdout == build


def test_a_mistyped_command_is_one_message(tmp_path):
    proc = run(tmp_path, "stauts", check=2)
    assert proc.stderr.splitlines()[0] == "node: 'stauts' is not a nodefile command (did you mean status?)"
    no_traceback(proc)


def test_directory_and_file_errors_are_one_line(tmp_path):
    for args, message in ((["-C", str(tmp_path / "nope"), "status"], f"-C {tmp_path / 'nope'}: No such file"),
                          (["-f", "nope.toml", "build"], "-f nope.toml: no such file")):
        proc = run(tmp_path, *args, check=2)
        assert len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr, describe(proc)
        no_traceback(proc)


# -- init -----------------------------------------------------------------------------------
def test_init_python_builds_and_never_overwrites(tmp_path):
    proc = run(tmp_path, "init", check=0)
    assert "node build" in proc.stdout, describe(proc)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Nodefile.toml", "tasks"]
    run(tmp_path, "build", check=0)
    lines = (tmp_path / "out" / "squares.csv").read_text().splitlines()
    assert lines[0] == "x,square" and lines[-1] == "9,81" and len(lines) == 11
    run(tmp_path, "build", "--set", "n=3", check=0)
    assert (tmp_path / "out" / "squares.csv").read_text().splitlines()[-1] == "2,4"

    before = (tmp_path / "Nodefile.toml").read_text()
    proc = run(tmp_path, "init", "--r", check=2)
    assert "Nodefile.toml already exists" in proc.stderr and "nothing written" in proc.stderr, describe(proc)
    assert (tmp_path / "Nodefile.toml").read_text() == before
    assert not (tmp_path / "tasks" / "squares.R").exists()


@pytest.mark.needs_r
def test_init_r_builds_with_rscript(tmp_path):
    proc = run(tmp_path, "init", "--r", check=0)
    assert (tmp_path / "tasks" / "squares.R").exists(), describe(proc)
    assert 'r = "tasks/squares.R"' in (tmp_path / "Nodefile.toml").read_text()
    run(tmp_path, "build", check=0, timeout=120)
    lines = (tmp_path / "out" / "squares.csv").read_text().splitlines()
    assert lines[0] == '"x","square"' and lines[-1] == "9,81", lines


def test_init_refuses_when_only_the_script_exists(tmp_path):
    write(tmp_path, {"tasks/squares.py": "mine\n"})
    run(tmp_path, "init", check=2)
    assert not (tmp_path / "Nodefile.toml").exists()
    assert (tmp_path / "tasks" / "squares.py").read_text() == "mine\n"


# -- .nodefile/.gitignore -----------------------------------------------------------------
def test_state_folder_is_ignored_by_git(tmp_path):
    write(tmp_path, CHAIN)
    run(tmp_path, "status", check=0)
    run(tmp_path, "build", check=0)
    assert (tmp_path / ".nodefile" / ".gitignore").read_text() == "*\n"
    if shutil.which("git"):
        subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=tmp_path,
                             capture_output=True, text=True, check=True).stdout
        assert ".nodefile" not in out and "Nodefile.toml" in out, out


# -- touch and status ------------------------------------------------------------------------
def test_touch_says_what_stays_stale_and_status_agrees(tmp_path):
    write(tmp_path, CHAIN)
    run(tmp_path, "build", "--set", "n=20", check=0)
    proc = run(tmp_path, "touch", "c", check=0)
    assert "accepted current outputs of 1 node(s): c" in proc.stdout, describe(proc)
    assert "still stale: c" in proc.stdout and "a: param changed: n (20 -> 32)" in proc.stdout, describe(proc)
    assert "node touch a b c" in proc.stdout, describe(proc)
    # touching with the --set of the build accepts it for that key: status (with it) agrees
    proc = run(tmp_path, "touch", "--set", "n=20", "c", check=0)
    assert "still stale" not in proc.stdout, describe(proc)
    assert "0 of 3 node(s) stale" in run(tmp_path, "status", "--set", "n=20", check=0).stdout
    # the command it suggests does what it says
    run(tmp_path, "touch", "a", "b", "c", check=0)
    status = run(tmp_path, "status", check=0).stdout
    assert "0 of 3 node(s) stale" in status, status
    assert runs(tmp_path) == ["a", "b", "c"]


# -- the Python API ---------------------------------------------------------------------------
def test_python_api_takes_a_string_as_one_target_and_status_covers_the_defaults(tmp_path):
    write(tmp_path, CHAIN)
    code = textwrap.dedent("""
        import nodefile
        print(sorted(nodefile.status()))
        print(nodefile.build("b").built)
        print(sorted(nodefile.status("b")))
        """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout.splitlines() == ["['a', 'b', 'c']", "['a', 'b']", "['a', 'b']"]


# -- CI checks ------------------------------------------------------------------------------
def test_status_check_and_dry_run_check_exit_1_when_something_would_run(tmp_path):
    write(tmp_path, CHAIN)
    for args in (["status", "--check"], ["build", "-n", "--check"], ["build", "--check"]):
        proc = run(tmp_path, *args, check=1)
        assert "c" in proc.stdout, describe(proc)
    assert runs(tmp_path) == [], "a check ran a recipe"
    run(tmp_path, "build", check=0)
    for args in (["status", "--check"], ["build", "-n", "--check"]):
        proc = run(tmp_path, *args, check=0)
    assert "nothing to do" in proc.stdout, describe(proc)
    (tmp_path / "b.txt").write_text("edited\n")
    run(tmp_path, "status", "--check", check=1)
    run(tmp_path, "status", "--check", "a", check=0)  # only a's closure: up to date
    run(tmp_path, "build", "-n", "--check", "a", check=0)
    run(tmp_path, "status", check=0)  # without --check: a table, exit 0


# -- forcing --------------------------------------------------------------------------------
def test_force_reruns_the_named_recipes_only(tmp_path):
    write(tmp_path, CHAIN)
    run(tmp_path, "build", check=0)
    assert runs(tmp_path) == ["a", "b", "c"]
    proc = run(tmp_path, "build", "-n", "--force", "b", check=0)
    assert "would run  b" in proc.stdout and "forced: --force" in proc.stdout, describe(proc)
    assert "would run  a" not in proc.stdout, describe(proc)
    proc = run(tmp_path, "build", "--force", "b", check=0)
    assert runs(tmp_path) == ["a", "b", "c", "b"], describe(proc)  # same bytes: c stops at early cutoff
    run(tmp_path, "build", "--force", "b", check=0)
    assert runs(tmp_path)[4:] == ["b"], "a second --force runs it again (no no-op record)"
    # --force runs the recipe even when the cache holds the key (clean + build restores)
    run(tmp_path, "clean", "b", check=0)
    run(tmp_path, "build", "--force", "b", check=0)
    assert runs(tmp_path)[5:] == ["b"]
    run(tmp_path, "clean", "b", check=0)
    proc = run(tmp_path, "build", "b", check=0)
    assert runs(tmp_path)[6:] == [], describe(proc)  # without --force: restored from the cache


def test_always_nodes_run_at_every_build_and_dependents_stop_at_early_cutoff(tmp_path):
    write(tmp_path, {"Nodefile.toml": """
        [project]
        default = ["report"]

        [nodes.download]
        outputs = "data.txt"
        always = true
        shell = "echo download >> runs.log; cat source.txt > {outputs}"

        [nodes.report]
        outputs = "report.txt"
        inputs = ["download"]
        shell = "echo report >> runs.log; cat {inputs} > {outputs}"

        [nodes.unrelated]
        outputs = "u.txt"
        shell = "echo unrelated >> runs.log; echo u > {outputs}"
        """, "source.txt": "v1\n"})
    run(tmp_path, "build", check=0)
    run(tmp_path, "build", check=0)
    assert runs(tmp_path) == ["download", "report", "download"]  # same bytes: report stops
    (tmp_path / "source.txt").write_text("v2\n")
    run(tmp_path, "build", check=0)
    assert runs(tmp_path)[3:] == ["download", "report"]
    assert (tmp_path / "report.txt").read_text() == "v2\n"
    proc = run(tmp_path, "status", "--check", check=1)
    assert "forced: always = true" in proc.stdout, describe(proc)
    run(tmp_path, "build", "unrelated", check=0)  # a build that does not need it: not run
    assert runs(tmp_path)[5:] == ["unrelated"]
    write(tmp_path, {"Nodefile.toml": (tmp_path / "Nodefile.toml").read_text().replace(
        "always = true", 'always = "yes"')})
    proc = run(tmp_path, "check", check=2)
    assert "always must be true or false" in proc.stderr, describe(proc)


# -- shell completion -----------------------------------------------------------------------
@pytest.fixture
def nodefile_on_path(tmp_path) -> str:
    """PATH with a `nodefile` command running this checkout (the scripts call it for node names)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nodefile").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m nodefile "$@"\n')
    (bin_dir / "nodefile").chmod(0o755)
    return f"{bin_dir}:/usr/bin:/bin"


def _script(project, shell: str) -> str:
    return run(project, "completion", shell, check=0).stdout


def test_bash_completion_of_commands_options_and_node_names(tmp_path, nodefile_on_path):
    project = write(tmp_path / "proj", CHAIN)
    (project / "script.sh").write_text(_script(project, "bash"))
    cases = [("node bu", "build"), ("node st", "status"), ("node build --fo", "--force"),
             ("node status --ch", "--check"), ("node build ''", "a b c other"), ("node log o", "other"),
             ("node -C . explain ''", "a b c other"), ("node help bu", "build"), ("nodefile gr", "graph"),
             ("node completion ''", ""), ("node init --", "--python --r --help")]
    lines = ["source ./script.sh"]
    for words, _ in cases:
        lines.append(f"COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); COMPREPLY=(); "
                     f"_nodefile_complete; echo \"${{COMPREPLY[*]}}\"")
    lines.append("complete -p node nodefile")
    proc = subprocess.run(["bash", "-c", "\n".join(lines)], cwd=project, capture_output=True, text=True,
                          env={**base_env(), "PATH": nodefile_on_path}, timeout=120)
    assert proc.returncode == 0, describe(proc)
    out = proc.stdout.splitlines()
    for (words, want), got in zip(cases, out):
        assert sorted(got.split()) == sorted(want.split()), f"{words!r}: {got!r}"
    assert out[-2:] == [f"complete -o bashdefault -o default -F _nodefile_complete {c}" for c in ("node", "nodefile")]


def test_zsh_completion_script(tmp_path, nodefile_on_path):
    """The zsh function, run by a real zsh with the completion system's builtins recorded."""
    zsh = shutil.which("zsh")
    if zsh is None:
        pytest.skip("zsh is not installed")
    project = write(tmp_path / "proj", CHAIN)
    (project / "_node").write_text(_script(project, "zsh"))
    check = subprocess.run([zsh, "-n", "_node"], cwd=project, capture_output=True, text=True)
    assert check.returncode == 0, describe(check)
    body = """
        compdef() { print -r -- "compdef $*" }
        source ./_node
        compadd() { print -r -- "compadd $*" }
        _describe() { print -r -- "describe ${(j:|:)${(P)4}}" }
        _files() { print files }
        words=(node build --fo); CURRENT=3; PREFIX=--fo; _nodefile
        words=(node build ''); CURRENT=3; PREFIX=''; _nodefile
        words=(node ''); CURRENT=2; PREFIX=''; _nodefile
        """
    proc = subprocess.run([zsh, "-f", "-c", textwrap.dedent(body)], cwd=project, capture_output=True, text=True,
                          env={**base_env(), "PATH": nodefile_on_path}, timeout=120)
    assert proc.returncode == 0, describe(proc)
    out = proc.stdout.splitlines()
    assert out[0] == "compdef _nodefile node nodefile", out
    assert out[1].startswith("compadd -- ") and "--force" in out[1].split() and "--check" in out[1].split(), out
    assert out[2] == "compadd -- a b c other" and out[3] == "files", out
    described = dict(item.split(":", 1) for item in out[4][len("describe "):].split("|"))
    assert described["build"].startswith("build targets") and "init" in described, described
    assert described["status"] == "a table\\: each node, up to date / stale / missing, and why", described
