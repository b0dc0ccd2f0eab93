"""The Python API, and how targets, aliases and code are resolved: regressions
found while documenting the tool."""
import subprocess
import sys
import textwrap


from conftest import run as _run  # the suite's CLI runner (plain progress, bounded)


from conftest import write as _write  # noqa: E402


from conftest import runs as _runs  # noqa: E402


def test_python_api_builds_twice_and_reports_status(tmp_path):
    _write(tmp_path, {"Nodefile.toml": """
        [nodes.a]
        outputs = "a.txt"
        shell = "echo a >> runs.log; echo a > {outputs}"
        """})
    code = textwrap.dedent("""
        import nodefile
        s1 = nodefile.build(["a"])
        s2 = nodefile.build(["a"])          # the function must still be callable
        st = nodefile.status()
        print(s1.built, s2.up_to_date, st["a"].status.value)
        """)
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[0] == "['a'] ['a'] up to date"
    assert _runs(tmp_path) == ["a"]


def test_python_api_raises_build_error_with_a_summary(tmp_path):
    _write(tmp_path, {"Nodefile.toml": """
        [nodes.bad]
        outputs = "bad.txt"
        shell = "exit 3"
        """})
    code = textwrap.dedent("""
        import nodefile
        try:
            nodefile.build(["bad"])
        except nodefile.BuildError as e:
            print("failed:", e.summary.failed)
        """)
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == "failed: ['bad']", r.stderr


def test_a_use_name_is_an_input_standing_for_its_nodes(tmp_path):
    _write(tmp_path, {
        "Nodefile.toml": """
            [use.sub]
            nodefile = "sub/Nodefile.toml"

            [nodes.all]
            outputs = "all.txt"
            inputs = ["sub"]
            shell = "cat {inputs} > {outputs}"
            """,
        "sub/Nodefile.toml": """
            [nodes.x]
            outputs = "x.txt"
            shell = "echo x > {outputs}"
            [nodes.y]
            outputs = "y.txt"
            shell = "echo y > {outputs}"
            """})
    r = _run(tmp_path, "build", "all")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "all.txt").read_text() == "x\ny\n"


def test_editing_a_call_recipes_module_rebuilds_the_node(tmp_path):
    _write(tmp_path, {
        "Nodefile.toml": """
            [nodes.c]
            outputs = "c.txt"
            call = "mypkg.funcs:make"
            """,
        "mypkg/__init__.py": "",
        "mypkg/funcs.py": """
            from . import helper
            def make(job):
                open(job.outputs[0], "w").write(helper.TEXT)
            """,
        "mypkg/helper.py": "TEXT = 'one'\n"})
    assert _run(tmp_path, "build").returncode == 0
    assert (tmp_path / "c.txt").read_text() == "one"
    (tmp_path / "mypkg/helper.py").write_text("TEXT = 'two'\n")
    r = _run(tmp_path, "explain", "c")
    assert "mypkg/helper.py" in r.stdout, r.stdout
    assert _run(tmp_path, "build").returncode == 0
    assert (tmp_path / "c.txt").read_text() == "two"


def _matrix_project(tmp_path):
    _write(tmp_path, {"Nodefile.toml": """
        [nodes.src]
        outputs = "src.txt"
        shell = "echo src >> runs.log; echo s > {outputs}"

        [nodes.fit]
        outputs = "fits/{m}.txt"
        inputs = ["src"]
        shell = "echo {m} >> runs.log; echo {m} > {outputs}"
        matrix = { m = ["a", "b"] }
        """})


def test_clean_and_touch_of_a_pattern_name_act_on_its_instances_only(tmp_path):
    _matrix_project(tmp_path)
    assert _run(tmp_path, "build", "fit").returncode == 0
    r = _run(tmp_path, "clean", "fit")
    assert "removed 2 output(s)" in r.stdout, r.stdout
    assert not (tmp_path / "fits/a.txt").exists() and (tmp_path / "src.txt").exists()
    # touch accepts only the named nodes; with an output missing, nothing is accepted
    (tmp_path / "fits").mkdir(exist_ok=True)
    (tmp_path / "fits/a.txt").write_text("by hand\n")
    r = _run(tmp_path, "touch", "fit")
    assert r.returncode == 2 and "nothing was accepted" in r.stderr
    (tmp_path / "fits/b.txt").write_text("by hand\n")
    assert _run(tmp_path, "touch", "fit").returncode == 0
    before = _runs(tmp_path)
    assert "nothing to do" in _run(tmp_path, "build", "fit").stdout
    assert _runs(tmp_path) == before


def test_a_folder_of_outputs_is_a_target(tmp_path):
    _matrix_project(tmp_path)
    r = _run(tmp_path, "build", "fits/")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "fits/a.txt").exists() and (tmp_path / "fits/b.txt").exists()


def test_status_below_a_stale_node_says_it_is_decided_later(tmp_path):
    _matrix_project(tmp_path)
    assert _run(tmp_path, "build", "fit").returncode == 0
    _write(tmp_path, {"Nodefile.toml": (tmp_path / "Nodefile.toml").read_text().replace("echo s >", "echo t >")})
    out = _run(tmp_path, "status").stdout
    line = next(l for l in out.splitlines() if l.startswith("fit[m=a]"))
    assert "after its inputs" in line, out
