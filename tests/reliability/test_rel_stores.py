"""Hostile stores (SPEC §9): a store is untrusted input.

A team store is written by others. Each case below is one way a store can be
broken or hostile (a manifest whose hash climbs out of the store, a symlinked
blobs folder, a FIFO, a blob that is a symlink to /dev/zero, a store that never
answers), tried on a local folder and on S3 (a moto server on 127.0.0.1). Every
case checks what a user relies on: the build finishes in bounded time, falls
back to the next recipe and says which store and entry it rejected; a client
that only reads a store leaves it byte for byte as it was; and nothing outside
the project and its .nodefile/ changes.

Layout of each test's world (tmp_path): A/ (a teammate's project, push = true),
store/ (the team store A filled), B/ (a fresh clone that only reads the store),
and victim files around them that no build may touch.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import re
import resource
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cli_helpers import base_env, describe, run, runs, wait_for, write

NODES = ("n0", "n1", "n2")


def nodefile(store_url: str, push: bool, store_opts: str = "", store="team", nodes=NODES) -> str:
    head = f'[stores.{store}]\nurl = "{store_url}"\npush = {"true" if push else "false"}\n{store_opts}\n'
    body = "".join(f"""
[nodes.{n}]
outputs = "out/{n}.txt"
recipes = [{{ fetch = "{store}" }}, {{ shell = "echo {n} >> runs.log && printf 'content of {n}\\\\n' > {{outputs}}" }}]
""" for n in nodes)
    tree = f"""
[nodes.tree]
outputs = "tree/"
recipes = [{{ fetch = "{store}" }}, {{ shell = "echo tree >> runs.log && mkdir -p tree/sub && printf a > tree/a.txt && printf bb > tree/sub/b.txt" }}]
"""
    return head + body + (tree if nodes == NODES else "")


ALL = [*NODES, "tree"]


# -- helpers --------------------------------------------------------------------------------
def snapshot(root: Path, skip: tuple[Path, ...] = ()) -> dict[str, tuple]:
    """{path: what it is} of everything under root, never following a symlink and
    never opening a FIFO: files by their bytes' hash, links by their target."""
    out = {}
    for d, dirs, files in os.walk(root):
        here = Path(d)
        if any(here == s or s in here.parents for s in skip):
            dirs[:] = []
            continue
        for name in dirs + files:
            p = here / name
            if any(p == s for s in skip):
                continue
            st = os.lstat(p)
            rel = str(p.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISREG(st.st_mode):
                out[rel] = ("file", st.st_size, _sha(p, st.st_size), st.st_mtime_ns)
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir",)
            else:
                out[rel] = ("other", stat.S_IFMT(st.st_mode))
        dirs[:] = [x for x in dirs if not os.path.islink(here / x)]
    return out


def _sha(p: Path, size: int) -> str:
    if size > 64 << 20:  # a sparse giant: its size and mtime say enough
        return "big"
    return hashlib.sha256(p.read_bytes()).hexdigest()


def manifests(store: Path) -> dict[str, tuple[Path, dict]]:
    """{node: (manifest file, manifest)} of a local store."""
    out = {}
    for p in sorted((store / "manifests").glob("*/*.json")):
        m = json.loads(p.read_text())
        out[m["node"]] = (p, m)
    return out


def blob(store: Path, h: str) -> Path:
    return store / "blobs" / h[:2] / h


def build(project: Path, *args, timeout=60, check=0, **kw):
    """`node build ARGS` with a bound on its time; (process, recipes that ran)."""
    before = len(runs(project))
    proc = run(project, "build", *args, timeout=timeout, check=check, **kw)
    assert "Traceback" not in proc.stderr + proc.stdout, describe(proc)
    return proc, runs(project)[before:]


def file_size_limit(limit: int):
    """preexec_fn: the child may not write a file past `limit` bytes (a runaway
    download is stopped by SIGXFSZ, not by a full disk of the test machine)."""
    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def assert_outputs_right(b: Path, nodes=ALL) -> None:
    for n in nodes:
        if n == "tree":
            assert (b / "tree/a.txt").read_text() == "a" and (b / "tree/sub/b.txt").read_text() == "bb"
        else:
            assert (b / f"out/{n}.txt").read_text() == f"content of {n}\n", n


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A teammate's project A, built once, has filled the store ../store."""
    world = tmp_path_factory.mktemp("world")
    a = write(world / "A", {"Nodefile.toml": nodefile("../store", push=True)})
    proc, ran = build(a)
    assert sorted(ran) == sorted(ALL), describe(proc)
    assert set(manifests(world / "store")) == set(ALL)
    return world


@pytest.fixture
def world(pristine, tmp_path):
    """A private copy of the world, a reader clone B (push = false) and victims
    around the store: (world, store, B)."""
    shutil.copytree(pristine, tmp_path, dirs_exist_ok=True, symlinks=True)
    write(tmp_path / "B", {"Nodefile.toml": nodefile("../store", push=False)})
    (tmp_path / "victim.txt").write_text("the user's file next to the store\n")
    (tmp_path / "store" / "victim.txt").write_text("a file inside the store\n")
    return tmp_path, tmp_path / "store", tmp_path / "B"


def hostile_build(world_dir: Path, b: Path, *args, rebuilt: set[str], **kw):
    """Build the reader B with the store as it is now: the build ends in bounded
    time, exit 0, the nodes in `rebuilt` run their shell recipe and the rest are
    fetched; nothing outside B (the store included) changes; nothing is left in
    .nodefile/tmp."""
    before = snapshot(world_dir, skip=(b,))
    t0 = time.monotonic()
    proc, ran = build(b, *args, **kw)
    took = time.monotonic() - t0
    assert set(ran) == rebuilt, describe(proc)
    assert snapshot(world_dir, skip=(b,)) == before, "the build changed something outside the project"
    assert_outputs_right(b)
    tmp = b / ".nodefile" / "tmp"
    assert not tmp.exists() or not any(tmp.iterdir()), list(tmp.rglob("*"))
    return proc, took


def rejected_line(proc, count: int) -> None:
    assert re.search(rf"^rejected {count} store entr(y|ies) \(store 'team'\)", proc.stdout, re.M), describe(proc)


# -- a local folder store -------------------------------------------------------------------
@pytest.mark.parametrize("hash_", ["../victim.txt", "../../victim.txt", "../store/victim.txt", "ABSOLUTE"])
def test_manifest_hash_climbing_out_of_the_store_deletes_nothing(world, hash_):
    """A manifest's `hash` names the blob's path: `../victim.txt` made every
    reader delete <store>/../victim.txt after the hash check failed (and an
    absolute path, any file the user can write)."""
    w, store, b = world
    path, m = manifests(store)["n0"]
    m["outputs"][0]["hash"] = str(w / "victim.txt") if hash_ == "ABSOLUTE" else hash_
    path.write_text(json.dumps(m))
    proc, _ = hostile_build(w, b, rebuilt={"n0"})
    assert (w / "victim.txt").read_text() == "the user's file next to the store\n"
    assert re.search(r"warning: n0: store 'team': manifest manifests/\S+ has a bad hash for 'out/n0.txt'; rejected",
                     proc.stderr), describe(proc)
    rejected_line(proc, 1)


def test_symlinked_blobs_folder_is_not_followed_out_of_the_store(world):
    """blobs/xx as a symlink to a folder elsewhere: the blob there (wrong bytes)
    was read, failed the check and was deleted outside the store."""
    w, store, b = world
    _, m = manifests(store)["n1"]
    h = m["outputs"][0]["hash"]
    elsewhere = w / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / h).write_text("not n1 at all\n")  # the same size as "content of n1\n"
    shutil.rmtree(store / "blobs" / h[:2])
    (store / "blobs" / h[:2]).symlink_to(elsewhere, target_is_directory=True)
    proc, _ = hostile_build(w, b, rebuilt={"n1"})
    assert (elsewhere / h).read_text() == "not n1 at all\n"
    assert re.search(rf"n1: store 'team': blob blobs/{h[:2]}/{h} of 'out/n1.txt' leads outside the store",
                     proc.stderr), describe(proc)


def test_fifo_blob_and_fifo_manifest_do_not_hang_build_or_status(world):
    w, store, b = world
    _, m = manifests(store)["n0"]
    h = m["outputs"][0]["hash"]
    blob(store, h).unlink()
    os.mkfifo(blob(store, h))
    path, _ = manifests(store)["n2"]
    path.unlink()
    os.mkfifo(path)
    status = run(b, "status", timeout=30)
    assert status.returncode == 0, describe(status)
    assert "Traceback" not in status.stderr, describe(status)
    assert re.search(r"warning: store 'team': manifest \S+ is not a regular file \(a FIFO\); rejected",
                     status.stderr), describe(status)
    dry = run(b, "build", "-n", timeout=30)
    assert dry.returncode == 0 and "Traceback" not in dry.stderr, describe(dry)
    assert re.search(r"^would run  n2  \(rebuild \(shell\)\)", dry.stdout, re.M), describe(dry)
    assert "is not a regular file (a FIFO); rejected" in dry.stderr, describe(dry)
    proc, took = hostile_build(w, b, rebuilt={"n0", "n2"}, timeout=30)
    assert re.search(rf"n0: store 'team': blob blobs/{h[:2]}/{h} of 'out/n0.txt' is not a regular file \(a FIFO\)",
                     proc.stderr), describe(proc)
    rejected_line(proc, 2)


@pytest.mark.parametrize("kind", ["dev-zero", "sparse-10GiB"])
def test_endless_or_oversized_blob_is_never_read_past_its_size(world, kind):
    """A 14-byte blob that is a symlink to /dev/zero (or a 10 GiB sparse file)
    was copied without bound: it filled the disk, lost the record of a node
    fetched fine and left the file in .nodefile/tmp. The reader runs here under
    a 64 MiB file-size limit, so an unbounded copy dies instead of filling the
    test machine's disk."""
    w, store, b = world
    _, m = manifests(store)["n1"]
    h = m["outputs"][0]["hash"]
    target = blob(store, h)
    target.unlink()
    if kind == "dev-zero":
        target.symlink_to("/dev/zero")
    else:
        with open(target, "wb") as f:
            f.truncate(10 << 30)
    proc, _ = hostile_build(w, b, rebuilt={"n1"}, preexec_fn=file_size_limit(64 << 20), timeout=60)
    why = "has 10737418240 bytes where the manifest says 14" if kind.startswith("sparse") else "leads outside the store"
    assert f"of 'out/n1.txt' {why}" in proc.stderr, describe(proc)
    # the nodes fetched fine are recorded: nothing runs again
    again, ran = build(b)
    assert ran == [] and "nothing to do" in again.stdout, describe(again)


def test_reading_client_leaves_a_damaged_store_unchanged(world):
    """A blob with its bytes changed (same size): the reader rejects it, rebuilds,
    and leaves it in the store (it used to delete it: docs said it stays). A
    second build of the same reader still rejects it and still changes nothing."""
    w, store, b = world
    _, m = manifests(store)["n2"]
    target = blob(store, m["outputs"][0]["hash"])
    data = bytearray(target.read_bytes())
    data[3] ^= 0xFF
    target.write_bytes(bytes(data))
    _, tm = manifests(store)["tree"]
    tblob = blob(store, tm["outputs"][0]["files"][0]["hash"])
    tblob.write_bytes(b"A")
    proc, _ = hostile_build(w, b, rebuilt={"n2", "tree"})
    assert "n2: store 'team': 'out/n2.txt' does not match its manifest hash" in proc.stderr, describe(proc)
    assert "tree: store 'team': 'tree/a.txt' does not match its manifest hash" in proc.stderr, describe(proc)
    assert target.read_bytes() == bytes(data) and tblob.read_bytes() == b"A"
    rejected_line(proc, 2)
    for d in ("out", "tree", ".nodefile"):  # a fresh clone again: the damage is still there, still left alone
        shutil.rmtree(b / d)
    proc, _ = hostile_build(w, b, rebuilt={"n2", "tree"})
    rejected_line(proc, 2)


# mutations of one node's manifest: (name, function(manifest) -> bytes written to the file)
def _set(path, value):
    def f(m):
        o = m
        for k in path[:-1]:
            o = o[k]
        o[path[-1]] = value
        return json.dumps(m).encode()
    return f


MUTATIONS = {
    "size negative": _set(("outputs", 0, "size"), -1),
    "size a string": _set(("outputs", 0, "size"), "14"),
    "size a float": _set(("outputs", 0, "size"), 14.0),
    "size true": _set(("outputs", 0, "size"), True),
    "size huge": _set(("outputs", 0, "size"), 1 << 60),
    "hash uppercase": lambda m: _set(("outputs", 0, "hash"), m["outputs"][0]["hash"].upper())(m),
    "hash short": lambda m: _set(("outputs", 0, "hash"), m["outputs"][0]["hash"][:31])(m),
    "hash a number": _set(("outputs", 0, "hash"), 12),
    "hash null": _set(("outputs", 0, "hash"), None),
    "path absolute": _set(("outputs", 0, "path"), "/tmp/evil"),
    "path a list": _set(("outputs", 0, "path"), ["out/n0.txt"]),
    "type dir": _set(("outputs", 0, "type"), "dir"),
    "outputs null": _set(("outputs",), None),
    "outputs empty": _set(("outputs",), []),
    "outputs a string": _set(("outputs",), "out/n0.txt"),
    "output twice": lambda m: json.dumps({**m, "outputs": m["outputs"] * 2}).encode(),
    "key other": _set(("key",), "0" * 32),
    "not an object": lambda m: b"[1, 2, 3]",
    "empty": lambda m: b"",
    "not json": lambda m: b"\xff\xfe not json",
    "truncated": lambda m: json.dumps(m).encode()[:-9],
    "nested deep": lambda m: b"[" * 200_000 + b"]" * 200_000,
}


def _random_mutation(rng: random.Random, m: dict) -> bytes:
    """A random value at a random field of the manifest, or random bytes."""
    values = [None, True, -1, 0, 2 ** 70, 1.5, "", "..", "../" * 8 + "x", "/", "a" * 32, "A" * 32, [], {}, [[]]]
    o = m
    path = [rng.choice(["outputs", "key", "node"])]
    if path[0] == "outputs" and rng.random() < 0.8:
        path += [0, rng.choice(["path", "type", "hash", "size", "files"])]
    for k in path[:-1]:
        o = o[k]
    o[path[-1]] = rng.choice(values)
    data = json.dumps(m).encode()
    if rng.random() < 0.2:
        i = rng.randrange(len(data))
        data = data[:i] + bytes([rng.randrange(256)]) + data[i + 1:]
    return data


def test_invalid_manifest_fields_are_rejected_naming_store_and_entry(world, trials):
    """Every field a restore reads is checked: each mutation is rejected (or, if
    it happens to be harmless, the fetch is verified), the node rebuilds, the
    store is unchanged, and there is never a traceback."""
    w, store, b = world
    path, m0 = manifests(store)["n0"]
    original = path.read_bytes()
    cases = list(MUTATIONS.items())
    cases += [(f"random {i}", lambda m, i=i: _random_mutation(random.Random(i), m))
              for i in range(trials(4, 200))]
    for name, mutate in cases:
        path.write_bytes(mutate(json.loads(original)))
        for d in ("out", ".nodefile"):
            shutil.rmtree(b / d, ignore_errors=True)
        if name in MUTATIONS:
            proc, _ = hostile_build(w, b, rebuilt={"n0"})
            assert re.search(r"warning: n0: store 'team': .*; rejected; trying the next recipe", proc.stderr), \
                (name, describe(proc))
            rejected_line(proc, 1)
        else:  # a random change may leave a usable manifest (a new "node"): either way, no harm
            before = snapshot(w, skip=(b,))
            proc, ran = build(b)
            assert set(ran) <= {"n0"}, (name, describe(proc))
            assert snapshot(w, skip=(b,)) == before, name
            assert_outputs_right(b)
    path.write_bytes(original)


# -- node gc --store --------------------------------------------------------------------------
def test_gc_store_removes_damaged_entries_and_only_them(world):
    w, store, b = world
    ms = manifests(store)
    h0 = ms["n0"][1]["outputs"][0]["hash"]
    blob(store, h0).write_bytes(b"XXXXXXXXXXXXXX")  # damaged, same size
    h1 = ms["n1"][1]["outputs"][0]["hash"]
    blob(store, h1).unlink()
    os.mkfifo(blob(store, h1))  # a FIFO for a blob
    tree_m = ms["tree"][1]
    elsewhere = w / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("outside the store\n")
    stray = store / "blobs" / "zz"
    stray.symlink_to(elsewhere, target_is_directory=True)  # a symlinked blobs folder
    path2, m2 = ms["n2"]
    m2["outputs"][0]["hash"] = "../victim.txt"
    path2.write_text(json.dumps(m2))
    giant = blob(store, "f" * 32)  # no manifest uses it: left alone, never read (10 GiB, sparse)
    giant.parent.mkdir()
    with open(giant, "wb") as f:
        f.truncate(10 << 30)
    outside_before = snapshot(w, skip=(store, b))

    proc = run(b, "gc", "--store", "team", timeout=60)
    assert proc.returncode == 0, describe(proc)
    assert "Traceback" not in proc.stderr, describe(proc)
    removed = dict(re.findall(r"^removed (\S+): (.*)$", proc.stdout, re.M))
    assert set(removed) == {
        f"blobs/{h0[:2]}/{h0}", f"blobs/{h1[:2]}/{h1}", "blobs/zz",
        str(ms["n0"][0].relative_to(store)), str(ms["n1"][0].relative_to(store)), str(path2.relative_to(store)),
    }, describe(proc)
    assert "does not match its name" in removed[f"blobs/{h0[:2]}/{h0}"]
    assert re.search(r"gc --store team: checked 4 manifest\(s\) and \d+ blob\(s\); removed 6 damaged entries",
                     proc.stdout), describe(proc)
    assert snapshot(w, skip=(store, b)) == outside_before  # the symlink's target, the victims: untouched
    assert (w / "victim.txt").exists() and (store / "victim.txt").exists()
    assert not os.path.lexists(stray) and not os.path.lexists(blob(store, h1))
    assert giant.stat().st_size == 10 << 30
    assert manifests(store).keys() == {"tree"} and tree_m == manifests(store)["tree"][1]

    proc, _ = hostile_build(w, b, rebuilt={"n0", "n1", "n2"})  # nothing damaged is left: no warning
    assert "rejected" not in proc.stderr + proc.stdout, describe(proc)
    again = run(b, "gc", "--store", "team", check=0)
    assert "removed 0 damaged entries" in again.stdout, describe(again)


def test_gc_store_names_an_unknown_store(world):
    _, _, b = world
    proc = run(b, "gc", "--store", "tem", check=2)
    assert "--store tem: no such store" in proc.stderr and "team" in proc.stderr, describe(proc)


def test_store_timeout_is_validated(tmp_path):
    for value, why in [("0", "positive number"), ("-1", "positive number"), ("nan", "positive number"),
                       ("inf", "positive number"), ('"10"', "positive number"), ("true", "positive number")]:
        write(tmp_path, {"Nodefile.toml": nodefile("s3://bucket/x", False, f"timeout = {value}")})
        proc = run(tmp_path, "check", check=2)
        assert re.search(r"Nodefile.toml:4.*stores\.team\.timeout.*" + why, proc.stderr), (value, describe(proc))
    write(tmp_path, {"Nodefile.toml": nodefile("../store", False, "timeout = 5")})
    proc = run(tmp_path, "check", check=2)
    assert "timeout applies to remote stores" in proc.stderr, describe(proc)
    write(tmp_path, {"Nodefile.toml": nodefile("s3://bucket/x", False, "timeout = 2.5")})
    run(tmp_path, "check", check=0)


# -- S3: a silent endpoint, and a moto server -------------------------------------------------
def _import_s3():
    try:
        import boto3  # noqa: F401
        import moto.server  # noqa: F401
        import s3fs  # noqa: F401
    except ImportError as e:
        msg = f"the S3 tests need s3fs, boto3 and moto[server] (pip install '.[test]'): {e}"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
          "AWS_EC2_METADATA_DISABLED": "true", "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}


def s3_env(tmp: Path) -> dict:
    return base_env(**S3_ENV, AWS_CONFIG_FILE=tmp / "no-aws-config", AWS_SHARED_CREDENTIALS_FILE=tmp / "no-aws-creds")


def s3_options(endpoint: str, extra: str = "") -> str:
    return (f'options = {{ key = "testing", secret = "testing", client_kwargs = {{ endpoint_url = "{endpoint}" }} }}'
            f"\n{extra}")


@pytest.fixture
def silent_endpoint():
    """A TCP server on 127.0.0.1 that accepts every connection and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                held.append(conn)  # kept open, never read from or written to
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}", held
    stop.set()
    t.join()
    for c in held:
        c.close()
    server.close()


TWELVE = tuple(f"m{i:02d}" for i in range(12))


@pytest.mark.parametrize("timeout", [2, None], ids=["timeout-2s", "default-timeout"])
def test_silent_s3_endpoint_costs_its_timeout_once(tmp_path, silent_endpoint, timeout):
    """An endpoint that accepts and never answers stalled a 1-node build for 7
    minutes, printing nothing. Now: a line names the store while the first
    request waits, the store is marked down after its timeout, and all 12 nodes
    fall back to their shell recipe: the whole build costs the timeout once."""
    _import_s3()
    endpoint, held = silent_endpoint
    extra = f"timeout = {timeout}" if timeout else ""
    p = write(tmp_path / "P", {"Nodefile.toml": nodefile("s3://team-bucket/x", True, s3_options(endpoint, extra),
                                                         nodes=TWELVE)})
    limit = timeout or 10
    env = s3_env(tmp_path)
    if timeout:  # status asks the store for every stale node: it too waits once
        t0 = time.monotonic()
        status = run(p, "status", env=env, timeout=limit + 60)
        took = time.monotonic() - t0
        assert status.returncode == 0 and "Traceback" not in status.stderr, describe(status)
        assert status.stdout.count("rebuild (shell)") == 12, describe(status)
        assert "warning: store 'team' is unreachable: no answer within" in status.stderr, describe(status)
        assert took < limit + 8, f"status took {took:.1f}s with a {limit}s timeout\n{describe(status)}"
        held.clear()

    t0 = time.monotonic()
    proc, ran = build(p, "-j", "1", env=env, timeout=limit + 60)
    took = time.monotonic() - t0
    assert sorted(ran) == sorted(TWELVE), describe(proc)
    assert held, "the build never connected to the endpoint"
    assert re.search(rf"^\.\.\. waiting for store 'team' \(manifests/\S+; gives up after {limit:g}s\)",
                     proc.stderr, re.M), describe(proc)
    assert len(re.findall(r"store 'team' is unreachable: no answer within", proc.stderr)) == 1, describe(proc)
    assert re.search(rf"^store 'team' is unreachable: no answer within {limit:g}s", proc.stdout, re.M), describe(proc)
    assert took < limit + 8, f"the build took {took:.1f}s with a {limit}s timeout\n{describe(proc)}"
    print(f"silent S3 endpoint, 12 nodes, timeout {limit}s: build took {took:.1f}s")


class MotoServer:
    """moto's S3 server on 127.0.0.1 (as in tests/cli/test_stores.py)."""

    def __init__(self, tmp: Path):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log = open(tmp / "moto.log", "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def answers(self) -> bool:
        import urllib.request
        if self.proc.poll() is not None:
            pytest.fail(f"moto server exited with {self.proc.returncode}")
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            direct.open(self.endpoint + "/moto-api/", timeout=1).close()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def objects(self) -> dict[str, bytes]:
        """{key: bytes} of every object in the bucket."""
        out = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket="team-bucket"):
            for o in page.get("Contents", []):
                out[o["Key"]] = self.client.get_object(Bucket="team-bucket", Key=o["Key"])["Body"].read()
        return out

    def manifest(self, node: str) -> tuple[str, dict]:
        for k, v in self.objects().items():
            if k.startswith("churn/manifests/") and json.loads(v)["node"] == node:
                return k, json.loads(v)
        raise KeyError(node)


@pytest.fixture
def s3(tmp_path, monkeypatch):
    """A moto server with the team's store pushed to s3://team-bucket/churn by A,
    and a reader B: (server, world, B, env)."""
    _import_s3()
    for k, v in S3_ENV.items():
        monkeypatch.setenv(k, v)
    server = MotoServer(tmp_path)
    try:
        wait_for(server.answers, timeout=30, interval=0.1, what="the moto server")
        import boto3
        server.client = boto3.client("s3", endpoint_url=server.endpoint, aws_access_key_id="testing",
                                     aws_secret_access_key="testing", region_name="us-east-1")
        server.client.create_bucket(Bucket="team-bucket")
        env = s3_env(tmp_path)
        opts = s3_options(server.endpoint)
        a = write(tmp_path / "A", {"Nodefile.toml": nodefile("s3://team-bucket/churn", True, opts)})
        proc, ran = build(a, env=env)
        assert sorted(ran) == sorted(ALL), describe(proc)
        b = write(tmp_path / "B", {"Nodefile.toml": nodefile("s3://team-bucket/churn", False, opts)})
        (tmp_path / "victim.txt").write_text("the user's file\n")
        yield server, tmp_path, b, env
    finally:
        server.stop()


def test_s3_hostile_entries_are_rejected_and_the_bucket_is_unchanged(s3):
    """On S3: a damaged blob (which a reader used to delete from the bucket), a
    manifest hash climbing out of the store, and a blob far larger than its
    manifest says (rejected by its size, never downloaded)."""
    server, w, b, env = s3
    _, m0 = server.manifest("n0")
    h0 = m0["outputs"][0]["hash"]
    server.client.put_object(Bucket="team-bucket", Key=f"churn/blobs/{h0[:2]}/{h0}", Body=b"Xontent of n0\n")
    key1, m1 = server.manifest("n1")
    m1["outputs"][0]["hash"] = "../../victim.txt"
    server.client.put_object(Bucket="team-bucket", Key=key1, Body=json.dumps(m1).encode())
    _, m2 = server.manifest("n2")
    h2 = m2["outputs"][0]["hash"]
    server.client.put_object(Bucket="team-bucket", Key=f"churn/blobs/{h2[:2]}/{h2}", Body=b"\0" * (20 << 20))
    bucket = server.objects()
    outside = snapshot(w, skip=(b, w / "moto.log"))

    proc, ran = build(b, env=env, preexec_fn=file_size_limit(16 << 20))
    assert set(ran) == {"n0", "n1", "n2"}, describe(proc)
    assert "n0: store 'team': 'out/n0.txt' does not match its manifest hash" in proc.stderr, describe(proc)
    assert "n1: store 'team': manifest" in proc.stderr and "has a bad hash for 'out/n1.txt'" in proc.stderr
    assert f"of 'out/n2.txt' has {20 << 20} bytes where the manifest says 14" in proc.stderr, describe(proc)
    rejected_line(proc, 3)
    assert_outputs_right(b)
    assert server.objects() == bucket, "a reading client changed the bucket"
    assert snapshot(w, skip=(b, w / "moto.log")) == outside

    k0, k2 = server.manifest("n0")[0], server.manifest("n2")[0]
    proc = run(b, "gc", "--store", "team", env=env, timeout=60, check=0)
    assert "Traceback" not in proc.stderr, describe(proc)
    removed = set(re.findall(r"^removed (\S+):", proc.stdout, re.M))
    assert removed == {f"blobs/{h0[:2]}/{h0}", f"blobs/{h2[:2]}/{h2}", key1[len("churn/"):],
                       k0[len("churn/"):], k2[len("churn/"):]}, describe(proc)
    assert set(server.objects()) == set(bucket) - {f"churn/{r}" for r in removed}
