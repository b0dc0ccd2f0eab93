"""Ctrl-C (SIGINT) and SIGTERM at random moments: exit 130, no traceback, no recipe
process left running (checked by process group). A recipe a signal killed is
reported by the signal's name.

The moment: a sitecustomize.py put first on the child's PYTHONPATH arms a timer as
the interpreter starts; when it fires, once nodefile's own modules have begun to
import (a signal earlier than that meets CPython's start-up, not nodefile: see
docs/decisions.md), the process signals itself, as `kill -INT PID` would.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from cli_helpers import base_env, describe, run, write

SITECUSTOMIZE = textwrap.dedent("""\
    import atexit, os, signal, sys
    _spec = os.environ.pop("NODEFILE_TEST_SIGNAL_AT", None)  # not for the recipes it starts
    if _spec:
        _name, _delay = _spec.split(":")
        atexit.register(signal.setitimer, signal.ITIMER_REAL, 0)  # done first: no alarm at shutdown

        def _fire(*_):
            if "nodefile.errors" not in sys.modules:  # nodefile's code has not begun yet
                signal.setitimer(signal.ITIMER_REAL, 0.0005)
                return
            os.kill(os.getpid(), getattr(signal, _name))

        signal.signal(signal.SIGALRM, _fire)
        signal.setitimer(signal.ITIMER_REAL, float(_delay))
""")

RECIPE = ("cut -d' ' -f5 /proc/$$/stat >> pgids.txt; (sleep 30) & : > {outputs}.part; "
          "i=0; while [ $i -lt {steps} ]; do printf '{name}%s\\n' $i >> {outputs}.part; sleep 0.05; i=$((i+1)); done; "
          "cat {inputs} {outputs}.part > {outputs}; rm {outputs}.part")


SPEC = {"a": (4, "src.txt"), "b": (6, "src.txt"), "c": (3, "src.txt"), "d": (5, "a.txt"), "e": (2, "d.txt")}


def project(root: Path) -> None:
    nodes = []
    for name, (steps, inputs) in SPEC.items():
        nodes.append(f'[nodes.{name}]\ninputs = "{inputs}"\noutputs = "{name}.txt"\n'
                     f'shell = "{RECIPE.format(steps=steps, name=name, inputs="{inputs}", outputs="{outputs}")}"\n')
    write(root, {"Nodefile.toml": "\n".join(nodes), "src.txt": "s0\n"})
    (root / "site").mkdir(exist_ok=True)
    (root / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE)


def group_alive(pgid: int) -> list[int]:
    """Live (not zombie) processes in process group pgid."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(d))
    return out


def recipe_groups(root: Path) -> list[int]:
    p = root / "pgids.txt"
    return [int(x) for x in p.read_text().split()] if p.exists() else []


def interrupted_run(root: Path, args, sig: str, delay: float):
    env = base_env(NODEFILE_TEST_SIGNAL_AT=f"{sig}:{delay:.4f}")
    env["PYTHONPATH"] = os.pathsep.join([str(root / "site")] + [p for p in [env.get("PYTHONPATH")] if p])
    return subprocess.run([sys.executable, "-m", "nodefile", *args], cwd=root, capture_output=True, text=True,
                          timeout=60, env=env)


def check_interrupted(root: Path, proc, sig: str) -> None:
    assert "Traceback" not in proc.stderr + proc.stdout and "KeyboardInterrupt" not in proc.stderr, describe(proc)
    assert "Exception ignored" not in proc.stderr, describe(proc)  # a Ctrl-C swallowed in a callback
    # 130; 0 when the command was done first; death by the signal itself only while the
    # interpreter shuts down (it resets the handlers), after the command's last line
    assert proc.returncode in (0, 130, -getattr(signal, sig)), describe(proc)
    end = time.monotonic() + 10
    for pgid in recipe_groups(root):
        while group_alive(pgid):
            assert time.monotonic() < end, f"recipe process group {pgid} still running: {group_alive(pgid)}"
            time.sleep(0.05)


def expected(root: Path, name: str) -> str:
    """The deterministic content of a node's output, from src.txt."""
    steps, inp = SPEC[name]
    src = (root / "src.txt").read_text() if inp == "src.txt" else expected(root, inp[0])
    return src + "".join(f"{name}{i}\n" for i in range(steps))


def test_interrupt_at_random_moments_exits_130_without_traceback_or_recipe_left(tmp_path, trials):
    root = tmp_path
    project(root)
    rng = random.Random(os.getpid())
    n = trials(6, 60)
    seen = {0: 0, 130: 0}
    for t in range(n):
        (root / "src.txt").write_text(f"s{t}\n")
        sig = rng.choice(["SIGINT", "SIGTERM"])
        # half early (imports, parsing, opening the state), half anywhere in the build
        delay = rng.uniform(0, 0.1) if t % 2 == 0 else rng.uniform(0, 1.5)
        args = ["build", "-j", "3"] if t % 4 != 3 else ["status"]
        proc = interrupted_run(root, args, sig, delay)
        check_interrupted(root, proc, sig)
        seen[proc.returncode] = seen.get(proc.returncode, 0) + 1
        if proc.returncode == 130 and args[0] == "build":
            assert "interrupted" in proc.stderr + proc.stdout, describe(proc)
    # whatever was interrupted, a build then leaves every output right
    run(root, "build", "-j", "3", check=0)
    for name in "abcde":
        assert (root / f"{name}.txt").read_text() == expected(root, name)
    print(f"{n} interrupted runs: exit statuses {seen}")


def test_ctrl_c_in_the_first_moments_never_prints_a_traceback(tmp_path, trials):
    """Old code: a Ctrl-C while nodefile imported its modules or parsed the command
    line (before main's try) printed a traceback."""
    write(tmp_path, {"Nodefile.toml": '[nodes.a]\noutputs = "a.txt"\nshell = "echo a > {outputs}"\n'})
    project_site = tmp_path / "site"
    project_site.mkdir()
    (project_site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    rng = random.Random(os.getpid() + 1)
    for t in range(trials(8, 80)):
        sig = "SIGINT" if t % 2 == 0 else "SIGTERM"
        delay = rng.uniform(0, 0.03)
        args = rng.choice([["build"], ["status"], ["explain", "a"], ["graph"], ["build", "a"]])
        proc = interrupted_run(tmp_path, args, sig, delay)
        check_interrupted(tmp_path, proc, sig)


def test_a_recipe_killed_by_a_signal_is_named(tmp_path):
    write(tmp_path, {
        "Nodefile.toml": """
            [nodes.k]
            outputs = "k.txt"
            shell = "kill -9 $$"

            [nodes.t]
            outputs = "t.txt"
            python = "t.py"
        """,
        "t.py": "import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\n",
    })
    proc = run(tmp_path, "build", "-k", check=1)
    assert "k: shell recipe killed by SIGKILL" in proc.stderr, describe(proc)
    assert "killed by SIGTERM" in proc.stderr, describe(proc)
    assert "status -9" not in proc.stderr and "status -15" not in proc.stderr, describe(proc)
