"""Shared fixtures for the unit tests of nodefile's pure core."""
from __future__ import annotations

import textwrap

import pytest


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A throw-away project folder; cwd is the project root, so messages say `Nodefile.toml`.

    `project.write(toml, files=[...])` writes the Nodefile (dedented) and empty files;
    `project.load(overrides=None)` runs load_project on it.
    """
    from nodefile.config.load import load_project

    monkeypatch.chdir(tmp_path)

    class P:
        root = tmp_path

        def write(self, toml: str, files=()):
            (tmp_path / "Nodefile.toml").write_text(textwrap.dedent(toml).lstrip("\n"))
            for f in files:
                p = tmp_path / f
                if f.endswith("/"):
                    p.mkdir(parents=True, exist_ok=True)
                else:
                    p.parent.mkdir(parents=True, exist_ok=True)
                    p.write_text(f"content of {f}\n")
            return self

        def load(self, overrides=None, check_sources=True):
            return load_project(str(tmp_path), overrides, check_sources)

        def problems(self, overrides=None):
            from nodefile.errors import ConfigError
            with pytest.raises(ConfigError) as ei:  # every problem, as `node check` reports them
                load_project(str(tmp_path), overrides, True, strict=True)
            return ei.value.problems

        def line_of(self, needle: str, nth: int = 1) -> int:
            """1-based line of the nth line of the Nodefile containing `needle`."""
            seen = 0
            for no, line in enumerate((tmp_path / "Nodefile.toml").read_text().splitlines(), 1):
                if needle in line:
                    seen += 1
                    if seen == nth:
                        return no
            raise AssertionError(f"{needle!r} not in the Nodefile")

    return P()

