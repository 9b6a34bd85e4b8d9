// Layer: base. Compiler attributes with names that say what they are for.
// Nothing here depends on the target; the only compilers supported are gcc and clang.
#ifndef SMP_COMPILER_H
#define SMP_COMPILER_H

#include <stddef.h>
#include <stdint.h>

#define SMP_LIKELY(x) __builtin_expect(!!(x), 1)
#define SMP_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define SMP_NOINLINE __attribute__((noinline))
#define SMP_INLINE static inline __attribute__((always_inline))
#define SMP_COLD __attribute__((cold))
#define SMP_HIDDEN __attribute__((visibility("hidden")))
#define SMP_EXPORT __attribute__((visibility("default")))
#define SMP_NORETURN __attribute__((noreturn))
// Tell the optimiser a fact it cannot prove (a slot of a non-empty bin is never NULL).
#define SMP_ASSUME(cond) do { if (!(cond)) __builtin_unreachable(); } while (0)
#define SMP_CACHELINE 64
#define SMP_CACHE_ALIGNED __attribute__((aligned(SMP_CACHELINE)))
// The hot entry points (malloc, free, operator new/delete) start on a cache line, so how their
// fast path falls on 32- and 64-byte boundaries (the decoders' and the micro-op cache's units)
// does not change with edits elsewhere in the library: one such shift (malloc and free from
// 48 to 32 mod 64) cost threadtest 64 3000 256 64 a quarter more user time.
#define SMP_HOT_ENTRY __attribute__((aligned(64)))
#define SMP_TLS_IE __attribute__((tls_model("initial-exec")))
#define SMP_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

// A spin-wait hint: lets the sibling hyperthread run and saves power while a loop waits.
static inline void smp_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield" ::: "memory");
#else
  __asm__ __volatile__("" ::: "memory");
#endif
}

#if defined(__SANITIZE_THREAD__)
#define SMP_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SMP_TSAN 1
#endif
#endif
#ifndef SMP_TSAN
#define SMP_TSAN 0
#endif

// Round x up to a multiple of the power of two a; callers check overflow first.
SMP_INLINE uintptr_t smp_align_up(uintptr_t x, uintptr_t a) { return (x + a - 1) & ~(a - 1); }
SMP_INLINE uintptr_t smp_align_down(uintptr_t x, uintptr_t a) { return x & ~(a - 1); }
SMP_INLINE int smp_is_pow2(size_t x) { return x != 0 && (x & (x - 1)) == 0; }

#endif
