// stress_fork: fork while other threads are inside the allocator. Four worker threads replace
// blocks in their working sets without pause (mixed sizes up to 4 MiB, some handed between them
// through a shared exchange so remote frees are in flight too) while the main thread forks F
// times (default 50), one child at a time. Before each fork the main thread allocates a set of
// blocks; after it, the parent checks and frees its copies (copy-on-write must keep them). Each
// child checks and frees its copies of those blocks (allocated before the fork by the parent),
// allocates, checks and frees 10000 blocks of mixed sizes through a working set, starts two
// threads that do the same on a smaller scale, calls malloc_trim(0) and exits 0. In mode
// "stats" (the default) the workers also call mallinfo2() now and then and each child starts by
// reading the statistics (mallinfo2, malloc_stats): every allocator lock, the statistics' too,
// must be free in the child. Mode "plain" leaves the statistics out.
// The parent fails on any child that exits non-zero, dies of a signal, or does not finish
// within 15 s (a lock left held across fork hangs it; a normal child takes well under 1 s).
#include <signal.h>
#include <sys/wait.h>

#include "stress_common.h"

#define WORKERS_MAX 64
#define WORKER_SLOTS 64
#define EXCHANGE 64
#define PARENT_BLOCKS 200
#define CHILD_SLOTS 128
#define CHILD_THREAD_STEPS 2000

static stress_args_t args = {.threads = 4, .iters = 10000, .seconds = 8, .seed = 1, .extra = 50,
                             .mode = "stats"};
static bool with_stats; // mode "stats": statistics calls in the workers and in every child
static atomic_bool stop;
static _Atomic uint64_t worker_ops;

static pthread_mutex_t exchange_lock = PTHREAD_MUTEX_INITIALIZER;
static stress_item_t exchange[EXCHANGE];

// Parent: up to 4 MiB (a few dedicated mappings); child: up to 256 KiB, to keep forks quick.
static size_t pick_size(stress_rng_t *r, bool child) {
  unsigned k = (unsigned)stress_rng_below(r, 256);
  if (k < 224) return (size_t)stress_rng_log(r, 1, 4096);
  if (k < 255 || child) return (size_t)stress_rng_log(r, 4097, 256 * 1024);
  return (size_t)stress_rng_log(r, 256 * 1024 + 1, (size_t)4 << 20);
}

// Replace one random slot of a working set: check and free the old block, allocate a new one.
static uint64_t replace(const char *who, stress_item_t *slots, unsigned nslots, stress_rng_t *r,
                        uint64_t tag, bool child) {
  stress_item_t *s = &slots[stress_rng_below(r, nslots)];
  uint64_t ops = 0;
  if (s->p) {
    stress_free(who, s->p, s->size, s->tag);
    ops++;
  }
  size_t size = pick_size(r, child);
  *s = (stress_item_t){stress_malloc(who, size, tag), size, tag};
  return ops + 1;
}

static void free_all(const char *who, stress_item_t *slots, unsigned n) {
  for (unsigned k = 0; k < n; k++)
    if (slots[k].p) {
      stress_free(who, slots[k].p, slots[k].size, slots[k].tag);
      slots[k].p = NULL;
    }
}

static void *worker(void *arg) {
  uint64_t id = (uint64_t)(uintptr_t)arg;
  stress_rng_t r;
  stress_rng_seed(&r, args.seed * 1000 + id);
  stress_item_t slots[WORKER_SLOTS] = {{0}};
  uint64_t ops = 0, i = 0;
  while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
    ops += replace("fork: parent worker", slots, WORKER_SLOTS, &r, (id << 48) | i++, false);
    if (with_stats && stress_rng_chance(&r, 1, 64)) {
      struct mallinfo2 mi = mallinfo2(); // holds the allocator's statistics lock for a while
      (void)mi;
    }
    if (stress_rng_chance(&r, 1, 8)) { // swap a block through the exchange
      stress_item_t *s = &slots[stress_rng_below(&r, WORKER_SLOTS)];
      pthread_mutex_lock(&exchange_lock);
      stress_item_t *e = &exchange[stress_rng_below(&r, EXCHANGE)];
      stress_item_t t = *e;
      *e = *s;
      *s = t;
      pthread_mutex_unlock(&exchange_lock);
    }
  }
  free_all("fork: parent worker", slots, WORKER_SLOTS);
  atomic_fetch_add(&worker_ops, ops);
  return NULL;
}

// ---- the child --------------------------------------------------------------------------

static void *child_thread(void *arg) {
  uint64_t id = (uint64_t)(uintptr_t)arg;
  stress_rng_t r;
  stress_rng_seed(&r, args.seed * 7919 + id);
  stress_item_t slots[32] = {{0}};
  for (uint64_t i = 0; i < CHILD_THREAD_STEPS; i++)
    replace("fork: child thread", slots, 32, &r, (id << 48) | i, true);
  free_all("fork: child thread", slots, 32);
  return NULL;
}

static void child_main(unsigned nth, stress_item_t *parent_blocks) {
  if (with_stats) { // every allocator lock must be usable in the child, the statistics' too
    stress_heap_t h;
    stress_heap_read(&h);
    if (h.in_use == 0) stress_fail("child %u: mallinfo2 reports no bytes in use", nth);
  }
  // The parent's blocks: allocated before the fork, freed here.
  for (unsigned k = 0; k < PARENT_BLOCKS; k++)
    stress_free("fork: child freeing a block the parent allocated", parent_blocks[k].p,
                parent_blocks[k].size, parent_blocks[k].tag);
  pthread_t t[2];
  for (unsigned k = 0; k < 2; k++)
    stress_thread_start(&t[k], child_thread, (void *)(uintptr_t)(0x100 + nth * 2 + k));
  stress_rng_t r;
  stress_rng_seed(&r, args.seed * 31 + nth);
  stress_item_t *slots = calloc(CHILD_SLOTS, sizeof *slots);
  if (slots == NULL) stress_fail("child %u: calloc failed", nth);
  for (uint64_t i = 0; i < args.iters; i++)
    replace("fork: child", slots, CHILD_SLOTS, &r, ((uint64_t)0xc0 << 48) | i, true);
  free_all("fork: child", slots, CHILD_SLOTS);
  free(slots);
  for (unsigned k = 0; k < 2; k++) stress_thread_join(t[k]);
  malloc_trim(0);
  exit(0);
}

// ---- the parent -------------------------------------------------------------------------

static void wait_child(pid_t pid, unsigned nth) {
  double deadline = stress_now() + 15;
  int status;
  for (;;) {
    pid_t w = waitpid(pid, &status, WNOHANG);
    if (w == pid) break;
    if (w < 0 && errno != EINTR) stress_fail("waitpid: %s", strerror(errno));
    if (stress_now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      stress_fail("child %u (pid %d) did not finish in 15 s: deadlock after fork?", nth, (int)pid);
    }
    usleep(1000);
  }
  if (WIFSIGNALED(status))
    stress_fail("child %u (pid %d) died of signal %d (%s)", nth, (int)pid, WTERMSIG(status),
                strsignal(WTERMSIG(status)));
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    stress_fail("child %u (pid %d) exited with status %d", nth, (int)pid, WEXITSTATUS(status));
}

int main(int argc, char **argv) {
  stress_args_parse(&args, "stress_fork",
                    "  -t worker threads in the parent  -k forks  -n blocks per child\n"
                    "  -s time cap (no new forks after it)\n"
                    "  -m stats|plain  with or without statistics calls (mallinfo2, malloc_stats)\n"
                    "     in the workers and the children",
                    argc, argv);
  stress_require_smpalloc();
  if (strcmp(args.mode, "stats") == 0)
    with_stats = true;
  else if (strcmp(args.mode, "plain") != 0)
    stress_fail("unknown mode %s (stats or plain)", args.mode);
  if (args.threads > WORKERS_MAX) stress_fail("at most %d workers", WORKERS_MAX);
  double started = stress_now();
  stress_budget_t budget = stress_budget(args.extra, args.seconds);
  pthread_t t[WORKERS_MAX];
  for (unsigned i = 0; i < args.threads; i++) stress_thread_start(&t[i], worker, (void *)(uintptr_t)i);

  stress_rng_t r;
  stress_rng_seed(&r, args.seed);
  stress_item_t parent_blocks[PARENT_BLOCKS];
  uint64_t forks = 0, ops = 0;
  for (; stress_continue(&budget, forks); forks++) {
    for (unsigned k = 0; k < PARENT_BLOCKS; k++) {
      size_t size = pick_size(&r, false);
      uint64_t tag = ((uint64_t)0xfa << 48) | (forks << 16) | k;
      parent_blocks[k] = (stress_item_t){stress_malloc("fork: parent", size, tag), size, tag};
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) stress_fail("fork #%llu: %s", (unsigned long long)forks, strerror(errno));
    if (pid == 0) child_main((unsigned)forks, parent_blocks);
    // The parent's copies must be untouched by whatever the child does.
    for (unsigned k = 0; k < PARENT_BLOCKS; k++)
      stress_free("fork: parent after fork", parent_blocks[k].p, parent_blocks[k].size,
                  parent_blocks[k].tag);
    wait_child(pid, (unsigned)forks);
    ops += 2 * PARENT_BLOCKS + 2 * args.iters + 2 * 2 * CHILD_THREAD_STEPS; // child: approx.
  }
  atomic_store(&stop, true);
  for (unsigned i = 0; i < args.threads; i++) stress_thread_join(t[i]);
  pthread_mutex_lock(&exchange_lock);
  free_all("fork: exchange", exchange, EXCHANGE);
  pthread_mutex_unlock(&exchange_lock);
  if (forks == 0) stress_fail("no fork was made");
  if (args.verbose) fprintf(stderr, "stress_fork: %llu forks\n", (unsigned long long)forks);
  stress_ok(ops + atomic_load(&worker_ops), args.threads + 1, started);
  return 0;
}
