// Helpers shared by the workloads: a monotonic clock, this process's resident memory, a seeded
// generator, and the report of a failed check.
// RSS is read with open/read into a stack buffer, not stdio: fopen allocates, and one allocation
// after an idle period could run an allocator's deferred work (decay) just before the reading.
// VmRSS is the resident set now, VmHWM its peak; getrusage's ru_maxrss is not used, since Linux
// carries it over from the parent across fork and exec, so a small child reports its parent's peak.
#ifndef WORKLOAD_H
#define WORKLOAD_H

#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static inline double workload_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct workload_rss {
  long now_kib;  // VmRSS
  long peak_kib; // VmHWM
} workload_rss_t;

static inline long workload_status_kib(const char *buf, const char *name) {
  const char *p = strstr(buf, name);
  if (!p) return -1;
  p += strlen(name);
  while (*p == ' ' || *p == '\t') p++;
  return strtol(p, NULL, 10);
}

// Both figures from /proc/self/status (-1 where it cannot be read).
static inline workload_rss_t workload_rss(void) {
  workload_rss_t r = {-1, -1};
  char buf[4096];
  int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return r;
  ssize_t len = 0, n;
  while (len < (ssize_t)sizeof buf - 1 && (n = read(fd, buf + len, sizeof buf - 1 - len)) > 0)
    len += n;
  close(fd);
  buf[len] = 0;
  r.now_kib = workload_status_kib(buf, "VmRSS:");
  r.peak_kib = workload_status_kib(buf, "VmHWM:");
  return r;
}

// Diagnostics, off by default: with WORKLOAD_MALLOC_STATS set in the environment, a footprint
// workload calls the allocator's malloc_stats() where it reads its final RSS (after reading
// it), so what the allocator holds there can be told apart. Found by name: not every allocator
// has it (glibc's prints its arenas to stderr, smpalloc's its statistics).
static inline void workload_malloc_stats(void) {
  if (!getenv("WORKLOAD_MALLOC_STATS")) return;
  void (*stats)(void) = (void (*)(void))dlsym(RTLD_DEFAULT, "malloc_stats");
  if (stats) stats();
}

static inline long workload_peak_rss_kib(void) { return workload_rss().peak_kib; }

static inline uint64_t workload_rand(uint64_t *s) { // xorshift64; *s != 0
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

// Failed checks so far, plus n (any thread). One counter per program: the static lives in this
// function, which has internal linkage, so each workload has its own.
static inline long workload_failures_add(long n) {
  static _Atomic long count;
  return atomic_fetch_add(&count, n) + n;
}

static inline long workload_failures(void) { return workload_failures_add(0); }

// A failed check (corrupt block, failed malloc, lost block): counted, and the first few printed
// to stderr as one line each; the workload then prints FAILED and exits 1.
__attribute__((format(printf, 1, 2))) static inline void workload_fail(const char *fmt, ...) {
  if (workload_failures_add(1) > 10) return;
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

#endif
