// Blocks that move: helpers shared by stress_pageheap, stress_trim_stats and stress_remote_large.
// A moving block's pattern is seeded by its tag alone (not its address), so realloc may move it
// and byte i keeps its value for the block's whole life. Invariant kept by every function here:
// the sample (stress_common.h) of the block's current size holds the pattern. A resize checks
// the part of the old sample that survives, then writes what the new sample adds: the new part
// when growing, the new tail when a sampled block shrinks, everything when it becomes dense.
// The tier limits repeat lib/base/config.h (the tests see only the public API): small classes up to
// 64 KiB, page runs up to 2 MiB, dedicated mappings above.
#ifndef STRESS_MOVE_H
#define STRESS_MOVE_H

#include "stress_common.h"

#define STRESS_KIB ((size_t)1024)
#define STRESS_MIB ((size_t)1024 * 1024)
#define STRESS_SMALL_MAX (64 * STRESS_KIB) // largest small-class request
#define STRESS_HUGE_MIN (2 * STRESS_MIB)   // requests above this get a dedicated mapping

enum { STRESS_TIER_SMALL, STRESS_TIER_RUN, STRESS_TIER_HUGE };

// A size of the given tier: small 1 B..64 KiB, page run 64 KiB+1..2 MiB, huge 2 MiB+1..huge_max
// (each log-uniform, so the low end of every tier is well represented).
static inline size_t stress_tier_size(stress_rng_t *r, int tier, size_t huge_max) {
  switch (tier) {
  case STRESS_TIER_SMALL: return (size_t)stress_rng_log(r, 1, STRESS_SMALL_MAX);
  case STRESS_TIER_RUN: return (size_t)stress_rng_log(r, STRESS_SMALL_MAX + 1, STRESS_HUGE_MIN);
  default: return (size_t)stress_rng_log(r, STRESS_HUGE_MIN + 1, huge_max);
  }
}

static inline int stress_tier_of(size_t n) {
  return n <= STRESS_SMALL_MAX ? STRESS_TIER_SMALL : n <= STRESS_HUGE_MIN ? STRESS_TIER_RUN
                                                                          : STRESS_TIER_HUGE;
}

typedef struct stress_mblock {
  void *p;
  size_t size;   // bytes asked for
  uint64_t tag;  // who made it and which one (for reports)
  uint64_t seed; // pattern seed, from the tag alone
} stress_mblock_t;

// Adopt a block just allocated (align: what was asked, 16 if nothing) and write its pattern.
static inline void stress_mblock_init(stress_mblock_t *b, const char *where, void *p, size_t size,
                                      size_t align, uint64_t tag) {
  if (p == NULL)
    stress_fail("%s: allocation of %zu bytes (align %zu) returned NULL", where, size, align);
  stress_check_shape(where, p, size, align);
  *b = (stress_mblock_t){p, size, tag, stress_mix64(tag ^ 0x6d6f76696e67ull)};
  stress_fill_sample(p, size, b->seed, 0, size);
}

// Check the sample of the first upto bytes of a block that holds n bytes' pattern.
static inline void stress_mblock_check_upto(const char *where, const stress_mblock_t *b, size_t n,
                                            size_t upto) {
  size_t bad = stress_check_sample(b->p, n, b->seed, 0, upto);
  if (bad != SIZE_MAX)
    stress_fail_content(where, b->p, n < b->size ? n : b->size, b->tag, b->seed, bad);
}

// Check a live block's shape and whole sample (before a free, after a hand-over).
static inline void stress_mblock_check(const char *where, const stress_mblock_t *b) {
  stress_check_shape(where, b->p, b->size, 16);
  stress_mblock_check_upto(where, b, b->size, b->size);
}

// realloc b to n > 0 bytes, check what survives and pattern what is new. Returns true if the
// block stayed where it was.
static inline bool stress_mblock_resize(const char *where, stress_mblock_t *b, size_t n) {
  size_t old = b->size;
  void *q = realloc(b->p, n);
  if (q == NULL)
    stress_fail("%s: realloc(%p, %zu) returned NULL (from %zu bytes)", where, b->p, n, old);
  bool same = q == b->p;
  b->p = q;
  b->size = n;
  stress_check_shape(where, q, n, 16);
  size_t bad = stress_check_sample(q, old, b->seed, 0, n < old ? n : old);
  if (bad != SIZE_MAX) {
    char what[128];
    snprintf(what, sizeof what, "%s: realloc %zu -> %zu bytes (%s) lost contents", where, old, n,
             same ? "in place" : "moved");
    stress_fail_content(what, q, n < old ? n : old, b->tag, b->seed, bad);
  }
  if (n > old)
    stress_fill_sample(q, n, b->seed, old, n);
  else if (n > STRESS_DENSE_MAX)
    stress_fill_sample(q, n, b->seed, n - STRESS_EDGE, n);
  else if (old > STRESS_DENSE_MAX)
    stress_fill_sample(q, n, b->seed, 0, n);
  return same;
}

// Check and free.
static inline void stress_mblock_free(const char *where, stress_mblock_t *b) {
  stress_mblock_check(where, b);
  free(b->p);
  b->p = NULL;
}

#endif
