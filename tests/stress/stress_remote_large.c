// stress_remote_large: large blocks that change threads. Small blocks freed elsewhere go through
// the remote-free lists (stress_prodcons); page runs and huge blocks freed or realloc'd by any
// thread go straight to the page heap (lib/pages/pageheap.c, one lock) or the huge table (lib/heap/large.c,
// its lock), reading span descriptors and page-map entries the allocating thread's calls wrote.
// A failure shows contents or a size that did not survive the hand-over, or page-heap/huge-table
// state one thread changed under another.
// Mode "pc": half the threads produce page runs (64 KiB+1 .. 2 MiB; 1/16 huge up to 4 MiB, 1/16
// small; some by calloc, checked zero, some by aligned_alloc, 16 KiB .. 1 MiB) and pass them in
// batches through small bounded queues to the other half, which check each and free it (1/3),
// realloc it to a random tier and free it (1/3), or realloc it and return it to its producer,
// which checks and frees it (1/3). Mode "hop": 2 chains per thread (-k) circulate; a thread
// takes one from its inbox, checks it, reallocs it once across a tier boundary (small <-> page
// run <-> huge) and passes it on, so every realloc runs on a thread that did not make the
// block's current version; after 8..24 steps it is freed and a new one started. (stress_realloc
// hands chains over only now and then, after small steps.) Mode "all" (default): pc, then hop,
// half of the time and iterations each.
// Checks: the pattern (seeded by the tag, so it survives moves) at every hand-over, on the kept
// prefix after every realloc, before every free; usable size and alignment; each block produced
// is freed exactly once (counts per producer); every chain ends.
#include "stress_move.h"

#define MAX_THREADS 64
#define BATCH 4
#define QUEUE_CAP 8

static stress_args_t args = {.threads = 4, .iters = 6000, .seconds = 3, .seed = 1, .mode = "all"};
static const size_t huge_max = 4 * STRESS_MIB;
static stress_budget_t budget;
static unsigned nthreads;
static _Atomic uint64_t total_ops;

// A queued block (the tag's top 16 bits name the thread that made it).
typedef struct msg {
  stress_mblock_t b;
  size_t align;        // pc: alignment asked at production (checked once: realloc drops it)
  unsigned steps_left; // hop: reallocs before the chain ends
} msg_t;

// ---- mode pc ----------------------------------------------------------------------------

static unsigned nprod, ncons;
static stress_queue_t to_consumer[MAX_THREADS], to_producer[MAX_THREADS]; // of msg_t
static _Atomic uint64_t produced[MAX_THREADS], freed[MAX_THREADS];
static _Atomic unsigned producers_done, consumers_done;

static unsigned producer_of(const msg_t *m) {
  unsigned id = (unsigned)(m->b.tag >> 48);
  if (id >= nprod)
    stress_fail("block %p carries a bad tag %#llx", m->b.p, (unsigned long long)m->b.tag);
  return id;
}

static void final_free(const char *where, msg_t *m) {
  unsigned id = producer_of(m);
  stress_mblock_free(where, &m->b);
  atomic_fetch_add_explicit(&freed[id], 1, memory_order_relaxed);
}

static void produce(stress_rng_t *r, unsigned id, uint64_t seq, msg_t *m) {
  unsigned k = (unsigned)stress_rng_below(r, 16);
  int tier = k == 0 ? STRESS_TIER_HUGE : k == 1 ? STRESS_TIER_SMALL : STRESS_TIER_RUN;
  size_t n = stress_tier_size(r, tier, huge_max), align = 16;
  void *p;
  switch (stress_rng_below(r, 8)) {
  case 0:
    p = calloc(1, n);
    if (p) stress_check_zero("remote_large: calloc", p, n);
    break;
  case 1:
    align = (size_t)1 << stress_rng_range(r, 14, 20);
    p = aligned_alloc(align, n);
    break;
  default: p = malloc(n); break;
  }
  stress_mblock_init(&m->b, "remote_large: produce", p, n, align, ((uint64_t)id << 48) | seq);
  m->align = align;
}

static unsigned drain_returns(unsigned id) {
  msg_t m[BATCH];
  unsigned n, total = 0;
  while ((n = (unsigned)stress_queue_pop(&to_producer[id], m, BATCH, true)) > 0) {
    for (unsigned i = 0; i < n; i++) final_free("remote_large: returned block", &m[i]);
    total += n;
  }
  return total;
}

static void *producer_main(void *arg) {
  unsigned id = (unsigned)(uintptr_t)arg;
  stress_rng_t r;
  stress_rng_seed(&r, args.seed * 1000 + id);
  msg_t batch[BATCH];
  unsigned nb = 0;
  uint64_t i = 0, ops = 0;
  for (; stress_continue(&budget, i); i++) {
    produce(&r, id, i, &batch[nb++]);
    ops++;
    if (nb == BATCH) {
      stress_queue_push(&to_consumer[stress_rng_below(&r, ncons)], batch, nb, false);
      atomic_fetch_add(&produced[id], nb);
      nb = 0;
      ops += drain_returns(id);
    }
  }
  if (nb) {
    stress_queue_push(&to_consumer[stress_rng_below(&r, ncons)], batch, nb, false);
    atomic_fetch_add(&produced[id], nb);
  }
  // The last producer closes the consumers' queues; returns keep coming until they are done.
  if (atomic_fetch_add(&producers_done, 1) + 1 == nprod)
    for (unsigned c = 0; c < ncons; c++) stress_queue_close(&to_consumer[c]);
  while (atomic_load(&consumers_done) < ncons)
    if (drain_returns(id) == 0) sched_yield();
  ops += drain_returns(id);
  atomic_fetch_add(&total_ops, ops);
  return NULL;
}

static void consume(stress_rng_t *r, msg_t *m, uint64_t *ops) {
  stress_check_shape("remote_large: consume", m->b.p, m->b.size, m->align);
  stress_mblock_check("remote_large: consume", &m->b);
  unsigned what = (unsigned)stress_rng_below(r, 3);
  if (what > 0) {
    int tier = (int)stress_rng_below(r, 3);
    size_t n = stress_tier_size(r, tier, huge_max);
    stress_mblock_resize("remote_large: consumer realloc", &m->b, n);
    (*ops)++;
  }
  if (what == 2 && stress_queue_push(&to_producer[producer_of(m)], m, 1, true) == 1) return;
  final_free("remote_large: consume", m);
  (*ops)++;
}

static void *consumer_main(void *arg) {
  unsigned id = (unsigned)(uintptr_t)arg;
  stress_rng_t r;
  stress_rng_seed(&r, args.seed * 1000 + 500 + id);
  msg_t batch[BATCH];
  unsigned n;
  uint64_t ops = 0;
  while ((n = (unsigned)stress_queue_pop(&to_consumer[id], batch, BATCH, false)) > 0)
    for (unsigned k = 0; k < n; k++) consume(&r, &batch[k], &ops);
  atomic_fetch_add(&consumers_done, 1);
  atomic_fetch_add(&total_ops, ops);
  return NULL;
}

static void run_pc(uint64_t iters, double seconds) {
  if (nthreads < 2) stress_fail("mode pc needs at least 2 threads");
  nprod = (nthreads + 1) / 2;
  ncons = nthreads - nprod;
  budget = stress_budget(iters, seconds);
  pthread_t t[MAX_THREADS];
  for (unsigned i = 0; i < nprod; i++) stress_queue_init(&to_producer[i], QUEUE_CAP, sizeof(msg_t));
  for (unsigned i = 0; i < ncons; i++) stress_queue_init(&to_consumer[i], QUEUE_CAP, sizeof(msg_t));
  for (unsigned i = 0; i < ncons; i++)
    stress_thread_start(&t[nprod + i], consumer_main, (void *)(uintptr_t)i);
  for (unsigned i = 0; i < nprod; i++)
    stress_thread_start(&t[i], producer_main, (void *)(uintptr_t)i);
  for (unsigned i = 0; i < nthreads; i++) stress_thread_join(t[i]);
  for (unsigned i = 0; i < nprod; i++) {
    uint64_t p = atomic_load(&produced[i]), f = atomic_load(&freed[i]);
    if (p != f)
      stress_fail("producer %u: %llu blocks produced, %llu freed", i, (unsigned long long)p,
                  (unsigned long long)f);
    if (to_producer[i].count) stress_fail("return queue of producer %u not empty", i);
  }
  for (unsigned i = 0; i < nprod; i++) stress_queue_destroy(&to_producer[i]);
  for (unsigned i = 0; i < ncons; i++) stress_queue_destroy(&to_consumer[i]);
}

// ---- mode hop ---------------------------------------------------------------------------

static stress_queue_t inbox[MAX_THREADS]; // of msg_t; holds every chain, so a push never waits long
static _Atomic uint64_t live_chains, chains_started, chain_steps;
static unsigned chains_per_thread;

static void pass_on(stress_rng_t *r, unsigned self, const msg_t *c) {
  unsigned to = (unsigned)stress_rng_below(r, nthreads - 1);
  if (to >= self) to++;
  stress_queue_push(&inbox[to], c, 1, false);
}

// The caller has counted the chain in live_chains already: the inboxes close when the count
// reaches 0, so it must never touch 0 while a chain is on its way.
static void start_chain(stress_rng_t *r, unsigned self, uint64_t seq) {
  int tier = (int)stress_rng_below(r, 3);
  size_t n = stress_tier_size(r, tier, huge_max);
  msg_t c = {.align = 16, .steps_left = (unsigned)stress_rng_range(r, 8, 24)};
  uint64_t tag = ((uint64_t)self << 48) | seq;
  stress_mblock_init(&c.b, "remote_large: chain start", malloc(n), n, 16, tag);
  atomic_fetch_add(&chains_started, 1);
  pass_on(r, self, &c);
}

static void *hop_main(void *arg) {
  unsigned self = (unsigned)(uintptr_t)arg;
  stress_rng_t r;
  stress_rng_seed(&r, args.seed * 1000 + 700 + self);
  uint64_t seq = 0, ops = 0;
  for (; seq < chains_per_thread; seq++) start_chain(&r, self, seq), ops++;
  for (;;) {
    msg_t c;
    if (stress_queue_pop(&inbox[self], &c, 1, false) == 0) break; // closed: no chain is left
    stress_mblock_check("remote_large: chain arrived", &c.b);
    if (c.steps_left == 0 || stress_budget_expired(&budget)) {
      stress_mblock_free("remote_large: chain end", &c.b);
      ops++;
      if (!stress_budget_expired(&budget) && atomic_load(&chains_started) < budget.max_iters)
        start_chain(&r, self, seq++), ops++; // takes over this chain's count
      else if (atomic_fetch_sub(&live_chains, 1) == 1) // the last chain ended
        for (unsigned i = 0; i < nthreads; i++) stress_queue_close(&inbox[i]);
      continue;
    }
    int from = stress_tier_of(c.b.size);
    int to = (from + 1 + (int)stress_rng_below(&r, 2)) % 3;
    stress_mblock_resize("remote_large: chain step", &c.b, stress_tier_size(&r, to, huge_max));
    c.steps_left--;
    ops++;
    atomic_fetch_add_explicit(&chain_steps, 1, memory_order_relaxed);
    pass_on(&r, self, &c);
  }
  atomic_fetch_add(&total_ops, ops);
  return NULL;
}

static void run_hop(uint64_t chains, double seconds) {
  if (nthreads < 2) stress_fail("mode hop needs at least 2 threads");
  chains_per_thread = args.extra ? args.extra : 2;
  budget = stress_budget(chains, seconds);
  unsigned cap = nthreads * chains_per_thread + 1;
  if (cap > 64) stress_fail("mode hop: at most 63 chains in all (-k per thread)");
  for (unsigned i = 0; i < nthreads; i++) stress_queue_init(&inbox[i], cap, sizeof(msg_t));
  atomic_store(&live_chains, (uint64_t)nthreads * chains_per_thread); // the first chains
  pthread_t t[MAX_THREADS];
  for (unsigned i = 0; i < nthreads; i++)
    stress_thread_start(&t[i], hop_main, (void *)(uintptr_t)i);
  for (unsigned i = 0; i < nthreads; i++) stress_thread_join(t[i]);
  if (atomic_load(&live_chains) != 0)
    stress_fail("%llu chains left over", (unsigned long long)atomic_load(&live_chains));
  for (unsigned i = 0; i < nthreads; i++)
    if (inbox[i].count) stress_fail("inbox %u not empty at the end", i);
  for (unsigned i = 0; i < nthreads; i++) stress_queue_destroy(&inbox[i]);
}

int main(int argc, char **argv) {
  stress_args_parse(&args, "stress_remote_large",
                    "  -m pc|hop|all  producer/consumer of large blocks, realloc chains that hop\n"
                    "  -t threads  -n blocks per producer (pc) / chains in all (hop)\n"
                    "  -k chains per thread at once (hop, default 2)  -s time cap",
                    argc, argv);
  stress_require_smpalloc();
  nthreads = args.threads;
  if (nthreads > MAX_THREADS) stress_fail("at most %d threads", MAX_THREADS);
  double started = stress_now();
  bool pc = strcmp(args.mode, "pc") == 0, hop = strcmp(args.mode, "hop") == 0;
  bool all = strcmp(args.mode, "all") == 0;
  if (!pc && !hop && !all) stress_fail("unknown mode %s (pc, hop or all)", args.mode);
  if (pc || all) run_pc(all ? args.iters / 2 : args.iters, all ? args.seconds / 2 : args.seconds);
  if (hop || all)
    run_hop(all ? args.iters / 8 : args.iters / 4, all ? args.seconds / 2 : args.seconds);
  if (args.verbose)
    fprintf(stderr, "stress_remote_large: %llu chains, %llu chain steps\n",
            (unsigned long long)atomic_load(&chains_started),
            (unsigned long long)atomic_load(&chain_steps));
  if (atomic_load(&total_ops) == 0) stress_fail("no operations ran");
  stress_ok(atomic_load(&total_ops), nthreads, started);
  return 0;
}
