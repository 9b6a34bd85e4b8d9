// Workload: a server's threads (after Larson and Krishnan's benchmark). There are T lineages, each
// owning a slot array of live blocks of random size (uniform in min..max); main fills the arrays.
// One thread at a time works on a lineage: each of its operations frees the block in a random
// slot and allocates a new one of a random size in its place. After its round the thread starts
// a NEW thread (the lineage's next generation) and exits; the new one joins it and carries on
// with the blocks the old one allocated, so most of its frees are of blocks another, now dead,
// thread allocated. Lineages run unsynchronised, so thread starts and exits overlap the work.
// Every block carries its address and size (first and last words, footprint.h) and is checked
// before it is freed (main checks and frees the survivors at the end); a block malloc returns
// must not carry a live block's pattern (footprint_block_new_checked).
// Prints operations per second (an operation is one free and one malloc) and peak RSS.
// Usage: larson [threads=2] [ops per round=100000] [rounds=100] [slots per thread=1000]
//               [min size=16] [max size=1000]
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "footprint.h"
#include "workload.h"

static const uint64_t KEY = 0x8cb92ba72f3d8dd7ull; // one key: blocks outlive their thread

typedef struct lineage {
  unsigned id;
  long rounds_left;  // owner only: the thread of the current generation
  uint64_t seed;     // owner only, carried from generation to generation
  pthread_t prev;    // written before the next generation is started; it joins this one
  uint64_t **slot;   // owner only until main's final check
  size_t ops_done;   // owner only, read after the end
} lineage_t;

static long ops_per_round;
static size_t nslots, min_size, max_size;
static pthread_mutex_t done_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cond = PTHREAD_COND_INITIALIZER;
static unsigned running; // lineages not finished (under done_lock)
static pthread_t *last;  // the last generation of each lineage (under done_lock), joined by main

static uint64_t *block_new(lineage_t *l) {
  size_t n = min_size + (size_t)(workload_rand(&l->seed) % (max_size - min_size + 1));
  int live = 0;
  uint64_t *p = footprint_block_new_checked(n, KEY, 0, &live);
  if (!p) workload_fail("larson: lineage %u: malloc(%zu) failed", l->id, n);
  if (live) workload_fail("larson: lineage %u: malloc returned %p, a block still live", l->id,
                          (void *)p);
  return p;
}

static void check_free(lineage_t *l, size_t k) {
  uint64_t *p = l->slot[k];
  if (!p) return; // its malloc failed, already reported
  if (!footprint_block_ok(p, KEY, 0))
    workload_fail("larson: lineage %u: block %p in slot %zu corrupted", l->id, (void *)p, k);
  footprint_block_free(p);
  l->slot[k] = NULL;
}

static void *generation(void *arg) {
  lineage_t *l = arg;
  if (l->ops_done > 0) pthread_join(l->prev, NULL); // not the first generation
  for (long i = 0; i < ops_per_round; i++) {
    size_t k = (size_t)(workload_rand(&l->seed) % nslots);
    check_free(l, k);
    l->slot[k] = block_new(l);
  }
  l->ops_done += (size_t)ops_per_round;
  if (--l->rounds_left > 0) {
    l->prev = pthread_self();
    pthread_t next;
    if (pthread_create(&next, NULL, generation, l) == 0) return NULL;
    workload_fail("larson: lineage %u: cannot start its next thread", l->id);
  }
  pthread_mutex_lock(&done_lock);
  last[l->id] = pthread_self();
  running--;
  pthread_cond_signal(&done_cond);
  pthread_mutex_unlock(&done_lock);
  return NULL;
}

int main(int argc, char **argv) {
  unsigned threads = argc > 1 ? (unsigned)atoi(argv[1]) : 2;
  ops_per_round = argc > 2 ? atol(argv[2]) : 100000;
  long rounds = argc > 3 ? atol(argv[3]) : 100;
  nslots = argc > 4 ? (size_t)atol(argv[4]) : 1000;
  min_size = argc > 5 ? (size_t)atol(argv[5]) : 16;
  max_size = argc > 6 ? (size_t)atol(argv[6]) : 1000;
  if (threads < 1 || ops_per_round < 1 || rounds < 1 || nslots < 1 || min_size < 16 ||
      max_size < min_size) {
    fprintf(stderr, "usage: larson [threads] [ops per round] [rounds] [slots per thread] "
                    "[min size >= 16] [max size >= min]\n");
    return 2;
  }
  lineage_t *l = calloc(threads, sizeof *l);
  last = calloc(threads, sizeof *last);
  if (!l || !last) return 2;
  double t0 = workload_now();
  for (unsigned i = 0; i < threads; i++) { // main allocates: the first round's frees are remote
    l[i].id = i;
    l[i].rounds_left = rounds;
    l[i].seed = 0x9e3779b97f4a7c15ull * (i + 1);
    l[i].slot = calloc(nslots, sizeof *l[i].slot);
    if (!l[i].slot) return 2;
    for (size_t k = 0; k < nslots; k++) l[i].slot[k] = block_new(&l[i]);
  }
  running = threads;
  for (unsigned i = 0; i < threads; i++) {
    pthread_t t;
    if (pthread_create(&t, NULL, generation, &l[i]) != 0) return 2;
  }
  pthread_mutex_lock(&done_lock);
  while (running > 0) pthread_cond_wait(&done_cond, &done_lock);
  pthread_mutex_unlock(&done_lock);
  for (unsigned i = 0; i < threads; i++) pthread_join(last[i], NULL);
  double secs = workload_now() - t0;
  size_t ops = 0;
  for (unsigned i = 0; i < threads; i++) {
    ops += l[i].ops_done;
    for (size_t k = 0; k < nslots; k++) check_free(&l[i], k);
    free(l[i].slot);
  }
  if (ops != (size_t)threads * (size_t)rounds * (size_t)ops_per_round)
    workload_fail("larson: %zu operations done, not %zu", ops,
                  (size_t)threads * (size_t)rounds * (size_t)ops_per_round);
  long failures = workload_failures();
  printf("larson threads=%u rounds=%ld ops=%zu slots=%zu size=%zu..%zu time=%.3f s mops=%.2f "
         "peak_rss=%ld KiB %s\n",
         threads, rounds, ops, nslots, min_size, max_size, secs, (double)ops / secs / 1e6,
         workload_peak_rss_kib(), failures ? "FAILED" : "ok");
  free(last);
  free(l);
  return failures ? 1 : 0;
}
