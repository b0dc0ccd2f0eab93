"""The Dask executor: the same build, its recipes run on a Dask distributed cluster.

nodefile keeps the brain (the DAG, staleness, recipe choice, fallback and
priorities); Dask only runs attempts. Each process attempt becomes one Dask
task (`run_attempt`, below) submitted with `priority=` (the node's critical
path), `resources=` (the recipe's resources other than cores), `pure=False`
and no Dask-level retries. On the worker the recipe runs as a process exactly
as the local executor starts it (argv, environment, working directory, its
own session, stdin from /dev/null); its output comes back to the driver's
`.nodefile/logs`. Transfers (load, fetch) stay on the driver, in threads.

- With no address, a LocalCluster of `-j` single-threaded worker processes
  on 127.0.0.1 is started for the build.
- At start every worker must see a marker file the driver writes (a shared
  filesystem), or the build stops naming the worker.
- A worker lost mid-recipe: the attempt is submitted again (at most
  LOST_RETRIES times) and the log says "worker lost", never a recipe failure.
- Ctrl-C: the build's tasks are cancelled and their processes ended on the
  workers; the cluster keeps running (an external one is never shut down).
"""
from __future__ import annotations

import os
import queue
import signal
import subprocess
import time
import uuid

from .base import Executor, Finished, Offer
from .local import LocalExecutor

LOST_RETRIES = 2  # a worker lost mid-recipe: submit the attempt again, this many times at most
OUTPUT_LIMIT = 64 << 20  # bytes of a recipe's output brought back to the driver's log
VISIBLE_WAIT = 10.0  # seconds an output may take to appear on the driver (network filesystems)
_RUNNING: dict = {}  # on a worker: task key -> its recipe's Popen (cancel_attempt ends it)


def run_attempt(argv, env, cwd, timeout, key):
    """On a Dask worker: run one recipe process; return what the driver records."""
    from distributed import get_worker
    wall = time.time()
    start = time.monotonic()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    _RUNNING[key] = proc
    timed_out = False
    try:
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _end_group(proc.pid, signal.SIGTERM)
            try:
                out, _ = proc.communicate(timeout=3)
            except subprocess.TimeoutExpired:
                _end_group(proc.pid, signal.SIGKILL)
                out, _ = proc.communicate()
    finally:
        _RUNNING.pop(key, None)
        _end_group(proc.pid, signal.SIGKILL)  # what the recipe started outlives it no more
    return {"code": proc.returncode, "duration": time.monotonic() - start, "start": wall,
            "output": out[-OUTPUT_LIMIT:], "timed_out": timed_out, "worker": get_worker().address}


def cancel_attempt(key) -> bool:
    """On every worker (client.run): end the recipe process of task `key`, if it runs here."""
    proc = _RUNNING.get(key)
    if proc is None:
        return False
    _end_group(proc.pid, signal.SIGTERM)
    return True


def sees(path: str) -> bool:
    """On every worker (client.run): is the driver's marker file visible here?"""
    return os.path.exists(path)


def _end_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class ClusterError(Exception):
    """The cluster cannot run this build (unreachable, no shared filesystem)."""


class DaskExecutor(Executor):
    """Runs process attempts as Dask tasks, transfers in local threads."""
    name = "dask"

    def __init__(self, address: str | None, jobs: int, state_dir: str):
        import dask
        from distributed import Client, LocalCluster
        self.cluster = None
        dask.config.set({"distributed.scheduler.allowed-failures": 0})  # our LocalCluster: we resubmit
        try:
            if address:
                self.client = Client(address, timeout=10)
            else:
                self.cluster = LocalCluster(n_workers=max(1, jobs), threads_per_worker=1, processes=True,
                                            host="127.0.0.1", dashboard_address=None)
                self.client = Client(self.cluster)
        except (OSError, TimeoutError) as e:
            raise ClusterError(f"cannot reach the Dask scheduler at {address}: {e}") from None
        self.local = LocalExecutor(None, helper_after=-1, jobs=jobs)  # transfers
        self.futures: dict[int, object] = {}
        self.specs: dict[int, object] = {}
        self.keys: dict[int, str] = {}
        self.lost: dict[int, int] = {}
        self.cancelled: set[int] = set()
        self.ended: queue.Queue = queue.Queue()
        self.priority = None  # node -> a number, higher first (the engine sets it)
        self._next = 1
        self.check_shared(state_dir)

    # -- what the cluster offers -----------------------------------------------------------------
    def offer(self) -> Offer:
        """Resources over all workers: cores (threads) and each named resource, summed.
        The filesystem is shared (check_shared made sure); no successors (submit_after)."""
        info = self.client.scheduler_info()["workers"]
        total = {"cores": float(sum(w.get("nthreads", 1) for w in info.values()))}
        for w in info.values():
            for k, v in (w.get("resources") or {}).items():
                total[k] = total.get(k, 0.0) + float(v)
        return Offer(self.name, int(total["cores"]), total, shared_filesystem=True, successors=False)

    def check_shared(self, state_dir: str) -> None:
        os.makedirs(state_dir, exist_ok=True)
        marker = os.path.join(os.path.abspath(state_dir), f"dask-marker-{uuid.uuid4().hex}")
        with open(marker, "w") as f:
            f.write("nodefile checks that every Dask worker sees the project\n")
        try:
            seen = self.client.run(sees, marker)
        finally:
            os.remove(marker)
        blind = sorted(w for w, ok in seen.items() if not ok)
        if blind:
            raise ClusterError(f"Dask worker {blind[0]} does not see the project folder "
                               f"{os.path.dirname(os.path.abspath(state_dir))}: the driver and every worker "
                               "need a shared filesystem")

    # -- the executor contract -----------------------------------------------------------------
    def submit(self, spec) -> int:
        if spec.func is not None:
            return self.local.submit(spec)
        handle = self._next
        self._next += 1
        self.specs[handle] = spec
        self._send(handle, spec)
        return handle

    def _send(self, handle: int, spec) -> None:
        key = f"nodefile-{spec.node}-{spec.attempt}-{uuid.uuid4().hex[:12]}"
        res = {k: v for k, v in spec.resources.items() if k not in ("cores", "mem_gb")}
        prio = self.priority(spec.node) if self.priority is not None else 0
        fut = self.client.submit(run_attempt, list(spec.argv), dict(spec.env), spec.cwd, spec.timeout, key,
                                 key=key, pure=False, priority=prio, resources=res or None, retries=0)
        self.futures[handle] = fut
        self.keys[handle] = key

        def ended(f, h=handle):
            self.ended.put((h, f))
            self.local.wake()
        fut.add_done_callback(ended)

    def wait(self, timeout: float | None) -> list[Finished]:
        """Block until an attempt ends (a task here, or a transfer) or `timeout` passes."""
        done = []
        if self.local.running():
            done = self.local.wait(timeout if self.ended.empty() else 0)  # a task's end wakes it
        elif self.ended.empty():
            try:
                self.ended.put(self.ended.get(timeout=timeout))
            except queue.Empty:
                return []
        while True:
            try:
                handle, fut = self.ended.get_nowait()
            except queue.Empty:
                break
            fin = self._finished(handle, fut)
            if fin is not None:
                done.append(fin)
        return done

    def _finished(self, handle: int, fut) -> Finished | None:
        if self.futures.get(handle) is not fut:
            return None  # an earlier submission of a resubmitted attempt
        spec = self.specs[handle]
        if handle in self.cancelled or fut.cancelled():
            self._forget(handle)
            return Finished(handle, -signal.SIGTERM, 0.0, cancelled=True)
        try:
            r = fut.result()
        except Exception as e:  # noqa: BLE001 - the worker died, or the task could not run
            return self._lost(handle, spec, e)
        _append(spec.log, r["output"])
        self._forget(handle)
        if r["code"] == 0:
            wait_visible(spec.manifest)
        return Finished(handle, r["code"], r["duration"], timed_out=r["timed_out"], output_bytes=len(r["output"]),
                        ended_ns=int((r["start"] + r["duration"]) * 1e9), worker=r["worker"])

    def _lost(self, handle: int, spec, error) -> Finished | None:
        n = self.lost.get(handle, 0)
        what = f"worker lost ({type(error).__name__}: {error})".strip()
        _append(spec.log, f"nodefile: {what}\n".encode())
        if n < LOST_RETRIES:
            self.lost[handle] = n + 1
            _append(spec.log, b"nodefile: the attempt is submitted again\n")
            self._send(handle, spec)
            return None
        self._forget(handle)
        return Finished(handle, None, 0.0, error=what, failure="transient")

    def _forget(self, handle: int) -> None:
        for d in (self.futures, self.specs, self.keys, self.lost):
            d.pop(handle, None)
        self.cancelled.discard(handle)

    def cancel(self, handle: int) -> None:
        if handle < 0:
            return self.local.cancel(handle)
        fut = self.futures.get(handle)
        if fut is None or handle in self.cancelled:
            return None
        self.cancelled.add(handle)
        fut.cancel()
        try:
            self.client.run(cancel_attempt, self.keys[handle])
        except Exception:  # noqa: BLE001 - a worker gone meanwhile: nothing runs there
            pass
        self.ended.put((handle, fut))
        self.local.wake()
        return None

    def submit_after(self, spec, earlier: int) -> None:
        """Declined: a task is queued on the Dask scheduler already (cluster_limits keeps
        a few more in flight than threads), so there is no round trip to save."""
        return None

    def withdraw(self, handle: int) -> None:
        self.cancel(handle)

    def cancel_all(self, grace: float = 3.0) -> list[Finished]:
        done = self.local.cancel_all(grace)
        for handle in list(self.futures):
            self.cancel(handle)
        return done + self.wait(0)

    def wake(self) -> None:
        self.local.wake()

    def running(self) -> int:
        return len(self.futures) + self.local.running()

    def close(self) -> None:
        """After the build (idempotent): the client goes; a LocalCluster of ours ends too."""
        if self.client is None:
            return
        self.local.close()
        try:
            self.client.close()
        finally:
            self.client = None
            if self.cluster is not None:
                self.cluster.close()
                self.cluster = None


def _append(path: str, data: bytes) -> None:
    if not data:
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "ab") as f:
        f.write(data)


def wait_visible(manifest: str) -> None:
    """A recipe's outputs written on another machine may take a moment to appear here
    (NFS attribute caches): wait for them a bounded time."""
    import json
    try:
        with open(manifest) as f:
            m = json.load(f)
    except (OSError, ValueError):
        return
    cwd = m.get("cwd") or m.get("root") or "."
    paths = []
    for e in m.get("outputs", []):
        v = e["value"]
        paths += v if isinstance(v, list) else [v]
    end = time.monotonic() + VISIBLE_WAIT
    while time.monotonic() < end and not all(os.path.exists(os.path.join(cwd, p)) for p in paths):
        time.sleep(0.05)
