// What a deferred free costs the thread that defers, per call, with 2 threads deferring at once
// (liburcu memb): smp_free_rcu against call_rcu with a callback per object (the object carries
// its rcu_head) and defer_rcu. Each thread allocates 64-byte blocks, 1024 at a time, and defers
// them: "call alone" is the time of the deferrals per call (what the 10 ns bounds),
// "malloc + call" the whole loop's (allocation included: with frees deferred, malloc finds its
// caches empty and takes fresh pages, the same for all three). free in place of the deferral is
// shown for reference. Medians of 5 runs. Then the reclamation
// latency: one thread defers a block every 10 us for 2 s while the main thread reads, every
// millisecond, how long the oldest block still pending has waited (smp_rcu_stats_get's
// oldest_ms): the 50th and 99th percentiles and the most of those samples bound the latency of
// the blocks from above. Run: build-bench/bench/free_rcu_cost [calls per thread].
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <urcu.h>
#include <urcu/urcu-memb.h>

#include "smpalloc.h"
#include "smpalloc_rcu.h"

typedef struct node {
  struct rcu_head head;
  char payload[48];
} node_t;

static long calls = 2000000;
enum { THREADS = 2, RUNS = 5 };

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void free_node(struct rcu_head *h) { free(h); }
static void free_plain(void *p) { free(p); }

enum { CHUNK = 1024 };

// One thread's loop: blocks allocated CHUNK at a time, untimed, then deferred, timed; the whole
// loop is timed too. Returns {deferral alone, malloc + deferral} in ns per call.
static void *run(void *arg) {
  int mode = (int)(long)arg;
  rcu_register_thread();
  if (mode == 3) rcu_defer_register_thread();
  node_t *chunk[CHUNK];
  double t0 = now(), deferring = 0;
  for (long i = 0; i < calls; i += CHUNK) {
    for (int k = 0; k < CHUNK; k++) {
      chunk[k] = malloc(sizeof *chunk[k]);
      chunk[k]->payload[0] = (char)k;
    }
    double d0 = now();
    for (int k = 0; k < CHUNK; k++) {
      node_t *n = chunk[k];
      switch (mode) {
      case 0: free(n); break; // reference: no deferral
      case 1: smp_free_rcu(n); break;
      case 2: call_rcu(&n->head, free_node); break;
      case 3: defer_rcu(free_plain, n); break;
      }
    }
    deferring += now() - d0;
  }
  double *ns = malloc(2 * sizeof *ns);
  long done = (calls + CHUNK - 1) / CHUNK * CHUNK;
  ns[0] = deferring / (double)done * 1e9;
  ns[1] = (now() - t0) / (double)done * 1e9;
  if (mode == 3) rcu_defer_unregister_thread();
  rcu_unregister_thread();
  return ns;
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static _Atomic int latency_stop;
static void *defer_slowly(void *arg) {
  (void)arg;
  rcu_register_thread();
  struct timespec pause = {0, 10000};
  while (!latency_stop) {
    smp_free_rcu(malloc(64));
    nanosleep(&pause, NULL);
  }
  rcu_unregister_thread();
  return NULL;
}

static void latency(void) {
  enum { SAMPLES = 2000 };
  static double age[SAMPLES];
  pthread_t t;
  pthread_create(&t, NULL, defer_slowly, NULL);
  struct timespec ms = {0, 1000000};
  for (int i = 0; i < SAMPLES; i++) {
    nanosleep(&ms, NULL);
    smp_rcu_stats_t s = {.version = SMP_RCU_STATS_VERSION, .size = sizeof s};
    smp_rcu_stats_get(&s);
    age[i] = (double)s.oldest_ms;
  }
  latency_stop = 1;
  pthread_join(t, NULL);
  qsort(age, SAMPLES, sizeof age[0], by_value);
  printf("reclamation (memb, a block every 10 us): oldest pending p50 %.0f ms, p99 %.0f ms, "
         "most %.0f ms (%d samples, 1 ms apart)\n",
         age[SAMPLES / 2], age[SAMPLES * 99 / 100], age[SAMPLES - 1], SAMPLES);
}

int main(int argc, char **argv) {
  if (argc > 1) calls = atol(argv[1]);
  const char *names[] = {"malloc+free (reference)", "smp_free_rcu", "call_rcu per object",
                         "defer_rcu"};
  double med[2][4][RUNS];
  for (int r = 0; r < RUNS; r++)
    for (int mode = 0; mode < 4; mode++) { // alternating, each run
      pthread_t t[THREADS];
      double sum[2] = {0, 0};
      for (int i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, run, (void *)(long)mode);
      for (int i = 0; i < THREADS; i++) {
        void *v;
        pthread_join(t[i], &v);
        sum[0] += ((double *)v)[0];
        sum[1] += ((double *)v)[1];
        free(v);
      }
      med[0][mode][r] = sum[0] / THREADS;
      med[1][mode][r] = sum[1] / THREADS;
      smp_rcu_barrier();
      rcu_barrier();
    }
  printf("%-26s %12s %16s   (medians of %d runs, %d threads, %ld calls each)\n", "", "call alone",
         "malloc + call", RUNS, THREADS, calls);
  for (int mode = 0; mode < 4; mode++) {
    qsort(med[0][mode], RUNS, sizeof(double), by_value);
    qsort(med[1][mode], RUNS, sizeof(double), by_value);
    printf("%-26s %9.1f ns %13.1f ns\n", names[mode], med[0][mode][RUNS / 2],
           med[1][mode][RUNS / 2]);
  }
  latency();
  return 0;
}
