"""The no-op record (fastpath.py) and the incremental check it enables
(incremental.unaffected): fast, and never wrong about what changed."""
import os
import subprocess
import sys
import textwrap
import time


from conftest import run as _run  # the suite's CLI runner (plain progress, bounded)
from conftest import base_env, wait_for  # at import time: tests/unit has a conftest module too


def _project(tmp_path, n=6):
    nodes = []
    for i in range(n):
        (tmp_path / "src").mkdir(exist_ok=True)
        (tmp_path / "src" / f"s{i}").write_text(f"{i}\n")
        nodes.append(f"""
            [nodes.n{i}]
            outputs = "out/n{i}"
            inputs = ["src/s{i}"]
            shell = "echo n{i} >> runs.log; cat {{inputs}} > {{outputs}}"
            """)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.csv").write_text("a\n")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "__init__.py").write_text("")
    (tmp_path / "lib" / "helper.py").write_text("X = 1\n")
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "use.py").write_text(textwrap.dedent("""
        import nodefile
        from lib import helper
        job = nodefile.job()
        open("runs.log", "a").write("py\\n")
        open(job.outputs[0], "w").write(str(helper.X))
        """))
    nodes.append("""
        [nodes.dir]
        outputs = "out/dir.txt"
        inputs = ["data"]
        shell = "echo dir >> runs.log; cat data/*.csv > {outputs}"

        [nodes.py]
        outputs = "out/py.txt"
        python = "tasks/use.py"

        [nodes.total]
        outputs = "out/total"
        inputs = ["n0", "n1"]
        shell = "echo total >> runs.log; cat {inputs} > {outputs}"
        """)
    (tmp_path / "Nodefile.toml").write_text(textwrap.dedent("".join(nodes)))
    return tmp_path


from conftest import runs as _runs  # noqa: E402


def _settle(p):
    """Build, then a no-op build that records the stat list (after the racy window)."""
    assert _run(p, "build").returncode == 0
    time.sleep(0.05)
    r = _run(p, "build")
    assert "nothing to do" in r.stdout, r.stdout
    assert os.listdir(p / ".nodefile" / "noop")


def test_one_changed_source_rebuilds_its_node_and_what_needs_it(tmp_path):
    p = _project(tmp_path)
    _settle(p)
    before = len(_runs(p))
    (p / "src" / "s0").write_text("changed\n")
    r = _run(p, "build")
    assert r.returncode == 0, r.stderr
    assert sorted(_runs(p)[before:]) == ["n0", "total"]
    assert (p / "out" / "total").read_text() == "changed\n1\n"
    # the build that rebuilt recorded the new state: the next one is a recorded no-op
    time.sleep(0.05)
    assert "nothing to do" in _run(p, "build").stdout
    assert len(_runs(p)) == before + 2


def test_a_file_changed_inside_a_directory_input_is_attributed(tmp_path):
    p = _project(tmp_path)
    _settle(p)
    before = len(_runs(p))
    (p / "data" / "a.csv").write_text("b\n")
    assert _run(p, "build").returncode == 0
    assert _runs(p)[before:] == ["dir"]
    assert (p / "out" / "dir.txt").read_text() == "b\n"


def test_an_imported_helper_edit_falls_back_to_the_full_check(tmp_path):
    p = _project(tmp_path)
    _settle(p)
    before = len(_runs(p))
    (p / "lib" / "helper.py").write_text("X = 2\n")
    assert _run(p, "build").returncode == 0
    assert _runs(p)[before:] == ["py"]
    assert (p / "out" / "py.txt").read_text() == "2"


def test_quiet_and_jobs_share_the_record(tmp_path):
    p = _project(tmp_path)
    _settle(p)
    r = _run(p, "build", "-q", "-j", "3")
    assert r.returncode == 0 and r.stdout == ""  # quiet, and nothing ran
    assert len([n for n in os.listdir(p / ".nodefile" / "noop") if not n.endswith(".nodes")]) == 1


def test_a_recorded_no_op_loads_only_the_fast_path(tmp_path):
    """Each module on the no-op path costs start-up time: a no-op answered from its
    record loads the package, errors, interrupts, cli and fastpath, nothing else of
    nodefile (the project, the state store and the engine stay unloaded)."""
    p = _project(tmp_path)
    _settle(p)
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "nodefile", "build"], cwd=p,
                          capture_output=True, text=True, env=base_env())
    assert proc.returncode == 0 and "nothing to do" in proc.stdout, proc.stdout + proc.stderr
    loaded = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert sorted(m for m in loaded if m.split(".")[0] == "nodefile") == [
        "nodefile", "nodefile.cli", "nodefile.errors", "nodefile.fastpath", "nodefile.interrupts"]


# -- build_incremental: a few nodes rebuilt from the node index, the project not loaded ----
def test_a_small_rebuild_reports_the_whole_project(tmp_path):
    p = _project(tmp_path)
    _settle(p)
    (p / "src" / "s1").write_text("one\n")
    r = _run(p, "build")
    assert r.returncode == 0, r.stderr
    assert "built 2, up to date 7" in r.stdout + r.stderr  # n1 and total; the other 7 untouched


def test_a_nodefile_edit_is_never_served_from_the_old_index(tmp_path):
    p = _project(tmp_path)
    _settle(p)
    before = len(_runs(p))
    nf = p / "Nodefile.toml"
    text = nf.read_text()
    text = text.replace('shell = "echo n1 >> runs.log; cat {inputs} > {outputs}"',
                        'shell = "echo n1 >> runs.log; (echo new; cat {inputs}) > {outputs}"')
    assert text != nf.read_text()
    nf.write_text(text)
    (p / "src" / "s1").write_text("one\n")
    assert _run(p, "build").returncode == 0
    assert sorted(_runs(p)[before:]) == ["n1", "total"]
    assert (p / "out" / "n1").read_text() == "new\none\n"


def test_a_failure_in_a_small_rebuild_is_retried_next_time(tmp_path):
    p = _project(tmp_path)
    _settle(p)
    (p / "src" / "s0").unlink()
    (p / "src" / "s0").mkdir()  # cat of a folder fails
    r = _run(p, "build")
    assert r.returncode == 1
    assert "n0" in r.stderr
    (p / "src" / "s0").rmdir()
    (p / "src" / "s0").write_text("back\n")
    assert _run(p, "build").returncode == 0
    assert (p / "out" / "total").read_text() == "back\n1\n"


def test_a_lost_node_index_only_costs_the_full_check(tmp_path):
    p = _project(tmp_path)
    _settle(p)
    for n in os.listdir(p / ".nodefile" / "noop"):
        if n.endswith(".nodes"):
            (p / ".nodefile" / "noop" / n).write_bytes(b"garbage")
    before = len(_runs(p))
    (p / "src" / "s0").write_text("changed\n")
    assert _run(p, "build").returncode == 0
    assert sorted(_runs(p)[before:]) == ["n0", "total"]
    assert (p / "out" / "total").read_text() == "changed\n1\n"


def test_a_same_tick_edit_after_a_rebuild_is_still_seen(tmp_path, monkeypatch):
    """A rebuild records the files it just read or wrote as "racy" (too fresh to trust
    their stat) instead of waiting out the timestamp tick: an edit of the same size in
    the same tick (same mtime), right after the build, must still be rebuilt next time.
    The tick is declared 2 s long (a coarse filesystem) so the test is not a race."""
    p = _project(tmp_path)
    _settle(p)
    monkeypatch.setenv("NODEFILE_TIMESTAMP_GRANULARITY_MS", "2000")
    src = p / "src" / "s0"
    src.write_text("AAAA\n")
    assert _run(p, "build").returncode == 0
    st = os.stat(src)
    before = len(_runs(p))
    src.write_text("BBBB\n")  # same size; the mtime put back: only the content differs
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
    r = _run(p, "build")
    assert r.returncode == 0, r.stderr
    assert sorted(_runs(p)[before:]) == ["n0", "total"]
    assert (p / "out" / "total").read_text() == "BBBB\n1\n"


def test_a_rebuild_leaves_a_record_the_next_build_trusts(tmp_path, monkeypatch):
    """After the racy files are checked once, the record is whole again: a no-op that
    loads nothing."""
    from nodefile import fastpath
    p = _project(tmp_path)
    _settle(p)
    monkeypatch.chdir(p)
    (p / "src" / "s0").write_text("changed\n")
    assert _run(p, "build").returncode == 0
    assert isinstance(fastpath.try_noop(["build"]), fastpath.Pending)  # the files it just read and wrote are racy
    time.sleep(0.05)
    before = len(_runs(p))
    assert _run(p, "build").returncode == 0  # checks them, runs nothing
    assert len(_runs(p)) == before
    assert fastpath.try_noop(["build"]).startswith("nothing to do: 9 node(s)")


def test_an_input_edited_after_its_node_ran_but_during_the_build_is_seen(tmp_path):
    """The record must hold the stat of what the build read, not a stat taken when the
    build ends: x.txt is edited while a slow sibling still runs, after x's node has
    built from the old text. The next build must rebuild that node, never say
    "nothing to do" (it did: the record re-statted x.txt at the end of the build)."""
    p = tmp_path
    (p / "out").mkdir()
    (p / "x.txt").write_text("one\n")
    (p / "y.txt").write_text("y1\n")
    (p / "Nodefile.toml").write_text(textwrap.dedent("""
        [nodes.a]
        outputs = "out/a.out"
        inputs = ["x.txt"]
        shell = "cp x.txt out/a.out"

        [nodes.b]
        outputs = "out/b.out"
        inputs = ["y.txt"]
        shell = "sleep 1.5 && cp y.txt out/b.out"
        """))
    _settle(p)
    (p / "x.txt").write_text("two\n")
    (p / "y.txt").write_text("y2\n")
    _edit_during_a_build(
        p, lambda: (p / "out" / "a.out").exists() and (p / "out" / "a.out").read_text() == "two\n",
        lambda: (p / "x.txt").write_text("three, edited during the build\n"))
    assert (p / "out" / "a.out").read_text() == "three, edited during the build\n"


def _edit_during_a_build(p, ready, edit, after: float = 0.0):
    """Start `node build -j 2` (whose slow node sleeps 1.5 s), make `edit` `after`
    seconds after `ready` holds, while it still runs, and let it end; then the next
    build must not say "nothing to do"."""
    build = subprocess.Popen([sys.executable, "-m", "nodefile", "build", "-j", "2"], cwd=p, env=base_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(ready, 10, what="the build to reach the point of the edit")
    time.sleep(after)
    assert build.poll() is None, "the slow node should still be running"
    edit()
    out, _ = build.communicate(timeout=60)
    assert build.returncode == 0, out
    time.sleep(0.05)
    r = _run(p, "build")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "nothing to do" not in r.stdout, r.stdout


def test_a_file_added_to_a_glob_folder_during_the_build_is_seen(tmp_path):
    """Like an edited input, a new file in a folder a glob lists, added while a build
    that checks the whole project runs (after the glob was expanded), must make the
    next build look again."""
    p = tmp_path
    (p / "out").mkdir()
    (p / "data").mkdir()
    (p / "data" / "a.csv").write_text("a\n")
    (p / "y.txt").write_text("y1\n")
    (p / "Nodefile.toml").write_text(textwrap.dedent("""
        [nodes.all]
        outputs = "out/all.csv"
        inputs = ["data/*.csv"]
        shell = "cat {inputs} > {outputs}"

        [nodes.slow]
        outputs = "out/slow.out"
        inputs = ["y.txt"]
        shell = "sleep 1.5 && cp y.txt out/slow.out"
        """))
    _settle(p)
    (p / "y.txt").write_text("y2\n")
    with open(p / "Nodefile.toml", "a") as f:
        f.write("# an edit: the next build checks the whole project\n")
    _edit_during_a_build(p, lambda: (p / ".nodefile" / "running.log").exists(),
                         lambda: (p / "data" / "b.csv").write_text("b\n"), after=0.3)  # the glob is expanded by then
    assert (p / "out" / "all.csv").read_text() == "a\nb\n"


def test_an_edited_nodefile_is_seen_first_and_the_rest_not_statted(tmp_path, monkeypatch):
    """An edit of the Nodefile means a full check, whatever else changed: try_noop
    stats the Nodefile first and stops there; the build that follows is right."""
    from nodefile import fastpath
    p = _project(tmp_path)
    _settle(p)
    monkeypatch.chdir(p)
    with open(p / "Nodefile.toml", "a") as f:
        f.write("\n[nodes.extra]\noutputs = \"out/extra\"\nshell = \"echo extra >> runs.log; echo x > {outputs}\"\n")
    statted = []
    real = fastpath._stamps
    monkeypatch.setattr(fastpath, "_stamps", lambda root, paths: statted.append(len(paths)) or real(root, paths))
    assert isinstance(fastpath.try_noop(["build"]), fastpath.Pending)
    assert statted == [1], statted  # the Nodefile alone
    monkeypatch.undo()
    before = len(_runs(p))
    r = _run(p, "build")
    assert r.returncode == 0, r.stderr
    assert _runs(p)[before:] == ["extra"] and (p / "out" / "extra").read_text() == "x\n"


def test_touch_of_the_defaults_records_the_next_build_as_a_no_op(tmp_path, monkeypatch):
    """`node touch` of every node a plain `node build` needs leaves that build a no-op
    of the fast path (not a full check); a touch that leaves a needed node out
    records nothing, and that build still builds it."""
    from nodefile import fastpath
    p = tmp_path
    (p / "out").mkdir()
    (p / "Nodefile.toml").write_text(textwrap.dedent("""
        [nodes.a]
        outputs = "out/a"
        shell = "echo a >> runs.log; echo a > {outputs}"

        [nodes.b]
        outputs = "out/b"
        shell = "echo b >> runs.log; echo b > {outputs}"
        """))
    for n in "ab":
        (p / "out" / n).write_text("by hand\n")
    time.sleep(0.05)
    assert _run(p, "touch").returncode == 0
    monkeypatch.chdir(p)
    time.sleep(0.05)
    assert fastpath.try_noop(["build", "-j", "2"]).startswith("nothing to do: 2 node(s)")
    r = _run(p, "build")
    assert r.returncode == 0 and "nothing to do" in r.stdout and not (p / "runs.log").exists(), r.stdout
    # a chain whose default is only its last node: touching it leaves `a` unaccepted
    (p / "Nodefile.toml").write_text(textwrap.dedent("""
        [nodes.a]
        outputs = "out/a2"
        shell = "echo a >> runs.log; echo a > {outputs}"

        [nodes.b]
        outputs = "out/b2"
        inputs = ["a"]
        shell = "echo b >> runs.log; cat {inputs} > {outputs}"
        """))
    (p / "out" / "b2").write_text("by hand\n")
    time.sleep(0.05)
    r = _run(p, "touch")
    assert r.returncode == 0 and "of 1 node(s): b" in r.stdout, r.stdout
    time.sleep(0.05)
    assert fastpath.try_noop(["build"]).record is None  # the touch recorded nothing
    r = _run(p, "build")
    assert r.returncode == 0 and (p / "runs.log").read_text().split()[:1] == ["a"], r.stdout
    assert (p / "out" / "a2").read_text() == "a\n"


def test_an_edited_sub_pipeline_nodefile_also_stops_the_stat_pass(tmp_path, monkeypatch):
    """Every Nodefile of the project is a source: an edit of a sub-pipeline's stops
    try_noop after the sources, and the build that follows sees the change."""
    from nodefile import fastpath
    p = tmp_path
    (p / "sub").mkdir()
    (p / "Nodefile.toml").write_text(textwrap.dedent("""
        [use.sub]
        nodefile = "sub/Nodefile.toml"

        [nodes.all]
        outputs = "all.txt"
        inputs = ["sub"]
        shell = "cat {inputs} > {outputs}"
        """))
    (p / "sub" / "Nodefile.toml").write_text(textwrap.dedent("""
        [nodes.x]
        outputs = "x.txt"
        shell = "echo x > {outputs}"
        """))
    _settle(p)
    monkeypatch.chdir(p)
    with open(p / "sub" / "Nodefile.toml", "a") as f:
        f.write('[nodes.y]\noutputs = "y.txt"\nshell = "echo y > {outputs}"\n')
    statted = []
    real = fastpath._stamps
    monkeypatch.setattr(fastpath, "_stamps", lambda root, paths: statted.append(len(paths)) or real(root, paths))
    assert isinstance(fastpath.try_noop(["build"]), fastpath.Pending)
    assert statted == [2], statted  # the two Nodefiles, nothing else
    monkeypatch.undo()
    r = _run(p, "build")
    assert r.returncode == 0, r.stderr
    assert (p / "sub" / "y.txt").read_text() == "y\n" and (p / "all.txt").read_text() == "x\ny\n"
