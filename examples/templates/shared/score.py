"""Score a fit on its table: mean absolute error (--metric mae) or RMSE (--metric rmse)."""
import argparse
import csv
import json
import math

import nodefile

job = nodefile.job()
opts = argparse.ArgumentParser()
opts.add_argument("--metric", choices=["mae", "rmse"], default="mae")
metric = opts.parse_args().metric

with open(job.inputs.fit) as f:
    fit = json.load(f)
with open(job.inputs.data, newline="") as f:
    rows = list(csv.DictReader(f))
errors = [float(r[fit["target"]]) - (fit["intercept"] + fit["slope"] * float(r[fit["feature"]])) for r in rows]
if metric == "mae":
    value = sum(abs(e) for e in errors) / len(errors)
else:
    value = math.sqrt(sum(e * e for e in errors) / len(errors))
with open(job.outputs[0], "w") as f:
    json.dump({"model": fit["model"], "target": fit["target"], "metric": metric, "value": round(value, 4)}, f,
              indent=2)
