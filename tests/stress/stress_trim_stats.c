// stress_trim_stats: trim (lib/api/alloc.c: front-end flush, central trim, page-heap purge, chunk
// unmap) and statistics (lib/api/report.c: every layer's counters read under the report lock) racing
// the paths they walk. T workers (default 4) keep 48 slots each: malloc/calloc of 1 B .. 4 MiB
// (mostly small, some page runs, 1/128 huge), free, realloc, in-place checks, swaps of a block
// with one another worker left in a shared exchange (so frees and reallocs are often remote),
// and 1/256 mallinfo2(). S statistics threads (-k, default 2) run meanwhile: one calls
// mallinfo2(), malloc_trim(0) and smp_trim(); the other captures malloc_stats() and
// smp_stats_print() (both write fd 2) in a memory file, pointing fd 2 at it for each call and
// back. That is process-wide: sanitizer reports are sent to the real stderr instead, other text
// in the window (an error) is passed on, but another thread's failure there shows only in the
// exit status. With -k 1 one thread does all of it.
// Checks: each block's pattern before free, after realloc, in place. While the workers run, the
// main thread's pins (one page run per worker, one huge block) bound every statistic from below:
// mallinfo2 in use >= pins, huge >= the huge pin in >= 1 block, chunk bytes >= pinned runs, and
// no figure near 2^64 (a counter below zero); each report is complete and shows at least the
// pins in use, in page runs and in huge mappings. At rest at the end (pins freed): the first
// malloc_trim(0) releases memory and a second has nothing left; in use within 1 MiB of the
// start, free bytes in small spans within 256 KiB, mapped within 4 MiB.
#include <smpalloc.h>

#include "stress_move.h"

#define MAX_WORKERS 32
#define SLOTS 48

static stress_args_t args = {.threads = 4, .iters = 60000, .seconds = 3, .seed = 1, .extra = 2};
static stress_budget_t budget;
static _Atomic unsigned workers_done;
static atomic_bool stats_stop, stats_stopped;
static _Atomic uint64_t total_ops, stats_calls, trims_released;
static stress_mblock_t pins[MAX_WORKERS + 1]; // written by main before any thread starts
static size_t pinned_runs, pinned_huge;       // usable bytes of the pins; likewise
static int real_stderr = -1;                  // likewise
// Sanitizer runtimes write reports to fd 2 unless told otherwise: pointed at the real stderr, a
// report made while fd 2 is redirected is not lost (halt_on_error would end the process there).
// Weak, so it is NULL where no sanitizer runtime is linked.
extern void __sanitizer_set_report_fd(void *fd) __attribute__((weak));
// Blocks in transit between workers: a worker swaps one of its blocks for the one found here, so
// blocks are freed and resized by threads that did not allocate them and each thread's count of
// blocks taken from and given back to the central lists drifts apart (what statistics sum up).
#define EXCHANGE 16
static pthread_mutex_t exchange_lock = PTHREAD_MUTEX_INITIALIZER;
static stress_mblock_t exchange[EXCHANGE];

// ---- statistics threads -----------------------------------------------------------------

static void check_mallinfo(const char *who) {
  struct mallinfo2 m = mallinfo2();
  const size_t absurd = (size_t)1 << 44;
  if (m.uordblks > absurd || m.fordblks > absurd || m.arena > absurd || m.hblkhd > absurd)
    stress_fail("%s: mallinfo2 has a wrapped figure: uordblks %zu fordblks %zu arena %zu "
                "hblkhd %zu", who, m.uordblks, m.fordblks, m.arena, m.hblkhd);
  if (m.uordblks < pinned_runs + pinned_huge)
    stress_fail("%s: mallinfo2 uordblks %zu below the %zu bytes pinned", who, m.uordblks,
                pinned_runs + pinned_huge);
  if (m.hblks < 1 || m.hblkhd < pinned_huge)
    stress_fail("%s: mallinfo2 reports %zu huge blocks of %zu bytes, a %zu-byte one is pinned", who,
                m.hblks, m.hblkhd, pinned_huge);
  if (m.arena < pinned_runs)
    stress_fail("%s: mallinfo2 arena %zu below the %zu bytes of pinned page runs", who, m.arena,
                pinned_runs);
  atomic_fetch_add_explicit(&stats_calls, 1, memory_order_relaxed);
}

static void call_malloc_stats(void) { malloc_stats(); }
static void call_smp_stats_print(void) { smp_stats_print(); }

// The figure after label, and the count after the " in " that follows it.
static size_t report_bytes(const char *text, const char *label, uint64_t *count) {
  const char *p = strstr(text, label);
  if (p == NULL) stress_fail("report has no \"%s\":\n%.800s", label, text);
  p += strlen(label);
  size_t v = stress_parse_bytes(p);
  if (count) {
    const char *in = strstr(p, " in ");
    if (in == NULL || in > strchr(p, '\n')) stress_fail("report line \"%s\" has no count", label);
    *count = strtoull(in + 4, NULL, 10);
  }
  return v;
}

// The report shows v with one decimal of its unit, truncated: at most 10% low.
static bool at_least(size_t shown, size_t v) { return shown >= v - v / 10 - 1; }

static void check_report(const char *what, const char *text) {
  if (strncmp(text, "smpalloc ", 9) != 0 || strstr(text, "statistics\n") == NULL)
    stress_fail("%s: report does not start with its title:\n%.800s", what, text);
  if (strstr(text, "frontend:") == NULL || strstr(text, "class    size") == NULL)
    stress_fail("%s: report lacks its front end or class table:\n%.2000s", what, text);
  uint64_t runs, huge;
  size_t in_use = report_bytes(text, "in use:", NULL);
  size_t run_bytes = report_bytes(text, "large:", &runs);
  size_t huge_bytes = report_bytes(text, "huge:", &huge);
  if (!at_least(in_use, pinned_runs + pinned_huge) || !at_least(run_bytes, pinned_runs) ||
      !at_least(huge_bytes, pinned_huge) || runs < args.threads || huge < 1)
    stress_fail("%s: report shows in use %zu, page runs %zu in %llu, huge %zu in %llu; pinned: %u "
                "runs of %zu bytes, one huge of %zu:\n%.800s", what, in_use, run_bytes,
                (unsigned long long)runs, huge_bytes, (unsigned long long)huge, args.threads,
                pinned_runs, pinned_huge, text);
  atomic_fetch_add_explicit(&stats_calls, 1, memory_order_relaxed);
}

// Run fn with fd 2 pointing at a memory file; check what it wrote as a report.
static void capture(const char *what, void (*fn)(void), int fd) {
  static char text[64 * 1024]; // one capturing thread
  if (ftruncate(fd, 0) != 0 || lseek(fd, 0, SEEK_SET) != 0)
    stress_fail("reset of the memory file: %s", strerror(errno));
  if (dup2(fd, STDERR_FILENO) < 0) stress_fail("dup2: %s", strerror(errno));
  fn();
  if (dup2(real_stderr, STDERR_FILENO) < 0) stress_fail("dup2 back: %s", strerror(errno));
  ssize_t n = pread(fd, text, sizeof text - 1, 0);
  if (n <= 0) stress_fail("%s wrote nothing", what);
  text[n] = 0;
  // (The report itself may name ThreadSanitizer: "frontend: thread (ThreadSanitizer build)".)
  if (strstr(text, "WARNING: ") || strstr(text, "ERROR: ") || strstr(text, "FAIL: ") ||
      strstr(text, "smpalloc: ")) {
    ssize_t w = write(STDERR_FILENO, text, (size_t)n); // not ours to judge: pass it on
    (void)w;
  }
  check_report(what, text);
}

static void trim_call(unsigned i) {
  int released = i % 2 ? smp_trim() : malloc_trim(0);
  if (released != 0 && released != 1) stress_fail("trim returned %d", released);
  atomic_fetch_add_explicit(&trims_released, (unsigned)released, memory_order_relaxed);
  atomic_fetch_add_explicit(&stats_calls, 1, memory_order_relaxed);
}

// Role bit 1: mallinfo2 and trims; bit 2: captured reports.
static void *stats_main(void *arg) {
  unsigned role = (unsigned)(uintptr_t)arg;
  int fd = -1;
  if (role & 2) {
    fd = memfd_create("stress-trim-stats", 0);
    if (fd < 0) stress_fail("memfd_create: %s", strerror(errno));
  }
  unsigned i = 0;
  do {
    if (role & 1) {
      check_mallinfo("statistics thread");
      if (i % 4 == 1) trim_call(i / 4);
    }
    if (role & 2) {
      if (i % 2)
        capture("malloc_stats", call_malloc_stats, fd);
      else
        capture("smp_stats_print", call_smp_stats_print, fd);
      if (role == 2) check_mallinfo("report thread");
    }
    i++;
  } while (!atomic_load(&stats_stop));
  if (fd >= 0) close(fd);
  return NULL;
}

// ---- workers ----------------------------------------------------------------------------

static size_t pick_size(stress_rng_t *r) {
  unsigned k = (unsigned)stress_rng_below(r, 128);
  if (k < 90) return (size_t)stress_rng_log(r, 1, 4096);
  if (k < 115) return (size_t)stress_rng_log(r, 4097, STRESS_SMALL_MAX);
  if (k < 127) return stress_tier_size(r, STRESS_TIER_RUN, 0);
  return stress_tier_size(r, STRESS_TIER_HUGE, 4 * STRESS_MIB);
}

static void *worker_main(void *arg) {
  unsigned id = (unsigned)(uintptr_t)arg;
  stress_rng_t r;
  stress_rng_seed(&r, args.seed * 1000 + id);
  stress_mblock_t slots[SLOTS] = {{0}};
  uint64_t ops = 0, seq = 0;
  for (uint64_t i = 0; stress_continue(&budget, i); i++) {
    stress_mblock_t *b = &slots[stress_rng_below(&r, SLOTS)];
    if (b->p == NULL) {
      size_t n = pick_size(&r);
      void *p;
      if (stress_rng_chance(&r, 1, 16)) {
        p = calloc(1, n);
        if (p) stress_check_zero("trim_stats: calloc", p, n);
      } else {
        p = malloc(n);
      }
      stress_mblock_init(b, "trim_stats: new block", p, n, 16, ((uint64_t)id << 48) | seq++);
      ops++;
      continue;
    }
    unsigned op = (unsigned)stress_rng_below(&r, 256);
    if (op == 0) {
      check_mallinfo("worker");
    } else if (op < 16) {
      stress_mblock_check("trim_stats: block to swap", b);
      pthread_mutex_lock(&exchange_lock);
      stress_mblock_t *x = &exchange[stress_rng_below(&r, EXCHANGE)], mine = *b;
      *b = *x;
      *x = mine;
      pthread_mutex_unlock(&exchange_lock);
      if (b->p) stress_mblock_check("trim_stats: swapped-in block", b);
    } else if (op < 100) {
      stress_mblock_free("trim_stats: free", b);
      ops++;
    } else if (op < 180) {
      size_t n = b->size;
      if (stress_rng_chance(&r, 1, 2))
        n += (size_t)stress_rng_log(&r, 1, n);
      else if (n > 1)
        n -= (size_t)stress_rng_log(&r, 1, n - 1);
      if (n > 4 * STRESS_MIB) n = 4 * STRESS_MIB;
      stress_mblock_resize("trim_stats", b, n);
      ops++;
    } else {
      stress_mblock_check("trim_stats: live block", b);
    }
  }
  for (unsigned k = 0; k < SLOTS; k++)
    if (slots[k].p) stress_mblock_free("trim_stats: free at the end", &slots[k]), ops++;
  atomic_fetch_add(&total_ops, ops);
  atomic_fetch_add(&workers_done, 1);
  // The pins must outlive the statistics threads; then each worker frees one (a remote free:
  // the main thread allocated it).
  while (!atomic_load(&stats_stopped)) sched_yield();
  stress_mblock_free("trim_stats: pin", &pins[id]);
  return NULL;
}

int main(int argc, char **argv) {
  stress_args_parse(&args, "stress_trim_stats",
                    "  -t workers  -n steps per worker  -k statistics threads (1 or 2)\n"
                    "  -s time cap", argc, argv);
  stress_require_smpalloc();
  if (args.threads > MAX_WORKERS) stress_fail("at most %d workers", MAX_WORKERS);
  if (args.extra < 1 || args.extra > 2) stress_fail("-k: 1 or 2 statistics threads");
  real_stderr = dup(STDERR_FILENO);
  if (real_stderr < 0) stress_fail("dup: %s", strerror(errno));
  if (__sanitizer_set_report_fd) __sanitizer_set_report_fd((void *)(intptr_t)real_stderr);
  void *volatile warm = malloc(1); // the main thread's cache exists before the baseline
  free(warm);
  malloc_trim(0);
  stress_heap_t before, after;
  stress_heap_read(&before);

  for (unsigned i = 0; i <= args.threads; i++) {
    size_t n = i < args.threads ? 128 * STRESS_KIB + i * 8 * STRESS_KIB : 3 * STRESS_MIB + 12345;
    stress_mblock_init(&pins[i], "trim_stats: pin", malloc(n), n, 16, 0xfeedull << 32 | i);
    size_t usable = malloc_usable_size(pins[i].p);
    *(i < args.threads ? &pinned_runs : &pinned_huge) += usable;
  }
  double started = stress_now();
  budget = stress_budget(args.iters, args.seconds);
  pthread_t w[MAX_WORKERS], s[2];
  unsigned nstats = args.extra;
  for (unsigned i = 0; i < nstats; i++)
    stress_thread_start(&s[i], stats_main, (void *)(uintptr_t)(nstats == 1 ? 3 : i + 1));
  for (unsigned i = 0; i < args.threads; i++)
    stress_thread_start(&w[i], worker_main, (void *)(uintptr_t)i);
  while (atomic_load(&workers_done) < args.threads) usleep(1000);
  atomic_store(&stats_stop, true);
  for (unsigned i = 0; i < nstats; i++) stress_thread_join(s[i]);
  atomic_store(&stats_stopped, true);
  for (unsigned i = 0; i < args.threads; i++) stress_thread_join(w[i]);
  stress_mblock_free("trim_stats: huge pin", &pins[args.threads]);
  for (unsigned i = 0; i < EXCHANGE; i++)
    if (exchange[i].p) stress_mblock_free("trim_stats: left in the exchange", &exchange[i]);

  // At rest: the pins' page runs were freed after the last trim, so there is something to give
  // back; after that, nothing.
  int first = malloc_trim(0), second = malloc_trim(0);
  stress_heap_read(&after);
  if (args.verbose) {
    fprintf(stderr, "stress_trim_stats: %llu statistics calls, %llu trims released memory\n",
            (unsigned long long)atomic_load(&stats_calls),
            (unsigned long long)atomic_load(&trims_released));
    stress_heap_print("before", &before);
    stress_heap_print("after", &after);
  }
  if (first != 1) stress_fail("malloc_trim(0) after the pins were freed returned %d, not 1", first);
  if (second != 0)
    stress_fail("a second malloc_trim(0) at rest returned %d: the first left memory to release",
                second);
  if (after.in_use > before.in_use + STRESS_MIB)
    stress_fail("%zu bytes in use at rest after trim, %zu at the start", after.in_use,
                before.in_use);
  if (after.span_free > before.span_free + 256 * STRESS_KIB)
    stress_fail("%zu free bytes in small spans after trim, %zu at the start", after.span_free,
                before.span_free);
  if (after.mapped > before.mapped + 4 * STRESS_MIB)
    stress_fail("%zu bytes mapped after trim, %zu at the start", after.mapped, before.mapped);
  if (atomic_load(&stats_calls) == 0) stress_fail("no statistics calls ran");
  stress_ok(atomic_load(&total_ops), args.threads + nstats, started);
  close(real_stderr);
  return 0;
}
