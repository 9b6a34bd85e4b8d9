/* smpalloc: RCU-deferred free.
 *
 * Include this header after the liburcu flavour header your program uses: <urcu.h> (memb, the
 * default), <urcu-qsbr.h> or <urcu-bp.h>. The calls below take the grace periods of that
 * flavour, through liburcu's `rcu_flavor`, which the flavour header maps to its own
 * (urcu_memb_flavor, urcu_qsbr_flavor, urcu_bp_flavor): a grace period of another flavour (one
 * that would free too early) cannot be picked by accident. smpalloc itself does not link
 * liburcu: a program that never calls these functions does not load it.
 *
 *   #include <urcu.h>
 *   #include <smpalloc_rcu.h>
 *   old = rcu_xchg_pointer(&table->slot, fresh);
 *   smp_free_rcu(old);            // freed once every reader that could see it has left
 *
 * Pointers are batched per thread into page-sized arrays, one call_rcu per batch (504 blocks,
 * or blocks of 1 MiB together), as the kernel's kvfree_rcu does; the callback frees the batch's
 * blocks. A partial batch also goes when it is 100 ms old at its thread's next deferral, and a
 * thread's partial batch 1 s old goes when another thread sends a batch of the same flavour;
 * otherwise it waits until its thread defers again, exits, calls smp_rcu_flush, or any thread
 * calls smp_rcu_flush_all or smp_rcu_barrier. smp_free_rcu never waits for a grace period and
 * never writes into the block it defers (readers may still be reading it); it may wait a
 * moment for a lock, or for another thread that is taking its batch.
 *
 * As liburcu asks of call_rcu, every call but the statistics is made by a thread registered
 * with the flavour (QSBR: online), outside read-side sections for smp_rcu_barrier and
 * smp_free_rcu_mightsleep, which wait for a grace period; none from a signal handler. A thread
 * sends its partial batch when it exits, so a thread that unregisters calls smp_rcu_flush()
 * first. A block of a heap other than the default one must have been freed (smp_rcu_barrier)
 * before its heap is destroyed.
 */
#ifndef SMPALLOC_RCU_H
#define SMPALLOC_RCU_H

#include <urcu/flavor.h>

#include "smpalloc.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Free p (a block of any smp_ or malloc call, or NULL) after a grace period of flavor. Never
 *  waits for a grace period, never writes into *p. Returns 0, or ENOMEM (errno set too) when no
 *  batch could be made for it (no memory, or the thread already defers frees of four other
 *  flavours): then p is not freed at all (never early); the caller may retry, or use
 *  smp_free_rcu_mightsleep. A pointer that is not a live block of ours is reported and
 *  aborts, as free does: at once for most, at the latest when its batch is freed. */
SMP_API int smp_free_rcu_flavor(void *p, const struct rcu_flavor_struct *flavor);

/** As smp_free_rcu_flavor, but where p cannot be queued (no memory for a batch) it waits for a
 *  grace period of flavor and frees p at once, as the kernel's kvfree_rcu_mightsleep does, so
 *  it never fails. May sleep: only outside read-side sections (QSBR: its synchronize_rcu takes
 *  an online caller offline while it waits). */
SMP_API void smp_free_rcu_mightsleep_flavor(void *p, const struct rcu_flavor_struct *flavor);

/** Every block deferred with flavor before this call (by any thread) has been freed when it
 *  returns: the threads' partly filled batches are sent, then liburcu's barrier for flavor
 *  waits for their callbacks. May sleep: not inside a read-side section. Where the kernel
 *  refuses membarrier (smp_rcu_flush_all returns EPERM) other threads' partial batches are not
 *  waited for; a warning says so once. */
SMP_API void smp_rcu_barrier_flavor(const struct rcu_flavor_struct *flavor);

/** The calling thread's partly filled batch of flavor is sent now (a thread that defers a few
 *  blocks and then idles would otherwise hold them until it defers more, exits, or a barrier
 *  runs). Never blocks. */
SMP_API void smp_rcu_flush_flavor(const struct rcu_flavor_struct *flavor);

/** Every thread's partly filled batch of flavor is sent now, without waiting for a grace period
 *  (smp_rcu_barrier is this, then the wait). It may wait a moment for a thread that is inside
 *  smp_free_rcu. Returns 0, or EPERM when the kernel refused the membarrier system call that
 *  lets it take other threads' batches (a seccomp filter installed after they began): then only
 *  the caller's went. */
SMP_API int smp_rcu_flush_all_flavor(const struct rcu_flavor_struct *flavor);

/** Deferred-free statistics, all flavours together (versioned as smp_stats_t). */
#define SMP_RCU_STATS_VERSION 1
typedef struct smp_rcu_stats {
  uint32_t version;        /**< in: SMP_RCU_STATS_VERSION; out: the library's */
  uint32_t size;           /**< in: sizeof(smp_rcu_stats_t); out: bytes filled */
  uint64_t pending_blocks; /**< deferred and not yet freed (sent batches and partly filled) */
  uint64_t pending_bytes;  /**< their usable bytes */
  uint64_t batches;        /**< batches sent to call_rcu so far */
  uint64_t freed_blocks;   /**< blocks freed after their grace period so far */
  uint64_t oldest_ms;      /**< how long the oldest block still pending has waited, in ms
                                (0: none) */
} smp_rcu_stats_t;

/** Fill *out (version and size set by the caller). 0, or EINVAL. */
SMP_API int smp_rcu_stats_get(smp_rcu_stats_t *out);

/* The flavour the including file chose. */
#define smp_free_rcu(p) smp_free_rcu_flavor((p), &rcu_flavor)
#define smp_rcu_barrier() smp_rcu_barrier_flavor(&rcu_flavor)
#define smp_rcu_flush() smp_rcu_flush_flavor(&rcu_flavor)
#define smp_rcu_flush_all() smp_rcu_flush_all_flavor(&rcu_flavor)
#define smp_free_rcu_mightsleep(p) smp_free_rcu_mightsleep_flavor((p), &rcu_flavor)

#ifdef __cplusplus
}
#endif

#endif /* SMPALLOC_RCU_H */
