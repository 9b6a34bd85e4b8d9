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
// Prints writes per second (all threads) and peak RSS. The loop, the command line and the result
// line are false_sharing.h's, shared with cache_thrash; main's objects are this file's.
// Usage: cache_scratch [threads=2] [objects per thread=5000] [object size=8]
//                      [writes per byte=50000]
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "false_sharing.h"
#include "workload.h"

typedef struct worker {
  pthread_t tid;
  unsigned id;
  unsigned char *given; // allocated and written by main
} worker_t;

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
  false_sharing_loop(w->id);
  return NULL;
}

int main(int argc, char **argv) {
  unsigned threads = false_sharing_args("cache_scratch", argc, argv);
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
  int status = false_sharing_report(threads, secs);
  free(w);
  return status;
}
