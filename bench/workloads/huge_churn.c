// Workload: huge blocks allocated and freed again and again (buffers of several MiB: images,
// decompression windows, serialised messages), the case where an allocator that maps every
// such block afresh pays a page fault per page each time. Each of T threads keeps a set of
// LIVE blocks; an iteration picks a slot at random, allocates a replacement of a size uniform
// in [min, max] MiB, writes one word into every 4 KiB page of it (as a program that fills a
// buffer touches every page), then checks and frees the block it replaces (allocate first,
// then free: what assigning a new buffer to a smart pointer does). At the end the threads free
// what they hold.
// Checks: word 0 of a block holds its address xor a key and word 1 its size; the word written
// in each page holds its address xor a second key; the last word holds the size xor the
// key. Every page word, the size and the last word are checked before the block is freed, a
// block's word 0 is wiped before it is freed, and a block malloc returns may not carry a live
// block's word 0 (a block handed out twice); blocks freed are counted against blocks allocated.
// Prints time (all iterations of all threads) and peak_rss.
// Usage: huge_churn [threads=2] [iterations per thread=2000] [live blocks per thread=8]
//                   [min MiB=5] [max MiB=25]
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "workload.h"

enum { PAGE = 4096, MAX_LIVE = 256 };
// Two keys: a page word must never read as a block's word 0 when a later block starts there.
static const uint64_t KEY = 0x9e3779b97f4a7c15ull, PAGE_KEY = 0xc2b2ae3d27d4eb4full;

typedef struct worker {
  pthread_t tid;
  unsigned id;
  size_t allocated, freed; // written by the worker, read after join
} worker_t;

static long iterations;
static unsigned live_count;
static size_t min_size, max_size;

// A new block of n bytes (n >= PAGE) with its pattern, or NULL if malloc failed.
static uint64_t *block_new(worker_t *w, size_t n) {
  uint64_t *p = malloc(n);
  if (p == NULL) {
    workload_fail("huge_churn: thread %u: malloc(%zu) failed", w->id, n);
    return NULL;
  }
  __asm__("" : "+r"(p)); // the compiler must not assume the fresh block's contents
  if (*(volatile uint64_t *)p == ((uintptr_t)p ^ KEY))
    workload_fail("huge_churn: thread %u: malloc returned %p, a block still live", w->id, (void *)p);
  char *c = (char *)p;
  for (size_t off = PAGE; off + 16 <= n; off += PAGE)
    *(uint64_t *)(c + off) = ((uintptr_t)(c + off)) ^ PAGE_KEY;
  p[0] = (uintptr_t)p ^ KEY;
  p[1] = n;
  uint64_t last = n ^ KEY;
  memcpy(c + n - 8, &last, 8);
  w->allocated++;
  return p;
}

static void block_check_free(worker_t *w, uint64_t *p) {
  if (p == NULL) return;
  char *c = (char *)p;
  size_t n = p[1];
  uint64_t last;
  int ok = p[0] == ((uintptr_t)p ^ KEY) && n >= min_size && n <= max_size;
  if (ok) {
    memcpy(&last, c + n - 8, 8);
    ok = last == (n ^ KEY);
  }
  for (size_t off = PAGE; ok && off + 16 <= n; off += PAGE)
    ok = *(uint64_t *)(c + off) == (((uintptr_t)(c + off)) ^ PAGE_KEY);
  if (!ok) workload_fail("huge_churn: thread %u: block %p corrupted", w->id, (void *)p);
  *(volatile uint64_t *)p = 0;
  free(p);
  w->freed++;
}

static void *run(void *arg) {
  worker_t *w = arg;
  uint64_t seed = 0xd1b54a32d192ed03ull * (w->id + 1);
  uint64_t *live[MAX_LIVE] = {0};
  for (long i = 0; i < iterations; i++) {
    uint64_t r = workload_rand(&seed);
    size_t n = min_size + (size_t)(workload_rand(&seed) % (max_size - min_size + 1));
    unsigned slot = (unsigned)(r % live_count);
    uint64_t *p = block_new(w, n);
    block_check_free(w, live[slot]);
    live[slot] = p;
  }
  for (unsigned k = 0; k < live_count; k++) block_check_free(w, live[k]);
  return NULL;
}

int main(int argc, char **argv) {
  unsigned threads = argc > 1 ? (unsigned)atoi(argv[1]) : 2;
  iterations = argc > 2 ? atol(argv[2]) : 2000;
  live_count = argc > 3 ? (unsigned)atoi(argv[3]) : 8;
  long min_mib = argc > 4 ? atol(argv[4]) : 5;
  long max_mib = argc > 5 ? atol(argv[5]) : 25;
  if (threads < 1 || iterations < 1 || live_count < 1 || live_count > MAX_LIVE || min_mib < 1 ||
      max_mib < min_mib) {
    fprintf(stderr, "usage: huge_churn [threads] [iterations per thread] [live blocks per thread "
                    "<= %d] [min MiB >= 1] [max MiB >= min]\n", MAX_LIVE);
    return 2;
  }
  min_size = (size_t)min_mib << 20;
  max_size = (size_t)max_mib << 20;
  worker_t *w = calloc(threads, sizeof *w);
  if (!w) return 2;
  for (unsigned i = 0; i < threads; i++) w[i].id = i;
  double t0 = workload_now();
  for (unsigned i = 0; i < threads; i++)
    if (pthread_create(&w[i].tid, NULL, run, &w[i]) != 0) return 2;
  for (unsigned i = 0; i < threads; i++) pthread_join(w[i].tid, NULL);
  double secs = workload_now() - t0;
  size_t allocated = 0, freed = 0;
  for (unsigned i = 0; i < threads; i++) allocated += w[i].allocated, freed += w[i].freed;
  if (freed != allocated)
    workload_fail("huge_churn: %zu blocks allocated but %zu freed", allocated, freed);
  long failures = workload_failures();
  printf("huge_churn threads=%u iterations=%ld live=%u sizes=%ld..%ld MiB allocated=%zu "
         "time=%.3f s peak_rss=%ld KiB %s\n",
         threads, iterations, live_count, min_mib, max_mib, allocated, secs,
         workload_peak_rss_kib(), failures ? "FAILED" : "ok");
  free(w);
  return failures ? 1 : 0;
}
