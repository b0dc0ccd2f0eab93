"""Tables of medians with ratios to ninja and make, and the goals with PASS/FAIL."""
from __future__ import annotations

METRICS = (("full", "full build -j2", "s"), ("noop", "no-op", "ms"), ("rebuild", "rebuild, 1 source changed", "ms"))
TOOL_ORDER = ("make", "ninja", "nodefile", "doit", "snakemake")


def merge(results: list[dict]) -> dict:
    """Several result files into one: later files win for the same (case, tool) and part."""
    out = {"meta": [], "cases": {}, "hashing": None, "startup": None}
    for res in results:
        out["meta"].append(res.get("meta", {}))
        for row in res.get("cases", []):
            key = (row["case"], row["tool"])
            old = out["cases"].get(key)
            if old is None or _has_data(row) or not _has_data(old):
                out["cases"][key] = row
        if res.get("hashing") and not res["hashing"].get("error") or out["hashing"] is None:
            out["hashing"] = res.get("hashing") or out["hashing"]
        if res.get("startup") and not res["startup"].get("error") or out["startup"] is None:
            out["startup"] = res.get("startup") or out["startup"]
    out["cases"] = list(out["cases"].values())
    return out


def _has_data(row) -> bool:
    return any(row.get(f"{m}_s") for m, _, _ in METRICS)


def _fmt(v, unit):
    if v is None:
        return "—"
    return f"{v:.2f}" if unit == "s" else f"{v * 1000:.1f}"


def _ratio(a, b):
    if a is None or b is None or b <= 0:
        return None
    return a / b


def _fr(r):
    return "—" if r is None else f"{r:.2f}×"


def _cell(row, m, unit):
    """The median, or '—' with the reason."""
    v = row.get(f"{m}_median_s")
    if v is not None:
        s = _fmt(v, unit)
        if m == "full" and row.get("full_note"):
            s += "¹"
        return s
    if row.get("error"):
        return "FAIL"
    why = row.get("skipped", {}).get(m)
    return "— (" + why.split(" (")[0] + ")" if why else "—"


def case_key(case: str):
    shape, n = case.rsplit("_", 1)
    return (("indep", "chain", "lattice").index(shape) if shape in ("indep", "chain", "lattice") else 9, int(n))


def tables(merged: dict) -> str:
    rows = merged["cases"]
    lines = []
    by_case: dict = {}
    for r in rows:
        by_case.setdefault(r["case"], {})[r["tool"]] = r
    for m, title, unit in METRICS:
        lines.append(f"\n### {title} (median, {unit}; ratio = this tool / ninja, / make)\n")
        lines.append(f"| case | tool | {title} {unit} | × ninja | × make | CPU {unit} | runs |")
        lines.append("|---|---|---:|---:|---:|---:|---:|")
        for case in sorted(by_case, key=case_key):
            tools = by_case[case]
            if not any(r.get(f"{m}_s") or r.get("error") for r in tools.values()):
                whys = {r.get("skipped", {}).get(m) for r in tools.values()} - {None}
                lines.append(f"| {case} | (every tool) | — ({'; '.join(sorted(whys)) or 'not measured'}) | | | | |")
                continue
            ninja = tools.get("ninja", {}).get(f"{m}_median_s")
            make = tools.get("make", {}).get(f"{m}_median_s")
            for t in sorted(tools, key=lambda t: TOOL_ORDER.index(t) if t in TOOL_ORDER else 99):
                row = tools[t]
                v = row.get(f"{m}_median_s")
                extra = ""
                if m == "rebuild" and row.get("rebuilt_nodes") is not None:
                    extra = f" ({row['rebuilt_nodes']} rebuilt)"
                cpu = row.get(f"{m}_cpu_median_s")
                lines.append(f"| {case} | {t}{extra} | {_cell(row, m, unit)} | {_fr(_ratio(v, ninja))} | "
                             f"{_fr(_ratio(v, make))} | {_fmt(cpu, unit)} | {len(row.get(f'{m}_s') or [])} |")
    notes = []
    if any(r.get("full_note") for r in rows):
        notes.append("¹ one full build only (the case is above --full-max).")
    first = [r for r in rows if r.get("noop_first_s") is not None and r["tool"] == "nodefile"]
    if first:
        notes.append("nodefile's first no-op after a full build (it checks the files written within its "
                     "filesystem's racy window of the record, 20 ms here, 2 s on coarse filesystems): " + ", ".join(f"{r['case']} {r['noop_first_s'] * 1000:.0f} ms"
                                                  for r in sorted(first, key=lambda r: case_key(r["case"]))))
    errors = [r for r in rows if r.get("error")]
    for r in errors:
        notes.append(f"FAIL {r['tool']} {r['case']}: {r['error'].splitlines()[0][:300]}")
    skipped = {}
    for r in rows:
        for m, why in (r.get("skipped") or {}).items():
            if why and "not requested" not in why and not why.startswith("chain:"):
                skipped.setdefault((r["tool"], why), set()).add(r["case"])
    for (t, why), cases in sorted(skipped.items()):
        notes.append(f"— {t} in {', '.join(sorted(cases, key=case_key))}: {why}")
    if notes:
        lines.append("")
        lines += [f"- {n}" for n in notes]
    h = merged.get("hashing")
    if h:
        lines.append("\n### hashing a {:.2f} GiB file, cold in nodefile's stat cache, page cache warm (median)\n"
                     .format(h["size_bytes"] / (1 << 30)))
        lines.append("| what | time ms | GiB/s | × cat throughput |")
        lines.append("|---|---:|---:|---:|")
        cat = h.get("cat_gib_s")
        for label, t, g in (("`cat FILE > /dev/null`", h.get("cat_median_s"), cat),
                            ("nodefile build (big input) − build (tiny input)", h.get("build_hash_median_s"),
                             h.get("build_gib_s")),
                            ("`nodefile.hashing.hash_file_content` in-process", h.get("inproc_median_s"),
                             h.get("inproc_gib_s"))):
            lines.append(f"| {label} | {_fmt(t, 'ms')} | {'—' if g is None else f'{g:.2f}'} | "
                         f"{_fr(_ratio(g, cat))} |")
        lines.append(f"\n(builds with the big input: {_fmt(h.get('build_big_median_s'), 'ms')} ms, with the tiny "
                     f"input: {_fmt(h.get('build_small_median_s'), 'ms')} ms)" +
                     (f"\n\nFAIL hashing: {h['error'].splitlines()[0]}" if h.get("error") else ""))
    s = merged.get("startup")
    if s:
        lines.append("\n### start-up (median)\n")
        lines.append("| command | ms | × `python -c pass` |")
        lines.append("|---|---:|---:|")
        base = s.get("python_pass_median_s")
        for label, k in (("`nodefile build` no-op, 10 nodes", "noop10_median_s"), ("`nodefile --help`", "help_median_s"),
                         ("`python -c pass` (same interpreter)", "python_pass_median_s")):
            lines.append(f"| {label} | {_fmt(s.get(k), 'ms')} | {_fr(_ratio(s.get(k), base))} |")
        if s.get("error"):
            lines.append(f"\nFAIL start-up: {s['error'].splitlines()[0]}")
    return "\n".join(lines)


def _get(rows, case_prefix, n, tool, m):
    for r in rows:
        if r["shape"] == case_prefix and r["n_requested"] == n and r["tool"] == tool:
            return r.get(f"{m}_median_s")
    return None


def goals(merged: dict) -> list[dict]:
    rows = merged["cases"]
    out = []

    def add(goal, a, b, limit, what, higher_is_better=False):
        r = _ratio(a, b)
        if r is None:
            verdict = "n/a (not measured)"
        elif higher_is_better:
            verdict = "PASS" if r >= limit else "FAIL"
        else:
            verdict = "PASS" if r <= limit else "FAIL"
        out.append({"goal": goal, "ratio": r, "limit": limit, "verdict": verdict, "detail": what(a, b)})

    def ms(a, b, x="nodefile", y="ninja"):
        return f"{x} {_fmt(a, 'ms')} ms vs {y} {_fmt(b, 'ms')} ms"

    for n in (10000, 100000):
        add(f"no-op, {n:,} nodes (indep) ≤ 2× ninja", _get(rows, "indep", n, "nodefile", "noop"),
            _get(rows, "indep", n, "ninja", "noop"), 2.0, ms)
    add("full build, 1,000 trivial recipes, -j2 (indep) ≤ 1.5× make", _get(rows, "indep", 1000, "nodefile", "full"),
        _get(rows, "indep", 1000, "make", "full"), 1.5,
        lambda a, b: f"nodefile {_fmt(a, 's')} s vs make {_fmt(b, 's')} s")
    add("rebuild after one source change, 10,000 nodes (indep) ≤ 2× ninja",
        _get(rows, "indep", 10000, "nodefile", "rebuild"), _get(rows, "indep", 10000, "ninja", "rebuild"), 2.0, ms)
    h = merged.get("hashing") or {}
    gib = lambda a, b: f"nodefile {'—' if a is None else f'{a:.2f}'} GiB/s vs cat {'—' if b is None else f'{b:.2f}'} GiB/s"
    add("hashing ≥ 80% of cat's throughput (nodefile build, cold stat cache)", h.get("build_gib_s"),
        h.get("cat_gib_s"), 0.8, gib, higher_is_better=True)
    add("hashing ≥ 80% of cat's throughput (hash_file_content in-process)", h.get("inproc_gib_s"),
        h.get("cat_gib_s"), 0.8, gib, higher_is_better=True)
    s = merged.get("startup") or {}
    add("no-op, 10 nodes ≤ 5× `python -c pass`", s.get("noop10_median_s"), s.get("python_pass_median_s"), 5.0,
        lambda a, b: ms(a, b, "nodefile", "python -c pass"))
    return out


def goals_table(gs: list[dict]) -> str:
    lines = ["\n### goals\n", "| goal | measured | ratio | verdict |", "|---|---|---:|---|"]
    for g in gs:
        lines.append(f"| {g['goal']} | {g['detail']} | {_fr(g['ratio'])} | **{g['verdict']}** |")
    return "\n".join(lines)
