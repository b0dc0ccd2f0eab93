"""A Markdown table of the scores."""
import json

import nodefile

job = nodefile.job()
lines = ["| target | model | metric | value |", "| --- | --- | --- | --- |"]
for path in job.inputs.scores:
    with open(path) as f:
        s = json.load(f)
    lines.append(f"| {s['target']} | {s['model']} | {s['metric']} | {s['value']} |")
with open(job.outputs[0], "w") as f:
    f.write(f"# Scores: {len(job.inputs.scores)} model(s)\n\n" + "\n".join(lines) + "\n")
