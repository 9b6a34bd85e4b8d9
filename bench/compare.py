#!/usr/bin/env python3
"""Run workloads under several allocators, alternating allocators run by run, and print the
median time and peak RSS of each with every peer's ratio to smpalloc.

A workload prints one line containing 'time=<seconds> s' and 'peak_rss=<KiB> KiB' and exits 0;
anything else counts as a failed run and is reported.
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
    if out.returncode != 0 or not t or not r:
        raise RuntimeError(f"{' '.join(cmd)} under {lib or 'glibc'} failed "
                           f"(exit {out.returncode}): {out.stdout}{out.stderr}")
    return float(t.group(1)), int(r.group(1))


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
    geo = {n: [[], []] for n in names}
    for cmd in cmds:
        res = {n: ([], []) for n in names}
        for rep in range(a.reps):
            order = libs if rep % 2 == 0 else list(reversed(libs))
            for name, path in order:
                t, r = run_once(cmd, path)
                res[name][0].append(t)
                res[name][1].append(r)
            print(f"\r  {' '.join(os.path.basename(c) for c in cmd[:1])} {' '.join(cmd[1:])}: "
                  f"run {rep + 1}/{a.reps}", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        base = names[1] if len(names) > 1 else names[0]
        base_t = statistics.median(res[base][0])
        base_r = statistics.median(res[base][1])
        print(f"\n{' '.join([os.path.basename(cmd[0])] + cmd[1:])}")
        print(f"  {'allocator':<16} {'time s':>9} {'ratio':>7} {'peak RSS KiB':>13} {'ratio':>7}")
        for n in names:
            t = statistics.median(res[n][0])
            r = statistics.median(res[n][1])
            geo[n][0].append(t / base_t)
            geo[n][1].append(r / base_r)
            print(f"  {n:<16} {t:>9.3f} {t / base_t:>7.2f} {r:>13d} {r / base_r:>7.2f}")
    print(f"\ngeometric mean of ratios (allocator / {names[1] if len(names) > 1 else names[0]})")
    for n in names:
        gt = statistics.geometric_mean(geo[n][0])
        gr = statistics.geometric_mean(geo[n][1])
        print(f"  {n:<16} time {gt:6.2f}   rss {gr:6.2f}")


if __name__ == "__main__":
    main()
