# nodefile's R bootstrap. Rscript runs this file (never --vanilla, so .Rprofile
# and renv work); it defines the list `node` from the job, then evaluates the
# user's own script expression by expression, so that an error names the
# user's file and line (the script is never copied or rewritten).
# commandArgs(trailingOnly = TRUE) holds the recipe's args.
local({
  job_r <- Sys.getenv("NODEFILE_JOB_R")
  if (nzchar(job_r)) sys.source(job_r, envir = globalenv(), keep.source = FALSE)
})
.nodefile_where <- function(calls, script, line) {
  for (k in rev(seq_along(calls))) {
    sr <- attr(calls[[k]], "srcref")
    f <- if (is.null(sr)) NULL else attr(sr, "srcfile")
    if (!is.null(f) && !is.null(f$filename) && nzchar(f$filename)) {
      return(sprintf("%s:%d", f$filename, sr[1L]))
    }
  }
  sprintf("%s:%d", script, line)
}

.nodefile_run <- function(script) {
  exprs <- tryCatch(
    parse(file = script, keep.source = TRUE),
    error = function(e) {
      cat("Error: ", conditionMessage(e), "\n", sep = "", file = stderr())
      quit(save = "no", status = 1)
    })
  refs <- attr(exprs, "srcref")
  for (i in seq_along(exprs)) {
    line <- if (is.null(refs)) NA_integer_ else refs[[i]][1L]
    withCallingHandlers(
      eval(exprs[[i]], envir = globalenv()),
      error = function(e) {
        where <- .nodefile_where(sys.calls(), script, line)
        call <- conditionCall(e)
        if (is.call(call) && identical(call[[1L]], quote(eval))) call <- NULL
        prefix <- if (is.null(call)) "Error" else paste0("Error in ", paste(deparse(call, nlines = 1L), collapse = ""))
        cat(prefix, ": ", conditionMessage(e), "\n  at ", where, "\n", sep = "", file = stderr())
        quit(save = "no", status = 1)
      })
  }
  invisible(NULL)
}

options(keep.source = TRUE)  # from here on: the user's code keeps its line numbers
local({
  script <- Sys.getenv("NODEFILE_SCRIPT")
  if (!nzchar(script)) stop("NODEFILE_SCRIPT is not set: run this through `node build` or `node job`")
  .nodefile_run(script)
})
