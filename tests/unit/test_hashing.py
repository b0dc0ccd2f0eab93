"""nodefile.hashing: xxh3-128 behind a (size, mtime_ns, ctime_ns, inode) stat cache, racy-git, node keys."""
from __future__ import annotations

import os
import time

import pytest
import xxhash

from nodefile import hashing
from nodefile.hashing import RACY_NS, Hasher, hash_bytes, hash_file_content, key_of, key_parts
from nodefile.model import Entry, Node, Recipe
from nodefile.fsclock import racy_ns
from nodefile.state import State

OLD = 10 * 1_000_000_000  # far enough in the past not to be racy


def age(path, seconds_ago: float = 60.0) -> int:
    """Set the mtime in the past; the ctime is now then, so wait out the racy window
    (a stamp recorded within it of the ctime is not trusted)."""
    ns = time.time_ns() - int(seconds_ago * 1e9)
    os.utime(path, ns=(ns, ns))
    time.sleep(racy_ns(os.stat(path).st_dev) / 1e9 + 0.002)
    return ns


@pytest.fixture
def state(tmp_path):
    s = State(str(tmp_path))
    yield s
    s.close()


@pytest.fixture
def counted(monkeypatch):
    """Count the real reads of file content."""
    calls = []
    real = hashing.hash_file_content

    def spy(path, size=None):
        calls.append(os.path.basename(path))
        return real(path, size)

    monkeypatch.setattr(hashing, "hash_file_content", spy)
    return calls


def test_hash_bytes_is_xxh3_128():
    assert hash_bytes(b"abc") == xxhash.xxh3_128_hexdigest(b"abc")
    assert len(hash_bytes(b"")) == 32


@pytest.mark.parametrize("size", [0, 5, hashing.CHUNK, hashing.CHUNK + 7, 3 * hashing.CHUNK,
                                  hashing.PIPELINE, hashing.PIPELINE + hashing.PIPE_READ // 2 + 1])
def test_hash_file_content_small_and_chunked(tmp_path, size):
    data = os.urandom(size)
    f = tmp_path / "f.bin"
    f.write_bytes(data)
    want = xxhash.xxh3_128_hexdigest(data)
    assert hash_file_content(str(f), size) == want  # two threads from PIPELINE bytes
    assert hash_file_content(str(f)) == want  # one thread


def test_file_hash_is_xxh3_of_its_bytes(tmp_path, state):
    data = b"id,value\n1,2\n\x00\xff"
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "raw.csv").write_bytes(data)
    h = Hasher(str(tmp_path), state)
    assert h.hash("data/raw.csv") == xxhash.xxh3_128_hexdigest(data)
    assert h.bytes_read == len(data)


def test_missing_file_is_none(tmp_path, state):
    h = Hasher(str(tmp_path), state)
    assert h.hash("nope.csv") is None
    assert h.hash("nope/deeper.csv") is None
    assert h.kind("nope.csv") is None


def test_file_under_a_file_is_none(tmp_path, state):
    (tmp_path / "f").write_text("x")
    assert Hasher(str(tmp_path), state).hash("f/g") is None


def test_kind(tmp_path, state):
    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_text("x")
    h = Hasher(str(tmp_path), state)
    assert h.kind("d/") == "dir" and h.kind("f") == "file"


def test_memo_within_one_hasher_and_invalidate(tmp_path, state, counted):
    f = tmp_path / "a.txt"
    f.write_text("one")
    h = Hasher(str(tmp_path), state)
    first = h.hash("a.txt")
    f.write_text("two!")
    assert h.hash("a.txt") == first  # memoised for the run
    h.invalidate(["a.txt"])
    assert h.hash("a.txt") == hash_bytes(b"two!")
    h.invalidate()
    assert h.memo == {}


def test_unchanged_stat_is_not_reread(tmp_path, state, counted):
    f = tmp_path / "a.txt"
    f.write_text("hello")
    age(f)
    assert Hasher(str(tmp_path), state).hash("a.txt") == hash_bytes(b"hello")
    assert counted == ["a.txt"]
    # a new run (fresh memo), same state: the stamp answers
    assert Hasher(str(tmp_path), state).hash("a.txt") == hash_bytes(b"hello")
    assert counted == ["a.txt"]


def test_stamp_survives_flush_and_reopen(tmp_path, counted):
    f = tmp_path / "a.txt"
    f.write_text("hello")
    age(f)
    s = State(str(tmp_path))
    Hasher(str(tmp_path), s).hash("a.txt")
    s.close()
    s2 = State(str(tmp_path))
    try:
        assert Hasher(str(tmp_path), s2).hash("a.txt") == hash_bytes(b"hello")
    finally:
        s2.close()
    assert counted == ["a.txt"]


def test_touch_without_changing_bytes_rereads_but_same_hash(tmp_path, state, counted):
    f = tmp_path / "a.txt"
    f.write_text("hello")
    age(f, 120)
    h1 = Hasher(str(tmp_path), state).hash("a.txt")
    age(f, 60)  # `touch` to another (old) time
    assert Hasher(str(tmp_path), state).hash("a.txt") == h1
    assert len(counted) == 2
    assert Hasher(str(tmp_path), state).hash("a.txt") == h1
    assert len(counted) == 2


def test_changed_stat_is_reread(tmp_path, state, counted):
    f = tmp_path / "a.txt"
    f.write_text("hello")
    age(f, 120)
    Hasher(str(tmp_path), state).hash("a.txt")
    f.write_text("hello world")
    age(f, 60)
    assert Hasher(str(tmp_path), state).hash("a.txt") == hash_bytes(b"hello world")
    assert len(counted) == 2


def test_racy_file_is_rehashed_next_time(tmp_path, state, counted):
    f = tmp_path / "a.txt"
    f.write_text("hello")  # mtime ~ now: within RACY_NS of the moment we record it
    Hasher(str(tmp_path), state).hash("a.txt")
    Hasher(str(tmp_path), state).hash("a.txt")
    assert counted == ["a.txt", "a.txt"]


def test_racy_write_with_same_size_and_mtime_is_detected(tmp_path, state):
    f = tmp_path / "a.txt"
    f.write_bytes(b"aaaa")
    st = os.stat(f)
    assert Hasher(str(tmp_path), state).hash("a.txt") == hash_bytes(b"aaaa")
    # same inode, same size, and (forced) the same mtime: only the bytes differ
    with open(f, "r+b") as fh:
        fh.write(b"bbbb")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    st2 = os.stat(f)
    assert (st2.st_size, st2.st_mtime_ns, st2.st_ino) == (st.st_size, st.st_mtime_ns, st.st_ino)
    assert Hasher(str(tmp_path), state).hash("a.txt") == hash_bytes(b"bbbb")


def test_same_size_rewrite_with_restored_mtime_is_seen_by_its_ctime(tmp_path, state):
    """cp -p, rsync -t, touch -r: size, mtime and inode as recorded, only the ctime moved."""
    f = tmp_path / "a.txt"
    f.write_bytes(b"aaaa")
    age(f)
    assert Hasher(str(tmp_path), state).hash("a.txt") == hash_bytes(b"aaaa")
    assert Hasher(str(tmp_path), state).hash("a.txt") == hash_bytes(b"aaaa")  # trusted now
    st = os.stat(f)
    time.sleep(0.01)
    with open(f, "r+b") as fh:
        fh.write(b"bbbb")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    st2 = os.stat(f)
    assert (st2.st_size, st2.st_mtime_ns, st2.st_ino) == (st.st_size, st.st_mtime_ns, st.st_ino)
    assert Hasher(str(tmp_path), state).hash("a.txt") == hash_bytes(b"bbbb")


def test_racy_stamp_becomes_trusted_once_old_enough(tmp_path, state, counted, monkeypatch):
    f = tmp_path / "a.txt"
    f.write_text("hello")
    Hasher(str(tmp_path), state).hash("a.txt")  # racy: recorded right after the write
    real = time.time_ns
    monkeypatch.setattr(hashing.time, "time_ns", lambda: real() + RACY_NS + 1_000_000_000)
    Hasher(str(tmp_path), state).hash("a.txt")  # re-hashed, and re-recorded at a later moment
    Hasher(str(tmp_path), state).hash("a.txt")  # now trusted
    assert counted == ["a.txt", "a.txt"]


def test_stamp_is_recorded_with_stat(tmp_path, state):
    f = tmp_path / "a.txt"
    f.write_text("hello")
    age(f)
    st = os.stat(f)
    Hasher(str(tmp_path), state).hash("a.txt")
    size, mtime, ino, ctime, h, recorded = state.stamps()["a.txt"]
    assert (size, mtime, ino, h) == (5, st.st_mtime_ns, st.st_ino, hash_bytes(b"hello"))
    assert recorded - mtime > RACY_NS


# -- directory trees ------------------------------------------------------------------------

def tree_hash(root, state, rel="d/"):
    return Hasher(str(root), state).hash(rel)


@pytest.fixture
def tree(tmp_path):
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    (d / "a.txt").write_text("a")
    (d / "sub" / "b.txt").write_text("b")
    return d


def test_tree_hash_is_stable_and_slash_insensitive(tmp_path, state, tree):
    h = tree_hash(tmp_path, state)
    assert h == tree_hash(tmp_path, state, "d") == tree_hash(tmp_path, state)
    assert len(h) == 32


def test_tree_hash_changes_when_a_file_inside_changes(tmp_path, state, tree):
    before = tree_hash(tmp_path, state)
    (tree / "sub" / "b.txt").write_text("B")
    assert tree_hash(tmp_path, state) != before


def test_tree_hash_changes_when_a_file_is_added(tmp_path, state, tree):
    before = tree_hash(tmp_path, state)
    (tree / "sub" / "c.txt").write_text("")
    assert tree_hash(tmp_path, state) != before


def test_tree_hash_changes_when_a_file_is_removed_or_renamed(tmp_path, state, tree):
    before = tree_hash(tmp_path, state)
    (tree / "a.txt").rename(tree / "z.txt")
    renamed = tree_hash(tmp_path, state)
    assert renamed != before
    (tree / "z.txt").unlink()
    assert tree_hash(tmp_path, state) not in (before, renamed)


def test_tree_hash_does_not_depend_on_its_location(tmp_path, state, tree):
    import shutil
    shutil.copytree(tree, tmp_path / "copy")
    assert tree_hash(tmp_path, state, "copy/") == tree_hash(tmp_path, state, "d/")


def test_empty_dir_hash_differs_from_missing(tmp_path, state):
    (tmp_path / "e").mkdir()
    assert tree_hash(tmp_path, state, "e/") is not None
    assert tree_hash(tmp_path, state, "nope/") is None


# -- node keys --------------------------------------------------------------------------------

@pytest.fixture
def files(tmp_path):
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "fit.py").write_text("print('fit')\n")
    (tmp_path / "raw.csv").write_text("a,b\n1,2\n")
    (tmp_path / "cfg.toml").write_text("x = 1\n")
    return tmp_path


def node(recipes=None, params=(("alpha", 0.5), ("seed", 42)), inputs=None, outputs=None, wildcards=()):
    if recipes is None:
        recipes = (Recipe("python", "tasks/fit.py", "python", args=("--x",)),)
    if inputs is None:
        inputs = (Entry("raw", ("raw.csv",)), Entry(None, ("cfg.toml",)))
    if outputs is None:
        outputs = (Entry("model", ("model.rds",)),)
    return Node(name="fit", outputs=outputs, inputs=inputs, params=tuple(params), recipes=tuple(recipes),
                cwd="", file="Nodefile.toml", wildcards=tuple(wildcards))


def key(n, root, state, closure=None):
    return key_of(key_parts(n, Hasher(str(root), state), closure))


def test_key_parts_components(files, state):
    p = key_parts(node(), Hasher(str(files), state))
    assert list(p) == ["format", "outputs", "recipes", "script:tasks/fit.py", "param:alpha", "param:seed",
                       "inputs", "input:raw.csv", "input:cfg.toml"]
    assert p["script:tasks/fit.py"] == hash_bytes(b"print('fit')\n")
    assert p["input:raw.csv"] == hash_bytes(b"a,b\n1,2\n")
    assert p["param:alpha"] == "0.5"


def test_same_inputs_same_key(files, state):
    k1 = key(node(), files, state)
    assert key(node(), files, state) == k1
    assert len(k1) == 32


def test_param_order_does_not_matter(files, state):
    assert key(node(params=(("seed", 42), ("alpha", 0.5))), files, state) == key(node(), files, state)


def test_param_value_changes_key(files, state):
    base = key(node(), files, state)
    assert key(node(params=(("alpha", 0.6), ("seed", 42))), files, state) != base
    assert key(node(params=(("alpha", 0.5), ("seed", "42"))), files, state) != base  # type matters
    assert key(node(params=(("alpha", 0.5),)), files, state) != base


def test_input_byte_changes_key(files, state):
    base = key(node(), files, state)
    (files / "raw.csv").write_text("a,b\n1,3\n")  # same size
    assert key(node(), files, state) != base


def test_script_byte_changes_key(files, state):
    base = key(node(), files, state)
    (files / "tasks" / "fit.py").write_text("print('fix')\n")
    assert key(node(), files, state) != base


def test_missing_input_changes_key(files, state):
    base = key(node(), files, state)
    (files / "cfg.toml").unlink()
    assert key(node(), files, state) != base


def test_args_env_and_outputs_change_key(files, state):
    base = key(node(), files, state)
    assert key(node(recipes=(Recipe("python", "tasks/fit.py", "python", args=("--y",)),)), files, state) != base
    assert key(node(recipes=(Recipe("python", "tasks/fit.py", "python", args=("--x",),
                                    env=(("A", "1"),)),)), files, state) != base
    assert key(node(outputs=(Entry("model", ("model2.rds",)),)), files, state) != base


def test_wildcards_enter_key(files, state):
    assert key(node(wildcards=(("model", "lin"),)), files, state) != key(node(wildcards=(("model", "tree"),)),
                                                                        files, state)


def test_fetch_recipes_and_recipe_names_are_not_in_the_key(files, state):
    base = key(node(), files, state)
    with_fetch = node(recipes=(Recipe("fetch", "nas", "fetch"),
                               Recipe("python", "tasks/fit.py", "python", args=("--x",)),
                               Recipe("fetch", "s3", "from-s3")))
    renamed = node(recipes=(Recipe("python", "tasks/fit.py", "build-it", args=("--x",)),))
    assert key(with_fetch, files, state) == base
    assert key(renamed, files, state) == base


def test_timeout_retries_resources_are_not_in_the_key(files, state):
    base = key(node(), files, state)
    tuned = node(recipes=(Recipe("python", "tasks/fit.py", "python", args=("--x",), timeout=5.0, retries=3,
                                 resources=(("cores", 4.0),)),))
    assert key(tuned, files, state) == base


def test_code_closure_enters_the_key(files, state):
    (files / "tasks" / "util.py").write_text("X = 1\n")
    closure = lambda node, recipe: ["tasks/util.py"]  # noqa: E731
    base = key(node(), files, state, closure)
    assert key(node(), files, state) != base
    (files / "tasks" / "util.py").write_text("X = 2\n")
    assert key(node(), files, state, closure) != base
    p = key_parts(node(), Hasher(str(files), state), closure)
    assert p["import:tasks/util.py"] == hash_bytes(b"X = 2\n")


def test_input_order_matters(files, state):
    swapped = node(inputs=(Entry(None, ("cfg.toml",)), Entry("raw", ("raw.csv",))))
    assert key(swapped, files, state) != key(node(), files, state)


def test_directory_input_in_key(files, state):
    (files / "d").mkdir()
    (files / "d" / "x").write_text("1")
    n = node(inputs=(Entry(None, ("d/",)),))
    base = key(n, files, state)
    (files / "d" / "y").write_text("2")
    assert key(n, files, state) != base


def test_json_encoder_writes_what_json_dumps_writes():
    """Keys are hashed from these texts: the encoder built once must write byte for
    byte what json.dumps writes, or every project would rebuild."""
    import json
    from nodefile.hashing import compact_json, dumps, json_encoder

    class Odd:
        def __str__(self):
            return "odd"

    values = [
        [["0", ["out/a", "out/b"]], [None, []]],
        {"format": "3", "input:src/ä.csv": None, "z": [1, 2.5, -0.0, 1e300, True, False]},
        {"b": {"y": 1, "x": [1, {"k": "v\n\t\"q\""}]}, "a": "日本", "c": "\u2028"},
        "just a string", 3, 2.0, None, [], {},
    ]
    for v in values:
        assert dumps(v) == json.dumps(v)
        assert compact_json(v) == json.dumps(v, separators=(",", ":"))
        assert json_encoder(default=str, sort_keys=True)(v) == json.dumps(v, default=str, sort_keys=True)
    assert json_encoder(default=str)({"o": Odd()}) == json.dumps({"o": Odd()}, default=str)
    with pytest.raises(TypeError):  # refused, as json.dumps refuses it
        dumps({"o": Odd()})


def test_an_empty_file_hashes_as_empty_content_without_being_read(tmp_path):
    (tmp_path / "empty").write_bytes(b"")
    assert hash_file_content(str(tmp_path / "empty"), 0) == hash_bytes(b"") == hashing.EMPTY
    os.mkfifo(tmp_path / "fifo")  # reading it would wait for a writer forever
    assert hash_file_content(str(tmp_path / "fifo"), 0) == hash_bytes(b"")
    (tmp_path / "full").write_bytes(b"x")
    assert hash_file_content(str(tmp_path / "full"), 1) == hash_bytes(b"x") != hashing.EMPTY
