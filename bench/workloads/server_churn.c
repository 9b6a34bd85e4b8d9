// Workload (footprint): a server-like churn whose working set rises and falls in phases. Each
// thread keeps a set of live requests (sizes log-uniform, 49 in 50 of 16 B..4 KiB, 1 in 50 of
// 4..256 KiB, every byte written); each operation allocates, frees, or replaces one to follow
// the phase's target. One release in eight hands the request to the next thread, which adopts it
// into its own set and frees it later (a remote free). The target per thread, over the run:
//   grow 0 -> peak, hold, shrink -> 10%, hold, grow -> peak, hold, shrink -> 10%, then hold at
//   10% for the last 59% of the operations.
// At the end each thread frees all but 1 in 50 of peak (the live set a server keeps between
// bursts), the threads are joined, and the final RSS is read: memory an allocator keeps for
// reuse instead of returning shows there. Every block is checked (address tag, size, last word,
// a middle byte) before it is freed.
// Prints: time, peak_rss (VmHWM), rss_final (VmRSS at the end), live bytes at peak and at end.
// Usage: server_churn [threads=4] [ops per thread=8000000] [peak requests per thread=32768]
//                     [largest size=262144]
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "footprint.h"
#include "workload.h"

enum { RING = 1024, TAIL = 50, HANDOFF = 8, KEEP = 50 };
static const uint64_t KEY = 0xc3a5c85c97cb3127ull; // one key: blocks move between threads

typedef struct worker {
  pthread_t tid;
  unsigned id;
  long ops;
  size_t peak;              // target live requests at the peak
  size_t max_size;          // largest request
  struct worker *next;      // receives our hand-offs
  void *_Atomic inbox[RING]; // requests handed to this worker: written by the previous one
  uint64_t **live;          // owner only: the working set, dense (swap-remove)
  size_t n, cap;            // owner only
  size_t live_bytes, live_bytes_peak; // owner only: requested bytes in live[]
} worker_t;

// The phases, as (fraction of the run, fraction of peak) points joined by straight lines.
// The last low phase is 59% of the operations: they are cheap at a tenth of the working set, so
// at the default size it lasts about 2 s, longer than a 1 s decay time; an allocator that gives
// pages back while the program is active, even if slowly, can show it.
static const double PHASES[][2] = {{0.00, 0.0}, {0.08, 1.0}, {0.12, 1.0}, {0.17, 0.1},
                                   {0.25, 0.1}, {0.32, 1.0}, {0.36, 1.0}, {0.41, 0.1},
                                   {1.00, 0.1}};

static double phase_level(double x) {
  size_t i = 1;
  while (i < sizeof PHASES / sizeof PHASES[0] - 1 && x > PHASES[i][0]) i++;
  double x0 = PHASES[i - 1][0], y0 = PHASES[i - 1][1], x1 = PHASES[i][0], y1 = PHASES[i][1];
  return y0 + (y1 - y0) * (x - x0) / (x1 - x0);
}

static void check(worker_t *w, uint64_t *p) {
  if (!footprint_block_ok(p, KEY, 1))
    workload_fail("server_churn: thread %u: block %p corrupted", w->id, (void *)p);
}

static void check_free(worker_t *w, uint64_t *p) {
  check(w, p);
  free(p);
}

static void adopt(worker_t *w, uint64_t *p) {
  if (!p) return;
  if (w->n == w->cap) {
    check_free(w, p);
    return;
  }
  check(w, p);
  w->live[w->n++] = p;
  w->live_bytes += p[1];
}

static void request_new(worker_t *w, uint64_t *seed) {
  uint64_t r = workload_rand(seed);
  size_t n = r % TAIL == 0 ? footprint_size_log(seed, 4096, w->max_size)
                           : footprint_size_log(seed, 16, 4096);
  uint64_t *p = footprint_block_new(n, KEY, 1);
  if (!p) {
    workload_fail("server_churn: thread %u: malloc(%zu) failed", w->id, n);
    return;
  }
  w->live[w->n++] = p;
  w->live_bytes += n;
  if (w->live_bytes > w->live_bytes_peak) w->live_bytes_peak = w->live_bytes;
}

// Release a random live request: free it, or hand it to the next worker and adopt one that
// the previous worker handed to us.
static void request_release(worker_t *w, uint64_t *seed) {
  uint64_t r = workload_rand(seed);
  size_t k = (size_t)(r % w->n);
  uint64_t *p = w->live[k];
  w->live[k] = w->live[--w->n];
  w->live_bytes -= p[1];
  if ((r >> 40) % HANDOFF != 0) {
    check_free(w, p);
    return;
  }
  check(w, p);
  unsigned j = (unsigned)((r >> 48) % RING);
  uint64_t *old = atomic_exchange(&w->next->inbox[j], p);
  if (old) check_free(w, old); // not taken yet by the next worker: we free it instead
  adopt(w, atomic_exchange(&w->inbox[j], NULL));
}

static void *run(void *arg) {
  worker_t *w = arg;
  uint64_t seed = 0x9e3779b97f4a7c15ull * (w->id + 1);
  for (long i = 0; i < w->ops; i++) {
    size_t target = (size_t)((double)w->peak * phase_level((double)i / (double)w->ops));
    if (w->n < target || w->n == 0) {
      request_new(w, &seed);
    } else if (w->n > target) {
      request_release(w, &seed);
    } else {
      request_release(w, &seed);
      request_new(w, &seed);
    }
  }
  size_t keep = w->peak / KEEP; // live[] is in random order: any prefix is a random sample
  while (w->n > keep) {
    uint64_t *p = w->live[--w->n];
    w->live_bytes -= p[1];
    check_free(w, p);
  }
  return NULL;
}

int main(int argc, char **argv) {
  unsigned threads = argc > 1 ? (unsigned)atoi(argv[1]) : 4;
  long ops = argc > 2 ? atol(argv[2]) : 8000000;
  size_t peak = argc > 3 ? (size_t)atol(argv[3]) : 32768;
  size_t max_size = argc > 4 ? (size_t)atol(argv[4]) : 262144;
  if (threads < 1 || ops < 1 || peak < KEEP || max_size <= 4096) {
    fprintf(stderr, "usage: server_churn [threads] [ops per thread] [peak >= %d] [max > 4096]\n",
            KEEP);
    return 2;
  }
  worker_t *w = calloc(threads, sizeof *w);
  for (unsigned i = 0; i < threads; i++) {
    w[i].id = i;
    w[i].ops = ops;
    w[i].peak = peak;
    w[i].max_size = max_size;
    w[i].next = &w[(i + 1) % threads];
    w[i].cap = peak + RING;
    w[i].live = malloc(w[i].cap * sizeof *w[i].live);
    if (!w[i].live) return 2;
  }
  double t0 = workload_now();
  for (unsigned i = 0; i < threads; i++)
    if (pthread_create(&w[i].tid, NULL, run, &w[i]) != 0) return 2;
  size_t live_end = 0, live_peak = 0;
  for (unsigned i = 0; i < threads; i++) pthread_join(w[i].tid, NULL);
  for (unsigned i = 0; i < threads; i++) { // hand-offs never taken: freed by main
    for (unsigned k = 0; k < RING; k++) {
      uint64_t *p = atomic_exchange(&w[i].inbox[k], NULL);
      if (p) check_free(&w[i], p);
    }
  }
  double secs = workload_now() - t0;
  workload_rss_t rss = workload_rss(); // before anything else is freed or printed
  workload_malloc_stats();
  for (unsigned i = 0; i < threads; i++) {
    live_end += w[i].live_bytes;
    live_peak += w[i].live_bytes_peak; // the phases are in step, so the peaks nearly coincide
    for (size_t k = 0; k < w[i].n; k++) check_free(&w[i], w[i].live[k]);
    free(w[i].live);
  }
  long failures = workload_failures();
  printf("server_churn threads=%u ops=%ld peak_requests=%zu max=%zu time=%.3f s "
         "peak_rss=%ld KiB rss_final=%ld KiB live_peak=%zu KiB live_final=%zu KiB %s\n",
         threads, ops * threads, peak * threads, max_size, secs, rss.peak_kib, rss.now_kib,
         live_peak >> 10, live_end >> 10, failures ? "FAILED" : "ok");
  free(w);
  return failures ? 1 : 0;
}
