# `node` is strict, as Python's `job`: `node$inputs$raww`, `node$params[["sed"]]`
# stop with a message naming the names there are, instead of giving NULL.
# node, node$inputs, node$outputs, node$params and node$wildcards are lists of
# class c("nodefile_<field>", "nodefile_entries", "list"); anything else a list
# does (`[[1]]`, names(), length(), for, lapply, unlist, `[`) works as on a list.
local({
  strict <- function(x, name) {
    if (name %in% names(x)) return(.subset2(x, name))
    field <- sub("^nodefile_", "", class(x)[1L])
    have <- names(x)[nzchar(names(x))]
    stop(simpleError(sprintf("no entry named '%s' in %s (%s)", name,
                             if (field == "node") "node" else paste0("node$", field),
                             if (length(have)) paste(have, collapse = ", ") else "none are named"), call = NULL))
  }
  plain <- function(x) {
    if (!inherits(x, "nodefile_entries")) return(x)
    x <- unclass(x)
    x[] <- lapply(x, plain)
    x
  }
  registerS3method("$", "nodefile_entries", function(x, name) strict(x, name), envir = baseenv())
  registerS3method("[[", "nodefile_entries", function(x, i, ...) {
    if (is.character(i) && length(i) == 1L) strict(x, i) else .subset2(x, i, ...)
  }, envir = baseenv())
  registerS3method("print", "nodefile_entries", function(x, ...) {
    print(plain(x), ...)
    invisible(x)
  }, envir = baseenv())
})
