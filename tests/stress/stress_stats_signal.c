// stress_stats_signal: the statistics report written by a signal handler (options stats_signal
// and stats_file, lib/api/report.c) while threads allocate. T workers (default 4) keep 64 slots
// each: malloc of 1 B .. 4 MiB (mostly small, some page runs, 1/512 huge; 1/8 of them typed,
// smp_malloc_type, so the reports have a type table), free, a block swapped
// with another worker's now and then (remote frees), 1/256 malloc_trim(0) (which holds the heap
// registry and page-heap locks for a while) and, on worker 0, 1/512 smp_stats_get (which holds
// the report lock). The main thread raises the signal K times (-k, default 50), and after each
// sends it to a worker too, whose handler then interrupts malloc or free at any point, locks
// held. After each signal it waits for one more report in the file (up to 20 s): a handler that
// waits for a lock its own thread holds never returns, and that report never comes (with the
// gathers made to wait for their locks, 11 runs of 12 failed so; 4 of 12 before the K signals
// to the workers and the frequent trims).
// Checks: 2K report titles ("smpalloc <version> statistics") in the file, each either a whole
// report (front end, class table, heap table and type table present) or the one-line "skipped" of a report
// lock that stayed busy, at least one whole; errno unchanged across raise; the blocks' patterns
// before every free.
// The signal and the file are those of SMPALLOC_OPTIONS (stats_signal:USR2 or a number,
// stats_file:PATH; both required), which the test sets; the program empties the file first.
#include "stress_move.h"

#include <fcntl.h>
#include <signal.h>

#define MAX_WORKERS 32
#define SLOTS 64
#define EXCHANGE 16

static stress_args_t args = {
    .threads = 4, .iters = UINT64_MAX, .seconds = 60, .seed = 1, .extra = 50};
static atomic_bool stop;
static _Atomic uint64_t total_ops;
static pthread_mutex_t exchange_lock = PTHREAD_MUTEX_INITIALIZER;
SMP_TYPE_DEFINE(M_STRESS, "stress", "blocks of stress_stats_signal's workers");
static stress_mblock_t exchange[EXCHANGE];

static void *worker(void *arg) {
  unsigned id = (unsigned)(uintptr_t)arg;
  stress_rng_t rng;
  stress_rng_seed(&rng, args.seed * 1000 + id);
  stress_mblock_t slot[SLOTS];
  memset(slot, 0, sizeof slot);
  uint64_t ops = 0, tag = (uint64_t)id << 48;
  while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
    stress_mblock_t *b = &slot[stress_rng_below(&rng, SLOTS)];
    if (b->p) {
      stress_mblock_free("free", b);
    } else {
      uint64_t r = stress_rng_below(&rng, 512);
      int tier = r == 0 ? STRESS_TIER_HUGE : r < 32 ? STRESS_TIER_RUN : STRESS_TIER_SMALL;
      size_t size = tier == STRESS_TIER_SMALL ? (size_t)stress_rng_log(&rng, 1, 4096)
                                              : stress_tier_size(&rng, tier, 4 * STRESS_MIB);
      void *p = stress_rng_below(&rng, 8) == 0 ? smp_malloc_type(size, M_STRESS, 0) : malloc(size);
      stress_mblock_init(b, "malloc", p, size, 16, ++tag);
    }
    if (stress_rng_below(&rng, 64) == 0) { // swap with the exchange: frees by other threads
      stress_mblock_t *e = &exchange[stress_rng_below(&rng, EXCHANGE)];
      pthread_mutex_lock(&exchange_lock);
      stress_mblock_t t = *e;
      *e = *b;
      *b = t;
      pthread_mutex_unlock(&exchange_lock);
    }
    if (stress_rng_below(&rng, 256) == 0) malloc_trim(0);
    if (id == 0 && stress_rng_below(&rng, 512) == 0) {
      smp_stats_t s = {.version = SMP_STATS_VERSION, .size = sizeof s};
      if (smp_stats_get(&s) != 0) stress_fail("smp_stats_get failed");
    }
    ops++;
  }
  for (unsigned i = 0; i < SLOTS; i++)
    if (slot[i].p) stress_mblock_free("final free", &slot[i]);
  atomic_fetch_add(&total_ops, ops);
  return NULL;
}

// The signal named by the value of stats_signal: a number, or USR1/USR2 with or without SIG.
static int signal_of(const char *v) {
  if (strncmp(v, "SIG", 3) == 0) v += 3;
  if (strcmp(v, "USR1") == 0) return SIGUSR1;
  if (strcmp(v, "USR2") == 0) return SIGUSR2;
  char *end;
  long n = strtol(v, &end, 10);
  return *end == 0 && n > 0 && n < 65 ? (int)n : -1;
}

static char text[4 << 20]; // the file's contents (50 reports are about 200 KiB)

static size_t read_file(const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0; // not yet created
  size_t n = 0;
  for (ssize_t r; n < sizeof text - 1 && (r = read(fd, text + n, sizeof text - 1 - n)) > 0;)
    n += (size_t)r;
  close(fd);
  text[n] = 0;
  return n;
}

static unsigned count(const char *s, const char *needle) {
  unsigned n = 0;
  for (const char *p = strstr(s, needle); p; p = strstr(p + 1, needle)) n++;
  return n;
}

int main(int argc, char **argv) {
  // Checked before anything allocates: the handler must be in place when main starts, even where
  // a sanitizer runtime refused sigaction during its pre-init (UBSan's refused the install then,
  // and the first signal killed the test, when no slow path happened to try again before it).
  const char *early = getenv("SMPALLOC_OPTIONS");
  char early_sig[32];
  if (early && test_option_last(early, "stats_signal", early_sig, sizeof early_sig)) {
    struct sigaction now;
    if (signal_of(early_sig) > 0 && sigaction(signal_of(early_sig), NULL, &now) == 0 &&
        now.sa_handler == SIG_DFL)
      stress_fail("stats_signal:%s: no handler installed when main starts", early_sig);
  }
  stress_args_parse(&args, "stress_stats_signal",
                    "-t workers, -k signals raised (as many sent to workers), -s time cap", argc,
                    argv);
  if (args.threads > MAX_WORKERS) args.threads = MAX_WORKERS;
  stress_require_smpalloc();
  const char *options = getenv("SMPALLOC_OPTIONS");
  char sigtext[32], path[256];
  if (!test_option_last(options, "stats_signal", sigtext, sizeof sigtext) ||
      !test_option_last(options, "stats_file", path, sizeof path) || path[0] == 0)
    stress_fail("SMPALLOC_OPTIONS must set stats_signal and stats_file (%s)",
                options ? options : "unset");
  int sig = signal_of(sigtext);
  if (sig < 0) stress_fail("stats_signal:%s: not a signal this test knows", sigtext);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) stress_fail("cannot empty %s: %s", path, strerror(errno));
  close(fd);

  free(smp_malloc_type(1, M_STRESS, 0)); // registered before the first report
  char title[64];
  snprintf(title, sizeof title, "smpalloc %s statistics", smp_version());
  pthread_t t[MAX_WORKERS];
  for (unsigned i = 0; i < args.threads; i++)
    stress_thread_start(&t[i], worker, (void *)(uintptr_t)i);
  double start = stress_now();
  unsigned sent = 0, want = 2 * args.extra;
  for (unsigned i = 0; i < want; i++) {
    if (i % 2 == 0) {
      errno = 4242;
      if (raise(sig) != 0) stress_fail("raise: %s", strerror(errno));
      if (errno != 4242) stress_fail("the handler changed errno to %d", errno);
    } else {
      int e = pthread_kill(t[(i / 2) % args.threads], sig);
      if (e != 0) stress_fail("pthread_kill: %s", strerror(e));
    }
    double at = stress_now();
    sent++;
    while (read_file(path), count(text, title) < sent) {
      if (stress_now() - at > 20)
        stress_fail("report %u of %u never came (%u in the file): a handler is stuck (%s)", sent,
                    want, count(text, title), i % 2 ? "in a worker" : "in the main thread");
      usleep(1000);
    }
    if (stress_now() - start > args.seconds) stress_fail("time cap of %.0f s passed", args.seconds);
  }
  atomic_store(&stop, true);
  for (unsigned i = 0; i < args.threads; i++) stress_thread_join(t[i]);
  for (unsigned i = 0; i < EXCHANGE; i++)
    if (exchange[i].p) stress_mblock_free("exchange free", &exchange[i]);

  read_file(path);
  unsigned reports = count(text, title), skipped = count(text, "statistics: skipped");
  unsigned whole = count(text, "  frontend:"), tables = count(text, "class    size"),
           heaps = count(text, "  heap     "), types = count(text, "  malloc types:\n");
  if (reports != want) stress_fail("%u report titles in the file, %u signals sent", reports, want);
  if (whole + skipped != reports || tables != whole || heaps != whole || types != whole)
    stress_fail("%u reports: %u whole (%u class tables, %u heap tables, %u type tables), %u "
                "skipped", reports, whole, tables, heaps, types, skipped);
  if (whole == 0) stress_fail("every report was skipped");
  printf("stress_stats_signal: %llu ops, %u threads, %u reports (%u skipped, %u with busy locks), "
         "ok\n", (unsigned long long)atomic_load(&total_ops), args.threads, reports, skipped,
         count(text, "  busy:"));
  return 0;
}
