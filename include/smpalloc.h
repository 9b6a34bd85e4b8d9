/* smpalloc: a concurrent memory allocator for SMP machines.
 *
 * This header is the allocator's own API. Every function here works whether or not the
 * library also replaces malloc (libsmpalloc.so / libsmpalloc.a do; libsmpalloc_api.so and
 * libsmpalloc_api.a export only these functions). Blocks from smp_ functions must be freed
 * with smp_ functions unless the replacing library is in use, where both are the same heap.
 */
#ifndef SMPALLOC_H
#define SMPALLOC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define SMP_API __attribute__((visibility("default")))
#define SMP_MALLOC_LIKE __attribute__((__malloc__, __warn_unused_result__))
#else
#define SMP_API
#define SMP_MALLOC_LIKE
#endif

/** Allocate at least size bytes aligned to 16, uninitialised. smp_malloc(0) returns a unique
 *  pointer that may be freed. Returns NULL with errno set to ENOMEM when the request cannot
 *  be met (including absurd sizes such as SIZE_MAX); never aborts for lack of memory. */
SMP_API SMP_MALLOC_LIKE void *smp_malloc(size_t size);

/** Free a block from any smp_ allocation function; NULL is ignored. A pointer the allocator
 *  does not own, or a double free it can see, prints "smpalloc: free: <what> <pointer>" to
 *  stderr and aborts rather than corrupting the heap. */
SMP_API void smp_free(void *ptr);

/** Like smp_free, for a caller that knows the size it asked for (as C23 free_sized and C++
 *  sized delete do). For small and large blocks a size that cannot belong to the block is
 *  reported and aborts; huge blocks (dedicated mappings) are freed without the size check. */
SMP_API void smp_free_sized(void *ptr, size_t size);

/** Allocate count * size zeroed bytes. Returns NULL with errno ENOMEM if the product
 *  overflows or memory is exhausted. */
SMP_API SMP_MALLOC_LIKE void *smp_calloc(size_t count, size_t size);

/** Resize ptr to size bytes, keeping the contents up to the smaller size. Shrinks in place
 *  when it can, grows large blocks in place or by remapping when the OS allows. NULL ptr is
 *  smp_malloc(size); size 0 frees ptr and returns NULL (as glibc does). On failure returns
 *  NULL with errno ENOMEM and leaves ptr untouched. */
SMP_API void *smp_realloc(void *ptr, size_t size);

/** Allocate size bytes aligned to alignment, which must be a power of two (any size up to the
 *  address space; 64 MiB and beyond are honoured). Returns NULL with errno EINVAL for a bad
 *  alignment, ENOMEM when memory is exhausted. */
SMP_API SMP_MALLOC_LIKE void *smp_aligned_alloc(size_t alignment, size_t size);

/** The number of bytes usable in the block at ptr (at least what was asked for, writable to
 *  the end); 0 for NULL. A pointer that is not a live block of ours is reported and aborts. */
SMP_API size_t smp_usable_size(const void *ptr);

/** Return free memory to the operating system: drain the caches (every per-CPU cache; with
 *  per-thread caches, the calling thread's), give wholly free small spans back to the page
 *  heap, unmap wholly free 4 MiB chunks and purge (MADV_DONTNEED) every other free page run.
 *  Returns 1 if any memory was released, else 0. */
SMP_API int smp_trim(void);

/** Print a human-readable summary of the heap (bytes in use, cached, mapped, per size class,
 *  and which front end runs) to stderr. Allocates nothing. */
SMP_API void smp_stats_print(void);

/** The version of struct smp_stats this header describes. */
#define SMP_STATS_VERSION 1

/** Heap statistics, filled by smp_stats_get. Versioned: the caller sets version and size; a
 *  library fills only the fields within the caller's size, so programs built against an older
 *  header keep working, and fields are only ever added at the end. On return version and size
 *  say what the library filled, so a program built against a newer header running with an
 *  older library can tell which fields it got. All sizes in bytes. */
typedef struct smp_stats {
  uint32_t version;        /**< in: SMP_STATS_VERSION; out: the library's */
  uint32_t size;           /**< in: sizeof(smp_stats_t); out: bytes filled (at most in) */
  uint64_t in_use;         /**< in blocks handed out and not freed (small, large and huge) */
  uint64_t cached;         /**< free blocks held by the per-CPU or per-thread caches */
  uint64_t free;           /**< free inside the heap: in small spans and in free page runs */
  uint64_t dirty;          /**< of the free page runs, pages that may be resident */
  uint64_t mapped;         /**< mapped for the heap: chunks and huge blocks (not the cache
                                 regions, which mappings counts) */
  uint64_t resident;       /**< of mapped, resident in memory now (mincore) */
  uint64_t purged;         /**< given back to the OS so far, by decay and trim */
  uint64_t purges;         /**< madvise calls that gave memory back so far */
  uint64_t mappings;       /**< chunks + huge blocks + per-CPU regions + live thread caches */
  uint64_t chunks_unmapped; /**< 4 MiB chunks given back to the OS so far */
  uint64_t threads;        /**< threads holding a per-thread cache (0 with per-CPU caches) */
  uint32_t percpu;         /**< 1 if the per-CPU front end runs, 0 for per-thread caches */
  uint32_t background;     /**< 1 if the background thread runs */
  uint32_t cpus;           /**< CPUs the process may run on (its affinity mask) */
  uint32_t cache_slots;    /**< per-CPU caches reserved (one per possible CPU); 0 per-thread */
} smp_stats_t;

/** Fill *stats with the heap's statistics as of now (take stats->version = SMP_STATS_VERSION
 *  and stats->size = sizeof *stats first). Takes the allocator's statistics locks and walks
 *  the heap's mappings (mincore), so it costs microseconds per GiB mapped: for monitoring, not
 *  for hot paths. Allocates nothing. Returns 0, or EINVAL (nothing filled) if stats is NULL,
 *  its version is 0 or its size does not cover in_use; fields beyond size are not written. */
SMP_API int smp_stats_get(smp_stats_t *stats);

/** The library version as "MAJOR.MINOR.PATCH". */
SMP_API const char *smp_version(void);

#ifdef __cplusplus
}
#endif

#endif /* SMPALLOC_H */
