"""The parsed-project cache: reused only when nothing it was made from changed."""
import os
import textwrap
import time

import pytest

from nodefile.config import load_project
from nodefile.config import cache as pcache


def _age(path, seconds=10):
    """Make a file old enough that its stat can be trusted (outside the racy window)."""
    t = time.time() - seconds
    os.utime(path, (t, t))


@pytest.fixture
def proj(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tpl.toml").write_text(textwrap.dedent("""
        [template]
        needs = ["x"]
        [nodes.t]
        outputs = "t-${x}.txt"
        shell = "echo ${x} > {outputs}"
        """))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.csv").write_text("a")
    (tmp_path / "Nodefile.toml").write_text(textwrap.dedent("""
        [params]
        seed = 1
        [nodes.n]
        outputs = "n.txt"
        inputs = ["data/*.csv"]
        params = ["seed"]
        shell = "cat {inputs} > {outputs}"
        [use.u]
        template = "tpl.toml"
        with = { x = "one" }
        """))
    for f in ("tpl.toml", "Nodefile.toml"):
        _age(tmp_path / f)
    return tmp_path


def _parses(monkeypatch):
    calls = []
    from nodefile.config import load as loadmod
    real = loadmod._Builder.build

    def counting(self):
        calls.append(1)
        return real(self)
    monkeypatch.setattr(loadmod._Builder, "build", counting)
    return calls


def test_an_unchanged_project_is_not_parsed_again(proj, monkeypatch):
    calls = _parses(monkeypatch)
    p1 = load_project()
    p2 = load_project()
    assert len(calls) == 1
    assert list(p2.nodes) == list(p1.nodes) and p2.nodes["n"].inputs == p1.nodes["n"].inputs


def test_edits_to_the_nodefile_or_a_template_are_seen(proj, monkeypatch):
    calls = _parses(monkeypatch)
    load_project()
    (proj / "tpl.toml").write_text((proj / "tpl.toml").read_text().replace("echo", "printf"))
    _age(proj / "tpl.toml", 5)
    assert "printf" in load_project().nodes["u.t"].recipes[0].target
    (proj / "Nodefile.toml").write_text((proj / "Nodefile.toml").read_text().replace("seed = 1", "seed = 2"))
    _age(proj / "Nodefile.toml", 5)
    assert load_project().nodes["n"].params_dict == {"seed": 2}
    assert len(calls) == 3


def test_a_new_file_matching_a_glob_is_seen(proj, monkeypatch):
    load_project()
    (proj / "data" / "b.csv").write_text("b")
    assert load_project().nodes["n"].input_paths == ("data/a.csv", "data/b.csv")


def test_overrides_and_check_do_not_reuse_an_entry(proj, monkeypatch):
    calls = _parses(monkeypatch)
    load_project()
    assert load_project(overrides={"seed": 5}).nodes["n"].params_dict == {"seed": 5}
    load_project(use_cache=False)
    assert len(calls) == 3


def test_a_fresh_nodefile_is_not_cached(proj, monkeypatch):
    """Within the racy window a same-size edit could keep the stat: never cache then."""
    (proj / "Nodefile.toml").write_text((proj / "Nodefile.toml").read_text())
    calls = _parses(monkeypatch)
    load_project()
    load_project()
    assert len(calls) == 2
    assert not (proj / ".nodefile" / "projects").exists() or not os.listdir(proj / ".nodefile" / "projects")


def test_a_damaged_entry_is_ignored(proj, monkeypatch):
    load_project()
    (entry,) = (proj / ".nodefile" / "projects").iterdir()
    entry.write_bytes(b"not a pickle")
    assert "n" in load_project().nodes
    assert pcache.VERSION >= 1


def _unpickles(monkeypatch):
    import pickle
    calls = []
    real = pickle.load

    def counting(f, *a, **k):
        calls.append(1)
        return real(f, *a, **k)
    monkeypatch.setattr(pcache.pickle, "load", counting)
    return calls


def test_an_edited_nodefile_is_seen_without_unpickling_the_old_project(proj, monkeypatch):
    """An entry is a small header then the project: a stale header is enough to say no."""
    load_project()
    loads = _unpickles(monkeypatch)
    assert load_project().nodes["n"].params_dict == {"seed": 1}
    assert len(loads) == 2  # header, then the project
    loads.clear()
    (proj / "Nodefile.toml").write_text((proj / "Nodefile.toml").read_text().replace("seed = 1", "seed = 3"))
    _age(proj / "Nodefile.toml", 5)
    assert load_project().nodes["n"].params_dict == {"seed": 3}
    assert len(loads) == 1  # the header only


def test_an_entry_with_a_damaged_project_is_parsed_again(proj, monkeypatch):
    load_project()
    (entry,) = (proj / ".nodefile" / "projects").iterdir()
    data = entry.read_bytes()
    import io
    import pickle
    buf = io.BytesIO(data)
    pickle.load(buf)  # the header stays good, the project is cut short
    entry.write_bytes(data[:buf.tell() + 20])
    calls = _parses(monkeypatch)
    assert load_project().nodes["n"].params_dict == {"seed": 1}
    assert len(calls) == 1


def test_the_garbage_collector_is_back_on_after_a_load_good_or_bad(proj, monkeypatch):
    import gc
    from nodefile.errors import ConfigError
    assert gc.isenabled()
    load_project()
    assert gc.isenabled()
    (proj / "Nodefile.toml").write_text("[nodes.x]\noutputs = 3\n")
    with pytest.raises(ConfigError):
        load_project()
    assert gc.isenabled()


def test_a_one_shot_load_freezes_the_project_and_watch_does_not(proj, monkeypatch):
    """gc.freeze after a load keeps the collector off the parsed project for the
    command's life; node watch (freeze=False) must not freeze each cycle's leftovers."""
    import gc
    try:
        before = gc.get_freeze_count()
        load_project(use_cache=False, freeze=False)
        assert gc.get_freeze_count() == before
        load_project(use_cache=False, freeze=True)
        assert gc.get_freeze_count() > before
    finally:
        gc.unfreeze()
