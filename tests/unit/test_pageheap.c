// Unit tests of lib/pageheap and lib/pagemap: allocation, alignment, coalescing, grow/shrink,
// trim, ownership bits and the checked span lookup, with a full invariant walk of the chunk;
// decay, the dirty bound, idleness and the background passes on the test's own clock (time
// steps when a test says so: no window of real time to miss on a loaded machine).
// Options start as a process gets them from SMPALLOC_OPTIONS (the defaults, in unit_pageheap;
// every option zero in unit_pageheap_zero); tests set the ones they are about.
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "options.h"
#include "os.h"
#include "pageheap.h"
#include "central.h"
// The default heap's page heap, which these tests drive.
#define SMP_TEST_PH (smp_central_default->pages)

static uint64_t now_ms = 1000000; // the test's clock: only advance() moves it
static uint64_t test_clock(void) { return now_ms; }
static void advance(uint64_t ms) { now_ms += ms; }

static void setup(void) {
  smp_options_parse(getenv("SMPALLOC_OPTIONS"));
  smp_os_clock_set(test_clock);
}
TestSuite(pageheap, .init = setup);

#define USABLE (SMP_CHUNK_PAGES - SMP_CHUNK_HEADER_PAGES)

// Walk a chunk: spans tile it, free spans are never adjacent, boundary entries are right.
static void check_chunk(smp_chunk_t *c) {
  size_t page = SMP_CHUNK_HEADER_PAGES, free_pages = 0;
  int prev_free = 0;
  while (page < SMP_CHUNK_PAGES) {
    smp_span_t *s = &c->spans[page];
    cr_assert(s->state == SMP_SPAN_FREE || s->state == SMP_SPAN_LARGE || s->state == SMP_SPAN_SMALL,
              "page %zu starts no span (state %d)", page, s->state);
    cr_assert_gt(s->npages, 0);
    cr_assert_leq(page + s->npages, SMP_CHUNK_PAGES);
    cr_assert_eq(c->page_span[page], page);
    cr_assert_eq(c->page_span[page + s->npages - 1], page);
    if (s->state == SMP_SPAN_FREE) {
      cr_assert_not(prev_free, "two adjacent free spans at page %zu", page);
      free_pages += s->npages;
      for (size_t i = page; i < page + s->npages; i++) cr_assert_eq(c->page_class[i], 0);
    } else {
      for (size_t i = page; i < page + s->npages; i++) {
        cr_assert_eq(c->page_span[i], page, "in-use span pages all map to its first page");
        cr_assert_eq(smp_pagemap_span_checked((char *)c + (i << SMP_PAGE_SHIFT) + 5), s);
      }
    }
    prev_free = s->state == SMP_SPAN_FREE;
    page += s->npages;
  }
  cr_assert_eq(page, SMP_CHUNK_PAGES);
  cr_assert_eq(c->free_pages, free_pages);
}

Test(pageheap, alloc_free_coalesces_back_to_one_free_span) {
  bool z;
  smp_span_t *a = smp_pageheap_alloc(SMP_TEST_PH, 3, 1, &z, false);
  cr_assert_not_null(a);
  cr_assert(z, "fresh chunk memory reads as zero");
  smp_chunk_t *c = smp_span_chunk(a);
  cr_assert(smp_pagemap_owns(smp_span_start(a)));
  cr_assert_not(smp_pagemap_owns((char *)c - 1), "the byte below the chunk is not ours");
  smp_span_t *b = smp_pageheap_alloc(SMP_TEST_PH, 5, 1, &z, false);
  smp_span_t *d = smp_pageheap_alloc(SMP_TEST_PH, 1, 1, &z, false);
  cr_assert_eq(smp_span_chunk(b), c);
  cr_assert_eq(smp_span_start(b), smp_span_start(a) + 3 * SMP_PAGE_SIZE, "first fit from the low end");
  memset(smp_span_start(b), 0xab, smp_span_bytes(b));
  check_chunk(c);
  smp_pageheap_free(b);
  check_chunk(c);
  cr_assert_null(smp_pagemap_span_checked(smp_span_start(b) + SMP_PAGE_SIZE), "free pages have no span");
  smp_pageheap_free(a);
  check_chunk(c);
  smp_pageheap_free(d);
  check_chunk(c);
  cr_assert_eq(c->free_pages, USABLE);
  // Dirty pages must not be reported as zeroed.
  smp_span_t *e = smp_pageheap_alloc(SMP_TEST_PH, 8, 1, &z, false);
  cr_assert_not(z, "pages that held data are not zeroed");
  smp_pageheap_free(e);
}

Test(pageheap, aligned_spans) {
  for (size_t align = 1; align <= 128; align *= 2) {
    bool z;
    smp_span_t *filler = smp_pageheap_alloc(SMP_TEST_PH, 1, 1, &z, false); // shift the free run off alignment
    smp_span_t *s = smp_pageheap_alloc(SMP_TEST_PH, 3, align, &z, false);
    cr_assert_not_null(s);
    cr_assert_eq((uintptr_t)smp_span_start(s) % (align * SMP_PAGE_SIZE), 0, "align %zu pages", align);
    cr_assert_eq(s->npages, 3);
    check_chunk(smp_span_chunk(s));
    smp_pageheap_free(s);
    smp_pageheap_free(filler);
    check_chunk(smp_span_chunk(s));
  }
}

Test(pageheap, too_big_or_zero_requests_fail_cleanly) {
  bool z;
  cr_assert_null(smp_pageheap_alloc(SMP_TEST_PH, USABLE + 1, 1, &z, false));
  cr_assert_null(smp_pageheap_alloc(SMP_TEST_PH, 0, 1, &z, false));
  cr_assert_null(smp_pageheap_alloc(SMP_TEST_PH, USABLE, 2, &z, false), "alignment slack counts");
  smp_span_t *all = smp_pageheap_alloc(SMP_TEST_PH, USABLE, 1, &z, false);
  cr_assert_not_null(all, "a whole chunk's usable pages can be had");
  smp_span_t *other = smp_pageheap_alloc(SMP_TEST_PH, 1, 1, &z, false);
  cr_assert_neq(smp_span_chunk(other), smp_span_chunk(all), "a full chunk makes a new one");
  smp_pageheap_free(all);
  smp_pageheap_free(other);
}

Test(pageheap, grow_and_shrink_in_place) {
  bool z;
  smp_span_t *s = smp_pageheap_alloc(SMP_TEST_PH, 4, 1, &z, false);
  smp_chunk_t *c = smp_span_chunk(s);
  cr_assert(smp_pageheap_grow(s, 10));
  cr_assert_eq(s->npages, 10);
  check_chunk(c);
  smp_span_t *blocker = smp_pageheap_alloc(SMP_TEST_PH, 1, 1, &z, false);
  cr_assert_eq(smp_span_start(blocker), smp_span_start(s) + 10 * SMP_PAGE_SIZE);
  cr_assert_not(smp_pageheap_grow(s, 11), "an in-use neighbour stops growth");
  smp_pageheap_shrink(s, 2);
  cr_assert_eq(s->npages, 2);
  check_chunk(c);
  cr_assert(smp_pageheap_grow(s, 10), "the freed tail can be taken back");
  check_chunk(c);
  smp_pageheap_free(blocker);
  smp_pageheap_free(s);
  check_chunk(c);
}

Test(pageheap, small_class_pages_and_trim) {
  bool z;
  smp_span_t *s = smp_pageheap_alloc(SMP_TEST_PH, 2, 1, &z, false);
  smp_pageheap_set_class(s, 7);
  char *p = smp_span_start(s);
  cr_assert_eq(smp_pagemap_class(p), 7);
  cr_assert_eq(smp_pagemap_class(p + SMP_PAGE_SIZE + 100), 7);
  cr_assert_eq(s->state, SMP_SPAN_SMALL);
  memset(p, 1, smp_span_bytes(s));
  smp_pageheap_stats_t st;
  smp_pageheap_stats(SMP_TEST_PH, &st, NULL);
  cr_assert_eq(st.small_bytes, 2 * SMP_PAGE_SIZE);
  smp_pageheap_free(s);
  cr_assert_eq(smp_pagemap_class(p), 0, "freed pages lose their class");
  smp_pageheap_stats(SMP_TEST_PH, &st, NULL);
  cr_assert_gt(st.free_dirty, 0);
  cr_assert_eq(st.chunks, 1);
  size_t released = smp_pageheap_trim(SMP_TEST_PH);
  cr_assert_gt(released, 0);
  smp_pageheap_stats(SMP_TEST_PH, &st, NULL);
  cr_assert_eq(st.free_dirty, 0);
  cr_assert_eq(st.chunks, 0, "a wholly free chunk is unmapped by trim");
  cr_assert_not(smp_pagemap_owns(p), "and its ownership bit cleared");
}

Test(pageheap, checked_lookup_rejects_header_and_free_pages) {
  bool z;
  smp_span_t *s = smp_pageheap_alloc(SMP_TEST_PH, 6, 1, &z, false);
  smp_chunk_t *c = smp_span_chunk(s);
  cr_assert_null(smp_pagemap_span_checked(c), "the chunk header is no span");
  cr_assert_eq(smp_pagemap_span_checked(smp_span_start(s) + 3 * SMP_PAGE_SIZE), s);
  smp_pageheap_shrink(s, 1);
  cr_assert_null(smp_pagemap_span_checked(smp_span_start(s) + 3 * SMP_PAGE_SIZE),
                 "a stale interior entry of a free span does not resolve");
  smp_pageheap_free(s);
}

// Decay: a freed span stays dirty until it is decay_ms old, then smp_pageheap_decay gives its
// pages back (they read as zero again, and count as purged); a wholly free chunk is unmapped.
Test(pageheap, decay_purges_only_spans_that_came_of_age) {
  smp_options.decay_ms = 200;
  bool z;
  smp_span_t *keep = smp_pageheap_alloc(SMP_TEST_PH, 2, 1, &z, false); // keeps the chunk mapped
  smp_span_t *a = smp_pageheap_alloc(SMP_TEST_PH, 16, 1, &z, false);
  cr_assert(keep && a);
  smp_chunk_t *c = smp_span_chunk(a);
  memset(smp_span_start(a), 0x5a, smp_span_bytes(a));
  smp_pageheap_stats_t st0, st1, st2;
  smp_pageheap_stats(SMP_TEST_PH, &st0, NULL);
  smp_pageheap_free(a);
  smp_pageheap_stats(SMP_TEST_PH, &st1, NULL);
  cr_assert_geq(st1.free_dirty, st0.free_dirty + 16 * SMP_PAGE_SIZE, "a freed span is dirty");
  smp_pageheap_decay(SMP_TEST_PH); // too young
  smp_pageheap_stats(SMP_TEST_PH, &st2, NULL);
  cr_assert_eq(st2.purged_bytes, st1.purged_bytes, "nothing is purged before decay_ms");
  advance(300);
  uint64_t due = smp_pageheap_decay(SMP_TEST_PH);
  smp_pageheap_stats(SMP_TEST_PH, &st2, NULL);
  cr_assert_gt(st2.purged_bytes, st1.purged_bytes, "the span was purged once of age");
  cr_assert_lt(st2.free_dirty, st1.free_dirty);
  cr_assert_eq(due, UINT64_MAX, "nothing else is due");
  smp_span_t *again = smp_pageheap_alloc(SMP_TEST_PH, 16, 1, &z, false);
  cr_assert(z, "a purged span reads as zero");
  for (size_t i = 0; i < smp_span_bytes(again); i += 512)
    cr_assert_eq(smp_span_start(again)[i], 0);
  check_chunk(c);
  smp_pageheap_free(again);
  smp_pageheap_free(keep);
  advance(300);
  smp_pageheap_stats(SMP_TEST_PH, &st1, NULL);
  smp_pageheap_decay(SMP_TEST_PH);
  smp_pageheap_stats(SMP_TEST_PH, &st2, NULL);
  cr_assert_gt(st2.chunks_unmapped, st1.chunks_unmapped, "a wholly free chunk is unmapped");
  cr_assert_lt(st2.chunks, st1.chunks);
}

// The decay list keeps its oldest span at the head: a remainder re-filed with an older stamp
// than the spans freed after it (here 10 of them, more than the bounded walk) goes in behind
// them, never ahead of the oldest. (Filed at the head, its young stamp would hold every older
// span back from decay while frees keep coming.)
Test(pageheap, decay_list_keeps_its_oldest_span_first) {
  smp_options.decay_ms = 60000; // nothing comes of age during the test
  bool z;
  smp_span_t *old = smp_pageheap_alloc(SMP_TEST_PH, 32, 1, &z, false), *sep[12], *small[10];
  sep[0] = smp_pageheap_alloc(SMP_TEST_PH, 1, 1, &z, false);
  smp_span_t *mid = smp_pageheap_alloc(SMP_TEST_PH, 64, 1, &z, false);
  sep[1] = smp_pageheap_alloc(SMP_TEST_PH, 1, 1, &z, false);
  for (int i = 0; i < 10; i++) {
    small[i] = smp_pageheap_alloc(SMP_TEST_PH, 2, 1, &z, false);
    sep[2 + i] = smp_pageheap_alloc(SMP_TEST_PH, 1, 1, &z, false); // keeps the small spans apart when freed
  }
  char *mid_start = smp_span_start(mid);
  smp_pageheap_free(old);
  uint64_t due_old = smp_pageheap_decay(SMP_TEST_PH);
  cr_assert_neq(due_old, UINT64_MAX, "the freed span is on the decay list");
  advance(20); // distinct stamps
  smp_pageheap_free(mid);
  advance(20);
  for (int i = 0; i < 10; i++) smp_pageheap_free(small[i]);
  smp_span_t *x = smp_pageheap_alloc(SMP_TEST_PH, 40, 1, &z, false); // best fit: cut from mid, the rest re-filed
  cr_assert_eq(smp_span_start(x), mid_start, "the 40 pages come from the 64-page span");
  cr_assert_eq(smp_pageheap_decay(SMP_TEST_PH), due_old, "the oldest span is still first to come of age");
  smp_pageheap_free(x);
  for (int i = 0; i < 12; i++) smp_pageheap_free(sep[i]);
}

// purge:free gives pages back with MADV_FREE: the span no longer counts as dirty, but its pages
// may still hold their old bytes, so it is not reported zeroed; merged with a zeroed neighbour
// (the chunk's untouched rest) it stays "not zeroed", and calloc must clear it.
Test(pageheap, lazy_purge_is_clean_but_not_zeroed) {
  smp_options.decay_ms = 20;
  smp_options.purge = SMP_PURGE_FREE;
  bool z;
  smp_span_t *keep = smp_pageheap_alloc(SMP_TEST_PH, 2, 1, &z, false);
  smp_span_t *a = smp_pageheap_alloc(SMP_TEST_PH, 16, 1, &z, false);
  cr_assert(keep && a && z);
  memset(smp_span_start(a), 0x77, smp_span_bytes(a));
  smp_pageheap_stats_t st0, st1;
  smp_pageheap_free(a); // merges with the zeroed rest of the chunk: dirty as a whole
  smp_pageheap_stats(SMP_TEST_PH, &st0, NULL);
  advance(60);
  smp_pageheap_decay(SMP_TEST_PH);
  smp_pageheap_stats(SMP_TEST_PH, &st1, NULL);
  cr_assert_gt(st1.purged_bytes, st0.purged_bytes, "the span was given back");
  cr_assert_lt(st1.free_dirty, st0.free_dirty, "a lazily purged span is not dirty");
  smp_span_t *b = smp_pageheap_alloc(SMP_TEST_PH, 16, 1, &z, false);
  cr_assert_not(z, "MADV_FREE pages need not read as zero");
  smp_pageheap_free(b);
  smp_pageheap_free(keep);
}

// The dirty bound: free pages that may be resident are kept up to dirty_pct of the pages in use
// (at least one chunk's worth); a free beyond that gives the oldest back at once, without
// waiting for decay_ms. With dirty_pct 0 only decay (here: never within the test) does.
static size_t free_many(size_t pct, smp_pageheap_stats_t *out) {
  smp_options.decay_ms = 60000; // nothing comes of age during the test
  smp_options.dirty_pct = pct;
  enum { N = 96, PAGES = 64 }; // 96 spans of 512 KiB: 12 chunks' worth
  bool z;
  smp_span_t *keep = smp_pageheap_alloc(SMP_TEST_PH, 1, 1, &z, false), *s[N];
  for (int i = 0; i < N; i++) {
    s[i] = smp_pageheap_alloc(SMP_TEST_PH, PAGES, 1, &z, false);
    cr_assert_not_null(s[i]);
    memset(smp_span_start(s[i]), 0x5a, smp_span_bytes(s[i]));
  }
  smp_pageheap_stats_t st0;
  smp_pageheap_stats(SMP_TEST_PH, &st0, NULL);
  for (int i = 0; i < N; i++) smp_pageheap_free(s[i]);
  smp_pageheap_stats(SMP_TEST_PH, out, NULL);
  smp_pageheap_free(keep);
  return (size_t)(out->purged_bytes - st0.purged_bytes) +
         (out->chunks_unmapped - st0.chunks_unmapped) * SMP_CHUNK_SIZE;
}

Test(pageheap, dirty_bound_gives_back_a_burst_at_once) {
  smp_pageheap_stats_t st;
  size_t released = free_many(12, &st);
  // In use: one page, so the bound is its floor, one chunk's usable pages.
  cr_assert_leq(st.free_dirty, USABLE * SMP_PAGE_SIZE, "dirty %zu KiB over the bound",
                st.free_dirty >> 10);
  cr_assert_geq(released, (size_t)96 * 64 * SMP_PAGE_SIZE - USABLE * SMP_PAGE_SIZE,
                "the excess went back (%zu KiB)", released >> 10);
}

Test(pageheap, dirty_bound_zero_leaves_it_to_decay) {
  smp_pageheap_stats_t st;
  size_t released = free_many(0, &st);
  cr_assert_eq(released, 0, "nothing goes back before decay_ms with no bound");
  cr_assert_geq(st.free_dirty, (size_t)96 * 64 * SMP_PAGE_SIZE);
}

// A program that frees a burst and allocates it again soon: the first time the bound purges
// it; the pages are wanted again within decay_ms, so the bound grows by as many (the second
// round still purges what the first did not count: the rest of the re-mapped chunks), and by
// the third round (almost) nothing is purged.
enum { BURST_SPANS = 96, BURST_PAGES = 64 };

// One burst: allocate and write BURST_SPANS spans, free them all; the bytes the frees gave back.
static size_t burst(void) {
  smp_span_t *s[BURST_SPANS];
  bool z;
  for (int i = 0; i < BURST_SPANS; i++) {
    s[i] = smp_pageheap_alloc(SMP_TEST_PH, BURST_PAGES, 1, &z, false);
    cr_assert_not_null(s[i]);
    memset(smp_span_start(s[i]), 0x5a, smp_span_bytes(s[i]));
  }
  smp_pageheap_stats_t st0, st1;
  smp_pageheap_stats(SMP_TEST_PH, &st0, NULL);
  for (int i = 0; i < BURST_SPANS; i++) smp_pageheap_free(s[i]);
  smp_pageheap_stats(SMP_TEST_PH, &st1, NULL);
  return (size_t)(st1.purged_bytes - st0.purged_bytes) +
         (st1.chunks_unmapped - st0.chunks_unmapped) * SMP_CHUNK_SIZE;
}

Test(pageheap, dirty_bound_grows_when_purged_pages_come_back) {
  smp_options.decay_ms = 60000;
  smp_options.dirty_pct = 100;
  enum { N = BURST_SPANS, PAGES = BURST_PAGES };
  bool z;
  smp_span_t *keep = smp_pageheap_alloc(SMP_TEST_PH, 1, 1, &z, false);
  size_t released[3];
  for (int round = 0; round < 3; round++) released[round] = burst();
  cr_assert_gt(released[0], (size_t)N * PAGES * SMP_PAGE_SIZE / 2, "the first burst went back");
  cr_assert_lt(released[1], released[0] / 2, "the second, less (%zu KiB, first %zu KiB)",
               released[1] >> 10, released[0] >> 10);
  cr_assert_lt(released[2], released[0] / 8, "the third, (almost) none (%zu KiB)",
               released[2] >> 10);
  smp_pageheap_free(keep);
}

// What the bound learned fades with time, also in a process whose only page-heap calls come
// from the background thread (smp_pageheap_decay): after many quarters of decay_ms without a
// miss, a burst goes back again as the first one did.
Test(pageheap, dirty_bound_allowance_fades) {
  smp_options.decay_ms = 200;
  smp_options.dirty_pct = 100;
  bool z;
  smp_span_t *keep = smp_pageheap_alloc(SMP_TEST_PH, 1, 1, &z, false);
  size_t first = burst();
  burst();
  size_t learned = burst();
  cr_assert_lt(learned, first / 8, "the bound learned (%zu KiB, first %zu KiB)", learned >> 10,
               first >> 10);
  advance(800); // 16 quarters of decay_ms
  smp_pageheap_decay(SMP_TEST_PH);
  size_t faded = burst();
  cr_assert_gt(faded, first / 8 * 7, "after the pause the burst went back (%zu KiB, first %zu KiB)",
               faded >> 10, first >> 10);
  smp_pageheap_free(keep);
}

// Dirty spans are taken before clean ones: a freed (dirty) span that is larger than the request
// wins over a clean one of exactly the size, so a free page is reused before a page is faulted in.
Test(pageheap, dirty_span_before_clean_one) {
  smp_options.decay_ms = 60000;
  smp_options.dirty_pct = 0; // no bound: the freed span stays dirty
  bool z;
  smp_span_t *keep = smp_pageheap_alloc(SMP_TEST_PH, 1, 1, &z, false);
  smp_span_t *clean = smp_pageheap_alloc(SMP_TEST_PH, 4, 1, &z, false), *sep = smp_pageheap_alloc(SMP_TEST_PH, 1, 1, &z, false);
  smp_span_t *dirty = smp_pageheap_alloc(SMP_TEST_PH, 8, 1, &z, false), *sep2 = smp_pageheap_alloc(SMP_TEST_PH, 1, 1, &z, false);
  cr_assert(keep && clean && sep && dirty && sep2);
  char *clean_start = smp_span_start(clean), *dirty_start = smp_span_start(dirty);
  memset(dirty_start, 0x5a, smp_span_bytes(dirty));
  smp_pageheap_free(clean);
  cr_assert_eq(smp_pageheap_trim(SMP_TEST_PH) > 0, true, "the 4-page span is given back: clean");
  smp_pageheap_free(dirty);
  smp_pageheap_stats_t st;
  smp_pageheap_stats(SMP_TEST_PH, &st, NULL);
  cr_assert_eq(st.free_dirty, 8 * SMP_PAGE_SIZE, "only the 8-page span is dirty");
  smp_span_t *a = smp_pageheap_alloc(SMP_TEST_PH, 4, 1, &z, false);
  cr_assert_eq(smp_span_start(a), dirty_start, "4 pages cut from the dirty span, not the clean one");
  cr_assert_not(z, "dirty pages are not reported zeroed");
  smp_span_t *b = smp_pageheap_alloc(SMP_TEST_PH, 4, 1, &z, false);
  cr_assert_eq(smp_span_start(b), dirty_start + 4 * SMP_PAGE_SIZE, "then the dirty rest");
  smp_span_t *c = smp_pageheap_alloc(SMP_TEST_PH, 4, 1, &z, false);
  cr_assert_eq(smp_span_start(c), clean_start, "then the clean span of exactly the size");
  cr_assert(z, "it reads as zero");
  check_chunk(smp_span_chunk(keep));
  smp_span_t *all[] = {a, b, c, sep, sep2, keep};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) smp_pageheap_free(all[i]);
}

// The background thread's pass: a heap that served a call since the previous pass keeps its
// young dirty pages (decay decides); one that served none for a whole period is idle and gives
// all of them back. A shorter pause (a pass signalled soon after the last) is not idleness.
Test(pageheap, background_pass_gives_back_an_idle_heap) {
  smp_options.decay_ms = 2000; // passes every 500 ms: idle after 250 ms without a call
  smp_options.dirty_pct = 0;
  bool z;
  smp_span_t *keep = smp_pageheap_alloc(SMP_TEST_PH, 1, 1, &z, false), *a = smp_pageheap_alloc(SMP_TEST_PH, 32, 1, &z, false);
  memset(smp_span_start(a), 0x5a, smp_span_bytes(a));
  uint64_t calls = smp_pageheap_calls(SMP_TEST_PH);
  cr_assert_not(smp_pageheap_idle_since(SMP_TEST_PH, calls), "no pass yet: not idle");
  smp_pageheap_background_pass(SMP_TEST_PH, false);
  smp_pageheap_free(a); // a call after the pass
  smp_pageheap_stats_t st0, st1;
  smp_pageheap_stats(SMP_TEST_PH, &st0, NULL);
  calls = smp_pageheap_calls(SMP_TEST_PH);
  cr_assert_not(smp_pageheap_idle_since(SMP_TEST_PH, calls), "the heap freed a span since the pass");
  smp_pageheap_background_pass(SMP_TEST_PH, false);
  smp_pageheap_stats(SMP_TEST_PH, &st1, NULL);
  cr_assert_eq(st1.purged_bytes, st0.purged_bytes, "young pages stay in a busy heap");
  cr_assert_geq(st1.free_dirty, 32 * SMP_PAGE_SIZE);
  calls = smp_pageheap_calls(SMP_TEST_PH);
  cr_assert_not(smp_pageheap_idle_since(SMP_TEST_PH, calls), "no call since the last pass, but not for a period");
  advance(20);
  calls = smp_pageheap_calls(SMP_TEST_PH);
  cr_assert_not(smp_pageheap_idle_since(SMP_TEST_PH, calls), "20 ms without a call is a pause, not idleness");
  advance(300);
  calls = smp_pageheap_calls(SMP_TEST_PH);
  cr_assert(smp_pageheap_idle_since(SMP_TEST_PH, calls), "no call for half a period since the last pass: idle");
  smp_pageheap_background_pass(SMP_TEST_PH, true);
  smp_pageheap_stats(SMP_TEST_PH, &st1, NULL);
  cr_assert_eq(st1.free_dirty, 0, "an idle heap keeps no dirty page (%zu KiB)", st1.free_dirty >> 10);
  cr_assert_geq(st1.purged_bytes, st0.purged_bytes + 32 * SMP_PAGE_SIZE);
  smp_pageheap_free(keep);
}

// While background passes keep coming, the frees enforce the dirty bound only up to
// SMP_PAGEHEAP_SLOW_PURGE between two passes; the pass does the rest. Two periods after the
// last pass (the thread starved or gone), the slow paths enforce all of it again themselves.
Test(pageheap, slow_paths_defer_to_background_passes) {
  smp_options.dirty_pct = 100;
  enum { N = 3 * (SMP_PAGEHEAP_SLOW_PURGE >> 19), PAGES = 64 }; // 3 budgets of 512 KiB spans
  static smp_span_t *s[N];
  bool z;
  smp_pageheap_stats_t st0, st;
  for (int round = 0; round < 2; round++) {
    // Round 0: passes every second, one just now; round 1: every 10 ms, and none for 50 ms.
    smp_options.decay_ms = round == 0 ? 60000 : 40;
    for (int i = 0; i < N; i++) {
      s[i] = smp_pageheap_alloc(SMP_TEST_PH, PAGES, 1, &z, false);
      cr_assert_not_null(s[i]);
      memset(smp_span_start(s[i]), 0x5a, smp_span_bytes(s[i]));
    }
    if (round == 0) smp_pageheap_background_pass(SMP_TEST_PH, false);
    else advance(50);
    smp_pageheap_stats(SMP_TEST_PH, &st0, NULL);
    for (int i = 0; i < N; i++) smp_pageheap_free(s[i]);
    smp_pageheap_stats(SMP_TEST_PH, &st, NULL);
    size_t purged = (size_t)(st.purged_bytes - st0.purged_bytes) +
                    (st.chunks_unmapped - st0.chunks_unmapped) * SMP_CHUNK_SIZE;
    if (round == 0) {
      cr_assert_geq(purged, SMP_PAGEHEAP_SLOW_PURGE, "the frees used their budget (%zu KiB)",
                    purged >> 10);
      cr_assert_leq(purged, SMP_PAGEHEAP_SLOW_PURGE + SMP_CHUNK_SIZE,
                    "and no more (%zu KiB)", purged >> 10);
      cr_assert_gt(st.free_dirty, st.dirty_bound, "so the bound is exceeded (dirty %zu KiB)",
                   st.free_dirty >> 10);
      smp_pageheap_background_pass(SMP_TEST_PH, false);
      smp_pageheap_stats(SMP_TEST_PH, &st, NULL);
      cr_assert_leq(st.free_dirty, st.dirty_bound, "the pass enforced the bound (dirty %zu KiB)",
                    st.free_dirty >> 10);
    } else {
      cr_assert_leq(st.free_dirty, st.dirty_bound,
                    "with no pass for two periods the frees enforce the bound (dirty %zu KiB, "
                    "bound %zu KiB)", st.free_dirty >> 10, st.dirty_bound >> 10);
    }
  }
}

// Stranded dirty pages: single free pages between live spans, which no request for a run can
// use. A chunk's growth later (they were free already when the heap mapped the previous chunk,
// and no allocation since took them), the heap maps another chunk and gives them back instead
// of growing resident memory past them. Not before: young dirty pages may still be reused.
static void stranded_pages(bool passes) {
  smp_options.decay_ms = 60000;
  smp_options.dirty_pct = 1000; // a bound that never acts
  if (passes) smp_pageheap_background_pass(SMP_TEST_PH, false); // the next passes are due in 15 s
  enum { N = 64 };
  bool z;
  smp_span_t *hole[N], *live[N];
  for (int i = 0; i < N; i++) {
    hole[i] = smp_pageheap_alloc(SMP_TEST_PH, 1, 1, &z, false);
    live[i] = smp_pageheap_alloc(SMP_TEST_PH, 1, 1, &z, false);
    memset(smp_span_start(hole[i]), 0x5a, SMP_PAGE_SIZE);
  }
  advance(20); // stamps apart
  for (int i = 0; i < N; i++) smp_pageheap_free(hole[i]);
  advance(20);
  smp_pageheap_stats_t st0, st1, st2;
  smp_pageheap_stats(SMP_TEST_PH, &st0, NULL);
  cr_assert_geq(st0.free_dirty, N * SMP_PAGE_SIZE);
  // Runs of half a chunk: no hole fits them, so every other one maps a chunk.
  smp_span_t *big[4], *young = NULL, *guard = NULL;
  big[0] = smp_pageheap_alloc(SMP_TEST_PH, USABLE / 2 + 1, 1, &z, false); // the first chunk has no such run left
  big[1] = smp_pageheap_alloc(SMP_TEST_PH, USABLE / 2 + 1, 1, &z, false);
  smp_pageheap_stats(SMP_TEST_PH, &st1, NULL);
  cr_assert_gt(st1.chunks, st0.chunks, "the heap grew");
  cr_assert_eq(st1.purged_bytes, st0.purged_bytes,
               "the holes were freed after the last growth: not yet stranded");
  advance(20);
  big[2] = smp_pageheap_alloc(SMP_TEST_PH, USABLE / 2 + 1, 1, &z, false);
  big[3] = smp_pageheap_alloc(SMP_TEST_PH, USABLE / 2 + 1, 1, &z, false);
  smp_pageheap_stats(SMP_TEST_PH, &st2, NULL);
  cr_assert_gt(st2.chunks, st1.chunks, "the heap grew again");
  if (passes) {
    cr_assert_eq(st2.purged_bytes, st1.purged_bytes, "a background thread passes: left to it");
    // A young dirty span (freed after the growth: not stranded) stays behind the holes; with
    // the holes gone, the rest of the pending count must not wait for it.
    young = smp_pageheap_alloc(SMP_TEST_PH, 2, 1, &z, false);
    guard = smp_pageheap_alloc(SMP_TEST_PH, 2, 1, &z, false);
    smp_pageheap_free(young);
    smp_pageheap_wait_pass(); // signalled: returns at once, not in 15 s
    smp_pageheap_background_pass(SMP_TEST_PH, false);
    smp_pageheap_stats(SMP_TEST_PH, &st2, NULL);
    cr_assert_eq(st2.stranded_pending, 0, "no stranded page is left: nothing is pending (%zu KiB)",
                 st2.stranded_pending >> 10);
  }
  cr_assert_geq(st2.purged_bytes, st1.purged_bytes + N * SMP_PAGE_SIZE,
                "a chunk's growth later the holes went back (%llu KiB)",
                (unsigned long long)(st2.purged_bytes - st1.purged_bytes) >> 10);
  cr_assert_lt(st2.free_dirty, st0.free_dirty);
  for (int i = 0; i < 4; i++) smp_pageheap_free(big[i]);
  for (int i = 0; i < N; i++) smp_pageheap_free(live[i]);
  if (guard) smp_pageheap_free(guard);
}

Test(pageheap, stranded_pages_go_back_when_the_heap_grows_past_them) { stranded_pages(false); }

Test(pageheap, stranded_pages_go_back_on_the_signalled_pass, .timeout = 10) { stranded_pages(true); }
