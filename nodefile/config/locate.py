"""A Nodefile (or template) as the loader sees it: its TOML read (read_toml),
and line numbers for its keys, which tomllib does not report (Locator), which
every problem found in it carries (Ctx).

The Locator is a light line scanner: it tracks `[table]` headers and `key =`
lines. Good enough to point a user at the right line; when a key is not found,
the table's header line is used.
"""
from __future__ import annotations

import re

from ..errors import ConfigError, Problem
from .schema import did_you_mean

try:  # tomli's wheels are compiled (mypyc): 3x faster than the standard library's
    import tomli as tomllib  # copy of it (7.5 against 24 ms for 1,000 nodes)
except ImportError:  # pragma: no cover - a pure-Python install: the same parser
    import tomllib

_HEADER = re.compile(r"^\s*\[\[?\s*(.+?)\s*\]\]?\s*(?:#.*)?$")
_KEYPART = r"""(?:"(?:[^"\\]|\\.)*"|'[^']*'|[A-Za-z0-9_\-]+)"""
_KEY = re.compile(rf"^\s*({_KEYPART}(?:\s*\.\s*{_KEYPART})*)\s*=")
_PART = re.compile(r"""\s*("(?:[^"\\]|\\.)*"|'[^']*'|[A-Za-z0-9_\-]+)\s*(?:\.|$)""")


def split_dotted(text: str) -> tuple[str, ...]:
    parts = []
    pos = 0
    while pos < len(text):
        m = _PART.match(text, pos)
        if not m:
            return tuple(p.strip() for p in text.split("."))
        parts.append(_unquote(m.group(1)))
        pos = m.end()
    return tuple(parts)


def _unquote(s: str) -> str:
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'":
        return s[1:-1]
    return s


class Locator:
    """Table headers are found when the text is read (one cheap pass: a node's line is
    its header's); key lines only when a message first asks for one (a full scan)."""

    def __init__(self, text: str):
        self.text = text
        self.headers: dict[tuple, int] = {}
        self._keys: dict[tuple, int] | None = None
        in_string = None  # the delimiter of a multi-line string we are inside
        for no, line in enumerate(text.splitlines(), 1):
            if in_string:
                if line.count(in_string) % 2 == 1:
                    in_string = None
                continue
            if line.lstrip().startswith("["):  # a key line never starts with "["
                m = _HEADER.match(line)
                if m:
                    self.headers.setdefault(split_dotted(m.group(1)), no)
                    continue
            if '"""' in line or "'''" in line:
                in_string = _opens(line)

    @property
    def keys(self) -> dict[tuple, int]:
        if self._keys is None:
            self._keys = _key_lines(self.text)
        return self._keys

    def line(self, table: tuple, key: str | None = None) -> int | None:
        if key is not None:
            if table + (key,) in self.keys:
                return self.keys[table + (key,)]
            full = table + (key,)
            under = [no for h, no in self.headers.items() if h[:len(full)] == full]
            if under:  # a table known only through dotted headers: [node.a]
                return min(under)
            # a node written as an inline table: `clean = { ... }` under [nodes]
            for i in range(len(table), 0, -1):
                if table[:i] in self.keys:
                    return self.keys[table[:i]]
        if table in self.headers:
            return self.headers[table]
        for i in range(len(table) - 1, 0, -1):
            if table[:i] + (table[i],) in self.keys:
                return self.keys[table[:i] + (table[i],)]
            if table[:i] in self.headers:
                return self.headers[table[:i]]
        return None


def _opens(line: str) -> str | None:
    """The multi-line string delimiter a line leaves open, if any."""
    for delim in ('"""', "'''"):
        if line.count(delim) % 2 == 1:
            return delim
    return None


def _key_lines(text: str) -> dict[tuple, int]:
    """Every `key =` line, by its full dotted path under its table."""
    keys: dict[tuple, int] = {}
    table: tuple = ()
    in_string = None
    for no, line in enumerate(text.splitlines(), 1):
        if in_string:
            if line.count(in_string) % 2 == 1:
                in_string = None
            continue
        m = _HEADER.match(line)
        if m and not _KEY.match(line):
            table = split_dotted(m.group(1))
            continue
        k = _KEY.match(line)
        if k:
            dotted = split_dotted(k.group(1))
            for i in range(1, len(dotted) + 1):
                keys.setdefault(table + dotted[:i], no)
        in_string = _opens(line)
    return keys


def read_toml(path: str, display: str) -> tuple[dict, str]:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ConfigError(f"{display}: cannot read: {e.strerror}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{display}: not UTF-8 ({e.reason} at byte {e.start})")
    try:
        return tomllib.loads(text), text
    except RecursionError:  # tomli refuses arrays/tables nested over 400 deep this way
        raise ConfigError([Problem("invalid TOML: arrays or tables nested too deep", display)])
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
        line = int(m.group(1)) if m else None
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", msg)
        raise ConfigError([Problem(f"invalid TOML: {msg}", display, line)])
    except ValueError as e:  # an integer of more than 4,300 digits
        raise ConfigError([Problem(f"invalid TOML: {str(e).split(';')[0]}", display)])


class Ctx:
    """One Nodefile or template: its display name, line locator, and the
    project-wide list of problems it reports into."""

    def __init__(self, display: str, text: str, problems: list | None = None, path: str = ""):
        self.display = display
        self.path = path
        self.loc = Locator(text)
        self.problems: list[Problem] = problems if problems is not None else []

    def err(self, msg: str, table: tuple = (), key: str | None = None) -> None:
        keyname = ".".join(table + ((key,) if key else ()))
        self.problems.append(Problem(msg, self.display, self.loc.line(table, key), keyname))

    def unknown_keys(self, table_value: dict, allowed, table: tuple, what: str = "key") -> None:
        """An error, with a did-you-mean, for every key not in `allowed`."""
        for k in table_value:
            if k not in allowed:
                self.err(f"unknown {what} '{k}'{did_you_mean(k, allowed)}", table, k)
