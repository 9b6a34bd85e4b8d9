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
 *  sized delete do). A size that cannot belong to the block is reported and aborts. */
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
 *  the end); 0 for NULL. */
SMP_API size_t smp_usable_size(const void *ptr);

/** Return free memory to the operating system: the calling thread's cache, wholly free spans,
 *  and the physical pages of free page runs. Returns 1 if any memory was released, else 0. */
SMP_API int smp_trim(void);

/** Print a human-readable summary of the heap (bytes in use, cached, mapped, per size class,
 *  and which front end runs) to stderr. Allocates nothing. */
SMP_API void smp_stats_print(void);

/** The library version as "MAJOR.MINOR.PATCH". */
SMP_API const char *smp_version(void);

#ifdef __cplusplus
}
#endif

#endif /* SMPALLOC_H */
