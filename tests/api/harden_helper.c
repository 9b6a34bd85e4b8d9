// Programs that commit one heap defect each, for test_harden.c, which runs them with the
// hardening options on (SMPALLOC_OPTIONS, lib/api/harden.h) and reads the report. Each prints
// "ptr=<the block's pointer>" before its defect and "survived" if the defect went unnoticed.
// Stores go through a volatile pointer, so that the compiler keeps writes to memory that is
// freed next (and the frees it could prove wrong).
#include <dlfcn.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smpalloc.h"

void free_sized(void *ptr, size_t size); // C23; glibc 2.36 does not declare it

SMP_TYPE_DEFINE(M_HARDEN, "harden", "test_harden: typed blocks");

static void announce(const void *p) {
  printf("ptr=%p\n", p);
  fflush(stdout);
}

static unsigned char *launder(void *p) {
  unsigned char *volatile v = p;
  return v;
}

// Make the blocks of size bytes cycle until p's comes back (without a quarantine, the next
// block of p's class on this thread is p itself).
static void churn(size_t size) {
  for (int i = 0; i < 64; i++) free(malloc(size));
}

// Three call sites of known sizes for the leak report (exported: -rdynamic names them), each a
// frame of its own (noinline, and no tail call: the block is used after malloc returns); the
// test asks addr2line for the line of each marker.
void *leak_site_one(void);
void *leak_site_two(void);
void *leak_site_three(void);
static void use(void *p) { __asm__ volatile("" : : "r"(p) : "memory"); }
__attribute__((noinline)) void *leak_site_one(void) {
  void *p = malloc(1000); // LEAK_ONE
  use(p);
  return p;
}
__attribute__((noinline)) void *leak_site_two(void) {
  void *p = calloc(1, 300); // LEAK_TWO
  use(p);
  return p;
}
__attribute__((noinline)) void *leak_site_three(void) {
  void *p = malloc(40000); // LEAK_THREE
  use(p);
  return p;
}
static volatile int rounds[3] = {20, 10, 3}; // volatile: loops not unrolled into other call sites

static void *keep[64]; // reachable: a leak report counts every block still allocated

static int leaks(const char *plugin) {
  unsigned k = 0;
  for (int i = 0; i < rounds[0]; i++) keep[k++] = leak_site_one();   // 20000 bytes
  for (int i = 0; i < rounds[1]; i++) keep[k++] = leak_site_two();   // 3000 bytes
  for (int i = 0; i < rounds[2]; i++) keep[k++] = leak_site_three(); // 120000 bytes
  for (int i = 0; i < 50; i++) free(malloc(777));              // freed: not reported
  void *h = dlopen(plugin, RTLD_NOW);
  if (h == NULL) return 3;
  void *(*alloc)(size_t) = (void *(*)(size_t))dlsym(h, "leak_plugin_alloc");
  if (alloc == NULL) return 3;
  for (int i = 0; i < rounds[0] - 13; i++) keep[k++] = alloc(5000); // 7: 35000 bytes, from the library
  printf("leaked %u blocks, keep %p\n", k, (void *)keep);
  return 0;
}

// The profiler's known sites: 20,000,000 bytes live in 1000-byte blocks, as many in 1000-byte
// blocks aligned to 64 (hardened even when the small ones are not: fill mode), 5,000,000 in
// 100,000-byte blocks, and 20,000,000 allocated and freed again in 200-byte blocks.
__attribute__((noinline)) void *prof_site_aligned(void);
void *prof_site_aligned(void) {
  void *p = aligned_alloc(64, 1000);
  use(p);
  return p;
}
__attribute__((noinline)) void *prof_site_small(void);
__attribute__((noinline)) void *prof_site_big(void);
__attribute__((noinline)) void *prof_site_churn(void);
void *prof_site_small(void) {
  void *p = malloc(1000);
  use(p);
  return p;
}
void *prof_site_big(void) {
  void *p = malloc(100000);
  use(p);
  return p;
}
void *prof_site_churn(void) {
  void *p = malloc(200);
  use(p);
  return p;
}

static int prof(const char *path) {
  static void *held[40050];
  unsigned k = 0;
  for (int i = 0; i < 20000; i++) held[k++] = prof_site_small();
  for (int i = 0; i < 20000; i++) held[k++] = prof_site_aligned();
  for (int i = 0; i < 50; i++) held[k++] = prof_site_big();
  for (int i = 0; i < 100000; i++) free(prof_site_churn());
  int r = smp_prof_dump(path);
  printf("dump %d, %u blocks held at %p\n", r, k, (void *)held);
  return r;
}

// Requests at the edges of the sampler: one too large to be met (counted in one step, not one
// gap at a time), blocks of 0 bytes (each weighs a byte in the profile, so google-pprof, which
// divides by the probability of a sample, can read it).
static int prof_edges(const char *path) {
  static void *held[100];
  static volatile size_t huge[2] = {(size_t)1 << 62, SIZE_MAX - 4096}; // not folded by gcc
  if (malloc(huge[0]) != NULL || malloc(huge[1]) != NULL) return 3;
  for (int i = 0; i < 100; i++) held[i] = aligned_alloc(64, 0);
  int r = smp_prof_dump(path);
  printf("dump %d, held at %p\n", r, (void *)held);
  return r;
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "leaks") == 0) return leaks(argv[2]);
  if (argc == 3 && strcmp(argv[1], "prof") == 0) return prof(argv[2]);
  if (argc == 3 && strcmp(argv[1], "prof_edges") == 0) return prof_edges(argv[2]);
  if (argc != 2) return 2;
  const char *s = argv[1];
  if (strcmp(s, "overflow_1") == 0) {
    unsigned char *p = malloc(100);
    announce(p);
    launder(p)[100] = 'x';
    free(p);
  } else if (strcmp(s, "overflow_100") == 0) {
    unsigned char *p = malloc(100);
    announce(p);
    memset(launder(p), 'x', 200);
    free(p);
  } else if (strcmp(s, "overflow_large") == 0) {
    unsigned char *p = malloc(300000);
    announce(p);
    launder(p)[300000] = 0;
    free(p);
  } else if (strcmp(s, "overflow_aligned") == 0) {
    unsigned char *p = aligned_alloc(256, 1000);
    announce(p);
    if ((uintptr_t)p % 256) return 3;
    launder(p)[1003] = 1;
    free(p);
  } else if (strcmp(s, "overflow_realloc") == 0) {
    unsigned char *p = malloc(40);
    announce(p);
    launder(p)[41] = 1;
    p = realloc(p, 4000); // the canary is checked as the block moves
  } else if (strcmp(s, "overflow_after_shrink") == 0) { // realloc in place moves the canary
    unsigned char *p = malloc(100);
    unsigned char *q = realloc(p, 70);
    announce(q);
    if (q != p) return 3;
    launder(q)[70] = 1;
    free(q);
  } else if (strcmp(s, "overflow_heap") == 0) {
    smp_heap_t *h = smp_heap_create("guarded", 0);
    unsigned char *p = smp_heap_malloc(h, 64, 0);
    announce(p);
    launder(p)[64] = 1;
    free(p);
  } else if (strcmp(s, "overflow_typed") == 0) {
    unsigned char *p = smp_malloc_type(64, M_HARDEN, 0);
    announce(p);
    launder(p)[64] = 1;
    smp_free_type(p, M_HARDEN);
  } else if (strcmp(s, "write_after_free") == 0) {
    unsigned char *p = malloc(100);
    announce(p);
    free(p);
    launder(p)[24] = 'A';
    churn(100);
  } else if (strcmp(s, "write_after_free_large") == 0) { // found as it leaves the quarantine
    unsigned char *p = malloc(200000);
    announce(p);
    free(p);
    launder(p)[5000] = 'A';
    for (int i = 0; i < 64; i++) free(malloc(200000));
  } else if (strcmp(s, "read_after_free") == 0) { // junk: a freed block reads as the pattern
    uint32_t *p = malloc(64);
    memset(p, 0x11, 64);
    free(p);
    uint32_t v = ((volatile uint32_t *)p)[4];
    printf("read %#x\n", v);
    return v == 0xdeadc0de ? 0 : 4;
  } else if (strcmp(s, "zero_free") == 0) { // zero_free: a freed block reads as zeros
    // Through every route a block takes: malloc's hit path (up to 1 KiB), its route past that,
    // another heap's and a realloc's. The first 16 bytes are the allocator's (links, mark).
    static const size_t sizes[] = {64, 1000, 3000, 40000};
    smp_heap_t *h = smp_heap_create("zero_free", 0);
    for (int round = 0; round < 2; round++) // the second round's blocks are reused ones
      for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        size_t n = sizes[k];
        unsigned char *b[3] = {malloc(n), h ? smp_heap_malloc(h, n, 0) : malloc(n), malloc(n / 2)};
        if (!b[0] || !b[1] || !b[2]) return 3;
        memset(b[2], 0x11, n / 2);
        unsigned char *moved = realloc(b[2], 2 * n); // moves: the old block is freed
        if (!moved) return 3;
        for (int j = 0; j < 2; j++) memset(b[j], 0x11, n);
        for (int j = 0; j < 2; j++) free(b[j]);
        for (int j = 0; j < 2; j++)
          for (size_t i = 16; i < n; i++)
            if (launder(b[j])[i] != 0) return 4;
        if (moved != b[2])
          for (size_t i = 16; i < n / 2; i++)
            if (launder(b[2])[i] != 0) return 4;
        memset(moved, 0x11, 2 * n);
        free(moved);
        for (size_t i = 16; i < 2 * n; i++)
          if (launder(moved)[i] != 0) return 4;
        unsigned char *c = calloc(1, n), *a = aligned_alloc(64, n);
        if (!c || !a) return 3;
        memset(c, 0x11, n);
        memset(a, 0x11, n);
        free(c);
        free(a);
        for (size_t i = 16; i < n; i++)
          if (launder(c)[i] != 0 || launder(a)[i] != 0) return 4;
      }
    return 0;
  } else if (strcmp(s, "fresh") == 0) { // junk: a new block reads as 0xa5, calloc as zeros
    unsigned char *p = malloc(64), *c = calloc(8, 8), *big = calloc(1, 300000);
    for (int i = 0; i < 64; i++)
      if (launder(p)[i] != 0xa5 || launder(c)[i] != 0) return 4;
    for (int i = 0; i < 300000; i++) // large: zeroed by its heap, not filled after
      if (launder(big)[i] != 0) return 6;
    printf("usable %zu\n", malloc_usable_size(p));
    return malloc_usable_size(p) == 64 ? 0 : 5;
  } else if (strcmp(s, "free_sized_exact") == 0) { // the size asked for is the block's
    for (size_t n = 0; n < 3000; n += 7) free_sized(malloc(n), n);
    return 0;
  } else if (strcmp(s, "free_sized_long") == 0) { // a larger one is not (it fits the class)
    unsigned char *p = malloc(100);
    announce(p);
    free_sized(launder(p), 110);
  } else if (strcmp(s, "nowait_realloc") == 0) { // a hardened block grows where it lies
    unsigned char *p = malloc(100);
    memset(p, 0x44, 100);
    unsigned char *q = smp_reallocx(p, 110, SMP_NOWAIT);
    if (q != p) return 4;
    memset(q + 100, 0x45, 10);
    for (int i = 0; i < 110; i++)
      if (q[i] != (i < 100 ? 0x44 : 0x45)) return 5;
    if (smp_reallocx(q, 100000, SMP_NOWAIT) != NULL) return 6; // would move: EAGAIN
    free(q); // its canary moved with it: no report
    return 0;
  } else if (strcmp(s, "fill_realloc") == 0) { // junk alone: realloc keeps bytes, fills the rest
    unsigned char *p = malloc(24);
    memset(p, 0x33, 24);
    p = realloc(p, 20); // in place
    for (int i = 0; i < 20; i++)
      if (launder(p)[i] != 0x33) return 4;
    p = realloc(p, 200); // moves: its first 20 bytes kept, the bytes past the old block 0xa5
    for (int i = 0; i < 20; i++)
      if (launder(p)[i] != 0x33) return 5;
    for (int i = 32; i < 200; i++)
      if (launder(p)[i] != 0xa5) return 6;
    free(p);
    return 0;
  } else if (strcmp(s, "double_free") == 0) {
    unsigned char *p = malloc(100);
    announce(p);
    free(p);
    free(launder(p));
  } else if (strcmp(s, "nowait_realloc_freed") == 0) { // a use after free, reported as one
    unsigned char *p = malloc(100);
    announce(p);
    free(p);
    smp_reallocx(launder(p), 50, SMP_NOWAIT); // in the quarantine: it would fit in place
  } else if (strcmp(s, "double_free_late") == 0) { // after the quarantine gave it back
    unsigned char *p = malloc(100);
    announce(p);
    free(p);
    for (int i = 0; i < 10000; i++) free(malloc(1000)); // pushes p out of a 1 MiB quarantine
    free(launder(p));
  } else if (strcmp(s, "double_free_typed") == 0) {
    unsigned char *p = smp_malloc_type(100, M_HARDEN, 0);
    announce(p);
    smp_free_type(p, M_HARDEN);
    smp_free_type(launder(p), M_HARDEN);
  } else if (strcmp(s, "interior") == 0) {
    unsigned char *p = malloc(100);
    announce(p + 16);
    free(launder(p) + 16);
  } else {
    return 2;
  }
  printf("survived\n");
  return 0;
}
