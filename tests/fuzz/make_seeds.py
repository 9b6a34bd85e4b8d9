#!/usr/bin/env python3
"""Write the hand-made seeds of the fuzz_ops corpus (tests/fuzz/corpus/seed-*).

Usage: make_seeds.py [corpus dir]   (default: the corpus/ directory beside this script)

The encoding mirrors decode() in fuzz_ops.c: an op byte ([7:6] variant, [5:4] thread,
[3:0] opcode), a slot byte, then operands; a size is a kind byte (tier in [2:0], variant in
[7:3]) and two bytes little-endian. The seeds reach every op, every size tier and every edge
value, with blocks allocated on one thread and freed or resized on another. The stale_* seeds
put free marks and links the allocator left in memory into live blocks (unwritten blocks, freed
ones, realloc chains that never write, copies between live blocks) and free, resize or measure
those blocks on other threads: valid programs, which an allocator that takes a mark in a live
block for a double free aborts. The fuzzer's own finds (merged with -merge=1) sit beside them
under libFuzzer's hash names.
"""
import os
import random
import sys

MALLOC, MALLOC2, CALLOC, REALLOC, REALLOC2, REALLOC0, ALIGNED, FREE, FREE2, FREE_SIZED, \
    USABLE, REFILL, MALLOC_BURST, FREE_BURST, MISC, STALE = range(16)
TRIM, RESPAWN, CHECK_ALL, FREE_ALL = range(4)
FRESH, FREED, CHAIN, LIVE = range(4)  # stale variants
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


def stale(kind, slot, sz, t=0):
    return op(STALE, slot, t, kind, sz)


STALE_LENS = {16: 0, 24: 1, 40: 2, 64: 3}


def stale_bits(length=16, times=0, shift=0, pick=0):
    """The low bits of a stale op's size operand: the slice is length bytes at
    times * 16 << shift in the source (times and shift 0..15); pick chooses the freed block (0:
    the last freed) or the source slot (slot + 1 + pick). For stale_chain, bits [1:0] are the
    number of reallocs - 1."""
    return STALE_LENS[length] | times << 2 | shift << 6 | pick << 10


def small_with(bits):
    """A small-tier size operand whose value is bits (<= 65535)."""
    return size(SMALL, bits)


def pages_with(low, at_least=65537, bits=10):
    """A page-run size operand (65537 + 31 v, at least at_least) whose low bits are low."""
    for v in range(65536):
        n = 65537 + 31 * v
        if n >= at_least and n % (1 << bits) == low:
            return size(PAGES, v)
    raise ValueError(low)


def stale_setup(t0=0):
    """48 blocks of 64 KiB in slots 0..47 (12 spans of 4), freed on two other threads: the spans
    go back to the page heap with a free mark in word 1 at every 64 KiB from a span's start."""
    return (burst_malloc(0, 24, size(SMALL, 65535), t0)
            + burst_malloc(24, 24, size(SMALL, 65535), (t0 + 1) % 4)
            + burst_free(0, 24, (t0 + 2) % 4) + burst_free(24, 24, (t0 + 3) % 4, 1))


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
    s.update(stale_seeds())
    # Pseudo-random programs (fixed seeds), for the fuzzer to start from.
    rng = random.Random(20240601)
    for i in range(6):
        s["random_%d" % i] = bytes(rng.randrange(256) for _ in range(64 + 160 * i))
    return s


def stale_seeds():
    s = {}
    # Copies that cannot forge a mark (word 1 of a new small block is clear; a freed huge block
    # is unmapped; a freed page run keeps its pattern): the model of heads through realloc,
    # refill, trim and the whole-heap check.
    b = malloc(1, size(TINY, 100), 0) + malloc(2, size(SMALL, 5000), 1)
    b += malloc(3, size(HUGE, 10), 2) + malloc(4, any_size(65537 + 31 * 900), 3)
    b += stale(FRESH, 1, small_with(stale_bits(64)), 1)          # new 64-byte block, offset 0
    b += stale(FRESH, 2, small_with(stale_bits(40, 1, 4)), 2)    # new block, offset 256
    b += free(3, 3) + stale(FREED, 5, small_with(stale_bits(64)), 0)  # unmapped: reads nothing
    b += free(4, 0) + stale(FREED, 6, small_with(stale_bits(24)), 1)  # a freed page run
    b += stale(LIVE, 7, small_with(stale_bits(64, pick=57)), 2)  # slot 7 <- slot 1
    b += stale(LIVE, 1, small_with(stale_bits(40, pick=0)), 3)   # slot 1 <- slot 2
    b += realloc(1, size(SMALL, 30), 0, SHRINK) + realloc(2, size(SMALL, 20000), 1, GROW)
    b += realloc(7, size(PAGES, 500), 2) + realloc(7, size(TINY, 20), 3)
    b += op(USABLE, 1, 2) + op(USABLE, 7, 0) + misc(TRIM, 1) + op(REFILL, 2, 3)
    b += stale(CHAIN, 8, small_with(3000 | 3), 0) + realloc(8, size(K1, 900), 2, HALF)
    b += stale(CHAIN, 9, size(HUGE, 100), 1) + stale(CHAIN, 10, size(TINY, 1), 2)
    b += misc(CHECK_ALL, 3) + free_sized(8, 1) + op(FREE2, 9, 3) + misc(RESPAWN, 0)
    s["stale_model"] = b
    # A freed small block's link and mark, read through the kernel, into the head of a block
    # allocated on thread 0; freed much later on thread 3.
    b = malloc(1, size(TINY, 100), 0) + malloc(2, size(TINY, 48), 0)
    b += malloc(3, size(SMALL, 3000), 0) + free(1, 1)
    b += stale(FREED, 2, small_with(stale_bits(16)), 2)          # slot 1's old block, offset 0
    b += burst_malloc(10, 8, size(K1, 500), 1) + burst_free(10, 8, 2)
    b += op(USABLE, 3, 0) + free(2, 3)
    s["stale_freed"] = b
    # The same mark, copied on from live block to live block; the last copy is resized on
    # another thread.
    b = malloc(20, size(TINY, 48), 0) + malloc(21, size(SMALL, 3000), 1)
    b += malloc(22, size(K1, 700), 2) + malloc(0, size(TINY, 100), 3) + free(0, 0)
    b += stale(FREED, 20, small_with(stale_bits(64)), 1)         # slot 20 <- freed block
    b += stale(LIVE, 21, small_with(stale_bits(24, pick=62)), 2) # slot 21 <- slot 20
    b += stale(LIVE, 22, small_with(stale_bits(64, pick=62)), 3) # slot 22 <- slot 21
    b += realloc(22, size(K1, 400), 0, GROW) + realloc(21, size(SMALL, 9000), 1)
    b += op(USABLE, 20, 2) + free_sized(20, 3) + misc(FREE_ALL, 0)
    s["stale_live"] = b
    # New page runs over pages that held freed 64 KiB blocks, never written: slices at every
    # 8 KiB from 0 to 56 KiB and at 64, 128 and 192 KiB (one is a former block's start wherever
    # the run begins), copied into small blocks allocated before, which other threads free
    # (every other one measured first).
    offsets = [(t, 9) for t in range(8)] + [(t, 12) for t in (1, 2, 3)]
    b = burst_malloc(48, len(offsets), size(TINY, 80), 1) + stale_setup(0)
    for i, (times, shift) in enumerate(offsets):
        b += stale(FRESH, 48 + i, pages_with(stale_bits(16, times, shift), 250000), 2 + i % 2)
    for i in range(len(offsets)):
        b += (op(USABLE, 48 + i, i % 4) if i % 2 else b"") + free(48 + i, (i + 1) % 4)
    s["stale_fresh"] = b
    # The reproducer: a never-written page run over the same pages, realloc'ed to 1 + n % 2048
    # bytes (one realloc) keeps the stale words; the small block is freed on another thread.
    b = stale_setup(1) + stale(CHAIN, 50, pages_with(0, 100000, 2), 2) + free(50, 3)
    s["stale_chain"] = b
    # Longer chains (4 reallocs: small, back to the page run, tiny, half) on the same pages,
    # then more copies, a respawn and a trim between copy and free.
    b = stale_setup(2) + stale(CHAIN, 50, pages_with(3, 200000, 2), 3)
    b += stale(CHAIN, 51, pages_with(1, 80000, 2), 0)
    b += stale(CHAIN, 52, pages_with(2, 150000, 2), 1)
    b += stale(LIVE, 53, small_with(stale_bits(64, pick=60)), 2) + misc(RESPAWN, 3)
    b += misc(TRIM, 0) + realloc(50, size(TINY, 10), 1, HALF) + free(51, 2) + free_sized(52, 3)
    b += free(53, 0)
    s["stale_chain_long"] = b
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
