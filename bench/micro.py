#!/usr/bin/env python3
"""Run the Google Benchmark micro-benchmarks (bench/micro) under several allocators and print the
median nanoseconds per item of each benchmark under each allocator, with every allocator's ratio
to smpalloc and the geometric mean of those ratios.

The one binary calls plain malloc/free; each allocator is preloaded with LD_PRELOAD (glibc, the
system malloc, is always included and preloads nothing). Inherited LD_PRELOAD and
SMPALLOC_OPTIONS are removed; an allocator's @VAR=VALUE settings are set for its runs only.
The allocator order alternates rep by rep (forwards, then backwards), so drift in the machine
does not favour one of them. ns per item is 1e9 / items_per_second, which Google Benchmark
computes from CPU time, or from real time for the benchmarks marked UseRealTime
(cross_thread_free), or from the time the benchmark measured itself (heap_destroy: the destroy
alone). The smp_ API benchmarks (heap_pair, mallocx_pair, heap_destroy, heap_destroy_rss) exist
only under an allocator that has that API (smpalloc): elsewhere their cells read "-". A run
that crashes, or a benchmark that reports an error (a wrong result: calloc not zero, realloc
losing content, misalignment), is reported and left out of the table.
Ratios are against the allocator named smpalloc, else the first --lib.

Usage:
  micro.py --bin build/bench/micro --lib smpalloc=PATH [--lib NAME=PATH[@VAR=VALUE...] ...]
           [--reps N] [--min-time S] [--filter REGEX] [--json OUT.json]
Example:
  micro.py --bin build/bench/micro --lib smpalloc=build/libsmpalloc.so \\
           --lib "smpalloc-thread=build/libsmpalloc.so@SMPALLOC_OPTIONS=frontend:thread" \\
           --lib jemalloc=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 --reps 3
"""
import argparse
import datetime
import json
import os
import platform
import signal
import statistics
import subprocess
import sys

import allocators


def run_once(args, path, settings):
    """Runs the binary once under one allocator; returns its parsed JSON report, or raises
    RuntimeError with the exit status and the end of its error output."""
    env = allocators.environment(path, settings)
    cmd = [args.bin, "--benchmark_format=json", f"--benchmark_min_time={args.min_time}"]
    if args.filter:
        cmd.append(f"--benchmark_filter={args.filter}")
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        raise RuntimeError("timed out after 600 s") from None
    if out.returncode != 0:
        how = (f"killed by {signal.Signals(-out.returncode).name}" if out.returncode < 0
               else f"exit {out.returncode}")
        raise RuntimeError(f"{how}: {out.stderr.strip()[-2000:]}")
    try:
        return json.loads(out.stdout)
    except json.JSONDecodeError as e:
        raise RuntimeError(f"unreadable JSON ({e}): {out.stderr.strip()[-2000:]}") from None


def ns_per_item(bench):
    """ns per item of one benchmark entry, or None when it has no items_per_second."""
    ips = bench.get("items_per_second")
    return 1e9 / ips if ips else None


def git_commit():
    """The commit of the checkout this script is in, or None outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=os.path.dirname(os.path.abspath(__file__)), timeout=10)
        return out.stdout.strip() if out.returncode == 0 else None
    except OSError:
        return None


def fmt_ns(v):
    """A time in ns to two decimals below 10, one below 1000, else whole; '-' for none."""
    if v is None:
        return "-"
    return f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 1000 else f"{v:.0f}"


def main():
    """Parses the command line, runs every rep under every allocator, prints the table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="the micro binary (build/bench/micro)")
    ap.add_argument("--lib", action="append", default=[],
                    help="NAME=PATH[@VAR=VALUE...]; repeatable; glibc is always included")
    ap.add_argument("--reps", type=int, default=3, help="runs per allocator (default 3)")
    ap.add_argument("--min-time", type=float, default=0.05,
                    help="Google Benchmark minimum time per benchmark, s (default 0.05)")
    ap.add_argument("--filter", help="only benchmarks matching this regex (--benchmark_filter)")
    ap.add_argument("--json", help="write medians, every run's value and metadata here")
    a = ap.parse_args()
    if a.reps < 1:
        raise SystemExit("--reps must be at least 1")

    libs = allocators.parse_libs(a.lib)
    names = [n for n, _, _ in libs]
    base = "smpalloc" if "smpalloc" in names else names[1 if len(names) > 1 else 0]

    order = []                                  # benchmark names, as the binary lists them
    runs = {}                                   # benchmark -> allocator -> [ns per item]
    errors = []                                 # (allocator, rep, benchmark or None, message)
    context = {}                                # allocator -> Google Benchmark's context
    total = a.reps * len(libs)
    done = 0
    for rep in range(a.reps):
        for name, path, settings in allocators.in_turn(libs, rep):
            done += 1
            print(f"\r  rep {rep + 1}/{a.reps}: {name:<20} ({done}/{total})", end="",
                  file=sys.stderr, flush=True)
            try:
                report = run_once(a, path, settings)
            except RuntimeError as e:
                errors.append((name, rep + 1, None, str(e)))
                print(f"\n  {name} rep {rep + 1} failed: {e}", file=sys.stderr)
                continue
            context[name] = report.get("context", {})
            for b in report.get("benchmarks", []):
                bn = b.get("run_name", b["name"])
                if b.get("run_type", "iteration") != "iteration":
                    continue                    # aggregates, if the caller asked for any
                if bn not in runs:
                    order.append(bn)
                    runs[bn] = {n: [] for n in names}
                if b.get("error_occurred"):
                    errors.append((name, rep + 1, bn, b.get("error_message", "error")))
                    continue
                v = ns_per_item(b)
                if v is not None:
                    runs[bn][name].append(v)
    print(file=sys.stderr)

    med = {bn: {n: statistics.median(runs[bn][n]) if runs[bn][n] else None for n in names}
           for bn in order}
    ratio = {bn: {n: med[bn][n] / med[bn][base] if med[bn][n] and med[bn][base] else None
                  for n in names} for bn in order}
    geo = {}
    for n in names:
        rs = [ratio[bn][n] for bn in order if ratio[bn][n]]
        geo[n] = (statistics.geometric_mean(rs), len(rs)) if rs else (None, 0)

    # The table: ns per item per allocator, then each other allocator's ratio to the base.
    others = [n for n in names if n != base]
    bw = max([len("benchmark")] + [len(bn) for bn in order])
    cw = {n: max(len(n), 8) for n in names}
    print(f"# {a.reps} run(s) each, allocators alternating, min time {a.min_time} s; median ns "
          f"per item (CPU time; real time for cross_thread_free; the destroy alone for "
          f"heap_destroy); ratio = allocator / {base} "
          f"(>1: slower than {base})")
    left = f"{'':<{bw}}  " + " ".join(f"{'':>{cw[n]}}" for n in names)
    print(f"{left}  | ratio to {base}")
    print(f"{'benchmark':<{bw}}  " + " ".join(f"{n:>{cw[n]}}" for n in names) + "  | " +
          " ".join(f"{n:>{cw[n]}}" for n in others))
    for bn in order:
        line = f"{bn:<{bw}}  " + " ".join(f"{fmt_ns(med[bn][n]):>{cw[n]}}" for n in names)
        line += "  | " + " ".join(
            f"{(f'{ratio[bn][n]:.2f}' if ratio[bn][n] else '-'):>{cw[n]}}" for n in others)
        print(line)
    print(f"\ngeometric mean of ratios (allocator / {base})")
    for n in names:
        g, k = geo[n]
        print(f"  {n:<20} {(f'{g:6.2f}' if g else '     -')}   ({k} benchmarks)")
    if errors:
        print("\nerrors (left out of the table)")
        for name, rep, bn, msg in errors:
            print(f"  {name} rep {rep}: {bn + ': ' if bn else ''}{msg.splitlines()[-1] if msg else ''}")

    if a.json:
        doc = {
            "metadata": {
                "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "commit": git_commit(),
                "kernel": platform.release(),
                "machine": platform.machine(),
                "bin": os.path.abspath(a.bin),
                "reps": a.reps,
                "min_time_s": a.min_time,
                "filter": a.filter,
                "allocators": {n: {"preload": p, "env": s} for n, p, s in libs},
                "base": base,
                "unit": "ns per item (median over reps)",
                "context": context,
            },
            "medians": med,
            "ratios": ratio,
            "runs": runs,
            "geomean_ratio": {n: {"value": g, "benchmarks": k} for n, (g, k) in geo.items()},
            "errors": [{"allocator": n, "rep": r, "benchmark": b, "message": m}
                       for n, r, b, m in errors],
        }
        with open(a.json, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
