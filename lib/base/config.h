// Layer: base. The fixed geometry of the heap (and, as they are added, build switches, each
// always defined to 0 or 1 and tested with #if). Geometry constants are shared by the page
// heap, the size classes and the front ends; _Static_asserts pin the relations relied on.
#ifndef SMP_CONFIG_H
#define SMP_CONFIG_H

// The version has one source, project(VERSION) in CMakeLists.txt, passed as a definition.
#ifndef SMP_VERSION_STRING
#error "SMP_VERSION_STRING is defined by the build (CMakeLists.txt's project VERSION)"
#endif

// Build switches, set by CMake (SMP_SANITIZE, SMP_STATS, SMP_ASSERTS, the fault-injection test
// library).
// SMP_TEST_NAMES: override.c exports the malloc family as smp_test_malloc... instead of malloc,
// for sanitizer builds whose runtime owns the standard names.
#ifndef SMP_TEST_NAMES
#define SMP_TEST_NAMES 0
#endif
// SMP_INIT_AT_LOAD: start-up runs from a constructor at load; 0 (stress_init only) leaves it
// to the first call, so threads can race through it.
#ifndef SMP_INIT_AT_LOAD
#define SMP_INIT_AT_LOAD 1
#endif
// SMP_FAULT_INJECT: the OS wrappers can be told to fail (os.h); only tests/fault sets it.
#ifndef SMP_FAULT_INJECT
#define SMP_FAULT_INJECT 0
#endif
// SMP_STATS: the statistics counters (stats.h) are kept; 0 compiles them out. CMake option
// SMP_STATS, default ON.
#ifndef SMP_STATS
#define SMP_STATS 1
#endif
// SMP_ASSERTS: internal invariants are checked (SMP_ASSERT, assertion.h); CMake sets it in
// Debug builds and with -DSMP_ASSERTS=ON.
#ifndef SMP_ASSERTS
#define SMP_ASSERTS 0
#endif

// Every block is aligned to at least this much (max_align_t on x86-64 and aarch64).
#define SMP_MIN_ALIGN 16

// Page-heap pages: the unit of spans. Independent of the OS page (4 KiB here).
#define SMP_PAGE_SHIFT 13
#define SMP_PAGE_SIZE ((size_t)1 << SMP_PAGE_SHIFT)

// Chunks: aligned reservations from the OS; a pointer's chunk is found by masking.
#define SMP_CHUNK_SHIFT 22
#define SMP_CHUNK_SIZE ((size_t)1 << SMP_CHUNK_SHIFT)
#define SMP_CHUNK_PAGES (SMP_CHUNK_SIZE >> SMP_PAGE_SHIFT)

// User address space covered by the chunk bitmap (x86-64 and aarch64 with 4-level tables).
#define SMP_ADDRESS_BITS 47

// Size classes: 16..128 step 16, then 8 classes per doubling up to SMP_SMALL_MAX.
#define SMP_SMALL_MAX ((size_t)64 * 1024)
#define SMP_CLASS_COUNT 81 // class 0 means "not a small block"
// Classes 1..SMP_OUTBOX_CLASSES-1 (16, 32 and 48 bytes: blocks that share cache lines) are
// sent home when freed on a CPU other than their owner's (cpucache.h, the outbox).
#ifndef SMP_OUTBOX_CLASSES
#define SMP_OUTBOX_CLASSES 4
#endif

// Objects up to this size come from the page heap as page runs; above it, dedicated mappings.
#define SMP_HUGE_THRESHOLD (SMP_CHUNK_SIZE / 2)

// Per-CPU caches: one region of 2^SMP_CPUCACHE_SHIFT bytes per cache index (CPU or mm_cid):
// per-class headers, then slots of 8 bytes addressed by 16-bit indexes.
// 512 KiB: the classes' slot ranges (cpucache.c) take 342 KiB.
#define SMP_CPUCACHE_SHIFT 19
#define SMP_CPUCACHE_REGION ((size_t)1 << SMP_CPUCACHE_SHIFT)
// The most bytes of blocks one class of a per-CPU cache may hold (its slot range), and what
// any miss may grow it to (beyond: only allocation misses, within the budget; cpucache.c).
#define SMP_CPUCACHE_CLASS_BYTES ((size_t)1 << 20)
#define SMP_CPUCACHE_BASE_BYTES ((size_t)64 << 10)

_Static_assert(SMP_CPUCACHE_REGION / 8 <= 65536, "slot indexes fit in 16 bits");
_Static_assert(SMP_CHUNK_SHIFT > SMP_PAGE_SHIFT, "chunks hold pages");
_Static_assert(SMP_CHUNK_PAGES <= 65535, "page indexes fit in 16 bits");
_Static_assert(SMP_SMALL_MAX < SMP_HUGE_THRESHOLD, "small < large < huge");

#endif
