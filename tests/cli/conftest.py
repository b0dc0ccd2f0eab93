"""End-to-end helpers: tiny projects in tmp_path, driven through the real CLI.

Every test writes a Nodefile.toml and a few scripts into a fresh folder and runs
`python -m nodefile ...` there as a subprocess, exactly as a user would.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEFAULT_TIMEOUT = 60


def base_env(**extra) -> dict:
    """The environment every CLI run gets: plain progress lines, no job manifest
    inherited from an outer build, the repository importable."""
    env = dict(os.environ)
    env["NODEFILE_PROGRESS"] = "plain"
    for k in ("NODEFILE_JOB", "NODEFILE_JOB_R", "NODEFILE_SCRIPT", "NODEFILE_NODE",
              "NODEFILE_PASSTHROUGH_SKIP"):
        env.pop(k, None)
    env.update({k: str(v) for k, v in extra.items()})
    return env


@pytest.fixture
def env() -> dict:
    return base_env()


def run(project, *args, env=None, timeout=DEFAULT_TIMEOUT, check=None, **kw) -> subprocess.CompletedProcess:
    """Run `python -m nodefile ARGS` in `project`; return the CompletedProcess.

    check: an expected exit status; on mismatch the assertion shows both streams.
    """
    proc = subprocess.run([sys.executable, "-m", "nodefile", *map(str, args)], cwd=str(project),
                          capture_output=True, text=True, timeout=timeout,
                          env=env if env is not None else base_env(), **kw)
    if check is not None:
        assert proc.returncode == check, describe(proc)
    return proc


def describe(proc) -> str:
    """A readable dump of a finished process, for assertion messages."""
    args = proc.args if isinstance(proc.args, str) else " ".join(map(str, proc.args))
    return (f"`{args}` exited {proc.returncode}\n--- stdout ---\n{proc.stdout}"
            f"\n--- stderr ---\n{proc.stderr}")


def write(root, files: dict) -> Path:
    """Write {relative path: text} under root (dedented); return root."""
    root = Path(root)
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text).lstrip("\n"))
    return root


def runs(project, log="runs.log") -> list[str]:
    """The lines of the counter file: one per recipe run."""
    p = Path(project) / log
    return p.read_text().split() if p.exists() else []


def counter_py(name: str, body: str = "", log: str = "runs.log") -> str:
    """A Python recipe that appends its node name to the counter file and then runs body."""
    return textwrap.dedent(f"""\
        import nodefile
        job = nodefile.job()
        with open({log!r}, "a") as f:
            f.write({name!r} + "\\n")
        """) + textwrap.dedent(body)


def wait_for(cond, timeout: float, interval: float = 0.02, what: str = "condition", fail: bool = True):
    """Poll cond() until it returns a truthy value; after `timeout` seconds fail the
    test (or, with fail=False, return the last falsy value)."""
    end = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > end:
            if not fail:
                return v
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def no_traceback(proc) -> None:
    assert "Traceback" not in proc.stderr + proc.stdout, describe(proc)


def _require_r():
    if shutil.which("Rscript") is None:
        msg = "Rscript is not on PATH"
        if os.environ.get("NODEFILE_REQUIRE_R") == "1":
            pytest.fail(f"{msg}, and NODEFILE_REQUIRE_R=1 makes the R tests mandatory")
        pytest.skip(msg)
    return shutil.which("Rscript")


@pytest.fixture
def needs_r():
    """Skip an R test when Rscript is missing (fail instead with NODEFILE_REQUIRE_R=1)."""
    return _require_r()


def pytest_configure(config):
    config.addinivalue_line("markers", "needs_r: the test runs R (Rscript) recipes")


def pytest_runtest_setup(item):
    if item.get_closest_marker("needs_r") is not None:
        _require_r()
