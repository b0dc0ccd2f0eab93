"""Acceptance: the local cache, backup stores and the recipe list (SPEC §2, §4, §6).

Every recipe appends its node name to runs.log (the counter file), so a test can
say exactly which scripts ran; a node restored from the cache or a store runs no
script. "A fresh clone" is a second folder holding copies of the sources and the
Nodefile only (no outputs, no .nodefile/), as `git clone` would give a teammate.

Stores are a local folder (absolute path, so the same Nodefile works in every
clone) and, in the S3 tests, a real S3 API served by moto on 127.0.0.1.
"""
from __future__ import annotations

import filecmp
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import base_env, counter_py, describe, run, runs, wait_for, write


# -- helpers ---------------------------------------------------------------------------------
def ok_via(proc) -> dict[str, str]:
    """{node: recipe} for every `ok   NODE  1.2s via RECIPE` progress line."""
    return dict(re.findall(r"^ok\s+(\S+)\s+\S+\s+via\s+(\S+)", proc.stdout, re.M))


def build(project, *args, check=0, **kw):
    """`node build -j 1 ARGS`; return (process, scripts that ran during this build)."""
    before = len(runs(project))
    proc = run(project, "build", "-j", "1", *args, check=check, **kw)
    return proc, runs(project)[before:]


def clone(src: Path, dst: Path, files) -> Path:
    """A fresh clone: copies of the given source files only."""
    for rel in files:
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / rel, dst / rel)
    return dst


def manifests(store: Path) -> dict[str, list[dict]]:
    """{node name: [manifest, ...]} of a local store or cache folder."""
    out: dict[str, list[dict]] = {}
    for p in sorted((store / "manifests").glob("*/*.json")):
        m = json.loads(p.read_text())
        m["_path"] = p
        out.setdefault(m["node"], []).append(m)
    return out


def blob(store: Path, h: str) -> Path:
    return store / "blobs" / h[:2] / h


def tree(root: Path) -> dict[str, bytes]:
    """{relative path: bytes} of every file under root."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def same_file(a: Path, b: Path) -> bool:
    return a.is_file() and b.is_file() and filecmp.cmp(a, b, shallow=False)


def parse_bytes(text: str) -> float:
    m = re.search(r"freed ([\d.]+) (B|KiB|MiB|GiB)", text)
    assert m, text
    return float(m.group(1)) * {"B": 1, "KiB": 1024, "MiB": 1024 ** 2, "GiB": 1024 ** 3}[m.group(2)]


# -- a small team project: clean -> model (two files), clean -> plots/ (a directory) ------------------
TEAM_NODEFILE = """
    [stores.team]
    url = "@URL@"
    push = true
    @OPTIONS@

    [nodes.clean]
    outputs = "data/clean.txt"
    inputs = { raw = "data/raw.txt" }
    recipes = [{ fetch = "team" }, { python = "tasks/clean.py" }]

    [nodes.model]
    outputs = { model = "models/model.bin", metrics = "models/metrics.json" }
    inputs = ["clean"]
    recipes = [{ fetch = "team" }, { python = "tasks/model.py" }]

    [nodes.plots]
    outputs = "plots/"
    inputs = ["clean"]
    recipes = [{ fetch = "team" }, { python = "tasks/plots.py" }]
    """

TEAM_SOURCES = {
    "data/raw.txt": "alpha\nbeta\ngamma\n",
    "tasks/clean.py": counter_py("clean", """
        with open(job.inputs.raw) as f, open(job.outputs[0], "w") as out:
            out.write(f.read().upper())
        """),
    # deterministic, 64 KiB of "model" bytes derived from the input
    "tasks/model.py": counter_py("model", """
        import hashlib, json
        data = open(job.inputs[0], "rb").read()
        h = hashlib.sha256(data).digest()
        with open(job.outputs.model, "wb") as out:
            for i in range(2048):
                h = hashlib.sha256(h).digest()
                out.write(h)
        with open(job.outputs.metrics, "w") as out:
            json.dump({"rows": data.count(b"\\n")}, out)
        """),
    "tasks/plots.py": counter_py("plots", """
        import os
        d = job.outputs[0]
        os.makedirs(os.path.join(d, "sub", "deep"), exist_ok=True)
        text = open(job.inputs[0]).read()
        open(os.path.join(d, "a.txt"), "w").write(text)
        open(os.path.join(d, "sub", "b.txt"), "w").write(text[::-1])
        open(os.path.join(d, "sub", "deep", "c.bin"), "wb").write(bytes(range(256)) * 40)
        """),
}
TEAM_OUTPUTS = ["data/clean.txt", "models/model.bin", "models/metrics.json", "plots/a.txt",
                "plots/sub/b.txt", "plots/sub/deep/c.bin"]


def team_project(root: Path, url: str, options: str = "") -> Path:
    nodefile = TEAM_NODEFILE.replace("@URL@", url).replace("@OPTIONS@", options)
    return write(root, {"Nodefile.toml": nodefile, **TEAM_SOURCES})


TEAM_FILES = ["Nodefile.toml", *TEAM_SOURCES]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """Project A built once with a `push = true` local-folder store at ../store
    (a path relative to the project), shared read-only by the tests below."""
    root = tmp_path_factory.mktemp("team")
    a = team_project(root / "A", "../store")
    proc, ran = build(a)
    assert sorted(ran) == ["clean", "model", "plots"], describe(proc)
    assert set(manifests(root / "store")) == {"clean", "model", "plots"}, describe(proc)
    return root


@pytest.fixture
def team(pristine, tmp_path):
    """A private copy of the built project A and its store: (A, store). A clone of
    A next to it (tmp_path / "B") finds the store through the same Nodefile."""
    shutil.copytree(pristine / "A", tmp_path / "A", symlinks=True)
    shutil.copytree(pristine / "store", tmp_path / "store")
    return tmp_path / "A", tmp_path / "store"


# -- the local cache ----------------------------------------------------------------------------
SINGLE = {
    "Nodefile.toml": """
        [nodes.a]
        outputs = "out/a.txt"
        inputs = ["in.txt"]
        python = "tasks/a.py"
        """,
    "in.txt": "one\n",
    "tasks/a.py": counter_py("a", """
        with open(job.inputs[0]) as f, open(job.outputs[0], "w") as out:
            out.write("a:" + f.read())
        """),
}


def test_revert_restores_from_local_cache_without_running_the_script(tmp_path):
    write(tmp_path, SINGLE)
    _, ran = build(tmp_path)
    assert ran == ["a"]
    original = (tmp_path / "out/a.txt").read_bytes()

    (tmp_path / "in.txt").write_text("two\n")
    _, ran = build(tmp_path)
    assert ran == ["a"]
    assert (tmp_path / "out/a.txt").read_text() == "a:two\n"

    (tmp_path / "in.txt").write_text("one\n")
    proc, ran = build(tmp_path)
    assert ran == [], describe(proc)
    assert ok_via(proc) == {"a": "load"}, describe(proc)
    assert (tmp_path / "out/a.txt").read_bytes() == original
    # and it is up to date afterwards: the restored bytes were recorded
    proc, ran = build(tmp_path)
    assert ran == [] and ok_via(proc) == {}, describe(proc)


def test_cache_layout_is_content_addressed_and_not_hardlinked(tmp_path):
    write(tmp_path, SINGLE)
    build(tmp_path)
    cache = tmp_path / ".nodefile" / "cache"
    (m,) = manifests(cache)["a"]
    (entry,) = m["outputs"]
    assert entry["path"] == "out/a.txt" and entry["type"] == "file"
    stored = blob(cache, entry["hash"])
    assert stored.read_bytes() == (tmp_path / "out/a.txt").read_bytes()
    assert os.stat(stored).st_ino != os.stat(tmp_path / "out/a.txt").st_ino
    # editing the output in place must not change the cached copy
    with open(tmp_path / "out/a.txt", "a") as f:
        f.write("edited by hand\n")
    assert stored.read_text() == "a:one\n"


def test_clean_then_build_restores_from_cache(tmp_path):
    write(tmp_path, SINGLE)
    build(tmp_path)
    proc = run(tmp_path, "clean", check=0)
    assert "removed 1 output" in proc.stdout, describe(proc)
    assert not (tmp_path / "out/a.txt").exists()
    proc, ran = build(tmp_path)
    assert ran == [] and ok_via(proc) == {"a": "load"}, describe(proc)
    assert (tmp_path / "out/a.txt").read_text() == "a:one\n"


def test_altered_cache_blob_is_rejected_and_the_script_runs(tmp_path):
    write(tmp_path, SINGLE)
    build(tmp_path)
    cache = tmp_path / ".nodefile" / "cache"
    (m,) = manifests(cache)["a"]
    blob(cache, m["outputs"][0]["hash"]).write_text("a:ONE\n")  # same size, other bytes
    (tmp_path / "out/a.txt").unlink()
    proc, ran = build(tmp_path)
    assert ran == ["a"], describe(proc)
    assert "does not match" in proc.stderr and "'cache'" in proc.stderr, describe(proc)
    assert (tmp_path / "out/a.txt").read_text() == "a:one\n"


def test_cache_false_turns_the_local_cache_off(tmp_path):
    files = dict(SINGLE)
    files["Nodefile.toml"] = "[project]\ncache = false\n\n" + SINGLE["Nodefile.toml"].lstrip("\n")
    write(tmp_path, files)
    _, ran = build(tmp_path)
    assert ran == ["a"]
    (tmp_path / "in.txt").write_text("two\n")
    _, ran = build(tmp_path)
    assert ran == ["a"]
    (tmp_path / "in.txt").write_text("one\n")
    proc, ran = build(tmp_path)
    assert ran == ["a"], describe(proc)  # nothing to load from: the script runs again
    assert (tmp_path / "out/a.txt").read_text() == "a:one\n"
    cache = tmp_path / ".nodefile" / "cache"
    assert not cache.exists() or not any(p.is_file() for p in cache.rglob("*")), \
        sorted(map(str, cache.rglob("*")))
    # the replaced outputs are kept under .nodefile/previous/ instead (nothing is lost)
    assert any(p.is_file() for p in (tmp_path / ".nodefile" / "previous").rglob("*"))


def test_directory_output_round_trips_through_the_cache(team):
    a, _ = team
    before = tree(a / "plots")
    assert set(before) == {"a.txt", "sub/b.txt", "sub/deep/c.bin"}
    (a / "data/raw.txt").write_text("changed\n")
    _, ran = build(a)
    assert sorted(ran) == ["clean", "model", "plots"]
    assert tree(a / "plots") != before
    (a / "data/raw.txt").write_text(TEAM_SOURCES["data/raw.txt"])
    proc, ran = build(a)
    assert ran == [], describe(proc)
    assert ok_via(proc) == {"clean": "load", "model": "load", "plots": "load"}, describe(proc)
    assert tree(a / "plots") == before


# -- recipe lists ----------------------------------------------------------------------------
def test_first_recipe_fails_second_builds_and_log_shows_both(tmp_path):
    write(tmp_path, {
        "Nodefile.toml": """
            [nodes.a]
            outputs = "a.txt"
            recipes = [
              { shell = "echo first >> runs.log; echo about to fail; exit 3" },
              { shell = "echo second >> runs.log; echo built > {outputs}" },
            ]
            """,
    })
    proc = run(tmp_path, "build", check=0)
    assert runs(tmp_path) == ["first", "second"], describe(proc)
    assert (tmp_path / "a.txt").read_text() == "built\n"
    assert "exited with status 3" in proc.stderr and "trying the next recipe" in proc.stderr, describe(proc)
    assert ok_via(proc) == {"a": "shell#2"}, describe(proc)

    log = run(tmp_path, "log", "a", check=0)
    heads = re.findall(r"^== a: attempt (\d+), recipe (\S+) \((\w+)\): (\w+)", log.stdout, re.M)
    assert heads == [("1", "shell", "shell", "failed"), ("2", "shell#2", "shell", "ok")], describe(log)
    assert "exited with status 3" in log.stdout and "about to fail" in log.stdout, describe(log)


# -- gc -------------------------------------------------------------------------------------
def test_gc_frees_the_cache_of_removed_nodes_and_keeps_the_others(tmp_path):
    nodefile_ab = """
        [nodes.a]
        outputs = "a.txt"
        inputs = ["in.txt"]
        python = "tasks/a.py"

        [nodes.b]
        outputs = "b.bin"
        python = "tasks/b.py"
        """
    write(tmp_path, {
        "Nodefile.toml": nodefile_ab,
        "in.txt": "one\n",
        "tasks/a.py": counter_py("a", """
            open(job.outputs[0], "w").write("a:" + open(job.inputs[0]).read())
            """),
        "tasks/b.py": counter_py("b", """
            open(job.outputs[0], "wb").write(bytes(range(256)) * 200)   # 51200 bytes
            """),
    })
    _, ran = build(tmp_path)
    assert sorted(ran) == ["a", "b"]
    cache = tmp_path / ".nodefile" / "cache"
    (mb,) = manifests(cache)["b"]
    (ma,) = manifests(cache)["a"]
    b_blob = blob(cache, mb["outputs"][0]["hash"])
    a_blob = blob(cache, ma["outputs"][0]["hash"])
    assert b_blob.is_file() and a_blob.is_file()

    write(tmp_path, {"Nodefile.toml": nodefile_ab.split("[nodes.b]")[0]})
    proc = run(tmp_path, "gc", check=0)
    assert parse_bytes(proc.stdout) >= 51200, describe(proc)
    assert "removed 1 cache entry" in proc.stdout, describe(proc)
    assert "1 node(s) no longer in the Nodefile" in proc.stdout, describe(proc)
    assert not b_blob.exists() and not mb["_path"].exists()
    assert a_blob.is_file() and ma["_path"].is_file()

    # a, still in the Nodefile, kept its entry: edit then revert its input -> the cache
    (tmp_path / "in.txt").write_text("two\n")
    _, ran = build(tmp_path)
    assert ran == ["a"]
    (tmp_path / "in.txt").write_text("one\n")
    proc, ran = build(tmp_path)
    assert ran == [] and ok_via(proc) == {"a": "load"}, describe(proc)

    # a second gc has nothing of the cache left to free
    proc = run(tmp_path, "gc", check=0)
    assert "removed 0 cache entries" in proc.stdout, describe(proc)


# -- stores: a local folder ----------------------------------------------------------------------
def test_fresh_clone_fetches_every_node_from_the_store(tmp_path):
    store = tmp_path / "store"  # the same absolute path in every clone
    a = team_project(tmp_path / "A", str(store))
    proc, ran = build(a)
    assert sorted(ran) == ["clean", "model", "plots"], describe(proc)
    assert set(manifests(store)) == {"clean", "model", "plots"}, describe(proc)

    b = clone(a, tmp_path / "B", TEAM_FILES)
    proc, ran = build(b)
    assert ran == [], describe(proc)
    assert ok_via(proc) == {"clean": "fetch", "model": "fetch", "plots": "fetch"}, describe(proc)
    for rel in TEAM_OUTPUTS:
        assert same_file(a / rel, b / rel), rel
    assert tree(b / "plots") == tree(a / "plots")
    # fetched nodes are up to date, and a local copy went into B's cache
    proc, ran = build(b)
    assert ran == [] and ok_via(proc) == {}, describe(proc)
    assert set(manifests(b / ".nodefile" / "cache")) == {"clean", "model", "plots"}


def test_directory_output_from_the_store_replaces_a_stale_tree(team, tmp_path):
    a, store = team
    b = clone(a, tmp_path / "B", TEAM_FILES)
    write(b, {"plots/junk.txt": "left over from something else\n", "plots/sub/b.txt": "wrong\n"})
    proc, ran = build(b)
    assert ran == [], describe(proc)
    assert tree(b / "plots") == tree(a / "plots"), describe(proc)


def test_altered_blob_is_rejected_and_the_next_recipe_runs(team, tmp_path):
    a, store = team
    (m,) = manifests(store)["model"]
    entry = next(o for o in m["outputs"] if o["path"] == "models/model.bin")
    target = blob(store, entry["hash"])
    data = bytearray(target.read_bytes())
    data[100] ^= 0xFF  # same size, different bytes
    target.write_bytes(bytes(data))

    b = clone(a, tmp_path / "B", TEAM_FILES)
    proc, ran = build(b)  # exit 0
    assert ran == ["model"], describe(proc)
    assert ok_via(proc) == {"clean": "fetch", "model": "python", "plots": "fetch"}, describe(proc)
    warning = [l for l in proc.stderr.splitlines() if "does not match" in l]
    assert warning and "'team'" in warning[0] and "model" in warning[0], describe(proc)
    for rel in TEAM_OUTPUTS:
        assert same_file(a / rel, b / rel), rel
    log = run(b, "log", "model", check=0)
    assert re.search(r"recipe fetch \(fetch\): failed - .*does not match", log.stdout), describe(log)


def test_rebuild_after_a_rejected_fetch_repairs_the_store(team, tmp_path):
    """After a rejected (corrupt) fetch, the rebuild's push must leave a store that
    the next teammate can fetch from; otherwise every clone rebuilds forever."""
    a, store = team
    (m,) = manifests(store)["model"]
    entry = next(o for o in m["outputs"] if o["path"] == "models/model.bin")
    target = blob(store, entry["hash"])
    data = bytearray(target.read_bytes())
    data[100] ^= 0xFF
    target.write_bytes(bytes(data))

    b = clone(a, tmp_path / "B", TEAM_FILES)
    _, ran = build(b)
    assert ran == ["model"]
    c = clone(a, tmp_path / "C", TEAM_FILES)
    proc, ran = build(c)
    assert ran == [], describe(proc)
    assert same_file(a / "models/model.bin", c / "models/model.bin")


def test_manifest_naming_a_path_outside_the_outputs_writes_nothing_there(team, tmp_path):
    a, store = team
    (m,) = manifests(store)["clean"]
    path = m.pop("_path")
    m["outputs"][0]["path"] = "../../evil"
    path.write_text(json.dumps(m))

    b = clone(a, tmp_path / "B", TEAM_FILES)
    proc, ran = build(b)
    assert ran == ["clean"], describe(proc)
    assert ok_via(proc)["clean"] == "python", describe(proc)
    assert "outside its outputs" in proc.stderr and "'team'" in proc.stderr, describe(proc)
    assert not (b / "../../evil").exists()
    assert not os.path.lexists(os.path.normpath(b / "../../evil"))
    assert not [p for p in tmp_path.rglob("evil*")]
    assert same_file(a / "data/clean.txt", b / "data/clean.txt")


def test_directory_manifest_escaping_its_folder_writes_nothing_there(team, tmp_path):
    a, store = team
    (m,) = manifests(store)["plots"]
    path = m.pop("_path")
    m["outputs"][0]["files"][0]["rel"] = "../../../../evil"
    path.write_text(json.dumps(m))

    b = clone(a, tmp_path / "B", TEAM_FILES)
    proc, ran = build(b)
    assert ran == ["plots"], describe(proc)
    assert "escapes it" in proc.stderr and "'team'" in proc.stderr, describe(proc)
    assert not [p for p in tmp_path.rglob("evil*")]
    assert not os.path.lexists(tmp_path.parent / "evil")
    assert tree(b / "plots") == tree(a / "plots")


def test_unusable_local_store_is_a_failed_attempt_not_a_crash(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store should be\n")
    a = team_project(tmp_path / "A", str(blocker))
    proc, ran = build(a)  # exit 0
    assert sorted(ran) == ["clean", "model", "plots"], describe(proc)
    assert "Traceback" not in proc.stderr, describe(proc)
    assert "store 'team'" in proc.stderr, describe(proc)
    assert blocker.read_text() == "a file where the store should be\n"


def test_status_shows_where_a_stale_node_would_come_from(tmp_path):
    store = tmp_path / "store"
    nodes = "".join(f"""
        [nodes.{n}]
        outputs = "{n}.txt"
        inputs = ["{n}_in.txt"]
        recipes = [{{ fetch = "team" }}, {{ python = "tasks/copy.py" }}]
        """ for n in ("c", "s", "r"))
    files = {
        "Nodefile.toml": f'[stores.team]\nurl = "{store}"\npush = true\n' + nodes,
        "c_in.txt": "c\n", "s_in.txt": "s\n", "r_in.txt": "r\n",
        "tasks/copy.py": counter_py("copy", """
            open(job.outputs[0], "w").write(open(job.inputs[0]).read())
            """),
    }
    a = write(tmp_path / "A", files)
    build(a)
    b = clone(a, tmp_path / "B", files)
    # c: fetched into B (a copy is kept in B's cache), then pruned from the store and deleted
    _, ran = build(b, "c")
    assert ran == []
    for m in manifests(store)["c"]:
        m["_path"].unlink()
    (b / "c.txt").unlink()
    # s: only in the store;  r: its input changed, so nowhere: it must be rebuilt
    (b / "r_in.txt").write_text("r changed\n")

    proc = run(b, "status", check=0)
    rows = {line.split()[0]: line for line in proc.stdout.splitlines()[1:] if line.strip()}
    assert re.search(r"\bcache\b", rows["c"]), describe(proc)
    assert "store team" in rows["s"], describe(proc)
    assert "rebuild (python)" in rows["r"], describe(proc)

    dry = run(b, "build", "-n", check=0)
    assert re.search(r"would run\s+c\s+\(cache\)", dry.stdout), describe(dry)
    assert re.search(r"would run\s+s\s+\(store team\)", dry.stdout), describe(dry)
    assert re.search(r"would run\s+r\s+\(rebuild \(python\)\)", dry.stdout), describe(dry)

    proc, ran = build(b)
    assert ran == ["copy"], describe(proc)
    assert ok_via(proc) == {"c": "load", "s": "fetch", "r": "python"}, describe(proc)


def test_pull_restores_from_the_store_without_running_recipes(team, tmp_path):
    a, store = team
    b = clone(a, tmp_path / "B", TEAM_FILES)
    proc = run(b, "pull", check=0)
    assert runs(b) == [], describe(proc)
    assert "pulled 3 node(s)" in proc.stdout, describe(proc)
    for rel in TEAM_OUTPUTS:
        assert same_file(a / rel, b / rel), rel
    proc, ran = build(b)
    assert ran == [] and ok_via(proc) == {}, describe(proc)

    # a node the store does not hold: pull says so and still runs nothing
    (b / "data/raw.txt").write_text("something new\n")
    proc = run(b, "pull", check=1)
    assert runs(b) == [], describe(proc)
    assert "not found in any store" in proc.stdout, describe(proc)


def test_adding_a_store_and_fetch_recipe_rebuilds_nothing(tmp_path):
    """fetch recipes are not in the key: a team that adds a store later pushes
    what it has, and nothing is rebuilt."""
    write(tmp_path, SINGLE)
    build(tmp_path)
    store = tmp_path / "shared"
    write(tmp_path, {"Nodefile.toml": f'[stores.team]\nurl = "{store}"\n'
                     + SINGLE["Nodefile.toml"].replace('python = "tasks/a.py"',
                                                       'recipes = [{ fetch = "team" }, { python = "tasks/a.py" }]')})
    proc, ran = build(tmp_path)
    assert ran == [] and ok_via(proc) == {}, describe(proc)
    proc = run(tmp_path, "push", "--store", "team", check=0)
    assert "pushed 1 artifact(s) to team" in proc.stdout, describe(proc)
    assert set(manifests(store)) == {"a"}


def test_push_store_uploads_up_to_date_nodes(tmp_path):
    backup = tmp_path / "backup"
    nodefile = TEAM_NODEFILE.replace("@URL@", str(backup)).replace("@OPTIONS@", "") \
        .replace("push = true", "push = false").replace("[stores.team]", "[stores.backup]") \
        .replace('fetch = "team"', 'fetch = "backup"')
    a = write(tmp_path / "A", {"Nodefile.toml": nodefile, **TEAM_SOURCES})
    build(a)
    assert not backup.exists() or not manifests(backup)  # push = false: nothing uploaded

    proc = run(a, "push", check=2)  # no store has push = true and none is named
    assert "--store" in proc.stderr, describe(proc)
    assert "Traceback" not in proc.stderr

    (a / "tasks/plots.py").write_text(TEAM_SOURCES["tasks/plots.py"] + "# edited\n")  # plots is stale
    proc = run(a, "push", "--store", "backup", check=0)
    assert "pushed 2 artifact(s) to backup" in proc.stdout, describe(proc)
    assert "1 stale node(s) not pushed" in proc.stdout, describe(proc)
    assert set(manifests(backup)) == {"clean", "model"}

    proc = run(a, "push", "--store", "nowhere", check=2)
    assert "no such store" in proc.stderr, describe(proc)

    b = clone(a, tmp_path / "B", [*TEAM_FILES])
    proc, ran = build(b)
    assert ran == ["plots"], describe(proc)
    assert ok_via(proc) == {"clean": "fetch", "model": "fetch", "plots": "python"}, describe(proc)
    for rel in ["data/clean.txt", "models/model.bin", "models/metrics.json"]:
        assert same_file(a / rel, b / rel), rel


def test_teammate_fetches_a_new_model_instead_of_retraining_it(tmp_path):
    """SPEC §1: one person builds, everyone else fetches. Here teammate B has run a
    quick shell step and fetched the model once; A then retrains for new data and
    pushes. B's next build must fetch the new model, not start the (never run
    here, in real life 3-hour) training script."""
    store = tmp_path / "store"
    files = {
        "Nodefile.toml": f"""
            [stores.team]
            url = "{store}"
            push = true

            [nodes.prep]
            outputs = "prep.txt"
            inputs = ["q.txt"]
            shell = "cat q.txt > prep.txt"

            [nodes.model]
            outputs = "model.bin"
            inputs = ["d.txt"]
            recipes = [{{ fetch = "team" }}, {{ python = "tasks/train.py" }}]
            """,
        "q.txt": "q\n",
        "d.txt": "data v1\n",
        "tasks/train.py": counter_py("train", """
            import hashlib, time
            time.sleep(0.5)  # stands in for hours of training
            block = hashlib.sha256(open(job.inputs[0], "rb").read()).digest() * (1 << 15)
            with open(job.outputs[0], "wb") as f:  # 20 MiB
                for i in range(20):
                    f.write(i.to_bytes(8, "little") + block[8:])
            """),
    }
    a = write(tmp_path / "A", files)
    _, ran = build(a)
    assert ran == ["train"]
    b = clone(a, tmp_path / "B", files)
    proc, ran = build(b)
    assert ran == [] and ok_via(proc) == {"prep": "shell", "model": "fetch"}, describe(proc)

    (a / "d.txt").write_text("data v2\n")
    _, ran = build(a)
    assert ran == ["train"]
    (b / "d.txt").write_text("data v2\n")  # B pulls the new data with git
    explain = run(b, "explain", "model").stdout
    proc, ran = build(b)
    assert ran == [], f"B retrained instead of fetching:\n{describe(proc)}\n--- explain (before) ---\n{explain}"
    assert ok_via(proc) == {"model": "fetch"}, describe(proc)
    assert same_file(a / "model.bin", b / "model.bin")


# -- an interrupted fetch ---------------------------------------------------------------------
BIG_MB = 200


def test_interrupted_fetch_leaves_no_partial_output(tmp_path):
    store = tmp_path / "store"
    files = {
        "Nodefile.toml": f"""
            [stores.team]
            url = "{store}"
            push = true

            [nodes.big]
            outputs = "big.bin"
            recipes = [{{ fetch = "team" }}, {{ python = "tasks/big.py" }}]
            """,
        "tasks/big.py": counter_py("big", f"""
            import os
            block = os.urandom(1 << 20)
            with open(job.outputs[0], "wb") as out:  # incompressible, every MiB different
                for i in range({BIG_MB}):
                    out.write(i.to_bytes(8, "little") + block[8:])
            """),
    }
    a = write(tmp_path / "A", files)
    b = clone(a, tmp_path / "B", files)
    try:
        _, ran = build(a)
        assert ran == ["big"]
        assert (a / "big.bin").stat().st_size == BIG_MB << 20

        tmp = b / ".nodefile" / "tmp"

        def partial():
            try:
                for d, _, names in os.walk(tmp):
                    for n in names:
                        if os.path.getsize(os.path.join(d, n)) > 0:
                            return True
            except OSError:
                pass
            return proc.poll() is not None

        with open(tmp_path / "killed.out", "w") as out:
            proc = subprocess.Popen([sys.executable, "-m", "nodefile", "build"], cwd=b, env=base_env(),
                                    stdout=out, stderr=subprocess.STDOUT)
            try:
                wait_for(partial, timeout=30, interval=0.001, what="a temporary file under .nodefile/tmp")
                if proc.poll() is not None:
                    pytest.skip("the fetch finished before it could be interrupted (a reflink copy?)")
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
                seen = [(str(p.relative_to(b)), p.stat().st_size) for p in tmp.rglob("*") if p.is_file()]
                print(f"killed the fetch with {seen} under .nodefile/tmp")
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        out_path = b / "big.bin"
        # never a partial file under the output's name
        assert not out_path.exists() or same_file(a / "big.bin", out_path), \
            f"partial output: {out_path.stat().st_size} of {BIG_MB << 20} bytes"
        assert runs(b) == []

        proc, ran = build(b)
        assert ran == [], describe(proc)
        assert ok_via(proc) == {"big": "fetch"}, describe(proc)
        assert same_file(a / "big.bin", out_path)
        assert not [p for p in tmp.rglob("*") if p.is_file()]  # the partial copy was cleared
    finally:
        shutil.rmtree(a, ignore_errors=True)  # 1 GB of test data: do not keep it around
        shutil.rmtree(b, ignore_errors=True)
        shutil.rmtree(store, ignore_errors=True)


# -- stores: S3 through moto -----------------------------------------------------------------------
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


class MotoServer:
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
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
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


S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
          "AWS_EC2_METADATA_DISABLED": "true", "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}


@pytest.fixture
def s3(tmp_path, monkeypatch):
    _import_s3()
    for k, v in S3_ENV.items():  # for the boto3 client of this process too
        monkeypatch.setenv(k, v)
    server = MotoServer(tmp_path)
    try:
        wait_for(server.answers, timeout=30, interval=0.1, what="the moto server")
        import boto3
        client = boto3.client("s3", endpoint_url=server.endpoint, aws_access_key_id="testing",
                              aws_secret_access_key="testing", region_name="us-east-1")
        client.create_bucket(Bucket="team-bucket")
        server.client = client
        yield server
    finally:
        server.stop()


def test_s3_store_push_fetch_and_unreachable_fallback(s3, tmp_path):
    options = ('options = { key = "testing", secret = "testing", client_kwargs = { endpoint_url = "%s" }, '
               'config_kwargs = { connect_timeout = 1, retries = { max_attempts = 1 } } }' % s3.endpoint)
    env = base_env(**S3_ENV, AWS_CONFIG_FILE=tmp_path / "no-aws-config",
                   AWS_SHARED_CREDENTIALS_FILE=tmp_path / "no-aws-credentials")
    url = "s3://team-bucket/churn"
    a = team_project(tmp_path / "A", url, options)
    proc, ran = build(a, env=env)
    assert sorted(ran) == ["clean", "model", "plots"], describe(proc)
    keys = [o["Key"] for o in s3.client.list_objects_v2(Bucket="team-bucket", Prefix="churn/")["Contents"]]
    assert sum(k.startswith("churn/manifests/") for k in keys) == 3, keys
    assert sum(k.startswith("churn/blobs/") for k in keys) == 5, keys  # plots/a.txt == data/clean.txt

    b = clone(a, tmp_path / "B", TEAM_FILES)
    proc, ran = build(b, env=env)
    assert ran == [], describe(proc)
    assert ok_via(proc) == {"clean": "fetch", "model": "fetch", "plots": "fetch"}, describe(proc)
    for rel in TEAM_OUTPUTS:
        assert same_file(a / rel, b / rel), rel

    s3.stop()  # the same store, now unreachable: one node is enough (each request waits ~1 s)
    c = clone(a, tmp_path / "C", TEAM_FILES)
    t0 = time.monotonic()
    proc, ran = build(c, "clean", env=env, timeout=60)
    took = time.monotonic() - t0
    assert ran == ["clean"], describe(proc)
    assert "Traceback" not in proc.stderr, describe(proc)
    assert re.search(r"clean: store 'team' is unreachable", proc.stderr), describe(proc)
    assert "clean: could not push to store 'team'" in proc.stderr, describe(proc)
    assert same_file(a / "data/clean.txt", c / "data/clean.txt")
    assert took < 20, f"an unreachable store made the build take {took:.1f}s\n{describe(proc)}"
    print(f"build with the S3 server down took {took:.1f}s")


def test_previous_keeps_the_last_outputs_of_each_kind(tmp_path):
    # a file output rebuilt over an earlier kept copy, a directory output likewise, and
    # an output declared first as a file and then as a folder: each time the last
    # outputs are kept under .nodefile/previous/ and the new ones are whole
    write(tmp_path, {
        "Nodefile.toml": """
            [project]
            cache = false

            [nodes.f]
            outputs = "f.txt"
            inputs = ["in.txt"]
            shell = "cp in.txt f.txt"

            [nodes.d]
            outputs = "d/"
            inputs = ["in.txt"]
            shell = "mkdir -p d && cp in.txt d/x.txt"
            """,
        "in.txt": "v1\n",
    })
    prev = tmp_path / ".nodefile" / "previous"
    for version in ("v2", "v3"):
        (tmp_path / "in.txt").write_text(f"{version}\n")
        proc = run(tmp_path, "build", check=0)
        assert "built 2" in proc.stdout, describe(proc)
    assert (tmp_path / "f.txt").read_text() == "v3\n" and (tmp_path / "d/x.txt").read_text() == "v3\n"
    assert (prev / "f" / "last" / "f.txt").read_text() == "v2\n"
    assert (prev / "d" / "last" / "d" / "x.txt").read_text() == "v2\n"
    # the same path, now a folder output: the kept file gives way to the kept folder
    nf = (tmp_path / "Nodefile.toml").read_text()
    (tmp_path / "Nodefile.toml").write_text(nf.replace('outputs = "f.txt"', 'outputs = "f.txt/"').replace(
        'shell = "cp in.txt f.txt"', 'shell = "mkdir -p f.txt && cp in.txt f.txt/y"'))
    os.remove(tmp_path / "f.txt")
    os.mkdir(tmp_path / "f.txt")
    (tmp_path / "f.txt" / "old").write_text("old\n")
    proc = run(tmp_path, "build", "f", check=0)
    assert "built 1" in proc.stdout, describe(proc)
    assert (tmp_path / "f.txt" / "y").read_text() == "v3\n" and not (tmp_path / "f.txt" / "old").exists()
    assert (prev / "f" / "last" / "f.txt" / "old").read_text() == "old\n"
