"""A damaged, incompatible or unwritable state (SPEC §9): garbage, truncated, old or
newer schema, pages overwritten, a read-only .nodefile/, a full disk.

Read-only commands say so in one line with the fix and exit non-zero, leaving the
file as it was; a build keeps the damaged file aside, starts afresh, restores from
the local cache and says how much; a full or read-only disk gives one message, a
non-zero exit and the state as it was. Never a traceback.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from cli_helpers import base_env, describe, run, runs, write

PROJECT = {
    "Nodefile.toml": """
        [nodes.a]
        inputs = "src.txt"
        outputs = "a.txt"
        shell = "echo a >> runs.log; cat {inputs} {inputs} > {outputs}"

        [nodes.b]
        inputs = "a.txt"
        outputs = "b.txt"
        shell = "echo b >> runs.log; (echo b; cat {inputs}) > {outputs}"
    """,
    "src.txt": "one\n",
}
READ_ONLY = (("status",), ("explain", "b"), ("graph",), ("log", "b"))


def built(tmp_path) -> Path:
    write(tmp_path, PROJECT)
    run(tmp_path, "build", check=0)
    assert runs(tmp_path) == ["a", "b"]
    return tmp_path


def up_to_date(status_stdout: str) -> list[str]:
    """The nodes `node status` calls up to date."""
    import re
    return [m.group(1) for m in re.finditer(r"^(\S+)\s+up to date\b", status_stdout, re.M)]


def outputs_ok(root: Path) -> bool:
    src = (root / "src.txt").read_text()
    return (root / "a.txt").read_text() == src * 2 and (root / "b.txt").read_text() == "b\n" + src * 2


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def no_traceback(proc) -> None:
    assert "Traceback" not in proc.stderr + proc.stdout, describe(proc)


def one_line(proc, *words) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, describe(proc)
    for w in words:
        assert w in lines[0], describe(proc)
    return lines[0]


# -- ways to damage state.db ------------------------------------------------------------------
def garbage(db: Path) -> None:
    db.write_bytes(os.urandom(4000))


def truncated(db: Path) -> None:
    size = db.stat().st_size
    os.truncate(db, size // 2 + 100)


def pages_overwritten(db: Path) -> None:
    """The header and the schema page intact: only a query finds it."""
    data = bytearray(db.read_bytes())
    data[4096:] = os.urandom(len(data) - 4096)
    db.write_bytes(bytes(data))


def old_schema(db: Path) -> None:
    """A layout no nodefile version wrote: a column of the node records is missing."""
    con = sqlite3.connect(db)
    con.execute("ALTER TABLE nodes DROP COLUMN incomplete")
    con.execute("PRAGMA user_version=0")
    con.commit()
    con.close()


def newer_schema(db: Path) -> None:
    con = sqlite3.connect(db)
    con.execute("PRAGMA user_version=99")
    con.commit()
    con.close()


@pytest.mark.parametrize("damage", [garbage, truncated, pages_overwritten, old_schema, newer_schema],
                         ids=lambda f: f.__name__)
def test_damaged_state_read_only_commands_say_so_and_a_build_starts_afresh(tmp_path, damage):
    root = built(tmp_path)
    db = root / ".nodefile" / "state.db"
    assert not (root / ".nodefile" / "state.db-wal").exists()  # closed cleanly: one file
    damage(db)
    before = digest(db)
    for cmd in READ_ONLY if damage is garbage else READ_ONLY[:1]:
        proc = run(root, *cmd)
        no_traceback(proc)
        assert proc.returncode == 2, describe(proc)
        one_line(proc, "state database .nodefile/state.db is damaged", "Run `node build` to start afresh",
                 "state.db.damaged-")
        assert digest(db) == before  # a read-only command changes nothing in it
    proc = run(root, "build", check=0)
    no_traceback(proc)
    kept = [p for p in (root / ".nodefile").iterdir() if p.name.startswith("state.db.damaged-")
            and not p.name.endswith(("-wal", "-shm"))]
    assert len(kept) == 1 and digest(kept[0]) == before, describe(proc)  # kept, byte for byte
    assert f"kept as .nodefile/{kept[0].name}" in proc.stderr, describe(proc)
    assert "2 node(s) restored from the local cache, 0 rebuilt" in proc.stderr, describe(proc)
    assert runs(root) == ["a", "b"]  # no recipe ran again
    assert outputs_ok(root)
    proc = run(root, "status", check=0)
    assert "0 of 2 node(s) stale" in proc.stdout, describe(proc)


def test_damage_found_by_a_build_mid_way_starts_afresh_once(tmp_path):
    root = built(tmp_path)
    pages_overwritten(root / ".nodefile" / "state.db")
    (root / "src.txt").write_text("two\n")  # a real build, not the no-op record
    proc = run(root, "build", check=0)
    no_traceback(proc)
    assert "starting afresh" in proc.stderr and "restored from the local cache" in proc.stderr, describe(proc)
    assert outputs_ok(root)
    assert "0 of 2 node(s) stale" in run(root, "status", check=0).stdout


def test_damage_with_a_no_op_record_is_not_hidden_by_it(tmp_path):
    """`status` finds the damage: the next `node build` must start afresh, not answer
    "nothing to do" from the no-op record written before."""
    root = built(tmp_path)
    run(root, "build", check=0)  # the no-op record
    garbage(root / ".nodefile" / "state.db")
    assert run(root, "status").returncode == 2
    proc = run(root, "build", check=0)
    assert "starting afresh" in proc.stderr and "nothing to do" not in proc.stdout, describe(proc)


def test_schema_1_database_is_migrated_and_nothing_rebuilds(tmp_path):
    """A state written before the ctime joined the stat cache (schema 1) is upgraded in
    place: records are kept, stamps re-hashed once, nothing rebuilt."""
    root = built(tmp_path)
    db = root / ".nodefile" / "state.db"
    con = sqlite3.connect(db)
    con.execute("ALTER TABLE files DROP COLUMN ctime_ns")
    con.execute("PRAGMA user_version=0")
    con.commit()
    con.close()
    shutil.rmtree(root / ".nodefile" / "noop")
    proc = run(root, "status", check=0)
    assert "0 of 2 node(s) stale" in proc.stdout, describe(proc)
    run(root, "build", check=0)
    assert runs(root) == ["a", "b"]
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA user_version").fetchone()[0] == 2
    assert "ctime_ns" in [r[1] for r in con.execute("PRAGMA table_info(files)")]
    con.close()


# -- a read-only .nodefile/ ----------------------------------------------------------------------
def _unprivileged() -> list[str]:
    """A prefix that runs a command without root's right to write anywhere."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: a read-only folder cannot be made")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--"]


def run_as(prefix, root, *args):
    return subprocess.run(prefix + [sys.executable, "-m", "nodefile", *args], cwd=root, capture_output=True,
                          text=True, timeout=60, env=base_env())


def _tree_digest(d: Path) -> dict:
    return {str(p.relative_to(d)): digest(p) for p in sorted(d.rglob("*")) if p.is_file()}


def test_read_only_state_folder_one_message_and_state_as_it_was(tmp_path):
    prefix = _unprivileged()
    root = built(tmp_path)
    (root / "src.txt").write_text("two\n")
    sd = root / ".nodefile"
    before = _tree_digest(sd)
    modes = {p: p.stat().st_mode for p in [sd, *sd.rglob("*")]}
    for p in modes:
        p.chmod(modes[p] & ~0o222)
    try:
        for cmd in (("build",), ("status",), ("touch",), ("gc",)):
            proc = run_as(prefix, root, *cmd)
            no_traceback(proc)
            assert proc.returncode != 0, describe(proc)
            one_line(proc, "The state is as it was")
            assert "not writable" in proc.stderr or "permission denied" in proc.stderr, describe(proc)
        assert _tree_digest(sd) == before
        assert (root / "a.txt").read_text() == "one\n" * 2  # no recipe ran
    finally:
        for p, mode in modes.items():
            p.chmod(mode)
    run(root, "build", check=0)
    assert outputs_ok(root)


def _mount(*args) -> bool:
    return os.geteuid() == 0 and shutil.which("mount") is not None and subprocess.run(
        ["mount", *args], capture_output=True).returncode == 0


def test_read_only_filesystem_under_state_folder(tmp_path):
    """EROFS (a read-only bind mount over .nodefile/): root cannot write either."""
    root = built(tmp_path)
    (root / "src.txt").write_text("two\n")
    sd = root / ".nodefile"
    before = _tree_digest(sd)
    if not _mount("--bind", str(sd), str(sd)):
        pytest.skip("bind mounts are not permitted here")
    try:
        if subprocess.run(["mount", "-o", "remount,bind,ro", str(sd)], capture_output=True).returncode:
            pytest.skip("a read-only remount is not permitted here")
        proc = run(root, "build")
        no_traceback(proc)
        assert proc.returncode == 1, describe(proc)
        one_line(proc, "read-only", "The state is as it was")
    finally:
        subprocess.run(["umount", str(sd)], capture_output=True)
    assert _tree_digest(sd) == before
    run(root, "build", check=0)
    assert outputs_ok(root)


# -- a full disk ------------------------------------------------------------------------------
@pytest.fixture
def tiny_disk(tmp_path):
    """A 2 MiB tmpfs (root with mount permission only)."""
    mnt = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    if not _mount("-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)):
        pytest.skip("mounting a tmpfs is not permitted here (needs root)")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_disk_full_during_a_build_one_message_and_consistent_state(tiny_disk):
    """A recipe finishes and then the disk fills (another process, here the recipe
    itself): writing its record fails. One line, exit 1, the database intact, and the
    next build (space freed) leaves every output right."""
    root = tiny_disk
    write(root, {
        "Nodefile.toml": """
            [nodes.a]
            inputs = "src.txt"
            outputs = "a.txt"
            shell = "cat {inputs} {inputs} > {outputs}"

            [nodes.fill]
            inputs = "a.txt"
            outputs = "f.txt"
            shell = "cat {inputs} > {outputs}; if [ -e fill.on ]; then dd if=/dev/zero of=filler bs=4k 2>/dev/null; fi; true"
        """,
        "src.txt": "one\n",
    })
    run(root, "build", check=0)
    (root / "src.txt").write_text("two\n")
    (root / "fill.on").write_text("")
    proc = run(root, "build")
    no_traceback(proc)
    assert proc.returncode == 1, describe(proc)
    one_line(proc, "the disk is full", "The state is as it was")
    con = sqlite3.connect(f"file:{root / '.nodefile' / 'state.db'}?mode=ro", uri=True)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    proc = run(root, "status")  # the disk still full: may fail, in one line, or answer truly
    no_traceback(proc)
    if proc.returncode == 0:
        expect = {"a": "two\n" * 2, "fill": "two\n" * 2}
        outs = {"a": "a.txt", "fill": "f.txt"}
        for name in up_to_date(proc.stdout):
            assert (root / outs[name]).read_text() == expect[name], describe(proc)
    (root / "filler").unlink()
    (root / "fill.on").unlink()
    run(root, "build", check=0)
    assert (root / "a.txt").read_text() == "two\n" * 2 and (root / "f.txt").read_text() == "two\n" * 2
    assert "0 of 2 node(s) stale" in run(root, "status", check=0).stdout
