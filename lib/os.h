// Layer: platform. Memory from the OS, locks, and the few process facts the heap needs.
// Every mmap/munmap/madvise/mremap of the allocator goes through this file, so accounting and
// (later) fault injection have one place to live. Nothing here allocates with malloc.
// Failures are reported as NULL/false; callers turn them into ENOMEM.
#ifndef SMP_OS_H
#define SMP_OS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compiler.h"

// Anonymous read-write memory of size bytes (a multiple of the OS page), or NULL.
void *smp_os_map(size_t size);
// Like smp_os_map, but the result is aligned to align (a power of two >= the OS page).
void *smp_os_map_aligned(size_t size, size_t align);
void smp_os_unmap(void *addr, size_t size);
// Give the physical pages of [addr, addr+size) back; the range stays mapped and reads as zero.
// Only whole OS pages inside the range are released. Returns false if the kernel refused.
bool smp_os_purge(void *addr, size_t size);
// Resize a mapping; may move it if may_move. Returns the new address or NULL.
void *smp_os_remap(void *addr, size_t old_size, size_t new_size, bool may_move);
size_t smp_os_page_size(void);
// 16 bytes the kernel gave this process at exec (AT_RANDOM), mixed with the clock.
uint64_t smp_os_random_seed(void);
// The environment as the kernel passed it, without getenv (which may not be ready yet).
const char *smp_os_getenv(const char *name);

// A sleeping mutual-exclusion lock for the rare paths (page heap, central lists, registries).
typedef struct smp_lock {
  pthread_mutex_t mutex;
} smp_lock_t;
#define SMP_LOCK_INIT {PTHREAD_MUTEX_INITIALIZER}
void smp_lock_init(smp_lock_t *lock);
void smp_lock_acquire(smp_lock_t *lock);
void smp_lock_release(smp_lock_t *lock);

#endif
