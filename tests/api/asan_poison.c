// AddressSanitizer builds (ci/sanitize.sh address): smpalloc poisons what the program must not
// touch (lib/base/asan.h). Each scenario either commits one defect, which ASan must report
// (the ctest entries match its report), or does only valid things with every case the poison
// must leave alone, and exits 0 ("clean").
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smpalloc.h"

// Keep the compiler from seeing through a pointer (no folding of the access under test).
static unsigned char *launder(void *p) {
  __asm__ volatile("" : "+r"(p));
  return p;
}

static int visit_sum(void *block, size_t usable, void *arg) {
  unsigned char *b = block;
  size_t *sum = arg;
  for (size_t i = 0; i < usable; i++) *sum += b[i]; // every usable byte may be read
  return 0;
}

SMP_TYPE_DEFINE_FLAGS(M_ZEROED, "asan_zeroed", "typed blocks cleared on free", SMP_TYPE_ZERO_ON_FREE);

static int clean(void) {
  // malloc_usable_size's bytes are the program's.
  unsigned char *p = smp_malloc(20);
  size_t n = smp_usable_size(p);
  memset(p, 1, n);
  // realloc within the block, shrinking and growing, then moving: bytes kept, slack usable
  // up to the new size.
  p = smp_realloc(p, 10);
  p = smp_realloc(p, 30);
  memset(p, 2, 30);
  p = smp_realloc(p, 5000);
  memset(p, 3, 5000);
  smp_free(p);
  // SMP_NOWAIT realloc within the block: the bytes up to the new size are the program's.
  unsigned char *w = smp_malloc(20);
  unsigned char *same = smp_reallocx(w, 30, SMP_NOWAIT);
  if (same != w) return 5;
  memset(same, 8, 30);
  smp_free(same);
  // Typed blocks (the type's first block comes through the heap API), cleared on free,
  // grown within their block and moved.
  for (int i = 0; i < 4; i++) {
    unsigned char *t = smp_malloc_type(20, M_ZEROED, 0);
    memset(t, 9, 20);
    t = smp_realloc_type(t, 30, M_ZEROED, 0);
    memset(t, 9, 30);
    t = smp_realloc_type(t, 3000, M_ZEROED, 0);
    memset(t, 9, 3000);
    smp_free_type(t, M_ZEROED);
  }
  // Blocks of every small size, written whole, freed, allocated again (reused from the caches).
  void *keep[64];
  for (int round = 0; round < 3; round++) {
    for (size_t i = 0; i < 64; i++) keep[i] = smp_malloc(i * 37 + 1);
    for (size_t i = 0; i < 64; i++) memset(keep[i], (int)i, i * 37 + 1);
    for (size_t i = 0; i < 64; i++) smp_free(keep[i]);
  }
  // A heap's blocks, visited byte by byte, then the heap destroyed.
  smp_heap_t *h = smp_heap_create("asan", 0);
  if (h == NULL) return 2;
  for (int i = 0; i < 100; i++) {
    char *b = smp_heap_malloc(h, 100 + i, 0);
    if (b == NULL) return 3;
    memset(b, 4, 100 + i);
  }
  size_t sum = 0;
  smp_heap_visit(h, visit_sum, &sum);
  smp_heap_destroy(h);
  // A region heap: its memory, poisoned while blocks of it were freed, is the owner's again.
  size_t len = 4u << 20;
  unsigned char *region = aligned_alloc(1u << 16, len);
  smp_heap_t *r = smp_heap_create_in("asan-region", region, len, 0);
  if (r == NULL) return 4;
  for (int i = 0; i < 1000; i++) smp_free(smp_heap_malloc(r, 64 + i % 500, 0));
  smp_heap_destroy(r);
  memset(region, 5, len);
  free(region);
  // Large and huge blocks freed and their memory reused by small blocks.
  for (int i = 0; i < 8; i++) smp_free(smp_malloc((size_t)1 << (16 + i)));
  for (int i = 0; i < 10000; i++) {
    unsigned char *q = smp_malloc(200);
    memset(q, 6, 200);
    smp_free(q);
  }
  printf("clean %zu\n", sum);
  return 0;
}

int main(int argc, char **argv) {
  const char *s = argc > 1 ? argv[1] : "";
  if (strcmp(s, "clean") == 0) return clean();
  if (strcmp(s, "read_after_free") == 0) {
    unsigned char *p = smp_malloc(64);
    memset(p, 7, 64);
    smp_free(p);
    printf("read %d\n", launder(p)[32]);
  } else if (strcmp(s, "write_after_free") == 0) {
    unsigned char *p = smp_malloc(200);
    smp_free(p);
    launder(p)[100] = 1;
  } else if (strcmp(s, "slack_write") == 0) { // 20 bytes asked, a 32-byte block
    unsigned char *p = smp_malloc(20);
    launder(p)[24] = 1;
  } else if (strcmp(s, "heap_read_after_free") == 0) {
    smp_heap_t *h = smp_heap_create("asan", 0);
    unsigned char *p = smp_heap_malloc(h, 96, 0);
    smp_free(p);
    printf("read %d\n", launder(p)[40]);
  } else {
    fprintf(stderr, "asan_poison: unknown scenario %s\n", s);
    return 2;
  }
  printf("survived\n"); // not reached when ASan reports
  return 0;
}
