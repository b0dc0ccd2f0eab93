"""The loader against hostile or malformed input (SPEC §9, issue 17): outputs by
their real location, names safe in file names, globs that never follow a
symlink loop, and no traceback from any Nodefile (each failing example the
fuzzer in tests/reliability/test_rel_fuzz.py found is kept here)."""
from __future__ import annotations

import os
import signal
from contextlib import contextmanager

import pytest

from nodefile.errors import ConfigError, NodefileError
from nodefile.pathsafe import OutputGuard, glob_files, safe_filename


def msgs(problems):
    return [p.message for p in problems]


def find(problems, text):
    hits = [p for p in problems if text in p.message]
    assert hits, f"no problem mentions {text!r}: {msgs(problems)}"
    return hits[0]


@contextmanager
def deadline(seconds: int):
    """Fail (instead of hanging the suite) when the block runs longer than `seconds`."""
    def expired(signum, frame):
        raise AssertionError(f"still running after {seconds}s (a symlink loop followed?)")
    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# -- outputs by their real location --------------------------------------------------------

@pytest.mark.parametrize("out", [".nodefile/state.db", ".nodefile", ".nodefile/", "x/../.nodefile/cache/a"])
def test_an_output_under_dot_nodefile_is_a_nodefile_error_with_its_line(project, out):
    project.write(f'''
        [nodes.a]
        outputs = "{out}"
        shell = "true"
        ''')
    p = find(project.problems(), "lies inside .nodefile/")
    assert (p.file, p.key, p.line) == ("Nodefile.toml", "nodes.a.outputs", project.line_of("outputs ="))


def test_an_output_through_a_symlinked_folder_outside_is_a_nodefile_error(project, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    os.symlink(outside, project.root / "ext")
    project.write('''
        [nodes.a]
        outputs = ["ok.txt", "ext/sub/a.txt"]
        shell = "true"
        ''')
    p = find(project.problems(), "lies outside the project")
    assert "'ext/sub/a.txt'" in p.message and str(outside) in p.message
    assert (p.key, p.line) == ("nodes.a.outputs", project.line_of("outputs ="))


def test_a_folder_symlinked_to_dot_nodefile_is_caught_too(project):
    (project.root / ".nodefile").mkdir()
    os.symlink(".nodefile", project.root / "state")
    project.write('''
        [nodes.a]
        outputs = "state/records.db"
        shell = "true"
        ''')
    find(project.problems(), "lies inside .nodefile/")


def test_symlinks_that_stay_inside_the_project_are_fine(project):
    (project.root / "real").mkdir()
    os.symlink("real", project.root / "alias")
    os.symlink("/etc/hostname", project.root / "leaf.txt")  # the output itself: moved aside, never followed
    project.write('''
        [nodes.a]
        outputs = ["alias/a.txt", "leaf.txt"]
        shell = "true"
        ''')
    assert project.load().nodes["a"].output_paths == ("alias/a.txt", "leaf.txt")


def test_a_pattern_instance_whose_value_lands_in_dot_nodefile_is_rejected(project):
    project.write('''
        [nodes.a]
        outputs = "{d}/x.txt"
        shell = "true"
        matrix = { d = ["ok", ".nodefile"] }
        ''')
    p = find(project.problems(), "lies inside .nodefile/")
    assert "instance a[d=.nodefile]" in p.message and p.key == "nodes.a.outputs"


def test_the_guard_sees_a_symlink_that_appears_after_the_check(tmp_path, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    (tmp_path / "out").mkdir()
    guard = OutputGuard(str(tmp_path))
    assert guard.problem("out/a.txt") is None
    (tmp_path / "out").rmdir()
    os.symlink(outside, tmp_path / "out")
    assert "outside the project" in guard.problem("out/a.txt")
    assert "outside the project" in guard.problem("out/deeper/a.txt")
    assert guard.problem("out") is None  # the output itself is a symlink: replaced, not followed


def test_a_project_reached_through_a_symlink_is_its_real_self(tmp_path):
    (tmp_path / "real").mkdir()
    os.symlink("real", tmp_path / "link")
    guard = OutputGuard(str(tmp_path / "link"))
    assert guard.problem("a/b.txt") is None
    assert "inside .nodefile/" in guard.problem(".nodefile/x")


# -- names in file names --------------------------------------------------------------------

@pytest.mark.parametrize("name", ["report", "t.fit", "fit[model=lin,seed=1]", "py_2", "a b", "été"])
def test_ordinary_names_keep_their_file_names(name):
    assert safe_filename(name) == name


@pytest.mark.parametrize("name", ["../../../escape", "..", ".", "", "a/b", "a\\b", "a\x00b", "a\nb",
                                  "x" * 300, "é" * 200, "/etc/passwd"])
def test_unsafe_names_become_one_safe_file_name(name, tmp_path):
    safe = safe_filename(name)
    assert "/" not in safe and "\x00" not in safe and safe not in ("", ".", "..")
    assert len(safe.encode()) + len(".1.recipe.log") < 255
    (tmp_path / f"{safe}.1.recipe.log").write_text("x")  # a real file name, in the folder
    assert os.listdir(tmp_path) == [f"{safe}.1.recipe.log"]


def test_names_made_safe_never_share_a_file():
    names = ["a/b", "a_b", "a\\b", "a\nb", "x" * 300, "x" * 301]
    assert len({safe_filename(n) for n in names}) == len(names)


# -- globs and symlink loops ----------------------------------------------------------------

def make_tree(root, loops: int) -> None:
    for rel in ("data/a.csv", "data/sub/b.csv", "data/sub/deep/c.csv", "data/.hidden/d.csv"):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(rel)
    if loops >= 1:
        os.symlink("..", root / "data" / "sub" / "up")
    if loops >= 2:
        os.symlink("../../..", root / "data" / "sub" / "deep" / "top")


@pytest.mark.parametrize("loops", [1, 2])
def test_a_recursive_glob_never_follows_a_symlink_loop(project, loops):
    make_tree(project.root, loops)
    project.write('''
        [nodes.all]
        outputs = "all.txt"
        inputs = ["data/**/*.csv"]
        shell = "cat {inputs} > {outputs}"
        ''')
    with deadline(20):
        p = project.load(check_sources=True)
    assert p.nodes["all"].input_paths == ("data/a.csv", "data/sub/b.csv", "data/sub/deep/c.csv")


def test_glob_files_agrees_with_glob_on_a_tree_without_links(tmp_path):
    import glob
    make_tree(tmp_path, loops=0)
    (tmp_path / "top.csv").write_text("t")
    for pattern in ["data/**/*.csv", "**/*.csv", "data/**", "data/*/*.csv", "data/**/deep/*.csv", "*.csv",
                    "data/[as]*", "**/", "data/sub/**/c.csv"]:
        want = sorted({os.path.relpath(m, tmp_path) for m in glob.glob(os.path.join(tmp_path, pattern), recursive=True)}
                      - {"."})
        assert glob_files(str(tmp_path), pattern) == want, pattern


def test_a_symlinked_data_folder_elsewhere_is_followed_once(tmp_path, tmp_path_factory):
    outside = tmp_path_factory.mktemp("bigdata")
    (outside / "x.csv").write_text("x")
    os.symlink(outside, outside / "again")  # a loop inside the linked folder
    (tmp_path / "data").mkdir()
    os.symlink(outside, tmp_path / "data" / "big")
    os.symlink(outside, tmp_path / "data" / "big2")
    with deadline(20):
        found = glob_files(str(tmp_path), "data/**/*.csv")
    assert found == ["data/big/x.csv"]


# -- no traceback: recipe options and the fuzzer's finds ------------------------------------

@pytest.mark.parametrize("value, shown", [("nan", "nan"), ("inf", "inf"), ("-inf", "-inf"), ("0", "0"),
                                          ("-5", "-5"), ("true", "a boolean (true)"), ('"10"', "a string"),
                                          ("[1]", "an array")])
def test_timeout_must_be_a_positive_finite_number(project, value, shown):
    project.write(f'''
        [nodes.a]
        outputs = "a.txt"
        shell = "true"
        timeout = {value}
        ''')
    p = find(project.problems(), "timeout must be a positive number of seconds (finite)")
    assert p.message.endswith(f"not {shown}")
    assert (p.key, p.line) == ("nodes.a.timeout", project.line_of("timeout ="))


def test_a_finite_timeout_is_kept(project):
    project.write('''
        [nodes.a]
        outputs = "a.txt"
        recipes = [{ shell = "true", timeout = 0.5 }, { shell = "true", timeout = 7 }]
        ''')
    assert [r.timeout for r in project.load().nodes["a"].recipes] == [0.5, 7.0]


@pytest.mark.parametrize("needs", ["[{}]", "[false]", "[1]", "[[]]", '[""]'])
def test_template_needs_that_are_not_names_are_reported(project, needs):
    (project.root / "t.toml").write_text(f'[template]\nneeds = {needs}\n')
    project.write('''
        [use.x]
        template = "t.toml"
        ''')
    p = find(project.problems(), "needs must hold names")
    assert (p.file, p.key, p.line) == ("t.toml", "template.needs", 2)


@pytest.mark.parametrize("default, text", [("[[]]", "default must hold names"), ("5", "default must be a name"),
                                           ('["nope"]', "default names unknown node 'nope'")])
def test_a_sub_pipeline_default_that_names_no_node_is_reported(project, default, text):
    (project.root / "sub").mkdir()
    (project.root / "sub" / "Nodefile.toml").write_text(
        f'[project]\ndefault = {default}\n[nodes.a]\noutputs = "a"\nshell = "true"\n')
    project.write('''
        [use.x]
        nodefile = "sub/Nodefile.toml"

        [nodes.r]
        outputs = "r.txt"
        inputs = ["x"]
        shell = "true"
        ''')
    find(project.problems(), text)


@pytest.mark.parametrize("depth", [399, 500, 3000])
def test_arrays_nested_very_deep_are_a_toml_error(project, depth):
    project.write("[params]\nx = " + "[" * depth + "]" * depth + "\n")
    if depth < 400:  # as deep as the TOML parser goes: loads
        assert project.load().params["x"] is not None
    else:
        find(project.problems(), "nested too deep")


def test_a_deep_set_value_is_a_usage_error():
    from nodefile.cli import parse_set
    with pytest.raises(ConfigError, match="nested too deep"):
        parse_set(["x=" + "[" * 500 + "]" * 500])


def test_a_pattern_output_lacking_its_wildcard_read_by_another_node(project):
    project.write('''
        [nodes.a]
        outputs = ["a/{x}.txt", "b.txt"]
        shell = "true"

        [nodes.b]
        outputs = "c.txt"
        inputs = ["b.txt"]
        shell = "true"
        ''')
    p = find(project.problems(), "output 'b.txt' lacks wildcard(s) x")
    assert p.key == "nodes.a.outputs"


def test_fuzzer_finds_load_or_fail_cleanly(project):
    """Failing examples of the loader fuzz, kept (each was a traceback)."""
    cases = [
        '[use.x]\ntemplate = "t.toml"\n',
    ]
    (project.root / "t.toml").write_text('[template]\nneeds = [["x"]]\n')
    for text in cases:
        (project.root / "Nodefile.toml").write_text(text)
        with pytest.raises(NodefileError):
            project.load()


@pytest.mark.parametrize("regex", ["a{4294967296}", "(" * 2000 + ")" * 2000])
def test_a_wildcard_regex_the_re_module_cannot_compile_is_reported(project, regex):
    project.write(f'''
        [nodes.a]
        outputs = "a{{x}}.txt"
        shell = "true"
        matrix = {{ x = ["1"] }}
        wildcards = {{ x = "{regex}" }}
        ''')
    p = find(project.problems(), "invalid wildcard regex")
    assert p.key == "nodes.a.wildcards"


@pytest.mark.parametrize("line, text", [("timeout = 1" + "0" * 400, "timeout must be a positive number"),
                                        ("resources = { cores = 1" + "0" * 400 + " }", "resources must be"),
                                        ("resources = { cores = inf }", "resources must be")])
def test_numbers_too_large_for_a_float_are_reported(project, line, text):
    project.write(f'''
        [nodes.a]
        outputs = "a.txt"
        shell = "true"
        {line}
        ''')
    assert len(find(project.problems(), text).message) < 200


def test_a_huge_job_count_is_not_a_float_overflow():
    from nodefile.engine import limits_for
    from nodefile.model import Project
    from nodefile.session import Options
    project = Project(root="/p", file="/p/Nodefile.toml", name="p", nodes={}, producers={}, params={}, default=(),
                      jobs=10 ** 400, cache=True, python=None, stores={}, dir_outputs=(), sources=())
    assert limits_for(Options(), project)["cores"] >= 2 ** 31
    assert limits_for(Options(jobs=10 ** 400), project)["cores"] >= 2 ** 31


def test_an_integer_of_thousands_of_digits_is_a_toml_error(project):
    project.write("[params]\nx = " + "1" * 5000 + "\n")
    find(project.problems(), "invalid TOML: Exceeds the limit (4300 digits)")
    from nodefile.cli import parse_set
    with pytest.raises(ConfigError, match="--set x: Exceeds the limit"):
        parse_set(["x=" + "1" * 5000])


def test_a_placeholder_index_of_thousands_of_digits_is_a_placeholder_error(project):
    project.write('''
        [nodes.a]
        outputs = "a.txt"
        shell = "echo {inputs[%s]}"
        ''' % ("1" * 5000))
    p = find(project.problems(), "the node has 0 inputs")
    assert p.key == "nodes.a.shell"


def test_a_template_package_whose_import_fails_is_not_found(project, monkeypatch):
    (project.root / "badpkg").mkdir()
    (project.root / "badpkg" / "__init__.py").write_text("raise RuntimeError('boom at import')\n")
    monkeypatch.syspath_prepend(str(project.root))
    project.write('''
        [use.x]
        template = "package:badpkg:t.toml"
        ''')
    p = find(project.problems(), "template 'package:badpkg:t.toml' not found")
    assert p.key == "use.x.template"


@pytest.mark.parametrize("line", ['shell = "echo a\\u0000b"', 'args = ["a\\u0000b"]', 'env = { X = "a\\u0000b" }',
                                  'env = { "X\\u0000" = "b" }'])
def test_a_nul_in_a_command_line_or_environment_is_reported(project, line):
    project.write(f'''
        [nodes.a]
        outputs = "a.txt"
        shell = "true"
        {line}
        '''.replace('shell = "true"\n        shell', 'shell'))
    find(project.problems(), "holds a NUL character")


def test_a_nul_in_an_output_path_is_reported(project):
    project.write('''
        [nodes.a]
        outputs = "a\\u0000b.txt"
        shell = "true"
        ''')
    assert find(project.problems(), "holds a NUL character").key == "nodes.a.outputs"


def test_a_glob_matching_a_file_name_that_is_not_utf8_is_reported(project):
    (project.root / "data").mkdir()
    (project.root / "data" / "b.csv").write_text("b")
    with open(os.path.join(bytes(project.root), b"data/caf\xe9.csv"), "w") as f:
        f.write("x")
    project.write('''
        [nodes.f]
        outputs = "all.txt"
        inputs = ["data/*.csv"]
        shell = "cat {inputs} > {outputs}"
        ''')
    p = find(project.problems(), "whose name is not valid UTF-8: rename it")
    assert p.key == "nodes.f.inputs" and "data/caf\\udce9.csv" in p.message


def test_a_requested_path_that_is_not_utf8_is_reported(project):
    from nodefile.config.load import load_project
    project.write('''
        [nodes.f]
        outputs = "out/{m}.txt"
        shell = "touch {outputs}"
        ''')
    with pytest.raises(ConfigError, match="is not valid UTF-8 text"):
        load_project(str(project.root), requests=("out/\udcff.txt",), use_cache=False)
