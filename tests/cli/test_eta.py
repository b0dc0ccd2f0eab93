"""Acceptance: honest estimates (SPEC §5). The progress ETA comes from the remaining
critical path and the remaining work over the slots, with learned durations, and
counts the work not ready yet; a duration never measured is shown as unknown
(`status`, the progress line), never as a made-up number.

Progress is read as a user reading a CI log would: NODEFILE_PROGRESS=plain prints a
progress line on stderr every NODEFILE_PROGRESS_EVERY seconds; the test stamps each
line as it arrives and compares its ETA with the time really left until the last
recipe ended (from the attempts table: start + duration, on the same wall clock).
"""
from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import threading
import time

from conftest import base_env, describe, run, write


def nodefile_30() -> str:
    """30 nodes: a chain of 6 x 0.7 s (the critical path), 12 nodes of 0.3-0.5 s, and 12
    more that each wait for one of those (not ready at the start). Few, longer steps on
    the critical path: the build's own overhead between two steps (tens of ms on a
    loaded machine), which the ETA does not model, stays a small part of each."""
    out = ["[params]", "run = 0", ""]

    def node(name, secs, dep=None):
        out.extend([f"[nodes.{name}]", f'outputs = "out/{name}"', 'params = ["run"]']
                   + ([f'inputs = ["{dep}"]'] if dep else [])
                   + [f'shell = "sleep {secs} && echo {{params.run}} > {{outputs}}"', ""])
    for i in range(6):
        node(f"chain{i}", 0.7, f"chain{i - 1}" if i else None)
    for i in range(12):
        node(f"a{i}", (0.3, 0.4, 0.5)[i % 3])
        node(f"b{i}", (0.5, 0.3, 0.4)[i % 3], f"a{i}")
    return "\n".join(out)


def progress_lines(project, *args) -> tuple[list[tuple[float, str]], subprocess.CompletedProcess]:
    """Run a build; every stderr line with the wall-clock time it arrived."""
    env = base_env(NODEFILE_PROGRESS_EVERY="0.4")
    proc = subprocess.Popen([sys.executable, "-m", "nodefile", *args], cwd=str(project), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
    lines: list[tuple[float, str]] = []
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read()))
    reader.start()
    for line in proc.stderr:
        lines.append((time.time(), line.rstrip("\n")))
    proc.wait(timeout=60)
    reader.join()
    done = subprocess.CompletedProcess(args, proc.returncode, "".join(out), "\n".join(l for _, l in lines))
    return lines, done


def last_recipe_end(project) -> float:
    db = sqlite3.connect(project / ".nodefile/state.db")
    try:
        bid = db.execute("SELECT max(build_id) FROM attempts").fetchone()[0]
        (end_ns,) = db.execute("SELECT max(start_ns + duration * 1e9) FROM attempts WHERE build_id = ?",
                               (bid,)).fetchone()
    finally:
        db.close()
    return end_ns / 1e9


def seconds(text: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s)", text)
    assert m, text
    return float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)


def test_the_eta_tracks_the_time_really_left(tmp_path):
    write(tmp_path, {"Nodefile.toml": nodefile_30()})
    first, proc = progress_lines(tmp_path, "build", "-j", "4", "--set", "run=1")
    assert proc.returncode == 0, describe(proc)
    # nothing measured yet: unknown, never a number
    etas = [m.group(1) for _, ln in first if (m := re.search(r"ETA (\S+)$", ln))]
    assert etas and set(etas) == {"?"}, first
    assert all("/?" in ln for _, ln in first if "running:" in ln), first
    checked = 0
    for k in (2, 3):  # learned now; two builds, every node stale
        lines, proc = progress_lines(tmp_path, "build", "-j", "4", "--set", f"run={k}")
        assert proc.returncode == 0, describe(proc)
        end = last_recipe_end(tmp_path)
        for at, ln in lines:
            m = re.match(r"\[(\d+)/(\d+)\] running: .*ETA (\S+)$", ln)
            if not m:
                continue
            done, total, eta = int(m.group(1)), int(m.group(2)), seconds(m.group(3))
            real = end - at
            if done < 0.2 * total or real < 0.4:
                continue  # the first 20 %; and the last instants, where a tick's jitter is all there is
            assert abs(eta - real) <= 0.25 * real, (ln, f"real {real:.2f}s", lines)
            checked += 1
    assert checked >= 4, "too few progress lines to judge"


def test_status_shows_a_duration_never_measured_as_unknown(tmp_path):
    write(tmp_path, {"Nodefile.toml": """
        [params]
        run = 0

        [nodes.a]
        outputs = "a.txt"
        params = ["run"]
        shell = "sleep 0.2 && echo {params.run} > {outputs}"

        [nodes.b]
        outputs = "b.txt"
        params = ["run"]
        shell = "echo {params.run} > {outputs}"
        """})
    proc = run(tmp_path, "status", check=0)
    rows = {ln.split()[0]: ln for ln in proc.stdout.splitlines()[1:] if ln.startswith(("a ", "b "))}
    assert "unknown" in rows["a"] and "unknown" in rows["b"], proc.stdout
    assert "30.0s" not in proc.stdout
    run(tmp_path, "build", "a", check=0)
    proc = run(tmp_path, "status", "--set", "run=1", check=0)
    rows = {ln.split()[0]: ln for ln in proc.stdout.splitlines()[1:] if ln.startswith(("a ", "b "))}
    assert re.search(r"rebuild \(shell\)\s+2\d\dms", rows["a"]), proc.stdout  # measured
    assert "unknown" in rows["b"], proc.stdout  # still never run: not the project median
