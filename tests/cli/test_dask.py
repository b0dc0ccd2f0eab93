"""The Dask executor (SPEC §5) on a real Dask cluster on 127.0.0.1: a LocalCluster
the build starts, and a `dask scheduler` with two `dask worker` processes the
tests start. With NODEFILE_REQUIRE_DASK=1 (CI) a missing dask fails these tests.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, base_env, describe, run, wait_for, write


def _need_dask():
    try:
        import distributed  # noqa: F401
    except ImportError:
        if os.environ.get("NODEFILE_REQUIRE_DASK") == "1":
            pytest.fail("dask[distributed] is not installed, and NODEFILE_REQUIRE_DASK=1 makes these tests mandatory")
        pytest.skip("dask[distributed] is not installed")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A Dask scheduler and two single-threaded workers on 127.0.0.1 (processes of their own)."""
    _need_dask()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    env = base_env(PYTHONPATH=os.pathsep.join([str(REPO)] + ([os.environ["PYTHONPATH"]]
                                                            if os.environ.get("PYTHONPATH") else [])))
    logs = tmp_path_factory.mktemp("dask")
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                               "--port", str(port), "--dashboard-address", ":0"], env=env,
                              stdout=open(logs / "scheduler.log", "w"), stderr=subprocess.STDOUT,
                              start_new_session=True)]
    for i in range(2):
        procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address,
                                       "--nthreads", "1", "--host", "127.0.0.1", "--dashboard-address", ":0",
                                       "--name", f"w{i}"], env=env,
                                      stdout=open(logs / f"worker{i}.log", "w"), stderr=subprocess.STDOUT,
                                      start_new_session=True))
    from distributed import Client
    client = Client(address, timeout=60)
    client.wait_for_workers(2, timeout=60)
    client.close()
    yield address
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for p in procs:
        p.wait(timeout=30)


def keys(project: Path) -> dict[str, str]:
    db = sqlite3.connect(project / ".nodefile/state.db")
    try:
        return dict(db.execute("SELECT name, key FROM nodes"))
    finally:
        db.close()


def outputs(project: Path) -> dict[str, bytes]:
    return {str(p.relative_to(project)): p.read_bytes() for p in sorted((project / "out").rglob("*")) if p.is_file()}


def mixed_copy(dst: Path) -> Path:
    shutil.copytree(REPO / "examples" / "mtcars", dst, ignore=shutil.ignore_patterns(".nodefile", "out"))
    return dst


@pytest.mark.needs_r
def test_the_mixed_example_builds_on_a_local_cluster_as_it_does_locally(tmp_path):
    _need_dask()
    local = mixed_copy(tmp_path / "local")
    dask = mixed_copy(tmp_path / "dask")
    run(local, "build", "-j", "2", check=0)
    proc = run(dask, "build", "-j", "2", "--executor", "dask", check=0, timeout=180)
    assert "built 4" in proc.stdout, describe(proc)
    assert keys(dask) == keys(local)
    out_l, out_d = outputs(local), outputs(dask)
    assert out_l.keys() == out_d.keys()
    for name in out_l:
        if not name.endswith((".png", ".html")):  # images carry their own time stamps
            assert out_l[name] == out_d[name], name
    assert "lm" in run(dask, "log", "fit").stdout or (dask / ".nodefile/logs").exists()


@pytest.mark.needs_r
def test_the_mixed_example_builds_on_a_scheduler_and_two_workers(cluster, tmp_path):
    local = mixed_copy(tmp_path / "local")
    dask = mixed_copy(tmp_path / "dask")
    run(local, "build", check=0)
    write(dask, {"Nodefile.toml": (dask / "Nodefile.toml").read_text() +
                 f'\n[executor]\nkind = "dask"\naddress = "{cluster}"\n'})
    proc = run(dask, "build", check=0, timeout=180)
    assert "built 4" in proc.stdout, describe(proc)
    assert f"via python on {cluster.rsplit(':', 1)[0]}" in proc.stdout, describe(proc)  # which worker ran it
    assert keys(dask) == keys(local)
    assert outputs(dask)["out/fit.json"] == outputs(local)["out/fit.json"]
    assert outputs(dask)["out/mtcars.csv"] == outputs(local)["out/mtcars.csv"]


def test_a_worker_killed_mid_recipe_does_not_fail_the_build(cluster, tmp_path):
    write(tmp_path, {
        "Nodefile.toml": f"""
            [executor]
            kind = "dask"
            address = "{cluster}"

            [nodes.victim]
            outputs = "out/victim.txt"
            python = "victim.py"
            """,
        "victim.py": """
            import os, time
            import nodefile
            job = nodefile.job()
            if not os.path.exists("killed"):
                open("worker.pid", "w").write(str(os.getppid()))  # the worker process running us
                time.sleep(60)
            open(job.outputs[0], "w").write("done")
            """,
    })
    proc = subprocess.Popen([sys.executable, "-m", "nodefile", "build"], cwd=tmp_path, env=base_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pid_file = tmp_path / "worker.pid"
    wait_for(lambda: pid_file.exists() and pid_file.read_text(), 120, what="the recipe to start on a worker")
    (tmp_path / "killed").write_text("")
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, out + err
    assert (tmp_path / "out/victim.txt").read_text() == "done"
    assert "FAILED" not in err


def test_a_resource_no_worker_offers_is_an_error_before_the_build(cluster, tmp_path):
    write(tmp_path, {
        "Nodefile.toml": """
            [nodes.train]
            outputs = "model.txt"
            shell = "touch {outputs}"
            resources = { gpu = 1 }
            """,
    })
    proc = run(tmp_path, "build", "--executor", "dask", "--dask", cluster, check=2, timeout=120)
    assert "no Dask worker offers gpu" in proc.stderr and "train" in proc.stderr, describe(proc)
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "model.txt").exists()


def test_an_unreachable_scheduler_is_one_clear_error(tmp_path):
    _need_dask()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    write(tmp_path, {"Nodefile.toml": '[nodes.a]\noutputs = "a"\nshell = "touch a"\n'})
    proc = run(tmp_path, "build", "--executor", "dask", "--dask", f"tcp://127.0.0.1:{port}", check=2, timeout=120)
    assert "cannot reach the Dask scheduler" in proc.stderr and "Traceback" not in proc.stderr, describe(proc)


def test_the_critical_path_starts_first_on_the_cluster(cluster, tmp_path):
    chain = "\n".join(f'[nodes.c{i}]\noutputs = "out/c{i}"\n' + (f'inputs = ["c{i - 1}"]\n' if i else
                                                                   'inputs = ["seed.txt"]\n')
                      + 'shell = "sleep 0.4 && touch {outputs}"\n' for i in range(4))
    short = "\n".join(f'[nodes.s{i}]\noutputs = "out/s{i}"\ninputs = ["seed.txt"]\n'
                      'shell = "sleep 0.05 && touch {outputs}"\n' for i in range(8))
    write(tmp_path, {"Nodefile.toml": f'[executor]\nkind = "dask"\naddress = "{cluster}"\n\n'
                     + short + "\n" + chain, "seed.txt": "1"})
    run(tmp_path, "build", check=0, timeout=180)  # learns the durations
    (tmp_path / "seed.txt").write_text("2")
    run(tmp_path, "build", check=0, timeout=180)
    db = sqlite3.connect(tmp_path / ".nodefile/state.db")
    (last,) = db.execute("SELECT max(build_id) FROM attempts").fetchone()
    first = db.execute("SELECT node FROM attempts WHERE build_id = ? ORDER BY start_ns LIMIT 1", (last,)).fetchone()
    db.close()
    assert first == ("c0",)
