// The background thread's start (lib/background.h), run as its own process because the rule is
// about the process's threads: argv[1] is what SMPALLOC_OPTIONS' background says (0, 1 or
// auto). Slow paths run first with this one thread, then again after a second thread has
// existed; smp_stats_get's background flag must be, in turn:
//   0:    off, off;  1: on, on;  auto: off (a single-threaded process gets no thread), on.
// Prints what it saw and exits 0, or 1 with the first difference.
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "smpalloc.h"

// A large block and a handful of small ones: every call below takes a slow path.
static void slow_paths(void) {
  for (int i = 0; i < 4; i++) {
    void *p = smp_malloc((size_t)(256 + i) << 10), *q = smp_malloc(24);
    if (p == NULL || q == NULL) return;
    memset(p, i, 1024);
    smp_free(q);
    smp_free(p);
  }
}

static int background_running(void) {
  smp_stats_t s = {.version = SMP_STATS_VERSION, .size = sizeof s};
  return smp_stats_get(&s) == 0 && s.background;
}

static void *worker(void *arg) {
  (void)arg;
  slow_paths();
  return NULL;
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "auto";
  int want_single = strcmp(mode, "1") == 0, want_multi = strcmp(mode, "0") != 0;
  slow_paths();
  int single = background_running();
  pthread_t t;
  if (pthread_create(&t, NULL, worker, NULL) != 0 || pthread_join(t, NULL) != 0) return 2;
  slow_paths();
  int multi = background_running();
  printf("background:%s: with one thread %s, after a second %s\n", mode,
         single ? "running" : "not running", multi ? "running" : "not running");
  return single == want_single && multi == want_multi ? 0 : 1;
}
