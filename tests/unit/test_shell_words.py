"""Which shell recipes run without /bin/sh (as make does): plain words only."""
from __future__ import annotations

import pytest

from nodefile.recipes import simple_words


@pytest.mark.parametrize("line, argv", [
    ("touch out/n1", ["touch", "out/n1"]),
    ("touch 'a b' c", ["touch", "a b", "c"]),
    ("  cp   -p  x 'y z'  ", ["cp", "-p", "x", "y z"]),
    ("python3 tool.py --n=3", ["python3", "tool.py", "--n=3"]),
    ("cp ''a'b' c", ["cp", "ab", "c"]),
    ("cp x ''", ["cp", "x", ""]),
])
def test_plain_words_become_the_argv(line, argv):
    assert simple_words(line) == argv


@pytest.mark.parametrize("line", [
    "echo hi",  # a builtin: the shell's own behaviour (echo -e, printf) must not change
    "cd sub && make",
    "A=1 tool",
    "tool > out",
    "tool | gzip",
    "tool $HOME",
    "tool ~/x",
    'tool "x"',
    "tool *.csv",
    "tool a; tool b",
    "tool `date`",
    "tool \\x",
    "./script.sh",  # a path may name a script without a #! line, which only sh runs
    "sub/tool a",
    "tool 'unclosed",
    "tool # comment",
    "if true",
    "",
    "   ",
])
def test_anything_the_shell_interprets_keeps_the_shell(line):
    assert simple_words(line) is None


def _reference(line):
    """The general rule (shlex after the quote-aware check), for comparison."""
    import re
    import shlex
    from nodefile.recipes import _SHELL_CHARS, _SHELL_WORDS
    unquoted = re.sub(r"'[^']*'", "", line)
    if "'" in unquoted or not _SHELL_CHARS.isdisjoint(unquoted):
        return None
    words = shlex.split(line)
    if not words or words[0] in _SHELL_WORDS or "=" in words[0] or "/" in words[0]:
        return None
    return words


def test_the_quick_split_agrees_with_shlex_on_random_lines():
    import random
    rng = random.Random(3)
    alphabet = "ab/.-_=  \t" + "x" * 5 + "'$;#*"
    for _ in range(3000):
        line = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 14)))
        assert simple_words(line) == _reference(line), repr(line)
