"""`node gc` keeps the records and cache entries of pattern instances that a request
made (`node build fits/lin.txt`): they are not in the Nodefile's default project,
but they are not gone from it either. An instance whose pattern is gone is dropped."""
from conftest import describe, run, runs, write


def test_gc_keeps_instances_made_from_requested_paths(tmp_path):
    write(tmp_path, {"Nodefile.toml": """
        [nodes.fit]
        outputs = "fits/{model}.txt"
        shell = "mkdir -p fits && echo {model} >> runs.log && echo {model} > {outputs}"

        [nodes.other]
        outputs = "o.txt"
        shell = "echo o > o.txt"
    """})
    run(tmp_path, "build", "other", "fits/lin.txt", check=0)
    proc = run(tmp_path, "gc", check=0)
    assert "records of 0 node(s)" in proc.stdout and "removed 0 cache entries" in proc.stdout, describe(proc)
    proc = run(tmp_path, "status", "fits/lin.txt", check=0)
    assert "0 of 1 node(s) stale" in proc.stdout, describe(proc)
    (tmp_path / "fits" / "lin.txt").unlink()
    proc = run(tmp_path, "explain", "fits/lin.txt", check=0)
    assert "load:" in proc.stdout, describe(proc)  # its cache entry is still there to restore from
    assert runs(tmp_path) == ["lin"]
    # the pattern changes its outputs: the old instance is no longer reachable, gc drops it
    nf = tmp_path / "Nodefile.toml"
    nf.write_text(nf.read_text().replace("fits/{model}.txt", "fits2/{model}.txt"))
    proc = run(tmp_path, "gc", check=0)
    assert "records of 1 node(s)" in proc.stdout and "removed 1 cache entry" in proc.stdout, describe(proc)
