"""The tools under test: where they are, how to run them, what state to wipe.

make comes from the system; ninja, doit and snakemake from the benchmark's own
venv at bench/.env/ (created and filled by `ensure_env`); nodefile is this
checkout installed as users install it (`pip install .`, not editable) into a
venv of its own, bench/.nfenv/ (`install_nodefile`), or with --no-install the
console script next to the interpreter running the harness.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
ENV = os.path.join(HERE, ".env")
ENV_BIN = os.path.join(ENV, "bin")
ENV_PY = os.path.join(ENV_BIN, "python")
PEER_PACKAGES = ("ninja", "doit", "snakemake", "matplotlib")
NF_ENV = os.path.join(HERE, ".nfenv")
NF_BIN = os.path.join(NF_ENV, "bin")
NF_PY = os.path.join(NF_BIN, "python")
_NF_INSTALLED = False  # install_nodefile ran: measure its copy
_CHECKOUT = None  # use_checkout ran: measure the nodefile of that source tree


@dataclass
class Tool:
    name: str
    argv: list  # the build command, run in the workflow's folder
    state: tuple  # files / folders holding the tool's state (wiped for a full build)
    max_n: int | None = None  # above this many nodes the tool is not run
    max_n_reason: str = ""
    early_cutoff: bool = False  # a byte-identical output stops the rebuild there
    version: str = ""
    source: str = ""  # where the binary came from
    env: dict = field(default_factory=dict)  # extra environment variables
    touch_setup: list | None = None  # accepts existing outputs as built (instead of a huge full build)
    writes: str = ""  # the workflow format it reads (a key of workflows.WRITERS), if not its name

    def too_big(self, n: int) -> str | None:
        if self.max_n is not None and n > self.max_n:
            return self.max_n_reason or f"not run above {self.max_n} nodes"
        return None


def install_nodefile(log=print) -> None:
    """Install this checkout into bench/.nfenv as a user's `pip install .` would: a
    regular install (compiled .pyc, no editable-install finder) in a venv without
    this machine's site-packages. The interpreter the harness runs in carries
    start-up costs that are no part of nodefile (an editable finder, and here a
    sandbox .pth that imports certifi: ~30 ms per start against ~10 ms in a venv).
    Re-run at every benchmark run, so the copy measured is the checkout's."""
    global _NF_INSTALLED
    if not os.path.exists(NF_PY):
        log(f"creating nodefile's benchmark venv {NF_ENV}")
        subprocess.run([sys.executable, "-m", "venv", NF_ENV], check=True)
    have_deps = subprocess.run([NF_PY, "-c", "import xxhash, tomli, fsspec, watchdog"],
                               capture_output=True).returncode == 0
    log(f"pip install {REPO} into {NF_ENV} (not editable)")
    subprocess.run([NF_PY, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--force-reinstall",
                    *(["--no-deps"] if have_deps else []), REPO], check=True, capture_output=True)
    _NF_INSTALLED = True


def checkout_env(checkout: str) -> dict:
    """The environment that makes `sys.executable -m nodefile` run the nodefile of a source
    tree (a git worktree): its folder first on the path, ahead of any installed copy."""
    return {"PYTHONPATH": os.path.abspath(checkout)}


def use_checkout(checkout: str) -> None:
    """Measure the nodefile of this source tree: nodefile_cmd() becomes `sys.executable -m
    nodefile`, run (as are the processes it starts) with checkout_env(checkout)."""
    global _CHECKOUT
    _CHECKOUT = os.path.abspath(checkout)
    if not os.path.isfile(os.path.join(_CHECKOUT, "nodefile", "__init__.py")):
        print(f"--checkout {checkout}: no nodefile/__init__.py there", file=sys.stderr)
        raise SystemExit(2)
    os.environ.update(checkout_env(_CHECKOUT))
    compile_bytecode(_CHECKOUT)


def source_dir() -> str:
    """The source tree whose nodefile is measured (this checkout unless use_checkout ran)."""
    return _CHECKOUT or REPO


def nodefile_python() -> str:
    """The interpreter nodefile runs on (for `python -c pass`, the start-up baseline)."""
    return NF_PY if _NF_INSTALLED else sys.executable


def nodefile_cmd() -> list:
    """bench/.nfenv's console script after install_nodefile; else the real console script
    next to sys.executable (never a PATH shim), else `python -m nodefile`."""
    if _NF_INSTALLED:
        return [os.path.join(NF_BIN, "nodefile")]
    if _CHECKOUT:
        return [sys.executable, "-m", "nodefile"]
    script = os.path.join(os.path.dirname(sys.executable), "nodefile")
    if os.path.isfile(script) and os.access(script, os.X_OK):
        return [script]
    return [sys.executable, "-m", "nodefile"]


def compile_bytecode(tree: str = REPO) -> None:
    """Write nodefile's .pyc files, as a pip install does: with PYTHONDONTWRITEBYTECODE
    set (this machine sets it) an edited module would be compiled again on every run,
    which no installed copy does. The peers in bench/.env were compiled by pip."""
    import compileall
    compileall.compile_dir(os.path.join(tree, "nodefile"), quiet=1)


def _version(argv) -> str:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    out = (r.stdout or r.stderr).strip().splitlines()
    return out[0].strip() if out else "?"


def ensure_env(log=print) -> None:
    """Create bench/.env with `python -m venv` and pip install the peers that are missing."""
    if not os.path.exists(ENV_PY):
        log(f"creating the benchmark venv {ENV}")
        subprocess.run([sys.executable, "-m", "venv", ENV], check=True)
    missing = []
    for pkg in PEER_PACKAGES:
        mod = {"ninja": "ninja", "doit": "doit", "snakemake": "snakemake", "matplotlib": "matplotlib"}[pkg]
        r = subprocess.run([ENV_PY, "-c", f"import {mod}"], capture_output=True)
        if r.returncode:
            missing.append(pkg)
    if missing:
        log(f"pip install into {ENV}: {' '.join(missing)}")
        subprocess.run([ENV_PY, "-m", "pip", "install", "-q", *missing], check=True)


def find_tools(snakemake_max: int = 1000, doit_max: int = 10000) -> tuple[dict, dict]:
    """(available tools by name, unavailable tool -> reason)."""
    tools: dict = {}
    missing: dict = {}

    make = shutil.which("make")
    if make:
        tools["make"] = Tool("make", [make, "-r", "-j2", "-s"], (), version=_version([make, "--version"]),
                             source=make)
    else:
        missing["make"] = "no `make` on PATH"

    ninja = os.path.join(ENV_BIN, "ninja")
    src = "bench/.env (PyPI)"
    if not os.path.exists(ninja):
        ninja = shutil.which("ninja") or ""
        src = ninja
    if ninja:
        tools["ninja"] = Tool("ninja", [ninja, "-j2"], (".ninja_log", ".ninja_deps"),
                              version="ninja " + _version([ninja, "--version"]), source=src)
    else:
        missing["ninja"] = "not installed in bench/.env and none on PATH"

    doit = os.path.join(ENV_BIN, "doit")
    if os.path.exists(doit):
        tools["doit"] = Tool("doit", [doit, "-n", "2"], (".doit.db", ".doit.db.dat", ".doit.db.dir",
                                                          ".doit.db.bak", ".doit.db.db"),
                             max_n=doit_max, early_cutoff=True,
                             max_n_reason=f"doit not run above {doit_max} nodes (~2 ms CPU per task and "
                                          "~1.2 s no-op already at 10k; 100k would take many minutes)",
                             version="doit " + _version([doit, "--version"]), source="bench/.env (PyPI)")
    else:
        missing["doit"] = "not installed in bench/.env"

    snake = os.path.join(ENV_BIN, "snakemake")
    if os.path.exists(snake):
        tools["snakemake"] = Tool("snakemake", [snake, "-c2"], (".snakemake",), max_n=snakemake_max,
                                  max_n_reason=f"snakemake not run above {snakemake_max} nodes (its scheduler "
                                               "is O(ready jobs) per round: 10k trivial jobs take > 1 h)",
                                  version="snakemake " + _version([snake, "--version"]),
                                  source="bench/.env (PyPI)")
    else:
        missing["snakemake"] = "not installed in bench/.env"

    nf = nodefile_cmd()
    tools["nodefile"] = Tool("nodefile", nf + ["build", "-j", "2"], (".nodefile",), early_cutoff=True,
                             touch_setup=nf + ["touch"],
                             version=_version(nf + ["--version"]), source=" ".join(nf))
    return tools, missing


def clean(tool: Tool, d: str) -> None:
    """Remove outputs and the tool's state: the next build is a full build."""
    out = os.path.join(d, "out")
    shutil.rmtree(out, ignore_errors=True)
    os.mkdir(out)
    for s in tool.state:
        p = os.path.join(d, s)
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p)
        elif os.path.lexists(p):
            os.remove(p)


def source_state(tree: str | None = None) -> dict:
    """The commit of the nodefile being measured (source_dir(), or `tree`) and a hash of any
    uncommitted change to it (nodefile is installed editable: compare start and end to see if
    it changed mid-run)."""
    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=tree or source_dir(), capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.TimeoutExpired):
            return ""
    import hashlib
    diff = git("diff", "HEAD", "--", "nodefile")
    return {"commit": git("rev-parse", "HEAD").strip(),
            "uncommitted_diff_sha1": hashlib.sha1(diff.encode()).hexdigest() if diff else None}
