"""Part 2 (hashing) and part 3 (start-up)."""
from __future__ import annotations

import os
import shutil
import subprocess
import time

from measure import RunFailed, changed, median, snapshot, timed
from workflows import generate, make_workflow

GiB = 1 << 30
NODEFILE_ONE = """[project]
name = "hash"
[nodes.h]
outputs = "out/h"
inputs = ["data/big.bin"]
shell = "touch {outputs}"
"""


def _write_big(path: str, size: int) -> None:
    block = os.urandom(8 << 20)
    with open(path, "wb") as f:
        left = size
        while left > 0:
            f.write(block[:min(left, len(block))])
            left -= len(block)


# Timed inside the interpreter of the nodefile measured (the benchmark's own install),
# so that the harness needs no importable nodefile: prints seconds and the digest.
_INPROC = ("import sys, time\n"
           "from nodefile.hashing import hash_file_content\n"
           "t0 = time.perf_counter(); d = hash_file_content(sys.argv[1], int(sys.argv[2]))\n"
           "print(time.perf_counter() - t0, d)\n")


def hashing(nf_cmd: list, python: str, workdir: str, size: int, repeat: int, timeout: float, log) -> dict:
    """A `size`-byte file hashed cold in nodefile's stat cache (fresh .nodefile, page cache
    warm), three ways, against `cat FILE > /dev/null` in the same rounds:

    * nodefile build of a one-node project whose input is the big file, minus the same
      build with a tiny input (the difference approximates hashing);
    * nodefile.hashing.hash_file_content, timed in a process of `python` (the
      interpreter nodefile is installed in);
    * cat.
    The big file is deleted at the end."""
    base = os.path.join(workdir, "hash")
    shutil.rmtree(base, ignore_errors=True)
    projects = {}
    for kind in ("big", "small"):
        d = os.path.join(base, kind)
        os.makedirs(os.path.join(d, "data"))
        with open(os.path.join(d, "Nodefile.toml"), "w") as f:
            f.write(NODEFILE_ONE)
        projects[kind] = d
    big = os.path.join(projects["big"], "data", "big.bin")
    with open(os.path.join(projects["small"], "data", "big.bin"), "wb") as f:
        f.write(b"tiny input\n")
    res = {"size_bytes": size, "cat_s": [], "inproc_s": [], "build_big_s": [], "build_small_s": [],
           "error": None}
    try:
        log(f"== hashing: writing a {size / GiB:.2f} GiB file")
        _write_big(big, size)
        os.sync()  # finish writeback first: reads that compete with it measure the disk, not hashing
        subprocess.run(["cat", big], stdout=subprocess.DEVNULL, check=True)  # warm the page cache
        digests = set()
        for r in range(repeat):
            res["cat_s"].append(timed(["cat", big], timeout=timeout)[0])
            proc = subprocess.run([python, "-c", _INPROC, big, str(size)], capture_output=True, text=True,
                                  timeout=timeout)
            if proc.returncode != 0:
                raise RunFailed("hash_file_content failed in " + python + ":\n" + proc.stderr.strip()[-2000:])
            seconds, digest = proc.stdout.split()
            res["inproc_s"].append(float(seconds))
            digests.add(digest)
            for kind in (("big", "small") if r % 2 == 0 else ("small", "big")):
                d = projects[kind]
                for p in (".nodefile", "out"):
                    shutil.rmtree(os.path.join(d, p), ignore_errors=True)
                wall, _ = timed(nf_cmd + ["build"], cwd=d, timeout=timeout)
                if not os.path.exists(os.path.join(d, "out", "h")):
                    raise RunFailed(f"nodefile build in {d} did not write out/h")
                res[f"build_{kind}_s"].append(wall)
            log(f"   round {r + 1}: cat {res['cat_s'][-1] * 1000:.0f} ms, in-process "
                f"{res['inproc_s'][-1] * 1000:.0f} ms, build big "
                f"{res['build_big_s'][-1] * 1000:.0f} ms / small {res['build_small_s'][-1] * 1000:.0f} ms")
        if len(digests) > 1:
            raise RunFailed("hash_file_content gave different digests for the same file")
    except (RunFailed, OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        res["error"] = str(e).strip()
        log(f"   FAIL hashing: {res['error'].splitlines()[0]}")
    finally:
        if os.path.exists(big):
            os.remove(big)
        shutil.rmtree(base, ignore_errors=True)
    gib = size / GiB

    def thr(t):
        return gib / t if t and t > 0 else None

    res["cat_median_s"] = median(res["cat_s"])
    res["inproc_median_s"] = median(res["inproc_s"])
    res["build_big_median_s"] = median(res["build_big_s"])
    res["build_small_median_s"] = median(res["build_small_s"])
    diffs = [b - s for b, s in zip(res["build_big_s"], res["build_small_s"])]
    res["build_hash_median_s"] = median(diffs)
    res["cat_gib_s"] = thr(res["cat_median_s"])
    res["inproc_gib_s"] = thr(res["inproc_median_s"])
    res["build_gib_s"] = thr(res["build_hash_median_s"])
    return res


def startup(nf_cmd: list, python: str, workdir: str, runs: int, timeout: float, log) -> dict:
    """`nodefile build` no-op on a 10-node project, `nodefile --help`, and
    `python -c pass` on the interpreter nodefile runs on, interleaved."""
    wf = make_workflow("indep", 10)
    base = os.path.join(workdir, "startup")
    d = generate(wf, base, ["nodefile"])["nodefile"]
    res = {"runs": runs, "noop10_s": [], "help_s": [], "python_pass_s": [], "error": None,
           "python": python, "nodefile": " ".join(nf_cmd)}
    cmds = {"noop10_s": nf_cmd + ["build"], "help_s": nf_cmd + ["--help"],
            "python_pass_s": [python, "-c", "pass"]}
    try:
        log("== start-up")
        timed(nf_cmd + ["build", "-j", "2"], cwd=d, timeout=timeout)
        time.sleep(2.2)  # past nodefile's racy window: the next no-op is steady state
        timed(nf_cmd + ["build"], cwd=d, timeout=timeout)
        before = snapshot(d)
        for r in range(runs):
            keys = list(cmds)
            keys = keys[r % 3:] + keys[:r % 3]
            for k in keys:
                res[k].append(timed(cmds[k], cwd=d, timeout=timeout)[0])
        if changed(before, snapshot(d)):
            raise RunFailed("the 10-node no-op rebuilt outputs")
        log(f"   no-op 10 nodes {median(res['noop10_s']) * 1000:.1f} ms, --help "
            f"{median(res['help_s']) * 1000:.1f} ms, python -c pass {median(res['python_pass_s']) * 1000:.1f} ms")
    except RunFailed as e:
        res["error"] = str(e).strip()
        log(f"   FAIL start-up: {res['error'].splitlines()[0]}")
    for k in cmds:
        res[k.replace("_s", "_median_s")] = median(res[k])
    return res
