"""Acceptance: bounded probes (SPEC §5). A node must be rebuilt and an alternative
recipe was never measured: it runs first, with a deadline of 1.5 x the incumbent's
expected duration; past it, its process group is stopped, the attempt is recorded
as "stopped" (censored: slower than the deadline), its partial output is moved to
.nodefile/failed/, and the incumbent runs. Timing comes from the attempts table.
"""
from __future__ import annotations

import os
import re
import sqlite3
import time

from conftest import describe, run, write

SLOW_FIRST = """\
[params]
run = 0

[nodes.model]
outputs = "model.txt"
params = ["run"]
recipes = [
  { name = "slow", shell = "sleep 1.0 && echo slow {params.run} > {outputs}" },
  { name = "fast", shell = "sleep 0.3 && echo fast {params.run} > {outputs}" },
]
"""

FAST_FIRST = """\
[params]
run = 0

[nodes.model]
outputs = "model.txt"
params = ["run"]
recipes = [
  { name = "fast", shell = "sleep 0.3 && echo fast {params.run} > {outputs}" },
  { name = "slow", shell = "echo $$ > slow.pid; echo partial > {outputs}; sleep 5; echo slow > {outputs}" },
]
"""

TOLERANCE = 0.25  # stopping a process group and reaping it, on a loaded machine


def attempts(project) -> list[list[dict]]:
    """Every build's attempts, oldest build first."""
    db = sqlite3.connect(project / ".nodefile/state.db")
    try:
        cur = db.execute("SELECT build_id, recipe, duration, outcome, message FROM attempts ORDER BY id")
        rows = [dict(zip([d[0] for d in cur.description], r)) for r in cur]
    finally:
        db.close()
    builds: dict[int, list[dict]] = {}
    for r in rows:
        builds.setdefault(r["build_id"], []).append(r)
    return [builds[b] for b in sorted(builds)]


def deadline_of(explain_out: str) -> float:
    m = re.search(r"deadline (\d+(?:\.\d+)?)(ms|s) = 1\.5 × ", explain_out)
    assert m, explain_out
    return float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)


def test_an_untried_faster_recipe_is_found_in_one_build_and_kept(tmp_path):
    write(tmp_path, {"Nodefile.toml": SLOW_FIRST})
    run(tmp_path, "build", "--set", "run=1", check=0)
    explained = run(tmp_path, "explain", "model", "--set", "run=2", check=0).stdout
    assert "fast probed first (never measured)" in explained and "slow's expected 1.0s" in explained, explained
    deadline = deadline_of(explained)
    assert 1.45 <= deadline <= 1.7, explained  # 1.5 x a measured ~1.0 s
    proc = run(tmp_path, "build", "--set", "run=2", check=0)
    assert "probe model: fast (never measured)" in proc.stdout, describe(proc)
    for k in range(3, 5):
        run(tmp_path, "build", "--set", f"run={k}", check=0)
    builds = attempts(tmp_path)
    assert [[a["recipe"] for a in b] for b in builds] == [["slow"], ["fast"], ["fast"], ["fast"]]
    assert all(a["outcome"] == "ok" for b in builds for a in b)
    assert builds[1][0]["duration"] <= deadline
    assert (tmp_path / "model.txt").read_text().split() == ["fast", "4"]
    after = run(tmp_path, "explain", "model", "--set", "run=5", check=0).stdout
    assert re.search(r"fast chosen: \d+ms est\. vs slow 1\.0s", after), after


def test_a_slower_probe_is_stopped_at_its_deadline_and_the_incumbent_runs(tmp_path):
    write(tmp_path, {"Nodefile.toml": FAST_FIRST})
    run(tmp_path, "build", "--set", "run=1", check=0)
    deadline = deadline_of(run(tmp_path, "explain", "model", "--set", "run=2", check=0).stdout)
    t0 = time.monotonic()
    proc = run(tmp_path, "build", "--set", "run=2", check=0)
    wall = time.monotonic() - t0
    assert "probe of slow stopped at its" in proc.stdout, describe(proc)
    probe, incumbent = attempts(tmp_path)[1]
    assert (probe["recipe"], probe["outcome"]) == ("slow", "stopped"), probe
    assert "slower than" in probe["message"]
    assert deadline - 0.05 <= probe["duration"] <= deadline + TOLERANCE, (probe, deadline)
    assert (incumbent["recipe"], incumbent["outcome"]) == ("fast", "ok")
    assert wall < 5, describe(proc)  # the 5 s sleep did not run out
    assert (tmp_path / "model.txt").read_text().split() == ["fast", "2"]
    # the partial output went where a failed attempt's go; the probe's process is gone
    moved = [os.path.join(d, f) for d, _, fs in os.walk(tmp_path / ".nodefile/failed") for f in fs]
    assert [open(p).read() for p in moved] == ["partial\n"], moved
    pid = int((tmp_path / "slow.pid").read_text())
    time.sleep(0.2)
    assert not os.path.exists(f"/proc/{pid}") or "Z" in open(f"/proc/{pid}/stat").read().split()[2]
    # censored, not failed: explain shows the bound; no probe again before it is due
    explained = run(tmp_path, "explain", "model", "--set", "run=3", check=0).stdout
    assert re.search(r"slow: ≥\d+ms \(.*a probe was stopped at its \d+ms deadline in build 2\)", explained), explained
    assert "fast chosen" in explained and "probed first" not in explained
    run(tmp_path, "build", "--set", "run=3", check=0)
    assert [a["recipe"] for a in attempts(tmp_path)[2]] == ["fast"]


def test_no_probe_turns_probing_off_for_one_run(tmp_path):
    write(tmp_path, {"Nodefile.toml": SLOW_FIRST.replace("sleep 1.0", "sleep 0.5")})
    run(tmp_path, "build", "--set", "run=1", check=0)
    proc = run(tmp_path, "build", "--no-probe", "--set", "run=2", check=0)
    assert "probe" not in proc.stdout, describe(proc)
    run(tmp_path, "build", "--set", "run=3", check=0)
    assert [[a["recipe"] for a in b] for b in attempts(tmp_path)] == [["slow"], ["slow"], ["fast"]]
