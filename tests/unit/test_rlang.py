"""nodefile.recipes.rlang: Python (TOML) values -> R source, per SPEC §4 "Values in R".

The text is checked directly, and (when Rscript is on PATH) every case is also
evaluated by R in one Rscript run and checked there. Without Rscript the R checks
skip, unless NODEFILE_REQUIRE_R=1, where they fail.
"""
from __future__ import annotations

import datetime as dt
import math
import os
import shutil
import subprocess

import pytest

from nodefile.recipes.rlang import r_named_list, r_string, r_value


# -- the generated text ----------------------------------------------------------------------

@pytest.mark.parametrize("value,text", [
    (None, "NULL"),
    (True, "TRUE"),
    (False, "FALSE"),
    (5, "5L"),
    (0, "0L"),
    (-7, "-7L"),
    (2147483647, "2147483647L"),
    (-2147483647, "-2147483647L"),
    (0.5, "0.5"),
    (1.0, "1.0"),
    (math.nan, "NaN"),
    (math.inf, "Inf"),
    (-math.inf, "-Inf"),
    ("plain", '"plain"'),
    ('q"b\\', '"q\\"b\\\\"'),
    ("a\nb\tc\rd", '"a\\nb\\tc\\rd"'),
    ("caf\u00e9", '"caf\\U{e9}"'),
    ([], "list()"),
    ({}, "structure(list(), names = character(0))"),
    ([1, 2, 3], "c(1L, 2L, 3L)"),
    (["a", "b"], 'c("a", "b")'),
    ([True, False], "c(TRUE, FALSE)"),
    ([1, "a"], 'list(1L, "a")'),
    ({"a b": 1}, 'structure(list(1L), names = c("a b"))'),
    (dt.date(2024, 1, 2), '"2024-01-02"'),
])
def test_r_value_text(value, text):
    assert r_value(value) == text


@pytest.mark.parametrize("big", [2147483648, -2147483648, 2 ** 40, 10 ** 20, -(10 ** 20)])
def test_ints_beyond_r_integer_become_doubles(big):
    text = r_value(big)
    assert not text.endswith("L")
    assert float(text) == float(big)


def test_strings_are_pure_ascii_source():
    text = r_string("\u00fc\u2603\U0001F600\x01\x7f")
    assert text.isascii()


def test_r_named_list_text():
    assert r_named_list([]) == "list()"
    assert r_named_list([(None, "a"), (None, "b")]) == 'list("a", "b")'
    assert r_named_list([("raw", "a.csv"), (None, ["b", "c"])]) == \
        'structure(list("a.csv", c("b", "c")), names = c("raw", ""))'


def test_array_of_ints_and_floats_is_a_list_whatever_the_int_size():
    # SPEC: "an array of one scalar type an atomic vector, any other array a list".
    # [1, 1.5] is a list; an integer that happens to exceed R's range must not change that.
    assert r_value([1, 1.5]).startswith("list(")
    assert r_value([2 ** 40, 1.5]).startswith("list(")


# -- evaluated by R ------------------------------------------------------------------------

def cps(s: str) -> str:
    """An R expression for the code points of s (independent of r_string)."""
    return "c(" + ", ".join(f"{ord(c)}L" for c in s) + ")" if s else "integer(0)"


TRICKY = [
    "plain",
    'say "hi"',
    "back\\slash and \\n literally",
    "line1\nline2\r\n\ttab",
    "it's $HOME #no {brace} %d `tick`",
    "caf\u00e9 \u00fc\u00df \u2603 \U0001F600 \u4e2d\u6587",
    "\\U{41} and \\x41 stay literal",
    "ctrl\x01\x1b\x7f",
    " ",
]

# id -> (python value, R expression that must be TRUE for x)
CASES = {
    "int": (5, "identical(x, 5L)"),
    "int_zero": (0, "identical(x, 0L)"),
    "int_negative": (-7, "identical(x, -7L)"),
    "int_max": (2147483647, "is.integer(x) && x == 2147483647L"),
    "int_min_representable": (-2147483647, "is.integer(x) && x == -2147483647L"),
    "int_over": (2147483648, "is.double(x) && x == 2147483648"),
    "int_na_value": (-2147483648, "is.double(x) && !is.na(x) && x == -2147483648"),
    "int_huge": (10 ** 20, "is.double(x) && x == 1e20"),
    "float": (0.5, "identical(x, 0.5)"),
    "float_whole": (1.0, "is.double(x) && identical(x, 1)"),
    "float_tenth": (0.1, "identical(x, 0.1)"),
    "float_max": (1.7976931348623157e308, "identical(x, .Machine$double.xmax)"),
    "float_tiny": (5e-324, "x > 0 && x == 4.940656458412465e-324"),
    "float_neg_zero": (-0.0, "identical(x, 0) && 1 / x == -Inf"),
    "float_exp": (1e16, "identical(x, 1e16)"),
    "nan": (math.nan, "is.nan(x)"),
    "inf": (math.inf, "identical(x, Inf)"),
    "neg_inf": (-math.inf, "identical(x, -Inf)"),
    "true": (True, "identical(x, TRUE)"),
    "false": (False, "identical(x, FALSE)"),
    "null": (None, "is.null(x)"),
    "empty_string": ("", 'identical(x, "")'),
    **{f"string_{i}": (s, f"is.character(x) && length(x) == 1L && identical(utf8ToInt(x), {cps(s)})")
       for i, s in enumerate(TRICKY)},
    "vec_int": ([1, 2, 3], "identical(x, c(1L, 2L, 3L))"),
    "vec_dbl": ([0.5, 1.5, math.nan, math.inf], "is.double(x) && identical(x[1:2], c(0.5, 1.5)) && "
                                                 "is.nan(x[3]) && x[4] == Inf"),
    "vec_chr": (["a", "b b", 'q"'], 'identical(x, c("a", "b b", "q\\""))'),
    "vec_lgl": ([True, False], "identical(x, c(TRUE, FALSE))"),
    "vec_int_with_big": ([1, 2 ** 40], "is.double(x) && identical(x, c(1, 1099511627776))"),
    "mixed_int_str": ([1, "a"], 'identical(x, list(1L, "a"))'),
    "mixed_int_dbl": ([1, 2.5], "identical(x, list(1L, 2.5))"),
    "mixed_int_bool": ([1, True], "identical(x, list(1L, TRUE))"),
    "nested": ([[1, 2], [3], ["a"]], 'identical(x, list(c(1L, 2L), 3L, "a"))'),
    "empty_list": ([], "identical(x, list())"),
    "table": ({"a b": 1, 'q"uote': "v", "back\\slash": 2.5, "caf\u00e9": True, "x": [1, 2]},
              'is.list(x) && identical(names(x), c("a b", "q\\"uote", "back\\\\slash", "caf\\u00e9", "x")) && '
              'identical(x[["a b"]], 1L) && identical(x[["q\\"uote"]], "v") && identical(x$x, c(1L, 2L)) && '
              'identical(x[["caf\\u00e9"]], TRUE)'),
    "table_empty": ({}, "is.list(x) && length(x) == 0L && identical(names(x), character(0))"),
    "table_nested": ({"outer": {"inner key": [1, 2], "d": {}}},
                     'identical(x$outer[["inner key"]], c(1L, 2L)) && length(x$outer$d) == 0L'),
    "table_odd_keys": ({"": 1, "1": 2, "with.dot": 3, "with-dash": 4},
                       'identical(names(x), c("", "1", "with.dot", "with-dash")) && identical(x[[4]], 4L)'),
    "list_of_tables": ([{"model": "a", "seed": 1}, {"model": "b", "seed": 7}],
                       'is.list(x) && identical(x[[2]]$model, "b") && identical(x[[2]]$seed, 7L)'),
    "date": (dt.date(2024, 1, 2), 'identical(x, "2024-01-02")'),
    "datetime": (dt.datetime(2024, 1, 2, 3, 4, 5), 'identical(x, "2024-01-02T03:04:05")'),
    "datetime_tz": (dt.datetime(2024, 1, 2, 3, 4, 5, 500000, tzinfo=dt.timezone(dt.timedelta(hours=1))),
                    'identical(x, "2024-01-02T03:04:05.500000+01:00")'),
    "time": (dt.time(3, 4, 5), 'identical(x, "03:04:05")'),
    "vec_dates": ([dt.date(2024, 1, 2), dt.date(2024, 2, 3)], 'identical(x, c("2024-01-02", "2024-02-03"))'),
}

NAMED = {
    "named_inputs": ([("raw", "data/raw.csv"), (None, ["a b.csv", "c.csv"]), ("q\"x y", "z")],
                     'identical(names(x), c("raw", "", "q\\"x y")) && identical(x$raw, "data/raw.csv") && '
                     'identical(x[[2]], c("a b.csv", "c.csv")) && identical(x[[3]], "z")'),
    "unnamed_inputs": ([(None, "a"), (None, "b")], 'is.null(names(x)) && identical(x, list("a", "b"))'),
    "no_inputs": ([], "identical(x, list())"),
}


def _rscript():
    exe = shutil.which("Rscript")
    if exe is None:
        if os.environ.get("NODEFILE_REQUIRE_R") == "1":
            pytest.fail("Rscript is not on PATH and NODEFILE_REQUIRE_R=1")
        pytest.skip("Rscript is not on PATH")
    return exe


@pytest.fixture(scope="module")
def r_results(tmp_path_factory):
    """Evaluate every case in one Rscript run: case id -> "TRUE" / "FALSE" / "ERROR ..."."""
    exe = _rscript()
    d = tmp_path_factory.mktemp("rcases")
    sources = {**{k: r_value(v) for k, (v, _) in CASES.items()},
               **{k: r_named_list(v) for k, (v, _) in NAMED.items()}}
    checks = {**{k: c for k, (_, c) in CASES.items()}, **{k: c for k, (_, c) in NAMED.items()}}
    for k in sources:
        # each case in its own file: a syntax error in one cannot hide the others
        (d / f"{k}.R").write_text(f"x <- {sources[k]}\n{checks[k]}\n", encoding="utf-8")
    driver = d / "driver.R"
    driver.write_text(
        "files <- sort(list.files(commandArgs(trailingOnly = TRUE)[1], pattern = '[.]R$', full.names = TRUE))\n"
        "for (f in files) {\n"
        "  if (basename(f) == 'driver.R') next\n"
        "  res <- tryCatch({ v <- eval(parse(file = f, encoding = 'UTF-8'), envir = new.env());"
        "    if (isTRUE(v)) 'TRUE' else paste('FALSE', paste(deparse(v), collapse = ' ')) },\n"
        "    error = function(e) paste('ERROR', gsub('\\n', ' ', conditionMessage(e))))\n"
        "  cat(sub('[.]R$', '', basename(f)), '\\t', res, '\\n', sep = '')\n"
        "}\n")
    proc = subprocess.run([exe, str(driver), str(d)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = {}
    for line in proc.stdout.splitlines():
        k, _, res = line.partition("\t")
        out[k] = res
    return out, sources


@pytest.mark.parametrize("case", sorted(CASES) + sorted(NAMED))
def test_round_trip_in_r(r_results, case):
    results, sources = r_results
    assert results.get(case) == "TRUE", f"R source: {sources[case]}\nR said: {results.get(case)}"


def test_dput_of_a_node_like_list(tmp_path):
    """The shape recipes see: names, integer params, a vector input, via dput()."""
    exe = _rscript()
    src = r_named_list([("raw", "data/raw file.csv"), ("parts", ["p/a.csv", "p/b.csv"])])
    params = r_value({"seed": 42, "alpha": 0.5, "tags": ["x", "y"]})
    code = f"inputs <- {src}; params <- {params}; dput(inputs); dput(params)"
    proc = subprocess.run([exe, "-e", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    text = "".join(proc.stdout.split())  # dput wraps long lines: compare without whitespace
    assert 'list(raw="data/rawfile.csv",parts=c("p/a.csv","p/b.csv"))' in text
    assert 'list(seed=42L,alpha=0.5,tags=c("x","y"))' in text
