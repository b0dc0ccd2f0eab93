"""Placeholders in `args`, `shell` and `env`: {inputs}, {inputs.NAME}, {inputs[0]},
the same for outputs, {params.NAME}, {WILDCARD}, {node}; {{ and }} are literal braces.
"""
from __future__ import annotations

import posixpath
import re
import shlex

_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")
_REF = re.compile(r"^(inputs|outputs)(?:\.([^\[\].]+)|\[(\d+)\])?$|^params\.(.+)$|^node$|^([A-Za-z_][A-Za-z0-9_]*)$")


class PlaceholderError(ValueError):
    pass


def names_in(template: str) -> list[str]:
    return [m.group(1) for m in _TOKEN.finditer(template) if m.group(1) is not None]


def resolve(ref: str, ctx: dict) -> list[str]:
    """The value(s) a placeholder stands for, as a list of strings.

    ctx: {"inputs": [(name, [paths])...], "outputs": [...], "params": {}, "wildcards": {}, "node": str}
    """
    m = _REF.match(ref.strip())
    if not m:
        raise PlaceholderError(f"unknown placeholder {{{ref}}}")
    group, name, index, param, wildcard = m.groups()
    if group:
        entries = ctx[group]
        if name is None and index is None:
            return [p for _, paths in entries for p in paths]
        if index is not None:
            i = int(index)
            if i >= len(entries):
                raise PlaceholderError(f"{{{ref}}}: the node has {len(entries)} {group}")
            return list(entries[i][1])
        for n, paths in entries:
            if n == name:
                return list(paths)
        known = ", ".join(n for n, _ in entries if n) or "none are named"
        raise PlaceholderError(f"{{{ref}}}: no {group[:-1]} named '{name}' ({known})")
    if param is not None:
        if param not in ctx["params"]:
            raise PlaceholderError(f"{{{ref}}}: the node does not declare param '{param}'")
        return [_fmt(ctx["params"][param])]
    if ref.strip() == "node":
        return [ctx["node"]]
    if wildcard in ctx.get("wildcards", {}):
        return [str(ctx["wildcards"][wildcard])]
    raise PlaceholderError(f"unknown placeholder {{{ref}}}")


def toml_text(value) -> str:
    """A scalar as TOML writes it (booleans are true/false): for placeholders, matrix
    values in paths and instance names, args and env, template ${NAME} in strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _fmt(value) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(_fmt(v) for v in value)
    return toml_text(value)


def substitute(template: str, ctx: dict, quote: bool = False) -> str:
    def repl(m: re.Match) -> str:
        tok = m.group(0)
        if tok == "{{":
            return "{"
        if tok == "}}":
            return "}"
        values = resolve(m.group(1), ctx)
        return " ".join(shlex.quote(v) if quote else v for v in values)

    return _TOKEN.sub(repl, template)


def expand_args(args, ctx: dict) -> list[str]:
    """A placeholder that is a whole element and names several paths becomes several arguments."""
    out: list[str] = []
    for a in args:
        m = _TOKEN.fullmatch(a)
        if m and m.group(1) is not None:
            out.extend(resolve(m.group(1), ctx))
        else:
            out.append(substitute(a, ctx))
    return out


def relative_to(path: str, cwd: str) -> str:
    """A project-relative path as seen from the recipe's working directory."""
    if not cwd or posixpath.isabs(path):
        return path
    trail = "/" if path.endswith("/") else ""
    return posixpath.relpath(path, cwd) + trail


def placeholder_context(node) -> dict:
    """What a node's placeholders stand for ({inputs}, {outputs.name}, {params.x}, ...)."""
    return {
        "inputs": [(e.name, [relative_to(p, node.cwd) for p in e.paths]) for e in node.inputs],
        "outputs": [(e.name, [relative_to(p, node.cwd) for p in e.paths]) for e in node.outputs],
        "params": node.params_dict,
        "wildcards": dict(node.wildcards),
        "node": node.name,
    }
