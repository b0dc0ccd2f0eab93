#!/usr/bin/env python3
"""No-op time against node count for every tool, one panel per workflow shape.

    bench/.env/bin/python bench/plot.py -o docs/bench-noop.png bench/results/run-*.json

Later files win for the same (case, tool)."""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import report  # noqa: E402

COLORS = {"make": "#4c72b0", "ninja": "#55a868", "nodefile": "#c44e52", "doit": "#8172b2", "snakemake": "#ccb974"}


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("-o", "--out", required=True)
    p.add_argument("json", nargs="+")
    a = p.parse_args(argv)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    merged = report.merge([json.load(open(f)) for f in a.json])
    rows = [r for r in merged["cases"] if r.get("noop_median_s") is not None]
    shapes = [s for s in ("indep", "chain", "lattice") if any(r["shape"] == s for r in rows)]
    if not shapes:
        print("no no-op measurements to plot", file=sys.stderr)
        return 1
    fig, axes = plt.subplots(1, len(shapes), figsize=(max(7.5, 5 * len(shapes)), 4.6), squeeze=False, sharey=True)
    for ax, shape in zip(axes[0], shapes):
        tools = sorted({r["tool"] for r in rows if r["shape"] == shape},
                       key=lambda t: report.TOOL_ORDER.index(t) if t in report.TOOL_ORDER else 99)
        for t in tools:
            pts = sorted((r["n"], r["noop_median_s"]) for r in rows if r["shape"] == shape and r["tool"] == t)
            xs, ys = zip(*pts)
            ax.plot(xs, [y * 1000 for y in ys], marker="o", label=t, color=COLORS.get(t),
                    linewidth=2.5 if t == "nodefile" else 1.5)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{shape}")
        ax.set_xlabel("nodes")
        ax.grid(True, which="both", alpha=0.3)
    handles = {}
    for ax in axes[0]:
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    labels = sorted(handles, key=lambda t: report.TOOL_ORDER.index(t) if t in report.TOOL_ORDER else 99)
    fig.legend([handles[t] for t in labels], labels, loc="lower center", ncol=len(labels), frameon=False)
    axes[0][0].set_ylabel("no-op build, median wall time (ms)")
    fig.suptitle("No-op build time against node count (lower is better; 2 vCPUs)")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    fig.savefig(a.out, dpi=110, bbox_inches="tight")
    print(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
