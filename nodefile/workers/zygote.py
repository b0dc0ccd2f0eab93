"""A warm worker: a process that has imported what the recipes use, and forks a
fresh child per recipe.

    python -m nodefile.workers.zygote REQ_FD REP_FD LANG RUN_LOG PRELOAD_JSON

It speaks the spawn helper's protocol (executors/spawner.py: "run", "sig",
"drop" in; "ready", "done" out), so the build drives it as it drives that
helper; only the way a recipe starts differs (`Fork.launch`): a fork of this
process instead of an exec. Before "ready" it preloads:

- python: imports each module of the preload list (a module that fails to
  import is skipped: the recipe will meet the same error cold);
- r: starts R embedded through rpy2 as Rscript has it (non-interactive,
  keep.source = FALSE), loads each package's namespace (not attached: a recipe
  attaches what it asks for with library(), as it would cold) and primes the
  lazy-loaded code a recipe usually touches first (a plot drawn to a null device).

It cannot start (rpy2 missing, R too old for rpy2): it says ("cold", reason)
and exits; the build runs those recipes cold and `node status -v` shows why.

The child becomes what the cold process would have been: a session of its
own, stdin from /dev/null, stdout and stderr to the recipe's output pipe, the
recipe's working directory and environment, `sys.argv` / `commandArgs()`, the
default signal handlers, and its exit status from `sys.exit`, an uncaught
exception, R's `quit(status=)` or `stop()`.
"""
import json
import os
import signal
import sys

from ..executors.spawner import Procs, frame, serve


class Fork(Procs):
    """Procs whose recipes start as forks of this (preloaded) process."""

    run_child = None  # set by main(): argv -> exit status, run in the child

    def launch(self, exe, argv, env, cwd, w):
        pid = os.fork()
        if pid == 0:  # the child never returns from here
            code = 1
            try:
                become_recipe(self.devnull, w, env, cwd)
                code = self.run_child(list(argv))
            except SystemExit as e:
                code = exit_status(e)
            except BaseException:  # noqa: BLE001 - the child reports and exits, always
                import traceback
                traceback.print_exc()
            finally:
                flush_std()
                os._exit(code)
        return pid, None


def become_recipe(devnull: int, out: int, env: dict, cwd: str) -> None:
    """In the child: the session, file descriptors, folder, environment and signal
    handlers of a freshly started recipe process."""
    os.setsid()
    os.dup2(devnull, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    for fd in (devnull, out):
        if fd > 2:
            os.close(fd)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    if env.get("NODEFILE_STDOUT"):  # the recipe's `stdout = ...`: standard output to that file
        fd = os.open(env["NODEFILE_STDOUT"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        os.dup2(fd, 1)
        os.close(fd)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed stream at exit is the recipe's business
            pass


def exit_status(e: SystemExit) -> int:
    """What `python script.py` exits with for this SystemExit."""
    code = e.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


# -- Python ---------------------------------------------------------------------------------------
def preload_python(modules: list) -> list:
    """Import each module; the ones that failed, as (module, reason)."""
    import importlib
    failed = []
    for name in modules:
        try:
            importlib.import_module(name)
        except BaseException as e:  # noqa: BLE001 - any failure means: not preloaded
            failed.append((name, f"{type(e).__name__}: {e}"))
    return failed


def run_python(argv: list, base_path: list) -> int:
    """Run `python SCRIPT ARGS...` or `python -m MODULE ARGS...` in this process."""
    import io
    import types
    sys.stdin = open(os.devnull)  # noqa: SIM115 - the recipe's stdin for its lifetime
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), write_through=True)
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), write_through=True,
                                  errors="backslashreplace")
    extra = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if argv[1] == "-m":
        import runpy
        sys.argv = [argv[2]] + argv[3:]
        sys.path[:] = [os.getcwd()] + extra + base_path
        run_start_up_hooks()
        runpy.run_module(argv[2], run_name="__main__", alter_sys=True)
        return 0
    script = os.path.abspath(argv[1])
    sys.argv = [argv[1]] + argv[2:]
    sys.path[:] = [os.path.dirname(script)] + extra + base_path
    run_start_up_hooks()
    with open(script, "rb") as f:
        code = compile(f.read(), script, "exec", dont_inherit=True)
    main = types.ModuleType("__main__")
    main.__file__ = script
    main.__builtins__ = __builtins__
    sys.modules["__main__"] = main
    try:
        exec(code, main.__dict__)
    except SystemExit:
        raise
    except BaseException as e:  # noqa: BLE001 - printed as python prints it, without this frame
        import traceback
        traceback.print_exception(type(e), e, e.__traceback__.tb_next)
        return 1
    finally:
        run_atexit()
    return 0


def run_start_up_hooks() -> None:
    """What a starting interpreter runs before the script: sitecustomize and
    usercustomize, found on the recipe's own path (coverage, counters, ...)."""
    import site
    for name in ("sitecustomize", "usercustomize"):
        sys.modules.pop(name, None)
    site.execsitecustomize()
    if site.ENABLE_USER_SITE:
        site.execusercustomize()


def run_atexit() -> None:
    import atexit
    atexit._run_exitfuncs()  # noqa: SLF001 - what the interpreter does at exit


# -- R --------------------------------------------------------------------------------------------
R_ENV: dict = {}  # the environment variables R set when it started (R_HOME, R_SHARE_DIR, ...)
R_PRIME = """
local({
  if ("ggplot2" %in% loadedNamespaces()) {
    grDevices::pdf(NULL)
    p <- ggplot2::ggplot(data.frame(x = 1:3, y = 1:3), ggplot2::aes(x, y)) + ggplot2::geom_point()
    print(p)
    grDevices::dev.off()
  } else if ("grDevices" %in% loadedNamespaces()) {
    grDevices::pdf(NULL)
    graphics::plot(1:3)
    grDevices::dev.off()
  }
  invisible(NULL)
})
"""


def start_r(packages: list) -> tuple:
    """Embed R through rpy2 as Rscript runs it; load the packages' namespaces.
    Returns (the rinterface module, [(package, reason)] that failed)."""
    before = dict(os.environ)
    found = r_locations()
    if found:  # rpy2 would start R twice to ask (0.3 s of the worker's start)
        import rpy2.situation
        os.environ["R_HOME"] = found[0]
        rpy2.situation.r_ld_library_path_from_subprocess = lambda r_home: found[1]
    import rpy2.rinterface_lib.embedded as embedded
    embedded._DEFAULT_R_INTERACTIVE = False  # noqa: SLF001 - Rscript is not interactive
    import rpy2.rinterface as ri
    ri.initr_simple()
    r_eval(ri, "options(keep.source = FALSE)")
    names, values = r_eval(ri, "names(Sys.getenv())"), r_eval(ri, "unname(Sys.getenv())")
    R_ENV.update((k, v) for k, v in zip(names, values) if before.get(k) != v)
    failed = []
    for pkg in packages:
        try:
            r_eval(ri, f"suppressPackageStartupMessages(loadNamespace({json.dumps(pkg)}))")
        except Exception as e:  # noqa: BLE001 - not preloaded; cold would fail the same way
            failed.append((pkg, str(e).strip()))
    try:
        r_eval(ri, R_PRIME)
    except Exception:  # noqa: BLE001 - priming is only a speed-up
        pass
    return ri, failed


def r_locations() -> tuple[str, str] | None:
    """R_HOME and the LD_LIBRARY_PATH that R's front end gives R, found as the `R`
    script finds them (its R_HOME_DIR line; sourcing etc/ldpaths), without starting
    R; None when that does not work here (then rpy2 asks R itself)."""
    import re
    import shutil
    import subprocess
    home = os.environ.get("R_HOME")
    if not home:
        script = shutil.which("R")
        try:
            with open(script or "", "rb") as f:
                head = f.read(4096).decode("utf-8", "replace")
        except OSError:
            return None
        m = re.search(r"^R_HOME_DIR=(/\S+)$", head, re.M)
        home = m.group(1) if m else None
    if not home or not os.path.isfile(os.path.join(home, "etc", "ldpaths")):
        return None
    try:
        out = subprocess.run(["/bin/sh", "-c", '. "$R_HOME/etc/ldpaths" && printf %s "$LD_LIBRARY_PATH"'],
                             env=dict(os.environ, R_HOME=home), capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return (home, out.stdout) if out.returncode == 0 else None


def r_eval(ri, code: str):
    return ri.baseenv["eval"](ri.parse(code), ri.globalenv)


def run_r(ri, argv: list) -> int:
    """Run `Rscript SCRIPT ARGS...` in this (forked) embedded R: the profile named by
    R_PROFILE_USER (nodefile's bootstrap, which loads the user's own), then the
    script's top-level expressions as R's REPL runs a file (R_REPL below)."""
    from rpy2.rinterface_lib import callbacks
    callbacks.consolewrite_print = lambda s: os.write(1, s.encode())
    callbacks.consolewrite_warnerror = lambda s: os.write(2, s.encode())
    for k, v in R_ENV.items():  # what R's start-up (etc/Renviron) sets, where the recipe did not
        os.environ.setdefault(k, v)
    script, args = argv[1], argv[2:]
    cmd = [os.path.join(R_ENV.get("R_HOME", "/usr/lib/R"), "bin", "exec", "R"), "--no-echo", "--no-restore",
           f"--file={script}", "--args"] + args
    r_eval(ri, "local({ a <- %s; t <- %s; f <- function(trailingOnly = FALSE) if (trailingOnly) t else a;"
               " unlockBinding('commandArgs', baseenv()); assign('commandArgs', f, envir = baseenv());"
               " lockBinding('commandArgs', baseenv()) })" % (r_chr(cmd), r_chr(args)))
    try:
        profile = os.environ.get("R_PROFILE_USER")
        if profile:
            r_eval(ri, f"sys.source({json.dumps(profile)}, envir = globalenv(), keep.source = FALSE)")
        r_eval(ri, R_REPL % json.dumps(script))
    except Exception:  # noqa: BLE001 - R has printed the error, as Rscript does
        os.write(2, b"Execution halted\n")
        return 1
    return 0


# Rscript's loop over a file (R_ReplFile), in R: each top-level expression is
# evaluated in the global environment, printed when visible, and followed by the
# warnings it raised; an error prints R's message (with the call R would show:
# none at top level), then the bootstrap's `options(error =)` handler (file and
# line), then "Execution halted" and status 1. The bootstrap's count of completed
# top-level expressions (normally kept by a task callback, which only R's own
# REPL runs) is set here.
R_REPL = """
local({
  script <- %s
  halt <- function() {
    h <- getOption("error")  # the bootstrap's `  at FILE:LINE` (R keeps it as a call)
    if (is.function(h)) h() else if (is.language(h)) eval(h, globalenv())
    cat("Execution halted\\n", file = stderr())
    quit(save = "no", status = 1L)
  }
  exprs <- tryCatch(parse(script, keep.source = FALSE), error = function(e) e)
  bad <- NULL
  if (inherits(exprs, "error")) {  # R runs what parses before a syntax error, then stops there
    bad <- exprs
    at <- regmatches(conditionMessage(bad), regexec(":([0-9]+):([0-9]+): ([^\\n]*)", conditionMessage(bad)))[[1L]]
    lines <- readLines(script, warn = FALSE)
    exprs <- expression()
    for (m in rev(seq_len(max(0L, as.integer(at[2L]) - 1L)))) {
      got <- tryCatch(parse(text = lines[seq_len(m)], keep.source = FALSE), error = function(e) NULL)
      if (!is.null(got)) { exprs <- got; break }
    }
    bad <- if (length(at) == 4L) sprintf("Error: %%s in \\"%%s\\"", at[4L],
                                         substr(lines[as.integer(at[2L])], 1L, as.integer(at[3L])))
           else paste0("Error: ", conditionMessage(bad))
  }
  said <- function(call, msg, bare, with) {  # R's "Error in f(x) : msg", wrapped as R wraps it
    if (is.null(call)) return(paste0(bare, msg))
    head <- paste0(with, deparse(call, nlines = 1L)[1L])
    paste0(head, if (nchar(head) + nchar(msg) > 74L) " : \\n  " else " : ", msg)
  }
  shown <- function(call) {  # no call at top level, as R shows none there
    top <- is.call(call) && identical(call[[1L]], quote(eval)) && identical(call[[2L]], quote(exprs[[i]]))
    if (top) NULL else call
  }
  state <- getOption("nodefile.state")
  for (i in seq_along(exprs)) {
    if (is.environment(state)) state$done <- i - 1L
    warned <- list()
    r <- withCallingHandlers(withVisible(eval(exprs[[i]], globalenv())), error = function(e) {
      cat(said(shown(conditionCall(e)), conditionMessage(e), "Error: ", "Error in "), "\\n", sep = "",
          file = stderr())
      if (is.environment(state)) state$cond <- e
      halt()
    }, warning = function(w) {
      if (getOption("warn", 0L) >= 1L) return()  # R prints (or, at 2, errs) at once
      warned[[length(warned) + 1L]] <<- w
      invokeRestart("muffleWarning")
    })
    if (r$visible) { if (isS4(r$value)) methods::show(r$value) else print(r$value) }
    if (length(warned) == 1L) {
      w <- warned[[1L]]
      cat("Warning message:\\n", said(shown(conditionCall(w)), conditionMessage(w), "", "In "), "\\n", sep = "",
          file = stderr())
    } else if (length(warned) > 10L) {
      cat("There were ", length(warned), " warnings (use warnings() to see them)\\n", sep = "", file = stderr())
    } else if (length(warned) > 1L) {
      cat("Warning messages:\\n", file = stderr())
      for (k in seq_along(warned)) cat(k, ": ", said(shown(conditionCall(warned[[k]])),
                                                   conditionMessage(warned[[k]]), "", "In "), "\\n", sep = "",
                                       file = stderr())
    }
  }
  if (!is.null(bad)) {
    cat(bad, "\\n", sep = "", file = stderr())
    halt()
  }
})
"""


def r_chr(values: list) -> str:
    return "c(" + ", ".join(json.dumps(v) for v in values) + ")" if values else "character(0)"


def stamps(lang: str, preload: list, failed: list, ri) -> list:
    """(path, mtime_ns, size) of a file of each preloaded package that an upgrade
    rewrites (a module's own file; an R package's DESCRIPTION)."""
    bad = {name for name, _ in failed}
    paths = []
    for name in preload:
        if name in bad:
            continue
        if lang == "python":
            path = getattr(sys.modules.get(name), "__file__", None)
        else:
            found = r_eval(ri, f"system.file('DESCRIPTION', package = {json.dumps(name)})")
            path = found[0] if len(found) else None
        if path:
            paths.append(path)
    out = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            continue
        out.append((path, st.st_mtime_ns, st.st_size))
    return out


# -- main -----------------------------------------------------------------------------------------
def main(req: int, rep: int, lang: str, run_log: str | None, preload: list) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the build's to handle
    try:
        ri = None
        if lang == "python":
            base_path = [p for p in sys.path[1:]]
            failed = preload_python(preload)
            Fork.run_child = staticmethod(lambda argv: run_python(argv, base_path))
        else:
            ri, failed = start_r(preload)
            Fork.run_child = staticmethod(lambda argv: run_r(ri, argv))
    except BaseException as e:  # noqa: BLE001 - any failure: this worker cannot start
        os.write(rep, frame(("cold", f"{type(e).__name__}: {e}".strip())))
        return
    if failed:
        os.write(rep, frame(("skipped", failed)))
    os.write(rep, frame(("stamps", stamps(lang, preload, failed, ri if lang == "r" else None))))
    serve(req, rep, run_log, procs_class=Fork)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4] or None, json.loads(sys.argv[5]))
