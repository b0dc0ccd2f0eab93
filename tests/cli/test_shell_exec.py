"""Shell recipes: plain command lines run without /bin/sh, everything else through it,
and both behave the same for the user."""
from __future__ import annotations

from conftest import no_traceback, run, write


def test_plain_and_shell_command_lines_both_build(tmp_path):
    write(tmp_path, {
        "Nodefile.toml": """
            [nodes.plain]
            outputs = "out/with space.txt"
            shell = "cp src.txt {outputs}"

            [nodes.piped]
            inputs = "out/with space.txt"
            outputs = "out/upper.txt"
            shell = "tr a-z A-Z < {inputs} > {outputs}"

            [nodes.builtin]
            outputs = "out/echo.txt"
            shell = "echo hello > {outputs}"
        """,
        "src.txt": "abc\n",
    })
    run(tmp_path, "build", check=0)
    assert (tmp_path / "out/with space.txt").read_text() == "abc\n"
    assert (tmp_path / "out/upper.txt").read_text() == "ABC\n"
    assert (tmp_path / "out/echo.txt").read_text() == "hello\n"


def test_a_missing_command_is_a_clear_failure_naming_it(tmp_path):
    write(tmp_path, {"Nodefile.toml": """
        [nodes.a]
        outputs = "a.txt"
        shell = "no-such-command-xyz {outputs}"
    """})
    proc = run(tmp_path, "build", check=1)
    no_traceback(proc)
    assert "no-such-command-xyz" in proc.stderr
    assert not (tmp_path / "a.txt").exists()


def test_a_recipe_path_setting_is_honoured(tmp_path):
    """A recipe that sets PATH finds its commands there, as sh would."""
    write(tmp_path, {
        "Nodefile.toml": f"""
            [nodes.a]
            outputs = "a.txt"
            shell = "mytool {{outputs}}"
            env = {{ PATH = "{tmp_path}/bin:/usr/bin:/bin" }}
        """,
        "bin/mytool": "#!/bin/sh\necho made-by-mytool > \"$1\"\n",
    })
    (tmp_path / "bin/mytool").chmod(0o755)
    run(tmp_path, "build", check=0)
    assert (tmp_path / "a.txt").read_text() == "made-by-mytool\n"
