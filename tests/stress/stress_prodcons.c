// stress_prodcons: blocks allocated by one thread and freed by another, so almost every free
// is a remote free (it reaches the allocating thread's spans through the remote-free lists).
// Mode "pc": P producers allocate blocks of random sizes (mostly 1..4096 bytes, one in ten up to
// 256 KiB, some aligned up to 4 KiB) and pass them in batches through bounded mutex queues to C
// consumers, which verify and free them. Mode "all": every thread produces to every other thread
// and consumes its own inbox; pushes never block (a full inbox makes the pusher drain its own
// first), so the ring of threads cannot deadlock.
// Checks: pattern, alignment and usable size of every block at free; per-producer counts of
// blocks sent and freed agree at the end (nothing lost, nothing delivered twice).
#include "stress_common.h"

#define BATCH 32
#define QUEUE_CAP 1024
#define MAX_THREADS 256

static stress_args_t args = {.threads = 4, .iters = 600000, .seconds = 6, .seed = 1, .mode = "pc"};
static stress_budget_t budget;
static unsigned nthreads, nproducers, nconsumers;
static stress_queue_t queues[MAX_THREADS]; // pc: one per consumer; all: one per thread
static _Atomic uint64_t sent[MAX_THREADS], freed[MAX_THREADS]; // per producer
static _Atomic uint64_t total_sent, total_freed;
static _Atomic unsigned producers_done;

// Sizes: mostly 1..4096 (half uniform, half log-uniform), one in ten 4 KiB..256 KiB.
static size_t pick_size(stress_rng_t *r) {
  unsigned k = (unsigned)stress_rng_below(r, 20);
  if (k < 9) return (size_t)stress_rng_range(r, 1, 4096);
  if (k < 18) return (size_t)stress_rng_log(r, 1, 4096);
  return (size_t)stress_rng_log(r, 4097, 256 * 1024);
}

// The queue items carry the alignment, stored in the tag's top bits so the item stays three
// words and every consumer can check it.
static void *produce(stress_rng_t *r, unsigned id, uint64_t seq, stress_item_t *out) {
  size_t size = pick_size(r), align = 16;
  void *p;
  if (stress_rng_chance(r, 1, 16)) {
    align = (size_t)1 << stress_rng_range(r, 5, 12); // 32 .. 4096
    p = aligned_alloc(align, size);
  } else {
    p = malloc(size);
  }
  uint64_t tag = ((uint64_t)__builtin_ctzll(align) << 56) | ((uint64_t)id << 40) | seq;
  stress_block_fill("produce", p, size, align, tag);
  *out = (stress_item_t){p, size, tag};
  return p;
}

static void consume(const stress_item_t *it) {
  size_t align = (size_t)1 << (it->tag >> 56);
  unsigned id = (unsigned)((it->tag >> 40) & 0xffff);
  if (id >= nthreads) stress_fail("consume: item %p has a bad tag %#llx", it->p, (unsigned long long)it->tag);
  stress_block_check("consume", it->p, it->size, align, it->tag);
  free(it->p);
  atomic_fetch_add_explicit(&freed[id], 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&total_freed, 1, memory_order_relaxed);
}

// ---- mode pc ----------------------------------------------------------------------------

static void *producer_main(void *arg) {
  unsigned id = (unsigned)(uintptr_t)arg;
  stress_rng_t r;
  stress_rng_seed(&r, args.seed * 1000 + id);
  stress_item_t batch[BATCH];
  size_t nb = 0;
  uint64_t i = 0;
  for (; stress_continue(&budget, i); i++) {
    produce(&r, id, i, &batch[nb++]);
    if (nb == BATCH) {
      stress_queue_push(&queues[stress_rng_below(&r, nconsumers)], batch, nb, false);
      atomic_fetch_add(&sent[id], nb);
      nb = 0;
    }
  }
  if (nb) {
    stress_queue_push(&queues[stress_rng_below(&r, nconsumers)], batch, nb, false);
    atomic_fetch_add(&sent[id], nb);
  }
  return NULL;
}

static void *consumer_main(void *arg) {
  stress_queue_t *q = &queues[(uintptr_t)arg];
  stress_item_t batch[BATCH];
  size_t n;
  while ((n = stress_queue_pop(q, batch, BATCH, false)) > 0)
    for (size_t k = 0; k < n; k++) consume(&batch[k]);
  return NULL;
}

static void run_pc(void) {
  if (nthreads < 2) stress_fail("mode pc needs at least 2 threads");
  nproducers = (nthreads + 1) / 2;
  nconsumers = nthreads - nproducers;
  pthread_t t[MAX_THREADS];
  for (unsigned c = 0; c < nconsumers; c++)
    stress_queue_init(&queues[c], QUEUE_CAP, sizeof(stress_item_t));
  for (unsigned c = 0; c < nconsumers; c++)
    stress_thread_start(&t[nproducers + c], consumer_main, (void *)(uintptr_t)c);
  for (unsigned p = 0; p < nproducers; p++)
    stress_thread_start(&t[p], producer_main, (void *)(uintptr_t)p);
  for (unsigned p = 0; p < nproducers; p++) stress_thread_join(t[p]);
  for (unsigned c = 0; c < nconsumers; c++) stress_queue_close(&queues[c]);
  for (unsigned c = 0; c < nconsumers; c++) stress_thread_join(t[nproducers + c]);
  for (unsigned c = 0; c < nconsumers; c++) stress_queue_destroy(&queues[c]);
}

// ---- mode all ---------------------------------------------------------------------------

static size_t drain_inbox(unsigned self) {
  stress_item_t batch[BATCH];
  size_t n, total = 0;
  while ((n = stress_queue_pop(&queues[self], batch, BATCH, true)) > 0) {
    for (size_t k = 0; k < n; k++) consume(&batch[k]);
    total += n;
  }
  return total;
}

// Deliver a whole batch to target's inbox without ever blocking on it.
static void deliver(unsigned self, unsigned target, stress_item_t *b, size_t n) {
  size_t done = 0;
  while (done < n) {
    done += stress_queue_push(&queues[target], b + done, n - done, true);
    if (done < n && drain_inbox(self) == 0) sched_yield();
  }
  atomic_fetch_add(&sent[self], n);
  atomic_fetch_add(&total_sent, n);
}

static void *peer_main(void *arg) {
  unsigned self = (unsigned)(uintptr_t)arg;
  stress_rng_t r;
  stress_rng_seed(&r, args.seed * 1000 + self);
  stress_item_t (*batches)[BATCH] = calloc(nthreads, sizeof *batches); // one per target
  size_t *nb = calloc(nthreads, sizeof *nb);
  if (batches == NULL || nb == NULL) stress_fail("peer: out of memory");
  for (uint64_t i = 0; stress_continue(&budget, i); i++) {
    unsigned target = (unsigned)stress_rng_below(&r, nthreads - 1);
    if (target >= self) target++; // any thread but self
    produce(&r, self, i, &batches[target][nb[target]++]);
    if (nb[target] == BATCH) {
      deliver(self, target, batches[target], BATCH);
      nb[target] = 0;
    }
    if (i % 16 == 0) drain_inbox(self);
  }
  for (unsigned t = 0; t < nthreads; t++)
    if (nb[t]) deliver(self, t, batches[t], nb[t]);
  atomic_fetch_add(&producers_done, 1);
  // Keep consuming until every thread has finished producing and every block is freed.
  for (;;) {
    size_t got = drain_inbox(self);
    if (atomic_load(&producers_done) == nthreads &&
        atomic_load(&total_freed) == atomic_load(&total_sent))
      break;
    if (got == 0) sched_yield();
  }
  free(batches);
  free(nb);
  return NULL;
}

static void run_all(void) {
  if (nthreads < 2) stress_fail("mode all needs at least 2 threads");
  pthread_t t[MAX_THREADS];
  for (unsigned i = 0; i < nthreads; i++)
    stress_queue_init(&queues[i], QUEUE_CAP, sizeof(stress_item_t));
  for (unsigned i = 0; i < nthreads; i++) stress_thread_start(&t[i], peer_main, (void *)(uintptr_t)i);
  for (unsigned i = 0; i < nthreads; i++) stress_thread_join(t[i]);
  for (unsigned i = 0; i < nthreads; i++) {
    if (queues[i].count != 0) stress_fail("inbox of thread %u not empty at the end", i);
    stress_queue_destroy(&queues[i]);
  }
}

int main(int argc, char **argv) {
  stress_args_parse(&args, "stress_prodcons",
                    "  -m pc|all  producers->consumers, or all-to-all\n"
                    "  -t threads (pc: half produce, half consume)  -n blocks per producer\n"
                    "  -s time cap in seconds",
                    argc, argv);
  stress_require_smpalloc();
  nthreads = args.threads;
  if (nthreads > MAX_THREADS) stress_fail("at most %d threads", MAX_THREADS);
  double started = stress_now();
  budget = stress_budget(args.iters, args.seconds);
  if (strcmp(args.mode, "pc") == 0)
    run_pc();
  else if (strcmp(args.mode, "all") == 0)
    run_all();
  else
    stress_fail("unknown mode %s (pc or all)", args.mode);
  uint64_t ops = 0;
  for (unsigned i = 0; i < nthreads; i++) {
    uint64_t s = atomic_load(&sent[i]), f = atomic_load(&freed[i]);
    if (s != f) stress_fail("producer %u: %llu blocks sent, %llu freed", i,
                            (unsigned long long)s, (unsigned long long)f);
    ops += 2 * s; // one malloc, one free
  }
  if (ops == 0) stress_fail("no blocks were produced");
  stress_ok(ops, nthreads, started);
  return 0;
}
