#!/usr/bin/env python3
"""Run workloads under several allocators, alternating allocators run by run, and print the
median time and peak RSS of each with every peer's ratio to smpalloc, and the median final RSS
where the workload reports one.

A workload prints one line containing 'time=<seconds> s' and 'peak_rss=<KiB> KiB' and exits 0;
anything else counts as a failed run and is reported. A footprint workload also prints
'rss_final=<KiB> KiB': its RSS at the end (after freeing, or after an idle time), which shows
memory an allocator keeps rather than returns; it gets a column of its own.
Usage: compare.py --lib smpalloc=PATH [--lib NAME=PATH ...] --reps N -- CMD ... [--- CMD ...]
"""
import argparse
import os
import re
import statistics
import subprocess
import sys


def run_once(cmd, lib):
    """lib is "" (the system malloc) or PATH, optionally followed by @VAR=VALUE settings."""
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    env.pop("SMPALLOC_OPTIONS", None)
    path, *settings = lib.split("@") if lib else ("",)
    if path:
        env["LD_PRELOAD"] = path
    for kv in settings:
        k, v = kv.split("=", 1)
        env[k] = v
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    t = re.search(r"time=([0-9.]+) s", out.stdout)
    r = re.search(r"peak_rss=([0-9]+) KiB", out.stdout)
    f = re.search(r"rss_final=([0-9]+) KiB", out.stdout)
    if out.returncode != 0 or not t or not r:
        raise RuntimeError(f"{' '.join(cmd)} under {lib or 'glibc'} failed "
                           f"(exit {out.returncode}): {out.stdout}{out.stderr}")
    return float(t.group(1)), int(r.group(1)), int(f.group(1)) if f else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", action="append", default=[],
                    help="NAME=PATH[@VAR=VALUE...] (glibc needs none); the first is the base")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("rest", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    rest = a.rest[1:] if a.rest and a.rest[0] == "--" else a.rest
    cmds, cur = [], []
    for tok in rest:
        if tok == "---":
            cmds.append(cur)
            cur = []
        else:
            cur.append(tok)
    if cur:
        cmds.append(cur)
    libs = [("glibc", "")] + [tuple(x.split("=", 1)) for x in a.lib]
    names = [n for n, _ in libs]
    print(f"# {a.reps} runs each, allocators alternating; medians; ratio = allocator / "
          f"{names[1] if len(names) > 1 else names[0]} (time: >1 means slower than it; "
          f"rss: >1 means more memory)")
    geo = {n: [[], [], []] for n in names}  # time, peak RSS, final RSS ratios
    for cmd in cmds:
        res = {n: ([], [], []) for n in names}
        for rep in range(a.reps):
            order = libs if rep % 2 == 0 else list(reversed(libs))
            for name, path in order:
                for col, value in zip(res[name], run_once(cmd, path)):
                    if value is not None:
                        col.append(value)
            print(f"\r  {' '.join(os.path.basename(c) for c in cmd[:1])} {' '.join(cmd[1:])}: "
                  f"run {rep + 1}/{a.reps}", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        base = names[1] if len(names) > 1 else names[0]
        # The final RSS column only where every run of this workload reported one.
        final = all(len(res[n][2]) == a.reps for n in names)
        cols = 3 if final else 2
        med = {n: [statistics.median(res[n][c]) for c in range(cols)] for n in names}
        print(f"\n{' '.join([os.path.basename(cmd[0])] + cmd[1:])}")
        head = f"  {'allocator':<16} {'time s':>9} {'ratio':>7} {'peak RSS KiB':>13} {'ratio':>7}"
        print(head + (f" {'final RSS KiB':>14} {'ratio':>7}" if final else ""))
        for n in names:
            ratios = [med[n][c] / med[base][c] if med[base][c] else float("nan")
                      for c in range(cols)]
            for c in range(cols):
                geo[n][c].append(ratios[c])
            line = (f"  {n:<16} {med[n][0]:>9.3f} {ratios[0]:>7.2f} "
                    f"{round(med[n][1]):>13d} {ratios[1]:>7.2f}")
            if final:
                line += f" {round(med[n][2]):>14d} {ratios[2]:>7.2f}"
            print(line)
    print(f"\ngeometric mean of ratios (allocator / {names[1] if len(names) > 1 else names[0]})")
    for n in names:
        gt = statistics.geometric_mean(geo[n][0])
        gr = statistics.geometric_mean(geo[n][1])
        line = f"  {n:<16} time {gt:6.2f}   rss {gr:6.2f}"
        if geo[n][2]:
            gf = statistics.geometric_mean(geo[n][2])
            line += f"   final rss {gf:6.2f} ({len(geo[n][2])} workloads)"
        print(line)


if __name__ == "__main__":
    main()
