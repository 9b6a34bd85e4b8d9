// stress_span_empty: spans that become empty through remote frees alone. Thread A allocates N
// blocks of one size class (half to all of several spans' worth) and never frees any; threads
// B and C free them all, B the even-indexed and C the odd-indexed blocks, so both push to the
// same spans at once and race to take a span's last block out (out reaching 0 in the remote
// word). Rounds cycle through classes from 16 bytes to 64 KiB. Some rounds B calls
// malloc_trim(0) halfway, racing the central trim against C's pushes. Every fifth round B and C
// exit (their caches are flushed by the thread-exit destructor, no trim) and are replaced.
// The span check, made at rest (after such a round, at the end, and after the final trim): a
// span with no block out is wholly free and must have been released at once, except one
// reserve span per class (central.h), so spans <= blocks in use + blocks cached + 1 (+ 0 after
// malloc_trim). At the end, after malloc_trim(0), the heap must also be back near the start:
// bytes in use within 1 MiB, span-free bytes within 256 KiB, mapped memory within 4 MiB.
#include <execinfo.h>

#include "stress_common.h"

static stress_args_t args = {.threads = 3, .iters = 4000, .seconds = 6, .seed = 1, .extra = 0};
static const size_t sizes[] = {16, 48, 128, 200, 512, 1000, 1500, 3000, 8000, 20000, 40000, 65536};
#define NSIZES (sizeof sizes / sizeof sizes[0])

static pthread_barrier_t start_round, end_round;
static void **blocks;
static size_t nblocks, round_size;
static uint64_t round_tag;
static bool done, exit_round, trim_round; // written by A before start_round
static _Atomic uint64_t total_ops;
static stress_budget_t budget;

static size_t blocks_for(size_t size) {
  size_t n = ((size_t)2 << 20) / size;
  return n < 64 ? 64 : n > 4096 ? 4096 : n;
}

// B (parity 0) and C (parity 1). Runs rounds until an exit round (or the end).
static void *freer(void *arg) {
  size_t parity = (size_t)(uintptr_t)arg;
  uint64_t ops = 0;
  for (;;) {
    pthread_barrier_wait(&start_round);
    if (done) break;
    for (size_t k = parity; k < nblocks; k += 2) {
      stress_free("span_empty: remote free", blocks[k], round_size, round_tag ^ k);
      ops++;
      if (trim_round && parity == 0 && k == nblocks / 2 / 2 * 2) malloc_trim(0);
    }
    if (exit_round) break;
    pthread_barrier_wait(&end_round);
  }
  atomic_fetch_add(&total_ops, ops);
  return NULL; // the cache destructor flushes what is left
}

static void start_freers(pthread_t *t) {
  stress_thread_start(&t[0], freer, (void *)(uintptr_t)0);
  stress_thread_start(&t[1], freer, (void *)(uintptr_t)1);
}

// Class row of the statistics for blocks of block_size bytes, or 0 (no row: no spans, no blocks).
static size_t class_row(const stress_heap_t *h, size_t block_size) {
  for (size_t c = 1; c < 96; c++)
    if (h->class_size[c] == block_size) return c;
  return 0;
}

// At rest, a span of class c with no block out is wholly free, and at most one such span (the
// reserve, central.h) is kept: spans <= blocks in use + blocks cached + spare.
static void check_spans(const stress_heap_t *h, size_t c, size_t spare, const char *when) {
  if (c == 0) return;
  size_t limit = h->class_in_use[c] + h->class_cached[c] + spare;
  if (h->class_spans[c] > limit)
    stress_fail("%s: %zu spans of class %zu (%zu B) for %zu blocks in use and %zu cached: spans "
                "emptied by remote frees were not released (limit %zu)",
                when, h->class_spans[c], c, h->class_size[c], h->class_in_use[c],
                h->class_cached[c], limit);
}

static void *allocator(void *arg) {
  (void)arg;
  stress_rng_t r;
  stress_rng_seed(&r, args.seed);
  uint64_t ops = 0, round = 0;
  size_t max_spans = 0;
  pthread_t t[2];
  start_freers(t);
  for (; stress_continue(&budget, round); round++) {
    round_size = sizes[round % NSIZES];
    nblocks = blocks_for(round_size);
    nblocks -= (size_t)stress_rng_below(&r, nblocks / 2); // half to all of it
    round_tag = round << 32;
    exit_round = round % 5 == 4; // 5 and NSIZES are coprime: every class gets checked
    trim_round = round % 7 == 3;
    for (size_t k = 0; k < nblocks; k++) blocks[k] = stress_malloc("span_empty: A", round_size, round_tag ^ k);
    ops += nblocks;
    size_t usable = malloc_usable_size(blocks[0]);
    pthread_barrier_wait(&start_round);
    if (!exit_round) {
      pthread_barrier_wait(&end_round); // B and C have freed everything
      continue;
    }
    stress_thread_join(t[0]); // B and C have freed everything and flushed their caches
    stress_thread_join(t[1]);
    stress_heap_t h;
    stress_heap_read(&h);
    size_t c = class_row(&h, usable);
    size_t spans = c ? h.class_spans[c] : 0;
    if (spans > max_spans) max_spans = spans;
    if (args.verbose)
      fprintf(stderr, "round %llu size %zu class %zu: %zu blocks, %zu spans, %zu cached\n",
              (unsigned long long)round, round_size, usable, nblocks, spans,
              c ? h.class_cached[c] : 0);
    check_spans(&h, c, 1 + args.extra, "after a round");
    start_freers(t);
  }
  done = true;
  pthread_barrier_wait(&start_round);
  stress_thread_join(t[0]);
  stress_thread_join(t[1]);
  atomic_fetch_add(&total_ops, ops);
  if (args.verbose) fprintf(stderr, "allocator: %llu rounds, at most %zu spans of a class left\n",
                            (unsigned long long)round, max_spans);
  return NULL; // the cache destructor flushes A's cache
}

int main(int argc, char **argv) {
  stress_args_parse(&args, "stress_span_empty",
                    "  -n rounds  -k spans of slack in the per-round check\n"
                    "  -s time cap (no new rounds after it); always 3 threads",
                    argc, argv);
  stress_require_smpalloc();
  if (args.threads != 3) stress_fail("always 3 threads (A allocates, B and C free)");
  blocks = calloc(4096, sizeof *blocks);
  if (blocks == NULL) stress_fail("out of memory");
  malloc_trim(0);
  stress_heap_t before, after;
  // Hardened or profiled, the allocator's first stack capture (glibc's backtrace) loads libgcc_s,
  // whose blocks (a few classes, kept for the process's life) hold spans of their own: loaded
  // here, before the baseline, they are in it.
  void *frames[4];
  backtrace(frames, 4);
  stress_heap_read(&before);
  double started = stress_now();
  budget = stress_budget(args.iters, args.seconds);
  pthread_barrier_init(&start_round, NULL, 3);
  pthread_barrier_init(&end_round, NULL, 3);
  pthread_t a;
  stress_thread_start(&a, allocator, NULL);
  stress_thread_join(a);
  pthread_barrier_destroy(&start_round);
  pthread_barrier_destroy(&end_round);

  // No trim yet: every class may keep one reserve span; after malloc_trim(0), none.
  stress_heap_t untrimmed;
  stress_heap_read(&untrimmed);
  for (size_t c = 1; c < 96; c++) check_spans(&untrimmed, c, 1, "all threads exited");
  malloc_trim(0);
  stress_heap_read(&after);
  for (size_t c = 1; c < 96; c++) check_spans(&after, c, 0, "after malloc_trim");
  size_t spans_before = 0, spans_after = 0;
  for (size_t c = 0; c < 96; c++) spans_before += before.class_spans[c], spans_after += after.class_spans[c];
  if (args.verbose) {
    stress_heap_print("before", &before);
    stress_heap_print("untrimmed", &untrimmed);
    stress_heap_print("after", &after);
    fprintf(stderr, "stress_span_empty: small spans %zu before, %zu after\n", spans_before, spans_after);
  }
  if (after.in_use > before.in_use + ((size_t)1 << 20))
    stress_fail("%zu bytes in use at the end, %zu at the start", after.in_use, before.in_use);
  if (spans_after > spans_before + 4)
    stress_fail("%zu small spans at the end, %zu at the start", spans_after, spans_before);
  if (after.span_free > before.span_free + ((size_t)256 << 10))
    stress_fail("%zu bytes free in small spans at the end, %zu at the start", after.span_free,
                before.span_free);
  if (after.mapped > before.mapped + ((size_t)4 << 20))
    stress_fail("%zu bytes mapped at the end, %zu at the start", after.mapped, before.mapped);
  free(blocks);
  stress_ok(atomic_load(&total_ops), 3, started);
  return 0;
}
