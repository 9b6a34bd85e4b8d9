// Workload: thread churn. Main starts threads in waves of T and joins each wave before the next;
// every thread lives only for a few hundred allocations. A thread first checks and frees the
// blocks a thread of the previous wave (now exited) left for it, then allocates its blocks
// (log-uniform sizes, 31 in 32 of 16 B..1 KiB, 1 in 32 of 1..32 KiB, every byte written), frees
// them in random order but for 1 in LEAVE, which it leaves to a thread of the next wave, and
// exits. An allocator pays here for what it sets up and tears down per thread (a heap, a cache,
// its registration), and for blocks freed after the thread that allocated them is gone.
// Checks every block's address tag, size, last word and a middle byte before it is freed, that
// no block malloc returns carries a live block's pattern (footprint_block_new_checked), and that
// as many blocks were freed as allocated.
// Prints threads started per second and peak RSS.
// Usage: thread_churn [threads per wave=2] [threads in all=10000] [allocations per thread=300]
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "footprint.h"
#include "workload.h"

enum { LEAVE = 8 };
static const uint64_t KEY = 0x2127599bf4325c37ull; // one key: blocks outlive their thread

typedef struct carry {
  uint64_t **block; // a thread's leftovers, freed by a thread of the next wave
  size_t n;
} carry_t;

typedef struct worker {
  pthread_t tid;
  unsigned slot;
  uint64_t seed;
  carry_t *in, *out;        // in: left by the previous wave; out: for the next
  size_t allocated, freed;  // owner only, summed after join
} worker_t;

static size_t allocs;

static void check_free(worker_t *w, uint64_t *p) {
  if (!footprint_block_ok(p, KEY, 1))
    workload_fail("thread_churn: slot %u: block %p corrupted", w->slot, (void *)p);
  footprint_block_free(p);
  w->freed++;
}

static void *run(void *arg) {
  worker_t *w = arg;
  for (size_t i = 0; i < w->in->n; i++) check_free(w, w->in->block[i]);
  w->in->n = 0;
  uint64_t **set = malloc(allocs * sizeof *set);
  if (!set) {
    workload_fail("thread_churn: slot %u: malloc(%zu) failed", w->slot, allocs * sizeof *set);
    return NULL;
  }
  size_t n = 0;
  for (size_t i = 0; i < allocs; i++) {
    size_t size = workload_rand(&w->seed) % 32 == 0 ? footprint_size_log(&w->seed, 1024, 32768)
                                                     : footprint_size_log(&w->seed, 16, 1024);
    int live = 0;
    if (!(set[n] = footprint_block_new_checked(size, KEY, 1, &live))) {
      workload_fail("thread_churn: slot %u: malloc(%zu) failed", w->slot, size);
      continue;
    }
    if (live)
      workload_fail("thread_churn: slot %u: malloc returned %p, a block still live", w->slot,
                    (void *)set[n]);
    n++, w->allocated++;
  }
  while (n > 0) { // take a random one out: free it, or leave it to the next wave
    size_t k = (size_t)(workload_rand(&w->seed) % n);
    uint64_t *p = set[k];
    set[k] = set[--n];
    if (w->out->n < allocs / LEAVE && workload_rand(&w->seed) % LEAVE == 0)
      w->out->block[w->out->n++] = p;
    else
      check_free(w, p);
  }
  free(set);
  return NULL;
}

int main(int argc, char **argv) {
  unsigned wave = argc > 1 ? (unsigned)atoi(argv[1]) : 2;
  long total = argc > 2 ? atol(argv[2]) : 10000;
  allocs = argc > 3 ? (size_t)atol(argv[3]) : 300;
  if (wave < 1 || total < 1 || allocs < LEAVE) {
    fprintf(stderr, "usage: thread_churn [threads per wave] [threads in all] "
                    "[allocations per thread >= %d]\n", LEAVE);
    return 2;
  }
  worker_t *w = calloc(wave, sizeof *w);
  carry_t *carry = calloc(2 * (size_t)wave, sizeof *carry); // two sets: waves alternate
  if (!w || !carry) return 2;
  for (unsigned i = 0; i < 2 * wave; i++)
    if (!(carry[i].block = malloc(allocs / LEAVE * sizeof *carry[i].block))) return 2;
  for (unsigned i = 0; i < wave; i++) w[i].slot = i, w[i].seed = 0x9e3779b97f4a7c15ull * (i + 1);
  double t0 = workload_now();
  long started = 0;
  for (long v = 0; started < total; v++) {
    unsigned now = total - started < wave ? (unsigned)(total - started) : wave;
    for (unsigned i = 0; i < now; i++) {
      // Take the leftovers of the previous wave's next slot: not this slot's own thread's.
      w[i].in = &carry[(size_t)((v + 1) % 2) * wave + (i + 1) % wave];
      w[i].out = &carry[(size_t)(v % 2) * wave + i];
      if (pthread_create(&w[i].tid, NULL, run, &w[i]) != 0) {
        fprintf(stderr, "thread_churn: cannot start a thread\n");
        return 2;
      }
    }
    for (unsigned i = 0; i < now; i++) pthread_join(w[i].tid, NULL);
    started += now;
  }
  double secs = workload_now() - t0;
  size_t allocated = 0, freed = 0;
  for (unsigned i = 0; i < wave; i++) { // what the last waves left: main frees it
    for (unsigned s = 0; s < 2; s++) {
      carry_t *c = &carry[(size_t)s * wave + i];
      for (size_t k = 0; k < c->n; k++) check_free(&w[i], c->block[k]);
      free(c->block);
    }
    allocated += w[i].allocated, freed += w[i].freed;
  }
  if (freed != allocated)
    workload_fail("thread_churn: %zu blocks allocated but %zu freed", allocated, freed);
  long failures = workload_failures();
  printf("thread_churn wave=%u threads=%ld allocs=%zu time=%.3f s threads_per_s=%.0f "
         "peak_rss=%ld KiB %s\n",
         wave, total, allocs, secs, (double)total / secs, workload_peak_rss_kib(),
         failures ? "FAILED" : "ok");
  free(carry);
  free(w);
  return failures ? 1 : 0;
}
