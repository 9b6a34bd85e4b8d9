// Layer: heap. See large.h. Huge table: open addressing with linear probing; key 0 = empty,
// key 1 = deleted. It is grown (doubled and rehashed into a fresh mapping) when live plus
// deleted entries would exceed half of it, so a probe always ends. All of it is guarded by
// huge_lock; large (page-heap) blocks need no lock here beyond the page heap's.
#include <errno.h>
#include <string.h>

#include "debug.h"
#include "large.h"
#include "os.h"
#include "pageheap.h"

typedef struct huge_entry {
  uintptr_t addr; // 0 empty, 1 deleted, else the block (== start of its mapping)
  size_t size;    // mapped bytes from addr
  size_t align;   // alignment asked for (mremap may only move blocks needing <= OS page)
  smp_pageheap_t *heap; // the page heap of the block's heap (its limit counts the block)
} huge_entry_t;

static smp_lock_t huge_lock = SMP_LOCK_INIT;
static huge_entry_t *table; // huge_lock
static size_t table_cap, table_used, huge_count, huge_bytes;

// Huge blocks of destroyed heaps: each mapping is replaced by an inaccessible reservation (its
// memory goes back, its addresses stay ours) and kept in this ring, so that a free of one is
// known to be a block of a destroyed heap and can never unmap a later mapping that took its
// addresses. The oldest leaves (unmapped) when the ring is full or holds more than
// RETIRED_BYTES of addresses. All under huge_lock.
#define RETIRED_SLOTS 256
#define RETIRED_BYTES ((size_t)64 << 30)
static struct retired_huge {
  uintptr_t addr;
  size_t size;
} retired[RETIRED_SLOTS];
static size_t retired_head, retired_len, retired_bytes;

static void retire_locked(uintptr_t addr, size_t size) {
  if (!smp_os_retire((void *)addr, size)) {
    smp_os_unmap((void *)addr, size);
    return;
  }
  while (retired_len && (retired_len == RETIRED_SLOTS || retired_bytes + size > RETIRED_BYTES)) {
    struct retired_huge *old = &retired[retired_head];
    smp_os_unmap((void *)old->addr, old->size);
    retired_bytes -= old->size;
    retired_head = (retired_head + 1) % RETIRED_SLOTS;
    retired_len--;
  }
  retired[(retired_head + retired_len++) % RETIRED_SLOTS] = (struct retired_huge){addr, size};
  retired_bytes += size;
}

// What to report for p, which starts no live huge block.
static const char *not_huge_locked(uintptr_t p) {
  for (size_t i = 0; i < retired_len; i++) {
    const struct retired_huge *r = &retired[(retired_head + i) % RETIRED_SLOTS];
    if (p - r->addr < r->size) return "block of a destroyed heap";
  }
  return "invalid pointer";
}

#define USABLE_PAGES (SMP_CHUNK_PAGES - SMP_CHUNK_HEADER_PAGES)

static size_t slot_of(uintptr_t addr, size_t cap) {
  return (size_t)(((addr >> 12) * 0x9e3779b97f4a7c15ull) >> 20) & (cap - 1);
}

static huge_entry_t *find_locked(uintptr_t addr) {
  // Huge blocks are page-aligned; this also keeps the empty (0) and deleted (1) keys out.
  if (table == NULL || (addr & (smp_os_page_size() - 1)) != 0) return NULL;
  for (size_t i = slot_of(addr, table_cap);; i = (i + 1) & (table_cap - 1)) {
    if (table[i].addr == addr) return &table[i];
    if (table[i].addr == 0) return NULL;
  }
}

static bool grow_locked(void) {
  size_t cap = table_cap ? table_cap * 2 : 256;
  if (huge_count * 4 < table_cap) cap = table_cap; // mostly deleted entries: rehash in place size
  huge_entry_t *t = smp_os_map(cap * sizeof *t);
  if (t == NULL) return false;
  for (size_t i = 0; i < table_cap; i++) {
    if (table[i].addr <= 1) continue;
    size_t j = slot_of(table[i].addr, cap);
    while (t[j].addr) j = (j + 1) & (cap - 1);
    t[j] = table[i];
  }
  if (table) smp_os_unmap(table, table_cap * sizeof *t);
  table = t;
  table_cap = cap;
  table_used = huge_count;
  return true;
}

static bool insert_locked(uintptr_t addr, size_t size, size_t align, smp_pageheap_t *heap) {
  if ((table_used + 1) * 2 > table_cap && !grow_locked()) return false;
  size_t i = slot_of(addr, table_cap);
  while (table[i].addr > 1) i = (i + 1) & (table_cap - 1);
  if (table[i].addr == 0) table_used++;
  table[i] = (huge_entry_t){addr, size, align, heap};
  huge_count++;
  huge_bytes += size;
  return true;
}

static void remove_locked(huge_entry_t *e) {
  e->addr = 1;
  huge_count--;
  huge_bytes -= e->size;
}

// Pages of a huge mapping of size bytes, as the heap's limit counts them.
static ptrdiff_t limit_pages(size_t size) { return (ptrdiff_t)((size + SMP_PAGE_SIZE - 1) >> SMP_PAGE_SHIFT); }

static void *huge_alloc(smp_pageheap_t *ph, size_t n, size_t align) {
  size_t page = smp_os_page_size();
  if (n > SIZE_MAX - page - SMP_PAGE_SIZE) return NULL;
  size_t size = smp_align_up(n, page);
  if (align < page) align = page;
  if (!smp_pageheap_charge(ph, limit_pages(size), false)) return NULL;
  void *p = smp_os_map_aligned(size, align);
  bool ok = p != NULL;
  if (ok) {
    smp_lock_acquire(&huge_lock);
    ok = insert_locked((uintptr_t)p, size, align, ph);
    smp_lock_release(&huge_lock);
    if (!ok) smp_os_unmap(p, size);
  }
  if (!ok) {
    smp_pageheap_charge(ph, -limit_pages(size), false);
    return NULL;
  }
  return p; // fresh anonymous memory reads as zero
}

void *smp_large_alloc(smp_pageheap_t *ph, size_t n, size_t align, bool zero, bool nowait) {
  if (n == 0) n = 1; // a unique block, as smp_malloc(0) gives (there is no 0-page span)
  size_t npages = (n + SMP_PAGE_SIZE - 1) >> SMP_PAGE_SHIFT;
  size_t align_pages = align > SMP_PAGE_SIZE ? align >> SMP_PAGE_SHIFT : 1;
  if (ph->fixed) { // a region: page runs up to a chunk's, never a mapping of its own
    if (npages + align_pages - 1 > USABLE_PAGES) return NULL;
  } else if (n > SMP_HUGE_THRESHOLD || npages + align_pages - 1 > USABLE_PAGES) {
    if (nowait) return NULL; // a mapping of its own: a system call
    return huge_alloc(ph, n, align);
  }
  bool zeroed;
  smp_span_t *s = smp_pageheap_alloc(ph, npages, align_pages, &zeroed, nowait);
  if (s == NULL) return NULL;
  char *p = smp_span_start(s);
  if (zero && !zeroed) memset(p, 0, n);
  return p;
}

// The large span starting at p, or NULL if p does not start one.
static smp_span_t *large_span(const void *p) {
  smp_span_t *s = smp_pagemap_span_checked(p);
  if (s == NULL || s->state != SMP_SPAN_LARGE || smp_span_start(s) != (const char *)p) return NULL;
  return s;
}

void smp_large_free(void *p, const char *function) {
  if (smp_pagemap_find(p)) {
    smp_span_t *s = large_span(p);
    if (s == NULL) smp_debug_fatal(function, "double free or invalid pointer", p);
    smp_pageheap_free(s);
    return;
  }
  smp_lock_acquire(&huge_lock);
  huge_entry_t *e = find_locked((uintptr_t)p);
  size_t size = e ? e->size : 0;
  smp_pageheap_t *ph = e ? e->heap : NULL;
  const char *report = e ? NULL : not_huge_locked((uintptr_t)p);
  if (e) remove_locked(e);
  smp_lock_release(&huge_lock);
  if (e == NULL) smp_debug_fatal(function, report, p);
  smp_os_unmap(p, size);
  smp_pageheap_charge(ph, -limit_pages(size), false);
}

smp_pageheap_t *smp_large_huge_heap(const void *p) {
  smp_lock_acquire(&huge_lock);
  huge_entry_t *e = find_locked((uintptr_t)p);
  smp_pageheap_t *ph = e ? e->heap : NULL;
  smp_lock_release(&huge_lock);
  return ph;
}

size_t smp_large_usable(const void *p, const char *function) {
  if (smp_pagemap_find(p)) {
    smp_span_t *s = large_span(p);
    if (s == NULL) smp_debug_fatal(function, "invalid pointer", p);
    return smp_span_bytes(s);
  }
  smp_lock_acquire(&huge_lock);
  huge_entry_t *e = find_locked((uintptr_t)p);
  size_t size = e ? e->size : 0;
  const char *report = e ? NULL : not_huge_locked((uintptr_t)p);
  smp_lock_release(&huge_lock);
  if (e == NULL) smp_debug_fatal(function, report, p);
  return size;
}

bool smp_large_resize(void *p, size_t n) {
  if (smp_pagemap_find(p)) {
    smp_span_t *s = large_span(p);
    if (n > SIZE_MAX - SMP_PAGE_SIZE) return false;
    size_t npages = (n + SMP_PAGE_SIZE - 1) >> SMP_PAGE_SHIFT;
    if (npages == 0) npages = 1;
    if (npages <= s->npages) {
      smp_pageheap_shrink(s, npages);
      return true;
    }
    return smp_pageheap_grow(s, npages);
  }
  size_t page = smp_os_page_size();
  if (n > SIZE_MAX - page) return false;
  size_t want = smp_align_up(n ? n : 1, page);
  // The limit is charged before the table lock is taken (never both: fork takes them apart);
  // the block's size cannot change meanwhile unless the program resizes it from two threads.
  smp_pageheap_t *ph = smp_large_huge_heap(p);
  size_t old = ph ? smp_large_usable(p, "realloc") : 0;
  ptrdiff_t charge = ph ? limit_pages(want) - limit_pages(old) : 0;
  if (ph == NULL || (charge > 0 && !smp_pageheap_charge(ph, charge, false))) return false;
  smp_lock_acquire(&huge_lock);
  huge_entry_t *e = find_locked((uintptr_t)p);
  bool ok = false;
  if (e && want <= e->size) {
    if (want < e->size) smp_os_unmap((char *)p + want, e->size - want);
    huge_bytes -= e->size - want;
    e->size = want;
    ok = true;
  } else if (e && smp_os_remap(p, e->size, want, false) != NULL) {
    huge_bytes += want - e->size;
    e->size = want;
    ok = true;
  }
  smp_lock_release(&huge_lock);
  if (ok && charge < 0) smp_pageheap_charge(ph, charge, false);  // the pages given back
  if (!ok && charge > 0) smp_pageheap_charge(ph, -charge, false); // undo the charge
  return ok;
}

void *smp_large_remap(void *p, size_t n) {
  if (smp_pagemap_find(p)) return NULL;
  size_t page = smp_os_page_size();
  if (n > SIZE_MAX - page) return NULL;
  size_t want = smp_align_up(n, page);
  smp_pageheap_t *ph = smp_large_huge_heap(p); // charged first, as in smp_large_resize
  size_t old = ph ? smp_large_usable(p, "realloc") : 0;
  ptrdiff_t charge = ph ? limit_pages(want) - limit_pages(old) : 0;
  if (ph == NULL || (charge > 0 && !smp_pageheap_charge(ph, charge, false))) return NULL;
  smp_lock_acquire(&huge_lock);
  huge_entry_t *e = find_locked((uintptr_t)p);
  void *q = NULL;
  // Reserve the table slot first, so the moved block can always be recorded.
  if (e && e->align <= page && (table_used + 1) * 2 > table_cap) e = grow_locked() ? find_locked((uintptr_t)p) : NULL;
  if (e && e->align <= page && (q = smp_os_remap(p, e->size, want, true)) != NULL) {
    size_t align = e->align;
    remove_locked(e);
    insert_locked((uintptr_t)q, want, align, ph); // cannot fail: room reserved above
  }
  smp_lock_release(&huge_lock);
  if (q && charge < 0) smp_pageheap_charge(ph, charge, false);
  if (!q && charge > 0) smp_pageheap_charge(ph, -charge, false);
  return q;
}

void smp_large_stats(smp_large_stats_t *out) {
  smp_lock_acquire(&huge_lock);
  out->huge_count = huge_count;
  out->huge_bytes = huge_bytes;
  smp_lock_release(&huge_lock);
}

size_t smp_large_resident_of(smp_pageheap_t *ph) {
  size_t bytes = 0;
  smp_lock_acquire(&huge_lock);
  for (size_t i = 0; i < table_cap; i++)
    if (table[i].addr > 1 && table[i].heap == ph)
      bytes += smp_os_resident((void *)table[i].addr, table[i].size);
  smp_lock_release(&huge_lock);
  return bytes;
}

size_t smp_large_count_of(smp_pageheap_t *ph, size_t *bytes) {
  size_t n = 0, sum = 0;
  smp_lock_acquire(&huge_lock);
  for (size_t i = 0; i < table_cap; i++)
    if (table[i].addr > 1 && table[i].heap == ph) n++, sum += table[i].size;
  smp_lock_release(&huge_lock);
  if (bytes) *bytes = sum;
  return n;
}

void smp_large_release_heap(smp_pageheap_t *ph) {
  smp_lock_acquire(&huge_lock);
  for (size_t i = 0; i < table_cap; i++)
    if (table[i].addr > 1 && table[i].heap == ph) {
      retire_locked(table[i].addr, table[i].size);
      remove_locked(&table[i]);
    }
  smp_lock_release(&huge_lock);
}

int smp_large_visit_huge(smp_pageheap_t *ph, int (*fn)(void *, size_t, void *), void *arg) {
  // A snapshot first: fn runs without the lock (it may allocate huge blocks elsewhere).
  size_t n = smp_large_count_of(ph, NULL);
  if (n == 0) return 0;
  size_t bytes = smp_align_up(n * sizeof(huge_entry_t), smp_os_page_size());
  huge_entry_t *snap = smp_os_map(bytes);
  if (snap == NULL) return ENOMEM;
  size_t k = 0;
  smp_lock_acquire(&huge_lock);
  for (size_t i = 0; i < table_cap && k < n; i++)
    if (table[i].addr > 1 && table[i].heap == ph) snap[k++] = table[i];
  smp_lock_release(&huge_lock);
  int r = 0;
  for (size_t i = 0; i < k && !r; i++) r = fn((void *)snap[i].addr, snap[i].size, arg);
  smp_os_unmap(snap, bytes);
  return r;
}

void smp_large_lock_all(void) { smp_lock_acquire(&huge_lock); }
void smp_large_unlock_all(void) { smp_lock_release(&huge_lock); }
