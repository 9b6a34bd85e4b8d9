// Workload: the cost of one malloc/free pair on one thread, the allocator's fast path.
// Cycles through a few sizes so the loop is not a single-class special case; each block is
// touched once so allocation cannot be optimised away. Prints ns per pair and peak RSS.
// Usage: pair [pairs=50000000] [max size=256]
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "workload.h"

int main(int argc, char **argv) {
  long pairs = argc > 1 ? atol(argv[1]) : 50000000;
  size_t max = argc > 2 ? (size_t)atol(argv[2]) : 256;
  static const size_t sizes[8] = {16, 24, 32, 48, 64, 100, 128, 256};
  void *volatile sink;
  double t0 = workload_now();
  for (long i = 0; i < pairs; i++) {
    size_t n = sizes[i & 7] <= max ? sizes[i & 7] : max;
    char *p = malloc(n);
    p[0] = (char)i;
    sink = p;
    free(p);
  }
  double secs = workload_now() - t0;
  (void)sink;
  printf("pair pairs=%ld time=%.3f s ns_per_pair=%.2f peak_rss=%ld KiB ok\n", pairs, secs,
         secs * 1e9 / (double)pairs, workload_peak_rss_kib());
  return 0;
}
