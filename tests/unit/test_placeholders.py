"""nodefile.placeholders: {inputs}, {inputs.NAME}, {inputs[0]}, outputs, params, node, braces."""
from __future__ import annotations

import shlex

import pytest

from nodefile.placeholders import PlaceholderError, expand_args, names_in, resolve, substitute


@pytest.fixture
def ctx():
    return {
        "inputs": [("raw", ["data/raw.csv"]), (None, ["lib/helpers.R"]), ("parts", ["p/a.csv", "p/b.csv"])],
        "outputs": [("model", ["models/model.rds"]), ("metrics", ["models/metrics.json"])],
        "params": {"seed": 42, "alpha": 0.5, "flag": True, "off": False, "sizes": [1, 2], "name": "a b"},
        "wildcards": {"model": "lin"},
        "node": "fit",
    }


def test_all_inputs_in_declared_order(ctx):
    assert resolve("inputs", ctx) == ["data/raw.csv", "lib/helpers.R", "p/a.csv", "p/b.csv"]
    assert substitute("cat {inputs}", ctx) == "cat data/raw.csv lib/helpers.R p/a.csv p/b.csv"


def test_named_entry(ctx):
    assert substitute("{inputs.raw}", ctx) == "data/raw.csv"
    assert substitute("{outputs.metrics}", ctx) == "models/metrics.json"
    assert resolve("inputs.parts", ctx) == ["p/a.csv", "p/b.csv"]


def test_positional_entry(ctx):
    assert substitute("{inputs[0]}", ctx) == "data/raw.csv"
    assert substitute("{inputs[1]}", ctx) == "lib/helpers.R"
    assert resolve("inputs[2]", ctx) == ["p/a.csv", "p/b.csv"]
    assert substitute("{outputs[1]}", ctx) == "models/metrics.json"


def test_all_outputs(ctx):
    assert substitute("-o {outputs}", ctx) == "-o models/model.rds models/metrics.json"


def test_params_node_and_wildcards(ctx):
    assert substitute("--seed {params.seed} --alpha={params.alpha}", ctx) == "--seed 42 --alpha=0.5"
    assert substitute("{params.flag} {params.off}", ctx) == "true false"  # TOML spelling, not Python's
    assert substitute("{node}", ctx) == "fit"
    assert substitute("fits/{model}.json", ctx) == "fits/lin.json"


def test_whitespace_inside_braces_is_tolerated(ctx):
    assert substitute("{ node }", ctx) == "fit"


def test_literal_braces(ctx):
    assert substitute("awk '{{print $1}}' {inputs.raw}", ctx) == "awk '{print $1}' data/raw.csv"
    assert substitute("{{inputs}}", ctx) == "{inputs}"
    assert substitute("{{{node}}}", ctx) == "{fit}"
    assert names_in("{{inputs}} {node}") == ["node"]


def test_names_in_lists_every_placeholder():
    assert names_in("a {inputs} b {params.x} {{lit}} {inputs[0]}") == ["inputs", "params.x", "inputs[0]"]


@pytest.mark.parametrize("ref", ["nope", "inputs.nope", "outputs.nope", "inputs[3]", "outputs[2]",
                                 "params.nope", "", "inputs.", "1abc", "params"])
def test_unknown_placeholders_raise(ctx, ref):
    with pytest.raises(PlaceholderError):
        resolve(ref, ctx)
    with pytest.raises(PlaceholderError):
        substitute("x {" + ref + "} y", ctx)


def test_error_messages_are_helpful(ctx):
    with pytest.raises(PlaceholderError, match="no input named 'nope'.*raw, parts"):
        resolve("inputs.nope", ctx)
    with pytest.raises(PlaceholderError, match="has 2 outputs"):
        resolve("outputs[2]", ctx)
    with pytest.raises(PlaceholderError, match="param 'nope'"):
        resolve("params.nope", ctx)


def test_placeholder_error_is_a_value_error():
    assert issubclass(PlaceholderError, ValueError)


# -- shell quoting -----------------------------------------------------------------------

@pytest.fixture
def nasty():
    return {
        "inputs": [("a", ["my data/raw file.csv"]), ("b", ["it's \"quoted\".csv"]), (None, ["$HOME;rm -rf x"])],
        "outputs": [(None, ["out dir/result (1).txt"])],
        "params": {"msg": "hello world; echo pwned", "q": "it's"},
        "wildcards": {},
        "node": "n",
    }


def test_shell_quoting_keeps_each_path_one_word(nasty):
    cmd = substitute("cat {inputs} > {outputs}", nasty, quote=True)
    assert shlex.split(cmd) == ["cat", "my data/raw file.csv", "it's \"quoted\".csv", "$HOME;rm -rf x",
                                ">", "out dir/result (1).txt"]


def test_shell_quoting_of_named_positional_and_params(nasty):
    cmd = substitute("tool {inputs.b} {inputs[0]} --msg {params.msg} {params.q}", nasty, quote=True)
    assert shlex.split(cmd) == ["tool", "it's \"quoted\".csv", "my data/raw file.csv",
                                "--msg", "hello world; echo pwned", "it's"]


def test_shell_quoting_leaves_literal_text_alone(nasty):
    assert substitute("echo {{x}} | sort", nasty, quote=True) == "echo {x} | sort"


def test_simple_paths_are_not_needlessly_quoted(ctx):
    assert substitute("cat {inputs.raw}", ctx, quote=True) == "cat data/raw.csv"


def test_without_quote_values_are_verbatim(nasty):
    assert substitute("{inputs.a}", nasty) == "my data/raw file.csv"


# -- args ----------------------------------------------------------------------------------

def test_whole_element_placeholder_becomes_several_arguments(ctx):
    assert expand_args(["--in", "{inputs}", "--out", "{outputs}"], ctx) == [
        "--in", "data/raw.csv", "lib/helpers.R", "p/a.csv", "p/b.csv",
        "--out", "models/model.rds", "models/metrics.json"]
    assert expand_args(["{inputs.parts}"], ctx) == ["p/a.csv", "p/b.csv"]
    assert expand_args(["{inputs[2]}"], ctx) == ["p/a.csv", "p/b.csv"]


def test_embedded_placeholder_stays_one_argument(ctx):
    assert expand_args(["--parts={inputs.parts}", "x{node}y"], ctx) == ["--parts=p/a.csv p/b.csv", "xfity"]


def test_args_keep_paths_with_spaces_as_one_argument(nasty):
    assert expand_args(["{inputs}", "{params.msg}"], nasty) == [
        "my data/raw file.csv", "it's \"quoted\".csv", "$HOME;rm -rf x", "hello world; echo pwned"]


def test_args_are_never_shell_quoted(nasty):
    assert expand_args(["--q={params.q}"], nasty) == ["--q=it's"]


def test_args_literal_braces(ctx):
    assert expand_args(["{{inputs}}", "{{", "}}", "a{{b}}c"], ctx) == ["{inputs}", "{", "}", "a{b}c"]


def test_args_without_placeholders_pass_through(ctx):
    assert expand_args(["--model", "lin", ""], ctx) == ["--model", "lin", ""]


def test_args_unknown_placeholder_raises(ctx):
    with pytest.raises(PlaceholderError):
        expand_args(["{bogus}"], ctx)
    with pytest.raises(PlaceholderError):
        expand_args(["--x={inputs.bogus}"], ctx)


def test_missing_wildcards_table_is_tolerated():
    c = {"inputs": [], "outputs": [], "params": {}, "node": "n"}
    assert substitute("{node}", c) == "n"
    with pytest.raises(PlaceholderError):
        resolve("model", c)


def test_a_template_parsed_once_is_filled_afresh_for_each_node():
    """Templates are parsed once per process (placeholders._split): the values must
    still come from each node's own context, and a bad placeholder is still refused."""
    def node(name, out):
        return {"inputs": [], "outputs": [("", [out])], "params": {}, "wildcards": {}, "node": name}
    t = "touch {outputs} && echo {{{node}}} '{{}}'"
    assert substitute(t, node("a", "out/a b"), quote=True) == "touch 'out/a b' && echo {a} '{}'"
    assert substitute(t, node("b", "out/b"), quote=True) == "touch out/b && echo {b} '{}'"
    assert substitute("no placeholders {{here}}", node("c", "x")) == "no placeholders {here}"
    for _ in range(2):
        with pytest.raises(PlaceholderError):
            substitute("cat {inputs.missing}", node("d", "x"))
