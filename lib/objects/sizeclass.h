// Layer: objects. Size classes: the table and size -> class.
// Classes 1..8 are 16..128 bytes in steps of 16; above 128, each doubling (2^k, 2^(k+1)] has 8
// classes 2^k + j*2^(k-3), j = 1..8, up to SMP_SMALL_MAX (class 80 = 64 KiB). Class 0 means
// "not small". Waste bound (tested for every n): class_size(n) - n < max(16, n/8), so above
// 128 bytes a block wastes less than 12.5% of the request. Every class size is a multiple of 16, and of every power of two
// up to its own lowest set bit, which the aligned allocator relies on.
#ifndef SMP_SIZECLASS_H
#define SMP_SIZECLASS_H

#include <stddef.h>
#include <stdint.h>

#include "compiler.h"
#include "config.h"

typedef struct smp_class_info {
  uint32_t size;      // block size in bytes
  uint32_t pages;     // pages per span
  uint32_t capacity;  // blocks per span
  uint32_t batch;     // blocks moved between a cache and the central list at once: 2..32
  uint32_t cache_cap; // blocks a per-thread cache keeps at most: batch..64
  uint32_t grow;      // blocks a per-CPU cache's class gains per miss: 1..batch
} smp_class_info_t;

extern SMP_HIDDEN smp_class_info_t smp_class_info[SMP_CLASS_COUNT];
// Bytes a batch moves at least (up to 32 blocks): 64 KiB, 4 blocks of 16 KiB, 2 of 64 KiB.
#define SMP_BATCH_BYTES 65536
// Per class, 2^64 / size rounded up: an offset x < 2^32 is a multiple of size iff
// x * magic (mod 2^64) < magic (Lemire, Kaser & Kurz, "Faster remainder by direct
// computation"). Class 0's entry is 0, so every offset fails for it.
extern SMP_HIDDEN uint64_t smp_class_magic[SMP_CLASS_COUNT];
extern SMP_HIDDEN const uint8_t smp_class_table[65];

// Class of a request of n bytes, n <= SMP_SMALL_MAX. Fast path: a table up to 1 KiB, else
// the bit arithmetic of the class layout.
SMP_INLINE unsigned smp_sizeclass_of_large(size_t n) { // 1024 < n <= SMP_SMALL_MAX
  size_t m = n - 1;
  unsigned k = 63u - (unsigned)__builtin_clzll(m); // 2^k <= m < 2^(k+1)
  return 8 + (k - 7) * 8 + (unsigned)((m >> (k - 3)) & 7) + 1;
}
SMP_INLINE unsigned smp_sizeclass_of(size_t n) {
  if (SMP_LIKELY(n <= 1024)) return smp_class_table[(n + 15) >> 4];
  return smp_sizeclass_of_large(n);
}

// The smallest class that holds n bytes (n <= SMP_SMALL_MAX) and whose size is a multiple of
// align (a power of two, <= SMP_PAGE_SIZE), or SMP_CLASS_COUNT if none: its blocks sit at
// multiples of the size from a page-aligned span start, so every block is aligned. Slow paths.
SMP_INLINE unsigned smp_sizeclass_aligned(size_t n, size_t align) {
  unsigned cls = smp_sizeclass_of(n < align ? align : n);
  while (cls < SMP_CLASS_COUNT && smp_class_info[cls].size % align) cls++;
  return cls;
}

// True if offset (< 2^32) is a whole number of blocks of the class whose magic (smp_class_magic)
// is magic: one multiply. Magic 0 (class 0, or a table that refuses every block) is never true.
SMP_INLINE int smp_sizeclass_on_boundary_by(uint64_t magic, size_t offset) {
  return (uint64_t)offset * magic < magic;
}
// True if offset (< 2^32) is a whole number of blocks of class cls.
SMP_INLINE int smp_sizeclass_on_boundary(unsigned cls, size_t offset) {
  return smp_sizeclass_on_boundary_by(smp_class_magic[cls], offset);
}

// Fill smp_class_info; called once at start-up. cache_budget bounds bytes cached per class.
void smp_sizeclass_init(size_t cache_budget);

#endif
