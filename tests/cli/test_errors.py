"""Acceptance 8 and 18: Nodefile and usage errors -> exit 2, located messages, no traceback."""
from __future__ import annotations

import re

import pytest

from conftest import describe, no_traceback, run, write

BROKEN = """\
[project]
name = "broken"
colour = "red"

[nodes.clean]
outputs = "clean.txt"
inputs = ["raw.txt"]
shell = "cp {inputs} {outputs}"

[nodes.fit]
outputs = "fit.txt"
inputs = ["clen"]
shell = "cp {inputs} {outputs}"

[nodes.a]
outputs = "a.txt"
inputs = ["b"]
shell = "cp {inputs} {outputs}"

[nodes.b]
outputs = "b.txt"
inputs = ["a"]
shell = "cp {inputs} {outputs}"
"""


def line_of(text: str, needle: str, after: str = "") -> int:
    """1-based line number of the first line containing needle (after the line containing `after`)."""
    lines = text.splitlines()
    start = next(i for i, l in enumerate(lines) if after in l) if after else 0
    return next(i for i, l in enumerate(lines) if i >= start and needle in l) + 1


def error_lines(proc) -> list[str]:
    return [l for l in proc.stderr.splitlines() if l.strip()]


@pytest.mark.parametrize("command", ["check", "build"])
def test_check_reports_every_error_with_its_location(tmp_path, command):
    write(tmp_path, {"Nodefile.toml": BROKEN})
    proc = run(tmp_path, command)
    assert proc.returncode == 2, describe(proc)
    no_traceback(proc)
    lines = error_lines(proc)

    def one(pattern: str) -> str:
        found = [l for l in lines if re.search(pattern, l)]
        assert len(found) == 1, f"expected one line matching {pattern!r}\n{describe(proc)}"
        return found[0]

    unknown = one(r"unknown key 'colour'")
    assert f"Nodefile.toml:{line_of(BROKEN, 'colour')}" in unknown, unknown
    misspelt = one(r"'clen'")
    assert "did you mean 'clean'" in misspelt, misspelt
    assert f"Nodefile.toml:{line_of(BROKEN, 'clen')}" in misspelt, misspelt
    missing = one(r"raw\.txt")
    assert "missing source" in missing and "clean" in missing, missing
    assert f"Nodefile.toml:{line_of(BROKEN, 'raw.txt')}" in missing, missing
    cycle = one(r"cycle")
    assert re.search(r"\ba -> b -> a\b|\bb -> a -> b\b", cycle), cycle
    cycle_lines = {line_of(BROKEN, '"b"]', after="[nodes.a]"), line_of(BROKEN, '"a"]', after="[nodes.b]"),
                   line_of(BROKEN, "[nodes.a]"), line_of(BROKEN, "[nodes.b]")}
    assert any(f"Nodefile.toml:{n}" in cycle for n in cycle_lines), cycle
    assert len(lines) == 4, describe(proc)
    assert not (tmp_path / "clean.txt").exists()


def test_check_on_a_valid_nodefile_says_ok(tmp_path):
    write(tmp_path, {"Nodefile.toml": """
        [nodes.a]
        outputs = "a.txt"
        shell = "echo a > {outputs}"
        """})
    proc = run(tmp_path, "check")
    assert proc.returncode == 0, describe(proc)
    assert "ok" in proc.stdout and proc.stderr == "", describe(proc)


SIMPLE = {
    "Nodefile.toml": """
        [params]
        seed = 1

        [nodes.clean]
        outputs = "clean.txt"
        params = ["seed"]
        shell = "echo {params.seed} > {outputs}"
        """,
}


def assert_one_clear_line(proc, *fragments):
    assert proc.returncode == 2, describe(proc)
    no_traceback(proc)
    lines = error_lines(proc)
    assert len(lines) == 1, f"expected one line on stderr\n{describe(proc)}"
    for frag in fragments:
        assert frag in lines[0], f"{frag!r} not in {lines[0]!r}"


def test_unknown_target_suggests_the_close_name(tmp_path):
    write(tmp_path, SIMPLE)
    proc = run(tmp_path, "build", "clen")
    assert_one_clear_line(proc, "clen", "did you mean 'clean'")
    assert not (tmp_path / "clean.txt").exists()
    for cmd in ("explain", "status", "touch"):
        assert_one_clear_line(run(tmp_path, cmd, "clen"), "clen", "did you mean 'clean'")


def test_invalid_toml_gives_the_line(tmp_path):
    write(tmp_path, {"Nodefile.toml": '[params]\nseed = 1\n\n[nodes.clean\noutputs = "x.txt"\n'})
    for cmd in ("build", "check", "status"):
        proc = run(tmp_path, cmd)
        assert_one_clear_line(proc, "Nodefile.toml:4", "TOML")


def test_set_of_an_unknown_param_is_a_usage_error(tmp_path):
    write(tmp_path, SIMPLE)
    proc = run(tmp_path, "build", "--set", "sed=3")
    assert_one_clear_line(proc, "sed", "did you mean 'seed'")
    assert not (tmp_path / "clean.txt").exists()
    ok = run(tmp_path, "build", "--set", "seed=3", check=0)
    assert (tmp_path / "clean.txt").read_text().strip() == "3", describe(ok)


def test_no_nodefile_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = run(tmp_path / "empty", "build")
    assert proc.returncode == 2, describe(proc)
    no_traceback(proc)
    assert "Nodefile.toml" in proc.stderr, describe(proc)
