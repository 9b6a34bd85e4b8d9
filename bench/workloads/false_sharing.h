// What cache_scratch and cache_thrash share (after Berger et al.'s benchmarks from Hoard): the
// command line, each thread's loop and the result line. The loop allocates a small object,
// zeroes it, writes every byte of it many times, checks that every byte holds its count of
// writes (the zeroing first means a check cannot pass on stale contents) and frees it; when two
// threads' objects share a cache line, every write pulls the line from the other CPU's cache.
// Each program keeps its own main and with it the allocations it makes outside the loop (the
// objects cache_scratch hands from main, each program's thread bookkeeping): those decide where
// the loop's objects land, so they stay as they were measured.
// Usage: PROGRAM [threads=2] [objects per thread=5000] [object size=8] [writes per byte=50000]
#ifndef FALSE_SHARING_H
#define FALSE_SHARING_H

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "workload.h"

static const char *program; // for the messages and the result line
static long objects, writes;
static size_t size;
static pthread_barrier_t start; // the threads wait here, so that they write at the same time

// Reads the arguments into objects, size and writes and returns the thread count; a bad
// command line prints the usage and exits 2.
static unsigned false_sharing_args(const char *name, int argc, char **argv) {
  program = name;
  unsigned threads = argc > 1 ? (unsigned)atoi(argv[1]) : 2;
  objects = argc > 2 ? atol(argv[2]) : 5000;
  size = argc > 3 ? (size_t)atol(argv[3]) : 8;
  writes = argc > 4 ? atol(argv[4]) : 50000;
  if (threads < 1 || objects < 1 || size < 1 || writes < 1) {
    fprintf(stderr, "usage: %s [threads] [objects per thread] [object size] [writes per byte]\n",
            name);
    exit(2);
  }
  return threads;
}

// Thread id's loop, after the barrier: objects times, one object allocated, written and freed.
static void false_sharing_loop(unsigned id) {
  for (long i = 0; i < objects; i++) {
    volatile unsigned char *p = malloc(size);
    if (!p) {
      workload_fail("%s: thread %u: malloc(%zu) failed", program, id, size);
      return;
    }
    for (size_t k = 0; k < size; k++) p[k] = 0;
    for (long r = 0; r < writes; r++)
      for (size_t k = 0; k < size; k++) p[k]++;
    for (size_t k = 0; k < size; k++) {
      if (p[k] != (unsigned char)writes) {
        workload_fail("%s: thread %u: byte %zu of %p is %#x after %ld writes", program, id, k,
                      (void *)p, p[k], writes);
        break;
      }
    }
    free((void *)p);
  }
}

// Prints the result line, writes per second over all threads and peak RSS, and returns the
// exit status.
static int false_sharing_report(unsigned threads, double secs) {
  long failures = workload_failures();
  double total = (double)threads * (double)objects * (double)writes * (double)size;
  printf("%s threads=%u objects=%ld size=%zu writes=%ld time=%.3f s mwrites=%.1f "
         "peak_rss=%ld KiB %s\n",
         program, threads, objects * threads, size, writes, secs, total / secs / 1e6,
         workload_peak_rss_kib(), failures ? "FAILED" : "ok");
  return failures ? 1 : 0;
}

#endif
