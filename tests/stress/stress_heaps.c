// stress_heaps: heaps (include/smpalloc.h, "Heaps") under threads, every block checked.
// Mode "shared": -k heaps (default 3) made by smp_heap_create, shared by every thread together
// with the default heap. Each thread allocates from any of them by any call that can
// (smp_heap_malloc, smp_heap_calloc, smp_mallocx, malloc for the default heap) with random flags
// (SMP_ZERO, SMP_ALIGN, now and then SMP_NOWAIT, which may answer EAGAIN: then the request is
// made again without it), keeps a quarter and sends the rest through non-blocking inboxes to the
// other threads (all to all), which free them (free, smp_free, smp_free_sized) or first resize
// them: smp_reallocx (stays in its heap), smp_heap_realloc into another heap or the default one,
// or plain realloc. At the end: every shared heap visits no block and has nothing in use;
// smp_heap_visit finds exactly the live blocks of a heap (and stops where fn says); the heap
// count of smp_stats_get follows create and destroy; the heaps are destroyed with blocks live.
// Mode "churn": -k threads (default half) create a heap (a third with a limit), fill it, hand a
// third of its blocks to the other threads, wait until those are freed, check that
// smp_heap_visit finds exactly the blocks left (and smp_heap_stats_get's in_use, held <= limit
// and failures), lower the limit now and then, and destroy the heap with its blocks live, again
// and again. The other threads run default-heap traffic and two private heaps of their own (one
// with a 1 MiB limit), destroyed and created again now and then, and free the blocks handed to
// them: so their caches hold blocks of heaps destroyed a moment later, which must never come
// back from malloc or from another heap.
// Mode "region": a heap over an mmap'd region of -k MiB (default 16) between PROT_NONE guard
// pages, in four rounds: flags 0, SMP_REGION_META_OUTSIDE, SMP_REGION_PURGE, both; a page-aligned
// base and an odd one. Every thread races smp_heap_create_in over the same region (exactly one
// must win, the others get EINVAL); then all of them allocate from it (small, page runs, some
// huge; some blocks moved in from the default heap or out to it by smp_heap_realloc) with
// cross-thread frees, running it full (ENOMEM, which makes a thread free half of its blocks).
// Every block must lie inside the region. At the end of a round: nothing visited or in use, a
// single-thread fill to ENOMEM stays inside and reaches a fair share of the region, and after
// smp_heap_destroy smp_heap_of knows none of its former blocks; the region is then scribbled
// over and reused by the next round.
// Mode "regionhuge": blocks over 2 MiB (huge elsewhere: a mapping of their own) from region heaps
// with room for them, by every thread at once and one of 8 MiB; each must come from the region
// (in mode region such requests are made too, but a refusal there reads as a full region).
// Mode "all" (default): shared, churn, region in turn, a third of -s and -n each.
// Checks on every block: smp_heap_of is the heap it came from, alignment, usable size, zeroes
// where SMP_ZERO or calloc asked, the pattern (seeded by address, size and tag: thread and
// sequence) at every hand-over and before every free, the kept prefix after every resize.
#include "stress_common.h"
#include "test_hardened.h"

#include <stdlib.h>

#define MAX_THREADS 64
#define MAX_SHARED 16
#define BATCH 16
#define QUEUE_CAP 512
#define KIB ((size_t)1024)
#define MIB (KIB * 1024)

static stress_args_t args = {.threads = 4, .iters = 3000000, .seconds = 3, .seed = 1, .mode = "all"};
static stress_budget_t budget;
static uint64_t iters; // the current mode's share of -n
static unsigned kopt;   // -k, for a single mode (0 in mode all: each mode's default)
static unsigned nthreads;
static smp_heap_t *dflt; // smp_heap_default()
static _Atomic uint64_t total_ops, eagain_count, enomem_count, realloc_kept, realloc_to_default;

// The region of mode region (region_heap NULL outside it).
static smp_heap_t *region_heap;
static uintptr_t region_lo, region_hi;

// ---- blocks -----------------------------------------------------------------------------

typedef struct blk {
  void *p;
  size_t size;      // bytes asked for
  uint64_t tag;     // thread << 48 | sequence
  smp_heap_t *heap; // the heap smp_heap_of(p) must name (dflt for the default heap)
} blk_t;

static uint64_t blk_seed(const blk_t *b) { return stress_seed(b->p, b->size, b->tag); }

static bool zero_cb(void *ctx, size_t lo, size_t hi) {
  const unsigned char *c = ctx;
  for (size_t i = lo; i < hi; i++)
    if (c[i] != 0) stress_fail("block %p not zero at offset %zu (byte %02x)", ctx, i, c[i]);
  return true;
}

// The sample (stress_common.h) of [lo, hi) of a block of n bytes reads as zero.
static void check_zero(const void *p, size_t n, size_t lo, size_t hi) {
  stress_for_sample(n, lo, hi, zero_cb, (void *)p);
}

static void region_check(const char *where, const void *p) {
  size_t usable = malloc_usable_size((void *)p);
  uintptr_t a = (uintptr_t)p;
  if (a < region_lo || a + usable > region_hi || a + usable < a)
    stress_fail("%s: block %p (usable %zu) of the region heap is outside the region [%#lx, %#lx)",
                where, p, usable, (unsigned long)region_lo, (unsigned long)region_hi);
}

// A live block: its heap, shape, place and pattern.
static void blk_check(const char *where, const blk_t *b) {
  smp_heap_t *h = smp_heap_of(b->p);
  if (h != b->heap)
    stress_fail("%s: smp_heap_of(%p) (size %zu, tag %#llx) is %p, but the block came from heap "
                "%p \"%s\"",
                where, b->p, b->size, (unsigned long long)b->tag, (void *)h, (void *)b->heap,
                smp_heap_name(b->heap));
  stress_check_shape(where, b->p, b->size, 16);
  if (region_heap != NULL && b->heap == region_heap) region_check(where, b->p);
  uint64_t seed = blk_seed(b);
  size_t bad = stress_check_sample(b->p, b->size, seed, 0, b->size);
  if (bad != SIZE_MAX) stress_fail_content(where, b->p, b->size, b->tag, seed, bad);
}

// Allocate size bytes from h (dflt: the default heap) by one of the calls that can, with random
// flags; check the block and write its pattern. SMP_NOWAIT (1 in 16) may fail with EAGAIN: the
// request is made again without it. Returns false only when may_fail and the heap refused with
// ENOMEM (a limit, a full region).
static bool blk_alloc(const char *where, stress_rng_t *r, smp_heap_t *h, size_t size, uint64_t tag,
                      bool may_fail, blk_t *b) {
  unsigned flags = 0;
  size_t align = 16;
  switch (stress_rng_below(r, 16)) {
  case 0: flags = SMP_ZERO; break;
  case 1:
    align = (size_t)1 << stress_rng_range(r, 5, 13); // 32 .. 8 KiB
    flags = SMP_ALIGN(align);
    break;
  case 2:
    align = 64;
    flags = SMP_ZERO | SMP_ALIGN(64);
    break;
  default: break;
  }
  bool nowait = stress_rng_chance(r, 1, 16);
  void *p;
  bool zero;
  const char *call;
  for (;;) {
    unsigned f = flags | (nowait ? SMP_NOWAIT : 0);
    unsigned how = (unsigned)stress_rng_below(r, h == dflt ? 6 : 3);
    errno = 0;
    zero = (f & SMP_ZERO) != 0;
    switch (how) {
    case 0:
    case 1: p = smp_heap_malloc(h, size, f), call = "smp_heap_malloc"; break;
    case 2: p = smp_heap_calloc(h, 1, size, f), call = "smp_heap_calloc", zero = true; break;
    case 3: p = smp_mallocx(size, f), call = "smp_mallocx"; break;
    case 4: p = smp_heap_malloc(NULL, size, f), call = "smp_heap_malloc(NULL)"; break;
    default:
      if (f == 0)
        p = malloc(size), call = "malloc";
      else
        p = smp_mallocx(size, f), call = "smp_mallocx";
      break;
    }
    if (p != NULL) break;
    int e = errno;
    if (nowait && e == EAGAIN) {
      atomic_fetch_add_explicit(&eagain_count, 1, memory_order_relaxed);
      nowait = false;
      continue;
    }
    if (may_fail && e == ENOMEM) {
      atomic_fetch_add_explicit(&enomem_count, 1, memory_order_relaxed);
      return false;
    }
    stress_fail("%s: %s(heap %p \"%s\", %zu bytes, flags %#x) returned NULL with errno %d (%s)",
                where, call, (void *)h, smp_heap_name(h), size, f, e, strerror(e));
  }
  smp_heap_t *got = smp_heap_of(p);
  if (got != h)
    stress_fail("%s: %s(heap %p \"%s\", %zu bytes, flags %#x) returned %p, whose smp_heap_of is %p",
                where, call, (void *)h, smp_heap_name(h), size, flags, p, (void *)got);
  stress_check_shape(where, p, size, align);
  if (region_heap != NULL && h == region_heap) region_check(where, p);
  if (zero) check_zero(p, size, 0, size);
  *b = (blk_t){p, size, tag, h};
  stress_fill_sample(p, size, blk_seed(b), 0, size);
  return true;
}

// Check and free b, by free, smp_free or smp_free_sized.
static void blk_free(const char *where, stress_rng_t *r, blk_t *b) {
  blk_check(where, b);
  switch (stress_rng_below(r, 8)) {
  case 0: smp_free(b->p); break;
  case 1: smp_free_sized(b->p, b->size); break;
  default: free(b->p); break;
  }
  b->p = NULL;
}

// Resize b to n bytes: into heap to by smp_heap_realloc, or (to NULL) in its own heap by
// smp_reallocx, now and then with SMP_ZERO. Checks the kept prefix, the zeroes past the old
// usable size, the heap of the result; writes the new pattern. Returns false (b untouched,
// checked) only when may_fail and the request failed with ENOMEM.
static bool blk_resize(const char *where, stress_rng_t *r, blk_t *b, smp_heap_t *to, size_t n,
                       bool may_fail) {
  blk_check(where, b);
  size_t old = b->size, old_usable = malloc_usable_size(b->p);
  uint64_t seed = blk_seed(b);
  unsigned flags = stress_rng_chance(r, 1, 4) ? SMP_ZERO : 0;
  smp_heap_t *want = to ? to : b->heap;
  errno = 0;
  void *q = to ? smp_heap_realloc(to, b->p, n, flags) : smp_reallocx(b->p, n, flags);
  if (q == NULL) {
    int e = errno;
    if (may_fail && e == ENOMEM) {
      atomic_fetch_add_explicit(&enomem_count, 1, memory_order_relaxed);
      blk_check(where, b);
      return false;
    }
    stress_fail("%s: %s(%p, %p of heap \"%s\", %zu -> %zu bytes, flags %#x) returned NULL with "
                "errno %d (%s)",
                where, to ? "smp_heap_realloc" : "smp_reallocx", (void *)to, b->p,
                smp_heap_name(b->heap), old, n, flags, e, strerror(e));
  }
  smp_heap_t *got = smp_heap_of(q);
  if (got != want)
    stress_fail("%s: %s(%p, %p of heap %p, %zu -> %zu bytes) returned %p of heap %p, not of heap "
                "%p \"%s\"",
                where, to ? "smp_heap_realloc" : "smp_reallocx", (void *)to, b->p,
                (void *)b->heap, old, n, q, (void *)got, (void *)want, smp_heap_name(want));
  stress_check_shape(where, q, n, 16);
  if (region_heap != NULL && want == region_heap) region_check(where, q);
  size_t keep = n < old ? n : old;
  size_t bad = stress_check_sample(q, old, seed, 0, keep);
  if (bad != SIZE_MAX) {
    char what[160];
    snprintf(what, sizeof what, "%s: resize %zu -> %zu bytes (%s) lost contents", where, old, n,
             q == b->p ? "in place" : "moved");
    stress_fail_content(what, q, keep, b->tag, seed, bad);
  }
  if ((flags & SMP_ZERO) && n > old_usable) check_zero(q, n, old_usable, n);
  b->p = q;
  b->size = n;
  b->heap = want;
  stress_fill_sample(q, n, blk_seed(b), 0, n);
  return true;
}

// Plain realloc of a block of any heap: the result may stay in the block's heap or come from the
// default one (the header promises only a block freed and resized from any thread).
static void blk_realloc_plain(const char *where, blk_t *b, size_t n) {
  blk_check(where, b);
  size_t old = b->size;
  uint64_t seed = blk_seed(b);
  void *q = realloc(b->p, n);
  if (q == NULL) stress_fail("%s: realloc(%p, %zu) returned NULL", where, b->p, n);
  smp_heap_t *got = smp_heap_of(q);
  if (got != b->heap && got != dflt)
    stress_fail("%s: realloc(%p of heap %p, %zu) returned %p of heap %p, neither its own heap "
                "nor the default one",
                where, b->p, (void *)b->heap, n, q, (void *)got);
  atomic_fetch_add_explicit(got == b->heap ? &realloc_kept : &realloc_to_default, 1,
                            memory_order_relaxed);
  size_t keep = n < old ? n : old;
  size_t bad = stress_check_sample(q, old, seed, 0, keep);
  if (bad != SIZE_MAX) stress_fail_content(where, q, keep, b->tag, seed, bad);
  b->p = q;
  b->size = n;
  b->heap = got;
  stress_check_shape(where, q, n, 16);
  stress_fill_sample(q, n, blk_seed(b), 0, n);
}

// Sizes: mostly 1..4096 (half uniform, half log-uniform), one in ten up to 256 KiB.
static size_t pick_size(stress_rng_t *r) {
  unsigned k = (unsigned)stress_rng_below(r, 20);
  if (k < 9) return (size_t)stress_rng_range(r, 1, 4096);
  if (k < 18) return (size_t)stress_rng_log(r, 1, 4096);
  return (size_t)stress_rng_log(r, 4097, 256 * KIB);
}

// ---- visiting ---------------------------------------------------------------------------

typedef struct visit {
  void **p;
  size_t *usable;
  size_t n, cap;
  size_t stop_after; // return 7 from the call that makes n reach it (0: never)
} visit_t;

static int visit_cb(void *block, size_t usable, void *arg) {
  visit_t *v = arg;
  if (usable > 0) { // fn may read the block: its first and last bytes
    volatile const unsigned char *c = block;
    (void)c[0];
    (void)c[usable - 1];
  }
  if (v->n == v->cap) return 1; // too many: the caller reports it
  v->p[v->n] = block;
  v->usable[v->n] = usable;
  v->n++;
  return v->stop_after && v->n == v->stop_after ? 7 : 0;
}

static int cmp_ptr(const void *a, const void *b) {
  uintptr_t x = (uintptr_t) * (void *const *)a, y = (uintptr_t) * (void *const *)b;
  return x < y ? -1 : x > y;
}

// smp_heap_visit(h) finds exactly the n live blocks of live (order free), each once, with its
// usable size; fn can read them (the pattern is checked from inside the visit).
static void visit_exact(const char *where, smp_heap_t *h, const blk_t *live, size_t n) {
  visit_t v = {0};
  v.cap = n + 64;
  v.p = malloc(v.cap * sizeof *v.p);
  v.usable = malloc(v.cap * sizeof *v.usable);
  void **want = malloc((n + 1) * sizeof *want);
  if (v.p == NULL || v.usable == NULL || want == NULL) stress_fail("%s: out of memory", where);
  int rc = smp_heap_visit(h, visit_cb, &v);
  if (rc == 1 && v.n == v.cap)
    stress_fail("%s: smp_heap_visit(\"%s\") found more than %zu blocks, %zu are live", where,
                smp_heap_name(h), v.cap, n);
  if (rc != 0) stress_fail("%s: smp_heap_visit(\"%s\") returned %d, not 0", where, smp_heap_name(h), rc);
  for (size_t i = 0; i < n; i++) want[i] = live[i].p;
  size_t got = v.n;
  void **seen = malloc((got + 1) * sizeof *seen);
  if (seen == NULL) stress_fail("%s: out of memory", where);
  memcpy(seen, v.p, got * sizeof *seen);
  qsort(seen, got, sizeof *seen, cmp_ptr);
  qsort(want, n, sizeof *want, cmp_ptr);
  for (size_t i = 0, j = 0; i < got || j < n;) {
    if (i + 1 < got && seen[i] == seen[i + 1])
      stress_fail("%s: smp_heap_visit(\"%s\") gave block %p twice", where, smp_heap_name(h), seen[i]);
    if (i < got && j < n && seen[i] == want[j]) {
      i++, j++;
      continue;
    }
    if (j < n && (i == got || (uintptr_t)want[j] < (uintptr_t)seen[i]))
      stress_fail("%s: smp_heap_visit(\"%s\") missed live block %p (%zu visited, %zu live)", where,
                  smp_heap_name(h), want[j], got, n);
    stress_fail("%s: smp_heap_visit(\"%s\") gave %p, which is not a live block (%zu visited, "
                "%zu live)",
                where, smp_heap_name(h), seen[i], got, n);
  }
  // Every block visited is live: its usable size can be asked.
  for (size_t i = 0; i < got; i++) {
    size_t u = malloc_usable_size(v.p[i]);
    if (u != v.usable[i])
      stress_fail("%s: smp_heap_visit(\"%s\") gave block %p usable %zu, smp_usable_size says %zu",
                  where, smp_heap_name(h), v.p[i], v.usable[i], u);
  }
  free(seen);
  for (size_t i = 0; i < n; i++) blk_check(where, &live[i]);
  free(v.p);
  free(v.usable);
  free(want);
}

static size_t visit_count(smp_heap_t *h) {
  visit_t v = {0};
  void *p[64];
  size_t u[64];
  v.p = p, v.usable = u, v.cap = 64;
  int rc = smp_heap_visit(h, visit_cb, &v);
  if (rc != 0 && !(rc == 1 && v.n == v.cap))
    stress_fail("smp_heap_visit(\"%s\") returned %d, not 0", smp_heap_name(h), rc);
  return v.n;
}

static smp_stats_t heap_stats(smp_heap_t *h) {
  smp_stats_t s;
  memset(&s, 0, sizeof s);
  s.version = SMP_STATS_VERSION;
  s.size = sizeof s;
  int rc = smp_heap_stats_get(h, &s);
  if (rc != 0) stress_fail("smp_heap_stats_get(\"%s\") returned %d", smp_heap_name(h), rc);
  if (s.version < 2 || s.size < sizeof s)
    stress_fail("smp_heap_stats_get(\"%s\") filled version %u size %u", smp_heap_name(h),
                s.version, s.size);
  return s;
}

static uint64_t heaps_alive(void) {
  smp_stats_t s;
  memset(&s, 0, sizeof s);
  s.version = SMP_STATS_VERSION;
  s.size = sizeof s;
  if (smp_stats_get(&s) != 0) stress_fail("smp_stats_get failed");
  return s.heaps;
}

// A heap whose blocks were all freed: nothing visited, nothing in use. Hardened, other
// threads' frees evict the quarantine's oldest blocks outside its lock, and a block on its way
// back still counts in its heap's in_use (lib/heap/heap.h): such an eviction is waited for (a
// block that stays counted fails after 10 s). The visit waits for evictions in flight itself.
static void check_empty(const char *where, smp_heap_t *h) {
  size_t n = visit_count(h);
  if (n != 0)
    stress_fail("%s: heap \"%s\": smp_heap_visit found %zu blocks after every block was freed",
                where, smp_heap_name(h), n);
  smp_stats_t s = heap_stats(h);
  for (double until = stress_now() + 10; s.in_use != 0 && test_hardened() && stress_now() < until;
       s = heap_stats(h))
    sched_yield();
  if (s.in_use != 0)
    stress_fail("%s: heap \"%s\": in_use %llu after every block was freed", where,
                smp_heap_name(h), (unsigned long long)s.in_use);
}

// ---- all-to-all exchange (modes shared and region) -------------------------------------

static stress_queue_t inbox[MAX_THREADS];
static _Atomic uint64_t sent_n, freed_n;
static _Atomic unsigned producers_done;
static void (*consume_fn)(stress_rng_t *r, blk_t *b);

typedef struct peer {
  unsigned self;
  stress_rng_t r;
  blk_t out[MAX_THREADS][BATCH];
  size_t nout[MAX_THREADS];
} peer_t;

static size_t drain_inbox(peer_t *me) {
  blk_t batch[BATCH];
  size_t n, total = 0;
  while ((n = stress_queue_pop(&inbox[me->self], batch, BATCH, true)) > 0) {
    for (size_t k = 0; k < n; k++) {
      consume_fn(&me->r, &batch[k]);
      atomic_fetch_add_explicit(&freed_n, 1, memory_order_relaxed);
    }
    total += n;
  }
  return total;
}

static void deliver(peer_t *me, unsigned target) {
  size_t done = 0, n = me->nout[target];
  while (done < n) {
    done += stress_queue_push(&inbox[target], me->out[target] + done, n - done, true);
    if (done < n && drain_inbox(me) == 0) sched_yield();
  }
  me->nout[target] = 0;
}

// Hand b to a random other thread (it is freed there).
static void send_blk(peer_t *me, const blk_t *b) {
  unsigned target = (unsigned)stress_rng_below(&me->r, nthreads - 1);
  if (target >= me->self) target++;
  me->out[target][me->nout[target]++] = *b;
  atomic_fetch_add_explicit(&sent_n, 1, memory_order_relaxed);
  if (me->nout[target] == BATCH) deliver(me, target);
}

// After the thread's own work: flush, then consume until every thread is done and every block
// sent was consumed.
static void exchange_finish(peer_t *me) {
  for (unsigned t = 0; t < nthreads; t++)
    if (me->nout[t]) deliver(me, t);
  atomic_fetch_add(&producers_done, 1);
  for (;;) {
    size_t got = drain_inbox(me);
    if (atomic_load(&producers_done) == nthreads && atomic_load(&freed_n) == atomic_load(&sent_n))
      break;
    if (got == 0) sched_yield();
  }
}

static void exchange_start(void (*consume)(stress_rng_t *, blk_t *)) {
  consume_fn = consume;
  atomic_store(&sent_n, 0);
  atomic_store(&freed_n, 0);
  atomic_store(&producers_done, 0);
  for (unsigned i = 0; i < nthreads; i++)
    stress_queue_init(&inbox[i], QUEUE_CAP, sizeof(blk_t));
}

static void exchange_end(void) {
  for (unsigned i = 0; i < nthreads; i++) {
    if (inbox[i].count != 0) stress_fail("inbox of thread %u not empty at the end", i);
    stress_queue_destroy(&inbox[i]);
  }
  if (atomic_load(&sent_n) != atomic_load(&freed_n))
    stress_fail("%llu blocks sent, %llu freed", (unsigned long long)atomic_load(&sent_n),
                (unsigned long long)atomic_load(&freed_n));
}

static peer_t *peer_new(unsigned self, uint64_t salt) {
  peer_t *me = calloc(1, sizeof *me);
  if (me == NULL) stress_fail("out of memory");
  me->self = self;
  stress_rng_seed(&me->r, args.seed * 1000003 + salt * 1000 + self);
  return me;
}

// ---- mode shared ------------------------------------------------------------------------

#define SHARED_SLOTS 64

static unsigned nshared;
static smp_heap_t *shared[MAX_SHARED + 1]; // [nshared] is the default heap

static smp_heap_t *pick_shared(stress_rng_t *r) {
  return shared[stress_rng_below(r, nshared + 1)];
}

static void shared_consume(stress_rng_t *r, blk_t *b) {
  unsigned k = (unsigned)stress_rng_below(r, 16);
  if (k < 10) {
    blk_free("shared: free", r, b);
    return;
  }
  if (k < 12)
    blk_resize("shared: smp_reallocx", r, b, NULL, pick_size(r), false);
  else if (k < 14)
    blk_resize("shared: smp_heap_realloc", r, b, pick_shared(r), pick_size(r), false);
  else if (k == 14)
    blk_realloc_plain("shared: realloc", b, pick_size(r));
  else
    blk_resize("shared: smp_heap_realloc(default)", r, b, dflt, pick_size(r), false);
  blk_free("shared: free after resize", r, b);
}

static void *shared_main(void *arg) {
  peer_t *me = arg;
  blk_t slots[SHARED_SLOTS] = {0};
  uint64_t ops = 0, i = 0;
  for (; stress_continue(&budget, i); i++) {
    blk_t b;
    blk_alloc("shared: alloc", &me->r, pick_shared(&me->r), pick_size(&me->r),
              ((uint64_t)me->self << 48) | i, false, &b);
    ops += 2;
    if (stress_rng_chance(&me->r, 1, 4)) {
      blk_t *s = &slots[stress_rng_below(&me->r, SHARED_SLOTS)];
      if (s->p) shared_consume(&me->r, s);
      *s = b;
    } else {
      send_blk(me, &b);
    }
    if (i % 16 == 0) drain_inbox(me);
  }
  for (unsigned s = 0; s < SHARED_SLOTS; s++)
    if (slots[s].p) shared_consume(&me->r, &slots[s]);
  exchange_finish(me);
  atomic_fetch_add(&total_ops, ops);
  free(me);
  return NULL;
}

// The end of mode shared: the heaps are empty; visit finds exactly what lives (and stops when
// told); the heaps are destroyed with blocks live and the heap count follows.
static void shared_final(uint64_t heaps_before) {
  stress_rng_t r;
  stress_rng_seed(&r, args.seed * 77 + 5);
  for (unsigned k = 0; k < nshared; k++) check_empty("shared: end", shared[k]);
  uint64_t alive = heaps_alive();
  if (alive != heaps_before + nshared)
    stress_fail("shared: smp_stats_get says %llu heaps alive, %llu before and %u created",
                (unsigned long long)alive, (unsigned long long)heaps_before, nshared);
  enum { N = 300 };
  blk_t *live = calloc(N, sizeof *live);
  if (live == NULL) stress_fail("out of memory");
  for (unsigned k = 0; k < nshared; k++) {
    smp_heap_t *h = shared[k];
    for (size_t i = 0; i < N; i++)
      blk_alloc("shared: visit", &r, h, pick_size(&r), ((uint64_t)0xfff << 48) | i, false, &live[i]);
    visit_exact("shared: visit all", h, live, N);
    size_t n = 0; // free every other block, keep the rest packed at the front
    for (size_t i = 0; i < N; i++) {
      if (i % 2)
        blk_free("shared: visit", &r, &live[i]);
      else
        live[n++] = live[i];
    }
    visit_exact("shared: visit half", h, live, n);
    visit_t v = {0};
    void *p[8];
    size_t u[8];
    v.p = p, v.usable = u, v.cap = 8, v.stop_after = 3;
    int rc = smp_heap_visit(h, visit_cb, &v);
    if (rc != 7 || v.n != 3)
      stress_fail("shared: smp_heap_visit(\"%s\") with fn returning 7 at its 3rd call returned %d "
                  "after %zu calls",
                  smp_heap_name(h), rc, v.n);
    smp_stats_t s = heap_stats(h);
    size_t asked = 0;
    for (size_t i = 0; i < n; i++) asked += live[i].size;
    if (s.in_use < asked)
      stress_fail("shared: heap \"%s\": in_use %llu with %zu blocks of %zu bytes live",
                  smp_heap_name(h), (unsigned long long)s.in_use, n, asked);
    smp_heap_destroy(h); // with n blocks live
  }
  free(live);
  alive = heaps_alive();
  if (alive != heaps_before)
    stress_fail("shared: smp_stats_get says %llu heaps alive after destroying the %u created, "
                "%llu before",
                (unsigned long long)alive, nshared, (unsigned long long)heaps_before);
}

static void run_shared(double seconds) {
  if (nthreads < 2) stress_fail("mode shared needs at least 2 threads");
  nshared = kopt ? kopt : 3;
  if (nshared > MAX_SHARED) stress_fail("at most %d shared heaps", MAX_SHARED);
  uint64_t before = heaps_alive();
  for (unsigned k = 0; k < nshared; k++) {
    char name[32];
    snprintf(name, sizeof name, "shared-%u", k);
    shared[k] = smp_heap_create(name, 0);
    if (shared[k] == NULL) stress_fail("smp_heap_create(%s): %s", name, strerror(errno));
    if (strcmp(smp_heap_name(shared[k]), name) != 0)
      stress_fail("smp_heap_name gives \"%s\" for heap \"%s\"", smp_heap_name(shared[k]), name);
  }
  shared[nshared] = dflt;
  budget = stress_budget(iters, seconds);
  exchange_start(shared_consume);
  pthread_t t[MAX_THREADS];
  for (unsigned i = 0; i < nthreads; i++) stress_thread_start(&t[i], shared_main, peer_new(i, 1));
  for (unsigned i = 0; i < nthreads; i++) stress_thread_join(t[i]);
  exchange_end();
  shared_final(before);
  fprintf(stderr, "%s: shared: %u heaps + default, %llu blocks passed between threads\n",
          stress_name, nshared, (unsigned long long)atomic_load(&sent_n));
}

// ---- mode churn -------------------------------------------------------------------------

#define CHURN_MAX_BLOCKS 256
#define WORKER_SLOTS 128
#define PRIVATE_LIMIT (1 * MIB)

static unsigned nchurners, nworkers;
static _Atomic uint64_t acked[MAX_THREADS]; // per churner: its blocks freed by workers
static _Atomic unsigned churners_done;
static _Atomic uint64_t heaps_made, private_remade;
static _Atomic uint64_t held_over_odd_limit; // heaps seen holding more than an odd limit (< 8 KiB)

// Handed to a worker: the block and the churner to acknowledge.
typedef struct handoff {
  blk_t b;
  unsigned churner;
} handoff_t;

// Sizes of mode churn: pick_size, and 1 in 128 a huge block (2..3 MiB).
static size_t churn_size(stress_rng_t *r) {
  if (stress_rng_chance(r, 1, 128)) return (size_t)stress_rng_range(r, 2 * MIB + 1, 3 * MIB);
  return pick_size(r);
}

static void *churner_main(void *arg) {
  unsigned id = (unsigned)(uintptr_t)arg;
  stress_rng_t r;
  stress_rng_seed(&r, args.seed * 1000003 + 2000 + id);
  blk_t *live = calloc(CHURN_MAX_BLOCKS, sizeof *live);
  if (live == NULL) stress_fail("out of memory");
  uint64_t handed = 0, ops = 0, seq = 0;
  for (uint64_t i = 0; stress_continue(&budget, i * 64); i++) { // a heap is ~64 operations
    char name[32];
    snprintf(name, sizeof name, "churn-%u-%llu", id, (unsigned long long)i);
    size_t limit = stress_rng_chance(&r, 1, 3) ? (size_t)stress_rng_range(&r, 256 * KIB, 4 * MIB) : 0;
    // The library keeps a limit in whole 8 KiB pages, rounded up (lib/heap/heap.c): a heap may
    // hold up to `bound` >= limit (less than 8 KiB over an odd limit), and its statistics give
    // that bound. The header's "at most limit bytes" is exact only for page multiples, so the
    // checks below use the bound, and the odd limits (half of them) keep the rounding in view.
    if (stress_rng_chance(&r, 1, 2)) limit &= ~(size_t)8191;
    size_t bound = (limit + 8191) & ~(size_t)8191;
    smp_heap_t *h = smp_heap_create(name, limit);
    if (h == NULL) stress_fail("churn: smp_heap_create(%s, %zu): %s", name, limit, strerror(errno));
    if (strcmp(smp_heap_name(h), name) != 0)
      stress_fail("churn: smp_heap_name gives \"%s\" for heap \"%s\"", smp_heap_name(h), name);
    atomic_fetch_add(&heaps_made, 1);
    size_t want = (size_t)stress_rng_range(&r, 1, CHURN_MAX_BLOCKS - 32), n = 0, asked = 0;
    uint64_t refused = 0;
    for (size_t j = 0; j < want; j++) {
      size_t size = churn_size(&r);
      if (!blk_alloc("churn: alloc", &r, h, size, ((uint64_t)(id + 1) << 48) | seq++, limit != 0,
                     &live[n])) {
        refused++;
        continue;
      }
      asked += size;
      n++;
      ops += 2;
      if (limit && asked > bound)
        stress_fail("churn: heap \"%s\" with limit %zu gave %zu blocks of %zu bytes in all", name,
                    limit, n, asked);
    }
    // A third to the workers, who free them; wait until every free returned.
    size_t kept = 0;
    uint64_t sent_now = 0;
    for (size_t j = 0; j < n; j++) {
      if (stress_rng_chance(&r, 1, 3)) {
        blk_check("churn: hand over", &live[j]);
        handoff_t m = {live[j], id};
        stress_queue_push(&inbox[stress_rng_below(&r, nworkers)], &m, 1, false);
        sent_now++;
      } else {
        live[kept++] = live[j];
      }
    }
    n = kept;
    handed += sent_now;
    double wait_until = stress_now() + 60;
    while (atomic_load(&acked[id]) != handed) {
      if (stress_now() > wait_until)
        stress_fail("churn: %llu blocks handed to workers, %llu freed after 60 s",
                    (unsigned long long)handed, (unsigned long long)atomic_load(&acked[id]));
      sched_yield();
    }
    // Some resized in place or in the heap (a limit may refuse).
    for (size_t j = 0; j < n; j++)
      if (stress_rng_chance(&r, 1, 8) &&
          blk_resize("churn: smp_reallocx", &r, &live[j], NULL, pick_size(&r), limit != 0)) {
        ops++;
      }
    visit_exact("churn: visit", h, live, n);
    smp_stats_t s = heap_stats(h);
    asked = 0;
    for (size_t j = 0; j < n; j++) asked += live[j].size;
    if (s.in_use < asked)
      stress_fail("churn: heap \"%s\": in_use %llu with %zu blocks of %zu bytes live", name,
                  (unsigned long long)s.in_use, n, asked);
    if (s.limit != limit && s.limit != bound)
      stress_fail("churn: heap \"%s\": limit %llu in its statistics, created with %zu", name,
                  (unsigned long long)s.limit, limit);
    if (limit && s.held > limit) atomic_fetch_add(&held_over_odd_limit, 1);
    if (limit && s.held > bound)
      stress_fail("churn: heap \"%s\": holds %llu bytes, over its limit %zu (%zu in pages)",
                  name, (unsigned long long)s.held, limit, bound);
    if (s.failures < refused)
      stress_fail("churn: heap \"%s\": %llu failures counted, %llu allocations were refused", name,
                  (unsigned long long)s.failures, (unsigned long long)refused);
    // Now and then the limit goes below what the heap holds: no new memory from then on.
    if (s.held > 0 && stress_rng_chance(&r, 1, 4)) {
      size_t low = (size_t)(s.held / 2);
      int rc = smp_heap_set_limit(h, low ? low : 1);
      if (rc != 0) stress_fail("churn: smp_heap_set_limit(\"%s\", %zu) returned %d", name, low, rc);
      uint64_t held = s.held;
      for (size_t j = 0; j < 32 && n < CHURN_MAX_BLOCKS; j++)
        if (blk_alloc("churn: over limit", &r, h, pick_size(&r), ((uint64_t)(id + 1) << 48) | seq++,
                      true, &live[n]))
          n++;
      s = heap_stats(h);
      if (s.held > held)
        stress_fail("churn: heap \"%s\" held %llu bytes, got more (%llu) after its limit went "
                    "down to %zu",
                    name, (unsigned long long)held, (unsigned long long)s.held, low);
    }
    for (size_t j = 0; j < n; j++) {
      if (stress_rng_chance(&r, 1, 2))
        blk_free("churn: free", &r, &live[j]);
      else
        blk_check("churn: before destroy", &live[j]);
    }
    smp_heap_destroy(h); // with about half of its blocks live
  }
  free(live);
  atomic_fetch_add(&churners_done, 1);
  atomic_fetch_add(&total_ops, ops);
  return NULL;
}

// A worker's slot: the block, or none.
static void worker_drain(stress_rng_t *r, unsigned self) {
  handoff_t batch[BATCH];
  size_t n;
  while ((n = stress_queue_pop(&inbox[self], batch, BATCH, true)) > 0) {
    for (size_t k = 0; k < n; k++) {
      blk_free("churn: worker frees a handed block", r, &batch[k].b);
      atomic_fetch_add(&acked[batch[k].churner], 1);
    }
  }
}

static smp_heap_t *private_create(unsigned self, unsigned k, uint64_t gen) {
  char name[32];
  snprintf(name, sizeof name, "private-%u-%u-%llu", self, k, (unsigned long long)gen);
  smp_heap_t *h = smp_heap_create(name, k == 1 ? PRIVATE_LIMIT : 0);
  if (h == NULL) stress_fail("churn: smp_heap_create(%s): %s", name, strerror(errno));
  return h;
}

static void *worker_main(void *arg) {
  unsigned self = (unsigned)(uintptr_t)arg;
  stress_rng_t r;
  stress_rng_seed(&r, args.seed * 1000003 + 3000 + self);
  blk_t slots[WORKER_SLOTS] = {0};
  smp_heap_t *priv[2] = {private_create(self, 0, 0), private_create(self, 1, 0)};
  uint64_t gen = 1, ops = 0;
  size_t limited_bytes = 0; // asked from priv[1], live
  for (uint64_t i = 0; stress_continue(&budget, i); i++) {
    if (i % 8 == 0) worker_drain(&r, self);
    blk_t *s = &slots[stress_rng_below(&r, WORKER_SLOTS)];
    if (s->p) {
      if (s->heap == priv[1]) limited_bytes -= s->size;
      if (stress_rng_chance(&r, 1, 8) && s->heap != priv[1])
        blk_resize("churn: worker resize", &r, s, NULL, pick_size(&r), false);
      blk_free("churn: worker free", &r, s);
      ops++;
    }
    unsigned k = (unsigned)stress_rng_below(&r, 4);
    smp_heap_t *h = k < 2 ? dflt : priv[k - 2];
    if (blk_alloc("churn: worker alloc", &r, h, pick_size(&r), ((uint64_t)(self + 1) << 48) | i,
                  h == priv[1], s)) {
      ops++;
      if (h == priv[1]) {
        limited_bytes += s->size;
        if (limited_bytes > PRIVATE_LIMIT)
          stress_fail("churn: private heap with limit %zu gave blocks of %zu bytes in all",
                      PRIVATE_LIMIT, limited_bytes);
      }
    }
    if (i % 4096 == 4095) { // a private heap destroyed with its blocks, and made again
      unsigned d = (unsigned)stress_rng_below(&r, 2);
      for (unsigned j = 0; j < WORKER_SLOTS; j++)
        if (slots[j].p && slots[j].heap == priv[d]) {
          blk_check("churn: private before destroy", &slots[j]);
          slots[j].p = NULL;
        }
      if (d == 1) {
        smp_stats_t st = heap_stats(priv[1]);
        if (st.held > PRIVATE_LIMIT)
          stress_fail("churn: private heap holds %llu bytes, over its limit %zu",
                      (unsigned long long)st.held, PRIVATE_LIMIT);
        limited_bytes = 0;
      }
      smp_heap_destroy(priv[d]);
      priv[d] = private_create(self, d, gen++);
      atomic_fetch_add(&private_remade, 1);
    }
  }
  while (atomic_load(&churners_done) != nchurners) {
    worker_drain(&r, self);
    sched_yield();
  }
  worker_drain(&r, self);
  for (unsigned j = 0; j < WORKER_SLOTS; j++)
    if (slots[j].p) blk_free("churn: worker end", &r, &slots[j]);
  for (unsigned d = 0; d < 2; d++) {
    check_empty("churn: worker end", priv[d]);
    smp_heap_destroy(priv[d]);
  }
  atomic_fetch_add(&total_ops, ops);
  return NULL;
}

static void run_churn(double seconds) {
  if (nthreads < 2) stress_fail("mode churn needs at least 2 threads");
  nchurners = kopt ? kopt : nthreads / 2;
  if (nchurners == 0 || nchurners >= nthreads)
    stress_fail("mode churn: -k churners must be 1 .. threads - 1");
  nworkers = nthreads - nchurners;
  uint64_t before = heaps_alive();
  atomic_store(&churners_done, 0);
  for (unsigned i = 0; i < nthreads; i++) {
    atomic_store(&acked[i], 0);
    stress_queue_init(&inbox[i], QUEUE_CAP, sizeof(handoff_t));
  }
  budget = stress_budget(iters, seconds);
  pthread_t t[MAX_THREADS];
  for (unsigned i = 0; i < nworkers; i++)
    stress_thread_start(&t[i], worker_main, (void *)(uintptr_t)i);
  for (unsigned i = 0; i < nchurners; i++)
    stress_thread_start(&t[nworkers + i], churner_main, (void *)(uintptr_t)i);
  for (unsigned i = 0; i < nthreads; i++) stress_thread_join(t[i]);
  for (unsigned i = 0; i < nthreads; i++) {
    if (inbox[i].count != 0) stress_fail("churn: inbox of worker %u not empty at the end", i);
    stress_queue_destroy(&inbox[i]);
  }
  uint64_t alive = heaps_alive();
  if (alive != before)
    stress_fail("churn: smp_stats_get says %llu heaps alive at the end, %llu before",
                (unsigned long long)alive, (unsigned long long)before);
  fprintf(stderr, "%s: churn: %u churners made and destroyed %llu heaps, %u workers remade %llu "
                  "private heaps; %llu heaps held more than their odd limit (within its page)\n",
          stress_name, nchurners, (unsigned long long)atomic_load(&heaps_made), nworkers,
          (unsigned long long)atomic_load(&private_remade),
          (unsigned long long)atomic_load(&held_over_odd_limit));
}

// ---- mode region ------------------------------------------------------------------------

#define REGION_SLOTS 64

static pthread_barrier_t region_barrier;
static _Atomic(smp_heap_t *) region_winner;
static _Atomic unsigned region_wins;
static void *region_base;
static size_t region_len;
static unsigned region_flags;

// Sizes of mode region: small mostly, 1 in 16 a page run (64 KiB .. 1 MiB), 1 in 64 huge.
static size_t region_size(stress_rng_t *r) {
  unsigned k = (unsigned)stress_rng_below(r, 64);
  if (k == 0) return (size_t)stress_rng_range(r, 2 * MIB + 1, 3 * MIB);
  if (k < 5) return (size_t)stress_rng_log(r, 64 * KIB + 1, MIB);
  if (k < 12) return (size_t)stress_rng_log(r, 4097, 64 * KIB);
  return (size_t)stress_rng_range(r, 1, 4096);
}

static void region_consume(stress_rng_t *r, blk_t *b) {
  unsigned k = (unsigned)stress_rng_below(r, 8);
  if (k == 0) blk_resize("region: smp_reallocx", r, b, NULL, region_size(r), true);
  if (k == 1) blk_resize("region: to default", r, b, dflt, pick_size(r), false);
  blk_free("region: free", r, b);
}

// The region is full: free half of this thread's blocks.
static void region_relieve(peer_t *me, blk_t *slots) {
  for (unsigned s = 0; s < REGION_SLOTS; s++)
    if (slots[s].p && stress_rng_chance(&me->r, 1, 2)) blk_free("region: relieve", &me->r, &slots[s]);
  drain_inbox(me);
}

static void *region_main(void *arg) {
  peer_t *me = arg;
  // Every thread tries to create the heap over the same region at once: one wins.
  pthread_barrier_wait(&region_barrier);
  errno = 0;
  smp_heap_t *h = smp_heap_create_in("region", region_base, region_len, region_flags);
  int e = errno;
  if (h != NULL) {
    atomic_fetch_add(&region_wins, 1);
    atomic_store(&region_winner, h);
  } else if (e != EINVAL) {
    stress_fail("region: smp_heap_create_in lost the race with errno %d (%s), not EINVAL", e,
                strerror(e));
  }
  pthread_barrier_wait(&region_barrier);
  if (atomic_load(&region_wins) != 1)
    stress_fail("region: %u of %u threads creating a heap over the same region succeeded",
                atomic_load(&region_wins), nthreads);
  pthread_barrier_wait(&region_barrier); // the main thread sets region_heap, then checks
  pthread_barrier_wait(&region_barrier);
  blk_t slots[REGION_SLOTS] = {0};
  uint64_t ops = 0, i = 0;
  for (; stress_continue(&budget, i); i++) {
    if (i % 16 == 0) drain_inbox(me);
    blk_t *s = &slots[stress_rng_below(&me->r, REGION_SLOTS)];
    if (s->p) {
      unsigned k = (unsigned)stress_rng_below(&me->r, 8);
      ops++;
      if (k < 4) { // freed by another thread
        send_blk(me, s);
        s->p = NULL;
      } else if (k < 6) {
        blk_free("region: local free", &me->r, s);
      } else if (k == 6) { // resized in the region and kept
        if (!blk_resize("region: local smp_reallocx", &me->r, s, NULL, region_size(&me->r), true))
          region_relieve(me, slots);
        continue;
      } else {
        region_consume(&me->r, s);
      }
    }
    if (s->p) continue;
    uint64_t tag = ((uint64_t)(me->self + 1) << 48) | i;
    bool ok;
    if (stress_rng_chance(&me->r, 1, 16)) { // moved in from the default heap
      blk_alloc("region: alloc default", &me->r, dflt, pick_size(&me->r), tag, false, s);
      ok = blk_resize("region: into the region", &me->r, s, region_heap, region_size(&me->r), true);
      if (!ok) blk_free("region: refused move", &me->r, s);
    } else {
      ok = blk_alloc("region: alloc", &me->r, region_heap, region_size(&me->r), tag, true, s);
    }
    if (!ok) {
      s->p = NULL;
      region_relieve(me, slots);
    }
    ops++;
  }
  for (unsigned k = 0; k < REGION_SLOTS; k++)
    if (slots[k].p) blk_free("region: end", &me->r, &slots[k]);
  exchange_finish(me);
  atomic_fetch_add(&total_ops, ops);
  free(me);
  return NULL;
}

// Fill the (empty) region heap with blocks of size until it refuses; every one inside. Returns
// the bytes it gave; the blocks are freed again.
static size_t region_fill(stress_rng_t *r, size_t size) {
  size_t cap = region_len / size + 16, n = 0;
  blk_t *b = malloc(cap * sizeof *b);
  if (b == NULL) stress_fail("out of memory");
  for (; n < cap; n++) {
    errno = 0;
    void *p = smp_heap_malloc(region_heap, size, 0);
    if (p == NULL) {
      if (errno != ENOMEM)
        stress_fail("region: fill with %zu-byte blocks: NULL with errno %d, not ENOMEM", size, errno);
      break;
    }
    if (smp_heap_of(p) != region_heap)
      stress_fail("region: fill: block %p has smp_heap_of %p, not the region heap", p,
                  (void *)smp_heap_of(p));
    region_check("region: fill", p);
    b[n] = (blk_t){p, size, n, region_heap};
    stress_fill_sample(p, size, blk_seed(&b[n]), 0, size < 256 ? size : 256);
  }
  if (n == cap)
    stress_fail("region: %zu blocks of %zu bytes from a region of %zu bytes", n, size, region_len);
  for (size_t i = 0; i < n; i++) {
    uint64_t seed = blk_seed(&b[i]);
    size_t bad = stress_find_bad(b[i].p, seed, 0, size < 256 ? size : 256);
    if (bad != SIZE_MAX) stress_fail_content("region: fill", b[i].p, size, b[i].tag, seed, bad);
    if (i % 2) free(b[i].p);
    else smp_free(b[i].p);
  }
  (void)r;
  free(b);
  return n * size;
}

static void run_region(double seconds) {
  if (nthreads < 2) stress_fail("mode region needs at least 2 threads");
  size_t mib = kopt ? kopt : 16;
  size_t guard = 64 * KIB, total = mib * MIB + 2 * guard;
  unsigned char *map = mmap(NULL, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (map == MAP_FAILED) stress_fail("mmap of %zu bytes: %s", total, strerror(errno));
  if (mprotect(map + guard, mib * MIB, PROT_READ | PROT_WRITE) != 0)
    stress_fail("mprotect: %s", strerror(errno));
  static const unsigned flag_sets[] = {0, SMP_REGION_META_OUTSIDE, SMP_REGION_PURGE,
                                       SMP_REGION_META_OUTSIDE | SMP_REGION_PURGE};
  enum { ROUNDS = 4 };
  stress_rng_t r;
  stress_rng_seed(&r, args.seed * 31 + 7);
  uint64_t sent_total = 0;
  for (unsigned round = 0; round < ROUNDS; round++) {
    // Odd rounds: a base and a length that are not page multiples (only whole 8 KiB pages inside
    // are used).
    size_t off = round % 2 ? 4096 + 48 : 0;
    region_base = map + guard + off;
    region_len = mib * MIB - off - (round % 2 ? 1000 : 0);
    region_flags = flag_sets[round];
    region_lo = (uintptr_t)region_base;
    region_hi = region_lo + region_len;
    memset(region_base, 0x5a, region_len); // left over from the last round, or fresh
    atomic_store(&region_winner, NULL);
    atomic_store(&region_wins, 0);
    region_heap = NULL;
    if (pthread_barrier_init(&region_barrier, NULL, nthreads + 1) != 0)
      stress_fail("pthread_barrier_init failed");
    budget = stress_budget(iters / ROUNDS, seconds / ROUNDS);
    exchange_start(region_consume);
    pthread_t t[MAX_THREADS];
    for (unsigned i = 0; i < nthreads; i++)
      stress_thread_start(&t[i], region_main, peer_new(i, 4 + round));
    pthread_barrier_wait(&region_barrier); // the race
    pthread_barrier_wait(&region_barrier); // its result
    region_heap = atomic_load(&region_winner);
    pthread_barrier_wait(&region_barrier);
    if (region_heap == NULL) stress_fail("region: no thread created the heap");
    // A second heap over part of the region must be refused while this one lives.
    errno = 0;
    smp_heap_t *dup = smp_heap_create_in("overlap", (char *)region_base + region_len / 2,
                                         region_len / 2, 0);
    if (dup != NULL || errno != EINVAL)
      stress_fail("region: smp_heap_create_in over half of a live region heap returned %p, errno "
                  "%d (wanted NULL, EINVAL)",
                  (void *)dup, errno);
    pthread_barrier_wait(&region_barrier); // go
    for (unsigned i = 0; i < nthreads; i++) stress_thread_join(t[i]);
    pthread_barrier_destroy(&region_barrier);
    exchange_end();
    sent_total += atomic_load(&sent_n);
    check_empty("region: end of round", region_heap);
    smp_stats_t s = heap_stats(region_heap);
    if (s.limit == 0 || s.limit > region_len)
      stress_fail("region: the statistics give a limit of %llu for a region of %zu bytes",
                  (unsigned long long)s.limit, region_len);
    smp_trim(); // the caches give back what they hold, so the fills can reach every page
    size_t small = region_fill(&r, 4096);
    smp_trim();
    size_t runs = region_fill(&r, 256 * KIB);
    size_t floor = region_len / (region_flags & SMP_REGION_META_OUTSIDE ? 2 : 4);
    if (small < floor || runs < floor)
      stress_fail("region: flags %#x: a region of %zu bytes gave only %zu bytes in 4 KiB blocks, "
                  "%zu in 256 KiB blocks",
                  region_flags, region_len, small, runs);
    fprintf(stderr, "%s: region round %u (flags %#x, base %p, %zu bytes): filled to %zu bytes in "
                    "4 KiB blocks, %zu in 256 KiB blocks\n",
            stress_name, round, region_flags, region_base, region_len, small, runs);
    // A block kept over the destroy: afterwards its address is nobody's.
    void *kept = smp_heap_malloc(region_heap, 100, 0);
    if (kept == NULL) stress_fail("region: no 100 bytes in an empty region heap");
    smp_heap_destroy(region_heap);
    region_heap = NULL;
    smp_heap_t *h = smp_heap_of(kept);
    if (h != NULL)
      stress_fail("region: smp_heap_of(%p) is %p after its region heap was destroyed", kept,
                  (void *)h);
  }
  if (munmap(map, total) != 0) stress_fail("munmap: %s", strerror(errno));
  fprintf(stderr, "%s: region: %d rounds of %zu MiB, %llu blocks passed between threads\n",
          stress_name, ROUNDS, mib, (unsigned long long)sent_total);
}

// ---- mode regionhuge --------------------------------------------------------------------

// Blocks over 2 MiB (the tier that gets a mapping of its own in a heap over the OS) from a region
// heap with room for them: a region heap's blocks go up to about 4 MiB (one chunk's run). Every
// thread at once asks an empty region of threads x 4 MiB + 16 MiB for a block of 2 MiB + 1 ..
// 3 MiB, grown by 512 KiB; each must come, inside the region, and be freed again; then the main
// thread asks for 8 MiB, which no region heap gives (ENOMEM). Rounds: the flag sets of mode
// region.
static _Atomic unsigned huge_refused;

static void *regionhuge_main(void *arg) {
  peer_t *me = arg;
  pthread_barrier_wait(&region_barrier);
  size_t n = (size_t)stress_rng_range(&me->r, 2 * MIB + 1, 3 * MIB);
  blk_t b;
  if (blk_alloc("regionhuge", &me->r, region_heap, n, (uint64_t)(me->self + 1) << 48, true, &b)) {
    blk_resize("regionhuge: grow", &me->r, &b, NULL, n + MIB / 2, false);
    blk_free("regionhuge", &me->r, &b);
  } else {
    char msg[256];
    int len = snprintf(msg, sizeof msg,
                       "%s: FAIL: regionhuge: a region heap of %zu bytes (at most %u blocks of "
                       "3 MiB live) refused %zu bytes with ENOMEM\n",
                       stress_name, region_len, nthreads - 1, n);
    ssize_t w = write(STDERR_FILENO, msg, (size_t)len);
    (void)w;
    atomic_fetch_add(&huge_refused, 1);
  }
  atomic_fetch_add(&total_ops, 2);
  free(me);
  return NULL;
}

static void run_regionhuge(void) {
  size_t len = (size_t)nthreads * 4 * MIB + 16 * MIB;
  void *map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (map == MAP_FAILED) stress_fail("mmap of %zu bytes: %s", len, strerror(errno));
  static const unsigned flag_sets[] = {0, SMP_REGION_META_OUTSIDE, SMP_REGION_PURGE,
                                       SMP_REGION_META_OUTSIDE | SMP_REGION_PURGE};
  stress_rng_t r;
  stress_rng_seed(&r, args.seed * 37 + 11);
  for (unsigned round = 0; round < 4; round++) {
    region_base = map;
    region_len = len;
    region_lo = (uintptr_t)map;
    region_hi = region_lo + len;
    region_heap = smp_heap_create_in("regionhuge", map, len, flag_sets[round]);
    if (region_heap == NULL) stress_fail("regionhuge: smp_heap_create_in: %s", strerror(errno));
    if (pthread_barrier_init(&region_barrier, NULL, nthreads) != 0)
      stress_fail("pthread_barrier_init failed");
    pthread_t t[MAX_THREADS];
    for (unsigned i = 0; i < nthreads; i++)
      stress_thread_start(&t[i], regionhuge_main, peer_new(i, 20 + round));
    for (unsigned i = 0; i < nthreads; i++) stress_thread_join(t[i]);
    pthread_barrier_destroy(&region_barrier);
    errno = 0;
    void *big = smp_heap_malloc(region_heap, 8 * MIB, 0);
    if (big != NULL || errno != ENOMEM)
      stress_fail("regionhuge: 8 MiB from a region heap (flags %#x): %p, errno %d, not ENOMEM",
                  flag_sets[round], big, errno);
    check_empty("regionhuge", region_heap);
    smp_heap_destroy(region_heap);
    region_heap = NULL;
  }
  munmap(map, len);
  if (atomic_load(&huge_refused))
    stress_fail("regionhuge: %u requests over 2 MiB refused by region heaps with room for them",
                atomic_load(&huge_refused));
  fprintf(stderr, "%s: regionhuge: 4 rounds, every block over 2 MiB came from its region\n",
          stress_name);
}

// ---- main -------------------------------------------------------------------------------

int main(int argc, char **argv) {
  stress_args_parse(&args, "stress_heaps",
                    "  -m shared|churn|region|regionhuge|all  (all: the first three, a third of the\n"
                    "     time each; regionhuge: blocks over 2 MiB from region heaps, not timed)\n"
                    "  -t threads  -n operations per thread (each mode its share)  -s seconds\n"
                    "  -k shared: heaps (3); churn: creating threads (threads/2); region: MiB (16);\n"
                    "     all: not used (each mode's default)",
                    argc, argv);
  stress_require_smpalloc();
  nthreads = args.threads;
  if (nthreads > MAX_THREADS) stress_fail("at most %d threads", MAX_THREADS);
  dflt = smp_heap_default();
  if (dflt == NULL || strcmp(smp_heap_name(dflt), "default") != 0)
    stress_fail("smp_heap_default() is %p named \"%s\"", (void *)dflt,
                dflt ? smp_heap_name(dflt) : "");
  double started = stress_now();
  bool all = strcmp(args.mode, "all") == 0;
  double share = all ? args.seconds / 3 : args.seconds;
  iters = all ? args.iters / 3 : args.iters;
  kopt = all ? 0 : args.extra;
  if (all || strcmp(args.mode, "shared") == 0) run_shared(share);
  if (all || strcmp(args.mode, "churn") == 0) run_churn(share);
  if (all || strcmp(args.mode, "region") == 0) run_region(share);
  if (strcmp(args.mode, "regionhuge") == 0) run_regionhuge();
  if (!all && strcmp(args.mode, "shared") != 0 && strcmp(args.mode, "churn") != 0 &&
      strcmp(args.mode, "region") != 0 && strcmp(args.mode, "regionhuge") != 0)
    stress_fail("unknown mode %s (shared, churn, region, regionhuge or all)", args.mode);
  uint64_t ops = atomic_load(&total_ops);
  if (ops == 0) stress_fail("no operations were made");
  fprintf(stderr, "%s: SMP_NOWAIT answered EAGAIN %llu times; ENOMEM from limits and regions %llu "
                  "times; plain realloc kept the heap %llu times, moved to the default heap %llu\n",
          stress_name, (unsigned long long)atomic_load(&eagain_count),
          (unsigned long long)atomic_load(&enomem_count), (unsigned long long)atomic_load(&realloc_kept),
          (unsigned long long)atomic_load(&realloc_to_default));
  stress_ok(ops, nthreads, started);
  return 0;
}
