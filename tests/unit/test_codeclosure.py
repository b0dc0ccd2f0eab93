"""Code per function (codeclosure.py): which definitions a function's key holds."""
from __future__ import annotations

import textwrap

import pytest

from nodefile.closure import Closure
from nodefile.hashing import Hasher
from nodefile.model import Node, Recipe
from nodefile.state import State
from nodefile import values


@pytest.fixture
def state(tmp_path):
    s = State(str(tmp_path / ".nodefile"))
    yield s
    s.close()


def parts(root, state, target):
    node = Node("n", (), (), (), (Recipe("call", target, "call"),), "", "Nodefile.toml")
    return Closure(str(root), Hasher(str(root), state)).code(node, node.recipes[0])


def write(root, files):
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))


def test_only_what_the_function_uses_transitively(tmp_path, state):
    write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/util.py": """
            RATE = 3
            def scale(v):
                return v * RATE
            def other():
                return 0
            """,
        "pkg/mod.py": """
            import json
            from . import util
            from .util import scale as sc
            LIMIT = 10
            class Box:
                size = LIMIT
            def helper(x):
                return sc(x)
            def fn(data, limit=LIMIT):
                local = helper(data)
                return util.other() + Box.size + json.dumps(local)
            def unrelated():
                return helper(1)
            """})
    got = parts(tmp_path, state, "pkg.mod:fn")
    assert sorted(got) == ["code:pkg/mod.py:Box", "code:pkg/mod.py:LIMIT", "code:pkg/mod.py:fn",
                           "code:pkg/mod.py:helper", "code:pkg/util.py:RATE", "code:pkg/util.py:other",
                           "code:pkg/util.py:scale"]


def test_comments_do_not_count_and_edits_do(tmp_path, state):
    write(tmp_path, {"m.py": "def f(x):\n    return x + 1\n"})
    before = parts(tmp_path, state, "m:f")
    write(tmp_path, {"m.py": "def f(x):\n    # one more\n\n    return x + 1  # same\n"})
    assert parts(tmp_path, state, "m:f") == before
    write(tmp_path, {"m.py": "def f(x):\n    return x + 2\n"})
    assert parts(tmp_path, state, "m:f") != before


def test_a_star_import_counts_as_the_whole_module(tmp_path, state):
    write(tmp_path, {"h.py": "def g():\n    return 1\n", "m.py": "from h import *\ndef f():\n    return g()\n"})
    assert sorted(parts(tmp_path, state, "m:f")) == ["code:m.py:f", "import:h.py"]


@pytest.mark.parametrize("value, fmt, head", [({"a": 1}, "auto", b"\x80"), ([1, 2], "json", b"[")])
def test_values_round_trip_and_are_sniffed(tmp_path, value, fmt, head):
    p = str(tmp_path / "v")
    values.save(value, p, fmt)
    assert open(p, "rb").read(1) == head
    assert values.load(p) == value


def test_numpy_arrays_are_npy(tmp_path):
    np = pytest.importorskip("numpy")
    p = str(tmp_path / "a")
    assert values.save(np.arange(4), p) == "npy"
    assert values.load(p).tolist() == [0, 1, 2, 3]
    assert values.save(np.array([{"x": 1}], dtype=object), p) == "pickle"
