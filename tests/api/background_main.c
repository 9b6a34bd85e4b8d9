// The background thread's start (lib/api/background.h), run as its own process because the rule is
// about the process's threads: argv[1] is what SMPALLOC_OPTIONS' background says (0, 1 or
// auto). Slow paths run first with this one thread, then again after a second thread has
// existed; smp_stats_get's background flag must be, in turn:
//   0:    off, off;  1: on, on;  auto: off (a single-threaded process gets no thread), on.
// Then the process forks and the child does the same (one thread, then a second of its own):
// glibc leaves __libc_single_threaded false in a fork child, but under auto the child must not
// get a thread before it has a second one of its own (it may be about to unshare or exec).
// Prints what it saw and exits 0, or 1 with the first difference; first, the front end it runs
// on, which must be the one SMPALLOC_OPTIONS asks for (tests/test_frontend.h).
#include "test_frontend.h"

#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>
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

// Slow paths with one thread, then after a second thread took some: 0 if the background
// flag was as wanted each time, 1 otherwise, 2 if no thread could be created.
static int check(const char *who, const char *mode, int want_single, int want_multi) {
  slow_paths();
  int single = background_running();
  pthread_t t;
  if (pthread_create(&t, NULL, worker, NULL) != 0 || pthread_join(t, NULL) != 0) return 2;
  slow_paths();
  int multi = background_running();
  printf("background:%s: %s: with one thread %s, after a second %s\n", mode, who,
         single ? "running" : "not running", multi ? "running" : "not running");
  fflush(stdout);
  return single == want_single && multi == want_multi ? 0 : 1;
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "auto";
  if (!test_frontend_check("background_main", stderr)) return 1; // allocates nothing
  int want_single = strcmp(mode, "1") == 0, want_multi = strcmp(mode, "0") != 0;
  int rc = check("process", mode, want_single, want_multi);
  if (rc != 0) return rc;
  pid_t pid = fork();
  if (pid < 0) return 2;
  if (pid == 0) _exit(check("fork child", mode, want_single, want_multi));
  int status;
  if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return 1;
  return WEXITSTATUS(status);
}
