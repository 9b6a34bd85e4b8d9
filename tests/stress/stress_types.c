// stress_types: malloc types (include/smpalloc.h, "Malloc types") under threads, every block
// checked. -t worker threads allocate typed blocks of 6 types, two of them with heaps of their
// own (SMP_TYPE_OWN_HEAP, made by whichever threads race to allocate first), of random sizes
// from 1 byte to 300 KiB, some aligned, some zeroed, a fifth from a shared heap of their own
// (where every type's blocks carry the header), keep some, resize
// some (realloc or smp_realloc_type) and send the rest to the next thread through a queue, which
// frees them (smp_free_type or plain free). Every block's type is checked (smp_type_of) and its
// pattern before every free. Half the workers exit and are replaced now and then, so their
// per-thread records are given up and taken over. A reader thread meanwhile calls
// smp_type_stats_get and smp_type_foreach (lock-free sums racing the writers: ThreadSanitizer
// sees every access) and checks what can be checked while blocks move: frees never exceed
// requests seen later, high water never falls. At the end, with the threads joined: per type,
// requests = the program's count of allocations, frees = requests, blocks = in_use = 0, and the
// high-water mark at least the largest block allocated.
#include "stress_common.h"

#include "smpalloc.h"

#define NTYPES 6
#define MAX_THREADS 32
#define KEEP 64
#define KIB ((size_t)1024)

SMP_TYPE_DEFINE(T_CONN, "conn", "connections");
SMP_TYPE_DEFINE(T_KEY, "key", "keys");
SMP_TYPE_DEFINE(T_VALUE, "value", "values");
SMP_TYPE_DEFINE_FLAGS(T_SECRET, "secret", "cleared when freed", SMP_TYPE_ZERO_ON_FREE);
SMP_TYPE_DEFINE_FLAGS(T_NODE, "node", "pages of their own", SMP_TYPE_OWN_HEAP);
SMP_TYPE_DEFINE_FLAGS(T_OWN_SECRET, "own_secret", "pages of their own, cleared when freed",
                      SMP_TYPE_OWN_HEAP | SMP_TYPE_ZERO_ON_FREE);
static smp_type_t *const types[NTYPES] = {T_CONN, T_KEY, T_VALUE, T_SECRET, T_NODE, T_OWN_SECRET};

static stress_args_t args = {.threads = 4, .iters = 200000, .seconds = 3, .seed = 1};
static stress_budget_t budget;
static smp_heap_t *shared_heap;
static _Atomic uint64_t allocated[NTYPES], largest[NTYPES], total_ops;
static _Atomic bool stop_reader;

typedef struct typed_item {
  void *p;
  size_t size;
  uint64_t tag;
  unsigned type;
} typed_item_t;

static stress_queue_t queues[MAX_THREADS];

static void check_type(const char *where, void *p, unsigned type) {
  if (smp_type_of(p) != types[type])
    stress_fail("%s: block %p: smp_type_of is not type %s", where, p, types[type]->name);
}

static void release(const char *where, typed_item_t *it, stress_rng_t *rng) {
  check_type(where, it->p, it->type);
  stress_block_check(where, it->p, it->size, 16, it->tag);
  if (stress_rng_chance(rng, 1, 2)) smp_free_type(it->p, types[it->type]);
  else free(it->p);
}

static typed_item_t make(stress_rng_t *rng, uint64_t tag) {
  typed_item_t it = {.tag = tag, .type = (unsigned)stress_rng_below(rng, NTYPES)};
  it.size = stress_rng_chance(rng, 1, 50) ? stress_rng_range(rng, 64 * KIB, 300 * KIB)
                                          : stress_rng_log(rng, 1, 4096);
  unsigned flags = stress_rng_chance(rng, 1, 8) ? SMP_ALIGN(64) : 0;
  if (stress_rng_chance(rng, 1, 8)) flags |= SMP_ZERO;
  it.p = stress_rng_chance(rng, 1, 5) ? smp_heap_malloc_type(shared_heap, it.size, types[it.type], flags)
                                      : smp_malloc_type(it.size, types[it.type], flags);
  if (it.p == NULL) stress_fail("smp_malloc_type(%zu) failed: errno %d", it.size, errno);
  if (flags & SMP_ZERO) stress_check_zero("zeroed", it.p, it.size);
  stress_block_fill("alloc", it.p, it.size, (flags & SMP_ALIGN(64)) ? 64 : 16, tag);
  check_type("alloc", it.p, it.type);
  atomic_fetch_add(&allocated[it.type], 1);
  uint64_t big = atomic_load(&largest[it.type]);
  while (it.size > big && !atomic_compare_exchange_weak(&largest[it.type], &big, it.size)) {
  }
  return it;
}

typedef struct worker {
  unsigned index;
  uint64_t seed, ops;
} worker_t;

static void *work(void *arg) {
  worker_t *w = arg;
  stress_rng_t rng;
  stress_rng_seed(&rng, w->seed);
  typed_item_t kept[KEEP];
  unsigned nkept = 0;
  stress_queue_t *in = &queues[w->index], *out = &queues[(w->index + 1) % args.threads];
  uint64_t tag = (uint64_t)w->index << 40 | (w->seed & 0xffffff) << 16;
  uint64_t i = 0;
  for (; i < w->ops && !stress_budget_expired(&budget); i++) {
    typed_item_t it = make(&rng, tag++);
    if (stress_rng_chance(&rng, 1, 10)) { // resize, keeping the type and the kept prefix
      size_t size = stress_rng_log(&rng, 1, 8192);
      stress_block_check("before realloc", it.p, it.size, 16, it.tag);
      void *q = stress_rng_chance(&rng, 1, 2) ? realloc(it.p, size)
                                              : smp_realloc_type(it.p, size, types[it.type], 0);
      if (q == NULL) stress_fail("realloc to %zu failed", size);
      size_t keep = size < it.size ? size : it.size;
      size_t bad = stress_check_sample(q, it.size, stress_seed(it.p, it.size, it.tag), 0, keep);
      if (bad != SIZE_MAX) stress_fail("realloc lost byte %zu of %zu", bad, keep);
      check_type("realloc", q, it.type);
      if (q != it.p) atomic_fetch_add(&allocated[it.type], 1); // a move is a request (and a free)
      it.p = q;
      it.size = size;
      it.tag = tag++;
      stress_block_fill("realloc", it.p, it.size, 16, it.tag);
    }
    if (nkept < KEEP && stress_rng_chance(&rng, 1, 3)) {
      kept[nkept++] = it;
    } else if (stress_queue_push(out, &it, 1, true) != 1) {
      release("local free", &it, &rng);
    }
    if (nkept == KEEP || stress_rng_chance(&rng, 1, 16)) {
      unsigned n = (unsigned)stress_rng_below(&rng, nkept + 1);
      while (n--) release("kept free", &kept[--nkept], &rng);
    }
    typed_item_t got;
    while (stress_queue_pop(in, &got, 1, true) == 1) release("remote free", &got, &rng);
  }
  while (nkept) release("final free", &kept[--nkept], &rng);
  atomic_fetch_add(&total_ops, i);
  return NULL;
}

static int count_type(const smp_type_t *t, const smp_type_stats_t *s, void *arg) {
  if (strcmp(t->name, s->name) != 0) stress_fail("smp_type_foreach: type %s, stats of %s", t->name, s->name);
  (*(unsigned *)arg)++;
  return 0;
}

// Lock-free readers racing the writers. While blocks move, sums read thread by thread are not
// exact; what must hold: each counter is a sum of counts that only grow, so requests and frees
// read later are not smaller than read earlier, and the high-water mark never falls.
static void *read_stats(void *arg) {
  (void)arg;
  uint64_t last_requests[NTYPES] = {0}, last_frees[NTYPES] = {0}, last_high[NTYPES] = {0};
  while (!atomic_load(&stop_reader)) {
    for (unsigned t = 0; t < NTYPES; t++) {
      smp_type_stats_t s = {.version = SMP_TYPE_STATS_VERSION, .size = sizeof s};
      if (smp_type_stats_get(types[t], &s) != 0) stress_fail("smp_type_stats_get failed");
      if (s.requests < last_requests[t] || s.frees < last_frees[t] || s.high_water < last_high[t])
        stress_fail("type %s: a counter went back: requests %llu < %llu, frees %llu < %llu, or "
                    "high water %llu < %llu", s.name, (unsigned long long)s.requests,
                    (unsigned long long)last_requests[t], (unsigned long long)s.frees,
                    (unsigned long long)last_frees[t], (unsigned long long)s.high_water,
                    (unsigned long long)last_high[t]);
      last_requests[t] = s.requests;
      last_frees[t] = s.frees;
      last_high[t] = s.high_water;
    }
    unsigned seen = 0;
    smp_type_foreach(count_type, &seen);
    if (seen > NTYPES) stress_fail("smp_type_foreach saw %u types", seen);
  }
  return NULL;
}

int main(int argc, char **argv) {
  stress_args_parse(&args, "stress_types", "typed blocks across threads; -n ops per thread", argc, argv);
  stress_require_smpalloc();
  if (args.threads > MAX_THREADS) args.threads = MAX_THREADS;
  budget = stress_budget(args.iters, args.seconds);
  shared_heap = smp_heap_create("typed", 0);
  if (shared_heap == NULL) stress_fail("smp_heap_create failed");
  for (unsigned i = 0; i < args.threads; i++) stress_queue_init(&queues[i], 256, sizeof(typed_item_t));
  pthread_t reader;
  pthread_create(&reader, NULL, read_stats, NULL);
  // Generations: every worker runs a share of -n; half of them are replaced between generations
  // (their records given up), the others run on in the next generation as new threads too.
  for (unsigned gen = 0; gen < 4 && !stress_budget_expired(&budget); gen++) {
    pthread_t t[MAX_THREADS];
    worker_t w[MAX_THREADS];
    for (unsigned i = 0; i < args.threads; i++) {
      w[i] = (worker_t){i, args.seed * 1000 + gen * 100 + i, args.iters / 4};
      pthread_create(&t[i], NULL, work, &w[i]);
    }
    for (unsigned i = 0; i < args.threads; i++) pthread_join(t[i], NULL);
    stress_rng_t rng;
    stress_rng_seed(&rng, gen);
    for (unsigned i = 0; i < args.threads; i++) { // what the last ones sent and nobody took
      typed_item_t got;
      while (stress_queue_pop(&queues[i], &got, 1, true) == 1) release("drain", &got, &rng);
    }
  }
  atomic_store(&stop_reader, true);
  pthread_join(reader, NULL);
  for (unsigned t = 0; t < NTYPES; t++) {
    smp_type_stats_t s = {.version = SMP_TYPE_STATS_VERSION, .size = sizeof s};
    smp_type_stats_get(types[t], &s);
    uint64_t want = atomic_load(&allocated[t]);
    if (s.requests != want || s.frees != want || s.blocks != 0 || s.in_use != 0 ||
        s.high_water < atomic_load(&largest[t]) || s.failures != 0)
      stress_fail("type %s at the end: requests %llu (made %llu), frees %llu, blocks %llu, in use "
                  "%llu, high water %llu (largest block %llu), failures %llu",
                  s.name, (unsigned long long)s.requests, (unsigned long long)want,
                  (unsigned long long)s.frees, (unsigned long long)s.blocks,
                  (unsigned long long)s.in_use, (unsigned long long)s.high_water,
                  (unsigned long long)atomic_load(&largest[t]), (unsigned long long)s.failures);
  }
  unsigned seen = 0;
  smp_type_foreach(count_type, &seen);
  if (seen != NTYPES) stress_fail("smp_type_foreach saw %u types, want %d", seen, NTYPES);
  smp_heap_destroy(shared_heap);
  printf("stress_types: %llu ops, %u threads, ok\n", (unsigned long long)atomic_load(&total_ops),
         args.threads);
  return 0;
}
