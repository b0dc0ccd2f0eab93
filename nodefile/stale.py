"""Staleness: compare a node's current key parts and outputs with its record.

Pure: given the current parts, key and output hashes (from hashing) and the
record (from state), return a Verdict with typed reasons.
"""
from __future__ import annotations

import json

from .model import NodeRecord, Reason, ReasonKind as R, Status, Verdict


def check(name: str, parts: dict, key: str, record: NodeRecord | None, outputs: dict,
          forced: bool | str = False) -> Verdict:
    """outputs: declared output path -> current hash (None when missing). forced: why
    the node runs anyway ("-B", "--force", "always = true"; True is "-B")."""
    if record is None or not record.key:
        missing = all(h is None for h in outputs.values())
        return Verdict(name, Status.MISSING if missing else Status.STALE, (Reason(R.NEVER_BUILT),), key)
    reasons: list[Reason] = []
    if forced:
        reasons.append(Reason(R.FORCED, forced if isinstance(forced, str) else "-B"))
    if record.incomplete:
        reasons.append(Reason(R.INCOMPLETE))
    if record.key != key:
        reasons.extend(diff_parts(json.loads(record.parts or "{}"), parts))
        if all(r.kind is R.FORCED for r in reasons):  # none, or only the forcing
            reasons.append(Reason(R.RECIPE_CHANGED, "key"))
    built = json.loads(record.outputs or "{}")
    for path, h in outputs.items():
        if h is None:
            reasons.append(Reason(R.OUTPUT_MISSING, path))
        elif built.get(path) != h:
            reasons.append(Reason(R.OUTPUT_CHANGED, path, built.get(path), h))
    if not reasons:
        return Verdict(name, Status.UP_TO_DATE, (), key)
    missing = all(h is None for h in outputs.values()) and bool(outputs)
    return Verdict(name, Status.MISSING if missing else Status.STALE, tuple(reasons), key)


_PREFIX = {
    "script": R.SCRIPT_CHANGED,
    "import": R.IMPORT_CHANGED,
    "code": R.CODE_CHANGED,
    "param": R.PARAM_CHANGED,
    "wildcard": R.WILDCARD_CHANGED,
}


def diff_parts(old: dict, new: dict) -> list[Reason]:
    out: list[Reason] = []
    for k, v in new.items():
        if k in old and old[k] == v:
            continue
        prefix, _, subject = k.partition(":")
        o = old.get(k)
        if prefix == "input":
            if k not in old:
                out.append(Reason(R.INPUT_ADDED, subject))
            elif v is None:
                out.append(Reason(R.INPUT_MISSING, subject))
            else:
                out.append(Reason(R.INPUT_CHANGED, subject, o, v))
        elif prefix in _PREFIX:
            out.append(Reason(_PREFIX[prefix], subject, o, v))
        elif k == "format":
            out.append(Reason(R.FORMAT_CHANGED, "", o, v))
        elif k == "outputs":
            out.append(Reason(R.OUTPUTS_CHANGED))
        elif k == "recipes":
            out.append(Reason(R.RECIPE_CHANGED, "command, args or env"))
        elif k == "inputs":
            if all(not x.startswith("input:") for x in set(new) ^ set(old)):
                out.append(Reason(R.INPUT_CHANGED, "the declared inputs"))
    for k in old:
        if k not in new:
            prefix, _, subject = k.partition(":")
            if prefix == "input":
                out.append(Reason(R.INPUT_REMOVED, subject))
            elif prefix in _PREFIX:
                out.append(Reason(_PREFIX[prefix], subject, old[k], None))
    return out
