// smp_stats_json with 1000 malloc types registered (each holding a block of its own size): the
// median, least and most time of 21 calls, and smp_type_stats_get's time per type. The issue's
// budget: the JSON of 1000 types under 1 ms. Run: build-bench/bench/json_types.
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "smpalloc.h"

enum { TYPES = 1000, RUNS = 21 };
static smp_type_t types[TYPES];
static void *blocks[TYPES];
static char names[TYPES][16];

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}
static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(void) {
  for (int i = 0; i < TYPES; i++) { // types made at run time: no destructor, freed below
    snprintf(names[i], sizeof names[i], "type%d", i);
    types[i] = (smp_type_t){SMP_TYPE_MAGIC, 0, names[i], "one of a thousand", 0, 0, 0};
    blocks[i] = smp_malloc_type(16 + (size_t)i * 8, &types[i], 0);
  }
  int len = smp_stats_json(NULL, 0);
  char *buf = malloc((size_t)len + 4096);
  double t[RUNS];
  for (int r = 0; r < RUNS; r++) {
    double t0 = now();
    int n = smp_stats_json(buf, (size_t)len + 4096);
    t[r] = now() - t0;
    if (n > len) len = n;
  }
  qsort(t, RUNS, sizeof t[0], by_value);
  printf("smp_stats_json, %d types: %d bytes, median %.3f ms (least %.3f, most %.3f)\n", TYPES,
         len, t[RUNS / 2] * 1e3, t[0] * 1e3, t[RUNS - 1] * 1e3);
  smp_type_stats_t s = {.version = SMP_TYPE_STATS_VERSION, .size = sizeof s};
  double t0 = now();
  for (int i = 0; i < TYPES; i++) smp_type_stats_get(&types[i], &s);
  printf("smp_type_stats_get: %.1f ns per type\n", (now() - t0) / TYPES * 1e9);
  for (int i = 0; i < TYPES; i++) smp_free_type(blocks[i], &types[i]);
  free(buf);
  return 0;
}
