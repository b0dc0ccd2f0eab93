"""nodefile.config.load: Nodefile.toml -> Project, and every validation problem at once."""
from __future__ import annotations

import pytest

from nodefile.errors import ConfigError, Problem


def msgs(problems):
    return [p.message for p in problems]


def find(problems, text):
    hits = [p for p in problems if text in p.message]
    assert hits, f"no problem mentions {text!r}: {msgs(problems)}"
    return hits[0]


# -- paths ----------------------------------------------------------------------------------

def test_paths_are_normalised(project):
    project.write('''
        [nodes.a]
        outputs = "./out/../a.txt"
        inputs = ["./data//raw.csv", "data/sub/../raw2.csv"]
        shell = "touch a.txt"
        ''', files=["data/raw.csv", "data/raw2.csv"])
    p = project.load()
    a = p.nodes["a"]
    assert a.output_paths == ("a.txt",)
    assert a.input_paths == ("data/raw.csv", "data/raw2.csv")
    assert p.producers == {"a.txt": "a"}


def test_directory_output_keeps_trailing_slash(project):
    project.write('''
        [nodes.d]
        outputs = "./plots/sub/../"
        shell = "mkdir -p plots"
        ''')
    p = project.load()
    assert p.nodes["d"].output_paths == ("plots/",)
    assert p.dir_outputs == (("plots/", "d"),)
    assert p.producers == {"plots": "d"}


@pytest.mark.parametrize("out", ["../x.txt", "a/../../x.txt", "/tmp/abs.txt", ".."])
def test_outputs_outside_root_are_rejected(project, out):
    project.write(f'''
        [nodes.a]
        outputs = "{out}"
        shell = "true"
        ''')
    probs = project.problems()
    p = find(probs, "outside the project root")
    assert p.key == "nodes.a.outputs"
    assert p.line == project.line_of("outputs =")
    assert p.file == "Nodefile.toml"


@pytest.mark.parametrize("out", [".", "./", "sub/.."])
def test_the_project_root_itself_is_not_an_output(project, out):
    # normalises to "" (the root): a recipe's outputs are moved away before it runs
    project.write(f'''
        [nodes.a]
        outputs = "{out}"
        shell = "true"
        ''')
    with pytest.raises(ConfigError) as ei:
        project.load()
    assert any(p.key == "nodes.a.outputs" for p in ei.value.problems)


# -- inputs and outputs: string, list, table ------------------------------------------------

def test_string_list_and_table_entries(project):
    project.write('''
        [nodes.one]
        outputs = "one.txt"
        inputs = "in/a.csv"
        shell = "x"

        [nodes.many]
        outputs = ["m1.txt", "m2.txt"]
        inputs = ["in/a.csv", "in/b.csv"]
        shell = "x"

        [nodes.named]
        outputs = { model = "model.rds", metrics = "metrics.json" }
        inputs = { data = ["in/a.csv", "in/b.csv"], cfg = "in/c.toml" }
        shell = "x"
        ''', files=["in/a.csv", "in/b.csv", "in/c.toml"])
    p = project.load()
    one, many, named = p.nodes["one"], p.nodes["many"], p.nodes["named"]
    assert [(e.name, e.paths, e.value) for e in one.inputs] == [(None, ("in/a.csv",), "in/a.csv")]
    assert [e.value for e in many.outputs] == ["m1.txt", "m2.txt"]
    assert [e.value for e in many.inputs] == ["in/a.csv", "in/b.csv"]
    assert [(e.name, e.value) for e in named.outputs] == [("model", "model.rds"), ("metrics", "metrics.json")]
    assert [(e.name, e.value) for e in named.inputs] == [
        ("data", ["in/a.csv", "in/b.csv"]), ("cfg", "in/c.toml")]
    assert named.input_paths == ("in/a.csv", "in/b.csv", "in/c.toml")


def test_named_list_of_one_stays_a_list(project):
    project.write('''
        [nodes.n]
        outputs = "o.txt"
        inputs = { data = ["in/a.csv"] }
        shell = "x"
        ''', files=["in/a.csv"])
    (e,) = project.load().nodes["n"].inputs
    assert e.many and e.value == ["in/a.csv"]


def test_node_name_inputs_become_deps_and_expand_to_its_outputs(project):
    project.write('''
        [nodes.clean]
        outputs = { csv = "data/clean.csv", log = "data/clean.log" }
        shell = "x"

        [nodes.single]
        outputs = "s.txt"
        shell = "x"

        [nodes.model]
        outputs = "m.rds"
        inputs = { data = "clean", s = "single" }
        shell = "x {inputs.data}"

        [nodes.report]
        outputs = "r.html"
        inputs = ["model", "single", "clean"]
        shell = "x"
        ''')
    p = project.load()
    model, report = p.nodes["model"], p.nodes["report"]
    assert model.deps == ("clean", "single")
    data, s = model.inputs
    assert (data.name, data.kind, data.paths, data.value) == (
        "data", "node", ("data/clean.csv", "data/clean.log"), ["data/clean.csv", "data/clean.log"])
    assert (s.kind, s.value) == ("node", "s.txt")
    assert report.deps == ("model", "single", "clean")
    assert report.input_paths == ("m.rds", "s.txt", "data/clean.csv", "data/clean.log")


def test_input_naming_a_produced_file_is_a_dep(project):
    project.write('''
        [nodes.a]
        outputs = "out/a.txt"
        shell = "x"

        [nodes.b]
        outputs = "b.txt"
        inputs = ["./out/a.txt"]
        shell = "x"
        ''')
    assert project.load().nodes["b"].deps == ("a",)


def test_input_inside_a_directory_output_depends_on_its_producer(project):
    project.write('''
        [nodes.plots]
        outputs = "plots/"
        shell = "x"

        [nodes.page]
        outputs = "page.html"
        inputs = ["plots/fig1.png", "plots"]
        shell = "x"
        ''')
    p = project.load()
    assert p.nodes["page"].deps == ("plots",)


def test_input_inside_a_source_directory_is_fine(project):
    project.write('''
        [nodes.a]
        outputs = "a.txt"
        inputs = ["raw/2024/jan.csv", "raw/"]
        shell = "x"
        ''', files=["raw/2024/jan.csv"])
    assert project.load().nodes["a"].input_paths == ("raw/2024/jan.csv", "raw/")


def test_globs_match_files_sorted_and_nodes_outputs(project):
    project.write('''
        [nodes.gen]
        outputs = "data/z_generated.csv"
        shell = "x"

        [nodes.all]
        outputs = "all.csv"
        inputs = { csvs = "data/*.csv", cfg = "cfg.toml" }
        shell = "x"
        ''', files=["data/b.csv", "data/a.csv", "data/notes.txt", "cfg.toml"])
    p = project.load()
    csvs, cfg = p.nodes["all"].inputs
    assert csvs.kind == "glob"
    assert csvs.paths == ("data/a.csv", "data/b.csv", "data/z_generated.csv")
    assert csvs.value == ["data/a.csv", "data/b.csv", "data/z_generated.csv"]
    assert p.nodes["all"].deps == ("gen",)


def test_glob_matching_one_file_is_still_a_list(project):
    project.write('''
        [nodes.a]
        outputs = "a.txt"
        inputs = { csvs = "data/*.csv" }
        shell = "x"
        ''', files=["data/only.csv"])
    (e,) = project.load().nodes["a"].inputs
    assert e.paths == ("data/only.csv",)


def test_glob_matching_nothing_is_an_error(project):
    project.write('''
        [nodes.a]
        outputs = "a.txt"
        inputs = "data/*.parquet"
        shell = "x"
        ''')
    p = find(project.problems(), "matches no file")
    assert p.key == "nodes.a.inputs" and p.line == project.line_of("inputs =")


# -- params -----------------------------------------------------------------------------------

def test_params_list_inline_and_mixed(project):
    project.write('''
        [params]
        seed = 42
        n_rows = 500
        unused = "x"

        [nodes.names]
        outputs = "a"
        params = ["n_rows", "seed"]
        shell = "x"

        [nodes.inline]
        outputs = "b"
        params = { alpha = 0.5, layers = [1, 2] }
        shell = "x"

        [nodes.mixed]
        outputs = "c"
        params = ["seed", { alpha = 0.5 }]
        shell = "x"

        [nodes.none]
        outputs = "d"
        shell = "x"
        ''')
    p = project.load()
    assert p.params == {"seed": 42, "n_rows": 500, "unused": "x"}
    assert p.nodes["names"].params_dict == {"n_rows": 500, "seed": 42}
    assert p.nodes["inline"].params_dict == {"alpha": 0.5, "layers": [1, 2]}
    assert p.nodes["mixed"].params_dict == {"seed": 42, "alpha": 0.5}
    assert p.nodes["none"].params == ()


def test_unknown_param_name_with_did_you_mean(project):
    project.write('''
        [params]
        seed = 42

        [nodes.a]
        outputs = "a"
        params = ["sed"]
        shell = "x"
        ''')
    p = find(project.problems(), "unknown param 'sed'")
    assert "did you mean 'seed'" in p.message
    assert p.key == "nodes.a.params" and p.line == project.line_of("params = [")


def test_set_overrides_project_params(project):
    project.write('''
        [params]
        seed = 42
        n = 1

        [nodes.a]
        outputs = "a"
        params = ["seed", "n"]
        shell = "x"
        ''')
    p = project.load(overrides={"seed": 7})
    assert p.params == {"seed": 7, "n": 1}
    assert p.nodes["a"].params_dict == {"seed": 7, "n": 1}


def test_set_unknown_param_is_an_error(project):
    project.write('''
        [params]
        seed = 42
        ''')
    (p,) = project.problems(overrides={"sed": 7})
    assert "--set sed" in p.message and "did you mean 'seed'" in p.message
    assert p.line == project.line_of("[params]")


# -- recipes ----------------------------------------------------------------------------------

def test_short_form_recipe_with_options(project):
    project.write('''
        [nodes.a]
        outputs = "a.txt"
        python = "./tasks/../tasks/a.py"
        args = ["--n", 3, true]
        env = { MODE = "fast", N = 2 }
        timeout = 10
        retries = 2
        resources = { cores = 2, mem_gb = 1.5 }
        ''', files=["tasks/a.py"])
    (r,) = project.load().nodes["a"].recipes
    assert (r.kind, r.target, r.name) == ("python", "tasks/a.py", "python")
    assert r.args == ("--n", "3", "true")
    assert r.env == (("MODE", "fast"), ("N", "2"))
    assert r.timeout == 10.0 and r.retries == 2
    assert dict(r.resources) == {"cores": 2.0, "mem_gb": 1.5}


def test_recipes_list_in_order_with_node_level_defaults(project):
    project.write('''
        [stores.nas]
        url = "store"

        [nodes.a]
        outputs = "a.txt"
        args = ["--x"]
        recipes = [
          { fetch = "nas" },
          { r = "tasks/a.R", name = "slow" },
          { shell = "touch a.txt", args = [] },
          { call = "pkg.mod:fn" },
        ]
        ''', files=["tasks/a.R"])
    p = project.load()
    rs = p.nodes["a"].recipes
    assert [(r.kind, r.target, r.name) for r in rs] == [
        ("fetch", "nas", "fetch"), ("r", "tasks/a.R", "slow"), ("shell", "touch a.txt", "shell"),
        ("call", "pkg.mod:fn", "call")]
    assert [r.args for r in rs] == [("--x",), ("--x",), (), ("--x",)]
    assert p.stores["nas"].url == str(project.root / "store")
    assert p.nodes["a"].script_inputs == ("tasks/a.R",)


def test_recipe_names_are_deduplicated(project):
    project.write('''
        [nodes.a]
        outputs = "a.txt"
        recipes = [
          { shell = "one" },
          { shell = "two" },
          { python = "t.py", name = "shell" },
          { python = "t.py", name = "fast" },
          { python = "t.py", name = "fast" },
        ]
        ''', files=["t.py"])
    names = [r.name for r in project.load().nodes["a"].recipes]
    assert names == ["shell", "shell#2", "shell#3", "fast", "fast#2"]
    assert len(set(names)) == len(names)


def test_short_form_and_recipes_list_together_is_an_error(project):
    project.write('''
        [nodes.a]
        outputs = "a.txt"
        shell = "x"
        recipes = [{ shell = "y" }]
        ''')
    p = find(project.problems(), "not both")
    assert p.line == project.line_of("shell =")


def test_two_short_form_recipes_is_an_error(project):
    project.write('''
        [nodes.a]
        outputs = "a.txt"
        shell = "x"
        python = "t.py"
        ''', files=["t.py"])
    p = find(project.problems(), "one short-form recipe")
    assert p.line in (project.line_of("python ="), project.line_of("shell ="))


def test_recipe_problems(project):
    project.write('''
        [nodes.a]
        outputs = "a.txt"
        recipes = [
          { fetch = "nass" },
          { call = "no_colon" },
          { python = "missing.py" },
          { shell = "x", timeot = 3 },
          { shell = "" },
          { name = "none" },
        ]

        [stores.nas]
        url = "s"
        ''')
    probs = project.problems()
    assert "did you mean 'nas'" in find(probs, "unknown store 'nass'").message
    find(probs, "package.module:function")
    assert find(probs, "missing.py").message == "python script 'missing.py' does not exist"
    assert "did you mean 'timeout'" in find(probs, "unknown recipe key 'timeot'").message
    find(probs, "shell must be a non-empty string")
    find(probs, "recipe 6 must have exactly one of")
    rl = project.line_of("recipes = [")
    assert all(p.line == rl and p.key == "nodes.a.recipes" for p in probs), probs


def test_alias_node_has_no_recipe(project):
    project.write('''
        [nodes.a]
        outputs = "a.txt"
        shell = "x"

        [nodes.all]
        inputs = ["a"]
        ''')
    p = project.load()
    assert p.nodes["all"].is_alias and p.nodes["all"].deps == ("a",)
    assert p.default == ("all",)


def test_recipe_without_outputs_and_outputs_without_recipe(project):
    project.write('''
        [nodes.a]
        shell = "x"

        [nodes.b]
        outputs = "b.txt"
        ''')
    probs = project.problems()
    assert find(probs, "must declare outputs").key == "nodes.a"
    assert find(probs, "needs a recipe").key == "nodes.b"
    assert find(probs, "needs a recipe").line == project.line_of("[nodes.b]")


def test_bad_placeholder_in_shell_and_args(project):
    project.write('''
        [nodes.a]
        outputs = "a.txt"
        inputs = { raw = "raw.csv" }
        shell = "x {inputs.rwa} {params.seed}"

        [nodes.b]
        outputs = "b.txt"
        python = "t.py"
        args = ["{outputs[3]}", "{bogus}"]
        ''', files=["raw.csv", "t.py"])
    probs = project.problems()
    assert len(probs) == 4, msgs(probs)
    assert find(probs, "inputs.rwa").line == project.line_of("shell =")
    assert find(probs, "params.seed").key == "nodes.a.shell"
    assert find(probs, "outputs[3]").line == project.line_of("args =")
    assert find(probs, "bogus").key == "nodes.b.args"


def test_nodes_written_alike_are_checked_each_by_its_own_shape(project):
    # the same recipe text parses once, but a placeholder is checked against each
    # node's own inputs: it resolves for a, not for b; and a bad one is reported per node
    project.write('''
        [nodes.a]
        outputs = "a.txt"
        inputs = { raw = "raw.csv" }
        shell = "cp {inputs.raw} {outputs}"

        [nodes.b]
        outputs = "b.txt"
        inputs = ["raw.csv"]
        shell = "cp {inputs.raw} {outputs}"

        [nodes.c]
        outputs = "c.txt"
        shell = "echo {params.nope} > {outputs}"

        [nodes.d]
        outputs = "d.txt"
        shell = "echo {params.nope} > {outputs}"
        ''', files=["raw.csv"])
    probs = project.problems()
    assert sorted(p.key for p in probs) == ["nodes.b.shell", "nodes.c.shell", "nodes.d.shell"], msgs(probs)
    assert "no input named 'raw'" in find(probs, "inputs.raw").message


def test_nodes_written_alike_share_their_recipes(project):
    project.write('''
        [nodes.a]
        outputs = "a.txt"
        shell = "touch {outputs}"
        timeout = 5

        [nodes.b]
        outputs = "b.txt"
        shell = "touch {outputs}"
        timeout = 5

        [nodes.c]
        outputs = "c.txt"
        shell = "touch {outputs}"
        ''')
    p = project.load()
    a, b, c = (p.nodes[n].recipes[0] for n in "abc")
    assert a == b and a.timeout == 5.0 and c.timeout is None
    assert [r.target for r in (a, b, c)] == ["touch {outputs}"] * 3


@pytest.mark.parametrize("path, want", [
    ("a/b.txt", "a/b.txt"), ("dir/", "dir/"), (".hidden/x", ".hidden/x"), ("file.", "file."),
    ("./a", "a"), ("a//b", "a/b"), ("a/./b", "a/b"), ("a/../b", "b"), ("a/..", ""), ("a/.", "a"),
    (".", ""), ("../a", "../a"), ("d//", "d/"), ("/abs/./x", "/abs/x"),
])
def test_norm(path, want):
    from nodefile.config.schema import norm
    assert norm(path) == want


# -- validation: unknown keys, duplicates, directories -------------------------------------

def test_unknown_keys_with_did_you_mean(project):
    project.write('''
        [project]
        nmae = "x"

        [node.a]
        outputs = "a"

        [nodes.b]
        output = "b.txt"
        shell = "x"
        prority = 2

        [stores.s]
        url = "s"
        pushh = true
        ''')
    probs = project.problems()
    top = find(probs, "unknown top-level table 'node'")
    assert "did you mean 'nodes'" in top.message and top.key == "node"
    assert "did you mean 'name'" in find(probs, "'nmae'").message
    out = find(probs, "unknown key 'output'")
    assert "did you mean 'outputs'" in out.message
    assert (out.key, out.line) == ("nodes.b.output", project.line_of("output ="))
    pr = find(probs, "unknown key 'prority'")
    assert "did you mean 'priority'" in pr.message and pr.line == project.line_of("prority")
    st = find(probs, "unknown key 'pushh'")
    assert "did you mean 'push'" in st.message and st.line == project.line_of("pushh =")


def test_unknown_top_level_table_has_the_line_of_its_header(project):
    # `[node.a]` (a typo for [nodes.a]): the table `node` exists only through the dotted header.
    project.write('''
        [project]
        name = "x"

        [node.a]
        outputs = "a"
        ''')
    (p,) = project.problems()
    assert "unknown top-level table 'node'" in p.message
    assert p.line == project.line_of("[node.a]")


def test_duplicate_outputs(project):
    project.write('''
        [nodes.a]
        outputs = ["shared.csv", "dir/"]
        shell = "x"

        [nodes.b]
        outputs = ["./shared.csv", "dir"]
        shell = "x"
        ''')
    probs = project.problems()
    dup = [p for p in probs if "also declared by node 'a'" in p.message]
    assert len(dup) == 2, msgs(probs)
    assert all(p.key == "nodes.b.outputs" and p.line == project.line_of("outputs =", 2) for p in dup)


def test_output_inside_another_nodes_directory_output(project):
    project.write('''
        [nodes.plots]
        outputs = "plots/"
        shell = "x"

        [nodes.extra]
        outputs = ["plots/extra/fig.png", "plotsmore.txt"]
        shell = "x"
        ''')
    (p,) = project.problems()
    assert "plots/extra/fig.png" in p.message and "directory output 'plots/'" in p.message
    assert p.key == "nodes.extra.outputs" and p.line == project.line_of("outputs =", 2)


def test_node_name_validity(project):
    project.write('''
        [nodes."bad name"]
        outputs = "a"
        shell = "x"
        ''')
    p = find(project.problems(), "invalid node name 'bad name'")
    assert p.key == "nodes.bad name"


def test_invalid_node_name_has_the_line_of_its_header(project):
    project.write('''
        [nodes.good]
        outputs = "g"
        shell = "x"

        [nodes."bad name"]
        outputs = "a"
        shell = "x"
        ''')
    (p,) = project.problems()
    assert p.line == project.line_of("bad name")


# -- default targets --------------------------------------------------------------------------

def test_default_targets_explicit(project):
    project.write('''
        [project]
        default = "b"

        [nodes.a]
        outputs = "a"
        shell = "x"

        [nodes.b]
        outputs = "b"
        shell = "x"
        ''')
    assert project.load().default == ("b",)


def test_default_targets_are_nodes_no_other_node_needs(project):
    project.write('''
        [nodes.a]
        outputs = "a"
        shell = "x"

        [nodes.b]
        outputs = "b"
        inputs = ["a"]
        shell = "x"

        [nodes.c]
        outputs = "c"
        inputs = ["a"]
        shell = "x"

        [nodes.lone]
        outputs = "lone"
        shell = "x"
        ''')
    assert project.load().default == ("b", "c", "lone")


def test_default_names_unknown_node(project):
    project.write('''
        [project]
        default = ["reprot"]

        [nodes.report]
        outputs = "r"
        shell = "x"
        ''')
    (p,) = project.problems()
    assert "unknown node 'reprot'" in p.message and "did you mean 'report'" in p.message
    assert p.line == project.line_of("default =")


# -- sources and cycles --------------------------------------------------------------------

def test_missing_source_names_every_node_that_needs_it(project):
    project.write('''
        [nodes.b]
        outputs = "b"
        inputs = ["data/raw.csv"]
        shell = "x"

        [nodes.a]
        outputs = "a"
        inputs = { raw = "./data/raw.csv" }
        shell = "x"

        [nodes.c]
        outputs = "c"
        inputs = "data/other.csv"
        shell = "x"
        ''')
    probs = project.problems()
    raw = [p for p in probs if "data/raw.csv" in p.message]
    assert len(raw) == 1, msgs(probs)
    assert "needed by a, b" in raw[0].message
    assert raw[0].key.endswith(".inputs")
    assert "needed by c" in find(probs, "data/other.csv").message


def test_missing_source_is_not_checked_when_asked(project):
    project.write('''
        [nodes.a]
        outputs = "a"
        inputs = "nope.csv"
        python = "nope.py"
        ''')
    p = project.load(check_sources=False)
    assert p.nodes["a"].input_paths == ("nope.csv",)


def test_misspelt_node_input_gets_did_you_mean(project):
    project.write('''
        [nodes.clean]
        outputs = "c.csv"
        shell = "x"

        [nodes.b]
        outputs = "b"
        inputs = ["clen"]
        shell = "x"
        ''')
    p = find(project.problems(), "missing source 'clen'")
    assert "did you mean 'clean'" in p.message and "needed by b" in p.message


def test_cycle_reported_as_a_path(project):
    project.write('''
        [nodes.a]
        outputs = "a.txt"
        inputs = ["b"]
        shell = "x"

        [nodes.b]
        outputs = "b.txt"
        inputs = ["a.txt"]
        shell = "x"
        ''')
    (p,) = project.problems()
    assert p.message == "dependency cycle: a -> b -> a"
    assert p.line == project.line_of("inputs =")  # a's inputs
    assert p.key == "nodes.a.inputs"


def test_longer_cycle(project):
    project.write('''
        [nodes.a]
        outputs = "a"
        inputs = ["c"]
        shell = "x"

        [nodes.b]
        outputs = "b"
        inputs = ["a"]
        shell = "x"

        [nodes.c]
        outputs = "c"
        inputs = ["b"]
        shell = "x"
        ''')
    (p,) = project.problems()
    assert p.message == "dependency cycle: a -> c -> b -> a"


def test_node_reading_its_own_output_is_a_cycle(project):
    # a node whose input is its own output can never be up to date (its key includes the
    # output's hash) and its outputs are moved away before the recipe runs: a cycle `a -> a`.
    project.write('''
        [nodes.a]
        outputs = "a.txt"
        inputs = ["a.txt"]
        shell = "cat a.txt > a.txt"
        ''')
    with pytest.raises(ConfigError) as ei:
        project.load()
    assert any("a -> a" in p.message for p in ei.value.problems)


# -- all problems at once ---------------------------------------------------------------

def test_every_problem_is_reported_at_once_with_its_line(project):
    project.write('''
        [project]
        jobs = 0
        cache = "yes"

        [params]
        seed = 1

        [nodes.a]
        outputs = "../a.txt"
        inputs = "missing.csv"
        params = ["seeed"]
        shell = "x"
        priority = "high"

        [nodes.b]
        outputs = "b.txt"
        python = "tasks/nope.py"
        timeout = -1
        retries = -2
        resources = { cores = "two" }
        colour = "red"
        ''')
    with pytest.raises(ConfigError) as ei:
        project.load()
    probs = ei.value.problems
    expected = {
        "jobs must be a positive integer": ("project.jobs", "jobs ="),
        "cache must be true or false": ("project.cache", "cache ="),
        "outside the project root": ("nodes.a.outputs", "outputs = \"../"),
        "missing source 'missing.csv'": ("nodes.a.inputs", "inputs ="),
        "unknown param 'seeed'": ("nodes.a.params", "params = ["),
        "priority must be an integer": ("nodes.a.priority", "priority ="),
        "script 'tasks/nope.py' does not exist": ("nodes.b.python", "python ="),
        "timeout must be a positive number": ("nodes.b.timeout", "timeout ="),
        "retries must be a non-negative integer": ("nodes.b.retries", "retries ="),
        "resources must be a table of name = number": ("nodes.b.resources", "resources ="),
        "unknown key 'colour'": ("nodes.b.colour", "colour ="),
    }
    assert len(probs) == len(expected), msgs(probs)
    wrong = []
    for text, (key, needle) in expected.items():
        p = find(probs, text)
        if (p.key, p.line, p.file) != (key, project.line_of(needle), "Nodefile.toml"):
            wrong.append((text, f"got {p.key}@{p.line}", f"want {key}@{project.line_of(needle)}"))
    assert not wrong, wrong
    # the exception text lists them all, one per line, file:line first
    lines = str(ei.value).splitlines()
    assert len(lines) == len(expected)
    assert all(l.startswith("Nodefile.toml:") for l in lines)


def test_problem_str_format():
    assert str(Problem("bad", "Nodefile.toml", 3, "nodes.a")) == "Nodefile.toml:3: [nodes.a] bad"
    assert str(Problem("bad")) == "bad"
    assert isinstance(ConfigError("oops").problems[0], Problem)


def test_invalid_toml_reports_line(project):
    project.write('''
        [nodes.a]
        outputs = "a"
        shell = "x
        ''')
    (p,) = project.problems()
    assert p.message.startswith("invalid TOML") and p.line == 3


def test_no_nodefile(tmp_path):
    from nodefile.config.schema import find_nodefile
    with pytest.raises(ConfigError, match="no Nodefile.toml"):
        find_nodefile(str(tmp_path / "empty"))


def test_find_nodefile_walks_up(project):
    project.write("")
    sub = project.root / "a" / "b"
    sub.mkdir(parents=True)
    from nodefile.config.schema import find_nodefile
    assert find_nodefile(str(sub)) == str(project.root / "Nodefile.toml")


def test_line_of_key_after_multiline_shell_with_an_ini_heredoc(project):
    # A heredoc writing an INI file inside a multi-line shell string: its `[section]` line
    # must not be taken for a TOML table header.
    project.write('''
        [nodes.a]
        outputs = "a.ini"
        shell = """
        cat > a.ini <<EOF
        [section]
        key = 1
        EOF
        """
        timeout = -1
        ''')
    (p,) = project.problems()
    assert p.line == project.line_of("timeout =")


def test_project_fields(project):
    project.write('''
        [project]
        name = "churn"
        jobs = 3
        cache = false
        python = "/usr/bin/python3"
        ''')
    p = project.load()
    assert (p.name, p.jobs, p.cache, p.python) == ("churn", 3, False, "/usr/bin/python3")
    assert p.root == str(project.root) and p.file == str(project.root / "Nodefile.toml")
    assert p.nodes == {} and p.default == ()


def test_project_name_defaults_to_folder(project):
    project.write("")
    assert project.load().name == project.root.name


def test_node_order_and_line(project):
    project.write('''
        [nodes.z]
        outputs = "z"
        shell = "x"

        [nodes.a]
        outputs = "a"
        shell = "x"
        priority = 5
        ''')
    p = project.load()
    assert list(p.nodes) == ["z", "a"]
    assert [n.order for n in p.nodes.values()] == [0, 1]
    assert p.nodes["a"].line == project.line_of("[nodes.a]")
    assert p.nodes["a"].priority == 5
