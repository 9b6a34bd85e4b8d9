// Linked against an installed smpalloc. argv[1] says whether malloc should be smpalloc
// ("replaced") or glibc's ("separate"); smp_ functions must work either way.
#include <malloc.h>
#include <smpalloc.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  void *p = smp_malloc(100);
  if (p == NULL || smp_usable_size(p) < 100) return 1;
  smp_free(p);
  // smp_usable_size accepts only smpalloc's blocks (anything else aborts), so ask it about a
  // block from malloc only when malloc is supposed to be smpalloc.
  void *q = malloc(100);
  if (strcmp(argv[1], "replaced") == 0 && smp_usable_size(q) < 100) return 1;
  // glibc's malloc_usable_size of its own 100-byte block is 104; smpalloc's class is 112.
  size_t u = malloc_usable_size(q);
  int replaced = u == 112;
  free(q);
  if (replaced != (strcmp(argv[1], "replaced") == 0)) {
    fprintf(stderr, "linked: malloc_usable_size %zu does not fit mode %s\n", u, argv[1]);
    return 1;
  }
  printf("linked (%s): smpalloc %s ok\n", argv[1], smp_version());
  return 0;
}
