// stress_rseq: make rseq critical sections restart, and prove no block is lost or handed out
// twice. Workers (default 4 per CPU, more threads than CPUs) churn small blocks through a
// working set and hand some to a neighbour (remote frees); meanwhile a mover thread keeps
// moving workers between CPUs with sched_setaffinity, and a signaller sends a storm of
// signals to them. Checks: every block handed out goes into a registry of live blocks, and one
// that is already there (handed out again while live: a sequence that committed twice, or a
// slot read after its commit) fails the run at once; every block carries a pattern derived from
// its pointer, size and owner tag, checked before free, so a block two owners write is caught
// too; at the end the registry is empty and the allocator's own bytes in use are back to the
// start (none lost). In per-CPU mode the report must show restarts (that the test did its job).
// A trimmer thread calls malloc_trim(0) all along, so caches are drained (freeze, membarrier
// fence, flush, unfreeze) while their CPUs use them. -m nofence also installs a seccomp filter
// that makes membarrier fail after start-up: a drain must then give up, not guess.
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <sys/syscall.h>

#include "stress_common.h"

#define SLOTS 64
#define HANDOFF 256

typedef struct worker {
  pthread_t thread;
  _Atomic pid_t tid;
  unsigned id;
  uint64_t allocs, frees;
  stress_queue_t inbox; // blocks handed to this worker by the previous one
  struct worker *next;
} worker_t;

static stress_args_t args = {.threads = 0, .iters = 0, .seconds = 3.0, .seed = 7};
static _Atomic bool stop;
static _Atomic uint64_t signals_taken;

static stress_budget_t budget;

// ---- the registry of live blocks: 256 shards, each a lock and a short array --------------

#define LIVE_SHARDS 256
#define LIVE_PER_SHARD 512 // about 2,600 blocks live at once over 256 shards: ~10 each

typedef struct live_shard {
  pthread_mutex_t lock;
  unsigned count;
  void *p[LIVE_PER_SHARD];
} live_shard_t;
static live_shard_t live[LIVE_SHARDS];

static live_shard_t *shard_of(const void *p) {
  return &live[stress_mix64((uint64_t)(uintptr_t)p) % LIVE_SHARDS];
}

// A block just handed out: it must not be live already.
static void live_add(const char *where, void *p) {
  live_shard_t *s = shard_of(p);
  pthread_mutex_lock(&s->lock);
  for (unsigned i = 0; i < s->count; i++)
    if (s->p[i] == p) stress_fail("%s: block %p handed out while it is still live", where, p);
  if (s->count == LIVE_PER_SHARD) stress_fail("live registry shard full");
  s->p[s->count++] = p;
  pthread_mutex_unlock(&s->lock);
}

// A block about to be freed: it must be live (else the test lost track of it).
static void live_remove(const char *where, void *p) {
  live_shard_t *s = shard_of(p);
  pthread_mutex_lock(&s->lock);
  unsigned i = 0;
  while (i < s->count && s->p[i] != p) i++;
  if (i == s->count) stress_fail("%s: block %p freed but not live", where, p);
  s->p[i] = s->p[--s->count];
  pthread_mutex_unlock(&s->lock);
}

static void *live_malloc(const char *where, size_t size, uint64_t tag) {
  void *p = stress_malloc(where, size, tag);
  live_add(where, p);
  return p;
}

static void live_free(const char *where, void *p, size_t size, uint64_t tag) {
  live_remove(where, p);
  stress_free(where, p, size, tag);
}

static void on_signal(int sig) {
  (void)sig;
  atomic_fetch_add_explicit(&signals_taken, 1, memory_order_relaxed);
}

static void *work(void *arg) {
  worker_t *w = arg;
  atomic_store(&w->tid, (pid_t)syscall(SYS_gettid));
  stress_rng_t rng;
  stress_rng_seed(&rng, args.seed * 977 + w->id);
  void *slot[SLOTS] = {0};
  size_t size[SLOTS] = {0};
  uint64_t tag = 0x5a5a0000ull + w->id;
  for (uint64_t i = 0; !atomic_load_explicit(&stop, memory_order_relaxed); i++) {
    unsigned k = (unsigned)stress_rng_below(&rng, SLOTS);
    if (slot[k]) {
      if (stress_rng_chance(&rng, 1, 4)) { // hand it on: the neighbour frees it
        stress_item_t it = {slot[k], size[k], tag};
        if (stress_queue_push(&w->next->inbox, &it, 1, true) == 0) {
          live_free("rseq: local", slot[k], size[k], tag);
          w->frees++;
        }
      } else {
        live_free("rseq: local", slot[k], size[k], tag);
        w->frees++;
      }
    }
    // Mostly four small classes, so blocks are reused (and drained) often; sometimes any size.
    size[k] = stress_rng_chance(&rng, 7, 8) ? 32 + 16 * (size_t)stress_rng_below(&rng, 4)
                                             : (size_t)stress_rng_log(&rng, 1, 2048);
    slot[k] = live_malloc("rseq: new", size[k], tag);
    w->allocs++;
    stress_item_t in[8];
    size_t n = stress_queue_pop(&w->inbox, in, 8, true);
    for (size_t j = 0; j < n; j++) {
      live_free("rseq: handed over", in[j].p, in[j].size, in[j].tag);
      w->frees++;
    }
  }
  for (unsigned k = 0; k < SLOTS; k++)
    if (slot[k]) live_free("rseq: at exit", slot[k], size[k], tag), w->frees++;
  return NULL;
}

static worker_t *workers;

// Move workers between CPUs: each step pins one worker to one allowed CPU, or unpins it.
static void *mover(void *arg) {
  (void)arg;
  cpu_set_t allowed;
  sched_getaffinity(0, sizeof allowed, &allowed);
  int cpus[CPU_SETSIZE], ncpu = 0;
  for (int c = 0; c < CPU_SETSIZE; c++)
    if (CPU_ISSET(c, &allowed)) cpus[ncpu++] = c;
  stress_rng_t rng;
  stress_rng_seed(&rng, args.seed ^ 0xabcdef);
  while (!atomic_load(&stop)) {
    worker_t *w = &workers[stress_rng_below(&rng, args.threads)];
    pid_t tid = atomic_load(&w->tid);
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpus[stress_rng_below(&rng, (uint64_t)ncpu)], &one);
    if (tid) sched_setaffinity(tid, sizeof one, stress_rng_chance(&rng, 1, 4) ? &allowed : &one);
    usleep(200);
  }
  return NULL;
}

static _Atomic uint64_t trims;

static void *trimmer(void *arg) {
  (void)arg;
  while (!atomic_load(&stop)) {
    malloc_trim(0);
    atomic_fetch_add(&trims, 1);
    sched_yield();
  }
  return NULL;
}

// From now on membarrier fails with EPERM in this process (no_new_privs: no privilege needed).
static void *signaller(void *arg) {
  (void)arg;
  stress_rng_t rng;
  stress_rng_seed(&rng, args.seed ^ 0x1234);
  while (!atomic_load(&stop)) {
    worker_t *w = &workers[stress_rng_below(&rng, args.threads)];
    if (atomic_load(&w->tid)) pthread_kill(w->thread, SIGUSR1);
    for (volatile int spin = 0; spin < 2000; spin++) {
    }
  }
  return NULL;
}

int main(int argc, char **argv) {
  args.threads = 4 * (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
  stress_args_parse(&args, "stress_rseq",
                    "-t workers (default 4 per CPU), -s seconds; -m quiet: no mover/signaller/"
                    "trimmer; -m nofence: membarrier blocked by seccomp",
                    argc, argv);
  stress_require_smpalloc();
  bool storm = args.mode == NULL || strcmp(args.mode, "quiet") != 0;

  if (args.mode && strcmp(args.mode, "nofence") == 0) stress_block_membarrier();
  double started = stress_now();
  budget = stress_budget(0, args.seconds);
  struct sigaction sa = {.sa_handler = on_signal, .sa_flags = SA_RESTART};
  sigaction(SIGUSR1, &sa, NULL);
  stress_heap_t before, after;
  stress_heap_read(&before);

  for (unsigned i = 0; i < LIVE_SHARDS; i++) pthread_mutex_init(&live[i].lock, NULL);
  workers = calloc(args.threads, sizeof *workers);
  for (unsigned i = 0; i < args.threads; i++) {
    workers[i].id = i;
    workers[i].next = &workers[(i + 1) % args.threads];
    stress_queue_init(&workers[i].inbox, HANDOFF, sizeof(stress_item_t));
  }
  for (unsigned i = 0; i < args.threads; i++) stress_thread_start(&workers[i].thread, work, &workers[i]);
  pthread_t mv, sg, tr;
  if (storm) {
    stress_thread_start(&mv, mover, NULL);
    stress_thread_start(&sg, signaller, NULL);
    stress_thread_start(&tr, trimmer, NULL);
  }
  while (!stress_budget_expired(&budget)) usleep(10000);
  atomic_store(&stop, true);
  if (storm) {
    stress_thread_join(mv);
    stress_thread_join(sg);
    stress_thread_join(tr);
  }
  for (unsigned i = 0; i < args.threads; i++) stress_thread_join(workers[i].thread);
  uint64_t allocs = 0, frees = 0;
  for (unsigned i = 0; i < args.threads; i++) { // whatever is still in an inbox is freed now
    stress_item_t it;
    while (stress_queue_pop(&workers[i].inbox, &it, 1, true) == 1) {
      live_free("rseq: left in inbox", it.p, it.size, it.tag);
      frees++;
    }
    allocs += workers[i].allocs;
    frees += workers[i].frees;
  }
  for (unsigned i = 0; i < args.threads; i++) stress_queue_destroy(&workers[i].inbox);
  free(workers);
  for (unsigned i = 0; i < LIVE_SHARDS; i++)
    if (live[i].count) stress_fail("%u blocks never freed (the test lost them)", live[i].count);
  stress_heap_read(&after);
  if (args.verbose) {
    stress_heap_print("before", &before);
    stress_heap_print("after", &after);
    fprintf(stderr, "stress_rseq: hits %llu misses %llu restarts %llu, %llu signals, %llu trims\n",
            (unsigned long long)after.hits, (unsigned long long)after.misses,
            (unsigned long long)after.restarts, (unsigned long long)atomic_load(&signals_taken),
            (unsigned long long)atomic_load(&trims));
  }
  if (after.in_use > before.in_use + (64 << 10))
    stress_fail("%zu bytes in use at the end, %zu at the start", after.in_use, before.in_use);
  if (!after.per_thread && storm && after.restarts == before.restarts)
    stress_fail("no rseq restart happened: the test did not exercise the abort path");
  stress_ok(allocs + frees, args.threads, started);
  return 0;
}
