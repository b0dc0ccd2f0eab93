# A small JSON reader and writer in base R (no jsonlite needed).
# Objects become named lists (an empty object: a list with names character(0)),
# arrays unnamed lists, null NULL, true/false logical, numbers double, strings
# character. to_json() writes them back the same way, so a document read with
# from_json() and written with to_json() is the same JSON value.

from_json <- function(text) {
  text <- paste(text, collapse = "\n")
  chars <- strsplit(text, "")[[1L]]
  st <- new.env()
  st$i <- 1L
  n <- length(chars)
  peek <- function() {
    while (st$i <= n && chars[st$i] %in% c(" ", "\n", "\t", "\r")) st$i <- st$i + 1L
    if (st$i > n) "" else chars[st$i]
  }
  expect <- function(ch) {
    if (peek() != ch) stop(sprintf("JSON: expected '%s' at character %d", ch, st$i), call. = FALSE)
    st$i <- st$i + 1L
  }
  parse_string <- function() {
    expect("\"")
    out <- character(0)
    start <- st$i
    repeat {
      if (st$i > n) stop("JSON: unterminated string", call. = FALSE)
      ch <- chars[st$i]
      if (ch == "\"") break
      if (ch == "\\") {
        if (st$i > start) out <- c(out, chars[start:(st$i - 1L)])
        esc <- chars[st$i + 1L]
        if (esc == "u") {
          code <- strtoi(paste(chars[(st$i + 2L):(st$i + 5L)], collapse = ""), 16L)
          st$i <- st$i + 6L
          if (code >= 0xD800 && code <= 0xDBFF && st$i + 5L <= n && chars[st$i] == "\\" && chars[st$i + 1L] == "u") {
            low <- strtoi(paste(chars[(st$i + 2L):(st$i + 5L)], collapse = ""), 16L)
            code <- 0x10000 + (code - 0xD800) * 1024 + (low - 0xDC00)
            st$i <- st$i + 6L
          }
          out <- c(out, intToUtf8(code))
        } else {
          out <- c(out, switch(esc, n = "\n", t = "\t", r = "\r", b = "\b", f = "\f", esc))
          st$i <- st$i + 2L
        }
        start <- st$i
        next
      }
      st$i <- st$i + 1L
    }
    if (st$i > start) out <- c(out, chars[start:(st$i - 1L)])
    st$i <- st$i + 1L
    s <- paste(out, collapse = "")
    Encoding(s) <- "UTF-8"
    s
  }
  parse_value <- function() {
    ch <- peek()
    if (ch == "{") {
      st$i <- st$i + 1L
      out <- list()
      keys <- character(0)
      if (peek() == "}") {
        st$i <- st$i + 1L
        return(structure(list(), names = character(0)))
      }
      repeat {
        k <- parse_string()
        expect(":")
        v <- parse_value()
        out[length(out) + 1L] <- list(v)
        keys <- c(keys, k)
        if (peek() == ",") { st$i <- st$i + 1L; next }
        expect("}")
        break
      }
      names(out) <- keys
      return(out)
    }
    if (ch == "[") {
      st$i <- st$i + 1L
      out <- list()
      if (peek() == "]") { st$i <- st$i + 1L; return(out) }
      repeat {
        out[length(out) + 1L] <- list(parse_value())
        if (peek() == ",") { st$i <- st$i + 1L; next }
        expect("]")
        break
      }
      return(out)
    }
    if (ch == "\"") return(parse_string())
    rest <- function(word) paste(chars[st$i:min(n, st$i + nchar(word) - 1L)], collapse = "") == word
    if (rest("true")) { st$i <- st$i + 4L; return(TRUE) }
    if (rest("false")) { st$i <- st$i + 5L; return(FALSE) }
    if (rest("null")) { st$i <- st$i + 4L; return(NULL) }
    start <- st$i
    while (st$i <= n && chars[st$i] %in% c("-", "+", ".", "e", "E", as.character(0:9))) st$i <- st$i + 1L
    if (st$i == start) stop(sprintf("JSON: unexpected '%s' at character %d", ch, start), call. = FALSE)
    as.numeric(paste(chars[start:(st$i - 1L)], collapse = ""))
  }
  v <- parse_value()
  if (peek() != "") stop(sprintf("JSON: unexpected text at character %d", st$i), call. = FALSE)
  v
}

to_json <- function(x) {
  str <- function(s) {
    s <- enc2utf8(s)
    s <- gsub("\\", "\\\\", s, fixed = TRUE)
    s <- gsub("\"", "\\\"", s, fixed = TRUE)
    s <- gsub("\n", "\\n", s, fixed = TRUE)
    s <- gsub("\r", "\\r", s, fixed = TRUE)
    s <- gsub("\t", "\\t", s, fixed = TRUE)
    paste0("\"", s, "\"")
  }
  scalar <- function(v) {
    if (is.na(v)) return("null")
    if (is.logical(v)) return(if (v) "true" else "false")
    if (is.numeric(v)) return(format(v, digits = 15, scientific = FALSE, trim = TRUE))
    str(as.character(v))
  }
  if (is.null(x)) return("null")
  if (is.list(x)) {
    if (!is.null(names(x))) {
      items <- vapply(seq_along(x), function(i) paste0(str(names(x)[i]), ":", to_json(x[[i]])), "")
      return(paste0("{", paste(items, collapse = ","), "}"))
    }
    return(paste0("[", paste(vapply(x, to_json, ""), collapse = ","), "]"))
  }
  if (length(x) == 1L && is.null(names(x))) return(scalar(x))
  if (!is.null(names(x))) return(to_json(as.list(x)))
  paste0("[", paste(vapply(x, scalar, ""), collapse = ","), "]")
}
