"""Python values -> R source text, following SPEC §4 "Values in R".

TOML integers -> R integers (doubles beyond R's 32-bit range), floats -> doubles
(NaN, Inf, -Inf), strings -> character, booleans -> logical, arrays of one
scalar type -> atomic vectors, other arrays -> lists, tables -> named lists
(names kept exactly), dates and times -> ISO strings.
"""
from __future__ import annotations

import datetime as dt
import math

_INT_MAX = 2147483647


def r_string(s: str) -> str:
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\x{o:02x}")
        elif o > 0x7E:
            out.append(f"\\U{{{o:x}}}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _scalar_type(v):
    if isinstance(v, bool):
        return "lgl"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "dbl"
    if isinstance(v, str):
        return "chr"
    if isinstance(v, (dt.date, dt.time, dt.datetime)):
        return "chr"
    return None


def r_value(v) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, int):
        return f"{v}L" if -_INT_MAX <= v <= _INT_MAX else repr(float(v))
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "Inf" if v > 0 else "-Inf"
        return repr(v)
    if isinstance(v, str):
        return r_string(v)
    if isinstance(v, (dt.datetime, dt.date, dt.time)):
        return r_string(v.isoformat())
    if isinstance(v, dict):
        if not v:
            return "structure(list(), names = character(0))"
        vals = ", ".join(r_value(x) for x in v.values())
        names = ", ".join(r_string(str(k)) for k in v.keys())
        return f"structure(list({vals}), names = c({names}))"
    if isinstance(v, (list, tuple)):
        if not v:
            return "list()"
        types = {_scalar_type(x) for x in v}
        if types == {"int"} and any(not -_INT_MAX <= x <= _INT_MAX for x in v):
            # beyond R's 32-bit integers the whole vector becomes double
            return "c(" + ", ".join(repr(float(x)) for x in v) + ")"
        if len(types) == 1 and None not in types:
            return "c(" + ", ".join(r_value(x) for x in v) + ")"
        return "list(" + ", ".join(r_value(x) for x in v) + ")"
    return r_string(str(v))


def r_named_list(items) -> str:
    """items: [(name or None, value)] -> an R list, named where any name is given."""
    items = list(items)
    if not items:
        return "list()"
    vals = ", ".join(r_value(v) for _, v in items)
    if all(n is None for n, _ in items):
        return f"list({vals})"
    names = ", ".join(r_string(n or "") for n, _ in items)
    return f"structure(list({vals}), names = c({names}))"
