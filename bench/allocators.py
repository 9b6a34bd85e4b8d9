"""The allocators a benchmark driver runs under, shared by compare.py, micro.py and
instructions.py: the --lib option's NAME=PATH[@VAR=VALUE...] (PATH preloaded with LD_PRELOAD,
each VAR=VALUE set for that allocator's runs only; glibc, the system malloc, preloads nothing),
the environment of a run under one, and the order of the runs.
"""
import os

GLIBC = ("glibc", "", {})


def parse_lib(spec):
    """NAME=PATH[@VAR=VALUE...] -> (name, path, {VAR: VALUE}); exits on a malformed spec."""
    if "=" not in spec:
        raise SystemExit(f"--lib {spec}: expected NAME=PATH[@VAR=VALUE...]")
    name, rest = spec.split("=", 1)
    path, *settings = rest.split("@")
    env = {}
    for kv in settings:
        if "=" not in kv:
            raise SystemExit(f"--lib {spec}: setting {kv!r} is not VAR=VALUE")
        k, v = kv.split("=", 1)
        env[k] = v
    return name, path, env


def parse_libs(specs, glibc=True):
    """The allocators of the --lib options, glibc first unless glibc is false, as
    [(name, path, settings)]; exits when two share a name."""
    libs = ([GLIBC] if glibc else []) + [parse_lib(s) for s in specs]
    names = [n for n, _, _ in libs]
    if len(set(names)) != len(names):
        raise SystemExit(f"allocator names must differ: {names}")
    return libs


def environment(path, settings):
    """This process's environment for a run under one allocator: an inherited LD_PRELOAD and
    SMPALLOC_OPTIONS removed, path preloaded (none for glibc), then its settings."""
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    env.pop("SMPALLOC_OPTIONS", None)
    if path:
        env["LD_PRELOAD"] = path
    env.update(settings)
    return env


def in_turn(libs, rep):
    """The allocators in the order of rep (from 0): forwards, then backwards, and so on, so
    drift in the machine favours none of them."""
    return libs if rep % 2 == 0 else list(reversed(libs))
