"""report: an HTML page with the fit summary and the plot."""
import html
import json
import os

import nodefile

job = nodefile.job()

with open(job.inputs.fit) as f:
    fit = json.load(f)

out = job.outputs.html
# The <img> path must be relative to the page, not to the working directory.
img = os.path.relpath(job.inputs.plot, os.path.dirname(out) or ".")

rows = "\n".join(
    f"    <tr><td>{html.escape(term)}</td><td>{value:.4f}</td></tr>"
    for term, value in fit["coefficients"].items()
)
page = f"""<!DOCTYPE html>
<html>
<head><meta charset="utf-8"><title>mtcars: {html.escape(fit["formula"])}</title></head>
<body>
  <h1>Linear model {html.escape(fit["formula"])}</h1>
  <p>Fitted on {fit["n"]} rows of <code>mtcars</code>.</p>
  <table border="1" cellpadding="4">
    <tr><th>term</th><th>estimate</th></tr>
{rows}
    <tr><td>R²</td><td>{fit["r_squared"]:.4f}</td></tr>
    <tr><td>residual sd</td><td>{fit["sigma"]:.4f}</td></tr>
  </table>
  <p><img src="{html.escape(img)}" alt="mpg against weight with the fitted line"></p>
</body>
</html>
"""

os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
with open(out, "w", encoding="utf-8") as f:
    f.write(page)
print(f"wrote {out}")
