"""argv -> options -> a command; errors -> exit codes. The `node` pass-through to Node.js.

Exit status: 0 success, 1 a recipe failed, 2 usage or Nodefile error, 130 interrupted.
"""
from __future__ import annotations

import os
import sys

from .errors import ExitCode

COMMANDS = ("build", "status", "explain", "check", "watch", "graph", "report", "job", "touch",
            "clean", "gc", "push", "pull", "log", "import", "help", "init", "completion")
VERSION = "0.1.0"


# -- the Node.js pass-through ----------------------------------------------------------
# Called as `node`, nodefile claims a command line only when its first word (after
# -C DIR / -f FILE) is a nodefile command, or close to one, and a command that needs a
# project finds a Nodefile; everything else goes to the next `node` on PATH (Node.js).
# scripts/node, the installed `node`, decides the plainly-Node.js lines in the shell.
HISTORY = ("log", "graph", "report")  # nodefile/history.py
UPKEEP = ("push", "pull", "gc")  # nodefile/upkeep.py; the other commands: nodefile/commands.py
NO_PROJECT = ("help", "init", "completion", "import")  # commands that need no Nodefile
_GLOBAL = ("-C", "--directory", "-f", "--file")


def _names_file(word: str) -> bool:
    """Whether Node.js would find a script for `node WORD`."""
    return any(os.path.exists(word + ext) for ext in ("", ".js", ".mjs", ".cjs"))


def _nodefile_near(start: str) -> bool:
    from .fastpath import find_root  # standard library only, as this module's start must stay
    return find_root(os.path.abspath(start)) is not None


def _globals(argv: list[str]) -> tuple[int, bool]:
    """The index of the first word after the leading -C/-f options, and whether there were any."""
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in _GLOBAL:
            i += 2
        elif a.startswith(("-C", "-f")) or a.startswith(("--directory=", "--file=")):
            i += 1
        else:
            break
    return i, i > 0


def claim(argv: list[str]) -> bool | str:
    """Whose command line is `node ARGV`: True nodefile's, False Node.js's, or a string,
    the nodefile command a mistyped first word is close to (for a "did you mean")."""
    i, explicit = _globals(argv)
    if i >= len(argv):
        return explicit  # `node -C DIR` alone: ours (usage); bare `node`: Node.js's REPL
    first = argv[i]
    if first in COMMANDS:
        if explicit:
            return True
        if first in NO_PROJECT:
            return not _names_file(first)
        return _nodefile_near(".")
    if first.startswith("-") or first == "" or _names_file(first):
        return False
    import difflib
    close = difflib.get_close_matches(first, COMMANDS, n=1, cutoff=0.6)
    if close and (explicit or close[0] in NO_PROJECT or _nodefile_near(".")):
        return close[0]
    return False


def _is_self(path: str) -> bool:
    try:
        if os.path.realpath(path) == os.path.realpath(sys.argv[0]):
            return True
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return True
    # our console script or launcher, or a pyenv shim that would run it again
    return b"nodefile" in head or (b"pyenv" in head and b"exec" in head)


def find_next_node() -> str | None:
    """The next `node` on PATH that is not nodefile's. NODEFILE_PASSTHROUGH_SKIP holds
    "PID=PATH" entries: a wrapper this process already exec'd (an exec keeps the id)."""
    pid = str(os.getpid())
    skip = {e.partition("=")[2] for e in os.environ.get("NODEFILE_PASSTHROUGH_SKIP", "").split(os.pathsep)
            if e.partition("=")[0] == pid}
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
    os.environ["NODEFILE_PASSTHROUGH_SKIP"] = (skip + os.pathsep if skip else "") + f"{os.getpid()}={target}"
    os.execv(target, [target] + argv)


# -- argument parsing ---------------------------------------------------------------------
EXAMPLES = {
    "build": "node build                    # the default targets\n"
             "node build report -j 4        # report and what it needs, 4 recipes at once\n"
             "node build -n --check         # CI: exit 1 when something would run\n"
             "node build --force fit        # re-run fit's recipe (not its inputs')\n"
             "node build --set n_rows=20 -v # a param for this run; recipe output on the terminal",
    "status": "node status                   # the default targets and what they need\n"
              "node status --check           # CI: exit 1 when something is stale\n"
              "node status --json report",
    "explain": "node explain report           # which part of report's key changed, old -> new",
    "check": "node check                    # every error of the Nodefile at once (exit 2)\n"
             "node check --json",
    "watch": "node watch report -j 2\n"
             "node watch --poll 1           # on a network drive",
    "graph": "node graph --format html > dag.html\n"
             "node graph | dot -Tsvg > dag.svg\n"
             "node graph --format mermaid\n"
             "node graph --json",
    "report": "node report -o report.html",
    "job": "node job fit                  # write fit's job manifest, print how to run it by hand",
    "touch": "node touch report             # accept report's current outputs as up to date\n"
             "node touch --set n_rows=20    # accept them for the params of that build",
    "clean": "node clean model              # remove model's outputs",
    "gc": "node gc --older-than 30",
    "push": "node push --store shared",
    "pull": "node pull report",
    "log": "node log fit                  # the logs of fit's last build\n"
           "node log -f fit               # follow the running attempt",
    "init": "node init                     # Nodefile.toml and a Python recipe\n"
            "node init --r                 # ... an R recipe",
    "completion": 'eval "$(node completion bash)"     # in ~/.bashrc\n'
                  'node completion zsh > "${fpath[1]}/_node"',
    "help": "node help build",
    "import": "node import dodo.py           # write Nodefile.toml from a doit project\n"
              "node import dodo.py -o -      # print it instead",
}
JSON_COMMANDS = ("build", "status", "explain", "check", "graph", "log")


def make_parser(only: str | None = None):
    """The command line parser; with `only`, just that command's subparser (argparse
    and its gettext lookups cost ~10 ms for all of them, on every start)."""
    import argparse
    raw = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(prog="node", formatter_class=raw,
                                description="nodefile: a Make-like build tool for data projects in Python and R. "
                                "Reads Nodefile.toml in this folder or the nearest parent.",
                                epilog="examples:\n  node build -j 4\n  node -C analysis status\n"
                                       "  node help build              # a command's options, with examples")
    p.add_argument("--version", action="version", version=f"nodefile {VERSION}")
    p.add_argument("-C", "--directory", metavar="DIR", help="run as if started in DIR (node -C analysis build)")
    p.add_argument("-f", "--file", metavar="FILE",
                   help="the Nodefile to use (default: Nodefile.toml here or in a parent folder)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    p.commands = {}

    class _Skipped:  # a command other than `only`: its arguments are not needed
        def add_argument(self, *a, **k):
            pass

        def add_mutually_exclusive_group(self, *a, **k):
            return self

    def cmd(name, help, targets=True, common=True):
        if only is not None and name != only:
            return _Skipped()
        example = EXAMPLES.get(name)
        sp = sub.add_parser(name, help=help, description=help, formatter_class=raw,
                            epilog="examples:\n" + "\n".join("  " + ln for ln in example.splitlines())
                            if example else None)
        p.commands[name] = sp
        if targets:
            sp.add_argument("targets", nargs="*", metavar="TARGET",
                            help="node names, output paths or pattern instances (default: the default targets)")
        if common:
            sp.add_argument("-v", "--verbose", action="count", default=0,
                            help="say more: up-to-date nodes, why each node is stale, recipe output as it comes "
                                 "(prefixed by the node's name)")
            sp.add_argument("-q", "--quiet", action="store_true", help="print only failures")
            sp.add_argument("--set", action="append", default=[], metavar="K=V",
                            help="override a [params] value for this run (a TOML value): --set n_rows=20")
        if name in JSON_COMMANDS:
            sp.add_argument("--json", action="store_true",
                            help="print JSON instead (schema: docs/nodefile-reference.md, JSON output)")
        return sp

    b = cmd("build", "build targets (node names or output paths); default: [project] default")
    b.add_argument("-j", "--jobs", type=int, metavar="N", help="run up to N recipes at once (-j 4)")
    b.add_argument("-k", "--keep-going", action="store_true", help="build everything not downstream of a failure")
    b.add_argument("-n", "--dry-run", action="store_true", help="say what would run, and why; run nothing")
    b.add_argument("--check", action="store_true",
                   help="with -n: exit 1 when something would run, 0 when everything is up to date")
    b.add_argument("-B", "--always-make", action="store_true", help="rebuild the targets and everything they need")
    b.add_argument("--force", action="store_true",
                   help="re-run the recipes of the TARGETs named (not of their inputs), even if up to date")
    b.add_argument("--recipe", metavar="KIND", help="use only recipes of this kind or name (--recipe r)")
    b.add_argument("--retries", type=int, default=0, metavar="N", help="retry a failed recipe N times")
    b.add_argument("--executor", choices=("local", "dask"), default=None,
                   help="where recipes run: local processes (default), or a Dask cluster "
                        "(e.g. --executor dask --dask tcp://10.0.0.5:8786; no address: a LocalCluster of -j workers)")
    b.add_argument("--dask", metavar="ADDRESS", help="the Dask scheduler's address, with --executor dask")
    b.add_argument("--resources", default="", metavar="R=N,...",
                   help="what this machine offers, e.g. gpu=1,mem_gb=16 (default: cores and memory detected)")
    b.add_argument("--cold", action="store_true",
                   help="start every recipe as a new process (no warm Python or R workers) for this run")
    b.add_argument("--no-wait", action="store_true", help="fail instead of waiting when another build runs")
    b.add_argument("--no-probe", action="store_true",
                   help="this run, never probe a recipe never measured (see `node explain`)")
    s = cmd("status", "a table: each node, up to date / stale / missing, and why")
    s.add_argument("--check", action="store_true", help="exit 1 when a node is stale or missing (for CI)")
    cmd("explain", "why a node is stale: which part of its key changed, old -> new")
    cmd("check", "validate the Nodefile: every error at once", targets=False)
    sp = cmd("graph", "the DAG as DOT, Mermaid, JSON, SVG or HTML, coloured by status")
    sp.add_argument("--format", choices=("dot", "mermaid", "json", "svg", "html"), default="dot",
                    help="the output format (default: dot); svg and html are laid out, with a legend")
    cmd("job", "write the job manifest of a node and print how to run its recipe by hand")
    cmd("touch", "accept the current outputs as up to date")
    cmd("clean", "remove the outputs of targets (default: every node)")
    sp = cmd("log", "the logs of the attempts of a node's last build, newest last")
    sp.add_argument("-f", "--follow", action="store_true",
                    help="follow the running attempt's log until it ends (like tail -f)")
    w = cmd("watch", "build, then rebuild what a change to inputs, scripts or the Nodefile makes stale")
    w.add_argument("-j", "--jobs", type=int, metavar="N", help="run up to N recipes at once")
    w.add_argument("-k", "--keep-going", action="store_true", help="build everything not downstream of a failure")
    w.add_argument("--poll", type=float, metavar="SECONDS", help="poll for changes every SECONDS instead of "
                   "using native file events (for network drives, containers)")
    w.add_argument("--debounce", type=float, default=0.3, metavar="SECONDS",
                   help="quiet period that ends a burst of changes (default 0.3)")
    w.add_argument("--cold", action="store_true", help="no warm Python or R workers for this session")
    sp = cmd("report", "write an HTML report: the DAG, the last build's timeline, learned estimates", targets=False)
    sp.add_argument("-o", "--output", metavar="FILE", help="the file to write (default: .nodefile/report.html)")
    sp.add_argument("--build", type=int, metavar="N", help="the timeline of build N (default: the last build "
                    "that ran a recipe)")
    sp = cmd("gc", "drop cache entries and state of nodes no longer in the Nodefile", targets=False)
    sp.add_argument("--older-than", type=float, metavar="DAYS", help="also drop cache entries older than this")
    sp.add_argument("--store", metavar="NAME", help="instead, remove the damaged entries of this store")
    sp = cmd("push", "upload the outputs of up-to-date nodes to stores")
    sp.add_argument("--store", metavar="NAME", help="this store only (default: every store with push = true)")
    cmd("pull", "restore stale nodes from the local cache or stores, without running recipes")
    sp = cmd("import", "write a Nodefile from a doit dodo.py, listing what does not convert", targets=False)
    sp.add_argument("dodo", metavar="DODO", help="the dodo file (e.g. dodo.py)")
    sp.add_argument("-o", "--output", help="the Nodefile to write, beside the dodo file (default: Nodefile.toml; "
                    "- prints it)")
    sp.add_argument("--strict", action="store_true", help="fail (exit 2) when anything cannot be converted")
    sp.add_argument("--force", action="store_true", help="replace an existing output file")
    sp = cmd("init", "scaffold Nodefile.toml and one example recipe here (never overwrites)",
             targets=False, common=False)
    lang = sp.add_mutually_exclusive_group()
    lang.add_argument("--python", dest="lang", action="store_const", const="python",
                      help="the example recipe is a Python script (the default)")
    lang.add_argument("--r", dest="lang", action="store_const", const="r", help="the example recipe is an R script")
    sp = cmd("completion", "print a shell completion script (commands, options, node names)",
             targets=False, common=False)
    sp.add_argument("shell", choices=("bash", "zsh", "names"), metavar="SHELL",
                    help="bash or zsh (`names` lists the project's node names, for the scripts)")
    sp = cmd("help", "show help, or a command's help with examples", targets=False, common=False)
    sp.add_argument("topic", nargs="?", metavar="COMMAND", help="the command to explain")
    return p


_FAST_FLAGS_OFF = ("-n", "--dry-run", "-B", "--always-make", "-C", "--directory", "-f", "--file", "-h", "--help",
                   "-v", "--verbose", "-vv", "--check", "--force", "--json")


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
                               retries=0, executor=None, dask=None, resources="", no_wait=False, check=False,
                               force=False, json=False, cold=False, no_probe=False)
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


def _home(command: str):
    """The module of a command's `cmd_` function (imported when it runs)."""
    if command in HISTORY:
        from . import history
        return history
    if command in UPKEEP:
        from . import upkeep
        return upkeep
    from . import commands
    return commands


def _help(parser, topic: str | None, command: str | None) -> int:
    if topic is None:
        parser.print_help()
        return ExitCode.OK if command == "help" else ExitCode.USAGE
    if topic not in parser.commands:
        import difflib
        return _unknown(topic, next(iter(difflib.get_close_matches(topic, COMMANDS, n=1, cutoff=0.6)), None))
    parser.commands[topic].print_help()
    return ExitCode.OK


def _chdir(directory: str) -> None:
    from .errors import ConfigError
    try:
        os.chdir(directory)
    except OSError as e:
        raise ConfigError(f"-C {directory}: {e.strerror or e}") from None


def _unknown(word: str, close: str | None) -> int:
    sys.stderr.write(f"node: '{word}' is not a nodefile command" + (f" (did you mean {close}?)" if close else "")
                     + "\nnodefile commands: " + ", ".join(COMMANDS) + " (node help COMMAND for one)\n")
    return ExitCode.USAGE


def parse_set(items) -> dict:
    from .config.locate import tomllib
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
        except RecursionError:
            raise ConfigError(f"--set {k}: arrays or tables nested too deep") from None
        except ValueError as e:  # an integer of more than 4,300 digits
            raise ConfigError(f"--set {k}: {str(e).split(';')[0]}") from None
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
    as_node = os.environ.pop("NODEFILE_AS_NODE", "") == "1" or prog == "node"
    if as_node:
        mine = claim(argv)
        if isinstance(mine, str):
            return _unknown(argv[_globals(argv)[0]], mine)
        if not mine and passthrough(argv) is None:  # no Node.js: nodefile answers what it can
            if argv[:1] in (["--version"], ["-v"]):
                print(f"nodefile {VERSION}")
                return ExitCode.OK
            if argv and argv[0] not in ("-h", "--help") and argv[0] not in COMMANDS:
                sys.stderr.write(f"node: '{argv[0]}' is not a nodefile command, and no Node.js `node` is on PATH\n"
                                 f"nodefile commands: {', '.join(COMMANDS)}\n")
                return ExitCode.USAGE
    i = _globals(argv)[0]
    if i < len(argv) and argv[i] not in COMMANDS and not argv[i].startswith("-"):
        import difflib
        return _unknown(argv[i], next(iter(difflib.get_close_matches(argv[i], COMMANDS, n=1, cutoff=0.6)), None))
    noop = None  # a fastpath.Pending: the build to record as a no-op, and what try_noop saw
    if argv[:1] == ["build"] and _fast_ok(argv):
        from .fastpath import try_noop
        noop = try_noop(argv)
        if isinstance(noop, str):
            if "-q" not in argv and "--quiet" not in argv:
                sys.stdout.write(noop + "\n")
            return ExitCode.OK
    args = _simple_build(argv)
    if args is None:
        only = argv[0] if argv and argv[0] in COMMANDS and argv[0] != "help" else None
        parser = make_parser(only)
        args = parser.parse_args(argv)
    if noop is None and _fast_ok(argv) and args.command == "build":  # `-q build`: try_noop did not run
        from .fastpath import Pending
        noop = Pending(argv, os.getcwd())
    args.noop = noop
    if args.command in (None, "help"):
        return _help(parser, getattr(args, "topic", None), args.command)
    from .errors import NodefileError
    from .report.console import Console
    if getattr(args, "json", False):  # the document alone on stdout; errors and failures on stderr
        import io
        rep = Console(verbosity=-1, out=io.StringIO())
    else:
        rep = Console(verbosity=-1 if getattr(args, "quiet", False) else getattr(args, "verbose", 0))
    try:
        if args.directory:
            _chdir(args.directory)
        if args.file and not os.path.exists(args.file):
            from .errors import ConfigError
            raise ConfigError(f"-f {args.file}: no such file")
        if args.command in ("init", "completion"):  # no project: not the build machinery
            from . import scaffold
            return int(getattr(scaffold, "cmd_" + args.command)(args, rep))
        return int(getattr(_home(args.command), "cmd_" + args.command)(args, rep))
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
