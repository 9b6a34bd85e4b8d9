// stress_sizes: every size at once. T threads each keep a working set of K slots; each step
// replaces a random slot with a new block whose size is log-uniform over 1 byte .. 8 MiB (so
// small classes, page-heap runs and dedicated mappings are all live together), after checking
// the old block. The new block comes from malloc (3/4), calloc (1/8: must read as zero in full)
// or aligned_alloc/posix_memalign (1/8: a power-of-two alignment from 16 bytes to 1 MiB). One
// step in 64 frees the slot without refilling it, so the working set's size varies too. One
// step in 512 calls malloc_trim(0), and one in 512 mallinfo2(), while the others run.
// Memory: about T * K * 0.5 MiB resident (every page of a sampled block is touched).
// Checks: pattern, alignment and usable size of every block before free; zero of calloc.
#include "stress_common.h"

typedef struct slot {
  void *p;
  size_t size, align;
  uint64_t tag;
} slot_t;

static stress_args_t args = {.threads = 4, .iters = 2000, .seconds = 6, .seed = 1, .extra = 32};
static stress_budget_t budget;
static _Atomic uint64_t total_ops;
static const size_t max_size = (size_t)8 << 20;

static void slot_release(slot_t *s) {
  if (s->p == NULL) return;
  stress_block_check("sizes", s->p, s->size, s->align, s->tag);
  free(s->p);
  s->p = NULL;
}

static void slot_fill(slot_t *s, stress_rng_t *r, uint64_t tag) {
  size_t size = (size_t)stress_rng_log(r, 1, max_size), align = 16;
  unsigned kind = (unsigned)stress_rng_below(r, 8);
  void *p;
  if (kind == 0) {
    // calloc, sometimes as count * size with a count > 1.
    size_t count = stress_rng_chance(r, 1, 2) ? 1 : (size_t)stress_rng_range(r, 2, 16);
    size = size / count ? size / count * count : count;
    p = calloc(count, size / count);
    if (p == NULL) stress_fail("calloc(%zu, %zu) returned NULL", count, size / count);
    stress_check_zero("sizes: calloc", p, size);
  } else if (kind == 1) {
    align = (size_t)1 << stress_rng_range(r, 4, 20); // 16 B .. 1 MiB
    if (stress_rng_chance(r, 1, 2)) {
      p = aligned_alloc(align, size);
    } else {
      int rc = posix_memalign(&p, align, size);
      if (rc != 0) stress_fail("posix_memalign(%zu, %zu) failed: %s", align, size, strerror(rc));
    }
  } else {
    p = malloc(size);
  }
  stress_block_fill("sizes", p, size, align, tag);
  *s = (slot_t){p, size, align, tag};
}

static void *worker(void *arg) {
  unsigned id = (unsigned)(uintptr_t)arg;
  stress_rng_t r;
  stress_rng_seed(&r, args.seed * 1000 + id);
  slot_t *slots = calloc(args.extra, sizeof *slots);
  if (slots == NULL) stress_fail("worker: out of memory");
  uint64_t i = 0, ops = 0;
  for (; stress_continue(&budget, i); i++) {
    slot_t *s = &slots[stress_rng_below(&r, args.extra)];
    if (s->p) ops++;
    slot_release(s);
    if (stress_rng_chance(&r, 1, 64)) continue;
    slot_fill(s, &r, ((uint64_t)id << 48) | i);
    ops++;
    // Rarely, trim (releases free spans and purges pages under the other threads' feet) or read
    // the statistics while the other threads run.
    if (stress_rng_chance(&r, 1, 512)) malloc_trim(0);
    if (stress_rng_chance(&r, 1, 512)) {
      struct mallinfo2 mi = mallinfo2(); // a snapshot, not exact while others run: not checked
      (void)mi;
    }
  }
  for (unsigned k = 0; k < args.extra; k++) {
    if (slots[k].p) ops++;
    slot_release(&slots[k]);
  }
  free(slots);
  atomic_fetch_add(&total_ops, ops);
  return NULL;
}

int main(int argc, char **argv) {
  stress_args_parse(&args, "stress_sizes",
                    "  -t threads  -n steps per thread  -k slots per thread  -s time cap",
                    argc, argv);
  stress_require_smpalloc();
  if (args.extra == 0) stress_fail("need at least one slot (-k)");
  double started = stress_now();
  budget = stress_budget(args.iters, args.seconds);
  pthread_t *t = calloc(args.threads, sizeof *t);
  if (t == NULL) stress_fail("out of memory");
  for (unsigned i = 0; i < args.threads; i++) stress_thread_start(&t[i], worker, (void *)(uintptr_t)i);
  for (unsigned i = 0; i < args.threads; i++) stress_thread_join(t[i]);
  free(t);
  stress_ok(atomic_load(&total_ops), args.threads, started);
  return 0;
}
