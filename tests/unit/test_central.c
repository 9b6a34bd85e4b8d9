// Unit tests of lib/central: refill and flush batches, span release when blocks come back
// (from this or other threads), the reserve span, re-listing of detached spans, trim, and the
// validation of returned pointers.
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>

#include "central.h"
#include "options.h"
#include "pageheap.h"
#include "remote.h"
#include "span.h"
// The default heap's page heap, which these tests drive.
#define SMP_TEST_PH (smp_central_default->pages)

// Options as a process gets them from SMPALLOC_OPTIONS: the defaults in unit_central, every
// option zero in unit_central_zero.
static void setup(void) {
  smp_options_parse(getenv("SMPALLOC_OPTIONS"));
  smp_sizeclass_init(smp_options.cache_size);
  smp_span_init_keys(99);
}
TestSuite(central, .init = setup);

static smp_central_class_stats_t stats(unsigned cls) {
  smp_central_class_stats_t cs;
  smp_central_stats(smp_central_default, cls, &cs, NULL);
  return cs;
}

Test(central, refill_gives_distinct_blocks_of_the_class) {
  unsigned cls = 9; // 144 bytes
  void *b[200];
  cr_assert_eq(smp_central_refill(smp_central_default, cls, b, 200, false), 200);
  for (int i = 0; i < 200; i++) {
    cr_assert_eq(smp_pagemap_class(b[i]), cls);
    cr_assert_eq((uintptr_t)b[i] % 16, 0);
    for (int j = 0; j < i; j++) cr_assert_neq(b[i], b[j]);
  }
  smp_central_flush(b, 200);
}

Test(central, empty_spans_are_released_but_one_reserve_stays) {
  unsigned cls = 40; // 2048 bytes, 8 per 2-page span
  unsigned cap = smp_class_info[cls].capacity, n = cap * 5;
  void **b = malloc(n * sizeof *b);
  cr_assert_eq(smp_central_refill(smp_central_default, cls, b, n, false), n);
  cr_assert_eq(stats(cls).spans, 5);
  cr_assert_eq(stats(cls).listed, 0, "exhausted spans are detached");
  smp_central_flush(b, n);
  cr_assert_eq(stats(cls).spans, 1, "all but the reserve span went back to the page heap");
  cr_assert_eq(stats(cls).listed, 1);
  cr_assert_gt(smp_central_trim(smp_central_default), 0);
  cr_assert_eq(stats(cls).spans, 0, "trim releases the reserve");
  smp_pageheap_stats_t ps;
  smp_pageheap_stats(SMP_TEST_PH, &ps, NULL);
  cr_assert_eq(ps.small_bytes, 0);
  free(b);
}

Test(central, detached_span_is_relisted_by_the_first_return) {
  unsigned cls = 80;
  unsigned cap = smp_class_info[cls].capacity;
  void *b[64];
  cr_assert_eq(smp_central_refill(smp_central_default, cls, b, cap, false), cap);
  cr_assert_eq(stats(cls).listed, 0);
  smp_central_flush(b, 1);
  cr_assert_eq(stats(cls).listed, 1);
  void *again;
  cr_assert_eq(smp_central_refill(smp_central_default, cls, &again, 1, false), 1);
  cr_assert_eq(again, b[0], "the returned block is handed out again from the same span");
  cr_assert_eq(stats(cls).spans, 1);
  smp_central_flush(&again, 1);
  smp_central_flush(b + 1, cap - 1);
}

typedef struct {
  void **blocks;
  unsigned n;
} batch_t;

static void *flusher(void *arg) {
  batch_t *bt = arg;
  for (unsigned i = 0; i < bt->n; i += 7) smp_central_flush(bt->blocks + i, bt->n - i < 7 ? bt->n - i : 7);
  return NULL;
}

Test(central, spans_emptied_by_other_threads_alone_are_released) {
  unsigned cls = 20; // 384 bytes
  unsigned n = smp_class_info[cls].capacity * 12;
  void **b = malloc(n * sizeof *b);
  cr_assert_eq(smp_central_refill(smp_central_default, cls, b, n, false), n);
  size_t spans = stats(cls).spans;
  cr_assert_geq(spans, 12);
  batch_t half[2] = {{b, n / 2}, {b + n / 2, n - n / 2}};
  pthread_t t[2];
  for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, flusher, &half[i]);
  for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
  cr_assert_eq(stats(cls).spans, 1, "only the reserve is left");
  free(b);
}

Test(central, freeing_a_foreign_pointer_aborts, .signal = SIGABRT) {
  static char not_ours[64] __attribute__((aligned(16)));
  void *p = not_ours;
  smp_central_flush(&p, 1);
}

Test(central, freeing_an_interior_pointer_aborts, .signal = SIGABRT) {
  void *b;
  cr_assert_eq(smp_central_refill(smp_central_default, 5, &b, 1, false), 1); // 80-byte block
  void *inner = (char *)b + 16;
  smp_central_flush(&inner, 1);
}

// Two blocks are out, so the span's count alone would accept a batch of two: the duplicate
// itself must be seen (before the fix the chain was pushed with a cycle through b[0]).
Test(central, freeing_a_block_twice_in_one_batch_aborts, .signal = SIGABRT) {
  void *b[2];
  cr_assert_eq(smp_central_refill(smp_central_default, 80, b, 2, false), 2);
  b[1] = b[0];
  smp_central_flush(b, 2);
}

// The two copies far apart, with blocks of nine other spans between them, so they land in
// different groups of the flush (eight ways).
Test(central, a_duplicate_in_another_group_of_the_batch_aborts, .signal = SIGABRT) {
  unsigned cls = 80, cap = smp_class_info[cls].capacity; // 64 KiB blocks
  void *b[10 * 8];
  cr_assert_leq(cap, 8);
  cr_assert_eq(smp_central_refill(smp_central_default, cls, b, 10 * cap, false), 10 * cap);
  void *batch[11];
  for (unsigned k = 0; k < 10; k++) batch[k] = b[k * cap]; // one block of each of 10 spans
  batch[10] = batch[0];
  smp_central_flush(batch, 11);
}

// A block whose word 1 happens to hold the flush's tag (bytes from an earlier life of a block
// never handed out since) is not a duplicate unless it is in the batch twice: no report.
Test(central, a_block_that_only_looks_tagged_is_not_reported) {
  void *b[4];
  cr_assert_eq(smp_central_refill(smp_central_default, 30, b, 4, false), 4);
  ((uintptr_t *)b[2])[1] = smp_block_mark_of(b[2]) ^ 2; // the tag, as stale bytes
  smp_central_flush(b, 4);
  cr_assert(smp_block_is_marked(b[2]), "flushed, with its mark");
}

// A flush gives every block its free mark back before publishing it, so a later double free of
// a block on a span list is suspected (and confirmed there).
Test(central, flushed_blocks_hold_their_marks) {
  void *b[40];
  cr_assert_eq(smp_central_refill(smp_central_default, 12, b, 40, false), 40);
  for (unsigned i = 0; i < 40; i++) smp_block_unmark(b[i]); // as malloc leaves them
  smp_central_flush(b, 40);
  for (unsigned i = 0; i < 40; i++) cr_assert(smp_block_is_marked(b[i]), "block %u", i);
}

// smp_central_holds: a block is found free on its span's remote list, on its local list and
// past the carve cursor; a block handed out (live) is never found, whatever its words hold.
Test(central, holds_finds_free_blocks_and_never_a_live_one) {
  unsigned cls = 40; // 2048 bytes, 8 per span
  void *b[3];
  cr_assert_eq(smp_central_refill(smp_central_default, cls, b, 3, false), 3, "three carved, the rest not yet");
  smp_span_t *s = smp_pagemap_span(b[0]);
  for (unsigned i = 0; i < 3; i++) cr_assert_eq(smp_pagemap_span(b[i]), s);
  void *uncarved = (char *)b[2] + smp_class_info[cls].size; // never handed out
  cr_assert(smp_central_holds(s, cls, uncarved), "past the carve cursor");
  for (unsigned i = 0; i < 3; i++) {
    smp_block_mark(b[i]); // even holding its mark, a live block is not free
    cr_assert_not(smp_central_holds(s, cls, b[i]), "block %u is live", i);
  }
  smp_central_flush(&b[1], 1);
  cr_assert(smp_central_holds(s, cls, b[1]), "on the remote list");
  cr_assert_not(smp_central_holds(s, cls, b[0]));
  s->free = smp_remote_drain(s); // as a refill does (single-threaded test: no lock needed)
  cr_assert(smp_central_holds(s, cls, b[1]), "on the local list");
  cr_assert_not(smp_central_holds(s, cls, b[2]));
  void *again;
  cr_assert_eq(smp_central_refill(smp_central_default, cls, &again, 1, false), 1);
  cr_assert_eq(again, b[1], "the local list is served first");
  cr_assert_not(smp_central_holds(s, cls, b[1]), "handed out again: live");
  smp_central_flush(b, 3);
}

// The transfer cache (central.h): a batch a cache's miss gives back is kept, validated and
// marked, and the next refill of the class takes it without touching its spans.
static uint64_t span_word(void *p) { return smp_load_relaxed(&smp_pagemap_span(p)->remote); }

Test(central, a_batch_given_back_goes_to_the_next_refill_through_the_transfer_cache) {
  unsigned cls = 9;
  unsigned n = smp_class_info[cls].batch;
  void *b[64], *again[64];
  cr_assert_eq(smp_central_refill(smp_central_default, cls, b, n, false), n);
  uint64_t word = span_word(b[0]);
  smp_central_give(smp_central_default, cls, b, n);
  cr_assert_eq(smp_central_transfer_count(smp_central_default, cls), n, "kept in the transfer cache");
  cr_assert_eq(span_word(b[0]), word, "its span did not see the blocks come back");
  cr_assert(smp_block_is_marked(b[0]), "blocks there carry their free marks");
  cr_assert(smp_central_holds(smp_pagemap_span(b[1]), cls, b[1]),
            "the double-free search finds a block there");
  cr_assert_eq(smp_central_refill(smp_central_default, cls, again, n, false), n);
  cr_assert_eq(smp_central_transfer_count(smp_central_default, cls), 0);
  for (unsigned i = 0; i < n; i++) {
    bool found = false;
    for (unsigned j = 0; j < n; j++) found |= again[i] == b[j];
    cr_assert(found, "the refill got the batch back");
  }
  smp_central_flush(again, n);
  cr_assert_eq(smp_central_transfer_count(smp_central_default, cls), 0, "a plain flush goes to the spans");
}

Test(central, the_transfer_cache_is_bounded_and_small_classes_bypass_it) {
  unsigned cls = 9, n = smp_class_info[cls].batch;
  void *b[4][64], *d[64], *one;
  for (int k = 0; k < 4; k++) cr_assert_eq(smp_central_refill(smp_central_default, cls, b[k], n, false), n);
  cr_assert_eq(smp_central_refill(smp_central_default, cls, d, n - 1, false), n - 1);
  for (int k = 0; k < 4; k++) smp_central_give(smp_central_default, cls, b[k], n);
  cr_assert_eq(smp_central_transfer_count(smp_central_default, cls), n, "while no refill takes, one batch waits");
  cr_assert_eq(smp_central_refill(smp_central_default, cls, &one, 1, false), 1);
  smp_central_give(smp_central_default, cls, d, n - 1);
  cr_assert_eq(smp_central_transfer_count(smp_central_default, cls), 2 * n - 2, "after a take, a second batch");
  cr_assert_leq(smp_central_transfer_count(smp_central_default, cls) * smp_class_info[cls].size, SMP_TRANSFER_BYTES);
  smp_central_flush(&one, 1);
  unsigned small = SMP_OUTBOX_CLASSES - 1;
  void *s[64];
  unsigned m = smp_central_refill(smp_central_default, small, s, smp_class_info[small].batch, false);
  smp_central_give(smp_central_default, small, s, m);
  cr_assert_eq(smp_central_transfer_count(smp_central_default, small), 0, "blocks under 64 bytes go home to their spans");
}

// A batch whose blocks are not all of the class named goes to the spans (a transfer cache
// hands out only blocks of its class).
Test(central, a_mixed_batch_is_not_kept) {
  void *b[2];
  cr_assert_eq(smp_central_refill(smp_central_default, 9, &b[0], 1, false), 1);
  cr_assert_eq(smp_central_refill(smp_central_default, 10, &b[1], 1, false), 1);
  smp_central_give(smp_central_default, 9, b, 2);
  cr_assert_eq(smp_central_transfer_count(smp_central_default, 9), 0);
  cr_assert_eq(smp_central_transfer_count(smp_central_default, 10), 0);
}

// The background pass sends back a transfer cache that no miss used since the previous pass.
Test(central, an_idle_transfer_cache_goes_back_to_the_spans) {
  unsigned cls = 12, n = smp_class_info[cls].batch;
  void *b[64];
  cr_assert_eq(smp_central_refill(smp_central_default, cls, b, n, false), n);
  smp_central_give(smp_central_default, cls, b, n);
  cr_assert_eq(smp_central_transfer_drain(smp_central_default, true), 0, "used since the last pass: kept");
  cr_assert_eq(smp_central_transfer_count(smp_central_default, cls), n);
  cr_assert_eq(smp_central_transfer_drain(smp_central_default, true), n, "idle for a whole pass: sent back");
  cr_assert_eq(smp_central_transfer_count(smp_central_default, cls), 0);
  cr_assert_gt(smp_central_trim(smp_central_default), 0, "and its spans are wholly free again");
}

// Blocks under 64 bytes share cache lines: a refill for one cache does not take over the span
// another cache owns while few spans are listed, it starts its own (cache_scratch's neighbours
// on one line). Larger classes share the span.
Test(central, a_cache_starts_its_own_span_of_small_blocks_instead_of_taking_anothers) {
  unsigned small = 1, large = SMP_OUTBOX_CLASSES;
  void *a[8], *b[8], *c[8], *d[8];
  cr_assert_eq(smp_central_refill_for(smp_central_default, small, a, 8, false, 0), 8);
  cr_assert_eq(smp_central_refill_for(smp_central_default, small, b, 8, false, 1), 8);
  cr_assert_neq(smp_pagemap_span(a[0]), smp_pagemap_span(b[0]), "cache 1 started its own span");
  cr_assert_eq(smp_pagemap_owner(a[0]), 0, "cache 0 still owns its span");
  cr_assert_eq(smp_pagemap_owner(b[0]), 1);
  cr_assert_eq(smp_central_refill_for(smp_central_default, large, c, 8, false, 0), 8);
  cr_assert_eq(smp_central_refill_for(smp_central_default, large, d, 8, false, 1), 8);
  cr_assert_eq(smp_pagemap_span(c[0]), smp_pagemap_span(d[0]), "larger blocks share the span");
  smp_central_flush(a, 8);
  smp_central_flush(b, 8);
  smp_central_flush(c, 8);
  smp_central_flush(d, 8);
}
