// stress_churn: thousands of short-lived threads. The main thread starts K threads in all
// (default 4000), at most T alive at once (it joins the oldest before starting another). Each
// thread frees a few blocks left behind by threads that have already exited (an orphan pool),
// then allocates and frees N blocks through a small working set, and leaves a few of its own
// blocks in the pool when it exits. The main thread frees orphans too, and the rest at the end.
// So blocks outlive the thread (and the thread cache) that allocated them, and every thread's
// cache is created, used and retired by the pthread key destructor.
// Checks: every block's pattern/alignment/usable size before free; at the end, with no other
// thread alive: bytes in use (mallinfo2 uordblks) within 8 MiB of the start; the thread-cache
// registry back to the caches that existed at the start, with one retirement per thread
// started; bytes sitting in thread caches below 4 MiB; and, after malloc_trim(0), mapped
// memory within 64 MiB of the start (the footprint does not grow with the number of threads).
#include "stress_common.h"

#define MAX_ALIVE 1024
#define SLOTS 32
#define POOL_CAP 2048
#define LEAVE 8 // blocks a thread leaves in the pool
#define TAKE 8  // orphans a thread frees on start

static stress_args_t args = {.threads = 64, .iters = 300, .seconds = 6, .seed = 1, .extra = 4000};
static stress_budget_t budget;

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static stress_item_t pool[POOL_CAP];
static size_t pool_count;
static _Atomic uint64_t total_ops, orphans_freed;

static size_t pick_size(stress_rng_t *r) {
  unsigned k = (unsigned)stress_rng_below(r, 20);
  if (k < 16) return (size_t)stress_rng_log(r, 1, 1024);
  if (k < 19) return (size_t)stress_rng_log(r, 1025, 16384);
  return (size_t)stress_rng_log(r, 16385, 128 * 1024);
}

// Free up to n orphans (verified); returns how many.
static size_t free_orphans(size_t n, const char *who) {
  stress_item_t take[64];
  if (n > 64) n = 64;
  pthread_mutex_lock(&pool_lock);
  size_t k = pool_count < n ? pool_count : n;
  pool_count -= k;
  memcpy(take, &pool[pool_count], k * sizeof *take);
  pthread_mutex_unlock(&pool_lock);
  for (size_t i = 0; i < k; i++) stress_free(who, take[i].p, take[i].size, take[i].tag);
  atomic_fetch_add(&orphans_freed, k);
  return k;
}

static void *worker(void *arg) {
  uint64_t id = (uint64_t)(uintptr_t)arg;
  stress_rng_t r;
  stress_rng_seed(&r, args.seed * 100003 + id);
  uint64_t ops = free_orphans(TAKE, "churn: orphan freed by a later thread");
  stress_item_t slots[SLOTS] = {{0}};
  for (uint64_t i = 0; i < args.iters; i++) {
    stress_item_t *s = &slots[stress_rng_below(&r, SLOTS)];
    if (s->p) {
      stress_free("churn: own block", s->p, s->size, s->tag);
      ops++;
    }
    size_t size = pick_size(&r);
    uint64_t tag = (id << 32) | i;
    *s = (stress_item_t){stress_malloc("churn: own block", size, tag), size, tag};
    ops++;
  }
  // Leave up to LEAVE blocks behind; free the rest.
  unsigned left = 0;
  pthread_mutex_lock(&pool_lock);
  for (unsigned k = 0; k < SLOTS && left < LEAVE && pool_count < POOL_CAP; k++)
    if (slots[k].p) {
      pool[pool_count++] = slots[k];
      slots[k].p = NULL;
      left++;
    }
  pthread_mutex_unlock(&pool_lock);
  for (unsigned k = 0; k < SLOTS; k++)
    if (slots[k].p) {
      stress_free("churn: own block", slots[k].p, slots[k].size, slots[k].tag);
      ops++;
    }
  atomic_fetch_add(&total_ops, ops);
  return NULL;
}

int main(int argc, char **argv) {
  stress_args_parse(&args, "stress_churn",
                    "  -k threads started in all  -t most alive at once  -n blocks per thread\n"
                    "  -s time cap (no new threads after it)",
                    argc, argv);
  stress_require_smpalloc();
  if (args.threads > MAX_ALIVE) stress_fail("at most %d threads alive (-t)", MAX_ALIVE);
  void *volatile warm = malloc(1); // the main thread's cache exists before the baseline
  free(warm);
  stress_heap_t before, after;
  stress_heap_read(&before);
  double started = stress_now();
  budget = stress_budget(args.extra, args.seconds);

  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 256 * 1024);
  pthread_t ring[MAX_ALIVE];
  uint64_t created = 0, joined = 0;
  for (; stress_continue(&budget, created); created++) {
    if (created - joined == args.threads) stress_thread_join(ring[joined++ % args.threads]);
    int rc = pthread_create(&ring[created % args.threads], &attr, worker, (void *)(uintptr_t)created);
    if (rc != 0) stress_fail("pthread_create #%llu: %s", (unsigned long long)created, strerror(rc));
    if (created % 16 == 0) free_orphans(4, "churn: orphan freed by the main thread");
  }
  while (joined < created) stress_thread_join(ring[joined++ % args.threads]);
  pthread_attr_destroy(&attr);
  while (free_orphans(64, "churn: orphan freed at the end") > 0) {
  }
  uint64_t ops = atomic_load(&total_ops) + atomic_load(&orphans_freed);

  stress_heap_read(&after);
  if (args.verbose) {
    stress_heap_print("before", &before);
    stress_heap_print("after", &after);
  }
  if (after.in_use > before.in_use + ((size_t)8 << 20))
    stress_fail("%zu bytes in use after %llu threads exited, %zu at the start", after.in_use,
                (unsigned long long)created, before.in_use);
  if (after.per_thread) {
    if (after.live_caches > before.live_caches)
      stress_fail("%zu thread caches still registered after %llu threads exited (%zu at the start)",
                  after.live_caches, (unsigned long long)created, before.live_caches);
    if (after.exited - before.exited < created)
      stress_fail("%zu thread caches retired for %llu threads that exited",
                  after.exited - before.exited, (unsigned long long)created);
    if (after.cached > ((size_t)4 << 20))
      stress_fail("%zu bytes in thread caches with only the main thread alive", after.cached);
  } else if (after.cached > (size_t)sysconf(_SC_NPROCESSORS_CONF) * ((size_t)4 << 20) +
                                 ((size_t)4 << 20)) {
    // Per-CPU caches outlive threads but each holds at most its budget (1 MiB by default, up
    // to 4 MiB for a cache that thrashed), and the transfer caches between them under 4 MiB.
    stress_fail("%zu bytes in per-CPU caches, more than the budgets allow", after.cached);
  }
  malloc_trim(0);
  stress_heap_t trimmed;
  stress_heap_read(&trimmed);
  if (args.verbose) stress_heap_print("trimmed", &trimmed);
  if (trimmed.mapped > before.mapped + ((size_t)64 << 20))
    stress_fail("%zu bytes mapped after %llu threads and malloc_trim, %zu at the start",
                trimmed.mapped, (unsigned long long)created, before.mapped);
  stress_ok(ops, (unsigned)created, started); // threads: all that ran
  return 0;
}
