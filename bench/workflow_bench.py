"""Part 1: the same workflow for every tool, timed side by side.

For one (shape, size): generate the workflow for every tool, then

1. full build  (`-j 2`, outputs and tool state wiped first), `repeat` rounds;
2. no-op       (after a warm-up no-op, which is recorded as `noop_first_s`), `repeat` rounds;
3. rebuild     after one source file's bytes change, `repeat` rounds.

Within a round every tool runs once, and the order of the tools rotates from
round to round (interleaving), so slow drifts of the machine hit every tool alike.
Every run is checked: the set of outputs after a full build, no output touched
by a no-op, and exactly the expected nodes rebuilt (the downstream cone of the
changed source; only its direct readers for tools with early cutoff, since the
recipes write byte-identical empty files).
"""
from __future__ import annotations

import os
import time

from measure import RunFailed, changed, describe_set, median, snapshot, timed
from tools import clean
from workflows import make_workflow, generate

# nodefile re-checks a file whose mtime is within its filesystem's racy window (20 ms on
# ext4, 2 s on coarse filesystems) of when its hash or stat was recorded (racy-clean
# rule), so a no-op right after a build is not a steady-state no-op; waiting 2.2 s
# covers every filesystem.
RACY_WAIT = 2.2
PHASES = ("full", "noop", "rebuild")


def rotate(xs: list, r: int) -> list:
    if not xs:
        return xs
    k = r % len(xs)
    return xs[k:] + xs[:k]


def run_case(shape: str, n: int, tools: dict, workdir: str, repeat: int, full_max: int, phases,
             timeout: float, log, touch_setup_above: int | None = None) -> list[dict]:
    wf = make_workflow(shape, n)
    case = f"{shape}_{wf.n}"
    rows: dict = {}
    active = []
    for name, tool in tools.items():
        row = {"case": case, "shape": shape, "n_requested": n, "n": wf.n, "tool": name,
               "command": " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(tool.argv)),
               "full_s": [], "full_cpu_s": [], "noop_first_s": None, "noop_s": [], "noop_cpu_s": [],
               "rebuild_s": [], "rebuild_cpu_s": [], "rebuilt_nodes": None, "loadavg": [],
               "error": None, "skipped": {}}
        reason = tool.too_big(wf.n)
        if reason:
            row["skipped"] = {p: reason for p in PHASES}
        else:
            active.append(name)
        rows[name] = row
    log(f"== {case}: generating for {', '.join(active) or 'no tool'}")
    dirs = generate(wf, os.path.join(workdir, case), active,
                    {name: tools[name].writes for name in active if tools[name].writes})
    expected = {t.name for t in wf.tasks}

    def fail(name, msg):
        rows[name]["error"] = msg.strip()
        log(f"   FAIL {name} ({case}): {msg.strip().splitlines()[0]}")
        if name in active:
            active.remove(name)

    def run(name):
        tool = tools[name]
        rows[name]["loadavg"].append(round(os.getloadavg()[0], 2))
        env = dict(os.environ, **tool.env) if tool.env else None
        return timed(tool.argv, cwd=dirs[name], env=env, timeout=timeout)

    # 1. full builds ------------------------------------------------------------------
    full_reps = repeat if wf.n <= full_max else 1
    last_build: dict = {}
    for name in list(active):
        tool = tools[name]
        if tool.touch_setup and touch_setup_above is not None and wf.n > touch_setup_above:
            # a full build this big takes too long: write the outputs, then have the tool
            # accept them (`nodefile touch`); the no-op and rebuild phases are unchanged
            clean(tool, dirs[name])
            for t in wf.tasks:  # topological order: every output is newer than its inputs
                open(os.path.join(dirs[name], t.output), "w").close()
            try:
                wall, _ = timed(tool.touch_setup, cwd=dirs[name], timeout=timeout,
                                env=dict(os.environ, **tool.env) if tool.env else None)
            except RunFailed as e:
                fail(name, f"setup ({' '.join(tool.touch_setup[-1:])}): {e}")
                continue
            last_build[name] = time.monotonic()
            rows[name]["setup_s"] = wall
            rows[name]["skipped"]["full"] = (f"not run above {touch_setup_above} nodes (set up with "
                                             f"`{os.path.basename(tool.touch_setup[0])} touch` in {wall:.0f} s)")
            log(f"   setup   {name:10s} {wall:9.3f} s (touch)")
    for r in range(full_reps):
        for name in rotate(list(active), r):
            if "setup_s" in rows[name]:
                continue
            clean(tools[name], dirs[name])
            try:
                wall, cpu = run(name)
            except RunFailed as e:
                fail(name, f"full build: {e}")
                continue
            last_build[name] = time.monotonic()
            got = set(snapshot(dirs[name]))
            if got != expected:
                fail(name, f"full build produced the wrong outputs: {describe_set(got, expected)}")
                continue
            rows[name]["full_s"].append(wall)
            rows[name]["full_cpu_s"].append(cpu)
            log(f"   full    {name:10s} {wall:9.3f} s")
    if "full" not in phases:
        for name in active:
            rows[name]["skipped"]["full"] = "phase not requested (full build run once, as setup)"
    if full_reps == 1 and repeat > 1:
        for name in active:
            if "setup_s" not in rows[name]:
                rows[name]["full_note"] = f"1 run (sizes above {full_max} nodes get one full build)"

    # 2. no-op ------------------------------------------------------------------------------
    def noop(name, what):
        """(wall, cpu) of a build that must change nothing; None (and the tool failed) if it did."""
        before = snapshot(dirs[name])
        try:
            wall, cpu = run(name)
        except RunFailed as e:
            fail(name, f"{what}: {e}")
            return None
        touched = changed(before, snapshot(dirs[name]))
        if touched:
            fail(name, f"{what} rebuilt {len(touched)} outputs (e.g. {sorted(touched)[:3]})")
            return None
        return wall, cpu

    if "noop" in phases or "rebuild" in phases:
        wait = RACY_WAIT - (time.monotonic() - max(last_build.values(), default=0.0))
        if wait > 0:
            time.sleep(wait)
        for name in list(active):
            got = noop(name, "first no-op")
            if got is not None:
                rows[name]["noop_first_s"] = got[0]
    if "noop" in phases:
        for r in range(repeat):
            for name in rotate(list(active), r):
                got = noop(name, "no-op")
                if got is None:
                    continue
                wall, cpu = got
                rows[name]["noop_s"].append(wall)
                rows[name]["noop_cpu_s"].append(cpu)
                log(f"   no-op   {name:10s} {wall * 1000:9.1f} ms")
    else:
        for name in active:
            rows[name]["skipped"]["noop"] = "phase not requested"

    # 3. rebuild after one source changes ------------------------------------------------------
    target = wf.change_target()
    if "rebuild" not in phases:
        for name in active:
            rows[name]["skipped"]["rebuild"] = "phase not requested"
    elif target is None:
        for name in active:
            rows[name]["skipped"]["rebuild"] = "chain: its only source feeds every node (= the full build)"
    else:
        src, direct, cone = target
        for r in range(repeat):
            for name in rotate(list(active), r):
                d = dirs[name]
                before = snapshot(d)
                with open(os.path.join(d, src), "ab") as f:
                    f.write(b"x")  # new bytes and a new mtime: every tool must see it
                try:
                    wall, cpu = run(name)
                except RunFailed as e:
                    fail(name, f"rebuild: {e}")
                    continue
                got = changed(before, snapshot(d))
                want = set(direct if tools[name].early_cutoff else cone)
                if got != want:
                    fail(name, f"rebuild after editing {src} changed the wrong outputs: {describe_set(got, want)}")
                    continue
                rows[name]["rebuild_s"].append(wall)
                rows[name]["rebuild_cpu_s"].append(cpu)
                rows[name]["rebuilt_nodes"] = len(got)
                log(f"   rebuild {name:10s} {wall * 1000:9.1f} ms ({len(got)} node(s))")

    for row in rows.values():
        for m in ("full", "noop", "rebuild"):
            row[f"{m}_median_s"] = median(row[f"{m}_s"])
            row[f"{m}_cpu_median_s"] = median(row[f"{m}_cpu_s"])
    return list(rows.values())
