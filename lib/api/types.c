// Layer: api. See types.h for the header of a typed block and the counters.
// Registry: entries (allocator memory, 64-aligned, never freed) on one list in registration
// order. Appends and record creation take registry_lock; readers (statistics, smp_type_foreach,
// the JSON) walk the lists with acquire loads and take no lock. A type's own heap
// (SMP_TYPE_OWN_HEAP) is published in its entry by a CAS from NULL (acq_rel) after its marks
// (type_entry, slow_frees) are set, and read with acquire; it is never destroyed, and no block
// of it exists before the CAS. Memory orders: an entry or
// record is filled, then linked with a release store (entry->next, first_entry, e->records), so
// a reader's acquire load sees it whole; t->entry is stored with release after t->slot, and the
// hit paths load it with acquire before the slot. A record changes hands by a CAS of its owner
// from 0 (acquire) after its last owner published its credit and stored 0 (release), so the
// new owner continues from the counts the old one left. Counters are single-writer (relaxed
// load and store by the owner, relaxed loads by readers); charged, high_water, failures and
// the class bits are relaxed atomics, exact once the writers are quiet. stress_types (and its
// ThreadSanitizer run) races readers against writers and threads that hand their records on. An entry outlives its
// definition: when a shared object that defined a type is unloaded, the entry keeps a copy of
// the names (its `ghost` type) and goes on counting the blocks still allocated; a definition of
// the same name loaded again takes the entry back.
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "smpalloc.h"
#include "alloc.h"
#include "debug.h"
#include "doublefree.h"
#include "harden.h"
#include "heap.h"
#include "init.h"
#include "large.h"
#include "options.h"
#include "os.h"
#include "types.h"

#define NAME_MAX_LEN 32
#define DESC_MAX_LEN 96

// One thread's counters for one type. Written only by its owner thread (relaxed load + store);
// read by anyone (relaxed). owner 0: free for another thread to take (after its previous owner
// exited: the counts stay, they are cumulative).
typedef struct type_rec {
  _Atomic uint64_t allocs, frees; // blocks
  _Atomic uint64_t credit;        // freed bytes not yet taken off the entry's charged
  _Atomic uintptr_t owner;        // the owning thread's id (release when given up), or 0
  smp_type_entry_t *entry;
  struct type_rec *next;          // the entry's list (set before publication)
} __attribute__((aligned(64))) type_rec_t;

struct smp_type_entry {
  smp_type_t *_Atomic type;       // the loaded definition, or NULL once unregistered
  smp_type_t ghost;               // names the type after its definition is unloaded
  uint32_t index;                 // registration order: the thread tables' index
  uint32_t flags;
  _Atomic uint64_t charged;       // bytes in use + every record's credit (see types.h)
  _Atomic uint64_t high_water;    // the most charged ever was
  _Atomic uint64_t limit;         // 0: none
  _Atomic uint64_t publish_above; // a free publishes its thread's credit past this (0: a limit,
                                  // or zero-on-free: the free hit path leaves those to
                                  // free_type_publish)
  _Atomic uint64_t failures;
  _Atomic uint64_t large;         // allocations above the small classes
  _Atomic uint64_t classes[2];    // bit c: class c was used
  _Atomic uint8_t class_used[SMP_CLASS_COUNT]; // the same, a byte each: the hit path's test
  type_rec_t *_Atomic records;    // pushed under registry_lock, read acquire
  smp_heap_t *_Atomic heap;       // SMP_TYPE_OWN_HEAP: the type's heap, made on its first
                                  // allocation (CAS from NULL, acq_rel; read acquire)
  smp_type_entry_t *_Atomic next; // registry order, appended under registry_lock
  bool report_at_exit;            // unregistered during exit with blocks left (registry_lock)
  bool reported_at_exit;          // smp_types_report_at_exit named it (registry_lock)
  uint64_t deferred_blocks;       // of its blocks, waiting for a grace period (registry_lock,
  uint64_t deferred_bytes;        //   counted by count_deferred for a report)
  char name[NAME_MAX_LEN];
  char description[DESC_MAX_LEN];
} __attribute__((aligned(64)));

_Atomic bool smp_types_used;
static _Atomic bool own_heaps_made; // a type's own heap exists (release when the first is made)
smp_deferred_visit_t *_Atomic smp_types_deferred_visit;
static uintptr_t header_key; // odd; written once at start-up
static smp_lock_t registry_lock = SMP_LOCK_INIT;
static smp_type_entry_t *_Atomic first_entry;
static smp_type_entry_t *last_entry; // registry_lock
static uint32_t entries;             // registry_lock
// The report of types with blocks left: to a private copy of stderr taken at the first
// registration (a program may close fd 2 and reuse it); during exit, once every destructor ran.
static int warn_fd = -1;             // registry_lock
static _Atomic bool exiting;         // the program is exiting: destructors run for exit
static bool exit_reported;           // registry_lock: smp_types_report_at_exit ran

// Allocator memory for entries and records (registry_lock): never freed, 64-aligned.
static char *meta_next, *meta_end;
static void *meta_alloc(size_t size) {
  size = smp_align_up(size, 64);
  if (meta_next == NULL || (size_t)(meta_end - meta_next) < size) {
    size_t len = 64 * 1024;
    char *m = smp_os_map(len);
    if (m == NULL) return NULL;
    meta_next = m;
    meta_end = m + len;
  }
  void *p = meta_next;
  meta_next += size;
  return p;
}

// ---- the calling thread's records ----

static __thread struct {
  type_rec_t **recs; // indexed by entry index; mapped, cap entries
  size_t cap;
  bool key_set;
} self SMP_TLS_IE;
static __thread char self_id SMP_TLS_IE; // its address names the thread
static pthread_key_t exit_key;
static bool exit_key_valid;

void smp_types_set_exit_key(unsigned key) {
  exit_key = (pthread_key_t)key;
  exit_key_valid = true;
}

#define REC_ADD(field, v) smp_store_relaxed(&(field), smp_load_relaxed(&(field)) + (v))

// The records of the first SMP_TYPE_NEAR types registered sit in an array of the thread's own
// (no table pointer to load, no bound but the constant); the others in the mapped table.
#define SMP_TYPE_NEAR 16
static __thread type_rec_t *near_recs[SMP_TYPE_NEAR] SMP_TLS_IE;

SMP_INLINE type_rec_t *record_at(size_t index) {
  if (SMP_LIKELY(index < SMP_TYPE_NEAR)) return near_recs[index];
  return index < self.cap ? self.recs[index] : NULL;
}
SMP_INLINE type_rec_t *record_of(const smp_type_entry_t *e) { return record_at(e->index); }
// The slot of a registered type t (its entry was loaded with acquire): its entry's index, read
// from t, not from the entry, so the record's lookup does not wait for the entry's load. A type
// with a limit or a heap of its own has SLOT_LIMITED in its slot, so that no record is found
// there: the hit paths leave such a type to the slow ones (which charge exactly, or allocate
// from the type's heap) with no test of their own.
#define SLOT_LIMITED ((uintptr_t)1 << 63)
SMP_INLINE size_t slot_of(const smp_type_t *t) {
  return (size_t)__atomic_load_n(&t->slot, __ATOMIC_RELAXED);
}
static uintptr_t slot_value(const smp_type_entry_t *e) {
  bool slow = smp_load_relaxed(&e->limit) || (e->flags & SMP_TYPE_OWN_HEAP);
  return (uintptr_t)e->index | (slow ? SLOT_LIMITED : 0);
}

static bool table_grow(size_t need) {
  size_t cap = self.cap ? self.cap : 512;
  while (cap <= need) cap *= 2;
  type_rec_t **t = smp_os_map(cap * sizeof *t);
  if (t == NULL) return false;
  if (self.recs) {
    memcpy(t, self.recs, self.cap * sizeof *t);
    smp_os_unmap(self.recs, self.cap * sizeof *t);
  }
  self.recs = t;
  self.cap = cap;
  return true;
}

// The calling thread's record for e: a free one of e's taken over, or a new one. NULL if the
// OS has no memory for it.
static SMP_NOINLINE type_rec_t *record_slow(smp_type_entry_t *e) {
  if (e->index >= SMP_TYPE_NEAR && e->index >= self.cap && !table_grow(e->index)) return NULL;
  uintptr_t me = (uintptr_t)&self_id;
  type_rec_t *r;
  for (r = smp_load_acquire(&e->records); r; r = r->next) {
    uintptr_t none = 0;
    if (smp_load_relaxed(&r->owner) == 0 && smp_cas_acquire(&r->owner, &none, me)) break;
  }
  if (r == NULL) {
    smp_lock_acquire(&registry_lock);
    r = meta_alloc(sizeof *r);
    if (r) {
      r->entry = e;
      smp_store_relaxed(&r->owner, me);
      r->next = smp_load_relaxed(&e->records);
      smp_store_release(&e->records, r);
    }
    smp_lock_release(&registry_lock);
    if (r == NULL) return NULL;
  }
  if (e->index < SMP_TYPE_NEAR) near_recs[e->index] = r;
  else self.recs[e->index] = r;
  if (!self.key_set && exit_key_valid) { // the destructor runs only for a non-NULL value
    pthread_setspecific(exit_key, (void *)1);
    self.key_set = true;
  }
  return r;
}

SMP_INLINE type_rec_t *record(smp_type_entry_t *e) {
  type_rec_t *r = record_of(e);
  return SMP_LIKELY(r != NULL) ? r : record_slow(e);
}

// Give a record up: its credit published, its owner cleared (release: the next owner sees
// its counts).
static void record_release(type_rec_t *r) {
  uint64_t credit = smp_load_relaxed(&r->credit);
  if (credit) {
    atomic_fetch_sub_explicit(&r->entry->charged, credit, memory_order_relaxed);
    smp_store_relaxed(&r->credit, 0);
  }
  smp_store_release(&r->owner, 0);
}

void smp_types_thread_exit(void *arg) {
  (void)arg;
  self.key_set = false; // a later typed call in this thread's destructors sets it again
  for (size_t i = 0; i < SMP_TYPE_NEAR; i++)
    if (near_recs[i]) record_release(near_recs[i]);
  memset(near_recs, 0, sizeof near_recs);
  for (size_t i = 0; i < self.cap; i++)
    if (self.recs[i]) record_release(self.recs[i]);
  if (self.recs) smp_os_unmap(self.recs, self.cap * sizeof *self.recs);
  self.recs = NULL;
  self.cap = 0;
}

// ---- counting ----

// What the other threads freed and have not published (charged exceeds the bytes in use by it):
// a limit set after they freed must not count it.
static uint64_t others_credit(smp_type_entry_t *e, const type_rec_t *mine) {
  uint64_t credit = 0;
  for (type_rec_t *r = smp_load_acquire(&e->records); r; r = r->next)
    if (r != mine) credit += smp_load_relaxed(&r->credit);
  return credit;
}

// Charge n bytes to e for the calling thread: from its credit, else from the shared word
// (limit checked, high-water mark raised). false: over the limit.
static bool charge_slow(smp_type_entry_t *e, type_rec_t *r, uint64_t n) {
  uint64_t credit = smp_load_relaxed(&r->credit), limit = smp_load_relaxed(&e->limit);
  if (limit && credit) { // a limit is exact: the thread's credit is published, not spent
    atomic_fetch_sub_explicit(&e->charged, credit, memory_order_relaxed);
    smp_store_relaxed(&r->credit, 0);
    credit = 0;
  }
  uint64_t need = credit >= n ? 0 : n - credit;
  uint64_t old = smp_load_relaxed(&e->charged), now;
  do {
    now = old + need;
    if (limit && now > limit) {
      uint64_t others = others_credit(e, r); // read while they move: at most now
      if (now - (others < now ? others : now) > limit) return false;
    }
  } while (!atomic_compare_exchange_weak_explicit(&e->charged, &old, now, memory_order_relaxed,
                                                  memory_order_relaxed));
  smp_store_relaxed(&r->credit, credit + need - n);
  uint64_t high = smp_load_relaxed(&e->high_water);
  while (now > high && !atomic_compare_exchange_weak_explicit(&e->high_water, &high, now,
                                                              memory_order_relaxed,
                                                              memory_order_relaxed)) {
  }
  return true;
}

SMP_INLINE bool charge(smp_type_entry_t *e, type_rec_t *r, uint64_t n) {
  uint64_t credit = smp_load_relaxed(&r->credit);
  if (SMP_LIKELY(credit >= n && !smp_load_relaxed(&e->limit))) {
    smp_store_relaxed(&r->credit, credit - n);
    return true;
  }
  return charge_slow(e, r, n);
}

static SMP_NOINLINE void class_first_used(smp_type_entry_t *e, unsigned cls) {
  atomic_fetch_or_explicit(&e->classes[cls >> 6], (uint64_t)1 << (cls & 63), memory_order_relaxed);
  smp_store_relaxed(&e->class_used[cls], 1);
}

// An allocation of class cls (0: large or huge) counted for e by the thread of record r.
SMP_INLINE void count_alloc(smp_type_entry_t *e, type_rec_t *r, unsigned cls) {
  REC_ADD(r->allocs, 1);
  if (SMP_UNLIKELY(cls == 0)) smp_fetch_add_relaxed(&e->large, 1);
  else if (SMP_UNLIKELY(!smp_load_relaxed(&e->class_used[cls]))) class_first_used(e, cls);
}

// A free of e publishes its thread's credit past this: at once for a type with a limit (the limit
// is exact) or cleared when freed (so the free hit path, which takes neither, has one test).
static uint64_t publish_threshold(const smp_type_entry_t *e) {
  return smp_load_relaxed(&e->limit) || (e->flags & SMP_TYPE_ZERO_ON_FREE) ? 0 : SMP_TYPE_CREDIT;
}

SMP_INLINE void count_free(smp_type_entry_t *e, type_rec_t *r, uint64_t n) {
  REC_ADD(r->frees, 1);
  uint64_t credit = smp_load_relaxed(&r->credit) + n;
  if (credit > smp_load_relaxed(&e->publish_above)) {
    atomic_fetch_sub_explicit(&e->charged, credit, memory_order_relaxed);
    credit = 0;
  }
  smp_store_relaxed(&r->credit, credit);
}

// ---- the header ----

SMP_INLINE uintptr_t header_check(uintptr_t word0, const void *p) {
  return (word0 ^ (uintptr_t)p) * header_key;
}

SMP_INLINE void header_write(void *p, smp_type_entry_t *e, unsigned off_log2) {
  uintptr_t *h = (uintptr_t *)((char *)p - SMP_TYPE_HEADER);
  h[0] = (uintptr_t)e | off_log2;
  h[1] = header_check(h[0], p);
}

// The entry named by the header before p if it is a valid one for p and offset log2 off_log2,
// else NULL. p - 16 must be readable.
SMP_INLINE smp_type_entry_t *header_entry(const void *p, unsigned off_log2) {
  const uintptr_t *h = (const uintptr_t *)((const char *)p - SMP_TYPE_HEADER);
  uintptr_t w0 = h[0];
  if (h[1] != header_check(w0, p) || (w0 & 63) != off_log2) return NULL;
  return (smp_type_entry_t *)(w0 & ~(uintptr_t)63);
}

// Per size class, what a typed block of it holds: the class size less the header.
static uint32_t typed_usable[SMP_CLASS_COUNT];

void smp_types_init(uint64_t seed) {
  for (unsigned c = 1; c < SMP_CLASS_COUNT; c++)
    typed_usable[c] = (uint32_t)smp_class_info[c].size - SMP_TYPE_HEADER;
  uint64_t z = seed + 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  header_key = (uintptr_t)(z ^ (z >> 31)) | 1;
}

void smp_types_lock_fork(void) { smp_lock_acquire(&registry_lock); }
void smp_types_unlock_fork(void) { smp_lock_release(&registry_lock); }

// ---- registry ----

static void copy_name(char *to, size_t cap, const char *from) {
  size_t n = from ? strnlen(from, cap - 1) : 0;
  if (n) memcpy(to, from, n);
  to[n] = '\0';
}

// The entry of t, registering t on its first use. NULL (errno EINVAL) if t is not a type made
// by SMP_TYPE_DEFINE, ENOMEM if the OS has no memory for the entry.
static SMP_NOINLINE smp_type_entry_t *register_type(smp_type_t *t) {
  if (t == NULL || t->magic != SMP_TYPE_MAGIC) {
    errno = EINVAL;
    return NULL;
  }
  smp_init_ensure();
  smp_lock_acquire(&registry_lock);
  if (warn_fd < 0) {
    warn_fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 64);
    // Registered from here, not at start-up: the loader registers its destructors' runner when
    // the program starts, after the libraries' constructors (ours may start the allocator) but
    // before main, and exit runs handlers last registered first. A type first used in main
    // thus sees exit begin before any destructor runs; one first used earlier is reported
    // when its destructor runs, as at an unload.
    atexit(smp_types_exiting);
  }
  smp_type_entry_t *e = __atomic_load_n((smp_type_entry_t **)&t->entry, __ATOMIC_ACQUIRE);
  if (e == NULL) { // an unloaded definition of the same names takes its entry back
    for (smp_type_entry_t *x = smp_load_relaxed(&first_entry); x; x = smp_load_relaxed(&x->next)) {
      if (smp_load_relaxed(&x->type) == NULL && x->flags == t->flags &&
          strncmp(x->name, t->name ? t->name : "", NAME_MAX_LEN - 1) == 0 &&
          strncmp(x->description, t->description ? t->description : "", DESC_MAX_LEN - 1) == 0) {
        e = x;
        break;
      }
    }
  }
  if (e == NULL && (e = meta_alloc(sizeof *e)) != NULL) {
    e->index = entries++;
    e->flags = t->flags;
    smp_store_relaxed(&e->publish_above, publish_threshold(e));
    copy_name(e->name, sizeof e->name, t->name ? t->name : "?");
    copy_name(e->description, sizeof e->description, t->description);
    e->ghost = (smp_type_t){SMP_TYPE_MAGIC, t->flags, e->name, e->description, e, e->index, 0};
    if (last_entry) smp_store_release(&last_entry->next, e);
    else smp_store_release(&first_entry, e);
    last_entry = e;
    smp_store_release(&smp_types_used, true);
  }
  if (e) {
    smp_store_release(&e->type, t);
    __atomic_store_n(&t->slot, slot_value(e), __ATOMIC_RELAXED); // before entry:
    __atomic_store_n((smp_type_entry_t **)&t->entry, e, __ATOMIC_RELEASE); // read after it
  }
  smp_lock_release(&registry_lock);
  if (e == NULL) errno = ENOMEM;
  return e;
}

// The entry of t (t a type), registering it on its first use.
static smp_type_entry_t *entry_of(smp_type_t *t) {
  smp_type_entry_t *e = __atomic_load_n((smp_type_entry_t **)&t->entry, __ATOMIC_ACQUIRE);
  return SMP_LIKELY(e != NULL) ? e : register_type(t);
}

// The entry of t if t was registered (never registers). NULL for a type never used.
static smp_type_entry_t *entry_known(const smp_type_t *t) {
  return __atomic_load_n((smp_type_entry_t *const *)&t->entry, __ATOMIC_ACQUIRE);
}

static void stats_of(const smp_type_entry_t *e, const smp_type_t *t, smp_type_stats_t *s) {
  uint64_t allocs = 0, frees = 0, credit = 0;
  *s = (smp_type_stats_t){.version = SMP_TYPE_STATS_VERSION, .size = sizeof *s};
  s->name = t->name;
  s->description = t->description;
  s->flags = t->flags;
  if (e == NULL) {
    s->loaded = 1;
    return;
  }
  for (type_rec_t *r = smp_load_acquire(&((smp_type_entry_t *)e)->records); r; r = r->next) {
    allocs += smp_load_relaxed(&r->allocs);
    frees += smp_load_relaxed(&r->frees);
    credit += smp_load_relaxed(&r->credit);
  }
  // Read thread by thread while blocks move, a difference may dip below zero: that is 0.
  uint64_t charged = smp_load_relaxed(&e->charged);
  s->blocks = allocs > frees ? allocs - frees : 0;
  s->in_use = charged > credit ? charged - credit : 0;
  s->requests = allocs;
  s->frees = frees;
  s->failures = smp_load_relaxed(&e->failures);
  uint64_t high = smp_load_relaxed(&e->high_water);
  s->high_water = high > s->in_use ? high : s->in_use;
  s->limit = smp_load_relaxed(&e->limit);
  s->classes[0] = smp_load_relaxed(&e->classes[0]);
  s->classes[1] = smp_load_relaxed(&e->classes[1]);
  s->large = smp_load_relaxed(&e->large);
  s->loaded = smp_load_relaxed(&e->type) != NULL;
}

// The type a caller sees for entry e: its definition while loaded, else the entry's copy.
static smp_type_t *type_seen(smp_type_entry_t *e) {
  smp_type_t *t = smp_load_acquire(&e->type);
  return t ? t : &e->ghost;
}

static void deferred_one(void *p, void *arg) {
  (void)arg;
  smp_typed_block_t tb;
  if (!smp_types_find(p, &tb)) return;
  tb.entry->deferred_blocks++;
  tb.entry->deferred_bytes += tb.usable;
}

// Each type's blocks that wait for a grace period, into deferred_blocks and deferred_bytes
// (registry_lock).
static void count_deferred(void) {
  for (smp_type_entry_t *e = smp_load_relaxed(&first_entry); e; e = smp_load_relaxed(&e->next))
    e->deferred_blocks = e->deferred_bytes = 0;
  smp_deferred_visit_t *visit = smp_load_acquire(&smp_types_deferred_visit);
  if (visit) visit(deferred_one, NULL);
}

// Type e's blocks left (s, its statistics, read after count_deferred ran) less those waiting
// for a grace period: what a report of blocks still allocated names. Deferred blocks freed
// between the count and the read make it low, never high.
static void left_of(const smp_type_entry_t *e, smp_type_stats_t *s) {
  s->blocks = s->blocks > e->deferred_blocks ? s->blocks - e->deferred_blocks : 0;
  s->in_use = s->in_use > e->deferred_bytes ? s->in_use - e->deferred_bytes : 0;
}

// "smpalloc: type conn: 12 blocks, 4.5 KiB still allocated" (registry_lock).
static void report_left(const smp_type_entry_t *e, const smp_type_stats_t *s) {
  if (warn_fd < 0) return;
  smp_text_t x;
  smp_text_init(&x, warn_fd);
  smp_text_str(&x, "smpalloc: type ");
  smp_text_str(&x, e->name);
  smp_text_str(&x, ": ");
  smp_text_u64(&x, s->blocks, 0);
  smp_text_str(&x, s->blocks == 1 ? " block, " : " blocks, ");
  smp_text_bytes(&x, s->in_use, 0);
  smp_text_str(&x, " still allocated\n");
  smp_text_flush(&x);
}

SMP_EXPORT void smp_type_unregister(smp_type_t *t) {
  if (t == NULL || t->magic != SMP_TYPE_MAGIC) return;
  smp_lock_acquire(&registry_lock);
  smp_type_entry_t *e = entry_known(t);
  if (e && t != &e->ghost && smp_load_relaxed(&e->type) == t) {
    smp_type_stats_t s;
    stats_of(e, t, &s);
    if (s.blocks) { // the deferred ones counted first, so that the count read next excludes
      count_deferred(); // no block freed meanwhile: an under-count, never a false report
      stats_of(e, t, &s);
      left_of(e, &s);
    }
    // At exit, later destructors may still free blocks: the report waits for the last one.
    if (s.blocks && smp_load_relaxed(&exiting) && !exit_reported) e->report_at_exit = true;
    else if (s.blocks && !e->reported_at_exit) report_left(e, &s);
    // t->entry stays: a destructor that runs later (or a thread still running through exit)
    // may free blocks of t by smp_free_type. An unloaded object's t is gone with its memory,
    // and a definition loaded again starts with no entry and takes this one back by name.
    smp_store_release(&e->type, NULL);
  }
  smp_lock_release(&registry_lock);
}

void smp_types_exiting(void) { smp_store_relaxed(&exiting, true); }

void smp_types_report_at_exit(void) {
  smp_lock_acquire(&registry_lock);
  // Types unregistered during exit, and types never unregistered (defined without
  // SMP_TYPE_DEFINE's destructor, or whose destructor runs after this one).
  count_deferred();
  for (smp_type_entry_t *e = smp_load_relaxed(&first_entry); e; e = smp_load_relaxed(&e->next)) {
    if (!e->report_at_exit && smp_load_relaxed(&e->type) == NULL) continue; // reported at unload
    smp_type_stats_t s;
    stats_of(e, &e->ghost, &s);
    left_of(e, &s);
    if (s.blocks) report_left(e, &s);
    e->reported_at_exit = true;
  }
  exit_reported = true;
  smp_lock_release(&registry_lock);
}

// ---- finding a typed block from its pointer ----

// The type whose own heap holds block b (its start in its chunk or mapping), if any.
static smp_type_entry_t *own_heap_entry(const void *b) {
  smp_chunk_t *c = smp_pagemap_find(b);
  smp_pageheap_t *ph = c ? c->heap : smp_large_huge_heap(b);
  return ph && ph->slow_frees ? ((smp_heap_t *)ph->owner)->type_entry : NULL;
}

// Whether small block b of an own heap is live: a block holding its free mark is free only if
// the slow search confirms it (doublefree.h); large blocks and mappings found are live.
static bool own_block_live(const void *b) {
  smp_span_t *s = smp_pagemap_find(b) ? smp_pagemap_span_checked(b) : NULL;
  return s == NULL || s->state != SMP_SPAN_SMALL || !smp_block_is_marked(b) ||
         !smp_doublefree_confirm(s, s->sizeclass, b);
}

bool smp_types_find(const void *p, smp_typed_block_t *out) {
  if (!smp_load_acquire(&smp_types_used) || ((uintptr_t)p & (SMP_MIN_ALIGN - 1)) || p == NULL)
    return false;
  char *b, *outer;
  size_t size;
  if (!smp_alloc_block_around(p, &b, &size, NULL)) return false;
  outer = b;
  // In hardened mode a typed block lies inside a hardened one (harden.h): its header and
  // pointer are the hardened block's user bytes.
  // (With prof alone, a block that was not sampled is a plain one.)
  if (smp_harden_on && !smp_harden_user_of(b, size, &b, &size) && smp_harden_all) return false;
  size_t off = (size_t)((const char *)p - b);
  if (off == 0) { // a block start: typed only as a block of its type's own heap (no header)
    smp_type_entry_t *e = smp_load_acquire(&own_heaps_made) ? own_heap_entry(outer) : NULL;
    if (e == NULL || !own_block_live(outer)) return false;
    *out = (smp_typed_block_t){(void *)b, (char *)p, e, size};
    return true;
  }
  if (off < SMP_TYPE_HEADER || off >= size || (off & (off - 1))) return false;
  smp_type_entry_t *e = header_entry(p, (unsigned)__builtin_ctzll(off));
  if (e == NULL) return false;
  *out = (smp_typed_block_t){(void *)b, (char *)p, e, size - off};
  return true;
}

// Whether p is depth bytes (16 or 32) past the start of a small block confirmed free, and
// inside it: the pointer of a freed typed or hardened block (32: a typed block inside a
// hardened one).
static bool freed_past_header(const void *p, size_t depth) {
  if (((uintptr_t)p & (SMP_MIN_ALIGN - 1)) || (uintptr_t)p < depth || !smp_pagemap_find(p))
    return false;
  // p must lie inside the block depth bytes below it, in p's own span: a block start that
  // follows a free block of depth bytes or less (in its span or the one before) is none.
  const char *b = (const char *)p - depth;
  smp_span_t *s = smp_pagemap_span_checked(p);
  return s && s->state == SMP_SPAN_SMALL && smp_class_info[s->sizeclass].size > depth &&
         b >= smp_span_start(s) && smp_span_is_block(s, b) && smp_block_is_marked(b) &&
         smp_doublefree_confirm(s, s->sizeclass, b);
}

void smp_types_report_freed(const void *p, const char *function) {
  bool freed = false;
  if (smp_harden_on) {
    // Hardened (harden.h): p or, for a typed block, p - 16 is a hardened block's pointer, in
    // the quarantine or, out of it, 16 bytes past a free block's start.
    smp_hardened_t hb;
    const char *inner = (const char *)p - SMP_TYPE_HEADER;
    freed = (smp_harden_find(p, &hb) && hb.quarantined) || freed_past_header(p, 16) ||
            (smp_load_acquire(&smp_types_used) &&
             ((smp_harden_find(inner, &hb) && hb.quarantined) || freed_past_header(p, 32)));
  } else if (smp_load_acquire(&smp_types_used)) {
    freed = freed_past_header(p, 16);
  }
  // A block of a type's own heap, freed: its start holds a mark the search confirms.
  if (!freed && smp_load_acquire(&own_heaps_made) && ((uintptr_t)p & (SMP_MIN_ALIGN - 1)) == 0 &&
      own_heap_entry(p)) {
    smp_span_t *s = smp_pagemap_span_checked(p);
    freed = s && s->state == SMP_SPAN_SMALL && smp_span_is_block(s, p) && !own_block_live(p);
  }
  if (freed) smp_debug_fatal(function, "double free", p);
}

bool smp_types_user_of(void *block, size_t usable, void **user, size_t *user_usable) {
  if (!smp_load_acquire(&smp_types_used)) return false;
  // The header lies just before the pointer, block + 2^k for k from 4 (16 bytes) up to what
  // fits; the check word holds for one k at most.
  for (unsigned k = 4; ((size_t)1 << k) < usable && k < 63; k++) {
    char *p = (char *)block + ((size_t)1 << k);
    if (header_entry(p, k)) {
      *user = p;
      *user_usable = usable - ((size_t)1 << k);
      return true;
    }
  }
  return false;
}

static int uncount_block(void *block, size_t usable, void *arg) {
  (void)arg;
  if (smp_harden_on) { // a typed block lies inside a live hardened one (harden.h)
    char *hardened;
    size_t size;
    if (smp_harden_user_of(block, usable, &hardened, &size))
      block = hardened, usable = size;
    else if (smp_harden_all)
      return 0;
  }
  void *user;
  size_t user_usable;
  if (smp_types_user_of(block, usable, &user, &user_usable)) {
    smp_typed_block_t tb = {block, user, header_entry(user, (unsigned)__builtin_ctzll(
                                             (size_t)((char *)user - (char *)block))),
                            user_usable};
    type_rec_t *r = record(tb.entry);
    if (r) count_free(tb.entry, r, tb.usable);
    if (tb.entry->flags & SMP_TYPE_ZERO_ON_FREE) memset(user, 0, user_usable); // a region's
    ((uintptr_t *)user)[-1] = 0; // memory goes back to its owner: no secret, no header left
  }
  return 0;
}

int smp_types_visit_own_heaps(int (*fn)(void *, size_t, void *), void *arg) {
  if (!smp_load_acquire(&own_heaps_made)) return 0;
  for (smp_type_entry_t *e = smp_load_acquire(&first_entry); e; e = smp_load_acquire(&e->next)) {
    smp_heap_t *h = smp_load_acquire(&e->heap);
    int r = h ? smp_heap_visit_blocks(h, fn, arg) : 0;
    if (r) return r;
  }
  return 0;
}

void smp_types_heap_gone(smp_heap_t *h) {
  if (smp_load_relaxed(&h->typed)) smp_heap_visit_blocks(h, uncount_block, NULL);
}

// ---- allocation ----

// Count a request of e that failed, and fail it with err.
static void *failed(smp_type_entry_t *e, int err) {
  if (e && err != EINVAL) smp_fetch_add_relaxed(&e->failures, 1); // a bad call is no refusal
  errno = err;
  return NULL;
}

// The usable size and class (0: large or huge) of block b, just allocated.
static size_t block_size(const void *b, unsigned *cls) {
  smp_span_t *s = smp_pagemap_find(b) && !smp_harden_on ? smp_pagemap_span_checked(b) : NULL;
  if (s && s->state == SMP_SPAN_SMALL) {
    *cls = s->sizeclass;
    return smp_class_info[*cls].size;
  }
  *cls = 0;
  return smp_alloc_usable(b, "smp_malloc_type");
}

// The heap of e, a type with SMP_TYPE_OWN_HEAP, made on its first allocation (not with
// SMP_NOWAIT: that takes locks and maps memory). Threads that race to make it each make one;
// the first to publish it wins and the others destroy theirs, still empty. NULL with errno set.
static SMP_NOINLINE smp_heap_t *own_heap(smp_type_entry_t *e, unsigned flags) {
  smp_heap_t *h = smp_load_acquire(&e->heap);
  if (SMP_LIKELY(h != NULL)) return h;
  if (flags & SMP_NOWAIT) {
    errno = EAGAIN;
    return NULL;
  }
  char name[sizeof h->name] = "type ";
  copy_name(name + 5, sizeof name - 5, e->name);
  smp_heap_t *made = smp_heap_new(name, 0);
  if (made == NULL) return NULL; // errno ENOMEM
  made->type_entry = e;
  made->pages.slow_frees = true; // free's fast branch for other heaps would not count them
  smp_store_release(&own_heaps_made, true);
  if (atomic_compare_exchange_strong_explicit(&e->heap, &h, made, memory_order_acq_rel,
                                              memory_order_acquire))
    return made;
  smp_heap_delete(made, false);
  return h;
}

// Every typed allocation but the hit path's: size bytes of e from heap h with flags (a type
// with a heap of its own: from that heap, for h the default heap).
static SMP_NOINLINE void *typed_alloc(smp_heap_t *h, size_t size, smp_type_entry_t *e,
                                      unsigned flags) {
  type_rec_t *r = record_of(e);
  if (r == NULL) { // the thread's first use of the type: a record to make (lock, memory)
    if (flags & SMP_NOWAIT) return failed(e, EAGAIN);
    if ((r = record_slow(e)) == NULL) return failed(e, ENOMEM);
  }
  if (h == SMP_HEAP_DEFAULT && (e->flags & SMP_TYPE_OWN_HEAP) && (h = own_heap(e, flags)) == NULL)
    return failed(e, errno);
  bool own = h->type_entry == e; // its heap names the type: no header
  unsigned lg = (flags >> 8) & 63;
  size_t off = own ? 0 : lg > 4 ? (size_t)1 << lg : SMP_TYPE_HEADER;
  if (size > SIZE_MAX - off) {
    if (flags & SMP_NOFAIL) smp_debug_fatal("smp_malloc_type", "out of memory: request too large", NULL);
    return failed(e, ENOMEM);
  }
  void *b = smp_heap_malloc(h, size + off + (size == 0), flags); // see smp_malloc_type
  if (b == NULL) return failed(e, errno);
  unsigned cls;
  size_t bytes = block_size(b, &cls), usable = bytes - off;
  smp_asan_unpoison(b, bytes); // a typed block's usable bytes reach its block's end (asan.h)
  if (!charge(e, r, usable)) {
    // Not counted yet: a block of the type's own heap would be taken for a typed one by free.
    if (own) smp_alloc_free_untyped(b, "smp_malloc_type");
    else smp_free(b);
    if (flags & SMP_NOFAIL) smp_debug_fatal("smp_malloc_type", "type limit reached with SMP_NOFAIL", NULL);
    return failed(e, ENOMEM);
  }
  char *p = (char *)b + off;
  if (!own) {
    if (!smp_load_relaxed(&h->typed)) smp_store_relaxed(&h->typed, true); // see smp_types_heap_gone
    header_write(p, e, lg > 4 ? lg : 4);
  }
  count_alloc(e, r, cls);
  return p;
}

// smp_malloc_type but its hit path (a function of its own, so that the hit path keeps no
// register for it).
// A typed request of heap h: t checked, registered on its first use (not with SMP_NOWAIT:
// registering takes a lock and may map memory).
static void *typed_request(smp_heap_t *h, size_t size, smp_type_t *t, unsigned flags) {
  if (t == NULL || t->magic != SMP_TYPE_MAGIC) return failed(NULL, EINVAL);
  smp_type_entry_t *e = entry_known(t);
  if (e == NULL) {
    if (flags & SMP_NOWAIT) return failed(NULL, EAGAIN);
    if ((e = register_type(t)) == NULL) return NULL; // errno set
  }
  return typed_alloc(h, size, e, flags);
}

static SMP_NOINLINE void *malloc_type_slow(size_t size, smp_type_t *t, unsigned flags) {
  return typed_request(SMP_HEAP_DEFAULT, size, t, flags);
}

// The hit path's request of size bytes, of class cls with the header, when the thread's record
// or credit falls short (a type with a limit or a heap of its own finds no record): a type
// with a heap of its own allocates there; else a block from the front end's slow path, charged
// the slow way (it goes back on failure), its header written, counted.
static SMP_NOINLINE void *typed_finish(size_t size, unsigned cls, smp_type_entry_t *e) {
  if (e->flags & SMP_TYPE_OWN_HEAP) return typed_alloc(SMP_HEAP_DEFAULT, size, e, 0);
  char *b = smp_alloc_class(cls);
  if (b == NULL) return failed(e, ENOMEM);
  type_rec_t *r = record(e);
  uint64_t usable = typed_usable[cls];
  if (r == NULL || !charge_slow(e, r, usable)) {
    smp_block_unmark(b);
    smp_free(b);
    return failed(e, ENOMEM);
  }
  char *p = b + SMP_TYPE_HEADER;
  header_write(p, e, 4);
  count_alloc(e, r, cls);
  return p;
}

// The hit path charged and counted a block of class cls that its front end then did not have:
// the block comes from the front end's slow path (and with no memory, the charge and the count
// are undone: the only time a reader may see requests go back, by the failed one).
static SMP_NOINLINE void *typed_refund_finish(smp_type_entry_t *e, unsigned cls) {
  char *b = smp_alloc_class(cls);
  if (b == NULL) {
    type_rec_t *r = record_of(e);
    REC_ADD(r->credit, typed_usable[cls]);
    smp_store_relaxed(&r->allocs, smp_load_relaxed(&r->allocs) - 1);
    return failed(e, ENOMEM);
  }
  char *p = b + SMP_TYPE_HEADER;
  header_write(p, e, 4);
  return p;
}

// The hit path: a small block of the default heap popped from the front end, charged to the
// thread's credit; anything else (first use, flags, a miss) is typed_alloc's, a charge that
// needs the shared word typed_finish's. Its only calls are tail calls.
SMP_EXPORT void *smp_malloc_type(size_t size, smp_type_t *t, unsigned flags) {
  smp_type_entry_t *e = t && t->magic == SMP_TYPE_MAGIC ? entry_known(t) : NULL;
  // One test for flags 0 and 0 < size <= SMP_SMALL_MAX - 16 (flags sit above size - 1's bits).
  // Size 0 goes the slow way (size - 1 wraps): a 16-byte block would put the pointer at the
  // next block's start.
  if (SMP_LIKELY(e != NULL &&
                 ((size - 1) | (uint64_t)flags << 32) < SMP_ALLOC_LIMIT(typed_max))) {
    unsigned cls = smp_sizeclass_of(size + SMP_TYPE_HEADER);
    // Counted before the pop, so that only e and cls live across it (the rseq sequence needs
    // the other registers): a pop that misses takes its block from the slow path.
    type_rec_t *r = record_at(slot_of(t));
    uint64_t usable = typed_usable[cls], credit;
    if (SMP_UNLIKELY(r == NULL || (credit = smp_load_relaxed(&r->credit)) < usable))
      return typed_finish(size, cls, e); // also a type with a limit or a heap (see slot_of)
    smp_store_relaxed(&r->credit, credit - usable);
    REC_ADD(r->allocs, 1);
    if (SMP_UNLIKELY(!smp_load_relaxed(&e->class_used[cls]))) class_first_used(e, cls);
    char *b = smp_frontend_alloc_fast(cls);
    if (SMP_UNLIKELY(b == NULL)) return typed_refund_finish(e, cls);
    char *p = b + SMP_TYPE_HEADER;
    header_write(p, e, 4); // its word 1 is the block's mark word: no unmark needed
    return p;
  }
  return malloc_type_slow(size, t, flags);
}

SMP_EXPORT void *smp_heap_malloc_type(smp_heap_t *h, size_t size, smp_type_t *t, unsigned flags) {
  if (h == NULL || h == SMP_HEAP_DEFAULT) return smp_malloc_type(size, t, flags);
  return typed_request(h, size, t, flags);
}

// ---- free ----

SMP_NORETURN static void type_mismatch(const char *function, smp_type_entry_t *found,
                                       const smp_type_t *want, const void *p) {
  smp_text_t t;
  smp_text_init(&t, 2);
  smp_text_str(&t, "smpalloc: ");
  smp_text_str(&t, function);
  smp_text_str(&t, ": block of type ");
  smp_text_str(&t, found ? found->name : "(untyped)");
  smp_text_str(&t, ", not of type ");
  smp_text_str(&t, want && want->magic == SMP_TYPE_MAGIC && want->name ? want->name : "(invalid type)");
  smp_text_str(&t, " ");
  smp_text_hex(&t, (uintptr_t)p);
  smp_text_str(&t, "\n");
  smp_text_flush(&t);
  abort();
}

// Account the free of a typed block of e, usable bytes at p, and clear it for a type that asks.
SMP_INLINE void typed_release(smp_type_entry_t *e, void *p, size_t usable) {
  type_rec_t *r = record(e);
  if (SMP_LIKELY(r != NULL)) count_free(e, r, usable);
  // (without memory for a record, the free is not counted: the block must go back all the same)
  if (e->flags & SMP_TYPE_ZERO_ON_FREE) memset(p, 0, usable);
}

void smp_types_free_block(const smp_typed_block_t *tb, const char *function) {
  smp_hardened_t hb;
  if (smp_harden_on && smp_harden_find(tb->block, &hb)) {
    // The hardened block holding it: checked before the type lets it go, its reports naming
    // the program's pointer and the type.
    hb.shown = tb->user;
    hb.type = tb->entry->name;
    smp_harden_check(&hb, function);
  }
  typed_release(tb->entry, tb->user, tb->usable);
  if (tb->user == tb->block) { // its type's own heap: no header; the block goes back untyped
    smp_alloc_free_untyped(tb->block, function);
    return;
  }
  // The check word goes: a header left in a freed block (a large block's free writes no mark,
  // and an aligned block's header lies past the mark) would otherwise still name the type when
  // the block is handed out untyped, to a heap visit or to a second free of the old pointer.
  ((uintptr_t *)tb->user)[-1] = 0;
  smp_free_fast(tb->block);
}

bool smp_types_own_free_fast(smp_chunk_t *c, void *p) {
  unsigned cls = smp_alloc_other_small_class(c, p);
  if (cls == 0) return false;
  typed_release(((smp_heap_t *)c->heap->owner)->type_entry, p, smp_class_info[cls].size);
  smp_alloc_other_small_free(c, p, cls);
  return true;
}

// Every free of a typed block but the hit path's.
static SMP_NOINLINE void free_type_slow(void *p, smp_type_t *t) {
  if (p == NULL) return;
  smp_init_ensure();
  smp_typed_block_t tb;
  if (smp_types_find(p, &tb)) {
    if (t == NULL || tb.entry != entry_known(t)) type_mismatch("smp_free_type", tb.entry, t, p);
    smp_types_free_block(&tb, "smp_free_type");
    return;
  }
  smp_types_report_freed(p, "smp_free_type");
  smp_alloc_usable(p, "smp_free_type"); // reports a pointer that is no live block of ours
  type_mismatch("smp_free_type", NULL, t, p); // a live untyped block
}

// The free hit path's block p (header checked, type t's) when its thread's credit is to be
// published or the type clears its blocks.
static SMP_NOINLINE void free_type_publish(smp_type_entry_t *e, type_rec_t *r, char *p, size_t cls) {
  uint64_t usable = typed_usable[cls];
  count_free(e, r, usable);
  if (e->flags & SMP_TYPE_ZERO_ON_FREE) memset(p, 0, usable);
  char *b = p - SMP_TYPE_HEADER;
  smp_alloc_mark_freed(b, cls);
  if (!smp_frontend_free_fast(b, cls)) smp_frontend_free_slow(b, cls);
}

// The hit path: a block of the default heap's small classes with the plain 16-byte header, of
// type t, freed by a thread that has its record, into the front end. Only tail calls.
SMP_EXPORT void smp_free_type(void *p, smp_type_t *t) {
  char *b = (char *)p - SMP_TYPE_HEADER;
  if (SMP_LIKELY(smp_pagemap_owns(p))) { // NULL is not owned
    size_t cls = smp_pagemap_class(p);
    if (cls == 0) { // not the default heap's small block: of t's own heap?
      smp_chunk_t *c = smp_pagemap_chunk(p);
      if (c->heap->slow_frees && t != NULL && !smp_options.debug && !smp_harden_on &&
          ((smp_heap_t *)c->heap->owner)->type_entry == entry_known(t) &&
          smp_types_own_free_fast(c, p))
        return;
      return free_type_slow(p, t);
    }
    // b's offset in the span, from p's page (b is in p's span unless p starts one: then the
    // offset wraps, the test may pass, and the header check below fails on chunk memory).
    size_t off = smp_pagemap_span_offset(p) - SMP_TYPE_HEADER;
    if (SMP_LIKELY(cls != 0 && smp_sizeclass_on_boundary((unsigned)cls, off))) {
      // p - 16 is a block start, so a header there that checks was written for offset 16 (the
      // block holding it starts there): no need to test the offset bits, and word 0 names an
      // entry (the allocator wrote it).
      const uintptr_t *h = (const uintptr_t *)b;
      uintptr_t w0 = h[0];
      smp_type_entry_t *e = (smp_type_entry_t *)(w0 & ~(uintptr_t)63);
      type_rec_t *r;
      if (SMP_LIKELY(h[1] == header_check(w0, p) && t != NULL && e == entry_known(t) &&
                     (r = record_at(slot_of(t))) != NULL)) {
        uint64_t usable = typed_usable[cls];
        uint64_t credit = smp_load_relaxed(&r->credit) + usable;
        if (SMP_UNLIKELY(credit > smp_load_relaxed(&e->publish_above)))
          return free_type_publish(e, r, p, cls);
        REC_ADD(r->frees, 1);
        smp_store_relaxed(&r->credit, credit);
        smp_alloc_mark_freed(b, cls); // its word 1 held the header's check, never its mark
        if (SMP_LIKELY(smp_frontend_free_fast(b, cls))) return;
        smp_frontend_free_slow(b, cls);
        return;
      }
    }
  }
  free_type_slow(p, t);
}

// ---- realloc ----

void *smp_types_realloc_block(const smp_typed_block_t *tb, void *p, size_t size, smp_heap_t *h,
                              unsigned flags, const char *function) {
  if (size == 0) {
    smp_types_free_block(tb, function);
    return NULL;
  }
  smp_heap_t *from = smp_alloc_heap_of(tb->block);
  if (h == SMP_HEAP_DEFAULT && from->type_entry == tb->entry) h = from; // the default's part
  unsigned lg = (flags >> 8) & 63;
  size_t align = lg > 4 ? (size_t)1 << lg : SMP_MIN_ALIGN;
  if ((h == NULL || h == from) && ((uintptr_t)p & (align - 1)) == 0 && size <= tb->usable &&
      size >= tb->usable / 2)
    return p; // fits, and not worth moving for the space it would give back
  void *q = typed_alloc(h ? h : from, size, tb->entry, flags & ~SMP_ZERO);
  if (q == NULL) return NULL;
  memcpy(q, p, size < tb->usable ? size : tb->usable);
  if ((flags & SMP_ZERO) && size > tb->usable) memset((char *)q + tb->usable, 0, size - tb->usable);
  smp_types_free_block(tb, function);
  return q;
}

SMP_EXPORT void *smp_realloc_type(void *p, size_t size, smp_type_t *t, unsigned flags) {
  if (p == NULL) return smp_malloc_type(size, t, flags);
  smp_init_ensure();
  smp_typed_block_t tb;
  if (!smp_types_find(p, &tb)) {
    smp_types_report_freed(p, "smp_realloc_type");
    smp_alloc_usable(p, "smp_realloc_type"); // reports a pointer that is no live block of ours
    type_mismatch("smp_realloc_type", NULL, t, p);
  }
  if (t == NULL || tb.entry != entry_known(t)) type_mismatch("smp_realloc_type", tb.entry, t, p);
  return smp_types_realloc_block(&tb, p, size, NULL, flags, "smp_realloc_type");
}

// ---- queries ----

SMP_EXPORT smp_type_t *smp_type_of(const void *p) {
  if (p == NULL) return NULL;
  smp_init_ensure();
  smp_typed_block_t tb;
  if (smp_types_find(p, &tb)) return type_seen(tb.entry);
  smp_types_report_freed(p, "smp_type_of");
  smp_alloc_usable(p, "smp_type_of"); // reports a pointer that is no live block of ours
  return NULL;
}

static bool stats_request_valid(const smp_type_stats_t *s) {
  return s != NULL && s->version != 0 && s->size >= offsetof(smp_type_stats_t, in_use);
}

static void stats_copy_out(smp_type_stats_t *out, const smp_type_stats_t *s) {
  uint32_t filled = out->size < sizeof *s ? out->size : (uint32_t)sizeof *s;
  smp_type_stats_t c = *s;
  c.size = filled;
  memcpy(out, &c, filled);
}

SMP_EXPORT int smp_type_stats_get(const smp_type_t *t, smp_type_stats_t *out) {
  if (t == NULL || t->magic != SMP_TYPE_MAGIC || !stats_request_valid(out)) return EINVAL;
  smp_type_stats_t s;
  smp_type_entry_t *e = entry_known(t);
  stats_of(e, e ? type_seen(e) : t, &s);
  stats_copy_out(out, &s);
  return 0;
}

SMP_EXPORT int smp_type_foreach(int (*fn)(const smp_type_t *, const smp_type_stats_t *, void *),
                                void *arg) {
  if (fn == NULL) return EINVAL;
  for (smp_type_entry_t *e = smp_load_acquire(&first_entry); e; e = smp_load_acquire(&e->next)) {
    smp_type_t *t = type_seen(e);
    smp_type_stats_t s;
    stats_of(e, t, &s);
    if (!s.loaded && s.blocks == 0) continue; // unloaded, and nothing of it is left
    int rc = fn(t, &s, arg);
    if (rc) return rc;
  }
  return 0;
}

SMP_EXPORT int smp_type_set_limit(smp_type_t *t, size_t bytes) {
  smp_type_entry_t *e = t && t->magic == SMP_TYPE_MAGIC ? entry_of(t) : NULL;
  if (e == NULL) return t && t->magic == SMP_TYPE_MAGIC ? ENOMEM : EINVAL;
  smp_lock_acquire(&registry_lock); // against a registration writing the slot
  smp_store_relaxed(&e->limit, (uint64_t)bytes);
  smp_store_relaxed(&e->publish_above, publish_threshold(e));
  __atomic_store_n(&e->ghost.slot, slot_value(e), __ATOMIC_RELAXED);
  smp_type_t *def = smp_load_relaxed(&e->type);
  if (def) __atomic_store_n(&def->slot, slot_value(e), __ATOMIC_RELAXED);
  if (t != def) __atomic_store_n(&t->slot, slot_value(e), __ATOMIC_RELAXED);
  smp_lock_release(&registry_lock);
  return 0;
}
