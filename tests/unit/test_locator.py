"""nodefile.config.locate: line numbers of table headers and keys (tomllib gives none)."""
from __future__ import annotations

import textwrap

from nodefile.config.locate import Locator, split_dotted

TEXT = textwrap.dedent('''\
    # a comment
    [project]
    name = "churn"

    [params]
    seed = 42
    "odd key" = 1
    'lit.key' = 2

    [nodes.clean]   # the first node
    outputs = "data/clean.csv"
      inputs = { raw = "data/raw.csv" }
    python = "tasks/clean.py"

    [nodes."my node"]
    outputs = ["a", "b"]
    shell = "touch a b"

    [ nodes . spaced ]
    outputs = "s"

    [nodes]
    inline = { outputs = "i.txt", shell = "touch i.txt" }
    ''')


def loc():
    return Locator(TEXT)


def test_headers():
    l = loc()
    assert l.line(("project",)) == 2
    assert l.line(("params",)) == 5
    assert l.line(("nodes", "clean")) == 10
    assert l.line(("nodes", "my node")) == 15
    assert l.line(("nodes", "spaced")) == 19
    assert l.line(("nodes",)) == 22


def test_keys():
    l = loc()
    assert l.line(("project",), "name") == 3
    assert l.line(("params",), "seed") == 6
    assert l.line(("nodes", "clean"), "outputs") == 11
    assert l.line(("nodes", "clean"), "inputs") == 12  # indented key
    assert l.line(("nodes", "clean"), "python") == 13
    assert l.line(("nodes", "my node"), "shell") == 17


def test_quoted_keys():
    l = loc()
    assert l.line(("params",), "odd key") == 7
    assert l.line(("params",), "lit.key") == 8


def test_missing_key_falls_back_to_its_table_header():
    l = loc()
    assert l.line(("nodes", "clean"), "priority") == 10
    assert l.line(("nodes", "my node"), "nope") == 15


def test_inline_table_node_points_at_its_line():
    l = loc()
    assert l.line(("nodes", "inline")) == 23
    assert l.line(("nodes", "inline"), "outputs") == 23


def test_unknown_table_is_none_or_parent():
    l = loc()
    assert l.line(("stores", "nas")) is None
    assert l.line(("nodes", "ghost")) == 22  # the [nodes] header is the closest thing


def test_first_occurrence_wins():
    l = Locator("[a]\nx = 1\n[b]\nx = 2\n[a.c]\nx = 3\n")
    assert l.line(("a",), "x") == 2
    assert l.line(("b",), "x") == 4
    assert l.line(("a", "c"), "x") == 6


def test_array_of_tables_header():
    l = Locator("[[items]]\nk = 1\n")
    assert l.line(("items",)) == 1
    assert l.line(("items",), "k") == 2


def test_split_dotted():
    assert split_dotted("nodes.clean") == ("nodes", "clean")
    assert split_dotted('nodes."a.b"') == ("nodes", "a.b")
    assert split_dotted("nodes . x") == ("nodes", "x")
    assert split_dotted("nodes.'q \"x\"'") == ("nodes", 'q "x"')


def test_bracket_line_inside_multiline_string_is_not_a_header():
    # `[ -f x ]` is a shell test, inside a multi-line basic string: not a table header.
    text = textwrap.dedent('''\
        [nodes.a]
        shell = """
        [ -f in.txt ]
        cp in.txt out.txt
        """
        timeout = -1
        ''')
    l = Locator(text)
    assert l.line(("nodes", "a"), "timeout") == 6


def test_dotted_keys_are_located():
    # TOML dotted keys are ordinary TOML: `inputs.raw = ...` defines key `inputs` of the node
    text = textwrap.dedent('''\
        [nodes.a]
        outputs = "a"
        inputs.raw = "missing.csv"
        shell = "x"

        [nodes]
        b.outputs = "b"
        b.timeout = -1
        ''')
    l = Locator(text)
    assert l.line(("nodes", "a"), "inputs") == 3
    assert l.line(("nodes", "b"), "timeout") == 8
    assert l.line(("nodes", "b")) == 7
