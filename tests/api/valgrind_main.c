// Run under valgrind's memcheck by valgrind_check.sh: smpalloc tells memcheck about its blocks
// (lib/api/harden.c), so memcheck sees this program's leak of a heap's block and of a typed
// block, and its read of a heap's block after free. Prints "done" at the end.
#include <stdio.h>
#include <stdlib.h>

#include "smpalloc.h"

SMP_TYPE_DEFINE(M_VG, "vg", "valgrind_main: typed blocks");

__attribute__((noinline)) void *vg_leak_heap_block(smp_heap_t *h);
__attribute__((noinline)) void *vg_leak_typed_block(void);
// Each a frame of its own: the block is used after the call returns (no tail call).
void *vg_leak_heap_block(smp_heap_t *h) {
  void *p = smp_heap_malloc(h, 100, 0);
  __asm__ volatile("" : : "r"(p) : "memory");
  return p;
}
void *vg_leak_typed_block(void) {
  void *p = smp_malloc_type(200, M_VG, 0);
  __asm__ volatile("" : : "r"(p) : "memory");
  return p;
}

static char *kept;          // still reachable at exit: not a leak
void *volatile lost;        // (exported: the compiler keeps every store to it)

int main(void) {
  smp_heap_t *h = smp_heap_create("vg", 0);
  if (h == NULL) return 3;
  // Lost: nothing points to them at exit (each pointer is overwritten by the next).
  lost = vg_leak_heap_block(h);
  lost = vg_leak_typed_block();
  lost = NULL;
  char *p = smp_heap_malloc(h, 64, 0);
  p[0] = 1;
  smp_free(p);
  int v = ((volatile char *)p)[10]; // read after free
  char *q = smp_heap_malloc(h, 64, 0);
  kept = smp_heap_malloc(h, 32, 0);
  smp_free(q);
  printf("done %d %p\n", v & 0, (void *)kept); // kept: still reachable, not a leak
  return 0;
}
