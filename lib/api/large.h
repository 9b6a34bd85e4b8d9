// Layer: api. Blocks above the largest size class (or with alignment the classes cannot give).
// Large: up to SMP_HUGE_THRESHOLD, a page run from the page heap (usable size = whole pages).
// Huge: above it, a dedicated mapping, recorded in an open-addressing table keyed by address,
// under its own lock (huge calls are rare and already pay for a system call).
#ifndef SMP_LARGE_H
#define SMP_LARGE_H

#include <stdbool.h>
#include <stddef.h>

// A block of at least n bytes aligned to align (power of two), zero-filled if zero; NULL if
// the OS has no memory (errno is left to the caller).
void *smp_large_alloc(size_t n, size_t align, bool zero);
// Free a block not in a small span; reports and aborts if p is not a live large/huge block.
void smp_large_free(void *p, const char *function);
// Usable size of a large/huge block; reports and aborts if p is not one.
size_t smp_large_usable(const void *p, const char *function);
// Resize p in place (shrink or grow); true if p now holds at least n bytes.
bool smp_large_resize(void *p, size_t n);
// Move a huge block to hold n bytes, with mremap; NULL if not possible.
void *smp_large_remap(void *p, size_t n);

typedef struct smp_large_stats {
  size_t huge_count, huge_bytes;
} smp_large_stats_t;
void smp_large_stats(smp_large_stats_t *out);
// Bytes of the huge mappings resident in memory (mincore over each: for statistics only).
size_t smp_large_resident(void);

void smp_large_lock_all(void);
void smp_large_unlock_all(void);

#endif
