// stress_pageheap: the page heap (lib/pages/pageheap.c, one lock over the free-run buckets, splitting
// and coalescing) and the huge-mapping table (lib/heap/large.c) under T threads at once (default 4).
// Each thread keeps K slots (default 16) of page runs (64 KiB+1 .. 2 MiB) and, one in 32, huge
// blocks (2 MiB+1 .. 6 MiB), and loops over: allocate (malloc; 1/16 calloc, checked zero in full;
// 1/16 aligned_alloc and 1/32 posix_memalign with alignments 16 KiB .. 1 MiB, which split off an
// unaligned head); free; realloc inside the page-run or huge tier (grow: in place when the next
// run is free, else a move; shrink: in place, freeing the tail into a coalesce); realloc across
// tiers (small <-> page run <-> huge); bursts of 2..6 equal blocks (adjacent pieces of one split
// run); and, one step in 512, freeing every second live block in address order (holes that the
// next allocations split and the next frees coalesce on both sides). Thread 0 calls
// malloc_trim(0) every 128 steps, purging free runs and unmapping free chunks under the others.
// Checks: every block's pattern (sampled, every page) before each free, after each realloc and
// now and then in place; usable size >= request and, above 64 KiB, less than request + 64 KiB
// (a shrink gave its tail back); a page run shrunk to a size still above 64 KiB stays in place;
// no two live blocks overlap: exactly within a thread (its table), and across threads on one
// allocation in four against a registry of every thread's live blocks (relaxed atomics, so the
// check adds no synchronisation that could hide a race from ThreadSanitizer). At the end, after
// malloc_trim(0): huge blocks and bytes back to the start, bytes in use within 1 MiB of it,
// chunk bytes within 8 MiB (a lost free run would pin its chunk).
#include "stress_move.h"
#include "test_hardened.h"

#define MAX_THREADS 64
#define MAX_SLOTS 128

typedef struct slot {
  stress_mblock_t b; // b.p == NULL: empty
  size_t usable;
} slot_t;

typedef struct worker {
  unsigned id;
  stress_rng_t r;
  slot_t slots[MAX_SLOTS];
  uint64_t ops, seq, trims, cross_checks;
  uint64_t grow_inplace, grow_moved, shrink_inplace, tier_moves;
} worker_t;

static stress_args_t args = {.threads = 4, .iters = 12000, .seconds = 4, .seed = 1, .extra = 16};
static stress_budget_t budget;
static unsigned nslots;
static const size_t huge_max = 6 * STRESS_MIB;
static worker_t workers[MAX_THREADS];
// Every thread's live blocks: (start >> 4) | ((usable >> 4) << 44), 0 when empty. Written only
// by the owning thread: set after the block is allocated, cleared before it is freed or resized.
static _Atomic uint64_t registry[MAX_THREADS][MAX_SLOTS];

static uint64_t reg_word(const void *p, size_t usable) {
  return ((uint64_t)(uintptr_t)p >> 4) | ((uint64_t)((usable + 15) >> 4) << 44);
}
static uintptr_t reg_start(uint64_t w) { return (uintptr_t)(w & ((1ull << 44) - 1)) << 4; }
static size_t reg_len(uint64_t w) { return (size_t)(w >> 44) << 4; }

static bool overlaps(uintptr_t a, size_t an, uintptr_t b, size_t bn) {
  return a < b + bn && b < a + an;
}

// A block just placed in slot k: no overlap with this thread's other blocks (exact), nor, on a
// sample, with any other thread's (a stale entry is re-read once before it counts).
static void check_placement(worker_t *w, unsigned k) {
  slot_t *s = &w->slots[k];
  uintptr_t p = (uintptr_t)s->b.p;
  for (unsigned j = 0; j < nslots; j++) {
    slot_t *o = &w->slots[j];
    if (j != k && o->b.p && overlaps(p, s->usable, (uintptr_t)o->b.p, o->usable))
      stress_fail("block %p (%zu usable) overlaps this thread's live block %p (%zu usable)",
                  s->b.p, s->usable, o->b.p, o->usable);
  }
  atomic_store_explicit(&registry[w->id][k], reg_word(s->b.p, s->usable), memory_order_relaxed);
  if (!stress_rng_chance(&w->r, 1, 4)) return;
  w->cross_checks++;
  for (unsigned t = 0; t < args.threads; t++) {
    if (t == w->id) continue;
    for (unsigned j = 0; j < nslots; j++) {
      uint64_t e = atomic_load_explicit(&registry[t][j], memory_order_relaxed);
      if (e == 0 || !overlaps(p, s->usable, reg_start(e), reg_len(e))) continue;
      sched_yield(); // the owner may have freed it just now: look again
      if (atomic_load_explicit(&registry[t][j], memory_order_relaxed) == e)
        stress_fail("block %p (%zu usable) of thread %u overlaps block %#lx (%zu bytes) of "
                    "thread %u", s->b.p, s->usable, w->id, (unsigned long)reg_start(e),
                    reg_len(e), t);
    }
  }
}

static void unregister(worker_t *w, unsigned k) {
  atomic_store_explicit(&registry[w->id][k], 0, memory_order_relaxed);
}

// Usable size of the block in slot k, checked against its request.
static void set_usable(slot_t *s, const char *where) {
  s->usable = malloc_usable_size(s->b.p);
  if (s->usable < s->b.size)
    stress_fail("%s: block %p of %zu bytes has usable size %zu", where, s->b.p, s->b.size,
                s->usable);
  if (s->b.size > STRESS_SMALL_MAX && s->usable - s->b.size >= 64 * STRESS_KIB)
    stress_fail("%s: block %p of %zu bytes has usable size %zu: pages not given back", where,
                s->b.p, s->b.size, s->usable);
}

// Allocate a block of size bytes into empty slot k, with a random allocation function.
static void place(worker_t *w, unsigned k, size_t size) {
  slot_t *s = &w->slots[k];
  stress_rng_t *r = &w->r;
  uint64_t tag = ((uint64_t)w->id << 48) | w->seq++;
  size_t align = 16;
  void *p;
  unsigned kind = (unsigned)stress_rng_below(r, 32);
  if (kind < 2) {
    p = calloc(1, size);
    if (p) stress_check_zero("pageheap: calloc", p, size);
  } else if (kind < 4) {
    align = (size_t)1 << stress_rng_range(r, 14, 20); // 16 KiB .. 1 MiB
    p = aligned_alloc(align, size);
  } else if (kind < 5) {
    align = (size_t)1 << stress_rng_range(r, 14, 20);
    int rc = posix_memalign(&p, align, size);
    if (rc != 0) stress_fail("posix_memalign(%zu, %zu) failed: %s", align, size, strerror(rc));
  } else {
    p = malloc(size);
  }
  stress_mblock_init(&s->b, "pageheap: new block", p, size, align, tag);
  set_usable(s, "pageheap: new block");
  check_placement(w, k);
  w->ops++;
}

static size_t pick_size(stress_rng_t *r) {
  int tier = stress_rng_chance(r, 1, 32) ? STRESS_TIER_HUGE : STRESS_TIER_RUN;
  return stress_tier_size(r, tier, huge_max);
}

static void release(worker_t *w, unsigned k) {
  slot_t *s = &w->slots[k];
  stress_mblock_check("pageheap: free", &s->b);
  unregister(w, k);
  free(s->b.p);
  s->b.p = NULL;
  w->ops++;
}

static void resize(worker_t *w, unsigned k, size_t n) {
  slot_t *s = &w->slots[k];
  size_t old = s->b.size;
  unregister(w, k);
  bool same = stress_mblock_resize("pageheap", &s->b, n);
  set_usable(s, "pageheap: realloc");
  int from = stress_tier_of(old), to = stress_tier_of(n);
  if (from != to)
    w->tier_moves++;
  else if (n > old)
    same ? w->grow_inplace++ : w->grow_moved++;
  else if (same)
    w->shrink_inplace++;
  else if (to == STRESS_TIER_RUN && !test_hardened()) // hardened, a block moves when it outgrows its block
    stress_fail("pageheap: page run %p shrunk from %zu to %zu bytes moved", s->b.p, old, n);
  check_placement(w, k);
  w->ops++;
}

// Grow or shrink within the block's tier (page runs: 64 KiB+1 .. 2 MiB; huge: 2 MiB+1 ..).
static void resize_in_tier(worker_t *w, unsigned k) {
  stress_rng_t *r = &w->r;
  size_t size = w->slots[k].b.size, lo, hi;
  switch (stress_tier_of(size)) {
  case STRESS_TIER_SMALL: resize(w, k, stress_tier_size(r, STRESS_TIER_RUN, huge_max)); return;
  case STRESS_TIER_RUN: lo = STRESS_SMALL_MAX + 1, hi = STRESS_HUGE_MIN; break;
  default: lo = STRESS_HUGE_MIN + 1, hi = huge_max; break;
  }
  size_t n;
  if (stress_rng_chance(r, 1, 2) && size < hi) { // grow by 1 byte .. double
    n = size + (size_t)stress_rng_log(r, 1, size);
    if (n > hi) n = hi;
  } else if (size > lo) {
    n = size - (size_t)stress_rng_log(r, 1, size - lo);
  } else {
    n = size + 1;
  }
  resize(w, k, n);
}

static void resize_across(worker_t *w, unsigned k) {
  int from = stress_tier_of(w->slots[k].b.size);
  int to = (from + 1 + (int)stress_rng_below(&w->r, 2)) % 3;
  resize(w, k, stress_tier_size(&w->r, to, huge_max));
}

// Fill up to 2..6 empty slots from k on with blocks of one size (pieces of one split run).
static void burst(worker_t *w, unsigned k) {
  size_t size = stress_tier_size(&w->r, STRESS_TIER_RUN, huge_max) / 4 + STRESS_SMALL_MAX;
  unsigned want = (unsigned)stress_rng_range(&w->r, 2, 6);
  for (unsigned j = 0; j < nslots && want; j++) {
    unsigned i = (k + j) % nslots;
    if (w->slots[i].b.p) continue;
    place(w, i, size);
    want--;
  }
}

static int by_address(const void *a, const void *b) {
  const slot_t *x = *(slot_t *const *)a, *y = *(slot_t *const *)b;
  return (uintptr_t)x->b.p < (uintptr_t)y->b.p ? -1 : (uintptr_t)x->b.p > (uintptr_t)y->b.p;
}

// Free every second live block in address order: holes between live neighbours.
static void checkerboard(worker_t *w) {
  slot_t *live[MAX_SLOTS];
  unsigned n = 0;
  for (unsigned j = 0; j < nslots; j++)
    if (w->slots[j].b.p) live[n++] = &w->slots[j];
  qsort(live, n, sizeof live[0], by_address);
  for (unsigned i = 0; i < n; i += 2) release(w, (unsigned)(live[i] - w->slots));
}

static void *worker_main(void *arg) {
  worker_t *w = arg;
  stress_rng_t *r = &w->r;
  for (uint64_t i = 0; stress_continue(&budget, i); i++) {
    if (w->id == 0 && i % 128 == 127) {
      malloc_trim(0);
      w->trims++;
    }
    if (stress_rng_chance(r, 1, 512)) checkerboard(w);
    unsigned k = (unsigned)stress_rng_below(r, nslots);
    slot_t *s = &w->slots[k];
    if (s->b.p == NULL) {
      if (stress_rng_chance(r, 1, 8))
        burst(w, k);
      else
        place(w, k, pick_size(r));
      continue;
    }
    unsigned op = (unsigned)stress_rng_below(r, 100);
    if (op < 40) {
      release(w, k);
    } else if (op < 70) {
      resize_in_tier(w, k);
    } else if (op < 78) {
      resize_across(w, k);
    } else if (op < 88) {
      release(w, k);
      place(w, k, pick_size(r));
    } else {
      stress_mblock_check("pageheap: live block", &s->b);
    }
  }
  for (unsigned k = 0; k < nslots; k++)
    if (w->slots[k].b.p) release(w, k);
  return NULL;
}

int main(int argc, char **argv) {
  stress_args_parse(&args, "stress_pageheap",
                    "  -t threads  -n steps per thread  -k slots per thread  -s time cap", argc,
                    argv);
  stress_require_smpalloc();
  if (args.threads > MAX_THREADS) stress_fail("at most %d threads", MAX_THREADS);
  if (args.extra == 0 || args.extra > MAX_SLOTS) stress_fail("-k: 1 .. %d slots", MAX_SLOTS);
  nslots = args.extra;
  malloc_trim(0);
  struct mallinfo2 before = mallinfo2();
  double started = stress_now();
  budget = stress_budget(args.iters, args.seconds);
  pthread_t t[MAX_THREADS];
  for (unsigned i = 0; i < args.threads; i++) {
    workers[i].id = i;
    stress_rng_seed(&workers[i].r, args.seed * 1000 + i);
    stress_thread_start(&t[i], worker_main, &workers[i]);
  }
  uint64_t ops = 0, trims = 0, cross = 0, gi = 0, gm = 0, si = 0, tm = 0;
  for (unsigned i = 0; i < args.threads; i++) {
    stress_thread_join(t[i]);
    worker_t *w = &workers[i];
    ops += w->ops, trims += w->trims, cross += w->cross_checks;
    gi += w->grow_inplace, gm += w->grow_moved, si += w->shrink_inplace, tm += w->tier_moves;
  }
  malloc_trim(0);
  struct mallinfo2 after = mallinfo2();
  if (args.verbose)
    fprintf(stderr,
            "stress_pageheap: %llu trims, %llu cross-thread checks; realloc: %llu grown in place, "
            "%llu grown by moving, %llu shrunk in place, %llu across tiers\n"
            "stress_pageheap: before: in use %zu, chunks %zu, huge %zu in %zu; after: in use %zu, "
            "chunks %zu, huge %zu in %zu\n",
            (unsigned long long)trims, (unsigned long long)cross, (unsigned long long)gi,
            (unsigned long long)gm, (unsigned long long)si, (unsigned long long)tm,
            before.uordblks, before.arena, before.hblkhd, before.hblks, after.uordblks,
            after.arena, after.hblkhd, after.hblks);
  if (after.hblks != before.hblks || after.hblkhd != before.hblkhd)
    stress_fail("huge blocks: %zu (%zu bytes) at the end, %zu (%zu bytes) at the start",
                after.hblks, after.hblkhd, before.hblks, before.hblkhd);
  if (after.uordblks > before.uordblks + STRESS_MIB)
    stress_fail("%zu bytes in use at the end, %zu at the start", after.uordblks, before.uordblks);
  if (after.arena > before.arena + 8 * STRESS_MIB)
    stress_fail("%zu bytes of chunks mapped after malloc_trim, %zu at the start", after.arena,
                before.arena);
  if (ops == 0) stress_fail("no operations ran");
  stress_ok(ops, args.threads, started);
  return 0;
}
