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
 *  heap, unmap wholly free 4 MiB chunks, purge (MADV_DONTNEED) every other free page run and
 *  unmap the mappings of freed huge blocks kept for reuse. Returns 1 if any memory was
 *  released, else 0. */
SMP_API int smp_trim(void);

/** Print a human-readable summary of the heap (bytes in use, cached, mapped, per size class,
 *  and which front end runs) to stderr. Allocates nothing. */
SMP_API void smp_stats_print(void);

/** The version of struct smp_stats this header describes. */
#define SMP_STATS_VERSION 4

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
  uint64_t mapped;         /**< mapped for the heap: chunks, huge blocks and cached huge
                                 mappings (not the cache regions, which mappings counts) */
  uint64_t resident;       /**< of mapped, resident in memory now (mincore) */
  uint64_t purged;         /**< given back to the OS so far, by decay and trim */
  uint64_t purges;         /**< madvise calls that gave memory back so far */
  uint64_t mappings;       /**< chunks + huge blocks + cached huge mappings + per-CPU regions
                                 + live thread caches */
  uint64_t chunks_unmapped; /**< 4 MiB chunks given back to the OS so far */
  uint64_t threads;        /**< threads holding a per-thread cache (0 with per-CPU caches) */
  uint32_t percpu;         /**< 1 if the per-CPU front end runs, 0 for per-thread caches */
  uint32_t background;     /**< 1 if the background thread runs */
  uint32_t cpus;           /**< CPUs the process may run on (its affinity mask) */
  uint32_t cache_slots;    /**< per-CPU caches reserved (one per possible CPU); 0 per-thread */
  /* version 2 */
  uint64_t limit;          /**< the heap's limit (0: none; a region heap: its usable bytes) */
  uint64_t held;           /**< what the limit counts: pages held for blocks, huge mappings */
  uint64_t failures;       /**< requests refused for lack of memory (limit, region, OS) */
  uint64_t heaps;          /**< heaps alive, the default one included (smp_stats_get only) */
  uint64_t reserve_size;   /**< the emergency reserve (smp_stats_get only) */
  uint64_t reserve_in_use; /**< of which in blocks handed out (smp_stats_get only) */
  /* version 3 */
  uint64_t huge_cached;    /**< mappings of freed huge blocks kept for reuse (counted in mapped,
                                 resident and mappings; not in free, nor in held) */
  /* version 4: RCU-deferred free (smpalloc_rcu.h), all flavours (smp_stats_get only; 0 in a
     library built without liburcu's headers) */
  uint64_t rcu_pending_blocks; /**< deferred and not yet freed (still in their heaps' in_use) */
  uint64_t rcu_pending_bytes;  /**< their usable bytes */
  uint64_t rcu_batches;        /**< batches sent to call_rcu so far */
  uint64_t rcu_freed_blocks;   /**< blocks freed after their grace period so far */
  uint64_t rcu_oldest_ms;      /**< how long the oldest block still pending has waited (ms) */
} smp_stats_t;

/** Fill *stats with the default heap's statistics as of now, with the process-wide fields
 *  (threads, percpu, background, cpus, cache_slots, heaps, reserve_size, reserve_in_use; other
 *  heaps' figures come from smp_heap_stats_get) (take stats->version = SMP_STATS_VERSION
 *  and stats->size = sizeof *stats first). Takes the allocator's statistics locks and walks
 *  the heap's mappings (mincore), so it costs microseconds per GiB mapped: for monitoring, not
 *  for hot paths. Allocates nothing. Returns 0, or EINVAL (nothing filled) if stats is NULL,
 *  its version is 0 or its size does not cover in_use; fields beyond size are not written.
 *  A library built with its statistics counters compiled out (CMake -DSMP_STATS=OFF) does not
 *  count small blocks: in_use leaves them out, free the free blocks in small spans, and purged,
 *  purges and chunks_unmapped read 0 (here and in smp_heap_stats_get; smp_stats_print says so). */
SMP_API int smp_stats_get(smp_stats_t *stats);

/** Write the whole allocator's statistics as one JSON object into buf: at most len bytes, the
 *  last of them a NUL whenever len > 0 (a text longer than len - 1 bytes is cut there). Returns
 *  the length of the whole text without its NUL, so a caller that gets len or more calls again
 *  with a larger buffer (smp_stats_json(NULL, 0) only measures; the figures may have grown a
 *  little by the second call). The object (schema "version" 1; each member is listed in
 *  papers/design.md, "Statistics") holds "smpalloc" (the library version), "frontend",
 *  "totals" (every smp_stats_t field of smp_stats_get but the rcu_ ones), "heaps" (each live
 *  heap's figures, the default one first), "caches" (per CPU cache, or the per-thread caches),
 *  "decay", "options", "types" (each malloc type, as smp_type_foreach gives them), "rcu" (the
 *  deferred frees, in builds with liburcu's headers) and "busy". Strings are escaped
 *  (a byte that is not UTF-8 reads as U+FFFD). Allocates nothing, and never waits for a lock
 *  that malloc or free may hold, so it neither stalls the program's allocations nor waits
 *  behind them: a lock still busy after a few microseconds (and yields) is given up, the figures
 *  it guards are left out (they read low), and "busy" counts such locks (0: every figure is
 *  there). It does wait for another thread reading the statistics (smp_stats_get,
 *  malloc_stats); so it is not for a signal handler (the option stats_signal is). Figures are
 *  exact once the other threads are quiet; resident walks the mappings (mincore) as
 *  smp_stats_get does. */
SMP_API int smp_stats_json(char *buf, size_t len);

/** Write the sampling heap profiler's profile of live memory now (SMPALLOC_OPTIONS prof:1 or
 *  prof:PREFIX; see README, "Options"): to path, in the legacy heap-profile text google-pprof
 *  reads (`google-pprof --text PROGRAM path`; the figures are samples, which pprof scales to
 *  estimates itself), and to path with ".folded" appended, as folded stacks for flame graphs
 *  ("outer;...;inner bytes", the bytes an estimate of what each stack holds live). Takes the
 *  heaps' locks while it counts: not for a signal handler (the option prof_signal is). Returns
 *  0, EINVAL if path is NULL, ENOSYS if the profiler is off, or the errno of opening a file. */
SMP_API int smp_prof_dump(const char *path);

/* ---- Heaps ------------------------------------------------------------------------------
 *
 * A heap is an allocator of its own: its own pages, size classes and limits, named in the
 * statistics. Ordinary blocks (malloc, smp_malloc, operator new) come from the *default heap*.
 * A block from any heap is freed by plain free/smp_free/delete (or resized by realloc) from any
 * thread; the heap is found from the pointer. smp_heap_destroy frees every block of a heap at
 * once. A heap can also live in memory the caller gives (smp_heap_create_in): shared memory,
 * hugetlb pages, a pinned buffer.
 *
 * Allocation flags (combine with |) for smp_heap_malloc, smp_mallocx and their realloc forms:
 *   SMP_ZERO      the block reads as zero.
 *   SMP_ALIGN(a)  the block is aligned to a, a power of two (not a power of two: EINVAL).
 *   SMP_NOWAIT    never blocks: no waiting for a lock, no system call. NULL with errno EAGAIN
 *                 when the request would have to (a cache miss whose lock is busy, a heap that
 *                 must grow from the OS, a huge block). The OOM handler is not called.
 *   SMP_RESERVE   may draw on the emergency reserve (smp_reserve_set) when the heap cannot
 *                 give the memory, as FreeBSD's M_USE_RESERVE.
 *   SMP_NOFAIL    never returns NULL: the OOM handler is asked (until it declines), then the
 *                 reserve is drawn on, then "smpalloc: <function>: out of memory" is printed and
 *                 the process aborts (FreeBSD's M_WAITOK promise). SMP_NOWAIT | SMP_NOFAIL is
 *                 EINVAL.
 * Unknown flag bits are EINVAL. Functions returning int return 0 or an errno value. */

/** A heap (opaque). */
typedef struct smp_heap smp_heap_t;

#define SMP_ZERO 0x1u
#define SMP_NOWAIT 0x2u
#define SMP_RESERVE 0x4u
#define SMP_NOFAIL 0x8u
/** Alignment a (a power of two, up to 2^62) as a flag: log2(a) in bits 8..13. */
#define SMP_ALIGN(a)                                                                          \
  ((((unsigned long long)(a) & ((unsigned long long)(a) - 1)) || (unsigned long long)(a) == 0 \
        ? 0x80000000u                                                                         \
        : (unsigned)__builtin_ctzll((unsigned long long)(a)) << 8))

/** Flags of smp_heap_create_in. */
#define SMP_REGION_META_OUTSIDE 0x1u /**< metadata in memory the allocator maps, not in the
                                          region: every byte of the region is for blocks */
#define SMP_REGION_PURGE 0x2u        /**< the allocator may madvise(MADV_DONTNEED) free pages
                                          of the region (it never does otherwise) */
/** The smallest region smp_heap_create_in accepts, in bytes. */
#define SMP_REGION_MIN ((size_t)64 * 1024)

/** Create a heap that takes memory from the OS, named name (copied; at most 31 bytes are
 *  kept; NULL: "heap"), holding at most limit bytes for its blocks (0: no limit). The limit
 *  counts the pages the heap holds for blocks (small spans, large runs, huge mappings), not
 *  whole chunks, so a 1 MiB limit gives close to 1 MiB of blocks. Returns NULL with errno
 *  ENOMEM when the OS has no memory for the heap's metadata. */
SMP_API smp_heap_t *smp_heap_create(const char *name, size_t limit);

/** Create a heap over len bytes at base, memory the caller owns (anonymous, a MAP_SHARED memfd,
 *  hugetlb pages, a registered buffer). Its blocks come only from that memory: when it is full,
 *  allocation fails with ENOMEM (after the OOM handler), never falling back to other memory.
 *  The allocator never maps, unmaps or madvises the region unless flags has SMP_REGION_PURGE;
 *  its metadata sits at the start of each 4 MiB of the region unless flags has
 *  SMP_REGION_META_OUTSIDE. Any base and len: only the 8 KiB pages wholly inside are used; a
 *  block is at most about 4 MiB. Returns NULL with errno EINVAL for a NULL base, unknown flags,
 *  a region smaller than SMP_REGION_MIN, or one that overlaps another heap's region or memory
 *  of the allocator that the program does not own (inside a large or huge block from malloc is
 *  fine), ENOMEM when the region has no room left for blocks after its metadata. The region
 *  stays the caller's: after smp_heap_destroy it may be unmapped or reused. */
SMP_API smp_heap_t *smp_heap_create_in(const char *name, void *base, size_t len, unsigned flags);

/** Allocate size bytes from heap h (NULL: the default heap) with flags (see above). NULL with
 *  errno ENOMEM (heap over its limit, region full, OS exhausted), EAGAIN (SMP_NOWAIT) or
 *  EINVAL (bad flags). */
SMP_API SMP_MALLOC_LIKE void *smp_heap_malloc(smp_heap_t *h, size_t size, unsigned flags);

/** smp_heap_malloc(h, count * size, flags | SMP_ZERO); ENOMEM if the product overflows. */
SMP_API SMP_MALLOC_LIKE void *smp_heap_calloc(smp_heap_t *h, size_t count, size_t size,
                                              unsigned flags);

/** Resize p to size bytes in heap h (NULL: the default heap): p may be a block of any heap;
 *  the result is a block of h (moved there if p is elsewhere), with the contents up to the
 *  smaller size; SMP_ZERO zeroes bytes past the old usable size. p NULL: smp_heap_malloc. size
 *  0: p is freed and NULL returned. On failure NULL with errno set, and p is untouched. With
 *  SMP_NOWAIT it only resizes in place: otherwise EAGAIN with p untouched (size 0 included,
 *  which then frees nothing). */
SMP_API void *smp_heap_realloc(smp_heap_t *h, void *p, size_t size, unsigned flags);

/** Destroy heap h: every block of h is freed at once (O(spans), not O(blocks)) and its memory
 *  goes back to the OS (for a region heap: to the caller); when the background thread runs,
 *  the OS's share of that work (freeing the pages) is its own, started at once, so the caller
 *  does not wait for it. Later use of one of its blocks by
 *  free, realloc or smp_usable_size is reported and aborts: "block of a destroyed heap" for the
 *  blocks of a heap over the OS while their chunk is among the last 4096 destroyed, or (huge
 *  blocks) their mapping among the last 256 (their addresses stay inaccessible until then),
 *  "invalid pointer" for region blocks (whose memory may already be someone else's). The caller must make sure no
 *  other thread uses h meanwhile (SMPALLOC_OPTIONS=debug:1 reports one that does). NULL is
 *  ignored; the default heap and the reserve cannot be destroyed (reported, aborts). */
SMP_API void smp_heap_destroy(smp_heap_t *h);

/** Call fn(block, usable_size, arg) for every live block of h (NULL: the default heap),
 *  while no other thread uses h. fn returns 0 to go on and anything else to stop; that value
 *  is returned (0 once every block was visited), as nftw does. fn may read and write the
 *  block but must not allocate from or free into h. Blocks freed but held in caches are not
 *  visited. EINVAL if fn is NULL. */
SMP_API int smp_heap_visit(smp_heap_t *h, int (*fn)(void *block, size_t usable, void *arg),
                           void *arg);

/** The heap that block p belongs to: the default heap for ordinary blocks; NULL for NULL or a
 *  pointer that is not a block start of ours (never reported). */
SMP_API smp_heap_t *smp_heap_of(const void *p);

/** The default heap (what malloc and smp_malloc allocate from). */
SMP_API smp_heap_t *smp_heap_default(void);

/** The name h was created with ("default" for the default heap). */
SMP_API const char *smp_heap_name(const smp_heap_t *h);

/** Change h's limit (0: none). A limit below what h holds now refuses new memory until enough
 *  is freed. EINVAL for the default heap and for region heaps (their region is the limit). */
SMP_API int smp_heap_set_limit(smp_heap_t *h, size_t limit);

/** Fill *out (version and size set by the caller, as smp_stats_get) with h's statistics:
 *  in_use, cached, free, dirty, mapped, resident, purged, purges, chunks_unmapped, mappings of
 *  h alone, plus
 *  limit (a region heap: its usable bytes), held, failures and huge_cached; the process-wide
 *  fields are 0 but cpus. NULL h or the default heap: exactly what smp_stats_get fills.
 *  EINVAL as smp_stats_get. */
SMP_API int smp_heap_stats_get(smp_heap_t *h, struct smp_stats *out);

/** smp_heap_malloc(NULL, size, flags): the default heap with flags. With flags 0 it is malloc
 *  (same hit path). */
SMP_API SMP_MALLOC_LIKE void *smp_mallocx(size_t size, unsigned flags);

/** smp_heap_realloc on p's own heap: p stays in the heap it came from. */
SMP_API void *smp_reallocx(void *p, size_t size, unsigned flags);

/** Set the emergency reserve to bytes (rounded up to 8 KiB pages, and to SMP_REGION_MIN at
 *  least; 0 releases it): memory taken from the OS now, pre-faulted, drawn on only by
 *  SMP_RESERVE and SMP_NOFAIL requests when their heap cannot give them memory (blocks of up to
 *  about 4 MiB). Returns 0, ENOMEM (the OS refused; the old reserve is kept) or EBUSY (blocks of
 *  the reserve are live: it changes only while none is). Not to be called while other threads
 *  may draw on the reserve. */
SMP_API int smp_reserve_set(size_t bytes);

/** Install an out-of-memory handler (NULL: none). When a request of any heap is about to fail
 *  for lack of memory (not for SMP_NOWAIT), fn(size, heap, arg) is called; a non-zero return
 *  retries the request (the handler freed something), zero lets it fail (or, with
 *  SMP_NOFAIL, go on to the reserve). The handler may allocate and free; a request made
 *  inside the handler that also fails does not call it again. */
SMP_API void smp_set_oom_handler(int (*fn)(size_t size, smp_heap_t *h, void *arg), void *arg);

/* ---- Malloc types ------------------------------------------------------------------------
 *
 * As FreeBSD's malloc(9) types: every allocation may name the subsystem it is for, and the
 * allocator keeps, per type, what it holds (blocks and bytes in use, requests, frees, failures,
 * high-water mark, size classes used, an optional limit), for nearly free.
 *
 *   SMP_TYPE_DEFINE(M_CONN, "conn", "client connections");  // file scope, one translation unit
 *   SMP_TYPE_DECLARE(M_CONN);                               // in a header
 *   struct conn *c = smp_malloc_type(sizeof *c, M_CONN, SMP_ZERO);
 *   smp_free_type(c, M_CONN);    // or plain free(c) / smp_free(c): the type is found from c
 *
 * A type is registered on its first use (from any thread; any number of types), and
 * unregistered when the program exits or the shared object that defined it is unloaded: a type
 * with blocks still allocated then is reported ("smpalloc: type conn: 12 blocks, 4.5 KiB still
 * allocated"); its blocks stay valid and keep being counted (the statistics then name the type
 * from a copy of its name). A typed block carries a 16-byte header before the pointer returned
 * (so a typed block of n bytes costs a block of n + 16), unless its type has a heap of its own
 * (SMP_TYPE_OWN_HEAP): then the block's pages name the type, and a block of n bytes costs what
 * malloc(n) would; plain malloc and free pay nothing for types. Counters are kept per thread,
 * single-writer, and summed without locks when read: exact once the program is quiescent. */

/** A malloc type. Define one with SMP_TYPE_DEFINE; its fields belong to the allocator. */
typedef struct smp_type {
  uint32_t magic;          /**< SMP_TYPE_MAGIC */
  uint32_t flags;          /**< SMP_TYPE_ZERO_ON_FREE, ... */
  const char *name;        /**< short name, as vmstat -m's Type column */
  const char *description; /**< what the type's blocks are for */
  void *entry;             /**< the allocator's record of the type (set on first use) */
  uintptr_t slot;          /**< the allocator's number for the type, and a bit when it has a limit */
  uintptr_t reserved;
} smp_type_t;

#define SMP_TYPE_MAGIC 0x53545950u /* "STYP" */
/** Type flag: blocks of this type are cleared when freed (for secrets: freed memory is
 *  otherwise not zeroed, and its contents would outlive the block). */
#define SMP_TYPE_ZERO_ON_FREE 0x1u
/** Type flag: the type's blocks of the default heap come from pages of its own, as a kernel's
 *  per-type object cache (kmem_cache, uma_zone) keeps its objects: no 16-byte header per block
 *  (a block of n bytes costs what malloc(n) would: for a server's many small objects, memory a
 *  header would have added to each), and no page shared with another type's blocks or untyped
 *  ones (a use after free of such a block can only land on a block of the same type). The
 *  pages are an internal heap of the type's, a row of its own in the statistics ("type
 *  <name>"); smp_heap_of gives the default heap for its blocks, as for any block
 *  smp_malloc_type returns, and smp_heap_visit of the default heap visits them. Blocks
 *  that smp_heap_malloc_type puts in another heap carry the header as usual. */
#define SMP_TYPE_OWN_HEAP 0x2u

/** Unregister type t: at exit, or when the shared object defining t is unloaded (called by the
 *  destructor SMP_TYPE_DEFINE writes; a program need not call it). Reports a type that still
 *  has blocks allocated (during exit, after the last destructor ran); its blocks stay valid and
 *  counted, and may still be freed by smp_free_type(p, t) while t's memory exists. */
SMP_API void smp_type_unregister(smp_type_t *t);

/** Define malloc type name (an array of one smp_type_t, so that name is the smp_type_t * the
 *  calls take) with a short name and a description, and flags (SMP_TYPE_ZERO_ON_FREE,
 *  SMP_TYPE_OWN_HEAP). */
#define SMP_TYPE_DEFINE_FLAGS(name, shortdesc, longdesc, typeflags)                            \
  smp_type_t name[1] = {{SMP_TYPE_MAGIC, (typeflags), (shortdesc), (longdesc), 0, 0, 0}};          \
  __attribute__((destructor)) static void smp_type_fini_##name(void) {                          \
    smp_type_unregister(name);                                                                 \
  }                                                                                            \
  typedef int smp_type_defined_##name
/** Define malloc type name with no flags. */
#define SMP_TYPE_DEFINE(name, shortdesc, longdesc) SMP_TYPE_DEFINE_FLAGS(name, shortdesc, longdesc, 0)
/** Declare a type defined in another translation unit. */
#define SMP_TYPE_DECLARE(name) extern smp_type_t name[1]

/** The version of struct smp_type_stats this header describes. */
#define SMP_TYPE_STATS_VERSION 1

/** One type's statistics (versioned as smp_stats_t: set version and size first). Bytes are the
 *  usable sizes of the type's blocks (what smp_usable_size returns for them), as vmstat -m
 *  counts the size of the bucket a request came from. */
typedef struct smp_type_stats {
  uint32_t version;        /**< in: SMP_TYPE_STATS_VERSION; out: the library's */
  uint32_t size;           /**< in: sizeof(smp_type_stats_t); out: bytes filled */
  const char *name;        /**< the type's short name */
  const char *description; /**< its description */
  uint64_t in_use;         /**< bytes in blocks of the type now allocated */
  uint64_t blocks;         /**< blocks of the type now allocated */
  uint64_t requests;       /**< successful allocations so far (realloc that moves counts) */
  uint64_t frees;          /**< frees so far */
  uint64_t failures;       /**< allocations that returned NULL for lack of memory, the limit,
                                 or SMP_NOWAIT (EINVAL, a bad call, is not counted) */
  uint64_t high_water;     /**< the most bytes in use at once (see smp_type_stats_get) */
  uint64_t limit;          /**< the type's limit in bytes (0: none) */
  uint64_t classes[2];     /**< bit c: blocks of size class c were allocated (classes 1-80) */
  uint64_t large;          /**< allocations served by page runs or mappings (over 64 KiB, or
                                 aligned beyond what the small classes give) */
  uint32_t flags;          /**< the type's flags */
  uint32_t loaded;         /**< 1 while its definition is loaded, 0 once unregistered */
} smp_type_stats_t;

/** Allocate size bytes of type t with flags (as smp_mallocx: SMP_ZERO, SMP_ALIGN(a),
 *  SMP_NOWAIT, SMP_RESERVE, SMP_NOFAIL) from the default heap. NULL with errno ENOMEM (memory
 *  exhausted, or the type's limit reached; with SMP_NOFAIL the limit aborts as exhaustion
 *  does), EAGAIN (SMP_NOWAIT; also a thread's first allocation of t with SMP_NOWAIT, which
 *  would have to register t or make the thread's record of it) or EINVAL (bad flags, or t is
 *  not a type made by SMP_TYPE_DEFINE). */
SMP_API SMP_MALLOC_LIKE void *smp_malloc_type(size_t size, smp_type_t *t, unsigned flags);

/** smp_malloc_type from heap h (NULL: the default heap). */
SMP_API SMP_MALLOC_LIKE void *smp_heap_malloc_type(smp_heap_t *h, size_t size, smp_type_t *t,
                                                   unsigned flags);

/** Resize p, a block of type t (or NULL: smp_malloc_type), to size bytes in its heap, keeping
 *  the contents up to the smaller size; size 0 frees p and returns NULL. On failure NULL with
 *  errno set and p untouched. A p of another type, or untyped, is reported and aborts. Plain
 *  realloc, smp_reallocx and smp_heap_realloc keep a typed block's type too (with SMP_NOWAIT,
 *  smp_heap_realloc of a typed block is always EAGAIN). */
SMP_API void *smp_realloc_type(void *p, size_t size, smp_type_t *t, unsigned flags);

/** Free p, a block of type t (NULL is ignored). A p that is not a live block of type t (of
 *  another type, untyped, not ours, or already freed) is reported and aborts. */
SMP_API void smp_free_type(void *p, smp_type_t *t);

/** The type of block p: NULL for NULL or an untyped block (a pointer that is not a live block
 *  of ours is reported and aborts, as smp_usable_size does). For a type whose definition was
 *  unloaded, the allocator's copy of it. */
SMP_API smp_type_t *smp_type_of(const void *p);

/** Fill *out (version and size set by the caller) with t's statistics, without locks: each
 *  counter is exact once the threads using t are quiet. high_water is the most bytes that were
 *  in use at once, never less than the true peak; while one thread frees blocks of t and
 *  another allocates them, it may exceed the peak by what the freeing threads have not yet
 *  published (at most 64 KiB each). EINVAL for a NULL or unknown t or a bad out. A type never
 *  used yet reads as zeros. */
SMP_API int smp_type_stats_get(const smp_type_t *t, smp_type_stats_t *out);

/** Call fn(type, stats, arg) for every registered type (unloaded ones with blocks still
 *  allocated included), in registration order; a non-zero return from fn stops the walk and is
 *  returned, else 0. Takes no lock that an allocation takes; fn may allocate. EINVAL for a
 *  NULL fn. */
SMP_API int smp_type_foreach(int (*fn)(const smp_type_t *t, const smp_type_stats_t *stats,
                                       void *arg),
                             void *arg);

/** Limit what blocks of type t may hold to bytes (usable bytes, as in_use; 0: no limit): an
 *  allocation that would go past it fails with ENOMEM (counted in failures). A limit below what
 *  is in use refuses new blocks until enough are freed. EINVAL for a NULL or unknown t;
 *  ENOMEM when t, never used before, cannot be registered. */
SMP_API int smp_type_set_limit(smp_type_t *t, size_t bytes);

/** The library version as "MAJOR.MINOR.PATCH". */
SMP_API const char *smp_version(void);

/** Check an SMPALLOC_OPTIONS string (comma-separated NAME or NAME:VALUE items) without applying
 *  it: 0 when every item names a known option with a valid value. Otherwise -1 with errno
 *  EINVAL (also for a NULL options) and, when why is not NULL and why_len > 0, a NUL-terminated
 *  explanation of the first bad item in why, cut to why_len bytes ("unknown option 'x:1'",
 *  "bad value 'junk:maybe'"; an item is quoted up to its first 48 bytes). Safe before the allocator starts; allocates nothing. */
SMP_API int smp_options_check(const char *options, char *why, size_t why_len);

#ifdef __cplusplus
}
#endif

#endif /* SMPALLOC_H */
