#!/usr/bin/env python3
"""Rewrite the generated section of papers/results.md from a benchmark run's JSON files.

Only the text between the marker lines '<!-- report:begin -->' and '<!-- report:end -->' is
replaced; everything above and below them is hand-written and kept as it is (a file without
the markers gets them appended at its end). The section holds: the run's date, commit, machine,
toolchain and allocator versions; the exact command; the benchmark issue's targets checked one
by one (met or missed, with the figures); the tables as bench/compare.py printed them; the
micro-benchmark and instruction-count tables (the .txt that ci/bench.sh saves beside their
JSON, else a table made here from the JSON); and the plots, copied next to the results file
(papers/plots/) and linked.

The targets (smpalloc against the peers glibc, jemalloc, mimalloc, tcmalloc (Debian's is
gperftools, per-thread caches) and tbb (oneTBB's scalable allocator); ratios are geometric means
over the workloads where both ran):
  time: smpalloc/mimalloc <= 0.9, smpalloc/jemalloc, /tcmalloc and /tbb <= 0.8,
        smpalloc/glibc <= 0.5;
  peak RSS: smpalloc's geometric mean no higher than the best peer's;
  no workload slower than 1.25 x the fastest peer on it;
  fewest instructions per malloc/free pair (bench/instructions.py), at every size measured.

Usage: report.py [--compare RUN.json] [--micro MICRO.json] [--instructions INSTR.json]
                 [--plots PNG ...] [--out papers/results.md] [--plots-dir DIR]
"""
import argparse
import math
import json
import os
import re
import shlex
import shutil
import statistics
import sys

BEGIN, END = "<!-- report:begin -->", "<!-- report:end -->"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS = ("glibc", "jemalloc", "mimalloc", "tcmalloc", "tbb")
TIME_TARGETS = (("mimalloc", 0.9), ("jemalloc", 0.8), ("tcmalloc", 0.8), ("tbb", 0.8),
                ("glibc", 0.5))
SLOWEST = 1.25


def shown(path):
    """path relative to the repository when it is inside it, else as it is."""
    return os.path.relpath(path, REPO) if path.startswith(REPO + "/") else path


def load(path):
    """The parsed JSON file at path, or None when no path is given."""
    if not path:
        return None
    with open(path) as fh:
        return json.load(fh)


def sibling_text(path):
    """The table text saved beside a JSON file (same name, .txt), or None."""
    txt = os.path.splitext(path)[0] + ".txt" if path else None
    if txt and os.path.exists(txt):
        with open(txt) as fh:
            return fh.read().rstrip("\n")
    return None


def medians(run, field):
    """{workload name: {allocator: median of field}} of a compare.py run (None kept out)."""
    return {w["name"]: {n: m[field] for n, m in w["median"].items() if m.get(field) is not None}
            for w in run["workloads"]}


def paired_geomean(meds, a, b):
    """(geometric mean of a/b over the workloads where both have a median, their count)."""
    rs = [m[a] / m[b] for m in meds.values() if a in m and b in m and m[a] > 0 and m[b] > 0]
    return (statistics.geometric_mean(rs), len(rs)) if rs else (None, 0)


def instruction_rows(doc):
    """{row: {allocator: instructions per pair}} from bench/instructions.py's JSON: its rows are
    sizes ("sizes": {size: {"allocators": {name: {"pair": n}}}}), grouped by mode when there are
    "modes" ({mode: {"sizes": ...}}; row "size, mode M")."""
    doc = doc or {}
    groups = ({f", mode {m}": v.get("sizes", {}) for m, v in doc["modes"].items()}
              if isinstance(doc.get("modes"), dict) else {"": doc.get("sizes", {})})
    rows = {}
    for suffix, sizes in groups.items():
        for size, row in sizes.items():
            cells = row.get("allocators", {})
            rows[f"{size}{suffix}"] = {
                n: c["pair"] for n, c in cells.items()
                if isinstance(c, dict) and isinstance(c.get("pair"), (int, float))}
    return rows


def check_targets(run, instr, smp):
    """The targets as (target, figures, verdict) rows; verdict is met, missed or not measured."""
    rows = []
    times, peaks = medians(run, "time_s"), medians(run, "peak_rss_kib")
    names = [a["name"] for a in run["meta"]["allocators"]]
    peers = [n for n in names if n in PEERS]
    for peer, limit in TIME_TARGETS:
        g, k = paired_geomean(times, smp, peer)
        rows.append((f"time against {peer}: geometric mean of {smp}/{peer} ≤ {limit}",
                     f"{g:.2f} over {k} workloads" if g else "-",
                     "not measured" if g is None else "met" if g <= limit else "missed"))
    # Peak RSS: ours no higher than the best peer's means every smp/peer geomean <= 1.
    per_peer = {p: paired_geomean(peaks, smp, p) for p in peers}
    measured = {p: g for p, (g, _) in per_peer.items() if g}
    rows.append((f"peak RSS: geometric mean of {smp}'s no higher than the best peer's",
                 ", ".join(f"{smp}/{p} {g:.2f}" for p, g in measured.items()) or "-",
                 "not measured" if not measured else
                 "met" if max(measured.values()) <= 1 else "missed"))
    # Per workload: our time against the fastest peer on it.
    worst, over = None, []
    for name, m in times.items():
        there = [p for p in peers if p in m]
        if smp not in m or not there:
            continue
        best = min(there, key=lambda p: m[p])
        r = m[smp] / m[best] if m[best] > 0 else math.inf
        if worst is None or r > worst[0]:
            worst = (r, name, best)
        if r > SLOWEST:
            over.append(f"{name} {r:.2f}x {best}")
    rows.append((f"no workload slower than {SLOWEST}x the fastest peer on it",
                 ("over: " + "; ".join(over)) if over else
                 (f"worst: {worst[1]} {worst[0]:.2f}x {worst[2]}" if worst else "-"),
                 "not measured" if worst is None else "missed" if over else "met"))
    # Instructions per pair: fewest at every size (0.05 of slack, as instructions.py marks).
    worst, met, total = None, 0, 0
    for size, cells in instruction_rows(instr).items():
        there = [p for p in PEERS if p in cells]
        if smp not in cells or not there:
            continue
        best = min(there, key=lambda p: cells[p])
        total += 1
        met += cells[smp] <= cells[best] + 0.05
        excess = cells[smp] / cells[best] if cells[best] > 0 else math.inf
        if worst is None or excess > worst[0]:
            worst = (excess, size, best, cells[smp], cells[best])
    rows.append(("fewest instructions per malloc/free pair (callgrind), at every size",
                 f"fewest at {met} of {total} sizes; "
                 f"{'closest' if met == total else 'worst'}: {worst[1]}: "
                 f"{smp} {worst[3]:.1f}, {worst[2]} {worst[4]:.1f}" if total else "-",
                 "not measured" if not total else "met" if met == total else "missed"))
    return rows


def wrap_command(argv, width=96):
    """The command as shell words on indented lines of at most width characters, joined with
    backslashes; an option stays with its value, --meta options (metadata only) are left out,
    and each '---' starts a new line when the current one is over half full."""
    words = [shlex.quote(w) for w in argv]
    units, i = [], 0
    while i < len(words):
        w = words[i]
        if w.startswith("--") and w not in ("--", "---") and i + 1 < len(words) \
                and not words[i + 1].startswith("-"):
            if w != "--meta":  # metadata only, already given as the command above
                units.append(w + " " + words[i + 1])
            i += 2
        else:
            units.append(w)
            i += 1
    lines, cur = [], "python3"
    for u in units:
        if len(cur) + 1 + len(u) > width or u == "---" and len(cur) > width / 2:
            lines.append(cur)
            cur = "  " + u
        else:
            cur += " " + u
    lines.append(cur)
    return " \\\n".join("    " + ln for ln in lines)


def micro_table(doc):
    """A plain table of bench/micro.py's medians (ns per item), for when its .txt is missing."""
    meds = doc.get("medians", {})
    names = list(dict.fromkeys(n for row in meds.values() for n in row))
    bw = max([len("benchmark")] + [len(b) for b in meds])
    lines = [f"{'benchmark':<{bw}}  " + " ".join(f"{n:>12}" for n in names)]
    for b, row in meds.items():
        lines.append(f"{b:<{bw}}  " + " ".join(
            f"{row[n]:>12.1f}" if isinstance(row.get(n), (int, float)) else f"{'-':>12}"
            for n in names))
    return "\n".join(lines)


def instructions_table(doc):
    """A plain table of instructions per pair by size, for when instructions.py's .txt is
    missing."""
    rows = instruction_rows(doc)
    names = list(dict.fromkeys(n for r in rows.values() for n in r))
    w = max([4] + [len(k) for k in rows])
    lines = [f"{'size':>{w}} " + " ".join(f"{n:>15}" for n in names)]
    for size, r in rows.items():
        lines.append(f"{size:>{w}} " + " ".join(
            f"{r[n]:>15.1f}" if n in r else f"{'-':>15}" for n in names))
    return "\n".join(lines)


def plot_name(path):
    """papers/plots/ name of a plot: its kind (time_ratio.png, ...) without the run's prefix."""
    m = re.search(r"(time_ratio|peak_rss_ratio|final_rss|micro(-\d+)?)\.png$", path)
    return m.group(0) if m else os.path.basename(path)


def allocator_line(a, meta):
    """'jemalloc (libjemalloc2 5.3.0-1)' or, for a build-tree library, where it came from."""
    settings = " ".join(f"{k}={v}" for k, v in a.get("settings", {}).items())
    if a.get("package"):
        origin = f"{a['package'].split(':')[0]} {a.get('package_version') or ''}".strip()
    elif a.get("path") and a["path"].startswith(REPO + "/"):
        origin = (a["path"].replace(REPO + "/", "") + f", built at {meta.get('commit', '?')}")
    elif a.get("path"):  # another build (an earlier one to compare with): what the run recorded
        origin = a["path"]
        if a.get("git_commit"):
            dirty = " with uncommitted changes" if a.get("git_dirty") else ""
            origin += f", in a checkout of {a['git_commit']}{dirty} when the run began"
    else:
        origin = "system"
    return f"{a['name']} ({origin}{', ' + settings if settings else ''})"

def generate(run, micro, instr, run_path, micro_path, instr_path, plots):
    """The markdown between the markers. plots: [(file name under plots dir, link, title)]."""
    meta = run["meta"]
    names = [a["name"] for a in meta["allocators"]]
    smp = "smpalloc" if "smpalloc" in names else run["base"]
    mem = meta.get("memory_kib")
    dirty = " (with uncommitted changes)" if meta.get("dirty") else ""
    quick = " This was a --quick run (smaller arguments): not for conclusions." \
        if str(meta.get("quick")) == "1" else ""
    out = [
        "<!-- Written by bench/report.py (ci/bench.sh --report); edit only outside the report "
        "markers. -->",
        "",
        f"## Latest run of the suite: {meta.get('date', '?')[:16].replace('T', ' ')} UTC, "
        f"commit {meta.get('commit', '?')}{dirty}",
        "",
        f"Machine: {meta.get('cpus', '?')} CPUs ({meta.get('cpu_model') or '?'})"
        + (f", {mem / 1048576:.0f} GiB" if mem else "")
        + f", {meta.get('os') or 'Linux'}, kernel {meta.get('kernel', '?')}; "
        f"{meta.get('compiler') or 'compiler unknown'}; {meta.get('glibc') or 'glibc ?'}. "
        f"Allocators: " + ", ".join(allocator_line(a, meta) for a in meta["allocators"]) + ".",
        "",
        f"Command: `{meta.get('invocation', 'bench/compare.py')}`, {run['reps']} run{'s' * (run['reps'] != 1)} of each "
        f"workload under each allocator, alternating run by run; medians. Ratios are "
        f"allocator / {run['base']}.{quick} Raw results (kept locally, not in git): "
        f"`{shown(run_path)}`. "
        f"The workloads ran as (from the repository's root; --meta options left out):",
        "",
        wrap_command(meta.get("argv", [])),
        "",
        "### Targets of the benchmark issue",
        "",
        "| target | measured | verdict |",
        "|---|---|---|",
    ]
    for target, figures, verdict in check_targets(run, instr, smp):
        out.append(f"| {target} | {figures} | {'**missed**' if verdict == 'missed' else verdict} |")
    out += ["", "### Workloads", "", "As bench/compare.py printed them:", "", "```",
            run["table"].rstrip("\n"), "```"]
    if micro is not None:
        out += ["", "### Micro-benchmarks", "",
                f"bench/micro.py, `{shown(micro_path)}`:", "", "```",
                sibling_text(micro_path) or micro_table(micro), "```"]
    if instr is not None:
        out += ["", "### Instructions per malloc/free pair", "",
                f"bench/instructions.py, `{shown(instr_path)}`:", "", "```",
                sibling_text(instr_path) or instructions_table(instr), "```"]
    if plots:
        out += ["", "### Plots", ""]
        out += [f"![{title}]({link})" for _, link, title in plots]
    return "\n".join(out) + "\n"


def splice(text, section):
    """text with the part between the markers replaced by section (markers appended if
    missing)."""
    i, j = text.find(BEGIN), text.find(END)
    if i < 0 or j < i:
        print(f"report.py: no {BEGIN} ... {END} markers; appending them at the end",
              file=sys.stderr)
        return text.rstrip("\n") + f"\n\n{BEGIN}\n{section}{END}\n"
    return text[:i + len(BEGIN)] + "\n" + section + text[j:]


def main():
    """Read the run's files, copy the plots, rewrite the marked section of the results file."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--compare", default=os.path.join(REPO, "bench/results/latest.json"),
                    help="compare.py JSON (default bench/results/latest.json)")
    ap.add_argument("--micro", help="bench/micro.py JSON")
    ap.add_argument("--instructions", help="bench/instructions.py JSON")
    ap.add_argument("--plots", nargs="*", default=[], help="PNG files to copy and link")
    ap.add_argument("--out", default=os.path.join(REPO, "papers/results.md"))
    ap.add_argument("--plots-dir", help="where the plots go (default: plots/ beside --out)")
    a = ap.parse_args()
    run = load(a.compare)
    if not run or run.get("meta", {}).get("tool") != "bench/compare.py":
        sys.exit(f"report.py: {a.compare} is not bench/compare.py's JSON")
    out_dir = os.path.dirname(os.path.abspath(a.out))
    plots_dir = a.plots_dir or os.path.join(out_dir, "plots")
    titles = {"time_ratio.png": "time relative to smpalloc",
              "peak_rss_ratio.png": "peak RSS relative to smpalloc",
              "final_rss.png": "final RSS of the footprint workloads",
              "micro.png": "micro-benchmarks"}
    order = list(titles)
    a.plots.sort(key=lambda p: (order.index(plot_name(p)) if plot_name(p) in order
                                else len(order), p))
    plots = []
    if a.plots:
        os.makedirs(plots_dir, exist_ok=True)
    for png in a.plots:
        name = plot_name(png)
        shutil.copyfile(png, os.path.join(plots_dir, name))
        link = os.path.relpath(os.path.join(plots_dir, name), out_dir)
        plots.append((name, link, titles.get(name, name)))
    section = generate(run, load(a.micro), load(a.instructions), os.path.abspath(a.compare),
                       a.micro and os.path.abspath(a.micro),
                       a.instructions and os.path.abspath(a.instructions), plots)
    with open(a.out) as fh:
        text = fh.read()
    tmp = a.out + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(splice(text, section))
    os.replace(tmp, a.out)
    print(f"report.py: wrote {a.out}" + (f" and {len(plots)} plots in {plots_dir}"
                                         if plots else ""))


if __name__ == "__main__":
    main()
