// Workload: one malloc/free pair at a time on each thread, at one size or pair.c's 16..256 mix,
// for counting instructions under callgrind (bench/instructions.py); it also runs natively.
// Mode 1 runs the same loop with two stubs in the allocator's place, to count the loop's own
// instructions. Mode 2 holds one block of each size the loop uses for the whole loop, so no free
// in it leaves a page empty (mode 0 does that on every free, which some allocators act on).
// Checks that malloc never returns NULL and that each block's first and last byte are writable.
// The loop is written once (pair_body, always inlined) and instantiated twice: pair_loop calls
// malloc/free directly, as any program does (through the PLT), and pair_loop_stub the stubs. Both
// are noinline, so callgrind charges each its own loop and the callees their inclusive cost. The
// stubs are opaque to interprocedural optimisation (gcc's noipa; clang has no IPA register
// allocation to defeat), so both loops compile to the same instructions, and touch volatile
// thread-locals so their calls stay. The writes are volatile: a store just before free is dead.
// Usage: pair_ir [threads=1] [pairs per thread=1000000] [size=0: the mix] [mode=0: malloc/free,
//        1: the loop only, 2: malloc/free with a block of each size held]
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "workload.h"

#if defined(__clang__)
#define PAIR_OPAQUE __attribute__((noinline))
#else
#define PAIR_OPAQUE __attribute__((noipa))
#endif

enum { STUB_BYTES = 1 << 16 }; // largest size mode 1 accepts

static const size_t mix[8] = {16, 24, 32, 48, 64, 100, 128, 256};
static long pairs;
static size_t size;
static int mode;
static _Atomic long failures;

static _Thread_local char *volatile stub_block; // this thread's scratch block, set before the loop
static _Thread_local void *volatile stub_freed;

// Mode 1's malloc: hands back this thread's scratch block, whatever the size.
PAIR_OPAQUE static void *stub_alloc(size_t n) {
  (void)n;
  return stub_block;
}

// Mode 1's free: only records the pointer, so the call has an effect and stays.
PAIR_OPAQUE static void stub_free(void *p) { stub_freed = p; }

// The pair loop; returns the number of failed allocations (it stops at the first).
static inline __attribute__((always_inline)) long pair_body(void *(*alloc)(size_t),
                                                            void (*release)(void *)) {
  // Locals, not the globals: gcc knows malloc and free leave globals alone but not the stubs,
  // and would reload these in one loop only.
  const long count = pairs;
  const size_t fixed = size;
  for (long i = 0; i < count; i++) {
    size_t n = fixed ? fixed : mix[i & 7];
    volatile char *p = alloc(n);
    if (!p) return 1;
    p[0] = (char)i;
    p[n - 1] = (char)(i >> 8);
    release((void *)p);
  }
  return 0;
}

__attribute__((noinline)) static long pair_loop(void) { return pair_body(malloc, free); }

__attribute__((noinline)) static long pair_loop_stub(void) {
  return pair_body(stub_alloc, stub_free);
}

static void *run(void *arg) {
  (void)arg;
  if (mode == 1) {
    char *block = malloc(STUB_BYTES);
    if (!block) {
      failures++;
      return NULL;
    }
    stub_block = block;
    failures += pair_loop_stub();
    free(block);
  } else {
    void *held[8] = {NULL}; // mode 2: one block of each size in use, live for the whole loop
    for (int i = 0; mode == 2 && i < (size ? 1 : 8); i++)
      if (!(held[i] = malloc(size ? size : mix[i]))) failures++;
    failures += pair_loop();
    for (int i = 0; i < 8; i++) free(held[i]);
  }
  return NULL;
}

int main(int argc, char **argv) {
  unsigned threads = argc > 1 ? (unsigned)atoi(argv[1]) : 1;
  pairs = argc > 2 ? atol(argv[2]) : 1000000;
  size = argc > 3 ? (size_t)atol(argv[3]) : 0;
  mode = argc > 4 ? atoi(argv[4]) : 0;
  if (threads < 1 || pairs < 0 || mode < 0 || mode > 2 || (mode == 1 && size > STUB_BYTES)) {
    fprintf(stderr, "usage: pair_ir [threads>=1] [pairs] [size, 0 = 16..256 mix; <= %d in mode 1] "
                    "[mode 0|1|2]\n", STUB_BYTES);
    return 2;
  }
  double t0 = workload_now();
  if (threads == 1) {
    run(NULL); // no thread at all, so a single-thread count has no thread start-up in it
  } else {
    pthread_t *t = malloc(threads * sizeof *t);
    if (!t) return 1;
    for (unsigned i = 0; i < threads; i++)
      if (pthread_create(&t[i], NULL, run, NULL) != 0) return 2;
    for (unsigned i = 0; i < threads; i++) pthread_join(t[i], NULL);
    free(t);
  }
  double secs = workload_now() - t0;
  printf("pair_ir threads=%u pairs=%ld size=%zu mode=%d time=%.3f s ns_per_pair=%.2f "
         "peak_rss=%ld KiB %s\n", threads, pairs, size, mode, secs,
         secs * 1e9 / ((double)pairs * threads), workload_peak_rss_kib(),
         failures ? "FAILED" : "ok");
  return failures ? 1 : 0;
}
