"""nodefile.stale: verdicts with typed reasons, from key parts and the node's record."""
from __future__ import annotations

import json

import pytest

from nodefile.model import NodeRecord, Reason, ReasonKind as R, Status
from nodefile.stale import check, diff_parts

H1, H2, H3 = "1" * 32, "2" * 32, "3" * 32
OUT1, OUT2 = "a" * 32, "b" * 32


def parts(**over):
    p = {
        "format": "1",
        "outputs": json.dumps([[None, ["out.csv"]]]),
        "recipes": json.dumps([{"kind": "python", "target": "t.py", "args": [], "env": []}]),
        "script:t.py": H1,
        "import:lib/util.py": H2,
        "param:alpha": "0.5",
        "inputs": json.dumps([["raw", ["raw.csv"]]]),
        "input:raw.csv": H3,
    }
    for k, v in over.items():
        k = k.replace("__", ":").replace("_SLASH_", "/")
        if v is ...:
            p.pop(k, None)
        else:
            p[k] = v
    return p


def record(p, key="K", outputs=None, incomplete=0):
    return NodeRecord(key=key, parts=json.dumps(p), outputs=json.dumps(outputs or {"out.csv": OUT1}),
                      incomplete=incomplete)


def kinds(v):
    return [r.kind for r in v.reasons]


# -- check ---------------------------------------------------------------------------------

def test_never_built_with_no_outputs_is_missing():
    v = check("n", parts(), "K", None, {"out.csv": None})
    assert v.status is Status.MISSING and v.stale
    assert v.reasons == (Reason(R.NEVER_BUILT),) and v.key == "K" and v.node == "n"


def test_never_built_with_outputs_present_is_stale():
    v = check("n", parts(), "K", None, {"out.csv": OUT1})
    assert v.status is Status.STALE and kinds(v) == [R.NEVER_BUILT]


def test_record_without_key_counts_as_never_built():
    v = check("n", parts(), "K", NodeRecord(key=None, parts=None, outputs=None), {"out.csv": OUT1})
    assert kinds(v) == [R.NEVER_BUILT]


def test_up_to_date():
    p = parts()
    v = check("n", p, "K", record(p), {"out.csv": OUT1})
    assert v.status is Status.UP_TO_DATE and not v.stale and v.reasons == ()


def test_forced_is_stale_even_when_up_to_date():
    p = parts()
    v = check("n", p, "K", record(p), {"out.csv": OUT1}, forced=True)
    assert v.status is Status.STALE and kinds(v) == [R.FORCED]


def test_incomplete_previous_build():
    p = parts()
    v = check("n", p, "K", record(p, incomplete=1), {"out.csv": OUT1})
    assert v.stale and kinds(v) == [R.INCOMPLETE]


def test_script_changed():
    v = check("n", parts(**{"script__t.py": "9" * 32}), "K2", record(parts()), {"out.csv": OUT1})
    assert v.status is Status.STALE
    assert v.reasons == (Reason(R.SCRIPT_CHANGED, "t.py", H1, "9" * 32),)
    assert str(v.reasons[0]) == "script changed: t.py (111111111111 -> 999999999999)"


def test_imported_file_changed():
    v = check("n", parts(**{"import__lib/util.py": H1}), "K2", record(parts()), {"out.csv": OUT1})
    assert v.reasons == (Reason(R.IMPORT_CHANGED, "lib/util.py", H2, H1),)


def test_input_changed():
    v = check("n", parts(**{"input__raw.csv": H1}), "K2", record(parts()), {"out.csv": OUT1})
    assert v.reasons == (Reason(R.INPUT_CHANGED, "raw.csv", H3, H1),)


def test_input_added():
    new = parts(**{"inputs": json.dumps([["raw", ["raw.csv"]], [None, ["extra.csv"]]]),
                   "input__extra.csv": H2})
    v = check("n", new, "K2", record(parts()), {"out.csv": OUT1})
    assert v.reasons == (Reason(R.INPUT_ADDED, "extra.csv"),)


def test_input_removed():
    new = parts(**{"inputs": json.dumps([]), "input__raw.csv": ...})
    v = check("n", new, "K2", record(parts()), {"out.csv": OUT1})
    assert v.reasons == (Reason(R.INPUT_REMOVED, "raw.csv"),)


def test_input_missing_now():
    v = check("n", parts(**{"input__raw.csv": None}), "K2", record(parts()), {"out.csv": OUT1})
    assert kinds(v) == [R.INPUT_MISSING]


def test_inputs_reordered_or_renamed():
    new = parts(inputs=json.dumps([["data", ["raw.csv"]]]))
    v = check("n", new, "K2", record(parts()), {"out.csv": OUT1})
    assert v.reasons == (Reason(R.INPUT_CHANGED, "the declared inputs"),)


def test_param_changed_old_to_new():
    v = check("n", parts(param__alpha="0.7"), "K2", record(parts()), {"out.csv": OUT1})
    assert v.reasons == (Reason(R.PARAM_CHANGED, "alpha", "0.5", "0.7"),)
    assert str(v.reasons[0]) == "param changed: alpha (0.5 -> 0.7)"


def test_param_added_and_removed():
    new = parts(**{"param__alpha": ..., "param__seed": "7"})
    v = check("n", new, "K2", record(parts()), {"out.csv": OUT1})
    assert set(v.reasons) == {Reason(R.PARAM_CHANGED, "seed", None, "7"),
                              Reason(R.PARAM_CHANGED, "alpha", "0.5", None)}


def test_recipe_changed():
    new = parts(recipes=json.dumps([{"kind": "python", "target": "t.py", "args": ["--x"], "env": []}]))
    v = check("n", new, "K2", record(parts()), {"out.csv": OUT1})
    assert kinds(v) == [R.RECIPE_CHANGED]


def test_declared_outputs_changed():
    new = parts(outputs=json.dumps([[None, ["out.parquet"]]]))
    v = check("n", new, "K2", record(parts()), {"out.csv": OUT1})
    assert R.OUTPUTS_CHANGED in kinds(v)


def test_format_changed():
    v = check("n", parts(format="2"), "K2", record(parts()), {"out.csv": OUT1})
    assert v.reasons == (Reason(R.FORMAT_CHANGED, "", "1", "2"),)


def test_key_differs_but_no_part_does():
    # e.g. a record written by another version: still stale, with a reason
    v = check("n", parts(), "K2", record(parts()), {"out.csv": OUT1})
    assert v.stale and kinds(v) == [R.RECIPE_CHANGED]


def test_key_differs_with_force():
    v = check("n", parts(), "K2", record(parts()), {"out.csv": OUT1}, forced=True)
    assert kinds(v) == [R.FORCED, R.RECIPE_CHANGED]


def test_output_missing():
    p = parts()
    v = check("n", p, "K", record(p, outputs={"a": OUT1, "b": OUT2}), {"a": OUT1, "b": None})
    assert v.status is Status.STALE and v.reasons == (Reason(R.OUTPUT_MISSING, "b"),)


def test_all_outputs_missing_is_missing():
    p = parts()
    v = check("n", p, "K", record(p), {"out.csv": None})
    assert v.status is Status.MISSING and kinds(v) == [R.OUTPUT_MISSING]


def test_output_edited():
    p = parts()
    v = check("n", p, "K", record(p), {"out.csv": OUT2})
    assert v.status is Status.STALE
    assert v.reasons == (Reason(R.OUTPUT_CHANGED, "out.csv", OUT1, OUT2),)


def test_several_reasons_at_once():
    new = parts(**{"script__t.py": H2, "param__alpha": "1"})
    v = check("n", new, "K2", record(parts()), {"out.csv": OUT2})
    assert kinds(v) == [R.SCRIPT_CHANGED, R.PARAM_CHANGED, R.OUTPUT_CHANGED]


def test_alias_node_without_outputs_is_up_to_date_once_recorded():
    p = {"format": "1"}
    v = check("all", p, "K", NodeRecord(key="K", parts=json.dumps(p), outputs="{}", incomplete=0), {})
    assert v.status is Status.UP_TO_DATE


# -- diff_parts ------------------------------------------------------------------------------

def test_diff_parts_identical_is_empty():
    assert diff_parts(parts(), parts()) == []


@pytest.mark.parametrize("key,old,new,reason", [
    ("script:x.R", H1, H2, Reason(R.SCRIPT_CHANGED, "x.R", H1, H2)),
    ("wildcard:model", "lin", "tree", Reason(R.WILDCARD_CHANGED, "model", "lin", "tree")),
    ("param:grid", "[1, 2]", "[1, 3]", Reason(R.PARAM_CHANGED, "grid", "[1, 2]", "[1, 3]")),
])
def test_diff_parts_typed(key, old, new, reason):
    assert diff_parts({key: old}, {key: new}) == [reason]


def test_diff_parts_script_removed():
    assert diff_parts({"script:a.py": H1}, {}) == [Reason(R.SCRIPT_CHANGED, "a.py", H1, None)]


def test_reason_str_shortens_hashes_only():
    assert str(Reason(R.INPUT_CHANGED, "x", H1, None)) == "input changed: x (111111111111 -> none)"
    assert str(Reason(R.NEVER_BUILT)) == "never built"
