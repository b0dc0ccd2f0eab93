"""The reliability suite's own plumbing: the CLI helpers load, and a tiny project builds."""
from cli_helpers import run, write


def test_cli_helpers_build_a_tiny_project(tmp_path, trials):
    assert trials(1, 5) in (1, 5)
    write(tmp_path, {"Nodefile.toml": """
        [nodes.a]
        outputs = "a.txt"
        shell = "echo hi > {outputs}"
    """})
    run(tmp_path, "build", check=0)
    assert (tmp_path / "a.txt").read_text() == "hi\n"
