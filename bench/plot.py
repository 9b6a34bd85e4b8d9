#!/usr/bin/env python3
"""Plots of a benchmark run, as PNG files, from the JSON that bench/compare.py writes (and the
micro-benchmark JSON of bench/micro.py, when given):

  <prefix>time_ratio.png      time / base time, grouped bars per workload, one per allocator
  <prefix>peak_rss_ratio.png  peak RSS / base peak RSS, the same way
  <prefix>final_rss.png       final RSS in MiB of the footprint workloads (those that report one)
  <prefix>micro.png           micro-benchmarks: ns per item, coloured by the ratio to smpalloc

Ratios and sizes are drawn on log scales (a ratio of 2 and one of 0.5 are the same distance
from 1); the last group of the ratio plots is the geometric mean. The title names the commit
and the machine. Uses matplotlib's Agg backend, so it needs no display. A JSON file whose meta
does not say it is compare.py's is read as micro-benchmark results. Prints the files written.

Usage: plot.py COMPARE.json [MICRO.json ...] [--micro MICRO.json] --out DIR [--prefix P]
"""
import argparse
import json
import math
import os
import sys

try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker
except ImportError:
    sys.exit("plot.py: matplotlib is missing (Debian: apt-get install python3-matplotlib; "
             "it serves /usr/bin/python3)")


def title_of(meta, what):
    """Plot title: what is shown, then commit, date and machine from compare.py's metadata."""
    commit = meta.get("commit", "?") + (" (dirty)" if meta.get("dirty") else "")
    mib = meta.get("memory_kib")
    machine = (f"{meta.get('cpus', '?')} CPUs {meta.get('cpu_model') or ''}"
               + (f", {mib / 1048576:.0f} GiB" if mib else "")
               + f", Linux {meta.get('kernel', '?')}")
    return f"{what}\ncommit {commit}, {meta.get('date', '')[:10]}; {machine}"


def workload_label(name):
    """'threadtest 64 3000 256 64' -> 'threadtest\\n64 3000 256 64' (narrower tick labels)."""
    prog, _, args = name.partition(" ")
    if len(args) > 24:
        args = args[:22] + "…"
    return prog + ("\n" + args if args else "")


def log_ticks(ax):
    """Plain-number ticks (0.8, 1, 1.5, 2, ...) on a log y axis instead of powers of ten."""
    lo, hi = ax.get_ylim()
    for steps in ((1, 1.25, 1.5, 2, 3, 4, 5, 6, 8), (1, 2, 3, 5), (1, 2, 5), (1,)):
        ticks = [m * 10.0 ** e for e in range(-4, 8) for m in steps if lo <= m * 10.0 ** e <= hi]
        if len(ticks) <= 12:
            break
    ax.yaxis.set_major_locator(ticker.FixedLocator(ticks))
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_locator(ticker.NullLocator())


def grouped_bars(ax, groups, series, values, colors, baseline=None):
    """Bars on a log y axis: one group per entry of groups, one bar per series; values[s][g]
    may be None. With a baseline (1 for ratios) each bar runs from it, up or down."""
    n = max(len(series), 1)
    width = 0.8 / n
    for i, s in enumerate(series):
        xs = [g + (i - (n - 1) / 2) * width for g in range(len(groups))]
        ys = [v if v is not None and math.isfinite(v) and v > 0 else float("nan")
              for v in values[s]]
        if baseline:
            ax.bar(xs, [y - baseline for y in ys], width, bottom=baseline, label=s,
                   color=colors[s])
        else:
            ax.bar(xs, ys, width, label=s, color=colors[s])
    ax.set_xticks(range(len(groups)))
    if len(groups) > 8:  # many groups: one slanted line each instead of two short ones
        ax.set_xticklabels([g.replace("\n", " ") for g in groups], fontsize=7, rotation=30,
                           ha="right", rotation_mode="anchor")
    else:
        ax.set_xticklabels(groups, fontsize=7)
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.set_yscale("log")
    ax.margins(y=0.08)
    log_ticks(ax)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))


def save(fig, path):
    """Write the figure as a PNG, close it and print the file name."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(path)


def palette(names):
    """A fixed colour per allocator name, so every plot of a run matches."""
    cmap = plt.get_cmap("tab10")
    return {n: cmap(i % 10) for i, n in enumerate(names)}


def ratio_plot(data, field, geo_key, ylabel, what, path):
    """Bars of median(field) / median(field of the base) per workload, with the geomean."""
    base = data["base"]
    names = [a["name"] for a in data["meta"]["allocators"]]
    peers = [n for n in names if n != base]
    wls = data["workloads"]
    groups = [workload_label(w["name"]) for w in wls] + ["geometric\nmean"]
    values = {n: [w["ratio"].get(n, {}).get(field) for w in wls]
              + [data["geomean"].get(n, {}).get(geo_key)] for n in peers}
    fig, ax = plt.subplots(figsize=(min(16, max(9, 0.75 * len(groups) + 2)), 6))
    grouped_bars(ax, groups, peers, values, palette(names), baseline=1)
    ax.axvline(len(groups) - 1.5, color="gray", linestyle=":", linewidth=0.8)
    ax.axhline(1, color="black", linewidth=0.8)
    ax.set_ylabel(ylabel)
    ax.set_xlabel(f"workload (median of {data['reps']} runs; line at 1 = {base})")
    ax.set_title(title_of(data["meta"], what), fontsize=10)
    save(fig, path)


def final_rss_plot(data, path):
    """Bars of the median final RSS (MiB) of every footprint workload, every allocator."""
    names = [a["name"] for a in data["meta"]["allocators"]]
    wls = [w for w in data["workloads"]
           if any(m.get("rss_final_kib") is not None for m in w["median"].values())]
    if not wls:
        return
    groups = [workload_label(w["name"]) for w in wls]
    values = {n: [(w["median"].get(n, {}).get("rss_final_kib") or 0) / 1024 or None
                  for w in wls] for n in names}
    fig, ax = plt.subplots(figsize=(min(16, max(9, 1.6 * len(groups) + 3)), 6))
    grouped_bars(ax, groups, names, values, palette(names))
    ax.set_ylabel("RSS at the end, MiB (log scale; lower is better)")
    ax.set_xlabel(f"footprint workload (median of {data['reps']} runs)")
    ax.set_title(title_of(data["meta"], "Memory kept at the end (final RSS)"), fontsize=10)
    save(fig, path)


def micro_records(data):
    """(benchmark, allocator, nanoseconds) triples from bench/micro.py's JSON ("medians":
    benchmark -> allocator -> ns per item), or from one allocator's Google Benchmark JSON
    ("benchmarks": [...], drawn as allocator "this"). [] when neither shape is there."""
    if isinstance(data.get("medians"), dict):
        return [(b, n, ns) for b, row in data["medians"].items() for n, ns in row.items()
                if isinstance(ns, (int, float))]
    scale = {"ns": 1, "us": 1e3, "ms": 1e6, "s": 1e9}
    return [(r.get("run_name", r["name"]), "this",
             r["real_time"] * scale.get(r.get("time_unit", "ns"), 1))
            for r in data.get("benchmarks", []) if r.get("run_type", "iteration") == "iteration"
            and isinstance(r.get("real_time"), (int, float))]


def micro_plot(data, meta, source, path):
    """A table-like heat map of the micro-benchmarks (from file source): one row per benchmark,
    one column per allocator, each cell its ns per item, coloured by its ratio to smpalloc (log
    scale: blue faster, red slower)."""
    recs = micro_records(data)
    if not recs:
        print(f"plot.py: no micro-benchmark records recognised in {source}; no micro plot",
              file=sys.stderr)
        return
    benches = list(dict.fromkeys(b for b, _, _ in recs))
    allocs = list(dict.fromkeys(a for _, a, _ in recs))
    base = next((a for a in ("smpalloc", data.get("metadata", {}).get("base")) if a in allocs),
                allocs[0])
    val = {(b, a): t for b, a, t in recs}
    grid = [[math.log2(val[(b, a)] / val[(b, base)]) if val.get((b, a)) and val.get((b, base))
             else float("nan") for a in allocs] for b in benches]
    fig, ax = plt.subplots(figsize=(3.5 + 1.2 * len(allocs), 1.6 + 0.28 * len(benches)))
    im = ax.imshow(grid, cmap="coolwarm", vmin=-3, vmax=3, aspect="auto")
    for i, b in enumerate(benches):
        for j, a in enumerate(allocs):
            t, g = val.get((b, a)), grid[i][j]
            ax.text(j, i, "-" if not t else f"{t:.0f}" if t >= 100 else f"{t:.3g}",
                    ha="center", va="center", fontsize=7,
                    color="white" if math.isfinite(g) and abs(g) > 2 else "black")
    ax.set_xticks(range(len(allocs)))
    ax.set_xticklabels(allocs, fontsize=8)
    ax.xaxis.tick_top()
    ax.set_yticks(range(len(benches)))
    ax.set_yticklabels(benches, fontsize=7)
    bar = fig.colorbar(im, ax=ax, shrink=0.6, ticks=range(-3, 4))
    bar.ax.set_yticklabels([f"{2.0 ** k:g}" for k in range(-3, 4)])
    bar.set_label(f"allocator / {base} (log scale; red: slower)")
    ax.set_xlabel("allocator (cells: median ns per item, Google Benchmark)")
    ax.set_title(title_of(meta or data.get("metadata", {}), "Micro-benchmarks"), fontsize=10)
    save(fig, path)


def main():
    """Read the JSON files and write every plot they allow into --out."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("json", nargs="*", help="compare.py JSON (others are read as micro)")
    ap.add_argument("--micro", action="append", default=[], help="micro.py JSON")
    ap.add_argument("--out", required=True, help="directory for the PNG files")
    ap.add_argument("--prefix", default="", help="prefix of every file name")
    a = ap.parse_args()
    if not a.json and not a.micro:
        ap.error("no JSON file given")
    os.makedirs(a.out, exist_ok=True)
    compares, micros = [], []
    for path in a.json + a.micro:
        with open(path) as fh:
            data = json.load(fh)
        is_compare = isinstance(data, dict) and data.get("meta", {}).get("tool") == \
            "bench/compare.py"
        (compares if is_compare and path not in a.micro else micros).append((path, data))
    meta = compares[0][1]["meta"] if compares else {}
    for path, data in compares:
        # Several compare files: each gets its own set, named after the file.
        pre = a.prefix + (os.path.splitext(os.path.basename(path))[0] + "-"
                          if len(compares) > 1 else "")
        out = os.path.join(a.out, pre)
        base = data["base"]
        ratio_plot(data, "time_s", "time", f"time / {base} time (log scale; below 1: faster than {base})",
                   f"Time relative to {base}", out + "time_ratio.png")
        ratio_plot(data, "peak_rss_kib", "peak_rss",
                   f"peak RSS / {base} peak RSS (log scale; below 1: less memory)",
                   f"Peak RSS relative to {base}", out + "peak_rss_ratio.png")
        final_rss_plot(data, out + "final_rss.png")
    for i, (path, data) in enumerate(micros):
        name = "micro.png" if len(micros) == 1 else f"micro-{i + 1}.png"
        micro_plot(data, meta, path, os.path.join(a.out, a.prefix + name))


if __name__ == "__main__":
    main()
