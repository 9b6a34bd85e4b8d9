// Layer: api. Double-free detection that never reports a valid program.
// Suspicion: free reads word 1 of a small block; it equals the block's free mark (span.h: the
// block's address XOR a per-process odd key) from the free that wrote it until the malloc that
// clears it. A live block holds its own mark only if the program put those 8 bytes there, and
// the only place they ever existed is that same address while the block lay free: a program
// that copies bytes it never wrote (realloc out of a large block whose pages held freed blocks,
// memcpy from unwritten memory) moves stale marks, but each names the address it was written
// at, so at any other address it is not a mark. A match is still only a suspicion.
// Confirmation: the block is reported only when it is found where free blocks are: in a cache
// of the front end (every CPU's, frozen and fenced as a drain does; every live thread's, read
// under the registry lock with tcache.h's acquire/release protocol), on its span's local or
// remote list, or past the span's carve cursor (central.h, smp_central_holds).
// Why a find is certain: a live block is in none of those places from the moment malloc handed
// it out until its free returns. The store that took it out (a cache pop's commit, a list pop
// under the class lock) happens before the program got it, so before this free; each search
// reads its structure after a lock or fence that orders it after that store, and only a free
// of the block could have put it back. So finding it means it was freed and not reallocated.
// Not reported, and freed as if live (as any allocator without the check would): a free block
// in flight between a cache and the central lists, one that moves between the two searches,
// and any block when the per-CPU fence fails.
#ifndef SMP_DOUBLEFREE_H
#define SMP_DOUBLEFREE_H

#include <stdbool.h>
#include <stdint.h>

#include "pagemap.h"

// p is a block of small span s (class cls) whose word 1 holds its free mark. True if p is
// certainly not a live block: report it. Slow (takes every cache lock, may fence): only for
// suspicions.
bool smp_doublefree_confirm(smp_span_t *s, unsigned cls, const void *p);

typedef struct smp_doublefree_stats {
  uint64_t suspicions; // marked blocks checked
  uint64_t confirmed;  // of which found free (each reported, so at most 1 in a process that lives)
} smp_doublefree_stats_t;
void smp_doublefree_stats(smp_doublefree_stats_t *out);

#endif
