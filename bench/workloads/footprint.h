// Helpers shared by the footprint workloads (server_churn, burst_idle, fragmentation) and by
// several throughput ones: log-uniform sizes, and blocks that carry a spot-checkable pattern.
// Resident memory (workload_rss) and the generator (workload_rand) are workload.h's.
// A workload that frees every block with footprint_block_free can also check, with
// footprint_block_new_checked, that malloc never hands out a block someone still holds.
#ifndef FOOTPRINT_H
#define FOOTPRINT_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "workload.h"

// A size from lo up to hi (hi itself only if it is not a power of two), uniform in its
// logarithm: as many blocks of 16..31 B as of 2..4 KiB, closer to real programs than uniform.
static inline size_t footprint_size_log(uint64_t *s, size_t lo, size_t hi) {
  unsigned lo_bit = 63u - (unsigned)__builtin_clzll(lo);
  unsigned hi_bit = 64u - (unsigned)__builtin_clzll(hi - 1); // ceil(log2(hi))
  unsigned b = lo_bit + (unsigned)(workload_rand(s) % (hi_bit - lo_bit));
  size_t n = ((size_t)1 << b) + (size_t)(workload_rand(s) & (((size_t)1 << b) - 1));
  return n < lo ? lo : n > hi ? hi : n;
}

// Writes the pattern into a block of n >= 16 bytes: word 0 holds its address xor a key, word 1
// its size, and from 24 bytes on the last word the size xor the key. fill != 0 writes the rest
// too (every page is touched, as a program would).
static inline uint64_t *footprint_block_init(uint64_t *p, size_t n, uint64_t key, int fill) {
  if (fill && n > 16) memset(p + 2, (int)(key & 0xff), n - 16);
  p[0] = (uintptr_t)p ^ key;
  p[1] = n;
  if (n >= 24) memcpy((char *)p + n - 8, &(uint64_t){n ^ key}, 8);
  return p;
}

// A new block of n >= 16 bytes with the pattern, or NULL if malloc failed.
static inline uint64_t *footprint_block_new(size_t n, uint64_t key, int fill) {
  uint64_t *p = malloc(n);
  return p ? footprint_block_init(p, n, key, fill) : NULL;
}

// footprint_block_new that also sets *live when the block malloc returned still carries key's
// word 0: a block whose holder has not freed it (footprint_block_free wipes that word first).
// The empty asm hides from the compiler that the block is fresh from malloc (it would warn of
// reading uninitialised memory); the read is volatile, so it cannot be dropped either.
static inline uint64_t *footprint_block_new_checked(size_t n, uint64_t key, int fill, int *live) {
  uint64_t *p = malloc(n);
  if (!p) return NULL;
  __asm__("" : "+r"(p));
  *live = *(volatile uint64_t *)p == ((uintptr_t)p ^ key);
  return footprint_block_init(p, n, key, fill);
}

// Wipes word 0 (a volatile store, which the compiler cannot drop as dead before the free) and
// frees the block: what footprint_block_new_checked relies on.
static inline void footprint_block_free(uint64_t *p) {
  *(volatile uint64_t *)p = 0;
  free(p);
}

// 1 if p still carries the pattern footprint_block_new wrote with key (and, with fill, the
// middle byte too).
static inline int footprint_block_ok(const uint64_t *p, uint64_t key, int fill) {
  if (p[0] != ((uintptr_t)p ^ key)) return 0;
  size_t n = p[1];
  uint64_t last = n ^ key;
  if (n >= 24) memcpy(&last, (const char *)p + n - 8, 8);
  if (last != (n ^ key)) return 0;
  if (fill && n > 24 && ((const unsigned char *)p)[16 + (n - 24) / 2] != (key & 0xff)) return 0;
  return 1;
}

#endif
