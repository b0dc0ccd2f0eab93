"""Fit `target ~ feature`: least squares ("lin") or the mean of target ("mean")."""
import csv
import json

import nodefile

job = nodefile.job()
p = job.params
with open(job.inputs.data, newline="") as f:
    rows = list(csv.DictReader(f))
y = [float(r[p.target]) for r in rows]
x = [float(r[p.feature]) for r in rows]
n = len(rows)
mx, my = sum(x) / n, sum(y) / n
if p.model == "lin":
    sxx = sum((xi - mx) ** 2 for xi in x)
    slope = sum((xi - mx) * (yi - my) for xi, yi in zip(x, y)) / sxx
elif p.model == "mean":
    slope = 0.0
else:
    raise SystemExit(f"unknown model {p.model!r} (lin or mean)")
fit = {"model": p.model, "target": p.target, "feature": p.feature,
       "intercept": round(my - slope * mx, 6), "slope": round(slope, 6), "n": n}
with open(job.outputs[0], "w") as f:
    json.dump(fit, f, indent=2)
