// An idle program keeps no cached huge mapping (lib/heap/large.c, lib/api/background.c): run
// with background:1 and decay_ms:8000 (a pass every second), it allocates, touches and frees
// four huge blocks of the default heap and one of a heap of its own. Their mappings are kept
// for reuse at once; then, without another allocator call (statistics only), the background
// thread's idle pass (the second pass after the frees) must give all of them back, well before
// they come of age (8 s): within 6 s. Prints what it saw and exits 0, or 1.
#include "test_frontend.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "smpalloc.h"

#define MIB ((size_t)1 << 20)

static smp_stats_t stats_of(smp_heap_t *h) {
  smp_stats_t s = {.version = SMP_STATS_VERSION, .size = sizeof s};
  if (smp_heap_stats_get(h, &s) != 0) memset(&s, 0, sizeof s);
  return s;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(void) {
  if (!test_frontend_check("huge_idle_main", stderr)) return 1;
  smp_heap_t *h = smp_heap_create("huge_idle", 0);
  char *p[5];
  for (int i = 0; i < 5; i++) {
    size_t n = (size_t)(4 + 2 * i) * MIB;
    p[i] = i < 4 ? smp_malloc(n) : smp_heap_malloc(h, n, 0);
    if (h == NULL || p[i] == NULL) return printf("huge_idle_main: allocation failed\n"), 1;
    memset(p[i], i + 1, n);
  }
  for (int i = 0; i < 5; i++) smp_free(p[i]);
  smp_stats_t d = stats_of(NULL), o = stats_of(h);
  printf("huge_idle_main: after the frees: %llu MiB cached (default heap), %llu MiB (own heap), "
         "background %u\n",
         (unsigned long long)(d.huge_cached / MIB), (unsigned long long)(o.huge_cached / MIB),
         d.background);
  if (d.huge_cached == 0 || o.huge_cached == 0 || !d.background)
    return printf("huge_idle_main: FAIL: nothing cached, or no background thread\n"), 1;
  double t0 = now_s(), t = 0;
  while ((d.huge_cached || o.huge_cached) && (t = now_s() - t0) < 6.0) {
    struct timespec pause = {0, 50 * 1000 * 1000};
    nanosleep(&pause, NULL);
    d = stats_of(NULL);
    o = stats_of(h);
  }
  printf("huge_idle_main: %llu + %llu bytes cached after %.2f s idle; default heap resident "
         "%llu KiB\n",
         (unsigned long long)d.huge_cached, (unsigned long long)o.huge_cached, t,
         (unsigned long long)(d.resident >> 10));
  smp_heap_destroy(h);
  if (d.huge_cached || o.huge_cached) return printf("huge_idle_main: FAIL: still cached\n"), 1;
  return 0;
}
