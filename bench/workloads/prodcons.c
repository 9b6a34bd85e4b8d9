// Workload: producer/consumer (after xmalloc). P producer threads allocate blocks and pass
// them through bounded single-producer/single-consumer rings to P consumer threads, which
// check and free them: every free is a remote free. Prints throughput and peak RSS.
// Usage: prodcons [pairs=2] [blocks per producer=2000000] [max size=256]
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "workload.h"

enum { RING = 4096 };

typedef struct ring {
  _Atomic size_t head; // consumer
  char pad1[56];
  _Atomic size_t tail; // producer
  char pad2[56];
  void *slot[RING];
} ring_t;

static long per_producer;
static size_t max_size;

static void *produce(void *arg) {
  ring_t *r = arg;
  uint64_t x = (uintptr_t)r | 1;
  for (long i = 0; i < per_producer; i++) {
    size_t n = 16 + (size_t)(workload_rand(&x) % (max_size - 15));
    uintptr_t *p = malloc(n);
    if (p) p[0] = (uintptr_t)p * 31; // a NULL is passed on all the same: the consumer counts on it
    else workload_fail("prodcons: malloc(%zu) failed", n);
    size_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
    while (t - atomic_load_explicit(&r->head, memory_order_acquire) == RING) sched_yield();
    r->slot[t % RING] = p;
    atomic_store_explicit(&r->tail, t + 1, memory_order_release);
  }
  return NULL;
}

static void *consume(void *arg) {
  ring_t *r = arg;
  for (long i = 0; i < per_producer; i++) {
    size_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
    while (atomic_load_explicit(&r->tail, memory_order_acquire) == h) sched_yield();
    uintptr_t *p = r->slot[h % RING];
    atomic_store_explicit(&r->head, h + 1, memory_order_release);
    if (p && p[0] != (uintptr_t)p * 31) workload_fail("prodcons: block %p corrupted", (void *)p);
    free(p);
  }
  return NULL;
}

int main(int argc, char **argv) {
  unsigned pairs = argc > 1 ? (unsigned)atoi(argv[1]) : 2;
  per_producer = argc > 2 ? atol(argv[2]) : 2000000;
  max_size = argc > 3 ? (size_t)atol(argv[3]) : 256;
  ring_t *rings = aligned_alloc(64, pairs * sizeof *rings);
  pthread_t *t = malloc(2 * pairs * sizeof *t);
  for (unsigned i = 0; i < pairs; i++) atomic_init(&rings[i].head, 0), atomic_init(&rings[i].tail, 0);
  double t0 = workload_now();
  for (unsigned i = 0; i < pairs; i++) {
    if (pthread_create(&t[2 * i], NULL, produce, &rings[i]) != 0) return 2;
    if (pthread_create(&t[2 * i + 1], NULL, consume, &rings[i]) != 0) return 2;
  }
  for (unsigned i = 0; i < 2 * pairs; i++) pthread_join(t[i], NULL);
  double secs = workload_now() - t0;
  printf("prodcons pairs=%u blocks=%ld max=%zu time=%.3f s mops=%.2f peak_rss=%ld KiB %s\n", pairs,
         per_producer * pairs, max_size, secs, (double)per_producer * pairs / secs / 1e6,
         workload_peak_rss_kib(), workload_failures() ? "FAILED" : "ok");
  free(t);
  free(rings);
  return workload_failures() ? 1 : 0;
}
