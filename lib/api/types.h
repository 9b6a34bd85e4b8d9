// Layer: api. Malloc types (smpalloc.h, "Malloc types"): the registry of types, their
// per-thread counters, and the header that makes a block typed.
//
// A typed block is an ordinary block of any heap, with the pointer handed out `off` bytes past
// its start (off = 16, or the alignment asked for when larger) and a 16-byte header just before
// that pointer:
//   word 0: the type's entry (64-aligned allocator memory, never freed) | log2(off)
//   word 1: (word 0 ^ pointer) * key, key a per-process odd secret
// (A type with SMP_TYPE_OWN_HEAP has no header on its blocks of the default heap: they come
// from an internal heap of the type's, whose chunks name it: types.c, own_heap.)
// Because the pointer is not a block start, plain free's fast path never takes a typed block
// (its boundary test fails): malloc and free pay nothing for types, and a free of a typed block
// reaches the slow path, which finds the header. The check word makes the header certain: it
// holds only at the address it was written for, and only a program that knew the key could
// forge it, so an interior pointer or a freed block (whose word 1 then holds the free mark) is
// never taken for a typed block.
//
// Counters: each (thread, type) pair has a record written only by its thread (relaxed loads and
// stores: no atomic read-modify-write), summed by readers without locks. Bytes in use also go
// through one shared word per type, `charged` = bytes in use + every record's `credit` (bytes its
// thread freed and has not published yet): an allocation takes from its thread's credit first
// and only charges the shared word (a CAS that also enforces the limit and raises the
// high-water mark) when the credit is short; a free adds to the credit and publishes it once it
// passes SMP_TYPE_CREDIT (at once for a type with a limit). So charged >= in use at every
// moment, the high-water mark (the largest charged) is never below the true peak and exceeds it
// by at most the credit the other threads held, and a thread that frees and allocates the same
// type touches no shared line.
#ifndef SMP_TYPES_H
#define SMP_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "smpalloc.h"
#include "compiler.h"

#define SMP_TYPE_HEADER 16
#define SMP_TYPE_CREDIT ((uint64_t)64 * 1024)

typedef struct smp_type_entry smp_type_entry_t;

// A live typed block, resolved from its pointer.
typedef struct smp_typed_block {
  void *block;             // the block's start (what its heap handed out)
  char *user;              // the pointer the program holds (block + off)
  smp_type_entry_t *entry; // its type
  size_t usable;           // bytes usable from the pointer on (smp_usable_size)
} smp_typed_block_t;

// Whether any type was ever registered (no typed block can exist before).
extern SMP_HIDDEN _Atomic bool smp_types_used;

// Blocks that wait for an RCU grace period (smp_free_rcu, rcu.c) are freed as far as the program
// is concerned: the reports of blocks left (at exit, at unload) leave them out. rcu.c sets this
// to its visit of every pointer still pending, before its first deferral.
typedef void smp_deferred_visit_t(void (*each)(void *p, void *arg), void *arg);
extern SMP_HIDDEN smp_deferred_visit_t *_Atomic smp_types_deferred_visit;

// Start-up: the check word's key, from the process seed.
void smp_types_init(uint64_t seed);
// Fork: the registry lock (after the report's).
void smp_types_lock_fork(void);
void smp_types_unlock_fork(void);
// Exit: the program's atexit handlers are running (types unregistered from now on are reported
// by smp_types_report_at_exit, once every destructor ran), and that report (the allocator's
// last destructor; a type unregistered later is reported at once).
void smp_types_exiting(void);
void smp_types_report_at_exit(void);
// Thread exit (pthread key destructor): publish the thread's credits and give its records up.
void smp_types_thread_exit(void *arg);
void smp_types_set_exit_key(unsigned key);

// Whether p (not NULL) is the pointer of a live typed block; if so *out describes it. Never
// reports: a caller that finds nothing goes on with its own checks. Cheap for a pointer that
// is a block start (the common case where a slow path asks) unless a type's own heap
// (SMP_TYPE_OWN_HEAP) holds it: its live blocks are that type's, at offset 0.
bool smp_types_find(const void *p, smp_typed_block_t *out);
// Whether block (a live block start of usable bytes, from a heap visit) is a typed block; if
// so, the pointer the program holds and its usable size.
bool smp_types_user_of(void *block, size_t usable, void **user, size_t *user_usable);
// Heap h is about to be destroyed with its blocks: its typed blocks count as freed (a visit
// of its blocks, only for a heap that ever had a typed block).
void smp_types_heap_gone(struct smp_heap *h);
// Visit the blocks of every type's own heap (SMP_TYPE_OWN_HEAP) with fn, as
// smp_heap_visit_blocks does; the first non-zero return of fn stops it and is returned. These
// heaps are never destroyed, so the walk takes no lock of the registry's.
int smp_types_visit_own_heaps(int (*fn)(void *, size_t, void *), void *arg);
// Free p, a pointer in chunk c of a type's own heap (SMP_TYPE_OWN_HEAP), if it is a small block
// start that holds no free mark: counted for the type, into the thread's cache of the heap.
// false for anything else, which the complete path resolves. Not hardened, not debug:1.
bool smp_types_own_free_fast(struct smp_chunk *c, void *p);
// Report p as a double free (and abort) if it is the pointer of a typed or hardened block
// freed before: 16 bytes past the start of a block that is confirmed free. Returns otherwise.
void smp_types_report_freed(const void *p, const char *function);
// The slow paths of plain free, realloc and smp_usable_size for a typed block found by
// smp_types_find: free it (its type's counters right), resize it keeping its type, its usable
// size.
void smp_types_free_block(const smp_typed_block_t *tb, const char *function);
// h: the heap to resize into (NULL: the block's own).
void *smp_types_realloc_block(const smp_typed_block_t *tb, void *p, size_t size,
                              struct smp_heap *h, unsigned flags, const char *function);

#endif
