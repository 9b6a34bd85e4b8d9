// Layer: api. RCU-deferred free (include/smpalloc_rcu.h; papers/design.md, "RCU-deferred free").
// Each thread that defers blocks has a record (thread_rcu_t) holding, per RCU flavour it used, a
// partly filled batch: a page-sized array of pointers. A full batch (504 blocks: 4 KiB less the
// 64-byte batch_t; or 1 MiB of blocks, or its first block 100 ms old) is sent with the
// flavour's call_rcu (through liburcu's rcu_flavor_struct, which the caller passes: smpalloc
// does not link liburcu); its callback, after a grace period, frees every block in it and the
// batch. A thread that sends a batch also sends other threads' partial batches of its flavour
// that are 1 s old (stale_send).
// Concurrency. A record is its owner's, except when a thief (smp_rcu_flush_all, smp_rcu_barrier,
// stale_send, the type reports' visit, fork; one at a time, under steal_lock) takes or reads its
// partial batches. They agree as in Dekker's algorithm, on two flags of the record:
//   owner: busy = 1; fence; if (steal) { busy = 0 (release); wait for steal == 0 (acquire) }
//          ... the batches ...; busy = 0 (release)
//   thief: steal = 1; fence; wait for busy == 0 (acquire); ... the batches ...; steal = 0 (release)
// so that never both go on: either the owner sees steal or the thief sees busy. The owner's
// fence is nothing but a compiler barrier, and the thief's a membarrier(PRIVATE_EXPEDITED)
// system call, which runs a full barrier on every CPU running one of our threads (fence_mode,
// chosen once, when the first record is made); where membarrier is not there (old kernels,
// valgrind, seccomp) or under ThreadSanitizer (which knows nothing of it), the owner's store is
// an exchange and the thief's fence a seq_cst fence: the plain Dekker, one atomic per call. If
// membarrier fails later (a seccomp filter installed since), a thief takes only its own record
// and says so once. The releases and acquires above make what one wrote in the batches visible
// to the other. Neither side allocates while it holds a record, and sent_lock (the sent list) is
// a leaf lock that an owner takes inside its record and a thief only after every record it
// waits for is out. A batch leaves its record onto the sent list inside the record, counted in
// `calling` until its call_rcu is done (release), which smp_rcu_barrier waits to see at 0
// (acquire). The statistics read a record's figures (blocks, bytes, age of its batches), which
// whoever holds it stores relaxed, without either flag. Records are linked with a release store
// once filled and walked with acquire loads; a record changes hands by a CAS of its owner from 0
// (acquire) after the exiting owner's release store of 0. Records are never freed: a thread's
// exit sends its batches and gives the record up for the next new thread. stress_rcu (per
// flavour, also under AddressSanitizer, and once without membarrier) checks every byte readers
// see while the updaters take each other's batches and another thread forks; stress_rcu_stall
// the stalled reader, mightsleep and stale sends.
// Fork: the handlers run inside the allocator's (rcu.h): every record held, the sent list
// locked; the child gives up the other threads' records (their partial batches go with the next
// thread that takes one, after a grace period of the child's).
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/membarrier.h>

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
#include "rcu.h"
#include "sizeclass.h"
#include "types.h"

#define BATCH_BYTES 4096
#define FLAVOURS 4                                // flavours one thread may use at once
#define BATCH_SEND_BYTES ((uint64_t)1 << 20) // a batch holding this much goes at once
#define BATCH_AGE_MS 100 // a partial batch this old goes at its thread's next deferral (the
                         // clock is read when the batch holds 2, 4, 8, 16 blocks, then every 32)
#define STALE_MS 1000    // another thread's partial batch this old goes when a batch is sent

typedef struct batch {
  struct rcu_head head;
  const struct rcu_flavor_struct *flavor;
  struct batch *prev, *next; // the sent list (sent_lock)
  uint64_t made_ms;          // its first block's deferral
  uint64_t bytes;            // usable bytes of its blocks
  uint32_t n;
  _Atomic uint32_t done;     // blocks its callback has freed (the type reports skip them)
  void *ptr[];
} batch_t;
#define BATCH_CAP ((BATCH_BYTES - sizeof(batch_t)) / sizeof(void *))

typedef struct thread_rcu {
  _Atomic int busy;  // its owner is at its batches (only the owner writes it)
  _Atomic int steal; // a thief wants them (thieves write it, under steal_lock)
  _Atomic uintptr_t owner; // the owning thread's id, 0: free
  bool marked;             // the thief at it has set steal (steal_lock)
  struct {
    const struct rcu_flavor_struct *_Atomic flavor; // NULL: the slot is free
    batch_t *batch;
    _Atomic uint64_t blocks, bytes, made_ms; // the batch's, for the statistics (0: none)
  } f[FLAVOURS];
  struct thread_rcu *next; // the registry (immutable once published)
} thread_rcu_t;

static smp_lock_t registry_lock = SMP_LOCK_INIT;
static thread_rcu_t *_Atomic records;
static pthread_key_t exit_key;
static bool inited, exit_key_made; // registry_lock
static __thread thread_rcu_t *self SMP_TLS_IE;
static __thread char self_id SMP_TLS_IE;

static smp_lock_t steal_lock = SMP_LOCK_INIT;
static bool fence_mode;           // set once, under registry_lock, before the first record
static _Atomic bool fence_failed; // membarrier refused after it worked: thieves take only theirs

static smp_lock_t sent_lock = SMP_LOCK_INIT;
static batch_t *sent_oldest, *sent_newest; // sent_lock
static _Atomic uint64_t pending_blocks, pending_bytes, batches_sent, freed_blocks;
static _Atomic uint64_t calling; // batches on the sent list whose call_rcu is still to come
static _Atomic bool stall_warned, flush_warned;

// Whether the asymmetric fence works here (see the header).
static bool fence_available(void) {
#if defined(__SANITIZE_THREAD__)
  return false;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
  return false;
#endif
#endif
  int saved = errno;
  bool ok = syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0 &&
            syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0;
  errno = saved;
  return ok;
}

// The owner takes its record: busy, unless a thief is at it (then it waits for the thief).
static inline void record_enter(thread_rcu_t *t) {
  for (;;) {
    if (SMP_LIKELY(fence_mode)) {
      smp_store_relaxed(&t->busy, 1);
      atomic_signal_fence(memory_order_seq_cst); // the thief's membarrier makes it a full fence
    } else {
      atomic_exchange(&t->busy, 1); // seq_cst: the thief's store and load are too
    }
    if (SMP_LIKELY(atomic_load(&t->steal) == 0)) return;
    smp_store_release(&t->busy, 0);
    for (unsigned spins = 0; smp_load_acquire(&t->steal); spins++) {
      if (spins < 128) smp_cpu_relax();
      else sched_yield();
    }
  }
}
static inline void record_leave(thread_rcu_t *t) { smp_store_release(&t->busy, 0); }

static void batch_freed(struct rcu_head *head) {
  batch_t *b = (batch_t *)head;
  // The blocks are cold (deferred a grace period ago) and free reads and writes each one's
  // first words: fetch a few ahead (a prefetch never faults, whatever the pointer). The batch
  // stays on the sent list meanwhile, done telling the type reports which blocks are gone (not
  // sent_lock held throughout: a free of a typed block may take the types' registry lock,
  // which a report holds while it takes sent_lock). A report that reads done = k skips blocks
  // [0, k), all freed, and may count block k as it is freed: blocks left may be under-counted,
  // never reported falsely.
  enum { AHEAD = 8 };
  for (uint32_t i = 0; i < AHEAD && i < b->n; i++) __builtin_prefetch(b->ptr[i], 1);
  for (uint32_t i = 0; i < b->n; i++) {
    if (i + AHEAD < b->n) __builtin_prefetch(b->ptr[i + AHEAD], 1);
    smp_free(b->ptr[i]);
    smp_store_release(&b->done, i + 1);
  }
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

// Take slot i's batch out of record t (its owner inside record_enter, or a thief that holds t)
// and put it on the sent list, counted as pending and as calling: from here on the statistics,
// the type reports and smp_rcu_barrier (which waits for calling to drop to 0) see it. Its
// call_rcu follows with batch_call, outside the record. Returns the batch.
static batch_t *batch_queue(thread_rcu_t *t, unsigned i) {
  batch_t *b = t->f[i].batch;
  t->f[i].batch = NULL;
  smp_store_relaxed(&t->f[i].flavor, NULL);
  smp_store_relaxed(&t->f[i].blocks, 0);
  smp_store_relaxed(&t->f[i].bytes, 0);
  smp_store_relaxed(&t->f[i].made_ms, 0);
  b->done = 0;
  atomic_fetch_add_explicit(&calling, 1, memory_order_relaxed);
  smp_lock_acquire(&sent_lock);
  b->next = NULL;
  b->prev = sent_newest;
  if (sent_newest) sent_newest->next = b;
  else sent_oldest = b;
  sent_newest = b;
  smp_lock_release(&sent_lock);
  atomic_fetch_add_explicit(&batches_sent, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&pending_blocks, b->n, memory_order_relaxed);
  atomic_fetch_add_explicit(&pending_bytes, b->bytes, memory_order_relaxed);
  return b;
}

// Hand batch b (queued) to its flavour's call_rcu.
static void batch_call(batch_t *b) {
  uint64_t pending = smp_load_relaxed(&pending_bytes);
  if (smp_options.rcu_stall && pending > smp_options.rcu_stall &&
      !smp_load_relaxed(&stall_warned) && !atomic_exchange(&stall_warned, true))
    smp_debug_warn("smp_free_rcu: more bytes than rcu_stall wait for a grace period",
                   "a reader that never leaves its read-side section, or a QSBR thread that "
                   "never reports a quiescent state?");
  b->flavor->update_call_rcu(&b->head, batch_freed);
  atomic_fetch_sub_explicit(&calling, 1, memory_order_release);
}

// Queue every batch of flavor (NULL: of every flavour) begun before made_before (ms) of record
// t, into out; returns how many. The caller is t's owner inside record_enter, or a thief that
// holds t; it then calls batch_call on each.
static unsigned record_take(thread_rcu_t *t, const struct rcu_flavor_struct *flavor,
                            uint64_t made_before, batch_t **out) {
  unsigned n = 0;
  for (unsigned i = 0; i < FLAVOURS; i++)
    if (t->f[i].batch && (flavor == NULL || smp_load_relaxed(&t->f[i].flavor) == flavor) &&
        t->f[i].batch->made_ms < made_before)
      out[n++] = batch_queue(t, i);
  return n;
}

// The calling thread sends its own batches of flavor (NULL: all).
static void own_send(thread_rcu_t *t, const struct rcu_flavor_struct *flavor) {
  batch_t *out[FLAVOURS];
  record_enter(t);
  unsigned n = record_take(t, flavor, UINT64_MAX, out);
  record_leave(t);
  for (unsigned i = 0; i < n; i++) batch_call(out[i]);
}

// Whether t's figures show a batch of flavor (NULL: any) begun before made_before: relaxed
// reads, no handshake.
static bool record_has_batch(thread_rcu_t *t, const struct rcu_flavor_struct *flavor,
                             uint64_t made_before) {
  for (unsigned i = 0; i < FLAVOURS; i++) {
    uint64_t made = smp_load_relaxed(&t->f[i].made_ms);
    if (made != 0 && made < made_before &&
        (flavor == NULL || smp_load_relaxed(&t->f[i].flavor) == flavor))
      return true;
  }
  return false;
}

// A thief's work, as the header says: steal_begin takes steal_lock, sets steal on every other
// thread's record whose figures show a batch of flavor begun before made_before (all of them
// if all), and fences; false if membarrier failed (then no record may be taken). steal_wait(t)
// waits until a marked record's owner is out, after which the thief holds it until
// steal_release(t). steal_end releases the marked records left, and steal_lock. Only records
// with a batch, unless all: a deferral that happened before steal_begin stored its figures
// before it returned (taking the others too would also starve their owners, whom a thief that
// loops keeps out). A thief never holds sent_lock while it waits for an owner (an owner takes
// it when it queues a batch).
static bool steal_begin(const struct rcu_flavor_struct *flavor, uint64_t made_before, bool all) {
  smp_lock_acquire(&steal_lock);
  for (thread_rcu_t *t = smp_load_acquire(&records); t; t = t->next) {
    t->marked = t != self && (all || record_has_batch(t, flavor, made_before));
    if (t->marked) atomic_store(&t->steal, 1); // seq_cst: the plain Dekker's store
  }
  if (!fence_mode) {
    atomic_thread_fence(memory_order_seq_cst);
    return true;
  }
  int saved = errno;
  bool ok = !smp_load_relaxed(&fence_failed) &&
            syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0;
  errno = saved;
  if (!ok) smp_store_relaxed(&fence_failed, true);
  return ok;
}
static void steal_wait(thread_rcu_t *t) {
  for (unsigned spins = 0; atomic_load(&t->busy); spins++) { // seq_cst, and an acquire
    if (spins < 128) smp_cpu_relax();
    else sched_yield();
  }
}
static void steal_release(thread_rcu_t *t) {
  t->marked = false;
  smp_store_release(&t->steal, 0);
}
static void steal_end(void) {
  for (thread_rcu_t *t = smp_load_acquire(&records); t; t = t->next)
    if (t->marked) steal_release(t);
  smp_lock_release(&steal_lock);
}

// Send the other threads' batches of flavor begun before made_before. Returns false if
// membarrier failed, so that none went.
static bool others_send(const struct rcu_flavor_struct *flavor, uint64_t made_before) {
  bool ok = steal_begin(flavor, made_before, false);
  for (thread_rcu_t *t = smp_load_acquire(&records); ok && t; t = t->next) {
    if (!t->marked) continue;
    steal_wait(t);
    batch_t *out[FLAVOURS];
    unsigned n = record_take(t, flavor, made_before, out);
    steal_release(t);
    for (unsigned i = 0; i < n; i++) batch_call(out[i]);
  }
  steal_end();
  return ok;
}

// Every thread's batches of flavor, the caller's own included.
static bool all_send(const struct rcu_flavor_struct *flavor) {
  if (self) own_send(self, flavor);
  return others_send(flavor, UINT64_MAX);
}

// After the calling thread sent a batch of flavor: other threads' partial batches of flavor
// begun STALE_MS ago or more go too, so that a thread that stopped deferring does not keep its
// blocks while others defer. A walk of the records' figures (relaxed loads) per batch sent.
static SMP_NOINLINE void stale_send(const struct rcu_flavor_struct *flavor) {
  uint64_t now = smp_os_now_ms();
  if (now < STALE_MS) return;
  for (thread_rcu_t *t = smp_load_acquire(&records); t; t = t->next)
    if (t != self && record_has_batch(t, flavor, now - STALE_MS)) {
      others_send(flavor, now - STALE_MS);
      return;
    }
}

// Call each(p, arg) for every pointer deferred and not yet freed: in the records' batches (as a
// thief holds them) and on the sent list (with sent_lock, taken once every record is held, so
// that no batch moves from a record to the list meanwhile: each is seen once; a batch whose
// callback runs shows only the blocks it has not freed). Where membarrier fails, other threads'
// partial batches are left out. For the reports of types' blocks left (types.h).
static void record_visit(thread_rcu_t *t, void (*each)(void *p, void *arg), void *arg) {
  for (unsigned i = 0; i < FLAVOURS; i++)
    for (uint32_t k = 0; t->f[i].batch && k < t->f[i].batch->n; k++)
      each(t->f[i].batch->ptr[k], arg);
}

static void pending_visit(void (*each)(void *p, void *arg), void *arg) {
  bool ok = steal_begin(NULL, UINT64_MAX, false);
  for (thread_rcu_t *t = smp_load_acquire(&records); ok && t; t = t->next)
    if (t->marked) steal_wait(t);
  smp_lock_acquire(&sent_lock);
  for (thread_rcu_t *t = smp_load_acquire(&records); ok && t; t = t->next)
    if (t->marked) record_visit(t, each, arg);
  if (self) record_visit(self, each, arg); // the caller owns it, and is not inside smp_free_rcu
  for (batch_t *b = sent_oldest; b; b = b->next)
    for (uint32_t k = smp_load_acquire(&b->done); k < b->n; k++) each(b->ptr[k], arg);
  smp_lock_release(&sent_lock);
  steal_end();
}

static void thread_exit(void *arg) {
  (void)arg;
  thread_rcu_t *t = self;
  if (t == NULL) return;
  self = NULL;
  own_send(t, NULL);
  smp_store_release(&t->owner, 0);
}

// Fork (called inside the allocator's handlers, init.c; rcu.h): every record held, as a thief holds
// it, so that none is half written, then the sent list's lock; the child gives up the other
// threads' records. A batch queued and not yet handed to call_rcu when the fork came stays on
// the child's list, pending (its blocks are the child's copies, never freed there).
void smp_rcu_fork_prepare(void) {
  smp_lock_acquire(&registry_lock);
  bool ok = steal_begin(NULL, UINT64_MAX, true);
  for (thread_rcu_t *t = smp_load_acquire(&records); ok && t; t = t->next)
    if (t->marked) steal_wait(t);
  smp_lock_acquire(&sent_lock);
}
void smp_rcu_fork_parent(void) {
  smp_lock_release(&sent_lock);
  steal_end();
  smp_lock_release(&registry_lock);
}
void smp_rcu_fork_child(void) {
  smp_lock_release(&sent_lock);
  for (thread_rcu_t *t = smp_load_acquire(&records); t; t = t->next) {
    t->marked = false;
    smp_store_relaxed(&t->busy, 0);
    smp_store_relaxed(&t->steal, 0);
    if (t != self) smp_store_relaxed(&t->owner, 0);
  }
  smp_store_relaxed(&calling, 0);
  smp_lock_release(&steal_lock);
  smp_lock_release(&registry_lock);
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
    if (!inited) {
      inited = true;
      exit_key_made = pthread_key_create(&exit_key, thread_exit) == 0;
      fence_mode = fence_available(); // before any record is published (release below)
      smp_store_release(&smp_types_deferred_visit, pending_visit);
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

// Slot of flavor in record t (its owner inside record_enter), or FLAVOURS; *free_slot: the
// first free one (FLAVOURS: none).
static inline unsigned slot_of(thread_rcu_t *t, const struct rcu_flavor_struct *flavor,
                               unsigned *free_slot) {
  *free_slot = FLAVOURS;
  for (unsigned i = 0; i < FLAVOURS; i++) {
    const struct rcu_flavor_struct *f = smp_load_relaxed(&t->f[i].flavor);
    if (f == flavor) return i;
    if (f == NULL && *free_slot == FLAVOURS) *free_slot = i;
  }
  return FLAVOURS;
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
  record_enter(t);
  unsigned free_slot, i = slot_of(t, flavor, &free_slot);
  if (i == FLAVOURS) { // this flavour's first block since its last batch went
    if (free_slot == FLAVOURS) goto leave_no_memory; // a fifth flavour at once
    // The batch is allocated outside the record, so that a thief never waits for malloc (nor
    // a fork for a lock it holds). Thieves only take batches, so the slot stays free.
    record_leave(t);
    batch_t *b = smp_malloc(BATCH_BYTES);
    if (b == NULL) goto no_memory;
    b->flavor = flavor;
    b->n = 0;
    b->bytes = 0;
    b->made_ms = smp_os_now_ms();
    record_enter(t);
    i = free_slot;
    t->f[i].batch = b;
    smp_store_relaxed(&t->f[i].flavor, flavor);
    smp_store_relaxed(&t->f[i].made_ms, b->made_ms);
  }
  batch_t *b = t->f[i].batch;
  b->ptr[b->n++] = p;
  b->bytes += usable;
  if (b->n == BATCH_CAP || b->bytes >= BATCH_SEND_BYTES ||
      (((b->n & (b->n - 1)) == 0 || b->n % 32 == 0) &&
       smp_os_now_ms() - b->made_ms >= BATCH_AGE_MS)) {
    batch_queue(t, i);
    record_leave(t);
    batch_call(b);
    if (smp_load_relaxed(&records)->next) stale_send(flavor); // more than one record
    return 0;
  }
  smp_store_relaxed(&t->f[i].blocks, b->n);
  smp_store_relaxed(&t->f[i].bytes, b->bytes);
  record_leave(t);
  return 0;
leave_no_memory:
  record_leave(t);
no_memory:
  errno = ENOMEM;
  return ENOMEM;
}

SMP_EXPORT void smp_free_rcu_mightsleep_flavor(void *p, const struct rcu_flavor_struct *flavor) {
  int saved = errno;
  if (smp_free_rcu_flavor(p, flavor) == 0) return;
  flavor->update_synchronize_rcu(); // no reader that could see p is left
  smp_free(p);
  errno = saved;
}

SMP_EXPORT void smp_rcu_flush_flavor(const struct rcu_flavor_struct *flavor) {
  if (self) own_send(self, flavor);
}

SMP_EXPORT int smp_rcu_flush_all_flavor(const struct rcu_flavor_struct *flavor) {
  if (all_send(flavor)) return 0;
  if (!atomic_exchange(&flush_warned, true))
    smp_debug_warn("smp_rcu_flush_all, smp_rcu_barrier: membarrier refused (a seccomp filter?)",
                   "other threads' partly filled batches go when they defer again, flush, or "
                   "exit; barriers do not wait for them");
  return EPERM;
}

SMP_EXPORT void smp_rcu_barrier_flavor(const struct rcu_flavor_struct *flavor) {
  smp_rcu_flush_all_flavor(flavor);
  // A batch an owner queued before this call may not be with call_rcu yet (its thread between
  // the queue and the call): the flavour's barrier waits only for callbacks already there.
  for (unsigned spins = 0; smp_load_acquire(&calling); spins++) {
    if (spins < 128) smp_cpu_relax();
    else sched_yield();
  }
  flavor->barrier();
}

SMP_EXPORT int smp_rcu_stats_get(smp_rcu_stats_t *out) {
  if (out == NULL || out->version == 0 || out->size < offsetof(smp_rcu_stats_t, pending_bytes))
    return EINVAL;
  smp_rcu_stats_t s = {.version = SMP_RCU_STATS_VERSION, .size = sizeof s};
  uint64_t partial_blocks = 0, partial_bytes = 0, oldest_partial = 0;
  for (thread_rcu_t *t = smp_load_acquire(&records); t; t = t->next)
    for (unsigned i = 0; i < FLAVOURS; i++) {
      partial_blocks += smp_load_relaxed(&t->f[i].blocks);
      partial_bytes += smp_load_relaxed(&t->f[i].bytes);
      uint64_t made = smp_load_relaxed(&t->f[i].made_ms);
      if (made && (oldest_partial == 0 || made < oldest_partial)) oldest_partial = made;
    }
  s.pending_blocks = smp_load_relaxed(&pending_blocks) + partial_blocks;
  s.pending_bytes = smp_load_relaxed(&pending_bytes) + partial_bytes;
  s.batches = smp_load_relaxed(&batches_sent);
  s.freed_blocks = smp_load_relaxed(&freed_blocks);
  uint64_t oldest = 0; // the list is in sending order, not in age: a stale batch goes late
  smp_lock_acquire(&sent_lock);
  for (batch_t *b = sent_oldest; b; b = b->next)
    if (oldest == 0 || b->made_ms < oldest) oldest = b->made_ms;
  smp_lock_release(&sent_lock);
  if (oldest_partial && (oldest == 0 || oldest_partial < oldest)) oldest = oldest_partial;
  uint64_t now = smp_os_now_ms();
  s.oldest_ms = oldest && now > oldest ? now - oldest : 0;
  uint32_t filled = out->size < sizeof s ? out->size : (uint32_t)sizeof s;
  s.size = filled;
  memcpy(out, &s, filled);
  return 0;
}
