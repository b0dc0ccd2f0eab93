# The nodefile command line, called with --json.
#
# The command is getOption("nodefile.command"), else the environment variable
# NODEFILE_COMMAND (words separated by spaces), else "nodefile"; e.g.
#   options(nodefile.command = c("python3", "-m", "nodefile"))

nodefile_cli <- function() {
  cmd <- getOption("nodefile.command")
  if (is.null(cmd)) {
    env <- Sys.getenv("NODEFILE_COMMAND")
    cmd <- if (nzchar(env)) strsplit(env, " +")[[1L]] else "nodefile"
  }
  cmd
}

# R puts its own library folders on LD_LIBRARY_PATH; a Python built with a shared
# libpython (pyenv, conda) would then load the system's libpython instead of its
# own. The command runs with the variable unset.
# Its standard error (progress, errors) is passed on as messages; a command that
# fails without output is an R error with the command's message.
run_cli <- function(args, path) {
  cmd <- nodefile_cli()
  err <- tempfile()
  on.exit(unlink(err))
  out <- suppressWarnings(system2(cmd[1L], c(cmd[-1L], "-C", shQuote(path), args), stdout = TRUE, stderr = err,
                                  env = "LD_LIBRARY_PATH="))
  text <- if (file.exists(err)) readLines(err, warn = FALSE) else character(0)
  code <- attr(out, "status")
  if (!length(out) && !is.null(code) && code != 0L) {
    stop(paste(c(sprintf("nodefile %s failed (exit status %d)", args[1L], code), text), collapse = "\n"),
         call. = FALSE)
  }
  if (length(text)) message(paste(text, collapse = "\n"))
  out
}

run_json <- function(args, path = ".") {
  out <- run_cli(c(args, "--json"), path)
  code <- attr(out, "status")
  if (is.null(code)) code <- 0L
  doc <- from_json(out)
  attr(doc, "status") <- code
  doc
}

as_names <- function(x) if (length(x)) unlist(x) else character(0)

build <- function(targets = NULL, jobs = NULL, path = ".", keep_going = FALSE) {
  args <- c("build", if (!is.null(jobs)) c("-j", as.integer(jobs)), if (keep_going) "-k", shQuote(targets))
  doc <- run_json(args, path)
  if (!isTRUE(doc$ok)) {
    stop(sprintf("build failed: %s", paste(c(as_names(doc$failed), as_names(doc$skipped)), collapse = ", ")),
         call. = FALSE)
  }
  invisible(doc)
}

status <- function(targets = NULL, path = ".") {
  doc <- run_json(c("status", shQuote(targets)), path)
  nodes <- doc$nodes
  data.frame(
    node = vapply(nodes, function(n) n$name, ""),
    status = vapply(nodes, function(n) n$status, ""),
    stale = vapply(nodes, function(n) isTRUE(n$stale), TRUE),
    reason = vapply(nodes, function(n) paste(vapply(n$reasons, function(r) r$text, ""), collapse = "; "), ""),
    stringsAsFactors = FALSE)
}

explain <- function(target, path = ".") {
  doc <- run_json(c("explain", shQuote(target)), path)
  if (length(doc$nodes) == 1L) doc$nodes[[1L]] else doc$nodes
}

# The job of a node, as its R recipe sees it (the list `node`): inside a recipe,
# the running job; else nodefile writes the node's job and it is read here.
job <- function(target = NULL, path = ".") {
  env <- new.env()
  job_r <- Sys.getenv("NODEFILE_JOB_R")
  if (is.null(target) && nzchar(job_r)) {
    sys.source(job_r, envir = env)
    return(env$node)
  }
  if (is.null(target)) stop("job() outside a recipe needs a target", call. = FALSE)
  out <- run_cli(c("job", shQuote(target)), path)
  m <- regmatches(out[1L], regexec("and (.*\\.R)$", out[1L]))[[1L]]
  file <- file.path(path, m[2L])
  if (!file.exists(file)) file <- m[2L]
  sys.source(file, envir = env)
  env$node
}

# The value of a node: an R function node's (r_call) return value, read with
# readRDS; a node of files: the path(s) of its outputs. The node is not built.
value <- function(target, path = ".") {
  doc <- run_json(c("graph", shQuote(target)), path)
  node <- NULL
  for (n in doc$nodes) if (identical(n$name, target)) node <- n
  if (is.null(node)) stop(sprintf("no node named '%s'", target), call. = FALSE)
  if (is.null(node$value)) return(file.path(path, as_names(node$outputs)))
  file <- file.path(path, node$value)
  if (!file.exists(file)) {
    stop(sprintf("node '%s' has no value yet: build it with nodefile::build(\"%s\")", target, target), call. = FALSE)
  }
  con <- file(file, "rb")
  head <- readBin(con, "raw", 2L)
  close(con)
  if (!(identical(head, as.raw(c(0x1f, 0x8b))) || identical(head, charToRaw("X\n")))) {
    stop(sprintf("node '%s' holds a Python value (%s): read it from Python with Pipeline.get()", target, node$value),
         call. = FALSE)
  }
  readRDS(file)
}
