// stress_rcu: RCU-deferred free (include/smpalloc_rcu.h) under one liburcu flavour (built three
// times: STRESS_RCU_MEMB, _QSBR, _BP). Reader threads look up nodes of a shared table inside
// read-side sections and check every byte of each node they see; updater threads replace nodes
// (rcu_xchg_pointer) and defer the old ones with smp_free_rcu, while allocating and freeing
// blocks of the nodes' size that they fill with a poison pattern, so that a node freed before
// its grace period ended is soon reused and overwritten: a reader then sees a node that is not
// whole and the test fails. Built with STRESS_RCU_EARLY (the defect: plain free instead of
// smp_free_rcu) it fails, which shows that it can. Each updater also calls smp_rcu_flush_all
// every 64 deferrals (and smp_rcu_barrier every 8192), taking the others' partial batches from
// under them. Then: smp_rcu_barrier
// from every updater at once, a fork with batches pending (the child allocates, defers and barriers on its own), and
// at the end every deferred block freed (smp_rcu_stats_get), and an exit with a batch pending.
// -m nofork leaves the fork out (for the AddressSanitizer build, which runs no fork test);
// -m nomembarrier makes the membarrier system call fail (seccomp) before the first deferral, so
// that the records' handshake runs its plain-Dekker form (an exchange per call).
#include "stress_common.h"

#if defined(STRESS_RCU_QSBR)
#include <urcu-qsbr.h>
#define FLAVOUR "qsbr"
#elif defined(STRESS_RCU_BP)
#include <urcu-bp.h>
#define FLAVOUR "bp"
#else
#include <urcu.h>
#define FLAVOUR "memb"
#endif
#include <signal.h>
#include <sys/wait.h>

#include "smpalloc.h"
#include "smpalloc_rcu.h"

#define SLOTS 256
#define NODE_WORDS 14 // a 128-byte node: magic, serial, 14 words of pattern
#define MAGIC 0x4c49564e4f44454bull
#define POISON 0xdeadbeefdeadbeefull

typedef struct node {
  uint64_t magic;
  uint64_t serial;
  uint64_t word[NODE_WORDS];
} node_t;

SMP_TYPE_DEFINE(M_EXIT, "stress_rcu_exit", "blocks deferred just before exit");
static node_t *slots[SLOTS]; // written by rcu_xchg_pointer, read by rcu_dereference (liburcu's atomics)
static stress_args_t args = {.threads = 4, .iters = 200000, .seconds = 3, .seed = 1, .mode = "all"};
static stress_budget_t budget;
static _Atomic bool stop;
static _Atomic uint64_t deferred, reads, serials, flushes;

static uint64_t pattern(uint64_t serial, unsigned i) { return stress_mix64(serial * 31 + i); }

static node_t *node_new(void) {
  node_t *n = malloc(sizeof *n);
  if (n == NULL) stress_fail("malloc of a node failed");
  n->serial = atomic_fetch_add(&serials, 1);
  for (unsigned i = 0; i < NODE_WORDS; i++) n->word[i] = pattern(n->serial, i);
  n->magic = MAGIC;
  return n;
}

static void node_check(const node_t *n) {
  uint64_t magic = n->magic, serial = n->serial;
  if (magic != MAGIC)
    stress_fail(FLAVOUR ": a reader saw a node with magic %llx (freed before its grace period?)",
                (unsigned long long)magic);
  for (unsigned i = 0; i < NODE_WORDS; i++)
    if (n->word[i] != pattern(serial, i))
      stress_fail(FLAVOUR ": node %llu word %u is %llx (freed before its grace period?)",
                  (unsigned long long)serial, i, (unsigned long long)n->word[i]);
}

static void *reader(void *arg) {
  stress_rng_t rng;
  stress_rng_seed(&rng, (uint64_t)(uintptr_t)arg);
#ifndef STRESS_RCU_BP
  rcu_register_thread();
#endif
  uint64_t n = 0;
  while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
    rcu_read_lock();
    for (int k = 0; k < 16; k++) {
      node_t *p = rcu_dereference(slots[stress_rng_below(&rng, SLOTS)]);
      if (p) node_check(p);
    }
    rcu_read_unlock();
#ifdef STRESS_RCU_QSBR
    rcu_quiescent_state();
#endif
    n++;
  }
#ifndef STRESS_RCU_BP
  rcu_unregister_thread();
#endif
  atomic_fetch_add(&reads, n);
  return NULL;
}

static void *updater(void *arg) {
  stress_rng_t rng;
  stress_rng_seed(&rng, (uint64_t)(uintptr_t)arg);
  void *churn[64] = {0};
#ifndef STRESS_RCU_BP
  rcu_register_thread(); // as liburcu asks of a thread that calls call_rcu (QSBR: online)
#endif
  for (uint64_t i = 0; stress_continue(&budget, i); i++) {
#ifdef STRESS_RCU_QSBR
    rcu_quiescent_state(); // an updater reads nothing: every iteration is a quiescent state
#endif
    node_t *fresh = node_new();
    node_t *old = rcu_xchg_pointer(&slots[stress_rng_below(&rng, SLOTS)], fresh);
    if (old) {
#ifdef STRESS_RCU_EARLY
      free(old); // the defect this test must catch
#else
      if (smp_free_rcu(old) != 0) stress_fail("smp_free_rcu failed: errno %d", errno);
#endif
      atomic_fetch_add(&deferred, 1);
    }
    // Blocks of the node's class, poisoned whole, so that a node freed early is overwritten.
    unsigned c = (unsigned)stress_rng_below(&rng, 64);
    free(churn[c]);
    churn[c] = malloc(sizeof(node_t));
    if (churn[c]) memset(churn[c], 0xef, sizeof(node_t));
    // The other updaters' partial batches taken from under them (lib/api/rcu.c's busy/steal
    // handshake), which a batch lost, sent twice or written after it went would show (the
    // count at the end, a double free, a reader's check); now and then a barrier, or only
    // this thread's own batch.
    if (i % 64 == 32 && smp_rcu_flush_all() != 0) stress_fail("smp_rcu_flush_all failed");
    if (i % 8192 == 0) smp_rcu_barrier();
    if (i % 5000 == 0) smp_rcu_flush();
    atomic_fetch_add_explicit(&flushes, i % 64 == 32, memory_order_relaxed);
  }
  for (unsigned c = 0; c < 64; c++) free(churn[c]);
  smp_rcu_barrier(); // from every updater at once
#ifndef STRESS_RCU_BP
  smp_rcu_flush(); // the thread's last partial batch, while it may still call call_rcu
  rcu_unregister_thread();
#endif
  return NULL;
}

// Forks again and again while the updaters defer (unless -m nofork): the fork handlers hold every
// record and the sent list's lock, so a child never inherits a lock held or a batch half
// written; each child defers a full batch and more, takes every partial batch
// (smp_rcu_flush_all) and finds its batches sent, under an alarm: a child that hangs is killed
// and fails the test.
static _Atomic bool updaters_done;
static _Atomic uint64_t forks;
static void *forker(void *arg) {
  (void)arg;
  while (!atomic_load(&updaters_done)) {
    call_rcu_before_fork();
    pid_t pid = fork();
    if (pid < 0) stress_fail("fork failed");
    if (pid == 0) {
      call_rcu_after_fork_child();
      alarm(10);
      smp_rcu_stats_t s0 = {.version = SMP_RCU_STATS_VERSION, .size = sizeof s0}, s = s0;
      if (smp_rcu_stats_get(&s0) != 0) _exit(5);
      for (int i = 0; i < 600; i++)
        if (smp_free_rcu(malloc(sizeof(node_t))) != 0) _exit(3);
      if (smp_rcu_flush_all() != 0) _exit(4);
      // No barrier: a grace period in the child would wait for readers it did not inherit.
      // Its 600 went as two batches at least (one full, one flushed).
      _exit(smp_rcu_stats_get(&s) == 0 && s.batches >= s0.batches + 2 ? 0 : 6);
    }
    call_rcu_after_fork_parent();
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
      stress_fail("a child forked while updaters deferred failed (status 0x%x%s)", status,
                  WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM ? ": hung" : "");
    atomic_fetch_add(&forks, 1);
    usleep(5000);
  }
  return NULL;
}

static void fork_with_pending(void) {
  for (int i = 0; i < 100; i++) { // a partly filled batch when the fork happens
    node_t *old = rcu_xchg_pointer(&slots[i], node_new());
    if (old && smp_free_rcu(old) == 0) atomic_fetch_add(&deferred, 1);
  }
  call_rcu_before_fork(); // liburcu's hooks, which any program that uses call_rcu owes a fork
  pid_t pid = fork();
  if (pid < 0) stress_fail("fork failed");
  if (pid > 0) call_rcu_after_fork_parent();
  if (pid == 0) { // the child defers and waits on its own
    call_rcu_after_fork_child();
    smp_rcu_stats_t s0 = {.version = SMP_RCU_STATS_VERSION, .size = sizeof s0}, s = s0;
    smp_rcu_stats_get(&s0); // the parent's counts, inherited
    for (int i = 0; i < 2000; i++) {
      node_t *n = node_new();
      if (smp_free_rcu(n) != 0) _exit(3);
    }
    smp_rcu_barrier(); // its own 2000 and the parent's pending ones, the child's copies
    smp_rcu_stats_get(&s);
    _exit(s.freed_blocks >= s0.freed_blocks + s0.pending_blocks + 2000 && s.pending_blocks == 0
              ? 0 : 4);
  }
  int status;
  if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
    stress_fail("the fork child failed (status 0x%x)", status);
}

int main(int argc, char **argv) {
  stress_args_parse(&args, "stress_rcu", "readers and updaters of an RCU table; -t updaters",
                    argc, argv);
  stress_require_smpalloc();
  budget = stress_budget(args.iters, args.seconds);
  if (strcmp(args.mode, "nomembarrier") == 0) stress_block_membarrier();
#ifndef STRESS_RCU_BP
  rcu_register_thread();
#endif
  for (int i = 0; i < SLOTS; i++) slots[i] = node_new();
#ifdef STRESS_RCU_QSBR
  rcu_thread_offline(); // the main thread only updates from here on
#endif
  unsigned nreaders = args.threads, nupdaters = args.threads;
  pthread_t r[64], u[64];
  for (unsigned i = 0; i < nreaders && i < 64; i++)
    pthread_create(&r[i], NULL, reader, (void *)(uintptr_t)(args.seed * 100 + i));
  for (unsigned i = 0; i < nupdaters && i < 64; i++)
    pthread_create(&u[i], NULL, updater, (void *)(uintptr_t)(args.seed * 1000 + i));
  pthread_t f;
  bool forking = strcmp(args.mode, "nofork") != 0;
  if (forking) pthread_create(&f, NULL, forker, NULL);
  for (unsigned i = 0; i < nupdaters && i < 64; i++) pthread_join(u[i], NULL);
  atomic_store(&updaters_done, true);
  if (forking) pthread_join(f, NULL);
  atomic_store(&stop, true);
  for (unsigned i = 0; i < nreaders && i < 64; i++) pthread_join(r[i], NULL);
  // Readers gone (a child cannot end a grace period that waits for a reader thread it did not
  // inherit), batches pending: fork.
  if (strcmp(args.mode, "nofork") != 0) fork_with_pending();
  smp_rcu_barrier();
  smp_rcu_stats_t s = {.version = SMP_RCU_STATS_VERSION, .size = sizeof s};
  if (smp_rcu_stats_get(&s) != 0) stress_fail("smp_rcu_stats_get failed");
#ifndef STRESS_RCU_EARLY
  if (s.pending_blocks != 0 || s.pending_bytes != 0 || s.freed_blocks != atomic_load(&deferred))
    stress_fail(FLAVOUR ": after the barrier: pending %llu blocks, %llu bytes; freed %llu of %llu",
                (unsigned long long)s.pending_blocks, (unsigned long long)s.pending_bytes,
                (unsigned long long)s.freed_blocks, (unsigned long long)atomic_load(&deferred));
#endif
  // The JSON and the report name the deferred frees.
  static char json[1 << 20];
  smp_stats_json(json, sizeof json);
  char want[96];
  snprintf(want, sizeof want, "\"freed_blocks\":%llu", (unsigned long long)s.freed_blocks);
  if (strstr(json, "\"rcu\":{") == NULL || strstr(json, want) == NULL)
    stress_fail(FLAVOUR ": smp_stats_json has no rcu member with %s", want);
  // Exit with batches pending, typed blocks among them (one batch sent, one partly filled):
  // freed or not, nothing may crash, and no type may be reported with blocks "still
  // allocated" (ctest fails the test on that line).
  for (int i = 0; i < 10; i++) smp_free_rcu(rcu_xchg_pointer(&slots[i], node_new()));
  for (int i = 0; i < 20; i++) {
    if (i == 10) smp_rcu_flush();
    if (smp_free_rcu(smp_malloc_type(64, M_EXIT, 0)) != 0) stress_fail("typed deferral failed");
  }
#ifdef STRESS_RCU_QSBR
  rcu_thread_online();
#endif
  printf("stress_rcu (" FLAVOUR "): %llu deferred, %llu read-side sections, %llu batches, %llu "
         "flushes of all and %llu forks meanwhile, ok\n", (unsigned long long)atomic_load(&deferred),
         (unsigned long long)atomic_load(&reads), (unsigned long long)s.batches,
         (unsigned long long)atomic_load(&flushes), (unsigned long long)atomic_load(&forks));
  return 0;
}
