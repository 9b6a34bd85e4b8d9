// Layer: caches. The central lists: batches of blocks between the front-end caches and spans.
// Per heap and size class: one lock and the list of spans that may have free blocks (the partial list).
// The lock holder is the spans' owner (see remote.h): it pops local lists, drains remote lists,
// lists and unlists spans, and releases empty spans to the page heap. Blocks come back without
// the lock: a flush groups them by span and pushes each group with one CAS; only a push that
// needs attention (span was detached, or is now empty) takes the lock afterwards.
// Span states: LISTED (on the partial list, may have blocks), DETACHED (no free blocks, off the
// list; the first push re-lists it), EMPTY (out == 0: released, except one reserve span per
// class kept listed to avoid page-heap churn; trim releases the reserve), DEAD.
// Transfer cache (the default heap's classes from SMP_OUTBOX_CLASSES up): per class, an array
// of up to two batches of blocks under a lock of its own. A cache's miss gives its batch there
// when it has room, and a refill takes from there first, so blocks that move between CPUs
// (producer/consumer) go from one cache to another without touching their spans: no walk of a
// list whose links another CPU wrote, no CAS per span. Blocks in it are validated (pass 1 of a
// flush), carry their free marks and are out of their spans, as in a cache. Its lock is only
// tried on the miss paths, never waited for: a busy one sends the batch to the spans. Its count
// is read without the lock (relaxed) only to skip an empty one; slots, count and the decision
// to take or keep are all under the lock, whose release and acquire order them. Drains of
// caches bypass it (their blocks go to the spans), the background pass sends an idle one back
// to the spans, and a full drain (trim, visit) empties it. Classes under SMP_OUTBOX_CLASSES
// bypass it: their blocks go home to the spans their owners take from (cpucache.h).
// Lock order: central[cls] -> page heap. No two central locks are ever held together
// (except by the fork handler, which takes them all in class order, then the transfer locks).
// A transfer lock is a leaf: nothing is taken while it is held.
#ifndef SMP_CENTRAL_H
#define SMP_CENTRAL_H

#include <stdbool.h>
#include <stddef.h>

#include "pagemap.h"

#include "os.h"

// Blocks a transfer cache can hold (two batches of up to 32), and the bytes beyond which it
// holds one batch only.
#define SMP_TRANSFER_MAX 64
#define SMP_TRANSFER_BYTES 65536

typedef struct central_class {
  smp_lock_t lock;
  smp_span_t *partial; // lock: listed spans, doubly linked through next/prev
  size_t spans;        // lock: spans of this class in use
  size_t listed;       // lock: length of partial
} SMP_CACHE_ALIGNED smp_central_class_t;

// Transfer caches, one per class (central.c).
typedef struct smp_transfer smp_transfer_t;

// The central lists of one heap, over its page heap.
typedef struct smp_central {
  smp_central_class_t cls[SMP_CLASS_COUNT];
  struct smp_pageheap *pages; // set at init
  smp_transfer_t *transfer;   // set at init: its transfer caches, or NULL (the other heaps')
} smp_central_t;

// The default heap's transfer caches (the only ones: the other heaps' caches take no batches
// that other threads' caches would want).
extern SMP_HIDDEN smp_transfer_t smp_transfer_default;

// The default heap's central lists, which the default front ends (cpucache, tcache) feed on;
// defined with the default heap (heap.c).
extern SMP_HIDDEN smp_central_t *const smp_central_default;

// Set up c (zeroed by the caller) over page heap pages, and name c in it.
void smp_central_init(smp_central_t *c, struct smp_pageheap *pages);
// Take up to want blocks of class cls (at least 1 unless out of memory, or with nowait, unless
// a lock is busy or the page heap would have to grow: then 0, with no wait and no system call).
unsigned smp_central_refill(smp_central_t *c, unsigned cls, void **out, unsigned want, bool nowait);
// The same for the per-CPU cache whose owner tag is owner (pagemap.h; SMP_OWNER_NONE: none): it
// prefers a span that cache owns, and becomes the owner of the spans it takes blocks from.
unsigned smp_central_refill_for(smp_central_t *c, unsigned cls, void **out, unsigned want,
                                bool nowait, unsigned owner);
// Give n blocks back, each to the central lists of its own heap; any mix of spans and classes.
// Reports invalid pointers, and double frees: a block twice in the batch, or more blocks of a
// span than it has out (remote.h).
void smp_central_flush(void *const *blocks, unsigned n);
// The same for n blocks of class cls of c's heap that a cache's miss path gives back: they may
// stay in c's transfer cache (see above).
void smp_central_give(smp_central_t *c, unsigned cls, void *const *blocks, unsigned n);
// Send c's transfer caches back to the spans: all, or (only_idle) those not used since the
// previous such call; returns the blocks sent.
size_t smp_central_transfer_drain(smp_central_t *c, bool only_idle);
// Blocks in c's transfer cache of class cls now (statistics; 0 if it has none).
uint32_t smp_central_transfer_count(smp_central_t *c, unsigned cls);
// True if the block p of class cls, which the caller found in small span s, is certainly not a
// live block: it lies on s's local or remote list, or past s's carve cursor (never handed out
// since s was carved), or s is no longer the span of p (a live block pins its span). Takes the
// class's lock (then the page heap's, to re-read s). A false answer proves nothing.
bool smp_central_holds(smp_span_t *s, unsigned cls, const void *p);
// Mark in free_bits (bit i: block i of s) the blocks of small span s that are free in it: on its
// local or remote list or not yet carved. Caller holds every class lock of s's heap and no thread
// uses the heap (smp_heap_visit). Returns false if a list is corrupted.
bool smp_central_free_blocks_locked(const smp_span_t *s, uint64_t *free_bits);
// Release reserve spans that are wholly free; returns the bytes given to the page heap.
size_t smp_central_trim(smp_central_t *c);

typedef struct smp_central_class_stats {
  size_t spans;  // spans of this class
  size_t listed; // of which on the partial list
} smp_central_class_stats_t;
// Under the class lock, taken as g says (os.h): given up, both 0.
void smp_central_stats(smp_central_t *c, unsigned cls, smp_central_class_stats_t *out,
                       smp_gather_t *g);

void smp_central_lock_all(smp_central_t *c);
void smp_central_unlock_all(smp_central_t *c);

#endif
