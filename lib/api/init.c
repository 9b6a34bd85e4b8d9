// Layer: api. See init.h.
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "background.h"
#include "config.h"
#include "central.h"
#include "cpucache.h"
#include "frontend.h"
#include "hcache.h"
#include "heap.h"
#include "harden.h"
#include "init.h"
#include "large.h"
#include "options.h"
#include "prof.h"
#include "os.h"
#include "pageheap.h"
#include "report.h"
#include "sizeclass.h"
#include "span.h"
#include "tcache.h"
#include "types.h"
#if SMP_HAVE_URCU
#include "rcu.h"
#endif

_Atomic int smp_init_state;
// With stats:1, a private copy of stderr taken at start-up: programs such as the coreutils
// close stderr in an atexit handler, before the report at exit is written.
static int report_fd = STDERR_FILENO;

// RCU-deferred free's handlers (rcu.h) run inside these, so that the locks go in one order:
// after the malloc types' lock (whose reports call into it) and before every heap lock (which
// its threads may wait for).
static void fork_prepare(void) {
  smp_report_lock();
  smp_types_lock_fork();
#if SMP_HAVE_URCU
  smp_rcu_fork_prepare();
#endif
  smp_harden_lock_fork();
  smp_heapapi_lock_fork();
  smp_cpucache_lock_all();
  smp_heap_lock_all();
  smp_large_lock_all();
  smp_tcache_lock_all();
  smp_hcache_lock_fork();
}

static void unlock_all(void) {
  smp_hcache_unlock_fork();
  smp_tcache_unlock_all();
  smp_large_unlock_all();
  smp_heap_unlock_all();
  smp_cpucache_unlock_all();
  smp_heapapi_unlock_fork();
  smp_harden_unlock_fork();
}

static void fork_parent(void) {
  unlock_all();
#if SMP_HAVE_URCU
  smp_rcu_fork_parent();
#endif
  smp_types_unlock_fork();
  smp_report_unlock();
}

static void fork_child(void) {
  unlock_all(); // the child's only thread is the one that locked them
#if SMP_HAVE_URCU
  smp_rcu_fork_child();
#endif
  smp_types_unlock_fork();
  smp_report_unlock();
  smp_tcache_adopt_orphans();
  if (smp_prof_on) smp_prof_forked();
  if (smp_harden_on) smp_harden_forked();
  smp_os_forked();
  smp_background_forked();
}

void smp_init_slow(void) {
  int expected = 0;
  if (!atomic_compare_exchange_strong(&smp_init_state, &expected, 1)) {
    while (smp_load_acquire(&smp_init_state) != 2) sched_yield();
    return;
  }
  int saved_errno = errno; // start-up's system calls (open, read, fcntl, membarrier, rseq)
                           // must not show through the malloc call that ran it
  // Options name files (stats_file, leaks, prof): a set-user-ID program ignores them.
  smp_options_parse(smp_os_secure() ? NULL : smp_os_getenv("SMPALLOC_OPTIONS"));
  uint64_t seed = smp_os_random_seed();
  smp_span_init_keys(seed);
  smp_sizeclass_init(smp_options.cache_size);
  smp_types_init(seed); // after the classes: it tabulates their typed sizes
  smp_prof_init(); // before hardening, which its sampled blocks use
  smp_harden_init(seed);
  if (smp_harden_on) { // see harden.h; relaxed atomic stores: threads may be reading (alloc.h)
    // zero_free alone: malloc's table requests stay on the hit path; small_max still sends the
    // others to the route, and other heaps' requests (which test it) to hardened blocks.
    if (!smp_harden_free_only) __atomic_store_n(&smp_alloc_limits.table_max, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&smp_alloc_limits.small_max, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&smp_alloc_limits.typed_max, 0, __ATOMIC_RELAXED);
  }
  if (!smp_harden_fill) memcpy(smp_alloc_hit_magic, smp_class_magic, sizeof smp_alloc_hit_magic);
  if (smp_options.stats) {
    int fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 64);
    if (fd >= 0) report_fd = fd;
  }
  smp_frontend_select();
  pthread_key_t key;
  if (pthread_key_create(&key, smp_tcache_thread_exit) == 0) smp_tcache_set_exit_key((unsigned)key);
  if (pthread_key_create(&key, smp_hcache_thread_exit) == 0) smp_hcache_set_exit_key((unsigned)key);
  if (pthread_key_create(&key, smp_types_thread_exit) == 0) smp_types_set_exit_key((unsigned)key);
  smp_store_release(&smp_init_state, 2);
  smp_store_release(&smp_alloc_prof_route, smp_prof_on && !smp_harden_fill && !smp_harden_all);
  smp_report_signal_install(); // its reports read the heap: after it is ready
  pthread_atfork(fork_prepare, fork_parent, fork_child); // may malloc: the heap is ready
  errno = saved_errno;
}

#if SMP_INIT_AT_LOAD
__attribute__((constructor)) static void init_at_load(void) {
  smp_init_ensure();
  // A sanitizer runtime's sigaction refuses while its pre-init runs (it mallocs, so start-up may
  // run inside it); constructors come after every pre-init, so the stats_signal handler is in
  // place before main, not at some later slow path.
  if (smp_load_relaxed(&smp_report_signal_pending)) smp_report_signal_retry();
}
#endif

__attribute__((destructor)) static void report_at_exit(void) {
  if (smp_load_acquire(&smp_init_state) != 2) return;
  if (smp_harden_on) smp_harden_at_exit();
  smp_types_report_at_exit();
  if (smp_harden_on) smp_harden_report_leaks();
  if (smp_prof_on) smp_prof_at_exit();
  if (smp_options.stats) smp_report_print(report_fd, NULL);
}
