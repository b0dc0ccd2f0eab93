"""Drop the rows of the raw table with a missing value."""
import csv

import nodefile

job = nodefile.job()
with open(job.inputs.raw, newline="") as f:
    reader = csv.DictReader(f)
    fields = reader.fieldnames
    rows = [r for r in reader if all(r[k].strip() for k in fields)]
with open(job.outputs[0], "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=fields)
    w.writeheader()
    w.writerows(rows)
