// Layer: platform (Linux). mmap-backed memory, futex-backed pthread mutexes, auxv facts.
// Aligned reservations over-map by the alignment (inaccessible, so not charged against a strict
// commit limit) and unmap the excess head and tail, so the result is one mapping with no guard
// gaps. MADV_DONTNEED purges by default because it makes the pages read as zero at once, which
// the page heap relies on for calloc; MADV_FREE (smp_os_purge_lazy) is the purge:free option.
// Fault injection (SMP_FAULT_INJECT=1 only): each map/map_aligned/remap/purge first asks
// fault_inject whether to fail; map_aligned counts as one map however many mmaps it makes.
// Without the switch the check is the constant false and no code is generated for it.
// Shared state and its orders: the fault plan's counters (relaxed, statistics); smp_event_t's
// word (exchange with release on signal, exchange with acquire on wait, before and after the
// sleep: a wait that consumed a signal sees what the signaller wrote before it); a fork
// child's forked_alone/forked_by (forked_by is written before the child has a second thread and
// published to it by pthread_create; forked_alone is a relaxed flag no data depends on).
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#if __has_include(<sys/single_threaded.h>)
#include <sys/single_threaded.h>
#define SMP_HAVE_SINGLE_THREADED 1
#endif
#include <time.h>
#include <unistd.h>

#include "asan.h"
#include "atomic.h"
#include "os.h"

extern char **environ;

// Written at first use, possibly by several threads at once, all with the same value: relaxed
// atomic, since a plain variable would be a data race (ThreadSanitizer reports it).
static _Atomic size_t os_page;

#if SMP_FAULT_INJECT
// The plan (written by smp_os_fault_set) and the counters; every access is relaxed: a plan is
// installed while the test is quiet, and the counters are statistics.
static _Atomic uint32_t fault_kinds;     // mask of kinds that may fail; 0 while a plan changes
static _Atomic uint64_t fault_countdown; // the countdown-th eligible call fails; 0: none
static _Atomic uint32_t fault_rate;      // failures per million eligible calls
static _Atomic uint64_t fault_rng;       // xorshift64 state, never 0
static _Atomic uint64_t fault_calls[SMP_OS_FAULT_KINDS], fault_faults[SMP_OS_FAULT_KINDS];
static _Atomic uint64_t fault_unmaps;

void smp_os_fault_set(unsigned kinds, uint64_t nth, uint32_t per_million, uint64_t seed) {
  smp_store_relaxed(&fault_kinds, 0);
  for (unsigned k = 0; k < SMP_OS_FAULT_KINDS; k++) {
    smp_store_relaxed(&fault_calls[k], 0);
    smp_store_relaxed(&fault_faults[k], 0);
  }
  smp_store_relaxed(&fault_unmaps, 0);
  smp_store_relaxed(&fault_countdown, nth);
  smp_store_relaxed(&fault_rate, per_million);
  smp_store_relaxed(&fault_rng, seed ? seed : 0x2545f4914f6cdd1dull);
  smp_store_relaxed(&fault_kinds, kinds & SMP_OS_FAULT_ALL);
}

void smp_os_fault_counts(smp_os_fault_counts_t *out) {
  for (unsigned k = 0; k < SMP_OS_FAULT_KINDS; k++) {
    out->calls[k] = smp_load_relaxed(&fault_calls[k]);
    out->faults[k] = smp_load_relaxed(&fault_faults[k]);
  }
  out->unmaps = smp_load_relaxed(&fault_unmaps);
}

// Count a call of kind; true if the plan makes it fail. The countdown and the generator are
// advanced with CAS loops, so concurrent callers each consume their own step.
static bool fault_inject(enum smp_os_fault_kind kind) {
  smp_fetch_add_relaxed(&fault_calls[kind], 1);
  if (!((smp_load_relaxed(&fault_kinds) >> kind) & 1)) return false;
  uint64_t c = smp_load_relaxed(&fault_countdown);
  while (c != 0 && !atomic_compare_exchange_weak_explicit(&fault_countdown, &c, c - 1,
                                                          memory_order_relaxed,
                                                          memory_order_relaxed)) {
  }
  bool fail = c == 1; // this call took the countdown from 1 to 0
  uint32_t rate = smp_load_relaxed(&fault_rate);
  if (!fail && rate != 0) {
    uint64_t x = smp_load_relaxed(&fault_rng), y;
    do {
      y = x ^ (x << 13);
      y ^= y >> 7;
      y ^= y << 17;
    } while (!atomic_compare_exchange_weak_explicit(&fault_rng, &x, y, memory_order_relaxed,
                                                    memory_order_relaxed));
    fail = y % 1000000 < rate;
  }
  if (fail) smp_fetch_add_relaxed(&fault_faults[kind], 1);
  return fail;
}
#define FAULT(kind) fault_inject(kind)
#define COUNT_UNMAP() smp_fetch_add_relaxed(&fault_unmaps, 1)
#else
#define FAULT(kind) false
#define COUNT_UNMAP() ((void)0)
#endif

size_t smp_os_page_size(void) {
  size_t page = smp_load_relaxed(&os_page);
  if (SMP_UNLIKELY(page == 0)) {
    unsigned long v = getauxval(AT_PAGESZ);
    page = v ? (size_t)v : 4096;
    smp_store_relaxed(&os_page, page);
  }
  return page;
}

static void *map_raw(size_t size) {
  int saved = errno; // the allocator reports ENOMEM itself; keep mmap's errno out of the way
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  errno = saved;
  return p == MAP_FAILED ? NULL : p;
}

static void unmap_raw(void *addr, size_t size) {
  int saved = errno;
  munmap(addr, size);
  errno = saved;
}

void *smp_os_map(size_t size) {
  if (FAULT(SMP_OS_FAULT_MAP)) return NULL;
  return map_raw(size);
}

void *smp_os_map_populated(size_t size) {
  if (FAULT(SMP_OS_FAULT_MAP)) return NULL;
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
                 -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

bool smp_os_retire(void *addr, size_t size) {
  void *p = mmap(addr, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE,
                 -1, 0);
  return p != MAP_FAILED;
}

void *smp_os_map_aligned(size_t size, size_t align) {
  if (FAULT(SMP_OS_FAULT_MAP)) return NULL;
  if (align <= smp_os_page_size()) return map_raw(size);
  if (size + align < size) return NULL;
  // Try the exact size first: the kernel often returns aligned addresses for large requests.
  char *p = map_raw(size);
  if (p == NULL) return NULL;
  if (((uintptr_t)p & (align - 1)) == 0) return p;
  unmap_raw(p, size);
  // Over-reserve without access (PROT_NONE is not charged against the commit limit, which
  // matters with vm.overcommit_memory=2), keep the aligned middle, then make it writable: the
  // charge is exactly size.
  int saved = errno;
  p = mmap(NULL, size + align, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    errno = saved;
    return NULL;
  }
  char *aligned = (char *)smp_align_up((uintptr_t)p, align);
  size_t head = (size_t)(aligned - p);
  size_t tail = align - head;
  if (head) unmap_raw(p, head);
  if (tail) unmap_raw(aligned + size, tail);
  if (mprotect(aligned, size, PROT_READ | PROT_WRITE) != 0) {
    unmap_raw(aligned, size);
    aligned = NULL;
  }
  errno = saved;
  return aligned;
}

void *smp_os_reserve(size_t size) {
  if (FAULT(SMP_OS_FAULT_MAP)) return NULL;
  int saved = errno;
  void *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  errno = saved;
  return p == MAP_FAILED ? NULL : p;
}

bool smp_os_commit(void *addr, size_t size) {
  if (FAULT(SMP_OS_FAULT_MAP)) return false;
  int saved = errno;
  bool ok = mprotect(addr, size, PROT_READ | PROT_WRITE) == 0;
  errno = saved;
  return ok;
}

void smp_os_unmap(void *addr, size_t size) {
  COUNT_UNMAP();
  smp_asan_unpoison(addr, size); // a later mapping there must not inherit the poison (asan.h)
  unmap_raw(addr, size);
}

// madvise(advice) over the whole OS pages inside [addr, addr+size), keeping errno.
static bool advise_pages(void *addr, size_t size, int advice) {
  size_t page = smp_os_page_size();
  uintptr_t lo = smp_align_up((uintptr_t)addr, page);
  uintptr_t hi = smp_align_down((uintptr_t)addr + size, page);
  if (hi <= lo) return true;
  int saved = errno;
  int rc = madvise((void *)lo, hi - lo, advice);
  errno = saved;
  return rc == 0;
}

bool smp_os_purge(void *addr, size_t size) {
  if (FAULT(SMP_OS_FAULT_PURGE)) return false;
  return advise_pages(addr, size, MADV_DONTNEED);
}

bool smp_os_purge_lazy(void *addr, size_t size) {
  if (FAULT(SMP_OS_FAULT_PURGE)) return false;
  return advise_pages(addr, size, MADV_FREE);
}

size_t smp_os_resident(void *addr, size_t size) {
  size_t page = smp_os_page_size(), resident = 0;
  unsigned char vec[1024]; // one byte per page: a 4 MiB chunk in one call at 4 KiB pages
  int saved = errno;
  for (size_t off = 0; off < size; off += sizeof vec * page) {
    size_t len = size - off < sizeof vec * page ? size - off : sizeof vec * page;
    if (mincore((char *)addr + off, len, vec) != 0) break;
    for (size_t i = 0; i < (len + page - 1) / page; i++) resident += (vec[i] & 1) * page;
  }
  errno = saved;
  return resident;
}

bool smp_os_no_hugepages(void *addr, size_t size) {
  return advise_pages(addr, size, MADV_NOHUGEPAGE);
}

unsigned smp_os_cpus_allowed(void) {
  uint64_t mask[128]; // 8192 CPUs; the kernel writes only its cpumask size
  int saved = errno;
  long bytes = syscall(SYS_sched_getaffinity, 0, sizeof mask, mask);
  errno = saved;
  unsigned n = 0;
  for (long i = 0; i < bytes / 8; i++) n += (unsigned)__builtin_popcountll(mask[i]);
  return n ? n : 1;
}

// A test's clock (smp_os_clock_set), or NULL; relaxed: a test sets it while quiet.
static uint64_t (*_Atomic test_clock)(void);

void smp_os_clock_set(uint64_t (*now_ms)(void)) { smp_store_relaxed(&test_clock, now_ms); }

uint64_t smp_os_now_ms(void) {
  uint64_t (*fake)(void) = smp_load_relaxed(&test_clock);
  if (SMP_UNLIKELY(fake != NULL)) return fake();
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void *smp_os_remap(void *addr, size_t old_size, size_t new_size, bool may_move) {
  if (FAULT(SMP_OS_FAULT_REMAP)) return NULL;
  int saved = errno;
  void *p = mremap(addr, old_size, new_size, may_move ? MREMAP_MAYMOVE : 0);
  errno = saved;
  return p == MAP_FAILED ? NULL : p;
}

uint64_t smp_os_random_seed(void) {
  uint64_t seed = 0x9e3779b97f4a7c15ull;
  const unsigned char *r = (const unsigned char *)getauxval(AT_RANDOM);
  if (r)
    for (int i = 0; i < 16; i++) seed = (seed ^ r[i]) * 0x100000001b3ull;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  seed ^= (uint64_t)ts.tv_nsec * 0xff51afd7ed558ccdull;
  seed ^= seed >> 33;
  return seed;
}

// The initial environment from /proc/self/environ, for the window before libc sets environ:
// a preinit_array function that allocates (as a sanitizer's runtime does) runs before libc's own
// initialisation. The value is copied into a static buffer, truncated to its size, and is valid
// until the next call; only start-up, which is serialised, gets here.
static const char *getenv_initial(const char *name) {
  static char value[1024];
  int saved = errno;
  int fd = open("/proc/self/environ", O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    errno = saved;
    return NULL;
  }
  // One pass over NUL-separated "NAME=value" entries: pos counts the bytes of the current entry
  // seen so far while it still matches "name="; in_value once it has matched.
  size_t nlen = strlen(name), pos = 0, vlen = 0;
  bool matching = true, in_value = false, found = false;
  char buf[512];
  ssize_t n;
  while (!found && (n = read(fd, buf, sizeof buf)) > 0) {
    for (ssize_t i = 0; i < n && !found; i++) {
      char c = buf[i];
      if (c == 0) {
        found = in_value;
        pos = 0, matching = true;
      } else if (in_value) {
        if (vlen < sizeof value - 1) value[vlen++] = c;
      } else if (matching) {
        matching = pos < nlen ? c == name[pos] : c == '=';
        in_value = matching && pos == nlen;
        pos++;
      }
    }
  }
  found |= in_value; // the last entry may lack its NUL
  close(fd);
  errno = saved;
  value[vlen] = 0;
  return found ? value : NULL;
}

// A fork child whose only thread is the one that forked: glibc leaves __libc_single_threaded
// false there, yet the child is as single-threaded as a new process. forked_by is written by
// smp_os_forked before the child can create a thread (pthread_create orders the write before
// that thread reads it); forked_alone is a flag no data depends on (relaxed), cleared by the
// first other thread that asks.
static _Atomic bool forked_alone;
static pthread_t forked_by;

void smp_os_forked(void) {
  forked_by = pthread_self();
  smp_store_relaxed(&forked_alone, true);
}

bool smp_os_multithreaded(void) {
#ifdef SMP_HAVE_SINGLE_THREADED
  // glibc 2.32 on: cleared by the first pthread_create (and never set again in 2.36).
  if (__libc_single_threaded) return false;
  if (SMP_UNLIKELY(smp_load_relaxed(&forked_alone))) {
    if (pthread_equal(pthread_self(), forked_by)) return false; // still alone in the fork child
    smp_store_relaxed(&forked_alone, false);
  }
  return true;
#else
  return false;
#endif
}

bool smp_os_secure(void) { return getauxval(AT_SECURE) != 0; }

const char *smp_os_getenv(const char *name) {
  if (environ == NULL) return getenv_initial(name);
  for (char **e = environ; *e; e++) {
    const char *s = *e, *n = name;
    while (*n && *s == *n) s++, n++;
    if (*n == 0 && *s == '=') return s + 1;
  }
  return NULL;
}

void smp_event_signal(smp_event_t *e) {
  if (atomic_exchange_explicit(&e->word, 1, memory_order_release) == 0) {
    int saved = errno;
    syscall(SYS_futex, &e->word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    errno = saved;
  }
}

bool smp_event_wait(smp_event_t *e, unsigned ms) {
  if (atomic_exchange_explicit(&e->word, 0, memory_order_acquire) != 0) return true;
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000};
  int saved = errno;
  // Sleeps unless the word became 1 meanwhile; wakes on a signal, the timeout, or a signal
  // handler (the background thread blocks them all): each ends the wait early at worst.
  syscall(SYS_futex, &e->word, FUTEX_WAIT_PRIVATE, 0, &ts, NULL, 0);
  errno = saved;
  // Whatever ended the sleep, a signal that came before this point is consumed here, with
  // acquire; one that comes after stays set.
  return atomic_exchange_explicit(&e->word, 0, memory_order_acquire) != 0;
}

void smp_lock_init(smp_lock_t *lock) { pthread_mutex_init(&lock->mutex, NULL); }
// Spin a little before sleeping: the locks guard short critical sections (a batch of a central
// list, a page-run split), and a holder running on another CPU releases within a microsecond
// or two, while a futex sleep and wake-up cost two system calls and two context switches. A
// holder that is preempted is not worth spinning for long: past the bound the waiter sleeps.
void smp_lock_acquire(smp_lock_t *lock) {
  if (SMP_LIKELY(pthread_mutex_trylock(&lock->mutex) == 0)) return;
  for (unsigned i = 0; i < SMP_LOCK_SPINS; i++) {
    smp_cpu_relax();
    if (pthread_mutex_trylock(&lock->mutex) == 0) return;
  }
  pthread_mutex_lock(&lock->mutex);
}
void smp_lock_release(smp_lock_t *lock) { pthread_mutex_unlock(&lock->mutex); }
bool smp_lock_try(smp_lock_t *lock) { return pthread_mutex_trylock(&lock->mutex) == 0; }

// Yields after the spins: a holder preempted on this CPU (2 cores, more threads) gets to run
// and finish. sched_yield is a plain system call, safe in a signal handler.
#define GATHER_YIELDS 8
bool smp_lock_gather(smp_lock_t *lock, smp_gather_t *g) {
  if (g == NULL) {
    smp_lock_acquire(lock);
    return true;
  }
  if (pthread_mutex_trylock(&lock->mutex) == 0) return true;
  for (unsigned i = 0; i < SMP_LOCK_SPINS; i++) {
    smp_cpu_relax();
    if (pthread_mutex_trylock(&lock->mutex) == 0) return true;
  }
  for (unsigned i = 0; i < GATHER_YIELDS; i++) {
    sched_yield(); // cannot fail on Linux: errno stays
    if (pthread_mutex_trylock(&lock->mutex) == 0) return true;
  }
  g->busy++;
  return false;
}
