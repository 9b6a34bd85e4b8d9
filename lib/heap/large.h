// Layer: heap. Blocks above the largest size class (or with alignment the classes cannot give).
// Large: up to SMP_HUGE_THRESHOLD, a page run from the page heap (usable size = whole pages).
// Huge: above it, a dedicated mapping, recorded in an open-addressing table keyed by address,
// under its own lock (huge calls are rare and already pay for a system call).
#ifndef SMP_LARGE_H
#define SMP_LARGE_H

#include <stdbool.h>
#include <stddef.h>

#include "pageheap.h"

// A block of heap ph of at least n bytes aligned to align (power of two), zero-filled if zero;
// NULL if the OS has no memory, the heap is at its limit, a region heap has no run that long
// (regions have no huge blocks) or, with nowait, the block would need a lock wait or a system
// call (errno is left to the caller). Huge blocks count against their heap's limit.
void *smp_large_alloc(smp_pageheap_t *ph, size_t n, size_t align, bool zero, bool nowait);
// The page heap of the huge block at p, or NULL if p starts none.
smp_pageheap_t *smp_large_huge_heap(const void *p);
// Bytes of ph's huge blocks resident in memory (mincore: statistics only).
size_t smp_large_resident_of(smp_pageheap_t *ph);
// ph's huge blocks, and in *bytes (if not NULL) the bytes mapped for them (in OS pages; the
// limit charges them in 8 KiB pages).
size_t smp_large_count_of(smp_pageheap_t *ph, size_t *bytes);
// Give back every huge block of ph (heap destruction): each mapping becomes an inaccessible
// reservation, kept for a while so that a later free of the block is reported as a block of a
// destroyed heap (the last 256 such blocks, up to 64 GiB of addresses).
void smp_large_release_heap(smp_pageheap_t *ph);
// Call fn for each huge block of ph, on a snapshot and without the lock; returns what fn
// returned to stop, 0, or ENOMEM.
int smp_large_visit_huge(smp_pageheap_t *ph, int (*fn)(void *, size_t, void *), void *arg);
// Free a block not in a small span; reports and aborts if p is not a live large/huge block.
void smp_large_free(void *p, const char *function);
// Usable size of a large/huge block; reports and aborts if p is not one.
size_t smp_large_usable(const void *p, const char *function);
// Resize p in place (shrink or grow); true if p now holds at least n bytes.
bool smp_large_resize(void *p, size_t n);
// Move a huge block to hold n bytes, with mremap; NULL if not possible.
void *smp_large_remap(void *p, size_t n);

// Huge blocks of every heap, and the bytes mapped for them.
typedef struct smp_large_stats {
  size_t huge_count, huge_bytes;
} smp_large_stats_t;
void smp_large_stats(smp_large_stats_t *out);

void smp_large_lock_all(void);
void smp_large_unlock_all(void);

#endif
