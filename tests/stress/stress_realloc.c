// stress_realloc: realloc chains that wander across every size and every thread. A chain
// starts with a tiny block, grows by random steps (1 byte up to doubling) to a peak (a quarter
// of the chains reach 16 MiB, the rest a log-uniform peak), then shrinks by random steps back
// to a few bytes and is freed. At random points a thread hands its chain to another thread,
// which checks it and carries on, so a block is resized and freed by threads that did not
// allocate it, across small classes, page-heap runs and dedicated mappings (mremap).
// The pattern is derived from the chain's tag alone (a block moves), and byte i always holds
// the same value, so contents must survive every realloc. Blocks above 64 KiB are patterned
// on the sample (see stress_common.h); after each step the sample of the old size, clipped to
// the new size, is checked, and the part of the new sample not yet written is written.
// Checks: contents, alignment 16, usable size after every step; every chain ends freed.
#include "stress_common.h"

#define MAX_THREADS 64
#define INBOX_CAP 8

typedef struct chain {
  void *p;
  size_t size, peak;
  uint64_t tag, seed;
  bool shrinking;
  unsigned hops; // threads it has visited after the first
} chain_t;

typedef struct inbox {
  pthread_mutex_t lock;
  chain_t items[INBOX_CAP];
  unsigned count;
} inbox_t;

static stress_args_t args = {.threads = 4, .iters = 250, .seconds = 6, .seed = 1, .extra = 16};
static stress_budget_t budget;
static inbox_t inboxes[MAX_THREADS];
static _Atomic uint64_t live_chains, total_ops, total_hops, total_chains;
static size_t max_size;

static bool inbox_push(unsigned to, const chain_t *c) {
  inbox_t *b = &inboxes[to];
  pthread_mutex_lock(&b->lock);
  bool ok = b->count < INBOX_CAP;
  if (ok) b->items[b->count++] = *c;
  pthread_mutex_unlock(&b->lock);
  return ok;
}

static bool inbox_pop(unsigned self, chain_t *c) {
  inbox_t *b = &inboxes[self];
  pthread_mutex_lock(&b->lock);
  bool ok = b->count > 0;
  if (ok) *c = b->items[--b->count];
  pthread_mutex_unlock(&b->lock);
  return ok;
}

static void check_prefix(const char *where, const chain_t *c, size_t old, size_t upto) {
  size_t bad = stress_check_sample(c->p, old, c->seed, 0, upto);
  if (bad != SIZE_MAX) {
    char what[96];
    snprintf(what, sizeof what, "%s (%zu -> %zu bytes, hop %u)", where, old, c->size, c->hops);
    stress_fail_content(what, c->p, old < c->size ? old : c->size, c->tag, c->seed, bad);
  }
}

// Resize c to n bytes and re-establish the invariant "the sample of c->size is patterned".
static void step(chain_t *c, size_t n) {
  size_t old = c->size;
  void *q = realloc(c->p, n);
  if (q == NULL) stress_fail("realloc(%p, %zu) returned NULL (from %zu bytes)", c->p, n, old);
  c->p = q;
  c->size = n;
  stress_check_shape("realloc", q, n, 16);
  check_prefix("realloc lost contents", c, old, n < old ? n : old);
  if (n > old) {
    stress_fill_sample(q, n, c->seed, old, n); // the newly exposed part
  } else if (n > STRESS_DENSE_MAX) {
    stress_fill_sample(q, n, c->seed, n - STRESS_EDGE, n); // the new tail of the sample
  } else if (old > STRESS_DENSE_MAX) {
    stress_fill_sample(q, n, c->seed, 0, n); // sampled -> dense: write the gaps
  }
}

// A chain starts from realloc(NULL, n), malloc, calloc or aligned_alloc (alignment up to 64 KiB:
// realloc must keep the contents of aligned blocks too, though not their alignment).
static void chain_start(chain_t *c, stress_rng_t *r, uint64_t tag) {
  size_t n = (size_t)stress_rng_range(r, 1, 16), align = 16;
  void *p;
  switch (stress_rng_below(r, 8)) {
  case 0: case 1: case 2: p = realloc(NULL, n); break;
  case 3: case 4: case 5: p = malloc(n); break;
  case 6:
    p = calloc(1, n);
    if (p) stress_check_zero("chain start", p, n);
    break;
  default:
    align = (size_t)1 << stress_rng_range(r, 5, 16);
    p = aligned_alloc(align, n);
    break;
  }
  if (p == NULL) stress_fail("chain start: allocation of %zu bytes returned NULL", n);
  stress_check_shape("chain start", p, n, align);
  size_t peak = stress_rng_chance(r, 1, 4) ? max_size : (size_t)stress_rng_log(r, 32, max_size);
  *c = (chain_t){p, n, peak, tag, stress_mix64(tag ^ 0xc4a1), false, 0};
  stress_fill_sample(p, n, c->seed, 0, n);
}

static void chain_end(chain_t *c, stress_rng_t *r) {
  check_prefix("chain end", c, c->size, c->size);
  if (stress_rng_chance(r, 1, 4)) {
    void *q = realloc(c->p, 0); // frees, and returns NULL as glibc's does (or a minimal block)
    free(q);
  } else {
    free(c->p);
  }
  atomic_fetch_add(&total_hops, c->hops);
  atomic_fetch_sub(&live_chains, 1);
}

// Run c until it ends (true) or is handed to another thread (false).
static bool chain_run(chain_t *c, unsigned self, stress_rng_t *r, uint64_t *ops) {
  for (;;) {
    if (stress_budget_expired(&budget) || (c->shrinking && c->size <= 16)) {
      chain_end(c, r);
      return true;
    }
    size_t n;
    if (!c->shrinking) {
      n = c->size + (size_t)stress_rng_log(r, 1, c->size);
      if (n >= c->peak) {
        n = c->peak;
        c->shrinking = true;
      }
    } else {
      n = c->size - (size_t)stress_rng_log(r, 1, c->size / 2 ? c->size / 2 : 1);
      if (n == 0) n = 1;
    }
    step(c, n);
    (*ops)++;
    if (args.threads > 1 && stress_rng_chance(r, 1, 24)) {
      unsigned to = (unsigned)stress_rng_below(r, args.threads - 1);
      if (to >= self) to++;
      chain_t moved = *c;
      moved.hops++;
      if (inbox_push(to, &moved)) return false;
    }
  }
}

static void *worker(void *arg) {
  unsigned self = (unsigned)(uintptr_t)arg;
  stress_rng_t r;
  stress_rng_seed(&r, args.seed * 1000 + self);
  uint64_t started = 0, ops = 0;
  for (;;) {
    chain_t c;
    if (inbox_pop(self, &c)) {
      check_prefix("handed-over chain", &c, c.size, c.size); // written by another thread
      stress_check_shape("handed-over chain", c.p, c.size, 16);
    } else if (started < args.iters && !stress_budget_expired(&budget)) {
      atomic_fetch_add(&live_chains, 1);
      atomic_fetch_add(&total_chains, 1);
      chain_start(&c, &r, ((uint64_t)self << 48) | started++);
      ops++;
    } else if (atomic_load(&live_chains) == 0) {
      break; // no chain exists anywhere, so none can arrive
    } else {
      sched_yield();
      continue;
    }
    chain_run(&c, self, &r, &ops);
  }
  atomic_fetch_add(&total_ops, ops);
  return NULL;
}

int main(int argc, char **argv) {
  stress_args_parse(&args, "stress_realloc",
                    "  -t threads  -n chains started per thread  -k peak size in MiB  -s time cap",
                    argc, argv);
  stress_require_smpalloc();
  if (args.threads > MAX_THREADS) stress_fail("at most %d threads", MAX_THREADS);
  if (args.extra == 0) stress_fail("-k: peak must be at least 1 MiB");
  max_size = (size_t)args.extra << 20;
  for (unsigned i = 0; i < args.threads; i++) pthread_mutex_init(&inboxes[i].lock, NULL);
  double started = stress_now();
  budget = stress_budget(UINT64_MAX, args.seconds);
  pthread_t t[MAX_THREADS];
  for (unsigned i = 0; i < args.threads; i++) stress_thread_start(&t[i], worker, (void *)(uintptr_t)i);
  for (unsigned i = 0; i < args.threads; i++) stress_thread_join(t[i]);
  if (atomic_load(&live_chains) != 0) stress_fail("%llu chains left over", (unsigned long long)atomic_load(&live_chains));
  for (unsigned i = 0; i < args.threads; i++)
    if (inboxes[i].count) stress_fail("inbox %u not empty at the end", i);
  if (args.verbose)
    fprintf(stderr, "stress_realloc: %llu chains, %llu hand-overs\n",
            (unsigned long long)atomic_load(&total_chains), (unsigned long long)atomic_load(&total_hops));
  stress_ok(atomic_load(&total_ops), args.threads, started);
  return 0;
}
