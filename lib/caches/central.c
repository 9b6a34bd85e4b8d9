// Layer: caches. See central.h for the span states and the lock order; remote.h for the word.
#include <string.h>

#include "assertion.h"
#include "central.h"
#include "debug.h"
#include "pageheap.h"
#include "remote.h"
#include "span.h"

typedef smp_central_class_t central_class_t;

void smp_central_init(smp_central_t *c, struct smp_pageheap *pages) {
  for (unsigned cls = 0; cls < SMP_CLASS_COUNT; cls++) smp_lock_init(&c->cls[cls].lock);
  c->pages = pages;
  pages->central = c;
}

// A transfer cache (central.h), one per class. Its lock is only ever tried on the miss paths:
// a thread that finds it busy goes to the spans instead of waiting.
typedef struct transfer {
  smp_lock_t lock;
  _Atomic uint32_t count;  // lock (written), relaxed reads: blocks in slots[0, count)
  uint32_t uses;           // lock: takes and puts, for the idle pass
  uint32_t idle_uses;      // lock: uses seen by the last idle pass
  bool taken;              // lock: a take came after the last put
  void *slots[SMP_TRANSFER_MAX];
} SMP_CACHE_ALIGNED transfer_t;
struct smp_transfer {
  transfer_t cls[SMP_CLASS_COUNT];
};
smp_transfer_t smp_transfer_default = {.cls = {[0 ... SMP_CLASS_COUNT - 1] = {.lock = SMP_LOCK_INIT}}};

static uint32_t transfer_count(transfer_t *t) { return smp_load_relaxed(&t->count); }
static void transfer_set_count(transfer_t *t, uint32_t n) { smp_store_relaxed(&t->count, n); }

// Blocks the transfer cache of class cls holds at most: two batches, or one where two would
// be over SMP_TRANSFER_BYTES (so all of them together hold under 4 MiB).
static unsigned transfer_cap(unsigned cls) {
  unsigned b = smp_class_info[cls].batch, by_bytes = SMP_TRANSFER_BYTES / smp_class_info[cls].size;
  return 2 * b <= by_bytes ? 2 * b : b;
}

// Whether blocks of class cls of heap c pass through a transfer cache.
static bool transfer_used(const smp_central_t *c, unsigned cls) {
  return c->transfer != NULL && cls >= SMP_OUTBOX_CLASSES;
}

// Up to want blocks from c's transfer cache of cls (0 if it is empty or its lock is busy).
static unsigned transfer_take(smp_central_t *c, unsigned cls, void **out, unsigned want) {
  transfer_t *t = &c->transfer->cls[cls];
  if (transfer_count(t) == 0 || !smp_lock_try(&t->lock)) return 0;
  unsigned count = transfer_count(t), k = count < want ? count : want;
  transfer_set_count(t, count - k);
  t->uses++;
  t->taken = true;
  memcpy(out, &t->slots[count - k], k * sizeof *out);
  smp_lock_release(&t->lock);
  return k;
}

// Put the n validated blocks in the transfer cache of cls, all or none. A second batch is
// taken only if some refill took from it since the last put: blocks wait there for a cache
// that wants them, and while every cache only frees (a program shrinking), one batch at most
// waits, instead of pinning the spans of two (server_churn's final RSS doubled).
static bool transfer_put(smp_central_t *c, unsigned cls, void *const *blocks, unsigned n) {
  transfer_t *t = &c->transfer->cls[cls];
  if (!smp_lock_try(&t->lock)) return false;
  unsigned count = transfer_count(t);
  bool ok = count + n <= transfer_cap(cls) && (count == 0 || t->taken);
  if (ok) {
    memcpy(&t->slots[count], blocks, n * sizeof *blocks);
    transfer_set_count(t, count + n);
    t->uses++;
    t->taken = false;
  }
  smp_lock_release(&t->lock);
  return ok;
}

// The central lists that own span s.
static smp_central_t *central_of(const smp_span_t *s) { return smp_span_chunk(s)->heap->central; }

static void list_locked(central_class_t *cc, smp_span_t *s) {
  s->prev = NULL;
  s->next = cc->partial;
  if (s->next) s->next->prev = s;
  cc->partial = s;
  s->listed = 1;
  cc->listed++;
}

static void unlist_locked(central_class_t *cc, smp_span_t *s) {
  if (s->prev) s->prev->next = s->next; else cc->partial = s->next;
  if (s->next) s->next->prev = s->prev;
  s->next = s->prev = NULL;
  s->listed = 0;
  cc->listed--;
}

static smp_span_t *new_span_locked(smp_central_t *c, central_class_t *cc, unsigned cls,
                                   bool nowait) {
  smp_span_t *s = smp_pageheap_alloc_small(c->pages, smp_class_info[cls].pages, cls, nowait);
  if (s == NULL) return NULL;
  smp_span_carve_init(s, cls);
  cc->spans++;
  list_locked(cc, s);
  return s;
}

// Only with out == 0 and ATTN clear: no legitimate push can reach s any more.
static void release_locked(central_class_t *cc, smp_span_t *s) {
  SMP_ASSERT(smp_remote_out(smp_load_relaxed(&s->remote)) == 0 &&
             !(smp_remote_flags(smp_load_relaxed(&s->remote)) & SMP_REMOTE_ATTN));
  if (s->listed) unlist_locked(cc, s);
  smp_store_relaxed(&s->remote, smp_remote_word(NULL, 0, SMP_REMOTE_DEAD));
  cc->spans--;
  smp_pageheap_free(s);
}

// The listed span a refill for owner takes from: the first of the first few that owner owns
// (its blocks came back to it: handing them to the same cache keeps a cache line's blocks with
// one CPU), else the first. NULL if none is listed.
// For a class whose blocks share cache lines (under SMP_OUTBOX_CLASSES), NULL rather than
// another cache's span while fewer than SMP_OWN_SPAN_LISTED spans are listed: the refill then
// starts a span of its own. Taking over the other cache's span made the two caches hand out
// neighbours on the same lines and pass the span back and forth (cache_scratch).
#define SMP_OWN_SPAN_LISTED 4
static smp_span_t *pick_locked(const central_class_t *cc, unsigned cls, unsigned owner) {
  smp_span_t *s = cc->partial;
  if (owner == SMP_OWNER_NONE) return s;
  unsigned steps = 0;
  for (smp_span_t *t = s; t && steps < 4; t = t->next, steps++)
    if (smp_load_relaxed(&smp_span_chunk(t)->page_owner[t->page]) == owner) return t;
  if (cls < SMP_OUTBOX_CLASSES && cc->listed < SMP_OWN_SPAN_LISTED) return NULL;
  return s;
}

// Name owner as the owner of small span s (central lock held): a hint for free (pagemap.h).
static void own_locked(smp_span_t *s, unsigned owner) {
  smp_chunk_t *c = smp_span_chunk(s);
  if (owner == SMP_OWNER_NONE || smp_load_relaxed(&c->page_owner[s->page]) == owner) return;
  for (unsigned i = 0; i < s->npages; i++)
    smp_store_relaxed(&c->page_owner[s->page + i], (uint8_t)owner);
}

unsigned smp_central_refill(smp_central_t *c, unsigned cls, void **out, unsigned want, bool nowait) {
  return smp_central_refill_for(c, cls, out, want, nowait, SMP_OWNER_NONE);
}

unsigned smp_central_refill_for(smp_central_t *c, unsigned cls, void **out, unsigned want,
                                bool nowait, unsigned owner) {
  central_class_t *cc = &c->cls[cls];
  unsigned got = 0;
  // The transfer cache first; the spans fill up what it could not give, unless it gave half.
  if (transfer_used(c, cls) && (got = transfer_take(c, cls, out, want)) * 2 >= want && got) return got;
  if (nowait) {
    if (!smp_lock_try(&cc->lock)) return got;
  } else {
    smp_lock_acquire(&cc->lock);
  }
  while (got < want) {
    smp_span_t *s = pick_locked(cc, cls, owner);
    if (s == NULL && (s = new_span_locked(c, cc, cls, nowait)) == NULL) break;
    own_locked(s, owner);
    unsigned n = smp_span_pop(s, out + got, want - got);
    if (got + n < want) {
      void *chain = smp_remote_drain(s);
      if (chain) {
        s->free = chain; // local list is empty here: the drained chain becomes it
        n += smp_span_pop(s, out + got + n, want - got - n);
      }
    }
    got += n;
    if (smp_remote_hand_out(s, n, smp_span_local_empty(s))) unlist_locked(cc, s);
  }
  smp_lock_release(&cc->lock);
  return got;
}

// Called by the pusher that set ATTN (see remote.h). Decides on the word it cleared.
static void attend(smp_span_t *s) {
  central_class_t *cc = &central_of(s)->cls[s->sizeclass];
  smp_lock_acquire(&cc->lock);
  uint64_t w = smp_remote_take_attn(s);
  if (smp_remote_out(w) == 0) {
    // Wholly free. Keep it as the class's one reserve span if nothing else is listed.
    bool only = s->listed ? cc->listed == 1 : cc->listed == 0;
    if (!only)
      release_locked(cc, s);
    else if (!s->listed)
      list_locked(cc, s);
  } else if (!(smp_remote_flags(w) & SMP_REMOTE_DETACHED) && !s->listed) {
    list_locked(cc, s);
  }
  smp_lock_release(&cc->lock);
}

typedef struct flush_group {
  smp_span_t *span;
  void *head, *tail;
  unsigned n;
} flush_group_t;

static void group_push(flush_group_t *g) {
  if (smp_remote_push(g->span, g->head, g->tail, g->n)) attend(g->span);
  g->span = NULL;
}

// Validate p as a block being freed and return its span; reports and aborts otherwise.
static smp_span_t *block_span(void *p) {
  smp_span_t *s = smp_pagemap_span_checked(p);
  if (SMP_UNLIKELY(s == NULL || s->state != SMP_SPAN_SMALL || !smp_span_is_block(s, p)))
    smp_debug_fatal("free", "invalid pointer", p);
  return s;
}

// A block's word 1 while a flush holds it: its free mark with bit 1 flipped (never a mark of any
// block, marks being odd addresses XOR one key). Only a flush writes it, and the same flush puts
// the mark back before it publishes the block. A block that shows it is suspected of being in
// this batch already; a report needs it found there (bytes a block never handed out carries
// from an earlier life could equal the tag, so the tag alone proves nothing).
static uintptr_t flush_tag(const void *p) { return smp_block_mark_of(p) ^ 2; }

static bool in_batch(void *const *blocks, unsigned n, const void *p) {
  for (unsigned i = 0; i < n; i++)
    if (blocks[i] == p) return true;
  return false;
}

// Give n blocks back; with c, all should be blocks of class cls of c's heap (checked), which
// may then stay in its transfer cache.
static void flush(void *const *blocks, unsigned n, smp_central_t *c, unsigned cls) {
  // Pass 1: every block is validated and tagged before any is published, so a duplicate is
  // reported while the span lists are still intact. The spans found are kept for pass 2.
  enum { KEPT = 64 };
  smp_span_t *spans[KEPT];
  bool same_class = c != NULL && transfer_used(c, cls);
  for (unsigned i = 0; i < n; i++) {
    uintptr_t *w = blocks[i];
    smp_span_t *s = block_span(w);
    if (i < KEPT) spans[i] = s;
    same_class = same_class && s->sizeclass == cls && central_of(s) == c;
    if (SMP_UNLIKELY(w[1] == flush_tag(w)) && in_batch(blocks, i, w))
      smp_debug_fatal("free", "double free", w);
    w[1] = flush_tag(w);
  }
  if (same_class && n <= transfer_cap(cls)) {
    for (unsigned i = 0; i < n; i++) smp_block_mark(blocks[i]);
    if (transfer_put(c, cls, blocks, n)) return;
  }
  // Pass 2: groups of blocks of one span, each pushed with one CAS; each block gets its mark
  // back before its group is pushed (a double free of a block on a span list is then suspected).
  enum { WAYS = 8 };
  flush_group_t g[WAYS] = {{0}};
  for (unsigned i = 0; i < n; i++) {
    void *p = blocks[i];
    smp_span_t *s = i < KEPT ? spans[i] : smp_pagemap_span_checked(p);
    smp_block_mark(p);
    unsigned w = (unsigned)(((uintptr_t)s >> 6) % WAYS);
    if (g[w].span != s) {
      if (g[w].span) group_push(&g[w]);
      g[w] = (flush_group_t){s, p, p, 0};
    } else {
      smp_block_set_link(p, g[w].head);
      g[w].head = p;
    }
    g[w].n++;
  }
  for (unsigned w = 0; w < WAYS; w++)
    if (g[w].span) group_push(&g[w]);
}

void smp_central_flush(void *const *blocks, unsigned n) { flush(blocks, n, NULL, 0); }

void smp_central_give(smp_central_t *c, unsigned cls, void *const *blocks, unsigned n) {
  flush(blocks, n, c, cls);
}

// Send c's transfer cache of cls back to the spans if idle (not used since the last such call)
// or always; returns the blocks sent.
static unsigned transfer_flush(smp_central_t *c, unsigned cls, bool only_idle) {
  transfer_t *t = &c->transfer->cls[cls];
  void *out[SMP_TRANSFER_MAX];
  smp_lock_acquire(&t->lock);
  unsigned n = 0;
  if (!only_idle || t->uses == t->idle_uses) {
    n = transfer_count(t);
    memcpy(out, t->slots, n * sizeof *out);
    transfer_set_count(t, 0);
  }
  t->idle_uses = t->uses;
  smp_lock_release(&t->lock);
  if (n) smp_central_flush(out, n);
  return n;
}

size_t smp_central_transfer_drain(smp_central_t *c, bool only_idle) {
  size_t n = 0;
  for (unsigned cls = SMP_OUTBOX_CLASSES; c->transfer && cls < SMP_CLASS_COUNT; cls++)
    if (only_idle || transfer_count(&c->transfer->cls[cls]) != 0)
      n += transfer_flush(c, cls, only_idle);
  return n;
}

uint32_t smp_central_transfer_count(smp_central_t *c, unsigned cls) {
  return transfer_used(c, cls) ? transfer_count(&c->transfer->cls[cls]) : 0;
}

// True if p is in c's transfer cache of cls (its lock held while looking).
static bool transfer_holds(smp_central_t *c, unsigned cls, const void *p) {
  transfer_t *t = &c->transfer->cls[cls];
  smp_lock_acquire(&t->lock);
  bool found = false;
  for (unsigned i = 0, n = transfer_count(t); i < n && !found; i++) found = t->slots[i] == p;
  smp_lock_release(&t->lock);
  return found;
}

// True if p is on the list of s's blocks starting at head (owner: central lock held). Stops at
// a link that does not decode to a block of s (the list is corrupted there) or after capacity
// steps (a cycle): what lies beyond is unknown.
static bool list_has_locked(const smp_span_t *s, void *head, const void *p) {
  void *b = head;
  for (unsigned steps = 0; b != NULL && steps < s->capacity; steps++) {
    if (b == p) return true;
    b = smp_block_link(b);
    if (b != NULL && !smp_span_is_block(s, b)) return false;
  }
  return false;
}

bool smp_central_holds(smp_span_t *s, unsigned cls, const void *p) {
  smp_central_t *c = central_of(s);
  if (transfer_used(c, cls) && transfer_holds(c, cls, p)) return true;
  central_class_t *cc = &c->cls[cls];
  smp_lock_acquire(&cc->lock);
  // The descriptor is written under the page-heap lock; re-read it there. Once it says s is a
  // span of cls, it stays one while the class lock is held (only its holder releases s).
  smp_lock_acquire(&c->pages->lock);
  bool same = smp_pagemap_span_checked(p) == s && s->state == SMP_SPAN_SMALL &&
              s->sizeclass == cls && smp_span_is_block(s, p);
  smp_lock_release(&c->pages->lock);
  // The remote list only grows at its head while the class lock is held (only the lock holder
  // drains it), and its links were written before the push that published them (acquire).
  bool held = !same || (const char *)p >= s->carve || list_has_locked(s, s->free, p) ||
              list_has_locked(s, smp_remote_head(smp_load_acquire(&s->remote)), p);
  smp_lock_release(&cc->lock);
  return held;
}

size_t smp_central_trim(smp_central_t *c) {
  size_t released = 0;
  for (unsigned cls = 1; cls < SMP_CLASS_COUNT; cls++) {
    central_class_t *cc = &c->cls[cls];
    smp_lock_acquire(&cc->lock);
    for (smp_span_t *s = cc->partial, *next; s; s = next) {
      next = s->next;
      if (smp_remote_retire(s)) {
        released += smp_span_bytes(s);
        release_locked(cc, s);
      }
    }
    smp_lock_release(&cc->lock);
  }
  return released;
}

void smp_central_stats(smp_central_t *c, unsigned cls, smp_central_class_stats_t *out,
                       smp_gather_t *g) {
  central_class_t *cc = &c->cls[cls];
  *out = (smp_central_class_stats_t){0};
  if (!smp_lock_gather(&cc->lock, g)) return;
  out->spans = cc->spans;
  out->listed = cc->listed;
  smp_lock_release(&cc->lock);
}

void smp_central_lock_all(smp_central_t *c) {
  for (unsigned cls = 0; cls < SMP_CLASS_COUNT; cls++) smp_lock_acquire(&c->cls[cls].lock);
  for (unsigned cls = 0; c->transfer && cls < SMP_CLASS_COUNT; cls++)
    smp_lock_acquire(&c->transfer->cls[cls].lock);
}
void smp_central_unlock_all(smp_central_t *c) {
  for (unsigned cls = 0; c->transfer && cls < SMP_CLASS_COUNT; cls++)
    smp_lock_release(&c->transfer->cls[cls].lock);
  for (unsigned cls = 0; cls < SMP_CLASS_COUNT; cls++) smp_lock_release(&c->cls[cls].lock);
}

// Mark the blocks on the list from head; false at a link that leaves the span or a cycle.
static bool mark_list(const smp_span_t *s, void *head, uint64_t *bits) {
  size_t size = smp_class_info[s->sizeclass].size;
  const char *start = smp_span_start(s);
  void *b = head;
  for (unsigned steps = 0; b != NULL; steps++) {
    if (steps >= s->capacity || !smp_span_is_block(s, b)) return false;
    size_t i = (size_t)((const char *)b - start) / size;
    bits[i / 64] |= (uint64_t)1 << (i % 64);
    b = smp_block_link(b);
  }
  return true;
}

bool smp_central_free_blocks_locked(const smp_span_t *s, uint64_t *bits) {
  size_t size = smp_class_info[s->sizeclass].size;
  const char *start = smp_span_start(s);
  for (size_t i = (size_t)(s->carve - start) / size; i < s->capacity; i++)
    bits[i / 64] |= (uint64_t)1 << (i % 64);
  return mark_list(s, s->free, bits) &&
         mark_list(s, smp_remote_head(smp_load_acquire(&s->remote)), bits);
}
