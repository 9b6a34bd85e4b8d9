#!/usr/bin/env python3
"""Run commands under several allocators, alternating allocators run by run, and print the
median time and peak RSS of each with every allocator's ratio to the base (the first --lib),
and the median final RSS where the command reports one; geometric means of the ratios close.

A workload of bench/workloads prints one line containing 'time=<seconds> s' and
'peak_rss=<KiB> KiB' and exits 0. A footprint workload also prints 'rss_final=<KiB> KiB': its
RSS at the end (after freeing, or after an idle time), which shows memory an allocator keeps
rather than returns; it gets a column of its own.
Any other command (one that prints no 'time=' line, or every command with --wall) is measured
from outside: wall time from spawn to exit, and peak RSS as the ru_maxrss that os.wait4 reports
for the child. Caveat: Linux counts into ru_maxrss the memory of the process image the child
replaced at exec (a copy of this script, about 10 MB) and the peaks of the descendants it
waited for, so an outside peak RSS is the largest of the command's processes, and a value at
the floor measured at start-up (printed) only says "this much or less".
A run that exits nonzero, times out or (for a 'time=' workload) lacks 'peak_rss=' has failed:
the others still run, the tables use the runs that worked, and the script lists every failed run
at the end and exits 1.

Server mode (--server CLIENT, repeatable): the command after -- is a server that listens on
127.0.0.1 (its '{port}' words get the port: --port, else a free one per run). For each CLIENT,
each run starts the server under one allocator (--variant NAME=PROGRAM adds a row that runs
PROGRAM in its place under smpalloc's library, e.g. a build of it that calls smpalloc's API),
waits until the port accepts a connection (--ready-timeout, 10 s), runs CLIENT (split as a shell
would, '{port}' replaced, nothing preloaded, --timeout bounds it), takes the requests per second
it prints (redis-benchmark's -q lines 'SET: 12345.67 requests per second' or its --csv rows),
waits --idle seconds (1) so an allocator's decay can return memory, reads the server's VmHWM
(peak RSS) and VmRSS (final RSS) from /proc, and stops it with SIGTERM: it must exit 0 within
10 s. The server must be the process started (exec, not a shell that forks it). A run fails
when the server does not start, dies, exits non-zero or the client fails or prints no rate. The
table gives per allocator the median req/s of each test and of the geometric mean of a run's
tests, the spread of that geomean over the runs, and the median RSS, each with its ratio to
--base (default smpalloc; a req/s ratio above 1 means faster).

Progress goes to stderr: the run under way, rep i/N, runs done of the total, time left.
--csv and --json write every run's raw values and the medians, tagged with the commit, date,
machine, kernel, compiler, glibc and each allocator's library and Debian package version.

Usage: compare.py --lib smpalloc=PATH [--lib NAME=PATH[@VAR=VALUE...] ...] [--reps N]
                  [--no-glibc] [--wall] [--timeout S] [--csv FILE] [--json FILE]
                  [--meta KEY=VALUE ...] -- CMD ... [--- CMD ...]
       compare.py --lib smpalloc=PATH [--lib ...] [--reps N] [--no-glibc] [--timeout S]
                  [--csv FILE] [--json FILE] [--meta ...] --server CLIENT [--server CLIENT ...]
                  [--port N] [--idle S] [--ready-timeout S] [--variant NAME=PROGRAM ...]
                  [--base NAME] -- SERVER ARGS...
"""
import argparse
import csv
import datetime
import json
import math
import os
import platform
import re
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import allocators

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIELDS = ("time_s", "peak_rss_kib", "rss_final_kib")


def command_output(cmd, cwd=None):
    """First line of a command's stdout, or None when it cannot run or fails."""
    try:
        out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0 or not out.stdout.strip():
        return None
    return out.stdout.strip().splitlines()[0]


def debian_package(path):
    """(package, version) of the Debian package that installed PATH, or (None, None)."""
    for p in dict.fromkeys([path, os.path.realpath(path)]):
        owner = command_output(["dpkg-query", "-S", p])
        if owner and ":" in owner:
            # "libjemalloc2:amd64: /usr/lib/..." -> "libjemalloc2:amd64"
            pkg = owner.rsplit(": ", 1)[0].split(",")[0].strip()
            return pkg, command_output(["dpkg-query", "-W", "-f=${Version}", pkg])
    return None, None


def checkout_of(path):
    """(commit, dirty) of the git checkout a library file lies in, read now; (None, None) when
    it lies in none. dirty: tracked files differ from the commit."""
    where = os.path.dirname(os.path.abspath(path))
    commit = command_output(["git", "rev-parse", "--short", "HEAD"], cwd=where)
    if commit is None:
        return None, None
    try:
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                                capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return commit, None
    return commit, bool(status.returncode == 0 and status.stdout.strip())


def machine_info(libs, extra):
    """Metadata of this run: commit, date, machine, toolchain and the allocators' origins."""
    # Installed (share/smpalloc/bench, by smpalloc-tools) there is no checkout, maybe no git.
    commit, dirty = checkout_of(__file__)
    cpu = None
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")),
                       None)
    except OSError:
        pass
    mem = None
    try:
        with open("/proc/meminfo") as f:
            mem = next((int(ln.split()[1]) for ln in f if ln.startswith("MemTotal")), None)
    except OSError:
        pass
    osname = None
    try:
        with open("/etc/os-release") as f:
            osname = next((ln.split("=", 1)[1].strip().strip('"') for ln in f
                           if ln.startswith("PRETTY_NAME=")), None)
    except OSError:
        pass
    glibc = os.confstr("CS_GNU_LIBC_VERSION") if "CS_GNU_LIBC_VERSION" in os.confstr_names else None
    origins = []
    for name, path, settings in libs:
        pkg, ver = debian_package(path) if path else (
            "libc6", command_output(["dpkg-query", "-W", "-f=${Version}", "libc6"]))
        origin = {"name": name, "path": path or None, "settings": settings,
                  "package": pkg, "package_version": ver}
        if path and not pkg:  # a build: the commit of the checkout it lies in, as the run starts
            origin["git_commit"], origin["git_dirty"] = checkout_of(path)
        origins.append(origin)
    return {
        "tool": "bench/compare.py",
        "commit": commit or "unknown",
        "dirty": bool(dirty),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": cpu or platform.processor() or None,
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "memory_kib": mem,
        "os": osname,
        "kernel": platform.release(),
        "compiler": command_output(["gcc", "--version"]),
        "glibc": glibc,
        "python": platform.python_version(),
        # Paths inside the repository relative to it, so the command reads as run from there.
        "argv": [arg.replace(REPO + "/", "") for arg in sys.argv],
        "cwd": os.getcwd(),
        "allocators": origins,
        **extra,
    }


def spawn_measured(cmd, env, timeout):
    """Run cmd; returns (exit status, stdout, stderr, wall seconds, ru_maxrss KiB, timed out).
    The child gets a session of its own so a timeout kills its whole process tree."""
    with tempfile.TemporaryFile() as fout, tempfile.TemporaryFile() as ferr:
        t0 = time.monotonic()
        try:
            proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=fout,
                                    stderr=ferr, start_new_session=True)
        except OSError as e:
            return 127, "", str(e), 0.0, 0, False
        fired = []

        def kill():
            """Timer callback: end the child's process group."""
            fired.append(True)
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        timer = threading.Timer(timeout, kill) if timeout else None
        if timer:
            timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except KeyboardInterrupt:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        finally:
            if timer:
                timer.cancel()
        wall = time.monotonic() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        fout.seek(0)
        ferr.seek(0)
        return (proc.returncode, fout.read().decode(errors="replace"),
                ferr.read().decode(errors="replace"), wall, usage.ru_maxrss, bool(fired))


def run_once(cmd, path, settings, timeout, wall_only):
    """One run of cmd under the allocator of path ("" is the system malloc) and settings.
    Returns a dict: ok, the FIELDS (None where not reported), how it was measured, and for a
    failed run the exit status and the error text."""
    env = allocators.environment(path, settings)
    code, out, err, wall, maxrss, timed_out = spawn_measured(cmd, env, timeout)
    t = None if wall_only else re.search(r"time=([0-9.]+) s", out)
    r = re.search(r"peak_rss=([0-9]+) KiB", out)
    f = re.search(r"rss_final=([0-9]+) KiB", out)
    run = {"exit": code, "measured": "workload" if t else "outside"}
    if t:
        run.update(time_s=float(t.group(1)), peak_rss_kib=int(r.group(1)) if r else None,
                   rss_final_kib=int(f.group(1)) if f else None)
    else:
        run.update(time_s=wall, peak_rss_kib=maxrss, rss_final_kib=None)
    problem = ("timed out after %g s" % timeout if timed_out else
               f"exit {code}" if code != 0 else
               "no peak_rss= line" if run["peak_rss_kib"] is None else None)
    run["ok"] = problem is None
    if problem:
        tail = (out + err).strip().splitlines()[-8:]
        run["error"] = problem + ("\n      " + "\n      ".join(tail) if tail else "")
    return run


def rss_floor(timeout):
    """ru_maxrss of /bin/true spawned from here: what every outside RSS reading includes."""
    return spawn_measured(["true"], dict(os.environ), timeout)[4]


class Progress:
    """The progress line on stderr: overwritten in place on a terminal, one line per rep
    otherwise (so a log file gets a readable trail)."""

    def __init__(self, total):
        """total: the number of runs planned."""
        self.total, self.done, self.t0 = total, 0, time.monotonic()
        self.tty = sys.stderr.isatty()
        self.width = 0

    def left(self):
        """Estimated time left from the mean duration of the runs done so far."""
        if not self.done:
            return "?"
        s = round((time.monotonic() - self.t0) / self.done * (self.total - self.done))
        return f"{s // 60}:{s % 60:02d}"

    def show(self, what, name, rep, reps, first_of_rep):
        """Report that run rep/reps of workload `what` under allocator `name` starts."""
        msg = (f"[{self.done}/{self.total} runs, ~{self.left()} left] {what}: {name} "
               f"rep {rep}/{reps}")
        if self.tty:
            pad = max(0, self.width - len(msg))
            self.width = len(msg)
            print("\r" + msg + " " * pad, end="", file=sys.stderr, flush=True)
        elif first_of_rep:
            print(msg.replace(f": {name} rep", ": rep"), file=sys.stderr, flush=True)

    def rotate(self, what, rows, reps, once, failures):
        """Run workload `what` reps times under every row (allocators alternating, a new order
        each rep: allocators.in_turn), once(row) giving each run's record; returns the records,
        each with its allocator and rep, and appends (what, allocator, rep, error) to failures
        for the runs that failed."""
        runs = []
        for rep in range(reps):
            for i, row in enumerate(allocators.in_turn(rows, rep)):
                self.show(what, row[0], rep + 1, reps, i == 0)
                run = once(row)
                self.done += 1
                run.update(allocator=row[0], rep=rep + 1)
                runs.append(run)
                if not run["ok"]:
                    failures.append((what, row[0], rep + 1, run["error"]))
        if self.tty:
            print("\r" + " " * self.width + "\r", end="", file=sys.stderr, flush=True)
            self.width = 0
        return runs

    def finish(self):
        """Clear the line and say how long the whole run took."""
        s = round(time.monotonic() - self.t0)
        if self.tty:
            print("\r" + " " * self.width + "\r", end="", file=sys.stderr)
        print(f"compare.py: {self.done} runs in {s // 60}:{s % 60:02d}", file=sys.stderr)


def json_clean(obj):
    """obj with NaN and infinities replaced by None, so the JSON file is strict JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_clean(v) for v in obj]
    return obj


def geomean(values):
    """Geometric mean of the finite positive values, or None when there are none."""
    vals = [v for v in values if v is not None and math.isfinite(v) and v > 0]
    return statistics.geometric_mean(vals) if vals else None


def parse_commands(rest):
    """Split the words after '--' into commands at each '---'."""
    rest = rest[1:] if rest and rest[0] == "--" else rest
    cmds, cur = [], []
    for tok in rest:
        if tok == "---":
            if cur:
                cmds.append(cur)
            cur = []
        else:
            cur.append(tok)
    if cur:
        cmds.append(cur)
    return cmds


def write_csv(path, meta, workloads):
    """One row per run and one per median, each carrying the run's metadata columns."""
    libs = {a["name"]: a for a in meta["allocators"]}
    cols = ["commit", "dirty", "date", "cpu_model", "cpus", "kernel", "compiler", "glibc",
            "workload", "allocator", "lib_path", "lib_settings", "lib_package", "lib_version",
            "kind", "rep", "ok", "measured", "exit", *FIELDS,
            "time_ratio", "peak_rss_ratio", "rss_final_ratio"]
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, cols)
        w.writeheader()
        for wl in workloads:
            for name in wl["median"]:
                a = libs[name]
                common = {k: meta[k] for k in cols[:8]}
                common.update(workload=wl["name"], allocator=name, lib_path=a["path"] or "",
                              lib_settings=" ".join(f"{k}={v}" for k, v in a["settings"].items()),
                              lib_package=a["package"] or "", lib_version=a["package_version"] or "")
                for run in wl["runs"]:
                    if run["allocator"] == name:
                        w.writerow({**common, "kind": "run", "rep": run["rep"], "ok": run["ok"],
                                    "measured": run["measured"], "exit": run["exit"],
                                    **{k: run.get(k) for k in FIELDS}})
                med, ratio = wl["median"][name], wl["ratio"][name]
                w.writerow({**common, "kind": "median", "ok": med["runs"] > 0,
                            **{k: med.get(k) for k in FIELDS},
                            "time_ratio": ratio.get("time_s"),
                            "peak_rss_ratio": ratio.get("peak_rss_kib"),
                            "rss_final_ratio": ratio.get("rss_final_kib")})


# ---- server mode (--server) ----------------------------------------------------------------
# Each run starts the server under one allocator, waits until it accepts connections on its
# port, runs the client, reads the rates the client printed, waits --idle seconds, reads the
# server's VmHWM (peak RSS) and VmRSS (final RSS), then stops it with SIGTERM: it must exit 0.

SERVER_FIELDS = ("peak_rss_kib", "rss_final_kib")
RATE_LINE = re.compile(r"^\s*(\S.*?): ([0-9]+(?:\.[0-9]+)?) requests per second")
RATE_CSV = re.compile(r'^"([^"]+)","([0-9]+(?:\.[0-9]+)?)"')


def parse_rates(text):
    """{test: requests per second} from a client's output: redis-benchmark's -q lines
    ('SET: 12345.67 requests per second, ...', progress overwritten with \\r) or its --csv rows
    ('"SET","12345.67",...', after a '"test","rps",...' header). A test seen twice: the last."""
    rates = {}
    for line in re.split(r"[\r\n]+", text):
        m = RATE_LINE.match(line) or RATE_CSV.match(line.strip())
        if m:
            rates[m.group(1)] = float(m.group(2))
    return rates


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status_kib(pid, field):
    """The KiB of a /proc/PID/status line (VmHWM, VmRSS), or None when it cannot be read."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def shown(words):
    """words as a shell would take them, '{port}' left unquoted, the program by its base name."""
    return " ".join(w if re.fullmatch(r"[A-Za-z0-9_,./=:@%+{}-]+", w) else shlex.quote(w)
                    for w in [os.path.basename(words[0])] + words[1:])


def with_port(words, port):
    """words with every '{port}' replaced by port."""
    return [w.replace("{port}", str(port)) for w in words]


def tail_of(*texts, lines=8):
    """The last lines of the texts joined, indented for the failure list."""
    tail = "\n".join(t.strip() for t in texts if t and t.strip()).splitlines()[-lines:]
    return ("\n      " + "\n      ".join(tail)) if tail else ""


def client_run(client, server, timeout):
    """Run client (nothing preloaded) while server (a Popen) serves; it is killed when the
    server exits or after timeout seconds (0: none). Returns (exit status, stdout, stderr,
    wall seconds, timed out)."""
    with tempfile.TemporaryFile() as fout, tempfile.TemporaryFile() as ferr:
        t0 = time.monotonic()
        try:
            proc = subprocess.Popen(client, env=allocators.environment("", {}),
                                    stdin=subprocess.DEVNULL, stdout=fout, stderr=ferr,
                                    start_new_session=True)
        except OSError as e:
            return 127, "", str(e), 0.0, False
        timed_out = False
        try:
            while proc.poll() is None:
                timed_out = bool(timeout) and time.monotonic() - t0 > timeout
                if timed_out or server.poll() is not None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    break
                time.sleep(0.1)
        except KeyboardInterrupt:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        wall = time.monotonic() - t0
        fout.seek(0)
        ferr.seek(0)
        return (proc.returncode, fout.read().decode(errors="replace"),
                ferr.read().decode(errors="replace"), wall, timed_out)


def server_once(server, client, path, settings, a):
    """One run: server (words) under the allocator of path and settings, driven by client
    (words); both with '{port}' replaced. Returns a dict: ok, rates {test: req/s}, the
    SERVER_FIELDS, client_s (the client's wall time), server_exit, and error when it failed."""
    port = a.port or free_port()
    server, client = with_port(server, port), with_port(client, port)
    run = {"port": port, "rates": {}, "peak_rss_kib": None, "rss_final_kib": None,
           "client_s": None, "server_exit": None, "ok": False}
    with tempfile.TemporaryFile() as slog:
        def log():
            """What the server printed so far."""
            slog.seek(0)
            return slog.read().decode(errors="replace")
        try:
            proc = subprocess.Popen(server, env=allocators.environment(path, settings),
                                    stdin=subprocess.DEVNULL, stdout=slog, stderr=slog,
                                    start_new_session=True)
        except OSError as e:
            run["error"] = f"cannot start the server: {e}"
            return run

        def stop(problem):
            """SIGTERM, then wait up to 10 s for the exit (SIGKILL after); returns the failure,
            if any: problem, else a non-zero exit or no exit."""
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                run["server_exit"] = proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return problem or "the server did not exit within 10 s of SIGTERM"
            if problem:
                return problem
            return (f"the server exited with {run['server_exit']} after SIGTERM"
                    if run["server_exit"] != 0 else None)

        # Ready: the port accepts a connection (while the server is still running).
        deadline, problem = time.monotonic() + a.ready_timeout, None
        while True:
            if proc.poll() is not None:
                problem = f"the server exited with {proc.returncode} before accepting connections"
                break
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                pass
            if time.monotonic() > deadline:
                problem = f"the server accepted no connection on port {port} in {a.ready_timeout:g} s"
                break
            time.sleep(0.05)
        if problem:
            run["error"] = (stop(problem) or problem) + tail_of(log())
            return run
        code, out, err, wall, timed_out = client_run(client, proc, a.timeout)
        run["client_s"] = wall
        run["rates"] = parse_rates(out + "\n" + err)
        if proc.poll() is not None:
            problem = f"the server exited with {proc.returncode} during the client's run"
        elif timed_out:
            problem = f"the client timed out after {a.timeout:g} s"
        elif code != 0:
            problem = f"the client exited with {code}"
        elif not run["rates"]:
            problem = "no 'requests per second' in the client's output"
        if not problem:
            time.sleep(a.idle)
            run["peak_rss_kib"] = proc_status_kib(proc.pid, "VmHWM")
            run["rss_final_kib"] = proc_status_kib(proc.pid, "VmRSS")
            if run["peak_rss_kib"] is None or run["rss_final_kib"] is None:
                problem = f"cannot read /proc/{proc.pid}/status (did the server exit?)"
        problem = stop(problem)
        if problem:
            run["error"] = problem + tail_of(out if code else "", err, log())
        run["ok"] = problem is None
        return run


def rate_geomean(rates, tests):
    """Geometric mean of the rates of tests (None unless every one is there)."""
    vals = [rates.get(t) for t in tests]
    return statistics.geometric_mean(vals) if all(v for v in vals) else None


def server_main(a, cmds, meta):
    """Run the server command under every allocator (and --variant) for every client of
    --server; print the tables, save --csv/--json; 1 if any run failed."""
    if len(cmds) != 1:
        raise SystemExit("compare.py --server: one server command after -- (no ---)")
    server = cmds[0]
    rows = [(n, p, s, None) for n, p, s in allocators.parse_libs(a.lib, glibc=not a.no_glibc)]
    by_name = {n: (p, s) for n, p, s, _ in rows}
    for spec in a.variant:
        name, _, program = spec.partition("=")
        if not name or not program or name in by_name or "smpalloc" not in by_name:
            raise SystemExit(f"--variant {spec}: expected NAME=PROGRAM, a new NAME, and smpalloc")
        at = [n for n, *_ in rows].index("smpalloc") + 1
        rows.insert(at, (name, *by_name["smpalloc"], program))
        by_name[name] = by_name["smpalloc"]
    names = [n for n, *_ in rows]
    base = a.base or "smpalloc"
    if base not in names:
        raise SystemExit(f"--base {base}: not one of {names}")
    meta["allocators"] += [{"name": n, "path": p or None, "settings": s, "program": prog,
                            "package": None, "package_version": None}
                           for n, p, s, prog in rows if prog]
    printed = []

    def out(line=""):
        """Print a line of the report and keep it for the JSON's copy of the tables."""
        print(line, flush=True)
        printed.append(line)

    what_server = shown(server)
    out(f"# server: {what_server}; {a.reps} runs each, allocators alternating; medians; "
        f"ratio = allocator / {base}")
    out(f"# req/s ratio >1: faster than {base}; RSS ratio >1: more memory. Peak RSS: the "
        f"server's VmHWM; final RSS: its VmRSS {a.idle:g} s after the client finished")
    for n, _, _, prog in rows:
        if prog:
            out(f"# {n}: {os.path.basename(prog)} in place of {os.path.basename(server[0])}, "
                f"under smpalloc's library")
    progress = Progress(len(a.server) * a.reps * len(rows))
    workloads, failures = [], []
    geo = {n: [[], [], []] for n in names}  # rate, peak RSS, final RSS ratios
    try:
        for client_text in a.server:
            client = shlex.split(client_text)
            what = shown(client)
            def once(row):
                name, path, settings, prog = row
                cmd = ([prog] if prog else server[:1]) + server[1:]
                return server_once(cmd, client, path, settings, a)
            runs = progress.rotate(what, rows, a.reps, once, failures)
            ok = {n: [r for r in runs if r["allocator"] == n and r["ok"]] for n in names}
            tests = list(dict.fromkeys(t for r in runs if r["ok"] for t in r["rates"]))
            med = {}
            for n in names:
                m = {f: statistics.median(r[f] for r in ok[n]) if ok[n] else None
                     for f in SERVER_FIELDS}
                rates = {t: [r["rates"][t] for r in ok[n] if t in r["rates"]] for t in tests}
                m["rates"] = {t: statistics.median(v) if v else None for t, v in rates.items()}
                per_run = [g for g in (rate_geomean(r["rates"], tests) for r in ok[n]) if g]
                m["geomean"] = statistics.median(per_run) if per_run else None
                m["geomean_spread"] = ((max(per_run) - min(per_run)) / m["geomean"]
                                       if len(per_run) > 1 else None)
                m["runs"] = len(ok[n])
                med[n] = m

            def div(x, y):
                """x / y, or None when either is missing."""
                return x / y if x is not None and y else None
            ratio = {n: {"rates": {t: div(med[n]["rates"][t], med[base]["rates"][t])
                                   for t in tests},
                         "geomean": div(med[n]["geomean"], med[base]["geomean"]),
                         **{f: div(med[n][f], med[base][f]) for f in SERVER_FIELDS}}
                     for n in names}
            out()
            out(f"{what}")
            width = max([16] + [len(n) for n in names])
            heads = [(t, max(9, len(t))) for t in tests] + [("geomean", 9)]
            out(f"  {'req/s':<{width}}" + "".join(f" {h:>{w}} {'ratio':>5}" for h, w in heads)
                + f" {'spread':>6}  {'peak RSS KiB':>12} {'ratio':>5} {'final RSS KiB':>13}"
                f" {'ratio':>5}")
            for n in names:
                if not ok[n]:
                    out(f"  {n:<{width}} failed")
                    continue
                cells = ""
                for t, w in heads:
                    v = med[n]["geomean"] if t == "geomean" else med[n]["rates"].get(t)
                    r = ratio[n]["geomean"] if t == "geomean" else ratio[n]["rates"].get(t)
                    cells += (f" {v:>{w}.0f}" if v else f" {'-':>{w}}") + (
                        f" {r:>5.2f}" if r else f" {'-':>5}")
                sp = med[n]["geomean_spread"]
                cells += f" {sp * 100:>5.0f}%" if sp is not None else f" {'-':>6}"
                for f, w in (("peak_rss_kib", 12), ("rss_final_kib", 13)):
                    v, r = med[n][f], ratio[n][f]
                    cells += (" " if f == "peak_rss_kib" else "") + f" {round(v):>{w}d}" + (
                        f" {r:>5.2f}" if r else f" {'-':>5}")
                out(f"  {n:<{width}}{cells}")
                for c, f in enumerate(("geomean", *SERVER_FIELDS)):
                    if ratio[n][f] is not None:
                        geo[n][c].append(ratio[n][f])
            short = [f"{n} {len(ok[n])} of {a.reps}" for n in names if len(ok[n]) < a.reps]
            if short:
                out(f"  (runs that worked: {', '.join(short)}; see the failed runs below)")
            out("  (spread: (max - min) / median of the runs' geomean req/s)")
            workloads.append({"name": what, "client": client, "server": server, "tests": tests,
                              "runs": runs, "median": med, "ratio": ratio})
    except KeyboardInterrupt:
        print("\ncompare.py: interrupted", file=sys.stderr)
        return 130
    progress.finish()
    geomeans = {}
    if len(a.server) > 1:
        out()
        out(f"geometric mean of ratios over the clients (allocator / {base})")
    for n in names:
        gr, gp, gf = (geomean(g) for g in geo[n])
        geomeans[n] = {"rate": gr, "peak_rss": gp, "rss_final": gf, "workloads": len(geo[n][0])}
        if len(a.server) > 1:
            out(f"  {n:<16} " + (f"req/s {gr:5.2f}   peak rss {gp:5.2f}   final rss {gf:5.2f}"
                                 if gr else "no client worked")
                + (f"   [{len(geo[n][0])} of {len(a.server)} clients]"
                   if gr and len(geo[n][0]) < len(a.server) else ""))
    if failures:
        out()
        out(f"failed runs ({len(failures)}):")
        for what, name, rep, err in failures:
            out(f"  {what} under {name}, rep {rep}: {err}")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(json_clean({"meta": meta, "mode": "server", "base": base, "reps": a.reps,
                                  "server": server, "workloads": workloads,
                                  "geomean": geomeans, "failures": len(failures),
                                  "table": "\n".join(printed).strip("\n") + "\n"}), fh, indent=1)
    if a.csv:
        write_server_csv(a.csv, meta, workloads)
    return 1 if failures else 0


def write_server_csv(path, meta, workloads):
    """One row per run and test and one per median and test (test 'geomean' included), each
    with the run's metadata columns and the server's RSS."""
    cols = ["commit", "dirty", "date", "cpu_model", "cpus", "kernel", "compiler", "glibc",
            "workload", "allocator", "kind", "rep", "ok", "server_exit", "test", "rps",
            "rps_ratio", *SERVER_FIELDS, "peak_rss_ratio", "rss_final_ratio"]
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, cols)
        w.writeheader()
        common = {k: meta[k] for k in cols[:8]}
        for wl in workloads:
            for name, med in wl["median"].items():
                row = {**common, "workload": wl["name"], "allocator": name}
                for run in wl["runs"]:
                    if run["allocator"] != name:
                        continue
                    for t in wl["tests"] + ["geomean"]:
                        rps = (rate_geomean(run["rates"], wl["tests"]) if t == "geomean"
                               else run["rates"].get(t))
                        w.writerow({**row, "kind": "run", "rep": run["rep"], "ok": run["ok"],
                                    "server_exit": run["server_exit"], "test": t, "rps": rps,
                                    **{f: run[f] for f in SERVER_FIELDS}})
                ratio = wl["ratio"][name]
                for t in wl["tests"] + ["geomean"]:
                    w.writerow({**row, "kind": "median", "ok": med["runs"] > 0, "test": t,
                                "rps": med["geomean"] if t == "geomean" else med["rates"][t],
                                "rps_ratio": ratio["geomean"] if t == "geomean"
                                else ratio["rates"][t],
                                **{f: med[f] for f in SERVER_FIELDS},
                                "peak_rss_ratio": ratio["peak_rss_kib"],
                                "rss_final_ratio": ratio["rss_final_kib"]})


def main():
    """Parse the options, run every command under every allocator, print and save results."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lib", action="append", default=[],
                    help="NAME=PATH[@VAR=VALUE...] (glibc needs none); the first is the base")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--no-glibc", action="store_true", help="leave out the system malloc")
    ap.add_argument("--wall", action="store_true",
                    help="measure every command from outside, even one that prints time=")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per run; 0: none")
    ap.add_argument("--csv", help="write every run and the medians to this CSV file")
    ap.add_argument("--json", help="write runs, medians, ratios, tables and metadata as JSON")
    ap.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE",
                    help="extra metadata for --csv/--json (e.g. invocation=...)")
    ap.add_argument("--server", action="append", default=[], metavar="CLIENT",
                    help="server mode: the command after -- is a server, and CLIENT (one "
                    "string, split as a shell would, no shell run) drives it; repeatable")
    ap.add_argument("--port", type=int, default=0,
                    help="server mode: the port for {port} (default: a free one per run)")
    ap.add_argument("--idle", type=float, default=1.0,
                    help="server mode: seconds from the client's end to the final RSS")
    ap.add_argument("--ready-timeout", type=float, default=10.0,
                    help="server mode: seconds for the server to accept a connection")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=PROGRAM",
                    help="server mode: one more row NAME, PROGRAM in place of the server "
                    "command's first word, under smpalloc's library")
    ap.add_argument("--base", help="server mode: the row of the ratios (default smpalloc)")
    ap.add_argument("rest", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmds = parse_commands(a.rest)
    if not cmds or a.reps < 1:
        ap.error("need at least one command after -- and --reps >= 1")
    libs = allocators.parse_libs(a.lib, glibc=not a.no_glibc)
    if not libs:
        ap.error("no allocator to run")
    if a.server:
        extra = dict(kv.split("=", 1) for kv in a.meta)
        return server_main(a, cmds, machine_info(libs, extra))
    if a.variant or a.base or a.port:
        ap.error("--variant, --base and --port go with --server")
    names = [n for n, _, _ in libs]
    base = names[1] if len(names) > 1 and not a.no_glibc else names[0]
    extra = dict(kv.split("=", 1) for kv in a.meta)
    meta = machine_info(libs, extra)
    floor = None
    printed = []

    def out(line=""):
        """Print a line of the report and keep it for the JSON's copy of the tables."""
        print(line, flush=True)
        printed.append(line)

    out(f"# {a.reps} runs each, allocators alternating; medians; ratio = allocator / "
        f"{base} (time: >1 means slower than it; rss: >1 means more memory)")
    progress = Progress(len(cmds) * a.reps * len(libs))
    workloads, failures = [], []
    geo = {n: [[], [], []] for n in names}  # time, peak RSS, final RSS ratios
    try:
        for cmd in cmds:
            what = shlex.join([os.path.basename(cmd[0])] + cmd[1:])
            runs = progress.rotate(what, libs, a.reps,
                                   lambda row: run_once(cmd, row[1], row[2], a.timeout, a.wall),
                                   failures)
            # A command either reports its time or is timed from outside, not both by turns.
            if any(r["ok"] and r["measured"] == "workload" for r in runs):
                for r in runs:
                    if r["ok"] and r["measured"] == "outside":
                        r["ok"], r["error"] = False, "no time= line, unlike the other runs"
                        failures.append((what, r["allocator"], r["rep"], r["error"]))
            ok = {n: [r for r in runs if r["allocator"] == n and r["ok"]] for n in names}
            outside = any(r["ok"] and r["measured"] == "outside" for r in runs)
            if outside and floor is None:
                floor = rss_floor(a.timeout)
            # The final RSS column only where every run that worked reported one.
            final = all(ok[n] and all(r["rss_final_kib"] is not None for r in ok[n])
                        for n in names)
            cols = FIELDS if final else FIELDS[:2]
            med = {n: {c: statistics.median(r[c] for r in ok[n]) if ok[n] else None
                       for c in cols} for n in names}
            ratio = {n: {c: (med[n][c] / med[base][c] if med[n][c] is not None and
                             med[base][c] else (float("nan") if med[n][c] is not None else None))
                         for c in cols} for n in names}
            note = ""
            if outside:
                note = ("   [measured from outside: wall time, ru_maxrss"
                        + (f" (floor {floor} KiB)" if floor else "") + "]")
            out()
            out(what + note)
            head = f"  {'allocator':<16} {'time s':>9} {'ratio':>7} {'peak RSS KiB':>13} {'ratio':>7}"
            out(head + (f" {'final RSS KiB':>14} {'ratio':>7}" if final else ""))
            for n in names:
                if med[n]["time_s"] is None:
                    out(f"  {n:<16} {'failed':>9}")
                    continue
                r = ratio[n]
                for c, field in enumerate(cols):
                    if r[field] is not None and med[base][field] is not None:
                        geo[n][c].append(r[field])
                line = (f"  {n:<16} {med[n]['time_s']:>9.3f} {r['time_s']:>7.2f} "
                        f"{round(med[n]['peak_rss_kib']):>13d} {r['peak_rss_kib']:>7.2f}")
                if final:
                    line += f" {round(med[n]['rss_final_kib']):>14d} {r['rss_final_kib']:>7.2f}"
                out(line)
            short = [f"{n} {len(ok[n])} of {a.reps}" for n in names if len(ok[n]) < a.reps]
            if short:
                out(f"  (runs that worked: {', '.join(short)}; see the failed runs below)")
            if outside and floor and any(med[n]["peak_rss_kib"] is not None and
                                         med[n]["peak_rss_kib"] <= floor * 1.05 for n in names):
                out(f"  (a peak RSS near {floor} KiB is the floor of ru_maxrss here: "
                    f"the real peak is that or less)")
            for n in names:
                med[n]["runs"] = len(ok[n])
            workloads.append({"name": what, "cmd": cmd, "measured": "outside" if outside
                              else "workload", "runs": runs, "median": med, "ratio": ratio})
    except KeyboardInterrupt:
        print("\ncompare.py: interrupted", file=sys.stderr)
        return 130
    progress.finish()
    out()
    out(f"geometric mean of ratios (allocator / {base})")
    geomeans = {}
    for n in names:
        gt, gr, gf = (geomean(g) for g in geo[n])
        geomeans[n] = {"time": gt, "peak_rss": gr, "rss_final": gf,
                       "workloads": len(geo[n][0]), "final_workloads": len(geo[n][2])}
        if gt is None:
            out(f"  {n:<16} no workload worked")
            continue
        line = f"  {n:<16} time {gt:6.2f}   rss {gr:6.2f}"
        if gf is not None:
            line += f"   final rss {gf:6.2f} ({len(geo[n][2])} workloads)"
        if len(geo[n][0]) < len(cmds):
            line += f"   [{len(geo[n][0])} of {len(cmds)} workloads]"
        out(line)
    if failures:
        out()
        out(f"failed runs ({len(failures)}):")
        for what, name, rep, err in failures:
            out(f"  {what} under {name}, rep {rep}: {err}")
    meta["rss_floor_kib"] = floor
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(json_clean({"meta": meta, "base": base, "reps": a.reps, "workloads": workloads,
                       "geomean": geomeans, "failures": len(failures),
                       "table": "\n".join(printed).strip("\n") + "\n"}), fh, indent=1)
    if a.csv:
        write_csv(a.csv, meta, workloads)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
