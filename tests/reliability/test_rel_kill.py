"""kill -9 of a build at random moments (SPEC §5: it loses at most the nodes that
were running). Every output is checked against its recipe's deterministic content:
after each kill, `status` must call no wrong output up to date, and the next build
must leave every output right. Recipes write their outputs piece by piece, in
place, so a kill leaves half-written outputs (and orphaned recipes still writing).
"""
from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from cli_helpers import base_env, describe, run, write

# name -> (steps, input): the output is the input's content, then one line per step
SPEC = {"a": (4, "src.txt"), "b": (7, "src.txt"), "c": (3, "a.txt"), "d": (5, "a.txt"),
        "e": (2, "c.txt"), "f": (6, "b.txt"), "p": (4, "d.txt")}
SHELL = ("cat {inputs} > {outputs}; i=0; while [ $i -lt %d ]; do sleep 0.03; "
         "printf '%s%%s\\n' $i >> {outputs}; i=$((i+1)); done")
PYTHON = """\
import time
import nodefile
job = nodefile.job()
with open(job.inputs[0]) as f:
    text = f.read()
with open(job.outputs[0], "w") as out:
    out.write(text)
    for i in range({steps}):
        out.flush()
        time.sleep(0.03)
        out.write(f"{name}{{i}}\\n")
"""


def project(root: Path) -> None:
    nodes = []
    for name, (steps, inp) in SPEC.items():
        recipe = (f'python = "{name}.py"' if name == "p" else f'shell = "{SHELL % (steps, name)}"')
        nodes.append(f'[nodes.{name}]\ninputs = "{inp}"\noutputs = "{name}.txt"\n{recipe}\n')
    write(root, {"Nodefile.toml": "\n".join(nodes), "src.txt": "s0\n",
                 "p.py": PYTHON.format(steps=SPEC["p"][0], name="p")})


def expected(root: Path, name: str) -> str:
    steps, inp = SPEC[name]
    src = (root / "src.txt").read_text() if inp == "src.txt" else expected(root, inp[0])
    return src + "".join(f"{name}{i}\n" for i in range(steps))


def up_to_date(stdout: str) -> list[str]:
    return [m.group(1) for m in re.finditer(r"^(\S+)\s+up to date\b", stdout, re.M)]


def wrong_up_to_date(root: Path) -> list[str]:
    """Nodes `status` calls up to date whose output is not what their recipe makes."""
    proc = run(root, "status")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, describe(proc)
    wrong = []
    for name in up_to_date(proc.stdout):
        try:
            text = (root / f"{name}.txt").read_text()
        except OSError:
            text = None
        if text != expected(root, name):
            wrong.append(name)
    return wrong


def test_kill_9_at_random_moments_never_leaves_a_wrong_output_up_to_date(tmp_path, trials):
    root = tmp_path
    project(root)
    t = time.monotonic()
    run(root, "build", "-j", "3", check=0)
    span = (time.monotonic() - t) * 1.1  # kill moments over the length of a full build, and a little after
    rng = random.Random(os.getpid())
    n = trials(3, 100)
    wrong_status = wrong_after = killed_mid_build = 0
    t0 = time.monotonic()
    for t in range(1, n + 1):
        # a new source; one time in three of the same size (same-size rewrites)
        text = f"s{t % 10}\n" if t % 3 == 0 else f"s{t}" + "x" * rng.randrange(5) + "\n"
        (root / "src.txt").write_text(text)
        proc = subprocess.Popen([sys.executable, "-m", "nodefile", "build", "-j", "3"], cwd=root,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=base_env())
        time.sleep(rng.uniform(0.0, span))
        if proc.poll() is None:
            killed_mid_build += 1
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
        assert "Traceback" not in err, err
        bad = wrong_up_to_date(root)
        wrong_status += len(bad)
        assert not bad, f"trial {t}: status calls wrong outputs up to date: {bad}"
        after = run(root, "build", "-j", "3")
        assert after.returncode == 0 and "Traceback" not in after.stderr, describe(after)
        bad = [name for name in SPEC if (root / f"{name}.txt").read_text() != expected(root, name)]
        wrong_after += len(bad)
        assert not bad, f"trial {t}: wrong outputs after the next build: {bad}\n{describe(after)}"
    print(f"kill -9: {n} trials ({killed_mid_build} mid-build) in {time.monotonic() - t0:.0f}s; "
          f"wrong outputs up to date: {wrong_status}; wrong after the next build: {wrong_after}")
