// stress_fork_stats: the statistics locks across fork. One thread calls mallinfo2() in a loop,
// another malloc_stats() (the process's stderr points at /dev/null meanwhile); the main thread
// forks F times (default 100) and each child calls mallinfo2() and malloc_stats() once and
// exits 0. The fork handlers must take every allocator lock, so that none is held in the
// child by a thread that does not exist there; a child that hangs for 5 s is killed and fails
// the test. This is the reduced form of stress_fork's "stats" mode.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>

#include "stress_common.h"

static stress_args_t args = {.threads = 2, .seconds = 8, .seed = 1, .mode = "both", .extra = 100};
static int saved_stderr = -1;
static atomic_bool stop;
static _Atomic uint64_t calls;
static pthread_t threads[2];
static unsigned nthreads;

static void *mallinfo_loop(void *arg) {
  (void)arg;
  while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
    struct mallinfo2 m = mallinfo2();
    (void)m;
    atomic_fetch_add_explicit(&calls, 1, memory_order_relaxed);
  }
  return NULL;
}

static void *stats_loop(void *arg) {
  (void)arg;
  while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
    malloc_stats(); // to /dev/null
    atomic_fetch_add_explicit(&calls, 1, memory_order_relaxed);
  }
  return NULL;
}

// Stop the statistics threads and give fd 2 its real stderr back.
static void stop_threads(void) {
  atomic_store(&stop, true);
  for (unsigned i = 0; i < nthreads; i++) stress_thread_join(threads[i]);
  nthreads = 0;
  dup2(saved_stderr, STDERR_FILENO);
}

__attribute__((noreturn)) static void fail_child(unsigned nth, pid_t pid, const char *what, int v) {
  stop_threads();
  stress_fail("child %u (pid %d) %s %d (mode %s): an allocator lock was held across fork", nth,
              (int)pid, what, v, args.mode);
}

int main(int argc, char **argv) {
  stress_args_parse(&args, "stress_fork_stats",
                    "  -k forks  -m mallinfo2|malloc_stats|both  which statistics the threads call\n"
                    "  -s time cap (no new forks after it)",
                    argc, argv);
  stress_require_smpalloc();
  bool mi = strcmp(args.mode, "mallinfo2") == 0 || strcmp(args.mode, "both") == 0;
  bool ms = strcmp(args.mode, "malloc_stats") == 0 || strcmp(args.mode, "both") == 0;
  if (!mi && !ms) stress_fail("unknown mode %s", args.mode);
  saved_stderr = dup(STDERR_FILENO);
  int devnull = open("/dev/null", O_WRONLY);
  if (saved_stderr < 0 || devnull < 0 || dup2(devnull, STDERR_FILENO) < 0)
    stress_fail("cannot point stderr at /dev/null: %s", strerror(errno));
  close(devnull);

  // A live block, so the heap the child reports on is never empty (in a sanitizer build
  // nothing else in the process allocates from smpalloc).
  void *live = malloc(1000);
  if (live == NULL) stress_fail("malloc(1000) failed");

  double started = stress_now();
  if (mi) stress_thread_start(&threads[nthreads++], mallinfo_loop, NULL);
  if (ms) stress_thread_start(&threads[nthreads++], stats_loop, NULL);
  unsigned nt = nthreads;
  stress_budget_t budget = stress_budget(args.extra, args.seconds);
  uint64_t forks = 0;
  for (; stress_continue(&budget, forks); forks++) {
    while (atomic_load(&calls) < (forks + 1) * 4) sched_yield(); // the threads are running
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
      stop_threads();
      stress_fail("fork #%llu: %s", (unsigned long long)forks, strerror(errno));
    }
    if (pid == 0) {
      struct mallinfo2 m = mallinfo2();
      malloc_stats();
      _exit(m.arena > 0 ? 0 : 3);
    }
    double deadline = stress_now() + 5;
    int status;
    while (waitpid(pid, &status, WNOHANG) != pid) {
      if (stress_now() > deadline) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        fail_child((unsigned)forks, pid, "hung in its first statistics call; killed after", 5);
      }
      usleep(1000);
    }
    if (WIFSIGNALED(status)) fail_child((unsigned)forks, pid, "died of signal", WTERMSIG(status));
    if (WEXITSTATUS(status) != 0) fail_child((unsigned)forks, pid, "exited with", WEXITSTATUS(status));
  }
  stop_threads();
  free(live);
  stress_ok(forks * 2 + atomic_load(&calls), nt + 1, started);
  return 0;
}
