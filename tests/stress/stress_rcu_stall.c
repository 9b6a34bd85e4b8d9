// stress_rcu_stall: the two ways smp_free_rcu (include/smpalloc_rcu.h) meets a grace period
// that does not come, under liburcu's QSBR flavour.
// 1. A stalled reader: a QSBR thread that stays online and never reports a quiescent state.
//    The main thread defers 64 KiB blocks until twice the rcu_stall bound (SMPALLOC_OPTIONS,
//    set by the test: 4m) waits. Checks: nothing is freed meanwhile (freed_blocks stays 0: a
//    free would come before its grace period), pending bytes count every block deferred, the
//    warning names the stall once (stderr is read back from a file), smp_stats_get's rcu_*
//    fields agree with smp_rcu_stats_get, and once the reader
//    reports a quiescent state, smp_rcu_barrier frees every block.
// 2. smp_free_rcu_mightsleep where nothing can be queued: five copies of the QSBR flavour
//    (distinct addresses, the same grace periods) hold the thread's four batch slots and ask
//    for a fifth, so smp_free_rcu_flavor returns ENOMEM without freeing, and
//    smp_free_rcu_mightsleep_flavor must wait for a grace period itself: a reader holds one
//    open (online, no quiescent state) and notes when it leaves; the call may not return
//    before.
// 3. A thread that defers a few blocks and then idles (alive, offline) while the main thread
//    goes on deferring: its partial batch must go once it is a second old, with one of the main
//    thread's batches (lib/api/rcu.c's stale_send), so that liburcu's own rcu_barrier (which
//    waits only for batches sent) leaves nothing pending (checked every 100 ms after 1.1 s, up
//    to 10 s).
#include "stress_common.h"

#include <fcntl.h>
#include <urcu-qsbr.h>

#include "smpalloc.h"
#include "smpalloc_rcu.h"

#define BLOCK (64 * 1024)

static _Atomic int reader_state; // 0: start, 1: online and stalled, 2: told to go, 3: left
static _Atomic int reader_left;  // set just before the reader reports its quiescent state

static void *stalled_reader(void *arg) {
  (void)arg;
  rcu_register_thread(); // online, and no quiescent state from now on
  atomic_store(&reader_state, 1);
  while (atomic_load(&reader_state) != 2) usleep(1000);
  atomic_store(&reader_left, 1);
  rcu_quiescent_state();
  rcu_unregister_thread();
  atomic_store(&reader_state, 3);
  return NULL;
}

static smp_rcu_stats_t stats(void) {
  smp_rcu_stats_t s = {.version = SMP_RCU_STATS_VERSION, .size = sizeof s};
  if (smp_rcu_stats_get(&s) != 0) stress_fail("smp_rcu_stats_get failed");
  return s;
}

static void start_reader(pthread_t *t) {
  atomic_store(&reader_state, 0);
  atomic_store(&reader_left, 0);
  stress_thread_start(t, stalled_reader, NULL);
  while (atomic_load(&reader_state) != 1) usleep(1000);
}

static void stalled_reader_case(size_t stall_bytes) {
  char path[] = "/tmp/stress_rcu_stall.XXXXXX";
  int log = mkstemp(path);
  if (log < 0) stress_fail("mkstemp: %s", strerror(errno));
  unlink(path);
  int saved_stderr = dup(STDERR_FILENO);
  dup2(log, STDERR_FILENO); // the warning goes here

  pthread_t t;
  start_reader(&t);
  size_t blocks = 2 * stall_bytes / BLOCK;
  for (size_t i = 0; i < blocks; i++) {
    void *p = malloc(BLOCK);
    if (p == NULL) stress_fail("malloc failed");
    memset(p, 0x5a, BLOCK);
    if (smp_free_rcu(p) != 0) stress_fail("smp_free_rcu failed: %s", strerror(errno));
    rcu_quiescent_state(); // this thread holds up no grace period: the reader alone does
  }
  smp_rcu_flush(); // the last partial batch too: everything is with call_rcu now
  usleep(200 * 1000); // time for a grace period, were one to end
  smp_rcu_stats_t s = stats();
  dup2(saved_stderr, STDERR_FILENO);
  close(saved_stderr);
  char text[4096] = {0};
  ssize_t n = pread(log, text, sizeof text - 1, 0);
  close(log);
  if (n < 0) stress_fail("cannot read the captured stderr");

  if (s.freed_blocks != 0)
    stress_fail("%llu blocks freed while a reader had not left (before their grace period)",
                (unsigned long long)s.freed_blocks);
  if (s.pending_blocks != blocks || s.pending_bytes < blocks * (uint64_t)BLOCK)
    stress_fail("pending %llu blocks, %llu bytes: want %zu blocks, at least %llu bytes",
                (unsigned long long)s.pending_blocks, (unsigned long long)s.pending_bytes,
                blocks, (unsigned long long)blocks * BLOCK);
  smp_stats_t all = {.version = SMP_STATS_VERSION, .size = sizeof all};
  if (smp_stats_get(&all) != 0 || all.rcu_pending_blocks != s.pending_blocks ||
      all.rcu_pending_bytes != s.pending_bytes || all.rcu_freed_blocks != 0)
    stress_fail("smp_stats_get: rcu pending %llu blocks, %llu bytes, %llu freed; "
                "smp_rcu_stats_get: %llu, %llu, 0", (unsigned long long)all.rcu_pending_blocks,
                (unsigned long long)all.rcu_pending_bytes,
                (unsigned long long)all.rcu_freed_blocks, (unsigned long long)s.pending_blocks,
                (unsigned long long)s.pending_bytes);
  const char *warning = strstr(text, "smp_free_rcu: more bytes than rcu_stall");
  if (warning == NULL) stress_fail("no stall warning on stderr (it had: \"%s\")", text);
  if (strstr(warning + 1, "smp_free_rcu: more bytes than rcu_stall"))
    stress_fail("the stall warning came more than once");

  atomic_store(&reader_state, 2);
  stress_thread_join(t);
  rcu_thread_offline(); // QSBR: a barrier waits for grace periods, so not from an online thread
  smp_rcu_barrier();
  rcu_thread_online();
  s = stats();
  if (s.pending_blocks != 0 || s.freed_blocks != blocks)
    stress_fail("after the reader left and a barrier: %llu pending, %llu of %zu freed",
                (unsigned long long)s.pending_blocks, (unsigned long long)s.freed_blocks, blocks);
  printf("stress_rcu_stall: stalled reader: %zu blocks (%zu KiB) held, warned once, then freed\n",
         blocks, blocks * BLOCK / 1024);
}

static void *release_later(void *arg) {
  (void)arg;
  usleep(300 * 1000);
  atomic_store(&reader_state, 2);
  return NULL;
}

static void mightsleep_case(void) {
  static struct rcu_flavor_struct copy[5];
  for (int i = 0; i < 5; i++) copy[i] = rcu_flavor;
  smp_rcu_stats_t before = stats();
  for (int i = 0; i < 4; i++) // one block in each of the four slots
    if (smp_free_rcu_flavor(malloc(64), &copy[i]) != 0) stress_fail("slot %d refused", i);
  void *p = malloc(64);
  errno = 0;
  if (smp_free_rcu_flavor(p, &copy[4]) != ENOMEM || errno != ENOMEM)
    stress_fail("a fifth flavour at once was queued (errno %d): the case needs ENOMEM", errno);
  if (stats().pending_blocks != before.pending_blocks + 4)
    stress_fail("the refused block counts as pending");

  pthread_t t;
  start_reader(&t);
  pthread_t go; // tells the reader to leave 300 ms from now; until then no grace period ends
  stress_thread_start(&go, release_later, NULL);
  errno = 4242;
  double start = stress_now();
  smp_free_rcu_mightsleep_flavor(p, &copy[4]); // waits for the reader
  double waited = stress_now() - start;
  if (!atomic_load(&reader_left))
    stress_fail("smp_free_rcu_mightsleep returned after %.0f ms while a reader that could see "
                "the block had not left", waited * 1e3);
  if (errno != 4242) stress_fail("smp_free_rcu_mightsleep changed errno to %d", errno);
  stress_thread_join(go);
  stress_thread_join(t);
  rcu_thread_offline(); // QSBR: a barrier waits for grace periods, so not from an online thread
  for (int i = 0; i < 4; i++) smp_rcu_barrier_flavor(&copy[i]);
  rcu_thread_online();
  printf("stress_rcu_stall: mightsleep: ENOMEM from smp_free_rcu, then a wait of %.0f ms for "
         "the reader\n", waited * 1e3);
}

static _Atomic int idler_state; // 1: deferred its blocks, 2: told to exit

static void *idler(void *arg) {
  (void)arg;
  rcu_register_thread();
  for (int i = 0; i < 10; i++)
    if (smp_free_rcu(malloc(64)) != 0) stress_fail("smp_free_rcu failed");
  rcu_thread_offline(); // idle from now on: holds up no grace period
  atomic_store(&idler_state, 1);
  while (atomic_load(&idler_state) != 2) usleep(1000);
  rcu_thread_online();
  rcu_unregister_thread();
  return NULL;
}

static void idle_thread_case(void) {
  pthread_t t;
  atomic_store(&idler_state, 0);
  stress_thread_start(&t, idler, NULL);
  while (atomic_load(&idler_state) != 1) usleep(1000);
  smp_rcu_stats_t before = stats();
  if (before.pending_blocks != 10) // the earlier cases' blocks are all freed
    stress_fail("the idle thread's 10 blocks: %llu pending, want 10",
                (unsigned long long)before.pending_blocks);
  // 32 blocks every 5 ms (a batch goes every 100 ms) for at least 1.1 s, then, after each
  // further 100 ms, the batches sent are waited for (liburcu's own rcu_barrier, which does not
  // take the idle thread's partial batch): done once nothing is pending. Up to 10 s, for a
  // loaded machine.
  double start = stress_now(), waited = 0;
  smp_rcu_stats_t s = stats();
  for (unsigned round = 1;; round++) {
    for (int i = 0; i < 32; i++)
      if (smp_free_rcu(malloc(64)) != 0) stress_fail("smp_free_rcu failed");
    rcu_quiescent_state();
    usleep(5000);
    waited = stress_now() - start;
    if (waited < 1.1 || round % 20 != 0) continue;
    smp_rcu_flush();
    rcu_barrier();
    s = stats();
    if (s.pending_blocks == 0 || waited > 10) break;
  }
  atomic_store(&idler_state, 2);
  stress_thread_join(t);
  if (s.pending_blocks != 0)
    stress_fail("%llu blocks still pending after %.1f s: the idle thread's partial batch did not "
                "go", (unsigned long long)s.pending_blocks, waited);
  printf("stress_rcu_stall: an idle thread's partial batch went while another deferred\n");
}

int main(int argc, char **argv) {
  stress_args_t args = {.threads = 1, .iters = 1, .seconds = 30, .seed = 1};
  stress_args_parse(&args, "stress_rcu_stall", "a stalled QSBR reader; mightsleep", argc, argv);
  stress_require_smpalloc();
  const char *options = getenv("SMPALLOC_OPTIONS");
  char value[32];
  if (!options || !test_option_last(options, "rcu_stall", value, sizeof value))
    stress_fail("SMPALLOC_OPTIONS must set rcu_stall (the test sets 4m)");
  size_t stall = (size_t)strtoull(value, NULL, 10) << (strchr(value, 'm') ? 20 : 0);
  if (stall == 0 || stall > (64u << 20)) stress_fail("rcu_stall:%s: want 1m..64m", value);
  rcu_register_thread();
  stalled_reader_case(stall);
  mightsleep_case();
  idle_thread_case();
  rcu_unregister_thread();
  return 0;
}
