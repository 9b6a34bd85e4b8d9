// Unit tests of lib/span and lib/remote: carving, the local list, remote pushes and drains,
// the counting invariant, the DETACHED/ATTN transitions, and the corruption/double-free checks.
// The last test hammers one span from several threads and checks every block comes back once.
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "options.h"
#include "pageheap.h"
#include "remote.h"
#include "span.h"
#include "central.h"
// The default heap's page heap, which these tests drive.
#define SMP_TEST_PH (smp_central_default->pages)

// Options as a process gets them from SMPALLOC_OPTIONS: the defaults in unit_remote, every
// option zero in unit_remote_zero.
static void setup(void) {
  smp_options_parse(getenv("SMPALLOC_OPTIONS"));
  smp_sizeclass_init(smp_options.cache_size);
  smp_span_init_keys(12345);
}
TestSuite(remote, .init = setup);

static smp_span_t *make_span(unsigned cls) {
  bool z;
  smp_span_t *s = smp_pageheap_alloc(SMP_TEST_PH, smp_class_info[cls].pages, 1, &z, false);
  cr_assert_not_null(s);
  smp_span_carve_init(s, cls);
  smp_pageheap_set_class(s, cls);
  return s;
}

// Blocks on the span's local list + uncarved + remote list.
static unsigned free_blocks(smp_span_t *s) {
  unsigned n = s->carve_left;
  for (void *b = s->free; b; b = smp_block_link(b)) n++;
  for (void *b = smp_remote_head(smp_load_relaxed(&s->remote)); b; b = smp_block_link(b)) n++;
  return n;
}

// Build a chain of n blocks (links encoded) and push it.
static bool push(smp_span_t *s, void **blocks, unsigned n) {
  for (unsigned i = 0; i + 1 < n; i++) smp_block_set_link(blocks[i], blocks[i + 1]);
  return smp_remote_push(s, blocks[0], blocks[n - 1], n);
}

Test(remote, carve_pop_hands_out_distinct_aligned_blocks) {
  unsigned cls = 5; // 80 bytes
  smp_span_t *s = make_span(cls);
  unsigned cap = s->capacity;
  void *out[1024];
  cr_assert_eq(smp_span_pop(s, out, cap + 10), cap, "no more than the capacity");
  cr_assert(smp_span_local_empty(s));
  for (unsigned i = 0; i < cap; i++) {
    cr_assert_eq((uintptr_t)out[i] % 16, 0);
    cr_assert(smp_span_is_block(s, out[i]));
    cr_assert_not(smp_span_is_block(s, (char *)out[i] + 16));
    for (unsigned j = 0; j < i; j++) cr_assert_neq(out[i], out[j]);
  }
}

Test(remote, the_tail_past_the_last_block_is_marked) {
  for (unsigned cls = 1; cls < SMP_CLASS_COUNT; cls++) {
    const smp_class_info_t *ci = &smp_class_info[cls];
    size_t used = (size_t)ci->capacity * ci->size, bytes = (size_t)ci->pages * SMP_PAGE_SIZE;
    if (used == bytes) continue;
    smp_span_t *s = make_span(cls);
    cr_assert(smp_sizeclass_on_boundary(cls, used), "the tail passes the boundary test...");
    cr_assert(smp_block_is_marked(smp_span_start(s) + used), "...so it must carry the mark");
    cr_assert_not(smp_span_is_block(s, smp_span_start(s) + used));
    smp_pageheap_free(s);
  }
}

Test(remote, counting_invariant_through_push_and_drain) {
  smp_span_t *s = make_span(3);
  unsigned cap = s->capacity;
  void *out[1024];
  unsigned n = smp_span_pop(s, out, 40);
  cr_assert_not(smp_remote_hand_out(s, n, smp_span_local_empty(s)));
  uint64_t w = smp_load_relaxed(&s->remote);
  cr_assert_eq(smp_remote_out(w), 40);
  cr_assert_eq(smp_remote_out(w) + free_blocks(s), cap);
  cr_assert_not(push(s, out, 10), "a partial return needs no attention");
  cr_assert_eq(smp_remote_out(smp_load_relaxed(&s->remote)), 30);
  cr_assert_eq(smp_remote_out(smp_load_relaxed(&s->remote)) + free_blocks(s), cap);
  void *chain = smp_remote_drain(s);
  cr_assert_eq(chain, out[0], "the drained list starts with the last pushed chain");
  cr_assert_null(smp_remote_head(smp_load_relaxed(&s->remote)));
  s->free = chain;
  cr_assert_eq(smp_remote_out(smp_load_relaxed(&s->remote)) + free_blocks(s), cap);
  cr_assert(push(s, out + 10, 30), "the push that brings out to 0 takes ATTN");
  w = smp_load_relaxed(&s->remote);
  cr_assert_eq(smp_remote_out(w), 0);
  cr_assert(smp_remote_flags(w) & SMP_REMOTE_ATTN);
  cr_assert_not(smp_remote_retire(s), "no release while an attend is pending");
  w = smp_remote_take_attn(s);
  cr_assert(smp_remote_flags(w) & SMP_REMOTE_ATTN, "take_attn returns the word it cleared");
  cr_assert(smp_remote_retire(s));
  cr_assert(smp_remote_flags(smp_load_relaxed(&s->remote)) & SMP_REMOTE_DEAD);
}

Test(remote, detach_and_first_push_reattaches) {
  smp_span_t *s = make_span(80); // 64 KiB blocks: few per span
  unsigned cap = s->capacity;
  void *out[64];
  cr_assert_eq(smp_span_pop(s, out, 64), cap);
  cr_assert(smp_remote_hand_out(s, cap, smp_span_local_empty(s)), "empty span detaches");
  cr_assert(smp_remote_flags(smp_load_relaxed(&s->remote)) & SMP_REMOTE_DETACHED);
  cr_assert(push(s, out, 1), "first push to a detached span takes ATTN");
  uint64_t w = smp_load_relaxed(&s->remote);
  cr_assert_not(smp_remote_flags(w) & SMP_REMOTE_DETACHED);
  cr_assert(smp_remote_flags(w) & SMP_REMOTE_ATTN);
  cr_assert_not(push(s, out + 1, 1), "ATTN already held: the next pusher has no duty");
}

Test(remote, detach_refused_while_remote_blocks_wait) {
  smp_span_t *s = make_span(80);
  unsigned cap = s->capacity;
  void *out[64];
  smp_span_pop(s, out, cap);
  smp_remote_hand_out(s, cap - 1, false);
  push(s, out, 1); // one block comes back before the owner accounts the last one
  cr_assert_not(smp_remote_hand_out(s, 1, true), "no detach with a non-empty remote list");
  cr_assert_not(smp_remote_flags(smp_load_relaxed(&s->remote)) & SMP_REMOTE_DETACHED);
}

Test(remote, pushing_more_than_out_is_a_double_free, .signal = SIGABRT) {
  smp_span_t *s = make_span(2);
  void *out[4];
  smp_span_pop(s, out, 2);
  smp_remote_hand_out(s, 2, false);
  void *again[3] = {out[0], out[1], out[0]};
  push(s, again, 3);
}

Test(remote, pushing_to_a_dead_span_aborts, .signal = SIGABRT) {
  smp_span_t *s = make_span(2);
  cr_assert(smp_remote_retire(s));
  void *b = smp_span_start(s);
  push(s, &b, 1);
}

Test(remote, corrupted_link_is_caught_on_pop, .signal = SIGABRT) {
  smp_span_t *s = make_span(4);
  void *out[8];
  smp_span_pop(s, out, 8);
  smp_remote_hand_out(s, 8, false);
  push(s, out, 8);
  s->free = smp_remote_drain(s);
  memset(out[2], 0x41, 8); // a heap overflow from the block before overwrites the link
  void *again[8];
  smp_span_pop(s, again, 8);
}

Test(remote, free_mark_round_trip) {
  smp_span_t *s = make_span(1);
  void *b;
  smp_span_pop(s, &b, 1);
  cr_assert_not(smp_block_is_marked(b));
  smp_block_mark(b);
  cr_assert(smp_block_is_marked(b));
  smp_block_unmark(b);
  cr_assert_not(smp_block_is_marked(b));
  cr_assert_neq(smp_block_mark_of(b), 0, "a mark is never 0");
  cr_assert_neq(smp_block_mark_of(b), smp_block_mark_of((char *)b + 16), "marks are per address");
}

// Concurrency: the owner (main thread) keeps handing blocks to pushers through a mailbox and
// draining; pushers return them in random chains. Every block must come back exactly once.
#define PUSHERS 3
typedef struct {
  smp_span_t *span;
  void *_Atomic box[256];
  _Atomic int stop;
} arena_t;

static void *pusher(void *arg) {
  arena_t *a = arg;
  uint32_t seed = (uint32_t)(uintptr_t)pthread_self();
  void *chain[16];
  unsigned n = 0;
  while (!atomic_load(&a->stop) || n) {
    seed = seed * 1103515245 + 12345;
    void *b = atomic_exchange(&a->box[(seed >> 8) % 256], NULL);
    if (b) chain[n++] = b;
    if (n && (n == 16 || (seed >> 20) % 3 == 0 || atomic_load(&a->stop))) {
      push(a->span, chain, n);
      n = 0;
    }
  }
  return NULL;
}

Test(remote, concurrent_pushes_lose_and_duplicate_nothing) {
  arena_t a = {.span = make_span(1)}; // 16-byte blocks: 512 per span
  smp_span_t *s = a.span;
  unsigned cap = s->capacity;
  pthread_t t[PUSHERS];
  for (int i = 0; i < PUSHERS; i++) pthread_create(&t[i], NULL, pusher, &a);
  unsigned char *seen = calloc(cap, 1);
  long handed = 0;
  for (int round = 0; round < 20000; round++) {
    void *b;
    if (smp_span_pop(s, &b, 1) == 0) {
      s->free = smp_remote_drain(s);
      if (smp_span_pop(s, &b, 1) == 0) continue;
    }
    smp_remote_hand_out(s, 1, false);
    handed++;
    void *expected = NULL;
    unsigned slot = (unsigned)round % 256;
    while (!atomic_compare_exchange_weak(&a.box[slot], &expected, b)) {
      expected = NULL;
      slot = (slot + 1) % 256;
    }
  }
  atomic_store(&a.stop, 1);
  for (int i = 0; i < 256; i++) { // blocks still in the mailbox go back too
    void *b = atomic_exchange(&a.box[i], NULL);
    if (b) push(s, &b, 1);
  }
  for (int i = 0; i < PUSHERS; i++) pthread_join(t[i], NULL);
  cr_assert_gt(handed, 10000);
  uint64_t w = smp_load_relaxed(&s->remote);
  cr_assert_eq(smp_remote_out(w), 0, "every handed-out block came back");
  // Counting invariant with out == 0: local list + remote list + uncarved tail == capacity,
  // and no block appears twice.
  void *lists[2] = {s->free, smp_remote_drain(s)};
  unsigned n = s->carve_left;
  for (int l = 0; l < 2; l++)
    for (void *b = lists[l]; b; b = smp_block_link(b)) {
      cr_assert(smp_span_is_block(s, b));
      unsigned idx = (unsigned)(((char *)b - smp_span_start(s)) / 16);
      cr_assert_eq(seen[idx], 0, "block %u returned twice", idx);
      seen[idx] = 1;
      n++;
    }
  free(seen);
  cr_assert_eq(n, cap);
}
