// Layer: api. Hardening (SMPALLOC_OPTIONS junk, zero_free, redzone, quarantine, leaks): a layer
// between the program and the heaps that finds writes after free, overflows, double frees and
// leaks. The sampling profiler (prof.h) hardens the requests it samples, and no others.
//
// Fill mode: with junk or zero_free alone (none of redzone, quarantine, leaks), malloc's small
// requests get plain blocks of the default heap, as without the options, and only the other
// requests (large, aligned, typed, other heaps) hardened blocks. Such a plain block is filled
// where it passes through the slow paths: smp_alloc_limits sends malloc to
// smp_alloc_malloc_slow, which pops it from the front end, checks its free pattern and fills it
// (smp_harden_fill_alloc; with zero_free alone there is nothing to do there, and requests up to
// table_max keep malloc's hit path: smp_harden_free_only); free's hit-path test divides by
// smp_alloc_hit_magic, all zeros in this mode, so every free reaches smp_free_slow, which
// fills the block (smp_harden_fill_free) and pushes it. No header, no heap slow path: the
// fills are the cost. The free pattern covers the block past its first 16 bytes (the
// allocator's words), the trailer its last 8 (blocks of 32 bytes or more); reports name the
// block's start, which is the program's pointer.
//
// With any of redzone, quarantine or leaks on, every block the program gets is a hardened block: a block of
// its heap, asked for with room for a 16-byte header before the pointer and a canary after the
// requested bytes, the pointer handed out `off` bytes past the block's start (16, or the
// alignment asked for when larger; 32 with leaks or prof, whose two stack ids come first):
//   [start .. start+off-16)   alignment padding (only when off > 16)
//   [ptr-16 .. ptr)           header: word 0 = size | log2(off) << 48 | state << 56,
//                             word 1 = (word 0 ^ ptr) * key, key a per-process odd secret
//   [ptr .. ptr+size)         the program's bytes (malloc_usable_size says size: nothing more)
//   [ptr+size .. end)         canary (redzone:N asks N bytes of it; the block's slack is too)
// realloc resizes a hardened block in place when the new size fits (smp_harden_resize): the
// header's size and the canary move.
// As with typed blocks (types.h), the pointer is never a block start, so the hit paths of free
// never take a hardened block: they send it to the slow path, which finds the header. malloc's
// hit path takes none either: smp_alloc_limits sends every request but one of 0 bytes to
// smp_alloc_malloc_slow, and the 16-byte class a request of 0 bytes pops is one hardened blocks
// never use (their smallest block is 32 bytes), so that pop misses and reaches
// smp_alloc_small_slow. The hit paths keep their instructions; only their limits are loaded.
// (In fill mode and under prof alone plain blocks use that class, so the pop may hit: a block
// for 0 bytes needs no fill. The process's very first request, made before start-up set the
// limits, gets a block freshly carved, whose trailer carving cleared.)
//
// A freed block is checked (header state, canary), then cleared (zero_free) or filled with
// 0xdeadc0de (junk), then held in the quarantine or given back to its heap. A junk-filled small
// block ends in a trailer word, (start ^ size) * key2, that says the block holds the free
// pattern: when its heap hands it out again the pattern is checked, and a byte that changed is
// a write after free. The trailer makes that certain: it is written only by a free here, the
// block's last word is never written by the allocator while the block is free (its links and
// mark are its first 16 bytes), and carving a span clears its blocks' trailers (span.c), so no
// trailer survives from a block of another life of the span's pages.
#ifndef SMP_HARDEN_H
#define SMP_HARDEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compiler.h"

struct smp_heap;

// Set once at start-up, before the first block. all: redzone, quarantine or leaks is on (or
// memcheck runs), and every block the program gets is a hardened block. fill: junk or zero_free
// without those (fill mode, above). on: all, fill, or prof (whose sampled blocks alone are
// hardened, prof.h): a pointer may be a hardened block's.
// plain_small: on but not all, so that malloc's small requests get plain blocks (fill mode, or
// the profiler's unsampled requests). free_only: fill mode with zero_free alone (no junk, no
// prof), where a block handed out needs nothing (it was cleared when freed): malloc's requests
// up to the class table's limit keep their hit path, and only frees take the fill route.
extern SMP_HIDDEN bool smp_harden_on, smp_harden_all, smp_harden_fill, smp_harden_plain_small,
    smp_harden_free_only;

// A hardened block found from its pointer.
typedef struct smp_hardened {
  char *start;       // the block its heap handed out
  size_t bytes;      // that block's size
  char *user;        // the pointer the program holds
  size_t size;       // the bytes it asked for
  bool quarantined;  // freed, waiting in the quarantine (the program must not touch it)
  bool small;        // a block of a small span (its trailer and reuse check apply)
  const char *shown; // for reports: the program's pointer when not user (a typed block's), or NULL
  const char *type;  // for reports: the type of the typed block inside, or NULL
} smp_hardened_t;

// Start-up, after the options: whether hardening is on, its keys.
void smp_harden_init(uint64_t seed);
// The bytes to ask a heap for, for size bytes aligned to align (a power of two of at least
// 16); false if that overflows.
bool smp_harden_block_size(size_t size, size_t align, size_t *bytes);
// Make start (a block just handed out by a heap, asked with smp_harden_block_size's bytes) a
// hardened block of size bytes aligned to align, zeroed if asked (zeroed: the heap handed it
// out zeroed already); its pointer. A small block that holds the free pattern is checked first
// (a write after free is reported). record: its stack is recorded (with leaks or prof; else
// it is marked unsampled, and no profile or leak report counts it).
void *smp_harden_finish(void *start, size_t size, size_t align, bool zero, bool zeroed,
                        bool record, const char *function);
// Fill mode: the plain small block at block (bytes long, its class's size) is freed: filled
// with the free pattern and its trailer (junk), or cleared (zero_free alone).
void smp_harden_fill_free(void *block, size_t bytes);
// Fill mode: the plain small block at block is handed out: with junk, a block that holds the
// free pattern (its trailer says so) is checked (a write after free is reported), then the
// block is filled with the allocation pattern.
void smp_harden_fill_alloc(void *block, size_t bytes, const char *function);
// Whether p is the pointer of a hardened block (live or quarantined); if so *out describes it.
// Never reports; certain (the header's check word).
bool smp_harden_find(const void *p, smp_hardened_t *out);
// Whether the block at start (bytes long, from a heap visit or smp_alloc_block_around) is a live
// hardened block: its pointer and size.
bool smp_harden_user_of(char *start, size_t bytes, char **user, size_t *size);
// Report hb (from smp_harden_find) if it is freed (a double free) or its canary was written (an
// overflow).
void smp_harden_check(const smp_hardened_t *hb, const char *function);
// Resize the live hardened block hb in place to size bytes (checked first; new bytes zeroed if
// zero, else filled as a new block's): false if size does not fit in its block, or would leave
// more than half of it unused.
bool smp_harden_resize(const smp_hardened_t *hb, size_t size, bool zero, const char *function);
// Free the hardened block hb (from smp_harden_find), checked first.
void smp_harden_free(const smp_hardened_t *hb, const char *function);
// Heap h is to be destroyed: first (before it is marked dead, before any visit of it), the
// quarantine lets its blocks go, so that no free gives one back to it from then on; last, the
// headers of its blocks are cleared (smp_harden_heap_gone).
void smp_harden_heap_dying(struct smp_heap *h);
void smp_harden_heap_gone(struct smp_heap *h);
// A visit of a heap's blocks (smp_heap_visit) runs between these: meanwhile no block leaves the
// quarantine (its callback may free, and an eviction would change the heap under the visit).
void smp_harden_visit_begin(void);
void smp_harden_visit_end(void);
// Trim: every block leaves the quarantine (checked) for its heap, which may then return memory.
void smp_harden_drain(void);
// Exit: with junk:1, the blocks still in the quarantine are checked for writes after free.
void smp_harden_at_exit(void);
// Live hardened blocks per stack id (arrays of SMP_CALLSTACK_SLOTS), blocks waiting for an RCU
// grace period left out; estimate (if not NULL) divides each block's size by the probability
// that prof sampled it at period bytes.
typedef struct smp_harden_tally {
  uint64_t *blocks, *bytes;
  double *estimate;
  uint64_t period;
} smp_harden_tally_t;
void smp_harden_tally_live(smp_harden_tally_t *t);
// The ids with blocks in t, largest in bytes first, into order (SMP_CALLSTACK_SLOTS); how many.
uint32_t smp_harden_tally_order(const smp_harden_tally_t *t, uint32_t *order);
// Exit, with leaks: every block still allocated, grouped by the stack that allocated it, largest
// first, to stderr (leaks:1) or the file leaks names.
void smp_harden_report_leaks(void);
// Fork: the quarantine's lock (after the types', before the heaps'); the child's state.
void smp_harden_lock_fork(void);
void smp_harden_unlock_fork(void);
void smp_harden_forked(void);

#endif
