# nodefile's R bootstrap. An `r` recipe runs `Rscript SCRIPT ARGS` with the
# environment variable R_PROFILE_USER naming this file, so R reads it as the
# user profile, just before the script. It loads the user's own profile as R
# would have (R_PROFILE_USER as the user set it, else ./.Rprofile, else
# ~/.Rprofile: .Rprofile and renv work), defines `node` from the job
# ($NODEFILE_JOB_R), and prepares the report of an error, which names the
# script's file and line. R then runs the script itself exactly as Rscript runs
# it: top-level visible values printed, warnings after each top-level call,
# keep.source = FALSE (saved objects carry no source references, so no path).
local({
  user <- Sys.getenv("NODEFILE_R_PROFILE_USER", NA)  # the user's R_PROFILE_USER, if any
  Sys.unsetenv("NODEFILE_R_PROFILE_USER")  # child R processes see the user's environment
  if (is.na(user)) Sys.unsetenv("R_PROFILE_USER") else Sys.setenv(R_PROFILE_USER = user)
  home <- Sys.getenv("HOME")
  profile <- if (!is.na(user)) path.expand(user) else if (file.exists(".Rprofile")) ".Rprofile" else
    if (nzchar(home)) file.path(home, ".Rprofile") else ""
  if (nzchar(profile) && file.exists(profile) && !dir.exists(profile)) {
    for (e in parse(profile, keep.source = FALSE)) {  # as R reads a profile: values printed
      r <- withVisible(eval(e, globalenv()))
      if (r$visible) print(r$value)
    }
  }
})

local({
  job_r <- Sys.getenv("NODEFILE_JOB_R")
  if (nzchar(job_r)) sys.source(job_r, envir = globalenv(), keep.source = FALSE)
})

# Errors: R prints its own message ("Error in f(x) : ...", "Calls: ..."); then the
# handler below adds the line `  at FILE:LINE` and lets R halt as it would (status 1).
# The script has no source references, so the line is found by parsing it again:
# the failing top-level expression is the one after those completed (a task
# callback counts them); within it, or within the innermost function the script
# defines that is running, the statement holding the failing call.
local({
  args <- commandArgs()
  script <- sub("^--file=", "", args[startsWith(args, "--file=")][1L])
  if (is.na(script)) return(invisible())
  path <- normalizePath(script, mustWork = FALSE)  # the script may change the working directory
  state <- new.env(parent = emptyenv())
  state$done <- 0L
  options(nodefile.state = state)  # a warm R worker's loop keeps the count (no task callbacks there)
  addTaskCallback(function(...) {
    state$done <- state$done + 1L
    state$cond <- NULL
    TRUE
  }, name = "nodefile")
  if (exists("globalCallingHandlers", baseenv())) globalCallingHandlers(error = function(e) state$cond <- e)

  # the line of the statement in `s` (parsed with srcrefs; `e` the same without)
  # that holds `target`: NULL when not there, NA when `e` is the target itself
  find <- function(e, s, target) {
    if (identical(e, target)) return(NA_integer_)
    refs <- attr(s, "srcref")
    for (j in seq_along(e)) {
      if (!is.call(e[[j]])) next
      r <- find(e[[j]], s[[j]], target)
      if (!is.null(r)) return(if (is.na(r) && !is.null(refs)) refs[[j]][1L] else r)
    }
    NULL
  }
  line_of <- function(e, s, targets, otherwise) {
    for (t in targets) {
      if (!is.call(t)) next
      r <- find(e, s, t)
      if (!is.null(r)) return(if (is.na(r)) otherwise else r)
    }
    otherwise
  }
  # every `function(...) body` the script defines: list(bare, with srcrefs)
  definitions <- function(e, s, acc = list()) {
    if (!is.call(e)) return(acc)
    if (identical(e[[1L]], as.name("function"))) acc[[length(acc) + 1L]] <- list(e, s)
    for (j in seq_along(e)) if (is.call(e[[j]])) acc <- definitions(e[[j]], s[[j]], acc)
    acc
  }
  where <- function(calls, fns, cond) {
    lines <- readLines(path, warn = FALSE)
    src <- tryCatch(parse(text = lines, keep.source = TRUE, srcfile = srcfilecopy(script, lines)),
                    error = function(e) e)
    if (inherits(src, "error")) {  # a syntax error: R's message has no line, the parser's has
      m <- regmatches(conditionMessage(src), regexpr("^[^\n]*?:[0-9]+(?=:[0-9]+:)", conditionMessage(src), perl = TRUE))
      return(if (length(m)) m else NA)
    }
    bare <- parse(text = lines, keep.source = FALSE)
    i <- state$done + 1L
    if (i > length(bare)) return(NA)
    top <- attr(src, "srcref")[[i]][1L]
    failed <- if (is.null(cond)) list() else list(conditionCall(cond))
    defs <- list()
    for (k in seq_along(bare)) defs <- definitions(bare[[k]], src[[k]], defs)
    for (k in rev(seq_along(fns))) {
      if (typeof(fns[[k]]) != "closure") next
      b <- body(fns[[k]])
      for (d in defs) {
        if (!identical(d[[1L]][[3L]], b)) next
        made <- if (k < length(calls)) calls[k + 1L] else list()
        return(line_of(d[[1L]][[3L]], d[[2L]][[3L]], c(made, failed), d[[2L]][[4L]][1L]))
      }
    }
    line_of(bare[[i]], src[[i]], c(calls, failed), top)
  }
  if (is.null(getOption("error"))) options(error = function() {
    n <- sys.nframe() - 1L  # the frames of the error, below this handler
    calls <- lapply(seq_len(n), sys.call)
    fns <- lapply(seq_len(n), sys.function)
    line <- tryCatch(where(calls, fns, state$cond), error = function(e) NA)
    if (!is.na(line)) cat("  at ", if (is.numeric(line)) sprintf("%s:%d", script, line) else line, "\n",
                          sep = "", file = stderr())
    options(error = NULL)  # so R halts as Rscript does: "Execution halted", status 1
  })
})
