// Layer: platform. Memory from the OS, locks, and the few process facts the heap needs.
// Every mmap/munmap/madvise/mremap of the allocator goes through this file, so accounting and
// fault injection (SMP_FAULT_INJECT test builds) have one place to live. Nothing here allocates
// with malloc. Failures are reported as NULL/false with errno untouched; callers turn them into
// ENOMEM.
#ifndef SMP_OS_H
#define SMP_OS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compiler.h"
#include "config.h"

// Anonymous read-write memory of size bytes (a multiple of the OS page), or NULL.
void *smp_os_map(size_t size);
// Like smp_os_map, but the result is aligned to align (a power of two >= the OS page).
void *smp_os_map_aligned(size_t size, size_t align);
void smp_os_unmap(void *addr, size_t size);
// Like smp_os_map, with every page faulted in now (MAP_POPULATE): the emergency reserve.
void *smp_os_map_populated(size_t size);
// Replace [addr, addr+size) by an inaccessible reservation: its memory goes back to the OS, its
// addresses stay ours (a destroyed heap's chunks). false if the kernel refused.
bool smp_os_retire(void *addr, size_t size);
// Give the physical pages of [addr, addr+size) back; the range stays mapped and reads as zero.
// Only whole OS pages inside the range are released. Returns false if the kernel refused.
bool smp_os_purge(void *addr, size_t size);
// Like smp_os_purge with MADV_FREE: the kernel takes the pages only under memory pressure, and
// until then they keep their contents (so they do not read as zero). False if refused.
bool smp_os_purge_lazy(void *addr, size_t size);
// Bytes of [addr, addr+size) (page aligned) resident in memory, by mincore; 0 if refused.
size_t smp_os_resident(void *addr, size_t size);
// Forbid transparent huge pages in [addr, addr+size) (MADV_NOHUGEPAGE); false if refused.
bool smp_os_no_hugepages(void *addr, size_t size);
// CPUs this process may run on (its affinity mask: taskset, cpusets, containers), at least 1.
unsigned smp_os_cpus_allowed(void);
// Whether the process has (or had) a second thread, as the C library tracks it; false where it
// does not say (the background thread's auto mode then never starts it). In a fork child, false
// until a thread other than the one that forked asks (glibc does not reset its flag there).
bool smp_os_multithreaded(void);
// Fork child handler: the calling thread is the child's only one (see smp_os_multithreaded).
void smp_os_forked(void);
// Milliseconds of a monotonic clock with a resolution of a few ms: cheap enough for slow paths.
uint64_t smp_os_now_ms(void);
// Tests: smp_os_now_ms returns now_ms() from now on (NULL: the real clock again), so a test of
// decay, idleness or staleness steps time itself instead of sleeping through a window. Only
// slow paths read the clock; the cost when unset is one load and a predicted branch.
void smp_os_clock_set(uint64_t (*now_ms)(void));
// Address space that reads as zero and cannot be written: not charged against the commit limit
// (vm.overcommit_memory=2). smp_os_commit makes a part of it writable (and charged); false if
// the kernel refuses (commit limit reached).
void *smp_os_reserve(size_t size);
bool smp_os_commit(void *addr, size_t size);
// Resize a mapping; may move it if may_move. Returns the new address or NULL.
void *smp_os_remap(void *addr, size_t old_size, size_t new_size, bool may_move);
size_t smp_os_page_size(void);
// 16 bytes the kernel gave this process at exec (AT_RANDOM), mixed with the clock.
uint64_t smp_os_random_seed(void);
// The environment as the kernel passed it, without getenv (which may not be ready yet); before
// libc has set environ, read from /proc/self/environ. The result may not outlive the next call.
const char *smp_os_getenv(const char *name);
// Whether the process runs in secure-execution mode (set-user-ID or set-group-ID, or with
// capabilities gained at exec: AT_SECURE). There smpalloc reads none of its own variables, as
// secure_getenv would not: they name files it would create with the program's privileges.
bool smp_os_secure(void);

#if SMP_FAULT_INJECT
// Test builds only: which wrappers a fault plan may fail, and how each failure looks.
enum smp_os_fault_kind {
  SMP_OS_FAULT_MAP,   // smp_os_map, smp_os_map_aligned: NULL, nothing mapped
  SMP_OS_FAULT_REMAP, // smp_os_remap: NULL, the old mapping intact
  SMP_OS_FAULT_PURGE, // smp_os_purge: false, the pages untouched (still dirty)
  SMP_OS_FAULT_KINDS
};
#define SMP_OS_FAULT_ALL ((1u << SMP_OS_FAULT_KINDS) - 1)

// Install a fault plan and zero the counters. kinds is a mask of (1u << kind) naming the
// wrappers that may fail (smp_os_unmap never does). A call of those kinds fails if it is the
// nth such call from now (nth 0: none; it fires once), or else with probability
// per_million / 10^6, drawn from a xorshift64 generator seeded with seed (0 picks a fixed
// seed). A failing wrapper does not reach the kernel and returns what the kernel's refusal
// returns (see the kinds above), errno untouched. kinds 0 turns injection off. Thread-safe (all
// state is relaxed atomics), but a plan installed while other threads call the wrappers takes
// effect for them at some point during the call; tests install plans while quiet.
void smp_os_fault_set(unsigned kinds, uint64_t nth, uint32_t per_million, uint64_t seed);

typedef struct smp_os_fault_counts {
  uint64_t calls[SMP_OS_FAULT_KINDS];  // wrapper calls of each kind since the last set
  uint64_t faults[SMP_OS_FAULT_KINDS]; // of which were made to fail
  uint64_t unmaps;                     // smp_os_unmap calls since the last set (never fail)
} smp_os_fault_counts_t;
// Read the counters since the last smp_os_fault_set, by kind: every call of the wrapper whether
// or not its kind was in the plan, and the failures injected. Safe while other threads run (each counter is read once, relaxed); the
// set is a consistent snapshot only when they are quiet.
void smp_os_fault_counts(smp_os_fault_counts_t *out);
#endif

// A mutual-exclusion lock for the rare paths (page heap, central lists, registries): it spins
// up to SMP_LOCK_SPINS pauses while the lock is busy, then sleeps.
#define SMP_LOCK_SPINS 128
typedef struct smp_lock {
  pthread_mutex_t mutex;
} smp_lock_t;
#define SMP_LOCK_INIT {PTHREAD_MUTEX_INITIALIZER}
void smp_lock_init(smp_lock_t *lock);
void smp_lock_acquire(smp_lock_t *lock);
void smp_lock_release(smp_lock_t *lock);
// Take the lock if it is free, without waiting or any system call; false if it is held.
bool smp_lock_try(smp_lock_t *lock);

// How a reader of statistics takes the locks of what it reads. NULL: as every other path does,
// waiting for each lock (exact figures). Otherwise it never waits for a lock: it spins as
// smp_lock_acquire does before it would sleep, then tries again between a few sched_yield
// calls (a holder running elsewhere is done within that), and leaves a lock that stays busy
// alone, counted in busy; the figures that lock guards are left out, and the caller says so.
// For a signal handler (the thread it interrupted may hold any lock, and never releases it
// while the handler runs) and for statistics read while the program allocates, which must
// neither stall an allocation nor wait behind one.
typedef struct smp_gather {
  unsigned busy; // locks given up
} smp_gather_t;
// Take lock for a reader of statistics as g says; false (counted in g->busy) if it is given up.
bool smp_lock_gather(smp_lock_t *lock, smp_gather_t *g);


// A wake-up for one sleeper (the background thread): signal sets it and wakes the sleeper if it
// was clear; wait sleeps up to ms unless it is set. A futex on Linux: a signal costs one atomic
// exchange, and a system call only when it sets the word. wait consumes the signal with the same
// kind of exchange (acquire), so it returns true exactly when it consumed one, and then sees
// what the signaller wrote before signalling; a signal it did not consume stays set for the next
// wait (none is cleared unseen).
typedef struct smp_event {
  _Atomic uint32_t word;
} smp_event_t;
void smp_event_signal(smp_event_t *e);
bool smp_event_wait(smp_event_t *e, unsigned ms);

#endif
