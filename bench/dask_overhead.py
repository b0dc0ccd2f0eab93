"""nodefile's own cost per recipe on Dask, against the local executor.

    python bench/dask_overhead.py [--recipes 1000] [--rounds 3]

Generates N independent `touch` recipes, starts a Dask scheduler and two
single-threaded workers on 127.0.0.1 once, then builds the project from a clean
slate with `-j 2` on the local executor and with `--executor dask --dask ADDR`,
interleaved. The per-recipe cost is (dask - local) / N: submitting, the round
trip to a worker, running the process there, the log coming back. The
cluster's own start is outside the timing (a LocalCluster adds 2-5 s once).
Goal (issue 22): <= 5 ms per recipe beyond the local executor.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def generate(root: Path, n: int) -> None:
    shutil.rmtree(root, ignore_errors=True)
    (root / "src").mkdir(parents=True)
    nodes = []
    for i in range(n):
        (root / f"src/s{i}").write_text(str(i))
        nodes.append(f'[nodes.n{i}]\noutputs = "out/n{i}"\ninputs = ["src/s{i}"]\nshell = "touch {{outputs}}"\n')
    (root / "Nodefile.toml").write_text("\n".join(nodes))


def start_cluster(env) -> tuple[str, list]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                               "--port", str(port), "--dashboard-address", ":0"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)]
    for i in range(2):
        procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads",
                                       "1", "--host", "127.0.0.1", "--dashboard-address", ":0"], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
    from distributed import Client
    with Client(address, timeout=60) as c:
        c.wait_for_workers(2, timeout=60)
    return address, procs


def timed_build(root: Path, extra, env) -> float:
    for d in ("out", ".nodefile"):
        shutil.rmtree(root / d, ignore_errors=True)
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "nodefile", "build", "-j", "2", "-q", *extra], cwd=root, env=env,
                          capture_output=True, text=True)
    took = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(proc.stdout + proc.stderr)
    return took


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipes", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--work", default=str(HERE / "work" / "dask"))
    args = ap.parse_args()
    root = Path(args.work)
    generate(root, args.recipes)
    env = dict(os.environ, NODEFILE_PROGRESS="plain")
    address, procs = start_cluster(env)
    times = {"local": [], "dask": []}
    try:
        for r in range(args.rounds):
            for name, extra in ([("local", []), ("dask", ["--executor", "dask", "--dask", address])][::1 if r % 2 == 0
                                                                                                  else -1]):
                times[name].append(timed_build(root, extra, env))
                print(f"  round {r + 1}: {name:5s} {times[name][-1]:.2f} s", flush=True)
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGTERM)
    med = {k: statistics.median(v) for k, v in times.items()}
    per = (med["dask"] - med["local"]) / args.recipes * 1000
    print(f"\n{args.recipes} recipes, -j 2: local {med['local']:.2f} s, dask {med['dask']:.2f} s "
          f"(2 workers on 127.0.0.1)")
    print(f"{'PASS' if per <= 5 else 'FAIL'}  nodefile on Dask costs {per:.2f} ms per recipe beyond local (goal <= 5)")
    out = HERE / "results" / f"dask-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"times": times, "median": med, "per_recipe_ms": per}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
