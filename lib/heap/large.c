// Layer: heap. See large.h. Huge table: open addressing with linear probing; key 0 = empty,
// key 1 = deleted. It is grown (doubled and rehashed into a fresh mapping) when live plus
// deleted entries would exceed half of it, so a probe always ends. The table, the cache of
// freed huge mappings and the ring of destroyed heaps' huge blocks are guarded by huge_lock;
// large (page-heap) blocks need no lock here beyond the page heap's. huge_lock and a page
// heap's lock are never held together (fork takes every page heap's before huge_lock): a
// heap's limit is charged, and its held pages read, with huge_lock released.
#include <errno.h>
#include <string.h>

#include "debug.h"
#include "large.h"
#include "options.h"
#include "os.h"
#include "pageheap.h"

typedef struct huge_entry {
  uintptr_t addr; // 0 empty, 1 deleted, else the block (== start of its mapping)
  size_t size;    // usable bytes from addr (whole OS pages)
  size_t slack;   // mapped past size, not usable: what a reused range had beyond the request
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

// The cache of freed huge mappings. A free of a huge block of a heap over the OS keeps its
// mapping here, still the heap's, instead of unmapping it, and that heap's next huge request
// that fits takes it: no mmap, and no page fault for the pages the block had touched. One
// array for the process, oldest first, each entry naming its heap: huge calls are rare and
// already serialised by huge_lock, and only the entry's heap reuses it, so a heap's limit,
// statistics and destruction see its own ranges only.
// Reuse: the smallest range that holds the request; one more than a quarter larger is split
// (the block takes its head, the rest stays cached); a smaller excess goes with the block as
// its slack (mapped, charged, not usable: a block's usable size is still the request in whole
// OS pages, and a realloc may grow into it), so at most a fifth of a reused mapping is waste.
// Failing that, the largest range that holds three quarters of the request, grown by mremap
// (its pages move, only the added ones are new). A freed range coalesces with cached
// neighbours of its heap, whichever mappings they came from: a range (and a block cut from it)
// may then span two kernel mappings, which mremap refuses (the growth then maps afresh, a
// realloc of such a block copies); munmap, madvise and mincore work across them.
// Bounds, per heap: smp_options.huge_cache ranges, and bytes up to dirty_pct of the pages the
// heap holds for blocks (at least CACHE_FLOOR; dirty_pct 0: no byte bound), the oldest going
// first (when bytes alone are over, only the excess, off the oldest range's end). The byte
// bound learns, as the page heap's dirty bound does (decay.c): a new mapping made within
// decay_ms of the byte bound's last cut means the bound gave back what the program needed
// again, so the heap's huge_bound_extra (an smp_pageheap_allowance_t, decay.h) grows by the
// mapping's size, at most by the bytes the cuts gave back, and halves every quarter decay_ms
// without learning. So the cache keeps what the recent peak needed (a block freed and mapped
// again and again stays mapped, as glibc's sliding mmap threshold keeps it), for as long as
// the ranges themselves may stay: decay_ms unused (huge_churn's blocks of 5-25 MiB, each
// allocated before the one it replaces is freed: 58-72 munmaps a run before, 44 after, most
// of those as its threads free everything at the end, and about 15% less time);
// CACHE_SLOTS ranges for all heaps together. A range unused for decay_ms is unmapped (by the
// huge calls and the background pass; a merge restamps it), an idle heap's at the next pass,
// all of a heap's at trim and destroy. A cached range is no block: it is not in the table, and
// a free of an address in it is reported. It is not charged to the heap's limit (like free
// pages in chunks); taken from the cache, it is charged as a new mapping would be.
#define CACHE_SLOTS 64
#define CACHE_FLOOR ((size_t)32 << 20)
typedef struct cached_range {
  uintptr_t addr;
  size_t size;          // 0: no range (a miss)
  smp_pageheap_t *heap; // the heap whose block it was
  uint64_t freed_ms;    // when it joined the cache
} cached_range_t;
static cached_range_t cache[CACHE_SLOTS]; // [0, cache_len), oldest first
static size_t cache_len, cache_bytes;
static uint64_t maps_made, cache_hits, cache_released; // statistics (cache_released in bytes)

// Ranges to unmap once huge_lock is released: unmapping resident pages is the slow part, and
// other threads' huge calls need not wait for it. One lock hold gives back at most every
// cached range, a trimmed tail and the range being freed.
typedef struct unmap_list {
  size_t n;
  struct {
    uintptr_t addr;
    size_t size;
  } r[CACHE_SLOTS + 2];
} unmap_list_t;

static void unmap_later(unmap_list_t *u, uintptr_t addr, size_t size) {
  if (size == 0) return;
  if (u->n == SMP_ARRAY_LEN(u->r)) smp_os_unmap((void *)addr, size); // never: sized above
  else u->r[u->n].addr = addr, u->r[u->n++].size = size;
}

static void unmap_now(unmap_list_t *u) {
  for (size_t i = 0; i < u->n; i++) smp_os_unmap((void *)u->r[i].addr, u->r[i].size);
  u->n = 0;
}

// Whether ph keeps the mappings of its freed huge blocks (debug:1 caches nothing).
static bool cache_on(const smp_pageheap_t *ph) {
  return smp_options.huge_cache != 0 && !smp_options.debug && !ph->fixed;
}

// Take entry i out of the cache; the caller keeps or unmaps the range.
static cached_range_t cache_remove_locked(size_t i) {
  cached_range_t r = cache[i];
  memmove(&cache[i], &cache[i + 1], (cache_len - i - 1) * sizeof *cache);
  cache_len--;
  cache_bytes -= r.size;
  return r;
}

static void cache_evict_locked(size_t i, unmap_list_t *u) {
  cached_range_t r = cache_remove_locked(i);
  cache_released += r.size;
  unmap_later(u, r.addr, r.size);
}

// Give back ph's ranges (every heap's if ph is NULL) unused for decay_ms at now.
static void cache_decay_locked(smp_pageheap_t *ph, uint64_t now, unmap_list_t *u) {
  if (smp_options.decay_ms == 0) return;
  for (size_t i = 0; i < cache_len;) {
    if ((ph == NULL || cache[i].heap == ph) && now >= cache[i].freed_ms + smp_options.decay_ms)
      cache_evict_locked(i, u);
    else
      i++;
  }
}

// ph's cached ranges, and their bytes in *bytes.
static size_t cache_of_locked(const smp_pageheap_t *ph, size_t *bytes) {
  size_t n = 0, sum = 0;
  for (size_t i = 0; i < cache_len; i++)
    if (cache[i].heap == ph) n++, sum += cache[i].size;
  *bytes = sum;
  return n;
}

// The byte bound gave back bytes of ph's cache at now: what a new mapping may win back (those
// of cuts within decay_ms of each other add up).
static void bound_cut_locked(smp_pageheap_t *ph, uint64_t now, size_t bytes) {
  if (now - ph->huge_bound_cut_ms >= smp_options.decay_ms) ph->huge_bound_cut_bytes = 0;
  ph->huge_bound_cut_ms = now;
  ph->huge_bound_cut_bytes += bytes;
}

// Give back ph's oldest ranges until it is within its bounds; held: the pages it holds for
// blocks (smp_pageheap_held, read before huge_lock was taken).
static void cache_bound_locked(smp_pageheap_t *ph, size_t held, uint64_t now, unmap_list_t *u) {
  size_t bytes, n = cache_of_locked(ph, &bytes), max_bytes = SIZE_MAX;
  if (smp_options.dirty_pct) {
    max_bytes = held * SMP_PAGE_SIZE / 100 * smp_options.dirty_pct;
    if (max_bytes < CACHE_FLOOR) max_bytes = CACHE_FLOOR;
    max_bytes += smp_pageheap_allowance_age(&ph->huge_bound_extra, now);
  }
  for (size_t i = 0; i < cache_len && (n > smp_options.huge_cache || bytes > max_bytes);) {
    if (cache[i].heap != ph) {
      i++;
      continue;
    }
    bool bytes_cut = n <= smp_options.huge_cache; // the byte bound cuts, not the count
    size_t excess = bytes > max_bytes ? smp_align_up(bytes - max_bytes, smp_os_page_size()) : 0;
    if (bytes_cut && cache[i].size >= excess + SMP_HUGE_THRESHOLD) {
      // Bytes alone are over: the excess off this range's end, the rest still of use.
      cache[i].size -= excess;
      cache_bytes -= excess;
      cache_released += excess;
      unmap_later(u, cache[i].addr + cache[i].size, excess);
      bound_cut_locked(ph, now, excess);
      return;
    }
    if (bytes_cut) bound_cut_locked(ph, now, cache[i].size);
    n--;
    bytes -= cache[i].size;
    cache_evict_locked(i, u);
  }
}

// ph mapped size bytes afresh at now: soon after its byte bound cut the cache, that bound was
// too tight for this program. Allow that much more, up to what the cuts gave back (a small cut
// does not let a large mapping stay); the allowance halves once learning stops.
static void bound_learn_locked(smp_pageheap_t *ph, uint64_t now, size_t size) {
  if (now - ph->huge_bound_cut_ms >= smp_options.decay_ms) return;
  size_t add = size < ph->huge_bound_cut_bytes ? size : ph->huge_bound_cut_bytes;
  ph->huge_bound_cut_bytes -= add;
  if (add) smp_pageheap_allowance_add(&ph->huge_bound_extra, now, add, SIZE_MAX);
}

// The most a block of size bytes may map when it reuses a range: a quarter more, so at most a
// fifth of a reused block is waste.
static size_t fit_max(size_t size) { return size + smp_align_down(size / 4, smp_os_page_size()); }

// The smallest of ph's ranges that holds size bytes aligned to align, taken out of the cache,
// or only its head if it is larger than fit_max(size). If none holds it, the largest that
// holds three quarters of it (align at most the OS page: mremap may move it), smaller than
// size, for the caller to grow. size 0 if neither is found. Also gives back the ranges that
// came of age.
static cached_range_t cache_take(smp_pageheap_t *ph, size_t size, size_t align) {
  unmap_list_t u;
  u.n = 0;
  cached_range_t r = {0};
  smp_lock_acquire(&huge_lock);
  cache_decay_locked(NULL, smp_os_now_ms(), &u);
  size_t best = cache_len;
  for (size_t i = 0; i < cache_len; i++)
    if (cache[i].heap == ph && cache[i].size >= size && (cache[i].addr & (align - 1)) == 0 &&
        (best == cache_len || cache[i].size < cache[best].size))
      best = i;
  if (best == cache_len && align <= smp_os_page_size()) // none holds it (none is misaligned)
    for (size_t i = 0; i < cache_len; i++)
      if (cache[i].heap == ph && cache[i].size >= size - size / 4 &&
          (best == cache_len || cache[i].size > cache[best].size))
        best = i;
  if (best < cache_len && cache[best].size > fit_max(size)) { // split: the tail stays cached
    r = cache[best];
    r.size = size;
    cache[best].addr += size;
    cache[best].size -= size;
    cache_bytes -= size;
  } else if (best < cache_len) {
    r = cache_remove_locked(best);
  }
  smp_lock_release(&huge_lock);
  unmap_now(&u);
  return r;
}

// Keep the mapping [addr, addr+size) of a freed huge block of ph, already uncharged.
static void cache_put(uintptr_t addr, size_t size, smp_pageheap_t *ph) {
  size_t held = smp_pageheap_held(ph);
  unmap_list_t u;
  u.n = 0;
  smp_lock_acquire(&huge_lock);
  uint64_t now = smp_os_now_ms(); // read under the lock: stamps never decrease along the array
  cache_decay_locked(NULL, now, &u);
  for (size_t i = 0; i < cache_len;) { // coalesce with ph's cached neighbours
    if (cache[i].heap == ph &&
        (cache[i].addr + cache[i].size == addr || addr + size == cache[i].addr)) {
      cached_range_t n = cache_remove_locked(i);
      if (n.addr < addr) addr = n.addr;
      size += n.size;
      i = 0;
    } else {
      i++;
    }
  }
  if (cache_len == CACHE_SLOTS) cache_evict_locked(0, &u); // the oldest, whichever heap's
  cache[cache_len++] = (cached_range_t){addr, size, ph, now};
  cache_bytes += size;
  cache_bound_locked(ph, held, now, &u); // may give back this very range if it alone is too much
  smp_lock_release(&huge_lock);
  unmap_now(&u);
}

// What to report for p, which starts no live huge block (freeing: a free of p). In a cached
// range, p was a freed block's start (or a page inside one, if not coalesced with its start).
static const char *not_huge_locked(uintptr_t p, bool freeing) {
  for (size_t i = 0; freeing && i < cache_len; i++) {
    if (p == cache[i].addr) return "double free";
    if (p - cache[i].addr < cache[i].size) return "double free or invalid pointer";
  }
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

static bool insert_locked(uintptr_t addr, size_t size, size_t slack, size_t align,
                          smp_pageheap_t *heap) {
  if ((table_used + 1) * 2 > table_cap && !grow_locked()) return false;
  size_t i = slot_of(addr, table_cap);
  while (table[i].addr > 1) i = (i + 1) & (table_cap - 1);
  if (table[i].addr == 0) table_used++;
  table[i] = (huge_entry_t){addr, size, slack, align, heap};
  huge_count++;
  huge_bytes += size + slack;
  return true;
}

static void remove_locked(huge_entry_t *e) {
  e->addr = 1;
  huge_count--;
  huge_bytes -= e->size + e->slack;
}

// Pages of a huge mapping of size bytes, as the heap's limit counts them.
static ptrdiff_t limit_pages(size_t size) { return (ptrdiff_t)((size + SMP_PAGE_SIZE - 1) >> SMP_PAGE_SHIFT); }

// A huge block of at least n bytes aligned to align: a cached range of ph's if one fits, else a
// new mapping. *fresh: a new mapping, which reads as zero.
static void *huge_alloc(smp_pageheap_t *ph, size_t n, size_t align, bool *fresh) {
  size_t page = smp_os_page_size();
  if (n > SIZE_MAX - page - SMP_PAGE_SIZE) return NULL;
  size_t size = smp_align_up(n, page);
  if (align < page) align = page;
  if (!smp_pageheap_charge(ph, limit_pages(size), false)) return NULL;
  cached_range_t r = {0};
  if (cache_on(ph)) r = cache_take(ph, size, align);
  if (r.size && r.size < size) { // grown: its pages move along, the kernel copies nothing
    void *q = smp_os_remap((void *)r.addr, r.size, size, true);
    if (q == NULL) cache_put(r.addr, r.size, ph); // refused (two mappings?): a new one instead
    r.addr = (uintptr_t)q;
    r.size = q ? size : 0;
  }
  if (r.size > size) { // the slack is charged with the block; at the limit, it goes instead
    ptrdiff_t extra = limit_pages(r.size) - limit_pages(size);
    if (extra > 0 && !smp_pageheap_charge(ph, extra, false)) {
      smp_os_unmap((void *)(r.addr + size), r.size - size);
      r.size = size;
    }
  }
  size_t mapped = r.size ? r.size : size;
  void *p = r.size ? (void *)r.addr : smp_os_map_aligned(size, align);
  bool ok = p != NULL;
  if (ok) {
    smp_lock_acquire(&huge_lock);
    ok = insert_locked((uintptr_t)p, size, mapped - size, align, ph);
    if (ok && r.size) cache_hits++;
    else if (ok) maps_made++;
    if (ok && !r.size && ph->huge_bound_cut_ms && smp_options.decay_ms) // the bound learns
      bound_learn_locked(ph, smp_os_now_ms(), size);
    smp_lock_release(&huge_lock);
    if (!ok) smp_os_unmap(p, mapped);
  }
  if (!ok) {
    smp_pageheap_charge(ph, -limit_pages(mapped), false);
    return NULL;
  }
  *fresh = r.size == 0;
  return p;
}

void *smp_large_alloc(smp_pageheap_t *ph, size_t n, size_t align, bool zero, bool nowait) {
  if (n == 0) n = 1; // a unique block, as smp_malloc(0) gives (there is no 0-page span)
  size_t npages = (n + SMP_PAGE_SIZE - 1) >> SMP_PAGE_SHIFT;
  size_t align_pages = align > SMP_PAGE_SIZE ? align >> SMP_PAGE_SHIFT : 1;
  if (ph->fixed) { // a region: page runs up to a chunk's, never a mapping of its own
    if (npages + align_pages - 1 > USABLE_PAGES) return NULL;
  } else if (n > SMP_HUGE_THRESHOLD || npages + align_pages - 1 > USABLE_PAGES) {
    if (nowait) return NULL; // a mapping of its own: a system call
    bool fresh = false;
    void *p = huge_alloc(ph, n, align, &fresh);
    // A reused range holds its last block's bytes: all of the usable size reads as zero, as a
    // new mapping's does (a realloc within it keeps them).
    if (p && zero && !fresh) memset(p, 0, smp_align_up(n, smp_os_page_size()));
    return p;
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
  size_t size = e ? e->size + e->slack : 0; // the whole mapping
  smp_pageheap_t *ph = e ? e->heap : NULL;
  const char *report = e ? NULL : not_huge_locked((uintptr_t)p, true);
  if (e) remove_locked(e);
  smp_lock_release(&huge_lock);
  if (e == NULL) smp_debug_fatal(function, report, p);
  smp_pageheap_charge(ph, -limit_pages(size), false); // first: the cache's bound reads held pages
  if (cache_on(ph)) cache_put((uintptr_t)p, size, ph);
  else smp_os_unmap(p, size);
}

// The page heap of the huge block at p, its usable size in *size and its mapped bytes (usable
// plus slack) in *mapped; NULL (sizes 0) if p starts no live huge block.
static smp_pageheap_t *huge_lookup(const void *p, size_t *size, size_t *mapped) {
  smp_lock_acquire(&huge_lock);
  huge_entry_t *e = find_locked((uintptr_t)p);
  smp_pageheap_t *ph = e ? e->heap : NULL;
  *size = e ? e->size : 0;
  *mapped = e ? e->size + e->slack : 0;
  smp_lock_release(&huge_lock);
  return ph;
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
  const char *report = e ? NULL : not_huge_locked((uintptr_t)p, false);
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
  size_t size, mapped;
  smp_pageheap_t *ph = huge_lookup(p, &size, &mapped);
  // The mapping after: want when shrinking (the tail goes, slack too), unchanged when growing
  // into the slack, else want.
  size_t after = want <= size ? want : want <= mapped ? mapped : want;
  ptrdiff_t charge = ph ? limit_pages(after) - limit_pages(mapped) : 0;
  if (ph == NULL || (charge > 0 && !smp_pageheap_charge(ph, charge, false))) return false;
  smp_lock_acquire(&huge_lock);
  huge_entry_t *e = find_locked((uintptr_t)p);
  bool ok = false;
  size_t m = e ? e->size + e->slack : 0;
  if (e && want <= m) {
    if (want <= e->size && want < m) {
      smp_os_unmap((char *)p + want, m - want);
      huge_bytes -= m - want;
    }
    e->slack = want <= e->size ? 0 : m - want;
    e->size = want;
    ok = true;
  } else if (e && smp_os_remap(p, m, want, false) != NULL) {
    huge_bytes += want - m;
    e->size = want;
    e->slack = 0;
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
  size_t size, mapped;
  smp_pageheap_t *ph = huge_lookup(p, &size, &mapped); // charged first, as in smp_large_resize
  ptrdiff_t charge = ph ? limit_pages(want) - limit_pages(mapped) : 0;
  if (ph == NULL || (charge > 0 && !smp_pageheap_charge(ph, charge, false))) return NULL;
  smp_lock_acquire(&huge_lock);
  huge_entry_t *e = find_locked((uintptr_t)p);
  void *q = NULL;
  // Reserve the table slot first, so the moved block can always be recorded.
  if (e && e->align <= page && (table_used + 1) * 2 > table_cap) e = grow_locked() ? find_locked((uintptr_t)p) : NULL;
  if (e && e->align <= page && (q = smp_os_remap(p, e->size + e->slack, want, true)) != NULL) {
    size_t align = e->align;
    remove_locked(e);
    insert_locked((uintptr_t)q, want, 0, align, ph); // cannot fail: room reserved above
  }
  smp_lock_release(&huge_lock);
  if (q && charge < 0) smp_pageheap_charge(ph, charge, false);
  if (!q && charge > 0) smp_pageheap_charge(ph, -charge, false);
  return q;
}

void smp_large_stats(smp_large_stats_t *out, smp_gather_t *g) {
  *out = (smp_large_stats_t){0};
  if (!smp_lock_gather(&huge_lock, g)) return;
  out->huge_count = huge_count;
  out->huge_bytes = huge_bytes;
  out->cached_count = cache_len;
  out->cached_bytes = cache_bytes;
  out->maps = maps_made;
  out->reuses = cache_hits;
  out->cache_released = cache_released;
  smp_lock_release(&huge_lock);
}

size_t smp_large_resident_of(smp_pageheap_t *ph, smp_gather_t *g) {
  size_t bytes = 0;
  if (!smp_lock_gather(&huge_lock, g)) return 0;
  for (size_t i = 0; i < table_cap; i++)
    if (table[i].addr > 1 && table[i].heap == ph)
      bytes += smp_os_resident((void *)table[i].addr, table[i].size + table[i].slack);
  for (size_t i = 0; i < cache_len; i++)
    if (cache[i].heap == ph) bytes += smp_os_resident((void *)cache[i].addr, cache[i].size);
  smp_lock_release(&huge_lock);
  return bytes;
}

size_t smp_large_cached_of(smp_pageheap_t *ph, size_t *bytes, smp_gather_t *g) {
  size_t sum = 0, n = 0;
  if (smp_lock_gather(&huge_lock, g)) {
    n = cache_of_locked(ph, &sum);
    smp_lock_release(&huge_lock);
  }
  if (bytes) *bytes = sum;
  return n;
}

// Give back ph's cached ranges: all of them, or (a background pass) those that came of age
// and those beyond its bound now. Returns the bytes given back.
static size_t cache_release(smp_pageheap_t *ph, bool all) {
  size_t held = all ? 0 : smp_pageheap_held(ph);
  unmap_list_t u;
  u.n = 0;
  smp_lock_acquire(&huge_lock);
  if (all) {
    for (size_t i = 0; i < cache_len;) {
      if (cache[i].heap == ph) cache_evict_locked(i, &u);
      else i++;
    }
  } else {
    uint64_t now = smp_os_now_ms();
    cache_decay_locked(ph, now, &u);
    cache_bound_locked(ph, held, now, &u);
  }
  smp_lock_release(&huge_lock);
  size_t bytes = 0;
  for (size_t i = 0; i < u.n; i++) bytes += u.r[i].size;
  unmap_now(&u);
  return bytes;
}

size_t smp_large_trim(smp_pageheap_t *ph) { return cache_release(ph, true); }

void smp_large_pass(smp_pageheap_t *ph, bool idle) { cache_release(ph, idle); }

size_t smp_large_count_of(smp_pageheap_t *ph, size_t *bytes, smp_gather_t *g) {
  size_t n = 0, sum = 0;
  if (smp_lock_gather(&huge_lock, g)) {
    for (size_t i = 0; i < table_cap; i++)
      if (table[i].addr > 1 && table[i].heap == ph) n++, sum += table[i].size + table[i].slack;
    smp_lock_release(&huge_lock);
  }
  if (bytes) *bytes = sum;
  return n;
}

void smp_large_release_heap(smp_pageheap_t *ph) {
  smp_lock_acquire(&huge_lock);
  for (size_t i = 0; i < table_cap; i++)
    if (table[i].addr > 1 && table[i].heap == ph) {
      retire_locked(table[i].addr, table[i].size + table[i].slack);
      remove_locked(&table[i]);
    }
  smp_lock_release(&huge_lock);
  cache_release(ph, true); // freed blocks: a free of one is a double free, no destroyed heap's
}

int smp_large_visit_huge(smp_pageheap_t *ph, int (*fn)(void *, size_t, void *), void *arg) {
  // A snapshot first: fn runs without the lock (it may allocate huge blocks elsewhere).
  size_t n = smp_large_count_of(ph, NULL, NULL);
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

int smp_large_visit_huge_held(smp_pageheap_t *ph, int (*fn)(void *, size_t, void *), void *arg) {
  int r = 0;
  smp_lock_acquire(&huge_lock);
  for (size_t i = 0; i < table_cap && !r; i++)
    if (table[i].addr > 1 && table[i].heap == ph) r = fn((void *)table[i].addr, table[i].size, arg);
  smp_lock_release(&huge_lock);
  return r;
}

void smp_large_lock_all(void) { smp_lock_acquire(&huge_lock); }
void smp_large_unlock_all(void) { smp_lock_release(&huge_lock); }
