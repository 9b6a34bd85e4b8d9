#!/usr/bin/env python3
"""Write the hand-made seeds of the fuzz_ops corpus (tests/fuzz/corpus/seed-*).

Usage: make_seeds.py [corpus dir]   (default: the corpus/ directory beside this script)

The encoding mirrors decode() in fuzz_ops.c: an op byte ([7:6] variant, [5:4] thread,
[3:0] opcode), a slot byte, then operands; a size is a kind byte (tier in [2:0], variant in
[7:3]) and two bytes little-endian. The seeds reach every op, every size tier and every edge
value, with blocks allocated on one thread and freed or resized on another. The fuzzer's own
finds (merged with -merge=1) sit beside them under libFuzzer's hash names.
"""
import os
import random
import sys

MALLOC, MALLOC2, CALLOC, REALLOC, REALLOC2, REALLOC0, ALIGNED, FREE, FREE2, FREE_SIZED, \
    USABLE, REFILL, MALLOC_BURST, FREE_BURST, MISC, REALLOC3 = range(16)
TRIM, RESPAWN, CHECK_ALL, FREE_ALL = range(4)
ABS, GROW, SHRINK, HALF = range(4)  # realloc variants

# Size tiers (kind byte & 7).
TINY, K1, SMALL, CLASS, PAGES, EDGE, HUGE, S4K = range(8)
EDGES = {"0": 0, "1": 1, "15": 2, "16": 3, "17": 4, "128": 5, "129": 6, "1024": 7,
         "1025": 8, "65535": 9, "65536": 10, "65537": 11, "8192": 12, "8193": 13,
         "2M-1": 14, "2M": 15, "2M+1": 16, "4M-40K": 17, "SIZE_MAX": 18, "SIZE_MAX-1": 19,
         "SIZE_MAX-4095": 20, "SIZE_MAX-8192": 21, "2^63": 22, "2^62": 23, "2^56": 24,
         "PTRDIFF_MAX": 25, "SIZE_MAX-64K": 26, "SIZE_MAX-2M": 27, "2^48": 28,
         "2M-8K": 29, "1M": 30}
ABSURD_EDGES = ["SIZE_MAX", "SIZE_MAX-1", "SIZE_MAX-4095", "SIZE_MAX-8192", "2^63", "2^62",
                "2^56", "PTRDIFF_MAX", "SIZE_MAX-64K", "SIZE_MAX-2M", "2^48"]


def size(kind, v=0, x=0):
    return bytes([(kind & 7) | (x << 3), v & 255, (v >> 8) & 255])


def edge(name):
    return size(EDGE, 0, EDGES[name])


def any_size(n):
    """A size operand for an exact small value (<= 65535) or a page-run/huge value."""
    if n <= 65535:
        return size(SMALL, n)
    if n <= 65536 + 1 + 65535 * 31 and (n - 65537) % 31 == 0:
        return size(PAGES, (n - 65537) // 31)
    raise ValueError(n)


def op(code, slot=0, thread=0, variant=0, operands=b""):
    return bytes([code | (thread << 4) | (variant << 6), slot & 255]) + operands


def malloc(slot, sz, t=0):
    return op(MALLOC, slot, t, 0, sz)


def calloc(slot, mode, sz, t=0):
    return op(CALLOC, slot, t, 0, bytes([mode]) + sz)


def realloc(slot, sz, t=0, variant=ABS):
    return op(REALLOC, slot, t, variant, sz)


def aligned(slot, align_byte, sz, t=0):
    return op(ALIGNED, slot, t, 0, bytes([align_byte]) + sz)


def free(slot, t=0):
    return op(FREE, slot, t)


def free_sized(slot, t=0):
    return op(FREE_SIZED, slot, t)


def burst_malloc(slot, count, sz, t=0):
    return op(MALLOC_BURST, slot, t, 0, bytes([count - 1]) + sz)


def burst_free(slot, count, t=0, sized=0):
    return op(FREE_BURST, slot, t, sized, bytes([count - 1]))


def misc(kind, t=0):
    return op(MISC, 0, t, kind)


def seeds():
    s = {}
    # Every tier: allocated on thread 0, checked on 1, freed on 2 or 3.
    b = b""
    for k in range(8):
        b += malloc(k, size(k, 0x1234 + 977 * k, k), 0)
    for k in range(8):
        b += op(USABLE, k, 1) + (free(k, 2) if k % 2 else free_sized(k, 3))
    s["tiers_cross_thread"] = b
    # Producer/consumer of small blocks in bursts, rotating threads: remote frees and flushes.
    b = b""
    for r in range(8):
        b += burst_malloc(0, 32, size(TINY, 48 + 16 * r), r % 4)
        b += burst_free(0, 32, (r + 1) % 4, r & 1)
    s["bursts_rotating"] = b
    b = b""
    for r in range(6):
        b += burst_malloc(32, 32, size(SMALL, 3000 + 5000 * r), r % 4)
        b += burst_free(32, 16, (r + 2) % 4) + burst_free(48, 16, (r + 3) % 4, 1)
    s["bursts_medium"] = b
    # calloc: every factoring mode over several tiers, freed elsewhere.
    b = b""
    for mode in range(6):
        for k, sz in enumerate([size(TINY, 100), size(SMALL, 40000), size(PAGES, 5000),
                                size(HUGE, 100), edge("0"), edge("SIZE_MAX")]):
            b += calloc(mode * 6 + k, mode, sz, mode % 4)
    b += misc(FREE_ALL, 1)
    s["calloc_modes"] = b
    # realloc: one block grown through every tier on changing threads, then shrunk back.
    b = realloc(5, size(TINY, 16), 0)
    for i, sz in enumerate([size(TINY, 100), size(K1, 1000), size(SMALL, 60000),
                            size(PAGES, 100), size(PAGES, 40000), size(HUGE, 2000),
                            size(HUGE, 30000), size(PAGES, 3000), size(SMALL, 2000),
                            size(TINY, 1)]):
        b += realloc(5, sz, (i + 1) % 4)
    b += realloc(5, edge("0"), 2) + realloc(5, edge("0"), 3)  # to 0 frees; from NULL mallocs
    s["realloc_tiers"] = b
    # realloc relative: grow and shrink in small steps (in place and moving).
    b = malloc(7, size(SMALL, 70), 1)
    for i in range(12):
        b += realloc(7, size(K1, 300 + 40 * i), i % 4, GROW)
    for i in range(12):
        b += realloc(7, size(K1, 500), (i + 1) % 4, SHRINK if i % 2 else HALF)
    b += op(REALLOC0, 7, 3)
    s["realloc_steps"] = b
    b = malloc(9, any_size(65537 + 31 * 1000), 0)
    for i in range(10):
        b += realloc(9, size(SMALL, 9000 * (i + 1)), i % 4, GROW)
    for i in range(6):
        b += realloc(9, size(SMALL, 20000), i % 4, HALF)
    s["realloc_large_inplace"] = b
    # realloc of huge blocks: grow (mremap), shrink, into page runs and small.
    b = malloc(3, size(HUGE, 1000), 2)
    b += realloc(3, size(HUGE, 40000), 1) + realloc(3, size(HUGE, 10), 0)
    b += realloc(3, size(PAGES, 20000), 3) + realloc(3, size(SMALL, 100), 2)
    b += aligned(4, 0xfa, size(HUGE, 5000), 1) + realloc(4, size(HUGE, 20000), 0)
    b += free_sized(4, 3)
    s["realloc_huge"] = b
    # aligned_alloc: every power of two up to 8 MiB, three sizes each, freed on another thread.
    for part, sizes in enumerate([[edge("0"), size(TINY, 40)], [size(SMALL, 5000)],
                                  [size(PAGES, 3000), edge("2M")]]):
        b = b""
        slot = 0
        for a in range(24):
            for sz in sizes:
                b += aligned(slot, a, sz, a % 4) + op(USABLE, slot, (a + 1) % 4)
                slot += 1
        b += misc(FREE_ALL, 2)
        s["aligned_%d" % part] = b
    b = b""
    for i in range(16):  # invalid alignments: EINVAL
        b += aligned(i, 0xe0 + i, size(TINY, 64), i % 4)
    for i in range(8):  # absurd power-of-two alignments: ENOMEM
        b += aligned(i, 0xf0 + i, size(TINY, 64), i % 4)
    for i in range(4):  # 16 MiB .. 128 MiB
        b += aligned(20 + i, 0xf8 + i, size(TINY, 100 * i), i % 4)
    b += aligned(30, 0xe3, edge("SIZE_MAX")) + aligned(31, 12, edge("SIZE_MAX"))
    s["aligned_invalid_absurd"] = b
    # Absurd sizes through every entry point; live blocks must survive failed reallocs.
    b = malloc(1, size(TINY, 77), 0) + malloc(2, size(PAGES, 10), 1)
    for i, name in enumerate(ABSURD_EDGES):
        t = i % 4
        b += malloc(10 + i, edge(name), t) + calloc(30 + i, i % 3, edge(name), t)
        b += realloc(1 + i % 2, edge(name), (t + 1) % 4) + realloc(50, edge(name), t)
    b += calloc(40, 3, size(TINY, 5)) + calloc(41, 3, size(TINY, 6)) + misc(CHECK_ALL, 2)
    s["absurd_sizes"] = b
    # Edge sizes: every table entry, allocated, resized to its neighbour, freed sized.
    b = b""
    for i in range(31):
        b += malloc(i, size(EDGE, 0, i), i % 4)
    for i in range(31):
        b += realloc(i, size(EDGE, 0, (i + 1) % 31), (i + 1) % 4)
    for i in range(31):
        b += free_sized(i, (i + 2) % 4)
    s["edge_sizes"] = b
    # Class boundaries: every class, one below, at, one above; in bursts across threads.
    for x in range(3):
        b = b""
        for c in range(80):
            b += malloc(c % 64, size(CLASS, c, x), c % 4)
            if c % 8 == 7:
                b += burst_free((c - 7) % 64, 8, (c + 1) % 4, c & 1)
        s["class_bounds_%d" % x] = b
    b = b""
    for i in range(24):  # page-run sizes at whole pages -1, 0, +1
        b += malloc(i, size(PAGES, 2000 * i + 7, 1 | (i % 3) << 2), i % 4)
    for i in range(24):  # short page runs, up to 192 KiB
        b += malloc(24 + i, size(PAGES, 2700 * i, 2), (i + 1) % 4)
    b += burst_free(0, 24, 1) + burst_free(24, 24, 2, 1)
    s["page_bounds"] = b
    # free_sized across tiers and threads, and of NULL.
    b = b""
    for k in range(8):
        b += op(MALLOC2, k, k % 4, 0, size(k, 999 * k + 1, k)) + free_sized(k, (k + 3) % 4)
    b += free_sized(60, 1) + free(61, 2)
    s["free_sized"] = b
    # usable_size and refill on live and empty slots.
    b = b""
    for k in range(8):
        b += malloc(k, size(k, 5000 + k, k), k % 4)
        b += op(USABLE, k, (k + 1) % 4) + op(REFILL, k, (k + 2) % 4)
    b += op(USABLE, 40, 0) + op(REFILL, 41, 1) + misc(CHECK_ALL, 3) + misc(FREE_ALL, 0)
    s["usable_refill"] = b
    # trim with live blocks of every tier, after frees on other threads.
    b = b""
    for k in range(8):
        b += burst_malloc(k * 8, 8, size(k, 3000 * k + 5, k), k % 4)
    b += burst_free(0, 32, 1) + misc(TRIM, 2) + burst_free(32, 32, 3) + misc(TRIM, 0)
    b += burst_malloc(0, 16, size(SMALL, 7000), 1) + misc(TRIM, 1)
    s["trim"] = b
    # Threads exit with blocks in their caches; the blocks are freed by the new threads.
    b = b""
    for t in range(4):
        b += burst_malloc(16 * t, 16, size(K1, 200 + 100 * t), t)
        b += burst_free(16 * t, 8, t) + misc(RESPAWN, t)
    for t in range(4):
        b += burst_free(16 * t + 8, 8, (t + 1) % 4) + burst_malloc(16 * t, 8, size(K1, 64), t)
    b += misc(RESPAWN, 0) + misc(FREE_ALL, 1)
    s["respawn"] = b
    # Span lifecycle: fill spans of one class on one thread, free all of them elsewhere, twice.
    b = b""
    for r in range(2):
        b += burst_malloc(0, 32, size(SMALL, 2048), 0) + burst_malloc(32, 32, size(SMALL, 2048), 1)
        b += burst_free(0, 32, 2) + burst_free(32, 32, 3, 1) + misc(TRIM, r)
    s["span_empty"] = b
    # Pseudo-random programs (fixed seeds), for the fuzzer to start from.
    rng = random.Random(20240601)
    for i in range(6):
        s["random_%d" % i] = bytes(rng.randrange(256) for _ in range(64 + 160 * i))
    return s


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "corpus")
    os.makedirs(out, exist_ok=True)
    for name, data in sorted(seeds().items()):
        with open(os.path.join(out, "seed-" + name), "wb") as f:
            f.write(data)
    print("%d seeds written to %s" % (len(seeds()), out))


if __name__ == "__main__":
    main()
