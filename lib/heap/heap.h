// Layer: heap. The heap object (smp_heap_t): one page heap, the central lists over it, and (for
// heaps other than the default one) the per-thread caches in front of them. A chunk names its
// page heap, and a page heap its heap (owner), so any block names its heap in O(1). The default
// heap is a static object whose front end is frontend.h (per-CPU or per-thread caches) and whose
// chunks carry page classes; other heaps' chunks carry page class 0, so the hit paths of malloc
// and free never see their blocks. A heap grows from the OS (smp_heap_create, optionally with a
// limit on the pages it holds for blocks) or lives in a region the caller gives
// (smp_heap_create_in): region chunks at any 8 KiB-aligned address, headers in the region or in
// OS memory (SMP_REGION_META_OUTSIDE), never mapped, unmapped or purged without
// SMP_REGION_PURGE.
// Registry: every live heap is on one list under registry_lock (statistics, the background
// thread's passes, fork). Lifecycle: LIVE until smp_heap_destroy, which unlinks it (so no pass
// or report reaches it), detaches its caches, and gives its memory back: a chunk that came from
// the OS is retired (its memory returned, its addresses kept inaccessible while in the
// quarantine of the last SMP_HEAP_QUARANTINE chunks, so a free into it is known to be a block of
// a destroyed heap), huge blocks are unmapped, region chunks are forgotten. The object itself
// is kept (DEAD) for reuse by a later heap, so a stale handle reads DEAD until then.
// Lock order: registry_lock -> a heap's cache set -> its central lists -> its page heap.
#ifndef SMP_HEAP_H
#define SMP_HEAP_H

#include <stdbool.h>
#include <stddef.h>

#include "smpalloc.h"
#include "central.h"
#include "hcache.h"
#include "pageheap.h"

enum { SMP_HEAP_LIVE = 0x4c495645, SMP_HEAP_DEAD = 0x44454144 };
#define SMP_HEAP_QUARANTINE 4096 // retired chunks kept inaccessible (16 GiB of addresses)

struct smp_heap {
  smp_pageheap_t pages;
  smp_central_t central;
  smp_hcache_set_t caches;     // unused by the default heap
  _Atomic uint32_t state;      // SMP_HEAP_LIVE or SMP_HEAP_DEAD (release; read acquire)
  bool is_default;
  bool is_region;
  unsigned region_flags;       // as given to smp_heap_create_in
  void *meta;                  // OS memory holding region chunk headers (META_OUTSIDE)
  size_t meta_len;
  _Atomic uint64_t failures;   // requests refused for lack of memory (relaxed)
  _Atomic uint32_t users;      // debug:1 only: calls inside the heap now (seq_cst, see heapapi.c)
  _Atomic bool typed;          // a typed block was allocated here (types.c; relaxed)
  void *type_entry;            // a malloc type's own heap (SMP_TYPE_OWN_HEAP): its entry
                               // (types.c), set before the heap's first block; else NULL
  // Hardening's quarantine (harden.c) holds these of the heap's blocks: freed by the program,
  // still out of the heap. Statistics count them apart from those in use. Relaxed. A block
  // the quarantine is evicting (popped under its lock, checked and given back outside it)
  // counts in use until it is back: statistics read meanwhile say in_use is that much higher
  // (never lower: a live block is never counted out), and a heap visit waits for it.
  _Atomic uint64_t quarantined_blocks[3], quarantined_bytes[3]; // small, large, huge
  smp_heap_t *next, *prev;     // registry_lock
  char name[32];
};

extern SMP_HIDDEN smp_heap_t smp_heap_default_obj;
#define SMP_HEAP_DEFAULT (&smp_heap_default_obj)

_Static_assert(offsetof(smp_heap_t, pages) == 0, "a heap starts with its page heap");

// The heap owning chunk c (its page heap is the heap's first member: no load).
SMP_INLINE smp_heap_t *smp_heap_of_chunk(const smp_chunk_t *c) { return (smp_heap_t *)c->heap; }

// A heap over the OS; NULL with errno ENOMEM.
smp_heap_t *smp_heap_new(const char *name, size_t limit);
// A heap over the caller's region; NULL with *err EINVAL or ENOMEM.
smp_heap_t *smp_heap_new_region(const char *name, void *base, size_t len, unsigned flags,
                                int *err);
// Destroy h (not the default heap), as described above; deferred: the background thread gives
// its chunks' memory back (at once: it is woken), else the caller does.
void smp_heap_delete(smp_heap_t *h, bool deferred);
// smp_heap_visit for h (the caller validated fn and h).
int smp_heap_visit_blocks(smp_heap_t *h, int (*fn)(void *, size_t, void *), void *arg);
// The same with h's locks held while fn runs (fn must neither allocate nor free), so that a
// block freed by another thread meanwhile is not unmapped under fn: the allocator's own tallies
// (leak report, heap profile) while the program runs.
int smp_heap_visit_blocks_held(smp_heap_t *h, int (*fn)(void *, size_t, void *), void *arg);
// Call fn for every live heap, the default one first, under the registry lock (fn must not
// create or destroy heaps), taken as g says (os.h: NULL waits for it); given up, fn sees the
// default heap alone and the call returns false.
bool smp_heap_each(void (*fn)(smp_heap_t *h, void *arg), void *arg, smp_gather_t *g);
// Live heaps, the default one included (no lock: a count stored relaxed).
size_t smp_heap_count(void);
// Per size class of one heap (statistics): spans of the class, blocks out of them (with users
// or in caches; 0 when statistics are compiled out), and of those, blocks in caches.
typedef struct smp_heap_classes {
  uint64_t spans[SMP_CLASS_COUNT], out[SMP_CLASS_COUNT], cached[SMP_CLASS_COUNT];
} smp_heap_classes_t;
// Statistics of heap h other than the default one: the smp_stats_t fields of one heap, and
// per class into *classes (if not NULL). Locks are taken as g says (os.h); a figure behind a
// lock given up reads 0.
void smp_heap_stats_fill(smp_heap_t *h, smp_stats_t *out, smp_heap_classes_t *classes,
                         smp_gather_t *g);
// Whether p is a block of a destroyed heap whose chunk is still in the quarantine.
bool smp_heap_retired(const void *p);
// The background thread's share of destruction: give back the memory of destroyed heaps'
// chunks that smp_heap_delete left to it.
void smp_heap_retire_deferred(void);
// Fork: take (in lock order) and release every heap's locks and the registry's.
void smp_heap_lock_all(void);
void smp_heap_unlock_all(void);

#endif
