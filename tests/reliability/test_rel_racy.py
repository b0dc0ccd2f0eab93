"""Racy rewrites are always caught (SPEC §3): a same-size rewrite within the
filesystem's timestamp granularity of the build that read the file, and a same-size
rewrite whose mtime is then restored (cp -p, rsync -t, touch -r), which keeps size,
mtime and inode: only the ctime shows it.

Most trials go through the Python API (the real engine, state and stat cache, in
this process); every tenth through the CLI, whose no-op record (fastpath.py) must
not hide the rewrite either.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import nodefile
from cli_helpers import describe, run, write
from nodefile.fsclock import racy_ns

NODEFILE = """
[nodes.copy]
inputs = "in.txt"
outputs = "out.txt"
shell = "cp {inputs} {outputs}"
"""


def rewrite_same_size(path: Path, text: str, restore_mtime: bool) -> None:
    st = os.stat(path)
    assert len(text.encode()) == st.st_size
    with open(path, "r+b") as f:  # in place: the same inode
        f.write(text.encode())
    if restore_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        now = os.stat(path)
        assert (now.st_size, now.st_mtime_ns, now.st_ino) == (st.st_size, st.st_mtime_ns, st.st_ino)


def test_racy_and_mtime_restored_rewrites_are_always_caught(tmp_path, trials):
    root = tmp_path
    write(root, {"Nodefile.toml": NODEFILE, "in.txt": "v0000\n"})
    nodefile_path = str(root / "Nodefile.toml")
    nodefile.build(path=nodefile_path)
    window = racy_ns(os.stat(root / "in.txt").st_dev) / 1e9
    n = trials(40, 1000)
    missed = []
    cli_trials = 0
    t0 = time.monotonic()
    for t in range(1, n + 1):
        restored = t % 2 == 0  # odd: within the tick; even: mtime restored after the stamp is trusted
        cli = t % 10 == 0
        old, new = f"a{t:04d}\n", f"b{t:04d}\n"
        (root / "in.txt").write_text(old)
        if cli:
            run(root, "build", check=0)
            run(root, "build", check=0)  # the no-op record, now vouching for in.txt
        else:
            nodefile.build(path=nodefile_path)
        assert (root / "out.txt").read_text() == old
        if restored:
            time.sleep(window + 0.01)  # the stamp is trusted from now on: only the ctime can tell
        rewrite_same_size(root / "in.txt", new, restored)
        if cli:
            cli_trials += 1
            proc = run(root, "build", check=0)
            if "nothing to do" in proc.stdout or (root / "out.txt").read_text() != new:
                missed.append((t, "cli", restored, describe(proc)))
        else:
            if not nodefile.status(path=nodefile_path)["copy"].stale:
                missed.append((t, "status", restored, ""))
            nodefile.build(path=nodefile_path)
            if (root / "out.txt").read_text() != new:
                missed.append((t, "build", restored, ""))
    print(f"racy rewrites: {n} trials ({cli_trials} through the CLI) in {time.monotonic() - t0:.0f}s; "
          f"missed: {len(missed)}")
    assert not missed, missed[:3]
