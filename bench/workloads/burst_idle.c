// Workload (footprint): a burst, then idle. Each of T threads allocates its share of the burst
// (sizes log-uniform, 3 in 4 of 16 B..1 KiB, 1 in 4 of 1..64 KiB, every byte written); when all
// of it is live (a barrier), each checks and frees its blocks; the threads are joined. The
// process then sleeps for the idle time without a single allocator call (not even stdio: RSS is
// read with open/read) and reads its RSS.
// An allocator that returns freed memory only on its own later calls keeps all of it here; one
// that returns it at once, or from a background thread, does not.
// Prints: time (the burst: allocate, write, check, free, join), peak_rss (VmHWM), rss_final
// (VmRSS after the idle time), rss_freed (VmRSS right after the burst, before the idle time).
// Usage: burst_idle [threads=4] [burst MiB=512] [idle ms=1000]
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "footprint.h"
#include "workload.h"

typedef struct worker {
  pthread_t tid;
  unsigned id;
  size_t budget;  // bytes to allocate
  size_t blocks;  // written by the worker, read after join
} worker_t;

static pthread_barrier_t barrier;

static void *run(void *arg) {
  worker_t *w = arg;
  uint64_t seed = 0x2545f4914f6cdd1dull * (w->id + 1);
  uint64_t key = seed;
  size_t cap = 4096, n = 0, bytes = 0;
  uint64_t **p = malloc(cap * sizeof *p);
  while (p && bytes < w->budget) {
    if (n == cap) {
      uint64_t **q = realloc(p, 2 * cap * sizeof *p);
      if (!q) break;
      p = q, cap *= 2;
    }
    size_t size = workload_rand(&seed) % 4 == 0 ? footprint_size_log(&seed, 1024, 65536)
                                                  : footprint_size_log(&seed, 16, 1024);
    if (!(p[n] = footprint_block_new(size, key, 1))) break;
    n++, bytes += size;
  }
  if (bytes < w->budget)
    workload_fail("burst_idle: thread %u: out of memory after %zu of %zu bytes", w->id, bytes,
                  w->budget);
  pthread_barrier_wait(&barrier);
  for (size_t i = 0; i < n; i++) {
    if (!footprint_block_ok(p[i], key, 1))
      workload_fail("burst_idle: thread %u: block %p corrupted", w->id, (void *)p[i]);
    free(p[i]);
  }
  free(p);
  w->blocks = n;
  return NULL;
}

int main(int argc, char **argv) {
  unsigned threads = argc > 1 ? (unsigned)atoi(argv[1]) : 4;
  size_t mib = argc > 2 ? (size_t)atol(argv[2]) : 512;
  long idle_ms = argc > 3 ? atol(argv[3]) : 1000;
  if (threads < 1 || mib < 1 || idle_ms < 0) {
    fprintf(stderr, "usage: burst_idle [threads] [burst MiB] [idle ms]\n");
    return 2;
  }
  worker_t *w = calloc(threads, sizeof *w);
  for (unsigned i = 0; i < threads; i++) w[i].id = i, w[i].budget = (mib << 20) / threads;
  pthread_barrier_init(&barrier, NULL, threads);
  double t0 = workload_now();
  for (unsigned i = 0; i < threads; i++)
    if (pthread_create(&w[i].tid, NULL, run, &w[i]) != 0) return 2;
  for (unsigned i = 0; i < threads; i++) pthread_join(w[i].tid, NULL);
  double secs = workload_now() - t0;
  workload_rss_t freed = workload_rss();
  struct timespec idle = {idle_ms / 1000, (idle_ms % 1000) * 1000000};
  while (nanosleep(&idle, &idle) != 0) {
  }
  workload_rss_t rss = workload_rss();
  workload_malloc_stats();
  pthread_barrier_destroy(&barrier);
  long failures = workload_failures();
  size_t blocks = 0;
  for (unsigned i = 0; i < threads; i++) blocks += w[i].blocks;
  printf("burst_idle threads=%u burst=%zu MiB blocks=%zu idle=%ld ms time=%.3f s "
         "peak_rss=%ld KiB rss_final=%ld KiB rss_freed=%ld KiB %s\n",
         threads, mib, blocks, idle_ms, secs, rss.peak_kib, rss.now_kib, freed.now_kib,
         failures ? "FAILED" : "ok");
  free(w);
  return failures ? 1 : 0;
}
