// Workload: producers and consumers sharing one queue of batches (after Lever and Boreham's
// xmalloc-test). Half the threads only allocate: each fills blocks (sizes log-uniform in
// 16..max, every byte written) into a batch, itself a malloc'd block, and puts the batch on a
// queue shared by all; the other half only free: each takes whichever batch is next, checks and
// frees its blocks and then the batch. Any consumer may get any producer's blocks, so every free
// is a remote free, spread over all the allocating threads' memory. The queue holds at most
// QUEUE_MAX batches: a producer that runs ahead waits, which bounds the memory in flight.
// Checks every block's address tag, size, last word and a middle byte before it is freed, that
// no block malloc returns carries a live block's pattern (footprint_block_new_checked), and that
// the consumers freed as many blocks, and bytes, as the producers allocated.
// Prints blocks per second (each allocated, written, checked and freed once) and peak RSS.
// Usage: xmalloc [threads=4: half producers, the rest consumers, at least one of each]
//                [blocks per producer=4000000] [max size=512]
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "footprint.h"
#include "workload.h"

enum { BATCH = 256, QUEUE_MAX = 64 };
static const uint64_t KEY = 0x5851f42d4c957f2dull;

typedef struct batch {
  struct batch *next; // the queue's link (under lock)
  size_t n;
  uint64_t *block[BATCH];
} batch_t;

typedef struct worker {
  pthread_t tid;
  unsigned id;
  size_t blocks, bytes; // allocated (producer) or freed (consumer); owner only, read after join
} worker_t;

static long per_producer;
static size_t max_size;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t not_empty = PTHREAD_COND_INITIALIZER, not_full = PTHREAD_COND_INITIALIZER;
static batch_t *head, *tail;      // under lock
static unsigned queued;           // under lock
static unsigned producers_left;   // under lock: consumers stop when 0 and the queue is empty

static void put(batch_t *b) {
  pthread_mutex_lock(&lock);
  while (queued == QUEUE_MAX) pthread_cond_wait(&not_full, &lock);
  b->next = NULL;
  if (tail) tail->next = b; else head = b;
  tail = b;
  queued++;
  pthread_cond_signal(&not_empty);
  pthread_mutex_unlock(&lock);
}

static batch_t *take(void) { // NULL when every producer is done and the queue is empty
  pthread_mutex_lock(&lock);
  while (!head && producers_left > 0) pthread_cond_wait(&not_empty, &lock);
  batch_t *b = head;
  if (b) {
    head = b->next;
    if (!head) tail = NULL;
    queued--;
    pthread_cond_signal(&not_full);
  }
  pthread_mutex_unlock(&lock);
  return b;
}

static void *produce(void *arg) {
  worker_t *w = arg;
  uint64_t seed = 0x9e3779b97f4a7c15ull * (w->id + 1);
  long left = per_producer;
  while (left > 0) {
    batch_t *b = malloc(sizeof *b);
    if (!b) {
      workload_fail("xmalloc: producer %u: malloc(%zu) for a batch failed", w->id, sizeof *b);
      break;
    }
    for (b->n = 0; b->n < BATCH && left > 0; left--) {
      size_t n = footprint_size_log(&seed, 16, max_size);
      int live = 0;
      uint64_t *p = footprint_block_new_checked(n, KEY, 1, &live);
      if (!p) {
        workload_fail("xmalloc: producer %u: malloc(%zu) failed", w->id, n);
        continue;
      }
      if (live)
        workload_fail("xmalloc: producer %u: malloc returned %p, a block still live", w->id,
                      (void *)p);
      b->block[b->n++] = p;
      w->blocks++, w->bytes += n;
    }
    put(b);
  }
  pthread_mutex_lock(&lock);
  if (--producers_left == 0) pthread_cond_broadcast(&not_empty);
  pthread_mutex_unlock(&lock);
  return NULL;
}

static void *consume(void *arg) {
  worker_t *w = arg;
  for (batch_t *b; (b = take()) != NULL; free(b)) {
    for (size_t i = 0; i < b->n; i++) {
      uint64_t *p = b->block[i];
      if (!footprint_block_ok(p, KEY, 1)) {
        workload_fail("xmalloc: consumer %u: block %p corrupted", w->id, (void *)p);
      } else {
        w->bytes += p[1];
      }
      w->blocks++;
      footprint_block_free(p);
    }
  }
  return NULL;
}

int main(int argc, char **argv) {
  unsigned threads = argc > 1 ? (unsigned)atoi(argv[1]) : 4;
  per_producer = argc > 2 ? atol(argv[2]) : 4000000;
  max_size = argc > 3 ? (size_t)atol(argv[3]) : 512;
  if (threads < 1 || per_producer < 1 || max_size < 17) {
    fprintf(stderr, "usage: xmalloc [threads] [blocks per producer] [max size > 16]\n");
    return 2;
  }
  unsigned producers = threads / 2 ? threads / 2 : 1;
  unsigned consumers = threads > producers ? threads - producers : 1;
  unsigned all = producers + consumers;
  worker_t *w = calloc(all, sizeof *w);
  if (!w) return 2;
  producers_left = producers;
  double t0 = workload_now();
  for (unsigned i = 0; i < all; i++) {
    w[i].id = i;
    if (pthread_create(&w[i].tid, NULL, i < producers ? produce : consume, &w[i]) != 0) return 2;
  }
  for (unsigned i = 0; i < all; i++) pthread_join(w[i].tid, NULL);
  double secs = workload_now() - t0;
  size_t made = 0, made_bytes = 0, freed = 0, freed_bytes = 0;
  for (unsigned i = 0; i < all; i++) {
    if (i < producers) made += w[i].blocks, made_bytes += w[i].bytes;
    else freed += w[i].blocks, freed_bytes += w[i].bytes;
  }
  if (freed != made || freed_bytes != made_bytes)
    workload_fail("xmalloc: %zu blocks (%zu bytes) allocated but %zu (%zu bytes) freed", made,
                  made_bytes, freed, freed_bytes);
  long failures = workload_failures();
  printf("xmalloc threads=%u producers=%u consumers=%u blocks=%zu max=%zu time=%.3f s mops=%.2f "
         "peak_rss=%ld KiB %s\n",
         all, producers, consumers, made, max_size, secs, (double)made / secs / 1e6,
         workload_peak_rss_kib(), failures ? "FAILED" : "ok");
  free(w);
  return failures ? 1 : 0;
}
