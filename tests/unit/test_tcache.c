// Unit tests of lib/tcache (the per-thread front end) through its interface: creation on the
// first miss, hits, refill and flush batches, thread exit, the dead state, fork adoption.
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

#include "init.h"
#include "options.h"
#include "sizeclass.h"
#include "tcache.h"

static void setup(void) { smp_init_ensure(); }
TestSuite(tcache, .init = setup);

static smp_tcache_class_stats_t class_stats(unsigned cls) {
  static smp_tcache_stats_t st;
  smp_tcache_stats(&st, NULL);
  return st.cls[cls];
}

// The front end as the api layer calls it: the fast path, and the slow path when it misses.
static void *alloc(unsigned cls) {
  void *p = smp_tcache_alloc_fast(cls);
  return p ? p : smp_tcache_alloc_slow(cls);
}
static void release(void *p, unsigned cls) {
  if (!smp_tcache_free_fast(p, cls)) smp_tcache_free_slow(p, cls);
}

// Allocate n <= 40 blocks of class cls, then free them all, through this thread's cache.
static void cycle(unsigned cls, unsigned n) {
  void *p[40];
  for (unsigned i = 0; i < n; i++) p[i] = alloc(cls);
  for (unsigned i = 0; i < n; i++) release(p[i], cls);
}

Test(tcache, first_miss_creates_the_cache_then_hits) {
  unsigned cls = 3;
  cr_assert_null(smp_tcache_alloc_fast(cls), "the boot cache misses");
  void *p = smp_tcache_alloc_slow(cls);
  cr_assert_not_null(p);
  uint32_t batch = smp_class_info[cls].batch;
  cr_assert_eq(smp_load_relaxed(&smp_tcache_self->bins[cls].count), batch - 1);
  void *q = smp_tcache_alloc_fast(cls);
  cr_assert_not_null(q, "the refill left blocks to hit");
  cr_assert_neq(p, q);
  cr_assert(smp_tcache_free_fast(q, cls));
  cr_assert_eq(smp_tcache_alloc_fast(cls), q, "LIFO: the last freed block comes back first");
  cr_assert_eq(class_stats(cls).held, batch);
}

Test(tcache, full_bin_flushes_the_oldest_batch) {
  unsigned cls = 10;
  const smp_class_info_t *ci = &smp_class_info[cls];
  void *blocks[256];
  unsigned n = ci->cache_cap + 1;
  for (unsigned i = 0; i < n; i++) blocks[i] = alloc(cls);
  for (unsigned i = 0; i < n; i++) release(blocks[i], cls);
  smp_cache_bin_t *b = &smp_tcache_self->bins[cls];
  uint32_t count = smp_load_relaxed(&b->count);
  cr_assert_leq(count, ci->cache_cap);
  cr_assert_gt(count, ci->cache_cap - ci->batch, "a flush removes one batch, no more");
  cr_assert_eq(b->slots[smp_load_relaxed(&b->count) - 1], blocks[n - 1], "hot top kept");
  smp_tcache_class_stats_t cs = class_stats(cls);
  cr_assert_eq(cs.cached, smp_load_relaxed(&b->count));
  cr_assert_eq(cs.held, cs.cached, "no block is with a user");
}

static void *churn(void *arg) {
  cycle((unsigned)(uintptr_t)arg, 40);
  return NULL;
}

Test(tcache, thread_exit_returns_every_cached_block) {
  unsigned cls = 12;
  for (int round = 0; round < 50; round++) {
    pthread_t t;
    pthread_create(&t, NULL, churn, (void *)(uintptr_t)cls);
    pthread_join(t, NULL);
  }
  smp_tcache_class_stats_t cs = class_stats(cls);
  cr_assert_eq(cs.held, 0, "exited threads hold nothing");
  cr_assert_eq(cs.cached, 0);
  smp_tcache_stats_t st;
  smp_tcache_stats(&st, NULL);
  cr_assert_eq(st.exited, 50);
}

static void *after_exit_frees(void *arg) {
  churn(arg); // give the thread a live cache first
  smp_tcache_thread_exit(smp_tcache_self); // as the key destructor would
  cr_assert_eq(smp_tcache_self->kind, SMP_TCACHE_DEAD);
  void *p = smp_tcache_alloc_slow(4); // a later destructor allocating
  cr_assert_not_null(p);
  cr_assert_not(smp_tcache_free_fast(p, 4), "the dead cache never keeps blocks");
  smp_tcache_free_slow(p, 4);
  return NULL;
}

Test(tcache, dead_thread_goes_straight_to_central) {
  pthread_t t;
  pthread_create(&t, NULL, churn, (void *)(uintptr_t)4);
  pthread_join(t, NULL);
  pthread_create(&t, NULL, after_exit_frees, (void *)(uintptr_t)4);
  pthread_join(t, NULL);
  cr_assert_eq(class_stats(4).held, 0);
}

// Debug mode: a cache created then keeps nothing, so every free reaches its span at once. Read
// while the thread still lives (its exit flushes any cache, so a check after it proves nothing).
static void *churn_and_count(void *arg) {
  cycle(6, 40);
  uint64_t *out = arg;
  out[0] = smp_load_relaxed(&smp_tcache_self->bins[6].count);
  out[1] = class_stats(6).cached;
  return NULL;
}

Test(tcache, debug_mode_caches_nothing) {
  smp_options.debug = true; // caches created from now on have capacity 0
  uint64_t kept[2] = {UINT64_MAX, UINT64_MAX}; // its bin's count, and the statistics' figure
  pthread_t t;
  pthread_create(&t, NULL, churn_and_count, kept);
  pthread_join(t, NULL);
  smp_options.debug = false;
  cr_assert_eq(kept[0], 0, "the thread's cache kept %llu blocks", (unsigned long long)kept[0]);
  cr_assert_eq(kept[1], 0, "the statistics count %llu cached", (unsigned long long)kept[1]);
  cr_assert_eq(class_stats(6).held, 0);
}

static pthread_barrier_t ready, done;
static void *hold_cached(void *arg) {
  (void)arg;
  cycle(14, 20);
  pthread_barrier_wait(&ready);
  pthread_barrier_wait(&done);
  return NULL;
}

Test(tcache, fork_child_adopts_other_threads_caches) {
  pthread_barrier_init(&ready, NULL, 2);
  pthread_barrier_init(&done, NULL, 2);
  pthread_t t;
  pthread_create(&t, NULL, hold_cached, NULL);
  pthread_barrier_wait(&ready);
  cr_assert_gt(class_stats(14).cached, 0);
  pid_t pid = fork();
  if (pid == 0) // child: the atfork handler (init.c) flushed the other thread's cache
    _exit(class_stats(14).cached == 0 && class_stats(14).held == 0 ? 0 : 1);
  int status;
  waitpid(pid, &status, 0);
  pthread_barrier_wait(&done);
  pthread_join(t, NULL);
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child saw orphaned blocks");
}

// smp_tcache_holds: finds a block in this thread's cache and in another live thread's, never a
// block a user holds.
static pthread_barrier_t held, checked;
static void *hold_one(void *arg) {
  void **slot = arg;
  *slot = alloc(7);
  release(*slot, 7); // now in this thread's cache
  pthread_barrier_wait(&held);
  pthread_barrier_wait(&checked);
  return NULL;
}

Test(tcache, holds_finds_cached_blocks_of_any_thread) {
  unsigned cls = 7;
  void *mine = alloc(cls), *live = alloc(cls);
  cr_assert_not(smp_tcache_holds(cls, mine), "a block with its user is not in a cache");
  release(mine, cls);
  cr_assert(smp_tcache_holds(cls, mine), "in this thread's cache");
  cr_assert_not(smp_tcache_holds(cls, live));
  void *theirs = NULL;
  pthread_barrier_init(&held, NULL, 2);
  pthread_barrier_init(&checked, NULL, 2);
  pthread_t t;
  pthread_create(&t, NULL, hold_one, &theirs);
  pthread_barrier_wait(&held);
  cr_assert(smp_tcache_holds(cls, theirs), "in the other thread's cache");
  pthread_barrier_wait(&checked);
  pthread_join(t, NULL);
  cr_assert_not(smp_tcache_holds(cls, theirs), "its cache was flushed when it exited");
  release(live, cls);
}

// A fork at any instant of a flush: the child adopts the bin of the flushing thread, which must
// hold each block at most once. A thread keeps its bin of class cls full and flushing (the
// oldest batch out, the rest moved down) while the main thread forks; each child allocates
// blocks of cls (its adopted blocks among them) and checks they are distinct. Before the fix
// the bin kept its old count while its slots moved, and a child forked then adopted copies:
// "double free" from the flush, or the same block twice.
static _Atomic bool flushing_stop;
static void *keep_flushing(void *arg) {
  unsigned cls = (unsigned)(uintptr_t)arg, n = 3 * smp_class_info[cls].cache_cap;
  void *p[3 * 64];
  while (!atomic_load_explicit(&flushing_stop, memory_order_relaxed)) {
    for (unsigned i = 0; i < n; i++) p[i] = alloc(cls);
    for (unsigned i = 0; i < n; i++) release(p[i], cls);
  }
  return NULL;
}

static int distinct_in_child(unsigned cls) {
  enum { N = 512 };
  static void *p[N];
  for (unsigned i = 0; i < N; i++) {
    p[i] = alloc(cls);
    for (unsigned j = 0; j < i; j++)
      if (p[j] == p[i]) return 1;
  }
  for (unsigned i = 0; i < N; i++) release(p[i], cls);
  return 0;
}

Test(tcache, fork_during_a_flush_leaves_no_duplicate, .timeout = 60) {
  unsigned cls = 5; // 80 bytes: a bin of 64, flushed 32 at a time
  cr_assert_eq(smp_class_info[cls].cache_cap, 64);
  atomic_store(&flushing_stop, false);
  pthread_t t;
  pthread_create(&t, NULL, keep_flushing, (void *)(uintptr_t)cls);
  int bad = 0;
  for (int i = 0; i < 1500 && !bad; i++) {
    pid_t pid = fork();
    if (pid == 0) _exit(distinct_in_child(cls));
    int status;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) bad = i + 1;
  }
  atomic_store(&flushing_stop, true);
  pthread_join(t, NULL);
  cr_assert_eq(bad, 0, "fork %d: the child saw a block twice (or aborted: status above)", bad);
}
