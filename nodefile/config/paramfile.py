"""Params from a file: `[project] params = "config.toml"` (make's config.mk,
Snakemake's `configfile:`). TOML, JSON, or YAML when PyYAML is installed; the
file's top level is a table of NAME = value. The Nodefile's own [params] table
overrides the file's values, `--set` overrides both. The file is a source of the
project (config/cache.py and the no-op fast path stat it); a node's key covers
only the values it declares, so editing one value rebuilds the nodes using it.
"""
from __future__ import annotations

import os

from ..errors import ConfigError, Problem
from .locate import read_toml

FORMATS = {".toml": "toml", ".json": "json", ".yaml": "yaml", ".yml": "yaml"}


def read_params(path: str, display: str) -> dict:
    """The params a file holds; ConfigError naming the file (and line) otherwise."""
    fmt = FORMATS.get(os.path.splitext(path)[1].lower())
    if fmt is None:
        raise ConfigError(f"{display}: a params file must end in .toml, .json, .yaml or .yml")
    if fmt == "toml":
        data = read_toml(path, display)[0]
    else:
        data = _read_text_format(path, display, fmt)
    if not isinstance(data, dict):
        raise ConfigError(f"{display}: a params file must hold a table of NAME = value at its top level, "
                          f"not {type(data).__name__}")
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"{display}: param names must be strings (found {bad[0]!r})")
    nulls = [k for k, v in data.items() if v is None]
    if nulls:
        raise ConfigError(f"{display}: param '{nulls[0]}' has no value (null)")
    return data


def _read_text_format(path: str, display: str, fmt: str):
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8")
    except OSError as e:
        raise ConfigError(f"{display}: cannot read: {e.strerror}")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{display}: not UTF-8 ({e.reason} at byte {e.start})")
    if fmt == "json":
        import json
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError([Problem(f"invalid JSON: {e.msg}", display, e.lineno)])
    try:
        import yaml
    except ImportError:
        raise ConfigError(f"{display}: reading YAML needs PyYAML (pip install pyyaml), or use TOML or JSON")
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        msg = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError([Problem(f"invalid YAML: {msg}", display, mark.line + 1 if mark else None)])
