// Instructions of a typed malloc/free pair against a plain one, for callgrind (which runs the
// per-thread fallback): `valgrind --tool=callgrind build-bench/bench/typed_pair_ir [typed]`
// then callgrind_annotate: smp_malloc_type/smp_free_type (or smp_malloc/smp_free) per 100,000
// calls. The typed blocks are 48 bytes, the plain ones 64: the same 64-byte block class.
#include <stdio.h>
#include <string.h>

#include "smpalloc.h"

SMP_TYPE_DEFINE(M_BENCH, "bench", "typed pairs");

int main(int argc, char **argv) {
  int typed = argc > 1 && strcmp(argv[1], "typed") == 0;
  for (int i = 0; i < 100000; i++) {
    if (typed) {
      void *volatile p = smp_malloc_type(48, M_BENCH, 0);
      smp_free_type(p, M_BENCH);
    } else {
      void *volatile p = smp_malloc(64);
      smp_free(p);
    }
  }
  printf("%s: 100000 pairs\n", typed ? "typed" : "plain");
  return 0;
}
