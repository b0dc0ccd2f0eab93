# data: the first `n_rows` rows of R's built-in mtcars data set, as a CSV file.
# `node` is provided by nodefile: node$params$n_rows, node$outputs$csv.

n_rows <- node$params$n_rows
cars <- datasets::mtcars
stopifnot(n_rows >= 1L, n_rows <= nrow(cars))

# Keep the car names (row names) as an ordinary first column.
cars <- cbind(model = rownames(cars), cars)

out <- node$outputs$csv
dir.create(dirname(out), recursive = TRUE, showWarnings = FALSE)
write.csv(head(cars, n_rows), out, row.names = FALSE)
cat("wrote", n_rows, "rows to", out, "\n")
