// Layer: api. RCU-deferred free (include/smpalloc_rcu.h).
// Each thread that defers blocks has a record (thread_rcu_t) holding, per RCU flavour it used, a
// partly filled batch: a page-sized array of pointers. A full batch is sent with the flavour's
// call_rcu (through liburcu's rcu_flavor_struct, which the caller passes: smpalloc does not link
// liburcu); its callback, after a grace period, frees every block in it and the batch.
// Concurrency: a thread's record is used by its thread and, to take its partial batches, by
// smp_rcu_barrier and the statistics, so it has a spin lock of its own (one exchange per call,
// acquire, released by a release store; smp_lock_t would cost a second atomic per call, and
// another thread holds it only for a few loads and stores). Records are linked with a release
// store once filled and walked with acquire loads; a record changes hands by a CAS of its owner
// from 0 (acquire) after the exiting owner's release store of 0. stress_rcu (per flavour, also
// under AddressSanitizer) checks every byte readers see while batches move. Records are never
// freed: a thread's exit
// sends its batches and gives the record up for the next new thread. Sent batches sit on one
// list (sent_lock) so that the statistics know the oldest; their counts are atomics.
// Fork: the child's records are unlocked, the other threads' given up (their partial batches
// go with the next thread that takes the record, after a grace period of the child's).
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>

#include <urcu/call-rcu.h>
#include <urcu/flavor.h>

#include "smpalloc.h"
#include "smpalloc_rcu.h"
#include "atomic.h"
#include "compiler.h"
#include "debug.h"
#include "init.h"
#include "options.h"
#include "os.h"
#include "pagemap.h"
#include "sizeclass.h"

#define BATCH_BYTES 4096
#define FLAVOURS 4                                // flavours one thread may use at once
#define BATCH_AGE_MS 100 // a partial batch this old goes at its thread's next deferral (checked
                         // every 32 blocks: the clock is read that often)

typedef struct batch {
  struct rcu_head head;
  const struct rcu_flavor_struct *flavor;
  struct batch *prev, *next; // the sent list (sent_lock)
  uint64_t made_ms;           // its first block's deferral
  uint64_t sent_ms;
  uint64_t bytes;            // usable bytes of its blocks
  uint32_t n;
  void *ptr[];
} batch_t;
#define BATCH_CAP ((BATCH_BYTES - sizeof(batch_t)) / sizeof(void *))

typedef struct thread_rcu {
  _Atomic int lock;
  _Atomic uintptr_t owner; // the owning thread's id, 0: free
  struct {
    const struct rcu_flavor_struct *flavor;
    batch_t *batch;
  } f[FLAVOURS];
  struct thread_rcu *next; // the registry (immutable once published)
} thread_rcu_t;

static smp_lock_t registry_lock = SMP_LOCK_INIT;
static thread_rcu_t *_Atomic records;
static pthread_key_t exit_key;
static bool exit_key_made;
static __thread thread_rcu_t *self SMP_TLS_IE;
static __thread char self_id SMP_TLS_IE;

static smp_lock_t sent_lock = SMP_LOCK_INIT;
static batch_t *sent_oldest, *sent_newest; // sent_lock
static _Atomic uint64_t pending_blocks, pending_bytes, batches_sent, freed_blocks;
static _Atomic bool stall_warned;

static void record_lock(thread_rcu_t *t) {
  for (unsigned spins = 0; atomic_exchange_explicit(&t->lock, 1, memory_order_acquire); spins++) {
    if (spins < 128) smp_cpu_relax();
    else sched_yield();
  }
}
static void record_unlock(thread_rcu_t *t) { smp_store_release(&t->lock, 0); }

static void batch_freed(struct rcu_head *head) {
  batch_t *b = (batch_t *)head;
  for (uint32_t i = 0; i < b->n; i++) smp_free(b->ptr[i]);
  smp_lock_acquire(&sent_lock);
  if (b->prev) b->prev->next = b->next;
  else sent_oldest = b->next;
  if (b->next) b->next->prev = b->prev;
  else sent_newest = b->prev;
  smp_lock_release(&sent_lock);
  atomic_fetch_sub_explicit(&pending_blocks, b->n, memory_order_relaxed);
  atomic_fetch_sub_explicit(&pending_bytes, b->bytes, memory_order_relaxed);
  atomic_fetch_add_explicit(&freed_blocks, b->n, memory_order_relaxed);
  smp_free(b);
}

// Send batch b (taken out of its record) to its flavour's call_rcu.
static void batch_send(batch_t *b) {
  b->sent_ms = smp_os_now_ms();
  smp_lock_acquire(&sent_lock);
  b->next = NULL;
  b->prev = sent_newest;
  if (sent_newest) sent_newest->next = b;
  else sent_oldest = b;
  sent_newest = b;
  smp_lock_release(&sent_lock);
  atomic_fetch_add_explicit(&batches_sent, 1, memory_order_relaxed);
  uint64_t bytes = atomic_fetch_add_explicit(&pending_bytes, b->bytes, memory_order_relaxed);
  atomic_fetch_add_explicit(&pending_blocks, b->n, memory_order_relaxed);
  if (smp_options.rcu_stall && bytes + b->bytes > smp_options.rcu_stall &&
      !smp_load_relaxed(&stall_warned) && !atomic_exchange(&stall_warned, true))
    smp_debug_warn("smp_free_rcu: more bytes than rcu_stall wait for a grace period",
                   "a reader that never leaves its read-side section, or a QSBR thread that "
                   "never reports a quiescent state?");
  b->flavor->update_call_rcu(&b->head, batch_freed);
}

// Take every batch of flavor (NULL: of every flavour) out of record t, and send them.
static void record_send(thread_rcu_t *t, const struct rcu_flavor_struct *flavor) {
  batch_t *out[FLAVOURS];
  unsigned n = 0;
  record_lock(t);
  for (unsigned i = 0; i < FLAVOURS; i++) {
    if (t->f[i].batch && (flavor == NULL || t->f[i].flavor == flavor)) {
      out[n++] = t->f[i].batch;
      t->f[i].batch = NULL;
      t->f[i].flavor = NULL;
    }
  }
  record_unlock(t);
  for (unsigned i = 0; i < n; i++) batch_send(out[i]);
}

static void thread_exit(void *arg) {
  (void)arg;
  thread_rcu_t *t = self;
  if (t == NULL) return;
  self = NULL;
  record_send(t, NULL);
  smp_store_release(&t->owner, 0);
}

static void fork_prepare(void) { smp_lock_acquire(&registry_lock); }
static void fork_parent(void) { smp_lock_release(&registry_lock); }
static void fork_child(void) {
  smp_lock_release(&registry_lock);
  // The other threads are gone: their records are free for the child's new threads (with
  // whatever partial batches they held), and no lock is held by anyone.
  for (thread_rcu_t *t = smp_load_acquire(&records); t; t = t->next) {
    smp_store_relaxed(&t->lock, 0);
    if (t != self) smp_store_relaxed(&t->owner, 0);
  }
}

// The calling thread's record: a free one taken over, or a new one. NULL without memory.
static SMP_NOINLINE thread_rcu_t *record_acquire(void) {
  uintptr_t me = (uintptr_t)&self_id;
  thread_rcu_t *t;
  for (t = smp_load_acquire(&records); t; t = t->next) {
    uintptr_t none = 0;
    if (smp_load_relaxed(&t->owner) == 0 && smp_cas_acquire(&t->owner, &none, me)) break;
  }
  if (t == NULL) {
    smp_lock_acquire(&registry_lock);
    if (!exit_key_made) {
      exit_key_made = pthread_key_create(&exit_key, thread_exit) == 0;
      pthread_atfork(fork_prepare, fork_parent, fork_child);
    }
    t = smp_os_map(sizeof *t); // a page: records are few (one per thread that defers)
    if (t) {
      smp_store_relaxed(&t->owner, me);
      t->next = smp_load_relaxed(&records);
      smp_store_release(&records, t);
    }
    smp_lock_release(&registry_lock);
    if (t == NULL) return NULL;
  }
  if (exit_key_made) pthread_setspecific(exit_key, t);
  self = t;
  return t;
}

SMP_EXPORT int smp_free_rcu_flavor(void *p, const struct rcu_flavor_struct *flavor) {
  if (p == NULL) return 0;
  // The block's size: from its page class for the default heap's small blocks (free checks
  // them fully when the batch is freed), else smp_usable_size, which reports a pointer that is
  // no live block of ours.
  size_t cls = smp_pagemap_owns(p) ? smp_pagemap_class(p) : 0;
  size_t usable = cls ? smp_class_info[cls].size : smp_usable_size(p);
  thread_rcu_t *t = self ? self : record_acquire();
  if (t == NULL) goto no_memory;
  record_lock(t);
  unsigned i, free_slot = FLAVOURS;
  for (i = 0; i < FLAVOURS && t->f[i].flavor != flavor; i++)
    if (t->f[i].flavor == NULL && free_slot == FLAVOURS) free_slot = i;
  if (i == FLAVOURS) { // this flavour's first block since its last batch went
    if (free_slot == FLAVOURS) goto unlock_no_memory; // a fifth flavour at once
    batch_t *b = smp_malloc(BATCH_BYTES);
    if (b == NULL) goto unlock_no_memory;
    b->flavor = flavor;
    b->n = 0;
    b->bytes = 0;
    b->made_ms = smp_os_now_ms();
    i = free_slot;
    t->f[i].flavor = flavor;
    t->f[i].batch = b;
  }
  batch_t *b = t->f[i].batch;
  b->ptr[b->n++] = p;
  b->bytes += usable;
  if (b->n == BATCH_CAP || (b->n % 32 == 0 && smp_os_now_ms() - b->made_ms >= BATCH_AGE_MS)) {
    t->f[i].batch = NULL;
    t->f[i].flavor = NULL;
    record_unlock(t);
    batch_send(b);
    return 0;
  }
  record_unlock(t);
  return 0;
unlock_no_memory:
  record_unlock(t);
no_memory:
  errno = ENOMEM;
  return ENOMEM;
}

SMP_EXPORT void smp_rcu_flush_flavor(const struct rcu_flavor_struct *flavor) {
  if (self) record_send(self, flavor);
}

SMP_EXPORT void smp_rcu_barrier_flavor(const struct rcu_flavor_struct *flavor) {
  for (thread_rcu_t *t = smp_load_acquire(&records); t; t = t->next) record_send(t, flavor);
  flavor->barrier();
}

SMP_EXPORT int smp_rcu_stats_get(smp_rcu_stats_t *out) {
  if (out == NULL || out->version == 0 || out->size < offsetof(smp_rcu_stats_t, pending_bytes))
    return EINVAL;
  smp_rcu_stats_t s = {.version = SMP_RCU_STATS_VERSION, .size = sizeof s};
  uint64_t partial_blocks = 0, partial_bytes = 0, oldest_partial = 0;
  for (thread_rcu_t *t = smp_load_acquire(&records); t; t = t->next) {
    record_lock(t);
    for (unsigned i = 0; i < FLAVOURS; i++)
      if (t->f[i].batch) {
        partial_blocks += t->f[i].batch->n;
        partial_bytes += t->f[i].batch->bytes;
        if (oldest_partial == 0 || t->f[i].batch->made_ms < oldest_partial)
          oldest_partial = t->f[i].batch->made_ms;
      }
    record_unlock(t);
  }
  s.pending_blocks = smp_load_relaxed(&pending_blocks) + partial_blocks;
  s.pending_bytes = smp_load_relaxed(&pending_bytes) + partial_bytes;
  s.batches = smp_load_relaxed(&batches_sent);
  s.freed_blocks = smp_load_relaxed(&freed_blocks);
  smp_lock_acquire(&sent_lock);
  uint64_t oldest = sent_oldest ? sent_oldest->made_ms : 0;
  smp_lock_release(&sent_lock);
  if (oldest_partial && (oldest == 0 || oldest_partial < oldest)) oldest = oldest_partial;
  uint64_t now = smp_os_now_ms();
  s.oldest_ms = oldest && now > oldest ? now - oldest : 0;
  uint32_t filled = out->size < sizeof s ? out->size : (uint32_t)sizeof s;
  s.size = filled;
  memcpy(out, &s, filled);
  return 0;
}
