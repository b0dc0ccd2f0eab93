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
    groups = _REFS.get(ref)
    if groups is None:
        m = _REF.match(ref.strip())
        if not m:
            raise PlaceholderError(f"unknown placeholder {{{ref}}}")
        groups = m.groups()
        if len(_REFS) < 4096:
            _REFS[ref] = groups
    group, name, index, param, wildcard = groups
    if group:
        entries = ctx[group]
        if name is None and index is None:
            return [p for _, paths in entries for p in paths]
        if index is not None:
            i = int(index) if len(index) < 10 else len(entries)  # {inputs[<5,000 digits>]}: no int()
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


_REFS: dict = {}  # placeholder text -> its parsed parts (_REF's groups)
_TEMPLATES: dict = {}  # template -> [text, placeholder, text, placeholder, ..., text]


def _split(template: str) -> list:
    """A template as literal texts (with {{ and }} made single) around its placeholders,
    parsed once per distinct template: a build fills the same few for every node."""
    parts = _TEMPLATES.get(template)
    if parts is None:
        parts, text, pos = [], [], 0
        for m in _TOKEN.finditer(template):
            text.append(template[pos:m.start()])
            pos = m.end()
            if m.group(1) is None:
                text.append(m.group(0)[0])  # {{ or }}
            else:
                parts += ["".join(text), m.group(1)]
                text = []
        text.append(template[pos:])
        parts.append("".join(text))
        if len(_TEMPLATES) < 4096:
            _TEMPLATES[template] = parts
    return parts


def substitute(template: str, ctx: dict, quote: bool = False) -> str:
    parts = _split(template)
    if len(parts) == 1:
        return parts[0]
    out = [parts[0]]
    for i in range(1, len(parts), 2):
        values = resolve(parts[i], ctx)
        out.append(" ".join(shlex.quote(v) for v in values) if quote else " ".join(values))
        out.append(parts[i + 1])
    return "".join(out)


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


def stdout_path(node, template: str) -> str:
    """The project-relative output a recipe's `stdout = "..."` names (a placeholder such
    as {outputs.results}, or a path relative to the recipe's folder); PlaceholderError
    when it is not exactly one of the node's file outputs."""
    values = expand_args([template], placeholder_context(node))
    if len(values) != 1:
        raise PlaceholderError(f"stdout '{template}' names {len(values)} paths; it must name one output")
    path = posixpath.normpath(posixpath.join(node.cwd, values[0]))
    if path not in node.output_paths:
        outs = ", ".join(node.output_paths) or "none"
        raise PlaceholderError(f"stdout '{template}' is not one of the node's file outputs ({outs})")
    return path
