// Layer: objects. See sizeclass.h. The table is computed at start-up from the layout rule, so
// the rule in the header is the only definition; the unit test checks the waste bound, the
// span geometry and the fast lookup against a brute-force search for every size.
#include "sizeclass.h"

smp_class_info_t smp_class_info[SMP_CLASS_COUNT];
uint64_t smp_class_magic[SMP_CLASS_COUNT];

// smp_class_table[i] = class of sizes 16*(i-1)+1 .. 16*i (i = 0 is malloc(0): class 1).
const uint8_t smp_class_table[65] = {
    1,  1,  2,  3,  4,  5,  6,  7,  8,  // 0..128: 16-byte steps
    9,  10, 11, 12, 13, 14, 15, 16,     // 129..256: 16-byte steps
    17, 17, 18, 18, 19, 19, 20, 20, 21, 21, 22, 22, 23, 23, 24, 24, // 257..512: 32-byte steps
    25, 25, 25, 25, 26, 26, 26, 26, 27, 27, 27, 27, 28, 28, 28, 28, // 513..768
    29, 29, 29, 29, 30, 30, 30, 30, 31, 31, 31, 31, 32, 32, 32, 32, // 769..1024
};

static uint32_t class_size_of(unsigned cls) {
  if (cls <= 8) return 16 * cls;
  unsigned k = 7 + (cls - 9) / 8, j = (cls - 9) % 8 + 1;
  return (1u << k) + j * (1u << (k - 3));
}

void smp_sizeclass_init(size_t cache_budget) {
  for (unsigned c = 1; c < SMP_CLASS_COUNT; c++) {
    smp_class_info_t *ci = &smp_class_info[c];
    uint32_t size = class_size_of(c);
    ci->size = size;
    // Span: the fewest pages holding at least min_blocks with tail waste under 1/32.
    uint32_t min_blocks = size >= 8192 ? 4 : 8;
    uint32_t pages = 1;
    for (;; pages++) {
      uint32_t bytes = pages * (uint32_t)SMP_PAGE_SIZE;
      uint32_t n = bytes / size;
      if (n >= min_blocks && (bytes - n * size) * 32 <= bytes) break;
    }
    ci->pages = pages;
    ci->capacity = pages * (uint32_t)SMP_PAGE_SIZE / size;
    // Batches are sized by bytes: a refill or flush moves about SMP_BATCH_BYTES (more when a
    // class's share of cache_budget is larger), 2 to 32 blocks. With batches of one block, each
    // miss of a class from 4 KiB up took the central lock for a single block (mt_churn 16 KiB:
    // 3.2x gperftools' time). A per-thread cache keeps an equal share of cache_budget per
    // class, 1 to 64 blocks, and at least one batch.
    size_t per_class = cache_budget / (SMP_CLASS_COUNT - 1);
    size_t moved = (per_class > SMP_BATCH_BYTES ? per_class : SMP_BATCH_BYTES) / size;
    uint32_t batch = (uint32_t)(moved < 2 ? 2 : moved > 32 ? 32 : moved);
    size_t share = per_class / size, cap = share < batch ? batch : share > 64 ? 64 : share;
    ci->batch = batch;
    ci->cache_cap = (uint32_t)cap;
    // Per-CPU caches grow a class by half its share of the budget per miss (1 to batch): a
    // class grown by whole batches took them from the other classes on every miss when many
    // classes were busy (mt_churn 16 KiB: 4.9x slower, with the blocks taken flushed).
    share = share > 64 ? 64 : share;
    ci->grow = (uint32_t)(share / 2 < 1 ? 1 : share / 2 > batch ? batch : share / 2);
    smp_class_magic[c] = UINT64_MAX / size + 1;
  }
}
