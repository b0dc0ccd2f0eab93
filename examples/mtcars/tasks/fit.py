"""fit: ordinary least squares regression mpg ~ wt + hp, in pure Python.

Reads the CSV written by the `data` node and writes the coefficients,
R squared and the number of rows as JSON.
"""
import csv
import json
import os

import nodefile

job = nodefile.job()

with open(job.inputs.data, newline="") as f:
    rows = list(csv.DictReader(f))

terms = ["intercept", "wt", "hp"]
X = [[1.0, float(r["wt"]), float(r["hp"])] for r in rows]
y = [float(r["mpg"]) for r in rows]
n, k = len(X), len(terms)
if n <= k:
    raise SystemExit(f"fit: need more than {k} rows, got {n}")


def solve(A, b):
    """Solve A x = b by Gaussian elimination with partial pivoting."""
    m = [row[:] + [v] for row, v in zip(A, b)]
    size = len(m)
    for col in range(size):
        pivot = max(range(col, size), key=lambda r: abs(m[r][col]))
        m[col], m[pivot] = m[pivot], m[col]
        for r in range(col + 1, size):
            factor = m[r][col] / m[col][col]
            for c in range(col, size + 1):
                m[r][c] -= factor * m[col][c]
    x = [0.0] * size
    for r in reversed(range(size)):
        x[r] = (m[r][size] - sum(m[r][c] * x[c] for c in range(r + 1, size))) / m[r][r]
    return x


# Normal equations: (X'X) beta = X'y
XtX = [[sum(row[i] * row[j] for row in X) for j in range(k)] for i in range(k)]
Xty = [sum(row[i] * yi for row, yi in zip(X, y)) for i in range(k)]
beta = solve(XtX, Xty)

fitted = [sum(b * x for b, x in zip(beta, row)) for row in X]
mean_y = sum(y) / n
ss_res = sum((yi - fi) ** 2 for yi, fi in zip(y, fitted))
ss_tot = sum((yi - mean_y) ** 2 for yi in y)

result = {
    "formula": "mpg ~ wt + hp",
    "n": n,
    "coefficients": dict(zip(terms, beta)),
    "r_squared": 1 - ss_res / ss_tot,
    "sigma": (ss_res / (n - k)) ** 0.5,
}

out = job.outputs.fit
os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
with open(out, "w") as f:
    json.dump(result, f, indent=2)
    f.write("\n")
print(f"R^2 = {result['r_squared']:.3f} on {n} rows -> {out}")
