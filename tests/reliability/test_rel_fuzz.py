"""A fuzzer over the loader (SPEC §9: no user input produces a traceback).

The property: loading a project (what `node check` does) either succeeds or
raises the project's user error (NodefileError: exit 2 with a message), never
any other exception. Inputs: random TOML documents, mutations of valid
Nodefiles, templates (`[use.X] template`) and sub-pipelines (`[use.X]
nodefile`), mutated TOML text, odd `--set` values and requested paths. What
loads is also turned into job manifests and command lines, as `node job` does.

It runs in-process for speed (a few Nodefiles go through the real CLI, to see
no traceback text), derandomized so a CI failure reproduces. Counts come from
`trials(short, long)`: under a minute in CI, over 10,000 Nodefiles with --long.
A failing example found here goes into tests/unit/test_loader_hardening.py.
"""
from __future__ import annotations

import copy
import datetime as dt
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli_helpers import run

from nodefile import recipes
from nodefile.config.load import load_project
from nodefile.errors import NodefileError

COUNTS: dict[str, int] = {}  # fuzzed Nodefiles per test, printed at the end (run with -s)

ROOT = """
[project]
name = "fuzz"
default = ["report"]
jobs = 2

[params]
seed = 42
n_rows = 500
model = "lin"

[stores.nas]
url = "store"
push = true

[nodes.clean]
outputs = "out/clean.csv"
inputs = { raw = "data/raw.csv" }
params = ["n_rows"]
recipes = [{ fetch = "nas" }, { python = "tasks/clean.py", timeout = 60, retries = 1, name = "py" }]

[nodes.model]
outputs = { model = "out/model.rds", metrics = "out/metrics.json" }
inputs = { data = "clean", extra = ["data/a.csv", "data/sub/b.csv"] }
params = ["seed", { alpha = 0.5 }]
r = "tasks/fit.R"
resources = { cores = 1 }

[nodes.fit]
outputs = "out/fits/{model}.json"
inputs = ["clean"]
python = "tasks/clean.py"
args = ["--model", "{model}", "{inputs[0]}", "{{literal}}"]
matrix = { model = ["lin", "tree"] }
wildcards = { model = "[a-z]+" }

[nodes.pick]
outputs = "out/picked/{name}-{seed}.txt"
shell = "echo {name} {seed} > {outputs}"
matrix = [{ name = "a", seed = 1 }, { name = "b", seed = 7 }]

[nodes.glob]
outputs = "out/all.txt"
inputs = ["data/**/*.csv", "data/*.csv"]
shell = "cat {inputs} > {outputs}"
env = { SEED = "{params.seed}" }
params = ["seed"]

[nodes.dir]
outputs = "out/dir/"
call = "tasks.mod:make"

[nodes.report]
outputs = "out/report.html"
inputs = ["model", "fit", "glob", "t", "s", "out/fits/tree.json", "out/dir/"]
shell = "echo {inputs} {node} > {outputs[0]}"
priority = 3

[nodes.all]
inputs = ["report", "pick"]

[use.t]
template = "tpl/t.toml"
with = { data = "clean", target = "y" }

[use.s]
nodefile = "sub/Nodefile.toml"
"""

TEMPLATE = """
[template]
needs = ["data", "target"]
optional = { model = "lin", seeds = [1, 2] }

[nodes.fit]
outputs = "out/${target}-${model}/fit.json"
inputs = { data = "${data}" }
params = { target = "${target}", seeds = "${seeds}" }
python = "fit.py"

[nodes.score]
outputs = "out/${target}-${model}/score.json"
inputs = { data = "${data}", fit = "fit" }
shell = "echo ${model} > {outputs}"

[use.inner]
template = "t2.toml"
with = { x = "${target}" }
"""

TEMPLATE2 = """
[template]
needs = ["x"]

[nodes.leaf]
outputs = "out/inner-${x}.txt"
shell = "echo ${x} > {outputs}"
"""

SUB = """
[project]
default = ["b"]

[params]
k = 3

[nodes.a]
outputs = "a.txt"
shell = "echo {params.k} > {outputs}"
params = ["k"]

[nodes.b]
outputs = "b/{i}.txt"
inputs = ["a"]
shell = "cp {inputs} {outputs}"
matrix = [{ i = 1 }, { i = "two" }]
"""

FILES = {"Nodefile.toml": ROOT, "tpl/t.toml": TEMPLATE, "tpl/t2.toml": TEMPLATE2, "sub/Nodefile.toml": SUB}

# -- values ------------------------------------------------------------------------------
KEYS = ["project", "params", "stores", "nodes", "use", "name", "default", "jobs", "cache", "python",
        "url", "push", "options", "outputs", "inputs", "recipes", "priority", "wildcards", "matrix",
        "r", "shell", "call", "fetch", "args", "env", "timeout", "retries", "resources",
        "template", "nodefile", "with", "needs", "optional", "clean", "fit", "report", "t", "s", "a", "b",
        "model", "seed", "k", "i", "x", "data", "target", "nas", "", "a b", "é", "[x]", "../x"]
STRINGS = ["data/raw.csv", "data/a.csv", "out/x.txt", "out/{model}.json", "out/{a}/{b}.txt", "{model}",
           "../x", "../../etc/passwd", "/etc/passwd", "/tmp/x", ".nodefile/state.db", ".nodefile/",
           ".nodefile", "ext/a.txt", "ext/", "data/loop/x.csv", "data/loop/**/*.csv", "data/**/*.csv",
           "data/*.csv", "**", "**/", "*", "[", "data/[", "", ".", "./", "..", "a//b", "a/./b/../c",
           "out/", "out/dir/", "out/dir/x", "{", "}", "{{", "}}", "{inputs}", "{outputs}", "{inputs.raw}",
           "{outputs.model}", "{inputs[0]}", "{inputs[99]}", "{outputs[-1]}", "{params.seed}",
           "{params.nope}", "{node}", "{model", "{1}", "{ model }", "${data}", "${nope}", "${", "${}",
           "clean", "fit", "report", "t", "s", "t.fit", "s.a", "s.b", "nas", "nope", "all", "pick",
           "fit[model=lin]", "tasks/clean.py", "tasks/fit.R", "tasks/nope.py", "tasks.mod:make",
           "nocolon", "tpl/t.toml", "tpl/t2.toml", "sub/Nodefile.toml", "Nodefile.toml",
           "package:nodefile:x.toml", "package:nope/x.toml", "package:", "s3://bucket/x", "store",
           "lin", "tree", "[a-z]+", "(", "(?P<x>", ".+", "a\u0000b", "a\nb", "\u00e9t\u00e9", "x" * 300,
           "../" * 40 + "x", "a/" * 200 + "x", "py", "py#2", "load", "-1", "nan", "a{4294967296}",
           "(" * 600 + ")" * 600, "(?P<model>x)", "\\", "C:\\x", "~/x", "$HOME/x", "data/loop/loop/raw.csv"]
DATES = [dt.datetime(1979, 5, 27, 7, 32), dt.datetime(1979, 5, 27, 7, 32, tzinfo=dt.timezone.utc),
         dt.date(2020, 1, 1), dt.time(12, 30)]

scalars = st.one_of(
    st.sampled_from(STRINGS),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=12),
    st.sampled_from([0, 1, -1, 2, 7, 2 ** 63 - 1, -2 ** 63, 10 ** 400, -10 ** 30]),
    st.integers(-10 ** 6, 10 ** 6),
    st.sampled_from([float("nan"), float("inf"), float("-inf"), 0.0, -0.0, 0.5, -1.5, 1e308, 1e-300]),
    st.booleans(),
    st.sampled_from(DATES),
)
keys = st.one_of(st.sampled_from(KEYS), st.text(st.characters(blacklist_categories=("Cs",)), max_size=6))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)), max_leaves=12)


# -- TOML text ---------------------------------------------------------------------------
def _str(s: str) -> str:
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _key(k: str) -> str:
    return k if k and all(c.isascii() and (c.isalnum() or c in "_-") for c in k) else _str(k)


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if v != v else ("inf" if v == float("inf") else "-inf" if v == float("-inf") else repr(v))
    if isinstance(v, (int, dt.date, dt.time)):
        return v.isoformat() if not isinstance(v, int) else str(v)
    if isinstance(v, str):
        return _str(v)
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(type(v))


def dumps(doc: dict) -> str:
    """TOML text: tables of tables as [a] and [a.b] headers, deeper values inline."""
    lines = []

    def table(path: tuple, t: dict, depth: int) -> None:
        subs = []
        for k, v in t.items():
            if isinstance(v, dict) and depth < 2 and v:
                subs.append((k, v))
            else:
                lines.append(f"{_key(k)} = {_value(v)}")
        for k, v in subs:
            lines.append("")
            lines.append("[" + ".".join(_key(p) for p in path + (k,)) + "]")
            table(path + (k,), v, depth + 1)

    table((), doc, 0)
    return "\n".join(lines) + "\n"


# -- mutations ---------------------------------------------------------------------------
def _positions(v, out: list, depth: int = 0) -> list:
    if depth > 6:
        return out
    if isinstance(v, dict):
        for k in v:
            out.append((v, k))
            _positions(v[k], out, depth + 1)
    elif isinstance(v, list):
        for i in range(len(v)):
            out.append((v, i))
            _positions(v[i], out, depth + 1)
    return out


def mutate(doc: dict, data) -> dict:
    doc = copy.deepcopy(doc)
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        spots = _positions(doc, [])
        if not spots:
            doc.update(data.draw(st.dictionaries(st.sampled_from(KEYS), values, max_size=2)))
            continue
        parent, k = data.draw(st.sampled_from(spots), label="spot")
        op = data.draw(st.sampled_from(["replace", "replace", "delete", "wrap", "add", "rename", "copy",
                                        "empty", "unwrap"]), label="op")
        if op == "replace":
            parent[k] = data.draw(values, label="value")
        elif op == "delete":
            del parent[k]
        elif op == "wrap":
            parent[k] = [parent[k]] if data.draw(st.booleans()) else {"x": parent[k]}
        elif op == "unwrap" and isinstance(parent[k], (list, dict)) and parent[k]:
            inner = parent[k]
            parent[k] = inner[0] if isinstance(inner, list) else next(iter(inner.values()))
        elif op == "empty":
            parent[k] = data.draw(st.sampled_from(["", [], {}, [[]], [{}], [""], 0, False]))
        elif op == "add":
            target = parent[k] if isinstance(parent[k], (dict, list)) else parent
            if isinstance(target, dict):
                target[data.draw(keys, label="key")] = data.draw(values, label="value")
            else:
                target.append(data.draw(values, label="value"))
        elif op == "rename" and isinstance(parent, dict):
            parent[data.draw(keys, label="new key")] = parent.pop(k)
        elif op == "copy":
            other_parent, other = data.draw(st.sampled_from(spots), label="from")
            parent[k] = copy.deepcopy(other_parent[other])
    return doc


def mutate_text(text: str, data) -> str:
    lines = text.splitlines()
    for _ in range(data.draw(st.integers(1, 3))):
        if not lines:
            lines.append("")
        i = data.draw(st.integers(0, len(lines) - 1))
        op = data.draw(st.sampled_from(["delete", "dup", "cut", "insert", "swap"]))
        if op == "delete":
            del lines[i]
        elif op == "dup":
            lines.insert(i, lines[i])
        elif op == "cut":
            lines[i] = lines[i][:data.draw(st.integers(0, max(0, len(lines[i]))))]
        elif op == "insert":
            pos = data.draw(st.integers(0, len(lines[i])))
            bit = data.draw(st.sampled_from(['"', "[", "]", "{", "}", "=", ",", "'''", '"""', "#", "\\",
                                             "[nodes.x]", "[[nodes]]", "a = 1", "\t", "\x00", "\ufeff"]))
            lines[i] = lines[i][:pos] + bit + lines[i][pos:]
        else:
            j = data.draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
    return "\n".join(lines) + "\n"


# -- the sandbox and the property --------------------------------------------------------
@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    """A project with sources, scripts, a symlink loop under data/ and a symlink to a
    folder outside the project."""
    base = tmp_path_factory.mktemp("fuzz")
    root = base / "project"
    outside = base / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("outside\n")
    for rel, text in {"data/raw.csv": "x\n", "data/a.csv": "a\n", "data/sub/b.csv": "b\n",
                      "tasks/clean.py": "", "tasks/fit.R": "", "tasks/mod.py": "def make(job):\n    pass\n",
                      "tpl/fit.py": "", "sub/a.py": ""}.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    os.symlink("..", root / "data" / "loop")
    os.symlink("../..", root / "data" / "sub" / "loop2")
    os.symlink(str(outside), root / "ext")
    return root


_WRITTEN: dict = {}  # path -> the text last written there (a slow disk: skip rewriting the same)


def write_project(root, files: dict) -> None:
    for rel, text in files.items():
        path = root / rel
        if _WRITTEN.get(path) != text:
            with open(path, "w", encoding="utf-8", errors="surrogatepass") as f:
                f.write(text)
            _WRITTEN[path] = text


def parsed(rel: str) -> dict:
    import tomli
    return tomli.loads(FILES[rel])


def check(root, overrides=None, requests=()) -> None:
    """Load as `node check` does, then make each recipe's job manifest and command line
    (as `node job` and a build do): a NodefileError is a fine answer, nothing else is."""
    try:
        project = load_project(str(root / "Nodefile.toml"), overrides or {}, requests=requests, use_cache=False)
    except NodefileError:
        return
    for node in project.nodes.values():
        for recipe in node.recipes:
            if recipe.kind in ("fetch", "load"):
                continue
            try:
                recipes.manifest(project, node, recipe, 1, None)
                recipes.command(project, node, recipe)
            except NodefileError:
                pass


def fuzz_settings(n: int):
    """Derandomized (the same examples every run) unless NODEFILE_FUZZ_EXPLORE is set: then
    fresh random examples, to look for new failures by hand (keep any found as a unit test)."""
    return settings(max_examples=n, derandomize="NODEFILE_FUZZ_EXPLORE" not in os.environ, database=None,
                    deadline=None, print_blob=True, suppress_health_check=list(HealthCheck))


@pytest.fixture
def at_root(sandbox, monkeypatch):
    monkeypatch.chdir(sandbox)
    write_project(sandbox, FILES)
    yield sandbox
    write_project(sandbox, FILES)


def _count(name: str) -> None:
    COUNTS[name] = COUNTS.get(name, 0) + 1


def test_the_seed_project_is_valid(at_root):
    project = load_project(str(at_root / "Nodefile.toml"), use_cache=False)
    assert {"t.fit", "t.score", "t.inner.leaf", "s.a", "fit[model=lin]", "pick[name=b,seed=7]"} <= set(project.nodes)
    assert "data/loop/raw.csv" not in project.nodes["glob"].input_paths


def test_random_toml_documents_load_or_fail_cleanly(at_root, trials):
    nodes = st.dictionaries(st.sampled_from(KEYS[:12] + ["n1", "n2", "bad name", "fit"]),
                            st.one_of(st.dictionaries(st.sampled_from(KEYS), values, max_size=6), values),
                            max_size=4)
    top = st.fixed_dictionaries({}, optional={
        "project": st.dictionaries(st.sampled_from(KEYS), values, max_size=4) | values,
        "params": st.dictionaries(keys, values, max_size=3) | values,
        "stores": st.dictionaries(keys, st.dictionaries(st.sampled_from(KEYS), values, max_size=3), max_size=2),
        "nodes": nodes | values,
        "use": st.dictionaries(keys, st.dictionaries(st.sampled_from(KEYS), values, max_size=3)
                               | st.just({"template": "tpl/t.toml", "with": {"data": "x", "target": "y"}})
                               | st.just({"nodefile": "sub/Nodefile.toml"}), max_size=2)})
    extra = st.dictionaries(keys, values, max_size=2)

    @fuzz_settings(trials(250, 3000))
    @given(doc=top, more=extra)
    def prop(doc, more):
        _count("random")
        write_project(at_root, {"Nodefile.toml": dumps({**doc, **more})})
        check(at_root)

    prop()


@pytest.mark.parametrize("target", ["Nodefile.toml", "tpl/t.toml", "tpl/t2.toml", "sub/Nodefile.toml"])
def test_mutated_nodefiles_templates_and_subpipelines_load_or_fail_cleanly(at_root, trials, target):
    seed = parsed(target)

    @fuzz_settings(trials(120, 1800))
    @given(data=st.data())
    def prop(data):
        _count("mutated " + target)
        write_project(at_root, FILES)
        write_project(at_root, {target: dumps(mutate(seed, data))})
        check(at_root)

    prop()


def test_mutated_toml_text_loads_or_fails_cleanly(at_root, trials):
    @fuzz_settings(trials(120, 1200))
    @given(target=st.sampled_from(sorted(FILES)), data=st.data())
    def prop(target, data):
        _count("text")
        write_project(at_root, FILES)
        write_project(at_root, {target: mutate_text(FILES[target], data)})
        check(at_root)

    prop()


def test_odd_set_values_and_requested_paths_load_or_fail_cleanly(at_root, trials):
    @fuzz_settings(trials(80, 800))
    @given(overrides=st.dictionaries(st.sampled_from(["seed", "n_rows", "model", "nope", ""]), values, max_size=3),
           requests=st.lists(st.sampled_from(STRINGS) | st.text(st.characters(blacklist_categories=("Cs",)), max_size=8), max_size=3))
    def prop(overrides, requests):
        _count("set/requests")
        check(at_root, overrides, tuple(requests))

    prop()


def test_a_few_fuzzed_nodefiles_through_the_cli_give_no_traceback(at_root, trials):
    """The real CLI: `node check` exits 0 or 2 and never prints a traceback; where
    the check passes, neither do `node status` and `node build --dry-run`."""
    seed = parsed("Nodefile.toml")
    texts = []

    @fuzz_settings(trials(6, 60))
    @given(data=st.data())
    def collect(data):
        texts.append(dumps(mutate(seed, data)))

    collect()
    for text in texts:
        _count("cli")
        write_project(at_root, {"Nodefile.toml": text})
        proc = run(at_root, "check")
        assert proc.returncode in (0, 2) and "Traceback" not in proc.stderr + proc.stdout, \
            f"{proc.stderr}\n--- Nodefile ---\n{text}"
        if proc.returncode == 0:
            for cmd in (["status"], ["build", "--dry-run"]):
                proc = run(at_root, *cmd)
                assert proc.returncode in (0, 1, 2) and "Traceback" not in proc.stderr + proc.stdout, \
                    f"node {' '.join(cmd)}: {proc.stderr}\n--- Nodefile ---\n{text}"


def test_zz_report_counts(capsys):
    total = sum(COUNTS.values())
    with capsys.disabled():
        print(f"\nloader fuzz: {total} Nodefiles ({', '.join(f'{k}: {v}' for k, v in sorted(COUNTS.items()))})")
