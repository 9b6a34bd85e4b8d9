// stress_init: threads racing through start-up. Built against a private copy of the core with
// SMP_INIT_AT_LOAD=0, so nothing initialises the heap before main: -t threads (default 8) wait
// at a barrier and then make their first calls at once. One wins smp_init_slow's CAS and sets
// the heap up; the others wait for its release store of the ready state, then read the
// options, the class table and the block keys it wrote. ThreadSanitizer reports those reads if
// the publication is weakened; without it, a loser that ran ahead would hand out blocks from an
// uninitialised heap, which the content checks below catch. Each run is one start-up, so the
// test repeats itself in fresh processes (-k runs, default 20, by re-executing itself). Each
// run also checks that the winner chose the front end SMPALLOC_OPTIONS asks for; the first
// (-v) prints it. The parent never starts the heap: its fork would then take every allocator
// lock in the atfork handler, more than ThreadSanitizer's deadlock detector can hold.
#include "stress_common.h"

#include <smpalloc.h>
#include <sys/wait.h>

static stress_args_t args = {.threads = 8, .seconds = 20, .seed = 1, .mode = "", .extra = 20};
static pthread_barrier_t barrier;

static void *first_calls(void *arg) {
  uintptr_t id = (uintptr_t)arg;
  pthread_barrier_wait(&barrier);
  void *p[64];
  for (unsigned i = 0; i < 64; i++) {
    size_t n = 16 + (i * 97 + id * 13) % 3000;
    p[i] = smp_malloc(n);
    if (p[i] == NULL) stress_fail("thread %u: smp_malloc(%zu) failed", (unsigned)id, n);
    if ((uintptr_t)p[i] % 16 != 0 || smp_usable_size(p[i]) < n)
      stress_fail("thread %u: block %p of %zu bytes: misaligned or usable size %zu",
                  (unsigned)id, p[i], n, smp_usable_size(p[i]));
    stress_fill_sample(p[i], n, stress_seed(p[i], n, id), 0, n);
  }
  for (unsigned i = 0; i < 64; i++) {
    size_t n = 16 + (i * 97 + id * 13) % 3000;
    size_t bad = stress_check_sample(p[i], n, stress_seed(p[i], n, id), 0, n);
    if (bad != SIZE_MAX) stress_fail("thread %u: block %p damaged at %zu", (unsigned)id, p[i], bad);
    smp_free(p[i]);
  }
  return NULL;
}

static void one_start(void) {
  pthread_t t[64];
  if (args.threads > 64) stress_fail("at most 64 threads");
  pthread_barrier_init(&barrier, NULL, args.threads);
  for (uintptr_t i = 0; i < args.threads; i++) stress_thread_start(&t[i], first_calls, (void *)i);
  for (unsigned i = 0; i < args.threads; i++) stress_thread_join(t[i]);
  // The winner chose the front end from the options: the one they ask for.
  if (args.verbose) {
    if (!test_frontend_check(stress_name, stderr)) _exit(1);
    return;
  }
  const char *opt = getenv("SMPALLOC_OPTIONS");
  smp_stats_t s = {.version = SMP_STATS_VERSION, .size = sizeof s};
  if (smp_stats_get(&s) != 0 || !test_frontend_agrees(opt, s.percpu))
    stress_fail("start-up chose the %s front end, not the one SMPALLOC_OPTIONS=%s asks for",
                s.percpu ? "per-CPU" : "per-thread", opt ? opt : "");
}

int main(int argc, char **argv) {
  stress_args_parse(&args, "stress_init",
                    "  -k starts (each in a fresh process)  -m child (internal: one start-up)",
                    argc, argv);
  if (strcmp(args.mode, "child") == 0) {
    one_start();
    return 0;
  }
  double started = stress_now();
  char threads[16];
  snprintf(threads, sizeof threads, "%u", args.threads);
  unsigned runs = 0;
  for (; runs < args.extra && stress_now() - started < args.seconds; runs++) {
    fflush(stdout);
    pid_t pid = fork(); // before any thread: the child execs a fresh copy of the program
    if (pid < 0) stress_fail("fork: %s", strerror(errno));
    if (pid == 0) {
      execl("/proc/self/exe", argv[0], "-m", "child", "-t", threads, runs == 0 ? "-v" : NULL,
            (char *)NULL);
      _exit(127);
    }
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
      stress_fail("start-up %u failed (status %d)", runs, status);
  }
  stress_ok(runs * args.threads * 128, args.threads, started);
  return 0;
}
