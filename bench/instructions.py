#!/usr/bin/env python3
"""Instructions per malloc/free pair for each allocator, counted by valgrind's callgrind.

Method. bench/workloads/pair_ir (built with the workloads) runs one malloc/free pair at a time on
one thread, at one size or at pair.c's 16..256 mix. Each allocator is preloaded (glibc: none) and
the program runs under callgrind with N0 < N1 < N2 pairs (200000, 700000, 1200000; --quick: 20000
and 120000, no N1). The figure is (Ir(N2) - Ir(N0)) / (N2 - N0) over the whole process, so
start-up, the allocator's warm-up and exit cancel out. The halves N0..N1 and N1..N2 are compared
too: an allocator that does periodic work (sampling, decay ticks, cache scavenging) gives two
different slopes; such a figure is marked '~' and both slopes are listed in a note. Callgrind
counts guest instructions, so the figures repeat from run to run (to 1e-4 or better); runs go
--jobs at a time.
Two variants, each a table: mode 0 is pair.c's loop, where the only block in use is freed at each
pair, so every free empties its page; mode 2 is the same loop while one block of each size it
uses is held, so no free does. Allocators that act when a page empties (mimalloc retires it) pay
for that on every pair of mode 0 and not in mode 2; programs show both patterns.

Every figure includes the loop's own instructions (14 to 17, the same for every allocator; the
'loop' column, counted by pair_ir's mode 1, where two stubs take the allocator's place) and the
PLT jumps to malloc and free, which callgrind charges to the caller. The split into malloc and
free is the inclusive cost of the loop's calls, per call; it is shown where the loop calls exactly
two functions once per pair, one named like free/delete and one like malloc/alloc/new, and no
library but the preloaded one defines them. 'rest' is pair - malloc - free: the loop, the PLT
jumps and anything else that grows with N (the same for every allocator unless something does).

Caveats. Instructions are not time: they ignore cache misses, branch mispredictions, atomics'
latency and everything another thread does. Valgrind has no rseq, so smpalloc runs its per-thread
front end here, not the per-CPU one it uses on a kernel with rseq (the output quotes the front end
smpalloc reports). Valgrind serialises threads, so only the single-thread loop is measured.
Usage: instructions.py --bin-dir BUILD/bench --lib smpalloc=PATH [--lib NAME=PATH[@VAR=VALUE...]
       ...] [--quick] [--jobs 2] [--json OUT.json]   (glibc is always included; the first --lib is
       the base for ratios, as in compare.py)
"""
import argparse
import concurrent.futures
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time

import allocators

SIZES = [16, 64, 256, 1024, 4096, 0]  # 0: pair.c's 16..256 mix
LOOP = "pair_loop"  # pair_ir's loop that calls malloc and free
LOOP_STUB = "pair_loop_stub"  # the same loop calling the stubs (mode 1)
MODES = {0: "one block live at a time, so each free leaves its page empty",
         2: "a block of each size held through the loop, so no free leaves a page empty"}
PERIODIC_TOLERANCE = 0.01  # halves' slopes further apart than this fraction: periodic work


def size_name(size):
    """How a size is printed: bytes, or 'mix' for the 16..256 mix."""
    return "mix" if size == 0 else str(size)


def parse_callgrind(path):
    """Reads a callgrind output file: returns (total Ir, {function: record}) where a record holds
    'self' Ir and 'calls' {(callee, callee object): [calls, inclusive Ir]}. Functions with the
    same name are merged (pair_ir's loop functions are unique)."""
    names = {}  # compressed fn/cfn ids share one table; ob/cob share another
    objects = {}
    funcs = {}
    npos, total = 1, None
    cur_ob = cur_fn = None
    callee = callee_ob = None
    pending_calls = None  # the count of a calls= line, until its cost line

    def lookup(table, value):
        m = re.match(r"\((\d+)\)(?: (.*))?$", value)
        if not m:
            return value
        if m.group(2) is not None:
            table[m.group(1)] = m.group(2)
        return table.get(m.group(1), "?")

    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            key, eq, value = line.partition("=")
            if eq and re.fullmatch(r"[a-z]+", key):
                if key == "ob":
                    cur_ob = lookup(objects, value)
                elif key == "fn":
                    cur_fn = funcs.setdefault(lookup(names, value), {"self": 0, "calls": {}})
                    callee_ob = None
                elif key == "cob":
                    callee_ob = lookup(objects, value)
                elif key == "cfn":
                    callee = lookup(names, value)
                elif key == "calls":
                    pending_calls = int(value.split()[0])
                continue
            if line.startswith("positions:"):
                npos = len(line.split()) - 1
                continue
            if line.startswith("totals:") or line.startswith("summary:"):
                total = int(line.split()[1])
                continue
            if not (line[0].isdigit() or line[0] in "+-*"):
                continue  # other header lines
            fields = line.split()
            ir = int(fields[npos]) if len(fields) > npos else 0
            if cur_fn is None:
                continue
            if pending_calls is not None:  # the line after calls= is the call's inclusive cost
                rec = cur_fn["calls"].setdefault((callee, callee_ob or cur_ob), [0, 0])
                rec[0] += pending_calls
                rec[1] += ir
                pending_calls = callee_ob = None
            else:
                cur_fn["self"] += ir
    if total is None:
        raise RuntimeError(f"{path}: no totals line")
    return total, funcs


def callgrind(binary, args, env, tmpdir):
    """Runs binary under callgrind; returns its total Ir and functions (parse_callgrind). Fails
    unless the workload exits 0 with its 'time=... s' line and the preload took."""
    fd, out = tempfile.mkstemp(prefix="cg.", dir=tmpdir)
    os.close(fd)
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", binary, *map(str, args)]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if (run.returncode != 0 or not re.search(r"time=[0-9.]+ s", run.stdout)
            or "cannot be preloaded" in run.stderr):
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {run.returncode}):\n"
                           f"{run.stdout}{run.stderr[-2000:]}")
    total, funcs = parse_callgrind(out)
    os.unlink(out)
    return {"total": total, "funcs": funcs}


def classify(name):
    """'free' or 'malloc' for a callee of the loop, by name; None if the name says neither."""
    n = name.lower()
    if "free" in n or "delete" in n or "dealloc" in n:
        return "free"
    if "alloc" in n or "new" in n:
        return "malloc"
    return None


def split(runs, n_lo, n_hi, lib_path):
    """Per-call malloc and free from the loop's callees between two runs, or (None, reason)."""
    lo = runs[n_lo]["funcs"].get(LOOP, {}).get("calls", {})
    hi = runs[n_hi]["funcs"].get(LOOP, {}).get("calls", {})
    per_pair = {}
    for (callee, ob), (calls_hi, incl_hi) in hi.items():
        calls_lo, incl_lo = lo.get((callee, ob), (0, 0))
        if calls_hi - calls_lo != n_hi - n_lo:
            continue  # the lazy-binding resolver, called once
        kind = classify(callee)
        if kind is None or kind in per_pair:
            return None, f"cannot tell malloc from free among the loop's callees ({callee})"
        # '???': code valgrind maps to no object (tcmalloc keeps malloc and free in a section
        # of their own); any named object must be the preloaded library.
        if lib_path and ob != "???" and os.path.realpath(ob) != os.path.realpath(lib_path):
            return None, f"{callee} comes from {ob}, not the preloaded {lib_path}"
        per_pair[kind] = {"ir": (incl_hi - incl_lo) / (n_hi - n_lo), "symbol": callee,
                          "object": ob}
    if set(per_pair) != {"malloc", "free"}:
        return None, f"the loop's per-pair callees are {sorted(per_pair)}, not malloc and free"
    return per_pair, None


def measure(jobs, binary, libs, ns, tmpdir):
    """Runs every (allocator, mode, size, N) for the modes in MODES, and the loop alone (mode 1,
    under glibc) for every (size, N), --jobs at a time; returns {(name, mode, size, n): run} with
    name None for mode 1."""
    tasks = {}
    for name, path, settings in libs:
        for mode in MODES:
            for size in SIZES:
                for n in ns:
                    tasks[(name, mode, size, n)] = (allocators.environment(path, settings),
                                                    [1, n, size, mode])
    for size in SIZES:
        for n in ns:
            tasks[(None, 1, size, n)] = (allocators.environment("", {}), [1, n, size, 1])
    results, done = {}, 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(callgrind, binary, args, env, tmpdir): key
                   for key, (env, args) in tasks.items()}
        for fut in concurrent.futures.as_completed(futures):
            try:
                results[futures[fut]] = fut.result()
            except Exception:
                for other in futures:  # fail now, not after every other run
                    other.cancel()
                raise
            done += 1
            print(f"\r  callgrind runs: {done}/{len(tasks)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return results


def tabulate(runs, libs, ns, mode, notes):
    """{size: {'loop': Ir, 'allocators': {name: cell}}} for one mode, a cell holding the pair's
    Ir, the two halves' slopes, whether they differ, and malloc, free and rest where the split
    worked; appends what deserves a note to notes."""
    n0, n2 = ns[0], ns[-1]

    def slope(name, m, size, lo, hi, field=lambda r: r["total"]):
        """Ir per pair between the runs of lo and hi pairs."""
        return (field(runs[(name, m, size, hi)]) - field(runs[(name, m, size, lo)])) / (hi - lo)

    table = {}
    for size in SIZES:
        row = {"loop": slope(None, 1, size, n0, n2, lambda r: r["funcs"][LOOP_STUB]["self"]),
               "allocators": {}}
        for name, path, _ in libs:
            pair = slope(name, mode, size, n0, n2)
            halves = (slope(name, mode, size, n0, ns[1]), slope(name, mode, size, ns[1], n2)) \
                if len(ns) == 3 else None
            periodic = halves is not None and abs(halves[0] - halves[1]) > PERIODIC_TOLERANCE * pair
            parts, why = split({n: runs[(name, mode, size, n)] for n in ns}, n0, n2, path)
            cell = {"pair": pair, "halves": halves, "periodic": periodic,
                    "malloc": parts["malloc"]["ir"] if parts else None,
                    "free": parts["free"]["ir"] if parts else None,
                    "rest": pair - parts["malloc"]["ir"] - parts["free"]["ir"] if parts else None,
                    "symbols": {k: f"{v['symbol']} in {v['object']}" for k, v in parts.items()}
                    if parts else None}
            where = f"mode {mode}, {name} at {size_name(size)}"
            if not parts:
                notes.append(f"{where}: no malloc/free split: {why}")
            if periodic:
                notes.append(f"{where}: periodic work: {halves[0]:.2f} per pair over "
                             f"{n0}..{ns[1]} pairs, {halves[1]:.2f} over {ns[1]}..{n2}")
            row["allocators"][name] = cell
        table[size_name(size)] = row
    return table


def print_pairs(table, names, base):
    """The headline table: per size, the loop alone and each allocator's Ir per pair with its
    ratio to base; '*' marks the fewest, '~' a figure with periodic work."""
    width = max(14, max(len(n) for n in names) + 2)
    print(f"{'size':>6} {'loop':>6} " + " ".join(f"{n:>{width}}" for n in names))
    for key, row in table.items():
        cells = row["allocators"]
        fewest = min(c["pair"] for c in cells.values())
        out = []
        for n in names:
            c = cells[n]
            mark = ("*" if c["pair"] <= fewest + 0.05 else " ") + ("~" if c["periodic"] else " ")
            out.append(f"{c['pair']:{width - 8}.1f}{mark} {c['pair'] / cells[base]['pair']:5.2f}")
        print(f"{key:>6} {row['loop']:6.1f} " + " ".join(out))


def smpalloc_frontend(binary, path, settings):
    """The front end smpalloc reports under valgrind (its 'frontend:' statistics line)."""
    settings = dict(settings)
    opts = settings.get("SMPALLOC_OPTIONS", "")
    settings["SMPALLOC_OPTIONS"] = f"{opts},stats" if opts else "stats"
    run = subprocess.run(["valgrind", "--tool=none", binary, "1", "1000", "16", "0"],
                         env=allocators.environment(path, settings), capture_output=True,
                         text=True, timeout=120)
    m = re.search(r"^\s*frontend:\s*(.*)$", run.stderr, re.M)
    return m.group(1).strip() if m else "not reported"


def print_split(table, names):
    """The malloc/free table: per size, rest (when every allocator has the same; otherwise a
    line of each one's below) and each allocator's malloc and free; '-' where there is no split."""
    w = max([15] + [len(n) for n in names])
    print(f"{'size':>6} {'rest':>6} " + " ".join(f"{n:>{w}}" for n in names))
    print(f"{'':>6} {'':>6} " + " ".join(f"{'malloc':>{w - 8}} {'free':>7}" for n in names))
    for key, row in table.items():
        cells = [row["allocators"][n] for n in names]
        rests = [c["rest"] for c in cells if c["rest"] is not None]
        same = rests and max(rests) - min(rests) < 0.05
        print(f"{key:>6} " + (f"{rests[0]:6.1f} " if same else f"{'varies':>6} ") + " ".join(
            f"{c['malloc']:{w - 8}.1f} {c['free']:7.1f}" if c["rest"] is not None else f"{'-':>{w}}"
            for c in cells))
        if not same:
            print(f"{'':>6} {'rest':>6} " + " ".join(
                f"{c['rest']:{w}.1f}" if c["rest"] is not None else f"{'-':>{w}}" for c in cells))


def git_commit(repo):
    """The checkout's commit (read only), or None outside a git work tree."""
    try:
        return subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def rounded(x):
    """x with every float rounded to 3 decimals, for the JSON file."""
    if isinstance(x, float):
        return round(x, 3)
    if isinstance(x, dict):
        return {k: rounded(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [rounded(v) for v in x]
    return x


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin-dir", required=True, help="the build's bench directory (pair_ir)")
    ap.add_argument("--lib", action="append", default=[],
                    help="NAME=PATH[@VAR=VALUE...] (glibc needs none); the first is the base")
    ap.add_argument("--quick", action="store_true",
                    help="a tenth of the pairs and no check for periodic work")
    ap.add_argument("--jobs", type=int, default=2, help="callgrind runs at a time")
    ap.add_argument("--json", help="write the figures and metadata here")
    a = ap.parse_args()
    binary = os.path.join(a.bin_dir, "pair_ir")
    if not os.access(binary, os.X_OK):
        sys.exit(f"instructions.py: no {binary}; build the bench targets first")
    libs = allocators.parse_libs(a.lib)
    for name, path, _ in libs:
        if path and not os.path.isfile(path):
            sys.exit(f"instructions.py: {name}: no file {path}")
    names = [n for n, _, _ in libs]
    base = names[1] if len(names) > 1 else names[0]
    ns = [20000, 120000] if a.quick else [200000, 700000, 1200000]
    version = subprocess.run(["valgrind", "--version"], capture_output=True,
                             text=True).stdout.strip()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="instructions.") as tmpdir:
        try:
            runs = measure(a.jobs, binary, libs, ns, tmpdir)
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            sys.exit(f"\ninstructions.py: {e}")
    frontends = {n: smpalloc_frontend(binary, p, s) for n, p, s in libs
                 if n.startswith("smpalloc")}
    notes = []
    tables = {mode: tabulate(runs, libs, ns, mode, notes) for mode in MODES}

    print(f"# Instructions per malloc/free pair, one thread, callgrind ({version}): "
          f"(Ir({ns[-1]}) - Ir({ns[0]})) / {ns[-1] - ns[0]}, whole process")
    print("# Every figure includes the 'loop' column (the loop's own instructions, the same for "
          "every allocator) and the PLT jumps to malloc and free")
    for n, fe in frontends.items():
        print(f"# {n} runs its per-thread front end under valgrind (no rseq), not the per-CPU "
              f"one; it reports: frontend: {fe}")
    print(f"# ratio = allocator / {base}; * fewest in the row; ~ periodic work (the halves "
          f"differ by more than {PERIODIC_TOLERANCE:.0%}, see the notes)" if len(ns) == 3 else
          f"# ratio = allocator / {base}; * fewest in the row; --quick: periodic work not checked")
    for mode, what in MODES.items():
        print(f"\n## mode {mode}: {what}")
        print_pairs(tables[mode], names, base)
        print("# malloc and free per call (inclusive cost of the loop's calls); rest = pair - "
              "malloc - free: the loop and the PLT jumps")
        print_split(tables[mode], names)
    for note in notes:
        print(f"# note: {note}")
    print(f"# {len(runs)} callgrind runs, {a.jobs} at a time, {time.monotonic() - started:.0f} s",
          file=sys.stderr)

    if a.json:
        here = os.path.dirname(os.path.abspath(__file__))
        doc = {"what": "instructions per malloc/free pair (callgrind Ir), single thread",
               "method": "(Ir(N2) - Ir(N0)) / (N2 - N0), whole process (N0, N2: the first and "
                         "last of pairs); halves N0..N1, N1..N2 where there are three",
               "pairs": ns, "valgrind": version, "binary": os.path.abspath(binary),
               "commit": git_commit(here), "machine": platform.machine(),
               "kernel": platform.release(), "date": datetime.datetime.now().isoformat(),
               "allocators": {n: {"path": p, "settings": s} for n, p, s in libs},
               "base": base, "smpalloc_frontend": frontends,
               "modes": {str(m): {"what": MODES[m], "sizes": tables[m]} for m in MODES},
               "notes": notes}
        with open(a.json, "w") as f:
            json.dump(rounded(doc), f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
