// stress_event: smp_event_t (lib/platform/os.h), the background thread's wake-up, between two threads.
// A signaller writes a payload (a plain variable) and signals; the sleeper waits until a wait
// reports a consumed signal, then reads the payload, which must be the one written before that
// signal, and acknowledges it. Rounds alternate who comes first: the sleeper asleep in the futex
// before the signal, or the signal set before the sleeper waits. Checks:
//   - a wait that returns true sees the payload written before the signal (under
//     ThreadSanitizer, a wait that consumed the signal without acquiring it is a data race);
//   - no signal is lost: every signal ends a wait that reports it, well before the 10 s
//     timeout each wait allows (a lost one would leave the sleeper asleep the full timeout);
//   - a wait with no signal pending returns false (after its short timeout).
// Links the internal static build (smp_event_* are not exported) and allocates nothing through
// it, so it has no front end to check (tests/test_frontend.h). -n rounds (default 20000).
#include "stress_common.h"

#include "os.h"

static stress_args_t args = {.threads = 2, .iters = 20000, .seconds = 60, .seed = 1};
static smp_event_t event;
static uint64_t payload;               // plain: written by the signaller before each signal
static _Atomic uint64_t acked;         // the sleeper's acknowledgement (round number)
static _Atomic uint64_t asleep;        // rounds in which the sleeper is about to wait first
static _Atomic uint64_t slow_waits;    // waits that took more than 2 s to report a signal

static void *sleeper(void *arg) {
  (void)arg;
  for (uint64_t r = 1; r <= args.iters; r++) {
    if (r & 1) atomic_store_explicit(&asleep, r, memory_order_release);
    double t0 = stress_now();
    while (!smp_event_wait(&event, 10000)) {
    }
    if (stress_now() - t0 > 2.0) atomic_fetch_add(&slow_waits, 1);
    uint64_t seen = payload; // written before the signal this wait consumed
    if (seen != r)
      stress_fail("round %llu: the wait that consumed the signal read payload %llu",
                  (unsigned long long)r, (unsigned long long)seen);
    atomic_store_explicit(&acked, r, memory_order_release);
  }
  return NULL;
}

int main(int argc, char **argv) {
  stress_args_parse(&args, "stress_event", "-n rounds", argc, argv);
  double started = stress_now();
  if (smp_event_wait(&event, 20)) stress_fail("a wait with no signal reported one");
  smp_event_signal(&event);
  if (!smp_event_wait(&event, 10000)) stress_fail("a signal set before the wait was not reported");
  if (smp_event_wait(&event, 20)) stress_fail("a consumed signal was reported twice");
  pthread_t t;
  stress_thread_start(&t, sleeper, NULL);
  for (uint64_t r = 1; r <= args.iters; r++) {
    if (r & 1) { // let the sleeper get into the futex first (most rounds it does)
      while (atomic_load_explicit(&asleep, memory_order_acquire) != r) {
      }
      for (volatile int spin = 0; spin < 2000; spin++) {
      }
    }
    payload = r;
    smp_event_signal(&event);
    while (atomic_load_explicit(&acked, memory_order_acquire) != r) {
    }
  }
  stress_thread_join(t);
  if (atomic_load(&slow_waits))
    stress_fail("%llu signals woke no wait for 2 s (lost, then found by a later wait)",
                (unsigned long long)atomic_load(&slow_waits));
  stress_ok(args.iters, 2, started);
  return 0;
}
