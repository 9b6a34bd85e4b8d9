// stress_footprint: memory goes back to the OS. Modes (-m):
//   trim    4 threads allocate 1 GiB in small blocks (16..1024 B, every byte written) and free
//           it all, each thread freeing blocks another thread allocated; then malloc_trim(0)
//           must return 1 and the process's resident memory fall below 5% of its peak.
//   decay   the same without trim, run with SMPALLOC_OPTIONS=decay_ms:D, on the library's clock
//           set by the test (stress_footprint_clock, which links libsmpalloc.a so it can set
//           it): time stands still while the threads work and free, then the test moves it
//           D + 1 s on, and resident memory must fall below 10% of the peak while the process
//           sleeps (within 60 s of real time: the next background pass). While time stands
//           still, three passes of the background thread must leave the pages alone unless a
//           dirty bound is on (no page comes of age, and the heap is never idle). The
//           background thread must be running once the threads have started (background:1 or
//           auto), unless the options say background:0 (then the frees' own dirty bound is all
//           that can give pages back).
//   maps    a churn of random sizes (16 B..1 MiB, frees at random) with a short decay, so spans
//           are purged and reused all the time: the lines of /proc/self/maps must stay within
//           a small bound of the count before the churn (purging never splits mappings).
//   threads 10,000 short-lived threads, each allocating and freeing (some frees remote): the
//           heap's mapped bytes and the process's resident memory stay bounded, and the number
//           of thread caches returns to what it was.
//   fork    two threads leave 8192 live blocks and exit; the child of a fork sees the same bytes
//           in use and no other thread's cache, frees every block, and its heap is empty.
// Resident memory is the kernel's VmRSS; smp_stats_get's figures are checked against it.
#include "stress_common.h"

#include <fcntl.h>
#include <sys/wait.h>

#include <smpalloc.h>

#if FOOTPRINT_TEST_CLOCK
// libsmpalloc.a is linked in: its internal clock hook and page-heap statistics are reachable.
#include "options.h"
#include "os.h"
#include "pageheap.h"
#include "central.h"
// The default heap's page heap, which these tests drive.
#define SMP_TEST_PH (smp_central_default->pages)

// The library's clock: it runs on from the real one until the test freezes it, then moves
// only when the test moves it.
static _Atomic uint64_t clock_ms;
static uint64_t test_clock(void) { return atomic_load_explicit(&clock_ms, memory_order_relaxed); }
static void clock_take_over(void) {
  atomic_store(&clock_ms, smp_os_now_ms()); // from the present, so no stamp lies in the future
  smp_os_clock_set(test_clock);
}
static uint64_t passes(void) {
  smp_pageheap_stats_t st;
  smp_pageheap_stats(SMP_TEST_PH, &st, NULL);
  return st.passes;
}
#endif

static stress_args_t args = {.threads = 4, .seconds = 30, .seed = 1, .mode = "trim", .extra = 0};

#define GIB ((size_t)1 << 30)
#define MIB ((size_t)1 << 20)

// The start of a /proc file, NUL-terminated, read with open/read (stdio would allocate).
static void read_proc(const char *path, char *buf, size_t cap) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) stress_fail("open %s: %s", path, strerror(errno));
  ssize_t n = read(fd, buf, cap - 1);
  close(fd);
  if (n <= 0) stress_fail("read %s", path);
  buf[n] = 0;
}

static size_t vm_rss(void) { // bytes, from /proc/self/statm
  char buf[128];
  read_proc("/proc/self/statm", buf, sizeof buf);
  unsigned long size, resident;
  if (sscanf(buf, "%lu %lu", &size, &resident) != 2) stress_fail("statm: %s", buf);
  return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

static size_t vm_hwm(void) { // bytes: the peak resident size, VmHWM in /proc/self/status
  char buf[4096];
  read_proc("/proc/self/status", buf, sizeof buf);
  const char *h = strstr(buf, "VmHWM:");
  if (h == NULL) stress_fail("no VmHWM");
  return (size_t)strtoull(h + 6, NULL, 10) * 1024;
}

static unsigned maps_lines(void) {
  char buf[4096];
  int fd = open("/proc/self/maps", O_RDONLY);
  if (fd < 0) stress_fail("open /proc/self/maps: %s", strerror(errno));
  unsigned lines = 0;
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0)
    for (ssize_t i = 0; i < n; i++) lines += buf[i] == '\n';
  close(fd);
  return lines;
}

static smp_stats_t stats_now(void) {
  smp_stats_t s = {.version = SMP_STATS_VERSION, .size = sizeof s};
  if (smp_stats_get(&s) != 0) stress_fail("smp_stats_get failed");
  return s;
}

// ---- trim and decay: 1 GiB of small blocks ----------------------------------------------

typedef struct {
  unsigned id;
  void **blocks;
  size_t count;
} part_t;

static part_t parts[16];
static pthread_barrier_t barrier;

static void *fill_and_swap(void *arg) {
  part_t *me = arg;
  stress_rng_t rng;
  stress_rng_seed(&rng, args.seed * 100 + me->id);
  size_t target = GIB / args.threads, bytes = 0, cap = target / 16;
  me->blocks = (void **)mmap(NULL, cap * sizeof(void *), PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0); // not from the heap under test
  if (me->blocks == MAP_FAILED) stress_fail("mmap for the block table");
  while (bytes < target && me->count < cap) {
    size_t n = (size_t)stress_rng_range(&rng, 16, 1024);
    unsigned char *p = malloc(n);
    if (p == NULL) stress_fail("malloc(%zu) failed after %zu bytes", n, bytes);
    memset(p, (int)(me->count & 0xff) | 1, n);
    me->blocks[me->count++] = p;
    bytes += n;
  }
  pthread_barrier_wait(&barrier);
  // Free the next thread's blocks: every free is remote.
  part_t *other = &parts[(me->id + 1) % args.threads];
  for (size_t i = 0; i < other->count; i++) {
    unsigned char *p = other->blocks[i];
    if (p[0] != ((i & 0xff) | 1)) stress_fail("block %zu of thread %u damaged", i, other->id);
    free(p);
  }
  pthread_barrier_wait(&barrier);
  return NULL;
}

static size_t allocate_and_free_gib(void) {
  if (args.threads > 16) stress_fail("at most 16 threads");
  pthread_barrier_init(&barrier, NULL, args.threads);
  pthread_t t[16];
  for (unsigned i = 0; i < args.threads; i++) {
    parts[i].id = i;
    stress_thread_start(&t[i], fill_and_swap, &parts[i]);
  }
  for (unsigned i = 0; i < args.threads; i++) stress_thread_join(t[i]);
  size_t peak = vm_hwm();
  for (unsigned i = 0; i < args.threads; i++)
    munmap(parts[i].blocks, GIB / args.threads / 16 * sizeof(void *));
  if (peak < GIB) stress_fail("peak resident %zu MiB: the blocks were not resident", peak / MIB);
  return peak;
}

static void mode_trim(void) {
  size_t peak = allocate_and_free_gib();
  size_t before = vm_rss();
  int released = malloc_trim(0);
  size_t after = vm_rss();
  smp_stats_t s = stats_now();
  printf("trim: peak %zu MiB, after free %zu MiB, after trim %zu MiB (%.2f%%); heap resident "
         "%llu KiB, purged %llu MiB\n",
         peak / MIB, before / MIB, after / MIB, 100.0 * (double)after / (double)peak,
         (unsigned long long)s.resident / 1024, (unsigned long long)s.purged / MIB);
  if (released != 1) stress_fail("malloc_trim(0) returned %d after freeing 1 GiB", released);
  if (after * 20 >= peak) stress_fail("resident %zu MiB is not below 5%% of the peak", after / MIB);
  if (s.resident > after) stress_fail("heap resident %llu > process resident %zu",
                                      (unsigned long long)s.resident, after);
  if (s.purged == 0) stress_fail("smp_stats_get says nothing was purged");
}

static void mode_decay(void) {
#if FOOTPRINT_TEST_CLOCK
  const char *opt = getenv("SMPALLOC_OPTIONS");
  bool want_thread = smp_options.background != SMP_BACKGROUND_OFF;
  bool bound = smp_options.dirty_pct != 0 && smp_options.decay_ms != 0;
  size_t peak = allocate_and_free_gib(); // on a clock that stands still
  // The thread starts on a slow path (auto: once the process has a second thread): by now.
  if (stats_now().background != want_thread)
    stress_fail("background thread %s, but the options (%s) say it should %s",
                want_thread ? "not running" : "running", opt ? opt : "none",
                want_thread ? "be" : "not be");
  size_t still = vm_rss();
  if (want_thread) {
    uint64_t p0 = passes();
    double t0 = stress_now();
    while (passes() < p0 + 3 && stress_now() - t0 < 60) usleep(10 * 1000);
    if (passes() < p0 + 3) stress_fail("the background thread made no 3 passes in 60 s");
    still = vm_rss();
    if (!bound && still * 2 < peak)
      stress_fail("resident %zu MiB of a %zu MiB peak: pages went back before decay_ms had "
                  "passed on the library's clock", still / MIB, peak / MIB);
  }
  atomic_fetch_add(&clock_ms, smp_options.decay_ms + 1000); // decay_ms and a longest period
  double moved = stress_now();
  size_t rss = vm_rss();
  while (rss * 10 >= peak && stress_now() - moved < 60) {
    usleep(20 * 1000);
    rss = vm_rss();
  }
  double took = stress_now() - moved;
  smp_stats_t s = stats_now();
  printf("decay: peak %zu MiB; %zu MiB while the clock stood still; %zu MiB (%.2f%%) %.2f s after "
         "it moved %zu ms on; purged %llu MiB in %llu calls, %llu chunks unmapped\n",
         peak / MIB, still / MIB, rss / MIB, 100.0 * (double)rss / (double)peak, took,
         smp_options.decay_ms + 1000, (unsigned long long)s.purged / MIB,
         (unsigned long long)s.purges, (unsigned long long)s.chunks_unmapped);
  if (rss * 10 >= peak)
    stress_fail("resident %zu MiB is not below 10%% of the peak %zu MiB after decay_ms",
                rss / MIB, peak / MIB);
#else
  stress_fail("-m decay runs in stress_footprint_clock, which sets the library's clock");
#endif
}

// ---- maps: churn with a short decay -------------------------------------------------------

static void mode_maps(void) {
  stress_rng_t rng;
  stress_rng_seed(&rng, args.seed);
  enum { SLOTS = 2048 };
  static void *slot[SLOTS];
  static size_t size[SLOTS];
  for (unsigned i = 0; i < 200; i++) free(malloc(stress_rng_log(&rng, 16, MIB))); // warm up
  unsigned base = maps_lines(), worst = base;
  stress_budget_t b = stress_budget(args.iters ? args.iters : 400000, args.seconds);
  uint64_t i = 0;
  for (; stress_continue(&b, i); i++) {
    unsigned k = (unsigned)stress_rng_below(&rng, SLOTS);
    if (slot[k]) {
      stress_free("maps", slot[k], size[k], k);
      slot[k] = NULL;
    } else {
      size[k] = (size_t)stress_rng_log(&rng, 16, MIB);
      slot[k] = stress_malloc("maps", size[k], k);
    }
    if ((i & 1023) == 0) {
      unsigned m = maps_lines();
      if (m > worst) worst = m;
    }
  }
  for (unsigned k = 0; k < SLOTS; k++)
    if (slot[k]) stress_free("maps", slot[k], size[k], k);
  smp_stats_t s = stats_now();
  printf("maps: %llu ops, /proc/self/maps %u lines before, at most %u during; purged %llu MiB in "
         "%llu calls\n",
         (unsigned long long)i, base, worst, (unsigned long long)s.purged / MIB,
         (unsigned long long)s.purges);
  if (s.purges == 0) stress_fail("nothing was purged: the churn did not exercise decay");
  if (worst > base + 64) stress_fail("mappings grew from %u to %u lines", base, worst);
}

// ---- threads: 10,000 short-lived threads --------------------------------------------------

static void *short_lived(void *arg) {
  void **handoff = arg;
  void *mine[64];
  for (unsigned i = 0; i < 64; i++) {
    mine[i] = malloc(16 + i * 40);
    if (mine[i] == NULL) stress_fail("malloc in a short-lived thread");
    memset(mine[i], 0x5a, 16 + i * 40);
  }
  for (unsigned i = 0; i < 64; i += 2) free(mine[i]);
  free(*handoff); // the previous thread's block: a remote free
  *handoff = mine[1];
  for (unsigned i = 3; i < 64; i += 2) free(mine[i]);
  return NULL;
}

static void mode_threads(void) {
  unsigned total = args.extra ? args.extra : 10000;
  void *handoff = malloc(100);
  smp_stats_t s0 = stats_now();
  size_t rss0 = vm_rss();
  size_t worst_mapped = 0;
  for (unsigned i = 0; i < total; i++) {
    pthread_t t;
    stress_thread_start(&t, short_lived, &handoff);
    stress_thread_join(t);
    if (i % 1000 == 999) {
      smp_stats_t s = stats_now();
      if (s.mapped > worst_mapped) worst_mapped = s.mapped;
    }
  }
  free(handoff);
  smp_stats_t s = stats_now();
  size_t rss = vm_rss();
  printf("threads: %u threads; resident %zu -> %zu KiB; heap mapped %llu -> %llu KiB (worst "
         "%zu KiB); thread caches %llu -> %llu\n",
         total, rss0 / 1024, rss / 1024, (unsigned long long)s0.mapped / 1024,
         (unsigned long long)s.mapped / 1024, worst_mapped / 1024,
         (unsigned long long)s0.threads, (unsigned long long)s.threads);
  if (s.threads > s0.threads) stress_fail("thread caches grew from %llu to %llu",
                                          (unsigned long long)s0.threads,
                                          (unsigned long long)s.threads);
  if (worst_mapped > s0.mapped + 16 * MIB) stress_fail("heap mapping grew by more than 16 MiB");
  if (rss > rss0 + 32 * MIB) stress_fail("resident memory grew by more than 32 MiB");
}

// ---- fork: the child's accounting ---------------------------------------------------------

typedef struct {
  void *p[4096];
  size_t n[4096];
} live_t;

static void *fill_live(void *arg) {
  live_t *l = arg;
  for (unsigned i = 0; i < 4096; i++) {
    l->n[i] = i % 64 == 0 ? 100000 + i : 16 + (i * 37) % 4000; // small blocks and page runs
    l->p[i] = malloc(l->n[i]);
    if (l->p[i] == NULL) stress_fail("malloc");
    memset(l->p[i], (int)(i & 0xff), l->n[i]);
  }
  return NULL; // the thread exits: its cache is flushed, its blocks stay live
}

static void mode_fork(void) {
  static live_t live[2];
  printf("fork:\n"); // stdout's buffer is allocated before the baseline
  smp_stats_t base = stats_now();
  pthread_t t[2];
  for (unsigned i = 0; i < 2; i++) stress_thread_start(&t[i], fill_live, &live[i]);
  for (unsigned i = 0; i < 2; i++) stress_thread_join(t[i]);
  smp_stats_t p = stats_now();
  fflush(stdout);
  pid_t pid = fork();
  if (pid < 0) stress_fail("fork: %s", strerror(errno));
  if (pid == 0) {
    smp_stats_t c = stats_now();
    // The child inherits the same heap: the same bytes in use, and no thread caches but its own.
    if (c.in_use != p.in_use) stress_fail("child in use %llu, parent %llu",
                                          (unsigned long long)c.in_use, (unsigned long long)p.in_use);
    if (c.threads > 1) stress_fail("child sees %llu thread caches", (unsigned long long)c.threads);
    for (unsigned k = 0; k < 2; k++)
      for (unsigned i = 0; i < 4096; i++) {
        unsigned char *b = live[k].p[i];
        if (b[0] != (i & 0xff) || b[live[k].n[i] - 1] != (i & 0xff)) stress_fail("child: damaged");
        free(b);
      }
    malloc_trim(0);
    smp_stats_t e = stats_now();
    printf("  parent in use %llu KiB; child %llu KiB at fork, %llu KiB after freeing all, "
           "resident %llu KiB, mapped %llu KiB\n",
           (unsigned long long)p.in_use / 1024, (unsigned long long)c.in_use / 1024,
           (unsigned long long)e.in_use / 1024, (unsigned long long)e.resident / 1024,
           (unsigned long long)e.mapped / 1024);
    fflush(stdout);
    if (e.in_use > base.in_use + 16 * 1024)
      stress_fail("child in use %llu after freeing everything, %llu before the threads",
                  (unsigned long long)e.in_use, (unsigned long long)base.in_use);
    if (e.resident > 8 * MIB) stress_fail("child resident heap %llu after trim",
                                          (unsigned long long)e.resident);
    _exit(0);
  }
  int status;
  if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
    stress_fail("child failed (status %d)", status);
  smp_stats_t q = stats_now();
  if (q.in_use != p.in_use) stress_fail("the parent's accounting moved across fork");
  for (unsigned k = 0; k < 2; k++)
    for (unsigned i = 0; i < 4096; i++) free(live[k].p[i]);
}

int main(int argc, char **argv) {
  stress_args_parse(&args, "stress_footprint",
                    "  -m trim|decay|maps|threads|fork  (see the file header)\n"
                    "  -t threads (trim, decay)  -k threads to start (threads mode)",
                    argc, argv);
#if FOOTPRINT_TEST_CLOCK
  clock_take_over();
#endif
  stress_require_smpalloc();
  double started = stress_now();
  if (strcmp(args.mode, "trim") == 0)
    mode_trim();
  else if (strcmp(args.mode, "decay") == 0)
    mode_decay();
  else if (strcmp(args.mode, "maps") == 0)
    mode_maps();
  else if (strcmp(args.mode, "threads") == 0)
    mode_threads();
  else if (strcmp(args.mode, "fork") == 0)
    mode_fork();
  else
    stress_fail("unknown mode %s", args.mode);
  stress_ok(1, args.threads, started);
  return 0;
}
