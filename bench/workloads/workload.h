// Helpers shared by the workloads: a monotonic clock and the peak RSS of this process image.
#ifndef WORKLOAD_H
#define WORKLOAD_H

#include <stdio.h>
#include <time.h>

static inline double workload_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

// VmHWM from /proc/self/status. getrusage's ru_maxrss is not used: Linux carries it over from
// the parent across fork and exec, so a small child reports its parent's peak.
static inline long workload_peak_rss_kib(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kib = -1;
  while (f && fgets(line, sizeof line, f))
    if (sscanf(line, "VmHWM: %ld kB", &kib) == 1) break;
  if (f) fclose(f);
  return kib;
}

#endif
