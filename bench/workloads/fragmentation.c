// Workload (footprint): fragmentation by a sparse survivor set. Three phases, the threads in step
// (a barrier between phases):
//   1. each thread allocates its share of the small bytes (sizes uniform in 16..512 B, written);
//   2. each thread frees 9 in 10 of its small blocks, chosen at random, so the survivors are
//      spread over all the small-block pages: few pages become wholly free;
//   3. each thread allocates its share of the large bytes (sizes log-uniform in 64 KiB..1 MiB,
//      written).
// The large blocks cannot use the freed small-block memory (it is scattered in small pieces), so
// the best an allocator can do is give the wholly free pages back to the OS and keep the rest:
// compare peak and final RSS with the live bytes. The final RSS is read after the threads are
// joined, with the survivors and the large blocks live; main then checks every block and frees it.
// Prints: time (all three phases), peak_rss (VmHWM), rss_final (VmRSS at the end), live bytes.
// Usage: fragmentation [threads=4] [small MiB=400] [large MiB=200] [largest small size=512]
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "footprint.h"
#include "workload.h"

enum { KEEP = 10, LARGE_MIN = 64 << 10, LARGE_MAX = 1 << 20 };

typedef struct worker {
  pthread_t tid;
  unsigned id;
  size_t small_budget, large_budget, max_small; // bytes to allocate; largest small block
  uint64_t **small, **large;                    // owner only until join
  size_t nsmall, nlarge;                        // owner only until join
  size_t live_bytes;                            // requested bytes live at the end
} worker_t;

static pthread_barrier_t barrier;

// Append blocks of random size to a growing array until budget bytes are allocated.
static uint64_t **fill(worker_t *w, uint64_t *seed, uint64_t key, size_t budget, size_t lo,
                       size_t hi, int log_sizes, size_t *count) {
  size_t cap = 1024, n = 0, bytes = 0;
  uint64_t **p = malloc(cap * sizeof *p);
  while (p && bytes < budget) {
    if (n == cap) {
      uint64_t **q = realloc(p, 2 * cap * sizeof *p);
      if (!q) break;
      p = q, cap *= 2;
    }
    size_t size = log_sizes ? footprint_size_log(seed, lo, hi)
                            : lo + (size_t)(workload_rand(seed) % (hi - lo + 1));
    if (!(p[n] = footprint_block_new(size, key, 1))) break;
    n++, bytes += size;
  }
  if (bytes < budget)
    workload_fail("fragmentation: thread %u: out of memory after %zu of %zu bytes", w->id, bytes,
                  budget);
  *count = n;
  return p;
}

static void *run(void *arg) {
  worker_t *w = arg;
  uint64_t seed = 0xd1b54a32d192ed03ull * (w->id + 1), key = seed;
  w->small = fill(w, &seed, key, w->small_budget, 16, w->max_small, 0, &w->nsmall);
  pthread_barrier_wait(&barrier);
  size_t kept = 0;
  for (size_t i = 0; i < w->nsmall; i++) {
    uint64_t *p = w->small[i];
    if (!footprint_block_ok(p, key, 1))
      workload_fail("fragmentation: thread %u: block %p corrupted", w->id, (void *)p);
    if (workload_rand(&seed) % KEEP == 0) {
      w->small[kept++] = p;
      w->live_bytes += p[1];
    } else {
      free(p);
    }
  }
  w->nsmall = kept;
  pthread_barrier_wait(&barrier);
  w->large = fill(w, &seed, key ^ 1, w->large_budget, LARGE_MIN, LARGE_MAX, 1, &w->nlarge);
  for (size_t i = 0; i < w->nlarge; i++) w->live_bytes += w->large[i][1];
  return NULL;
}

static void check_free_all(worker_t *w, uint64_t **p, size_t n, uint64_t key) {
  for (size_t i = 0; i < n; i++) {
    if (!footprint_block_ok(p[i], key, 1))
      workload_fail("fragmentation: thread %u: block %p corrupted", w->id, (void *)p[i]);
    free(p[i]);
  }
  free(p);
}

int main(int argc, char **argv) {
  unsigned threads = argc > 1 ? (unsigned)atoi(argv[1]) : 4;
  size_t small_mib = argc > 2 ? (size_t)atol(argv[2]) : 400;
  size_t large_mib = argc > 3 ? (size_t)atol(argv[3]) : 200;
  size_t max_small = argc > 4 ? (size_t)atol(argv[4]) : 512;
  if (threads < 1 || small_mib < 1 || large_mib < 1 || max_small < 16) {
    fprintf(stderr, "usage: fragmentation [threads] [small MiB] [large MiB] [max small >= 16]\n");
    return 2;
  }
  worker_t *w = calloc(threads, sizeof *w);
  pthread_barrier_init(&barrier, NULL, threads);
  for (unsigned i = 0; i < threads; i++) {
    w[i].id = i;
    w[i].small_budget = (small_mib << 20) / threads;
    w[i].large_budget = (large_mib << 20) / threads;
    w[i].max_small = max_small;
  }
  double t0 = workload_now();
  for (unsigned i = 0; i < threads; i++)
    if (pthread_create(&w[i].tid, NULL, run, &w[i]) != 0) return 2;
  for (unsigned i = 0; i < threads; i++) pthread_join(w[i].tid, NULL);
  double secs = workload_now() - t0;
  workload_rss_t rss = workload_rss(); // with the survivors and the large blocks live
  workload_malloc_stats();
  size_t live = 0;
  for (unsigned i = 0; i < threads; i++) {
    uint64_t key = 0xd1b54a32d192ed03ull * (i + 1);
    live += w[i].live_bytes;
    check_free_all(&w[i], w[i].small, w[i].nsmall, key);
    check_free_all(&w[i], w[i].large, w[i].nlarge, key ^ 1);
  }
  long failures = workload_failures();
  pthread_barrier_destroy(&barrier);
  printf("fragmentation threads=%u small=%zu MiB large=%zu MiB max_small=%zu time=%.3f s "
         "peak_rss=%ld KiB rss_final=%ld KiB live_final=%zu KiB %s\n",
         threads, small_mib, large_mib, max_small, secs, rss.peak_kib, rss.now_kib, live >> 10,
         failures ? "FAILED" : "ok");
  free(w);
  return failures ? 1 : 0;
}
