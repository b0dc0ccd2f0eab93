# plot: mpg against weight, with the line fitted by the `fit` node
# (evaluated at the mean horsepower), drawn into a PNG file.
# Base R only: the few numbers are read from the JSON with a regular expression.

cars <- read.csv(node$inputs$data)
json <- paste(readLines(node$inputs$fit, warn = FALSE), collapse = " ")
number <- function(key) {
  as.numeric(sub(sprintf('.*"%s": *(-?[0-9.eE+-]+).*', key), "\\1", json))
}
b0 <- number("intercept"); b_wt <- number("wt"); b_hp <- number("hp")
r2 <- number("r_squared")

out <- node$outputs$png
dir.create(dirname(out), recursive = TRUE, showWarnings = FALSE)
png(out, width = 800, height = 600, res = 110,
    type = if (capabilities("cairo")) "cairo" else getOption("bitmapType"))
plot(mpg ~ wt, data = cars, pch = 19, col = "steelblue",
     xlab = "Weight (1000 lbs)", ylab = "Miles per gallon",
     main = sprintf("mpg ~ wt + hp  (R^2 = %.3f, n = %d)", r2, nrow(cars)))
abline(a = b0 + b_hp * mean(cars$hp), b = b_wt, col = "firebrick", lwd = 2)
legend("bottomleft", sprintf("fit at mean hp = %.0f", mean(cars$hp)),
       col = "firebrick", lwd = 2, bty = "n")
invisible(dev.off())
cat("wrote", out, "\n")
