// Workload: passive false sharing (after Berger et al.'s cache-scratch, from Hoard). Main
// allocates one small object per thread, one after the other, so an allocator may pack them on
// one cache line, writes each and hands it to its thread. Each thread checks and frees the
// object it was given, then repeatedly allocates an object of the same size, writes every byte
// of it many times and frees it. An allocator that gives the thread back the object it freed
// (a per-thread cache does) hands it memory on a cache line another thread is writing, and every
// write then pulls the line from the other CPU's cache; one that keeps threads' objects on
// separate lines does not. cache_thrash is the same without main's objects.
// Checks the handed object's bytes, and after each object's writes that every byte holds its
// count of writes; each object is zeroed first, so a check cannot pass on stale contents.
// Prints writes per second (all threads) and peak RSS.
// Usage: cache_scratch [threads=2] [objects per thread=5000] [object size=8]
//                      [writes per byte=50000]
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "workload.h"

typedef struct worker {
  pthread_t tid;
  unsigned id;
  unsigned char *given; // allocated and written by main
} worker_t;

static long objects, writes;
static size_t size;
static pthread_barrier_t start;

static void *run(void *arg) {
  worker_t *w = arg;
  unsigned char mark = (unsigned char)(0x5a ^ w->id);
  pthread_barrier_wait(&start);
  for (size_t k = 0; k < size; k++) {
    if (w->given[k] != mark) {
      workload_fail("cache_scratch: thread %u: byte %zu of its object %p is %#x, not %#x",
                    w->id, k, (void *)w->given, w->given[k], mark);
      break;
    }
  }
  free(w->given);
  for (long i = 0; i < objects; i++) {
    volatile unsigned char *p = malloc(size);
    if (!p) {
      workload_fail("cache_scratch: thread %u: malloc(%zu) failed", w->id, size);
      return NULL;
    }
    for (size_t k = 0; k < size; k++) p[k] = 0;
    for (long r = 0; r < writes; r++)
      for (size_t k = 0; k < size; k++) p[k]++;
    for (size_t k = 0; k < size; k++) {
      if (p[k] != (unsigned char)writes) {
        workload_fail("cache_scratch: thread %u: byte %zu of %p is %#x after %ld writes", w->id,
                      k, (void *)p, p[k], writes);
        break;
      }
    }
    free((void *)p);
  }
  return NULL;
}

int main(int argc, char **argv) {
  unsigned threads = argc > 1 ? (unsigned)atoi(argv[1]) : 2;
  objects = argc > 2 ? atol(argv[2]) : 5000;
  size = argc > 3 ? (size_t)atol(argv[3]) : 8;
  writes = argc > 4 ? atol(argv[4]) : 50000;
  if (threads < 1 || objects < 1 || size < 1 || writes < 1) {
    fprintf(stderr, "usage: cache_scratch [threads] [objects per thread] [object size] "
                    "[writes per byte]\n");
    return 2;
  }
  worker_t *w = calloc(threads, sizeof *w);
  if (!w) return 2;
  pthread_barrier_init(&start, NULL, threads);
  for (unsigned i = 0; i < threads; i++) { // one after the other: neighbours in memory
    w[i].id = i;
    if (!(w[i].given = malloc(size))) return 2;
    memset(w[i].given, 0x5a ^ (int)(i & 0xff), size);
  }
  double t0 = workload_now();
  for (unsigned i = 0; i < threads; i++)
    if (pthread_create(&w[i].tid, NULL, run, &w[i]) != 0) return 2;
  for (unsigned i = 0; i < threads; i++) pthread_join(w[i].tid, NULL);
  double secs = workload_now() - t0;
  pthread_barrier_destroy(&start);
  long failures = workload_failures();
  double total = (double)threads * (double)objects * (double)writes * (double)size;
  printf("cache_scratch threads=%u objects=%ld size=%zu writes=%ld time=%.3f s mwrites=%.1f "
         "peak_rss=%ld KiB %s\n",
         threads, objects * threads, size, writes, secs, total / secs / 1e6,
         workload_peak_rss_kib(), failures ? "FAILED" : "ok");
  free(w);
  return failures ? 1 : 0;
}
