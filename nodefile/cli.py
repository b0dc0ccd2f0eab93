"""argv -> options -> a command; errors -> exit codes. The `node` pass-through to Node.js.

Exit status: 0 success, 1 a recipe failed, 2 usage or Nodefile error, 130 interrupted.
"""
from __future__ import annotations

import os
import sys

COMMANDS = ("build", "status", "explain", "check", "watch", "graph", "report", "job", "touch",
            "clean", "gc", "push", "pull", "log", "help")
VERSION = "0.1.0"


class ExitCode:
    """The documented exit statuses (plain ints: no enum import on the start-up path)."""
    OK = 0
    FAILED = 1
    USAGE = 2
    INTERRUPTED = 130


# -- the Node.js pass-through ----------------------------------------------------------
def is_ours(argv: list[str]) -> bool:
    if not argv:
        return True
    first = argv[0]
    return first in COMMANDS or first in ("-h", "--help", "-C", "--directory", "-f", "--file")


def _is_self(path: str) -> bool:
    try:
        if os.path.realpath(path) == os.path.realpath(sys.argv[0]):
            return True
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return True
    # our console script, or a pyenv shim that would run it again
    return b"nodefile" in head or (b"pyenv" in head and b"exec" in head)


def find_next_node() -> str | None:
    skip = set(filter(None, os.environ.get("NODEFILE_PASSTHROUGH_SKIP", "").split(os.pathsep)))
    for d in os.environ.get("PATH", "").split(os.pathsep):
        cand = os.path.join(d or ".", "node")
        if cand in skip or not (os.path.isfile(cand) and os.access(cand, os.X_OK)):
            continue
        if _is_self(cand):
            continue
        return cand
    return None


def passthrough(argv: list[str]) -> int | None:
    """exec the next `node` on PATH (Node.js) with argv; None when there is none."""
    target = find_next_node()
    if target is None:
        return None
    skip = os.environ.get("NODEFILE_PASSTHROUGH_SKIP", "")
    os.environ["NODEFILE_PASSTHROUGH_SKIP"] = (skip + os.pathsep if skip else "") + target
    os.execv(target, [target] + argv)


# -- argument parsing ---------------------------------------------------------------------
def _parser(only: str | None = None):
    """The command line parser; with `only`, just that command's subparser (argparse
    and its gettext lookups cost ~10 ms for all fifteen, on every start)."""
    import argparse
    p = argparse.ArgumentParser(prog="node", description="nodefile: a Make-like build tool for data projects "
                                "in Python and R. Reads Nodefile.toml in this folder or the nearest parent.")
    p.add_argument("--version", action="version", version=f"nodefile {VERSION}")
    p.add_argument("-C", "--directory", help="run as if started in this folder")
    p.add_argument("-f", "--file", help="the Nodefile to use (default: Nodefile.toml, searched upwards)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    class _Skipped:  # a command other than `only`: its arguments are not needed
        def add_argument(self, *a, **k):
            pass

    def cmd(name, help, targets=True):
        if only is not None and name != only:
            return _Skipped()
        sp = sub.add_parser(name, help=help, description=help)
        if targets:
            sp.add_argument("targets", nargs="*", metavar="TARGET")
        sp.add_argument("-v", "--verbose", action="count", default=0)
        sp.add_argument("-q", "--quiet", action="store_true")
        sp.add_argument("--set", action="append", default=[], metavar="K=V",
                        help="override a [params] value for this run (a TOML value)")
        return sp

    b = cmd("build", "build targets (node names or output paths); default: [project] default")
    b.add_argument("-j", "--jobs", type=int, help="run up to N recipes at once")
    b.add_argument("-k", "--keep-going", action="store_true", help="build everything not downstream of a failure")
    b.add_argument("-n", "--dry-run", action="store_true", help="say what would run, and why")
    b.add_argument("-B", "--always-make", action="store_true", help="rebuild the targets and their dependencies")
    b.add_argument("--recipe", help="use only recipes of this kind (or name)")
    b.add_argument("--retries", type=int, default=0, help="retry a failed recipe N times")
    b.add_argument("--executor", choices=("local",), default="local")
    b.add_argument("--resources", default="", help="limits, e.g. gpu=1,mem_gb=16")
    b.add_argument("--no-wait", action="store_true", help="fail instead of waiting when another build runs")
    cmd("status", "a table: each node, up to date / stale / missing, and why")
    sp = cmd("explain", "why a node is stale: which part of its key changed, old -> new")
    cmd("check", "validate the Nodefile: every error at once", targets=False)
    sp = cmd("graph", "the DAG as DOT, Mermaid or JSON, coloured by status")
    sp.add_argument("--format", choices=("dot", "mermaid", "json"), default="dot")
    cmd("job", "write the job manifest of a node and print how to run its recipe by hand")
    cmd("touch", "accept the current outputs as up to date")
    cmd("clean", "remove the outputs of targets (default: every node)")
    cmd("log", "the logs of the attempts of a node's last build, newest last")
    w = cmd("watch", "build, then rebuild what a change to inputs, scripts or the Nodefile makes stale")
    w.add_argument("-j", "--jobs", type=int, help="run up to N recipes at once")
    w.add_argument("-k", "--keep-going", action="store_true", help="build everything not downstream of a failure")
    w.add_argument("--poll", type=float, metavar="SECONDS", help="poll for changes every SECONDS instead of "
                   "using native file events (for network drives, containers)")
    w.add_argument("--debounce", type=float, default=0.3, metavar="SECONDS",
                   help="quiet period that ends a burst of changes (default 0.3)")
    sp = cmd("report", "write an HTML report: the DAG, the last build's timeline, learned estimates", targets=False)
    sp.add_argument("-o", "--output", help="the file to write (default: .nodefile/report.html)")
    sp = cmd("gc", "drop cache entries and state of nodes no longer in the Nodefile", targets=False)
    sp.add_argument("--older-than", type=float, metavar="DAYS", help="also drop cache entries older than this")
    sp = cmd("push", "upload the outputs of up-to-date nodes to stores")
    sp.add_argument("--store", help="this store only (default: every store with push = true)")
    cmd("pull", "restore stale nodes from the local cache or stores, without running recipes")
    if only is None or only == "help":
        sub.add_parser("help", help="show this help")
    return p


_FAST_FLAGS_OFF = ("-n", "--dry-run", "-B", "--always-make", "-C", "--directory", "-f", "--file", "-h", "--help",
                   "-v", "--verbose", "-vv")


def _fast_ok(argv) -> bool:
    """Options under which a recorded no-op may be trusted without loading anything."""
    return not any(a in _FAST_FLAGS_OFF or a.startswith(("-C", "-f", "--directory=", "--file=")) for a in argv)


def _simple_build(argv):
    """`build [-j N] [-k] [-q] [-v] [TARGET ...]` parsed without argparse (whose import,
    with shutil and locale, and parser set-up cost ~8 ms per start): the arguments
    argparse would give, or None for anything else (argparse then parses, and words
    its errors)."""
    if not argv or argv[0] != "build":
        return None
    import types
    ns = types.SimpleNamespace(command="build", directory=None, file=None, targets=[], verbose=0, quiet=False,
                               set=[], jobs=None, keep_going=False, dry_run=False, always_make=False, recipe=None,
                               retries=0, executor="local", resources="", no_wait=False)
    it = iter(argv[1:])
    for a in it:
        if a in ("-k", "--keep-going"):
            ns.keep_going = True
        elif a in ("-q", "--quiet"):
            ns.quiet = True
        elif a in ("-v", "--verbose", "-vv"):
            ns.verbose += len(a) - 1 if a.startswith("-v") else 1
        elif a in ("-j", "--jobs") or a.startswith(("-j", "--jobs=")):
            value = next(it, None) if a in ("-j", "--jobs") else a[7:] if a.startswith("--jobs=") else a[2:]
            if value is None or not value.isdigit():
                return None
            ns.jobs = int(value)
        elif a.startswith("-") or a == "":
            return None
        else:
            ns.targets.append(a)
    return ns


def parse_set(items) -> dict:
    from .config.load import tomllib
    from .errors import ConfigError
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item}: expected NAME=VALUE")
        k, v = item.split("=", 1)
        k = k.strip()
        try:
            out[k] = tomllib.loads(f"v = {v}")["v"]
        except tomllib.TOMLDecodeError:
            out[k] = v  # a bare word is a string: --set model=xgb
    return out


def parse_resources(text: str) -> dict:
    from .errors import ConfigError
    out = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        k, sep, v = item.partition("=")
        try:
            out[k.strip()] = float(v)
        except ValueError:
            raise ConfigError(f"--resources {item}: expected NAME=NUMBER") from None
        if not sep:
            raise ConfigError(f"--resources {item}: expected NAME=NUMBER")
    return out


def main(argv: list[str] | None = None) -> int:
    """Run one command. In the CLI process a Ctrl-C or SIGTERM at any moment exits 130
    without a traceback (interrupts.py): here they raise KeyboardInterrupt, caught below."""
    from .interrupts import exit_interrupted, hand_back, take_over
    owned = take_over()
    try:
        try:
            code = _main(argv)
        finally:
            if owned:
                hand_back()
    except KeyboardInterrupt:
        while True:  # a second signal inside this handler: once more, until handed back
            try:
                if owned:
                    hand_back()
                sys.stderr.write("nodefile: interrupted\n")
                code = ExitCode.INTERRUPTED
                break
            except KeyboardInterrupt:
                continue
    if owned and code == ExitCode.INTERRUPTED:
        exit_interrupted()  # 130, never death by SIGINT (interrupts.py)
    return code


def _main(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    prog = os.path.basename(sys.argv[0]) if sys.argv else "node"
    if prog == "node" and argv and not is_ours(argv):
        if passthrough(argv) is None and argv[0] not in ("--version", "-v"):
            sys.stderr.write(f"node: '{argv[0]}' is not a nodefile command, and no Node.js `node` is on PATH\n"
                             f"nodefile commands: {', '.join(COMMANDS)}\n")
            return ExitCode.USAGE
    if argv[:1] in (["--version"], ["-v"]) and prog == "node":
        print(f"nodefile {VERSION}")
        return ExitCode.OK
    if argv[:1] == ["build"] and _fast_ok(argv):
        from .fastpath import try_noop
        msg = try_noop(argv)
        if msg is not None:
            if "-q" not in argv and "--quiet" not in argv:
                sys.stdout.write(msg + "\n")
            return ExitCode.OK
    args = _simple_build(argv)
    if args is None:
        only = argv[0] if argv and argv[0] in COMMANDS and argv[0] != "help" else None
        parser = _parser(only)
        args = parser.parse_args(argv)
    if _fast_ok(argv):
        args._argv = list(argv)
    if args.command in (None, "help"):
        parser.print_help()
        return ExitCode.OK if args.command == "help" else ExitCode.USAGE
    from .errors import NodefileError
    from .report.console import Console
    rep = Console(verbosity=-1 if args.quiet else args.verbose)
    try:
        if args.directory:
            os.chdir(args.directory)
        from . import commands
        return int(getattr(commands, "cmd_" + args.command)(args, rep))
    except NodefileError as e:
        for line in str(e).splitlines():
            rep.error(line) if line.strip() else None
        return e.exit_code
    except KeyboardInterrupt:
        rep.error("interrupted")
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        return ExitCode.OK
    except Exception as e:  # a full or read-only disk, a damaged state database: one line
        from .state import translate_error
        err = translate_error(e)
        if err is None:
            raise
        rep.error(str(err))
        return err.exit_code


if __name__ == "__main__":
    sys.exit(main())
