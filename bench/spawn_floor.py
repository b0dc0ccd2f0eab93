"""The floor of nodefile's full build of trivial recipes: its spawn helper alone.

    python bench/spawn_floor.py [--n 1000] [--rounds 5] [--work DIR]

Runs N `touch` recipes at -j 2 through nodefile's spawn helper
(nodefile/executors/spawner.py, as a build runs it) fed by a driver that
does nothing else: two recipes running, each with the next one handed to the
helper as its successor (what the scheduler does when the slots are full).
Nothing is decided, hashed or recorded. Beside it, in the same rounds, the
same N recipes under `make -r -j2 -s`. What a real `nodefile build` adds on
top of this floor is its start-up (interpreter, imports, parsing), deciding
and recording each node, and its ending (docs/benchmarks.md).
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SPAWNER = os.path.join(os.path.dirname(HERE), "nodefile", "executors", "spawner.py")
sys.path.insert(0, os.path.dirname(SPAWNER))
from spawner import frame, unframe  # noqa: E402  (the helper's own framing, without importing nodefile)


def _cpu_of(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def helper_round(work: str, n: int) -> tuple[float, float]:
    """Wall seconds for n touches through the helper at -j 2, and the helper's CPU seconds."""
    out = os.path.join(work, "out")
    shutil.rmtree(out, ignore_errors=True)
    os.mkdir(out)
    touch = shutil.which("touch") or "/usr/bin/touch"
    env = dict(os.environ, NODEFILE_JOB=os.path.join(work, "job.json"), NODEFILE_NODE="n", NODEFILE_RUN="floor")
    req_r, req_w = os.pipe()
    rep_r, rep_w = os.pipe()
    pid = os.posix_spawn(sys.executable, [sys.executable, "-I", "-S", SPAWNER, "3", "4"], os.environ,
                         file_actions=[(os.POSIX_SPAWN_DUP2, req_r, 3), (os.POSIX_SPAWN_DUP2, rep_w, 4)])
    os.close(req_r)
    os.close(rep_w)
    buf = b""

    def receive():
        nonlocal buf
        msgs, buf = unframe(buf + os.read(rep_r, 1 << 16))
        return msgs

    def request(h):
        return (touch, ["touch", f"out/n{h}"], env, work, os.path.join(work, "logs", f"n{h}.log"))

    try:
        while not any(m[0] == "ready" for m in receive()):
            pass
        cpu0, t0 = _cpu_of(pid), time.perf_counter()
        following: dict[int, int] = {}  # handle -> its successor
        nxt = 0
        for _ in range(2):
            first = nxt
            os.write(req_w, frame(("run", first) + request(first)))
            following[first] = nxt = first + 1
            os.write(req_w, frame(("after", first, nxt) + request(nxt)))
            nxt += 1
        done = 0
        while done < n:
            for m in receive():
                if m[0] != "done":
                    continue
                if m[2] != 0:
                    raise RuntimeError(f"touch failed: {m}")
                done += 1
                started = following.pop(m[1], None)
                if started is not None and nxt < n:
                    os.write(req_w, frame(("after", started, nxt) + request(nxt)))
                    following[started] = nxt
                    nxt += 1
        wall = time.perf_counter() - t0
        cpu = _cpu_of(pid) - cpu0
    finally:
        os.close(req_w)
        os.waitpid(pid, 0)
        os.close(rep_r)
    if len(os.listdir(out)) != n:
        raise RuntimeError("the helper did not write every output")
    return wall, cpu


def make_round(work: str, n: int) -> float:
    out = os.path.join(work, "out")
    shutil.rmtree(out, ignore_errors=True)
    os.mkdir(out)
    t0 = time.perf_counter()
    subprocess.run(["make", "-r", "-j2", "-s", "-f", "Makefile.floor"], cwd=work, check=True)
    wall = time.perf_counter() - t0
    if len(os.listdir(out)) != n:
        raise RuntimeError("make did not write every output")
    return wall


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--work", default=None, help="a folder for the outputs (default: a temporary one)")
    a = p.parse_args()
    work = a.work or tempfile.mkdtemp(prefix="nodefile-floor-")
    os.makedirs(work, exist_ok=True)
    with open(os.path.join(work, "Makefile.floor"), "w") as f:
        f.write("all: " + " ".join(f"out/n{i}" for i in range(a.n)) + "\n")
        f.write("out/n%:\n\ttouch $@\n")
    os.chdir(work)  # as a build does: the helper starts recipes in its own folder, no chdir per recipe
    helper, cpu, make = [], [], []
    for _ in range(a.rounds):
        w, c = helper_round(work, a.n)
        helper.append(w)
        cpu.append(c)
        make.append(make_round(work, a.n))
    h, m = statistics.median(helper), statistics.median(make)
    print(f"{a.n} touch recipes at -j 2, {a.rounds} rounds (medians)")
    print(f"  spawn helper alone  {h:.3f} s  (helper CPU {statistics.median(cpu):.3f} s)")
    print(f"  make -r -j2         {m:.3f} s")
    print(f"  ratio               {h / m:.2f}x make")
    if not a.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
