// Layer: base. Atomics that name their memory order at every use.
// Thin wrappers over C11 <stdatomic.h>; a call site reads as the protocol it implements
// ("load acquire", "cas release") so the memory-order argument is reviewed where it matters.
#ifndef SMP_ATOMIC_H
#define SMP_ATOMIC_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define smp_load_relaxed(p) atomic_load_explicit((p), memory_order_relaxed)
#define smp_load_acquire(p) atomic_load_explicit((p), memory_order_acquire)
#define smp_store_relaxed(p, v) atomic_store_explicit((p), (v), memory_order_relaxed)
#define smp_store_release(p, v) atomic_store_explicit((p), (v), memory_order_release)
#define smp_exchange_acq_rel(p, v) atomic_exchange_explicit((p), (v), memory_order_acq_rel)
#define smp_fetch_add_relaxed(p, v) atomic_fetch_add_explicit((p), (v), memory_order_relaxed)

// Orders every load and store before it with every store after it (dmb ish on aarch64; on x86-64
// only the compiler is held back, the stores already leave in order).
#define smp_fence_release() atomic_thread_fence(memory_order_release)

// Compare-and-swap; on failure *expected is refreshed with a relaxed load.
#define smp_cas_release(p, expected, desired)                                                  \
  atomic_compare_exchange_weak_explicit((p), (expected), (desired), memory_order_release,     \
                                        memory_order_relaxed)
#define smp_cas_acquire(p, expected, desired)                                                  \
  atomic_compare_exchange_weak_explicit((p), (expected), (desired), memory_order_acquire,     \
                                        memory_order_relaxed)
#define smp_cas_acq_rel(p, expected, desired)                                                  \
  atomic_compare_exchange_weak_explicit((p), (expected), (desired), memory_order_acq_rel,     \
                                        memory_order_relaxed)

#endif
