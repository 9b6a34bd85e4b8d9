// Layer: api. See harden.h.
// The quarantine is one FIFO ring for the process under one lock (a mutex, held for a few
// stores): a free pushes its block and pops the oldest ones while the ring holds more than its
// bytes, then, outside the lock, checks them and gives them back to their heaps.
// Invariant: a block popped from the ring is counted in `inflight` until it is back in its heap.
// The count is raised under the lock, once per batch popped (relaxed: the lock orders it before
// any later holder), and lowered with release after the batch's blocks are back; smp_harden_heap_dying and
// smp_harden_visit_begin take the lock (so no new pop of the heap's blocks, or none at all, can
// follow), then wait for inflight 0 with acquire, which orders every release into a heap before
// its destruction or visit. ci/test.sh's hardened pass runs stress_heaps_churn (heaps destroyed
// while other threads free into the quarantine) and the visit and stats stress tests.
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// Valgrind's client requests, where its headers are installed (Debian's valgrind package):
// without them smpalloc builds as before, and memcheck sees none of its blocks.
#if defined(__has_include) && __has_include(<valgrind/valgrind.h>) && !defined(SMP_NO_VALGRIND)
#include <valgrind/valgrind.h>
#define SMP_VALGRIND 1
#else
#define SMP_VALGRIND 0
#define RUNNING_ON_VALGRIND 0
#define VALGRIND_MALLOCLIKE_BLOCK(addr, size, rz, zeroed) ((void)0)
#define VALGRIND_FREELIKE_BLOCK(addr, rz) ((void)0)
#define VALGRIND_RESIZEINPLACE_BLOCK(addr, old, size, rz) ((void)0)
#endif

#include "alloc.h"
#include "callstack.h"
#include "debug.h"
#include "doublefree.h"
#include "harden.h"
#include "heap.h"
#include "options.h"
#include "prof.h"
#include "os.h"
#include "span.h"
#include "types.h"

#define HEADER 16 // the header; also the first bytes of a free block, which are the allocator's
#define SIZE_BITS 48
#define SIZE_MASK (((uint64_t)1 << SIZE_BITS) - 1)
#define STATE_LIVE 1u
#define STATE_QUARANTINED 2u
#define SMALLEST_BLOCK 32      // a header and at least one byte: never the 16-byte class
#define ALLOC_JUNK 0xa5
#define FREE_JUNK 0xdeadc0deu
#define CANARY 0xfd
#define NOT_SAMPLED UINT64_MAX // a block's stack id when prof (in fill mode) did not sample it

bool smp_harden_on, smp_harden_all, smp_harden_fill, smp_harden_plain_small, smp_harden_free_only;
// Under valgrind's memcheck every block is hardened (the allocator's own words, the header and a free
// block's links, then lie outside the bytes the program gets) and memcheck is told of each.
static bool on_valgrind;
static size_t header_room = HEADER;    // 32 with leaks: the stack ids before the header
static unsigned header_room_log2 = 4;
static int leaks_fd = -1;              // where the leak report goes (leaks: 1 or a path)
static uintptr_t header_key = 0x9e3779b97f4a7c15ull; // odd; set at start-up
static uintptr_t trailer_key = 0xbf58476d1ce4e5b9ull; // odd; set at start-up

typedef struct quarantined {
  char *user;        // NULL: its heap was destroyed
  smp_heap_t *heap;
  size_t bytes;      // its block's size, what it counts against the quarantine
  unsigned kind;     // 0 small, 1 large, 2 huge: its heap's counters (heap.h)
} quarantined_t;

// The heap's statistics count q's block apart from those in use (delta 1), or no more (-1).
// Only under the quarantine's lock, so a load and a store suffice (no locked add: each free
// would pay two); readers of statistics load them relaxed.
static void account(const quarantined_t *q, int delta) {
  _Atomic uint64_t *blocks = &q->heap->quarantined_blocks[q->kind];
  _Atomic uint64_t *bytes = &q->heap->quarantined_bytes[q->kind];
  smp_store_relaxed(blocks, smp_load_relaxed(blocks) + (uint64_t)(int64_t)delta);
  smp_store_relaxed(bytes, smp_load_relaxed(bytes) + (uint64_t)((int64_t)delta * (int64_t)q->bytes));
}

static struct {
  smp_lock_t lock;
  quarantined_t *ring; // mapped at the first free
  size_t cap, head, count, bytes;
  unsigned visits;     // heap visits running: nothing leaves meanwhile (see smp_harden_visit_begin)
  _Atomic unsigned inflight; // popped, being checked and given back outside the lock
} quar = {SMP_LOCK_INIT, NULL, 0, 0, 0, 0, 0, 0};

void smp_harden_init(uint64_t seed) {
  bool leaks = smp_options.leaks[0] && strcmp(smp_options.leaks, "0") != 0;
  // memcheck only (its preload is in the environment valgrind gives the program): other tools,
  // such as callgrind counting instructions (bench/instructions.py), see the allocator as it is.
  const char *preload = smp_os_getenv("LD_PRELOAD");
  on_valgrind = RUNNING_ON_VALGRIND != 0 && preload && strstr(preload, "vgpreload_memcheck");
  smp_harden_all = smp_options.redzone || smp_options.quarantine || leaks || on_valgrind;
  smp_harden_fill = !smp_harden_all && (smp_options.junk || smp_options.zero_free);
  smp_harden_on = smp_harden_all || smp_harden_fill || smp_prof_on;
  smp_harden_plain_small = smp_harden_on && !smp_harden_all;
  smp_harden_free_only = smp_harden_fill && !smp_options.junk && !smp_prof_on;
  if (leaks || smp_prof_on) { // blocks record their stacks
    header_room = 2 * HEADER;
    header_room_log2 = 5;
  }
  if (leaks) leaks_fd = strcmp(smp_options.leaks, "1") == 0 ? 2 : 0; // a path: opened at exit
  uint64_t a = (seed ^ 0x6a09e667f3bcc909ull) * 0xd6e8feb86659fd93ull;
  header_key = (uintptr_t)(a ^ (a >> 32)) | 1;
  trailer_key = (uintptr_t)((a >> 17) * 0x9e3779b97f4a7c15ull) | 1;
  // Carving clears the trailers of its blocks (see harden.h).
  smp_span_carve_clears_trailer = smp_harden_on && smp_options.junk;
}

void smp_harden_lock_fork(void) { smp_lock_acquire(&quar.lock); }
void smp_harden_unlock_fork(void) { smp_lock_release(&quar.lock); }
void smp_harden_forked(void) {
  // The threads that were giving blocks back or visiting heaps are not in the child (their
  // blocks stay out of its heaps): nothing may wait for them there.
  smp_store_relaxed(&quar.inflight, 0);
  quar.visits = 0;
}

static size_t offset_for(size_t align) { return align > header_room ? align : header_room; }

// With leaks, the two words before the header: the stacks that allocated the block and, once
// it is quarantined, that freed it (only where the free pattern does not cover them: a block
// at the usual offset, whose first 16 bytes they are).
static uint64_t *stacks_of(char *user) { return (uint64_t *)user - 4; }

bool smp_harden_block_size(size_t size, size_t align, size_t *bytes) {
  // At least a byte past the pointer even for size 0, so that the pointer is inside its block
  // (at its end it would be the next block's start, which free's hit path takes).
  size_t extra = offset_for(align) + smp_options.redzone + (size == 0);
  if (size > SIZE_MASK || size > SIZE_MAX - extra) return false;
  size_t n = size + extra;
  *bytes = n < SMALLEST_BLOCK ? SMALLEST_BLOCK : n;
  return true;
}

// ---- header and trailer ----

static uintptr_t check_of(uintptr_t w0, const char *user) {
  return (w0 ^ (uintptr_t)user) * header_key;
}
static void header_write(char *user, size_t size, size_t off, unsigned state) {
  uintptr_t w0 = (uintptr_t)size | (uintptr_t)__builtin_ctzll(off) << SIZE_BITS |
                 (uintptr_t)state << 56;
  ((uintptr_t *)user)[-2] = w0;
  ((uintptr_t *)user)[-1] = check_of(w0, user);
}
static void header_clear(char *user) { ((uintptr_t *)user)[-1] = 0; }

// The header at user, if it was written for user, is off bytes into its block and fits in
// bytes: its state (0: none).
static unsigned header_state(const char *user, size_t off, size_t bytes, size_t *size) {
  uintptr_t w0 = ((const uintptr_t *)user)[-2];
  if (((const uintptr_t *)user)[-1] != check_of(w0, user)) return 0;
  unsigned state = (unsigned)(w0 >> 56);
  *size = w0 & SIZE_MASK;
  if ((w0 >> SIZE_BITS & 63) != (unsigned)__builtin_ctzll(off) || *size > bytes - off ||
      (state != STATE_LIVE && state != STATE_QUARANTINED))
    return 0;
  return state;
}

static uintptr_t trailer_of(const char *start, size_t bytes) {
  return ((uintptr_t)start ^ bytes) * trailer_key;
}
static uintptr_t *trailer_at(char *start, size_t bytes) {
  return (uintptr_t *)(start + bytes) - 1;
}

// Whether the block at start is a small one (its trailer and reuse check apply).
static bool is_small(const void *start) {
  smp_span_t *s = smp_pagemap_find(start) ? smp_pagemap_span_checked(start) : NULL;
  return s && s->state == SMP_SPAN_SMALL;
}

// ---- reports ----

static void put_heap(smp_text_t *t, const void *start) {
  smp_heap_t *h = smp_alloc_heap_of(start);
  smp_text_str(t, ", heap \"");
  smp_text_str(t, h ? h->name : "?");
  smp_text_str(t, "\"");
}

static __thread const char *report_stacks SMP_TLS_IE; // see with_stacks

// "smpalloc: <function>: <what>: block <user> of <size> bytes (<class>), heap <name>, type
// <type>: <detail> at offset <offset> (byte <found>, expected <expected>)", then abort. type and
// detail may be NULL.
SMP_NORETURN SMP_COLD static void report(const char *function, const char *what, const char *user,
                                         const char *start, size_t size, const char *type,
                                         const char *detail, size_t offset, unsigned found,
                                         unsigned expected) {
  smp_text_t t;
  smp_text_init(&t, 2);
  smp_text_str(&t, "smpalloc: ");
  smp_text_str(&t, function);
  smp_text_str(&t, ": ");
  smp_text_str(&t, what);
  smp_text_str(&t, ": block ");
  smp_text_hex(&t, (uintptr_t)user);
  smp_text_str(&t, " of ");
  smp_text_u64(&t, size, 0);
  smp_text_str(&t, " bytes");
  if (is_small(start)) {
    smp_span_t *s = smp_pagemap_span_checked(start);
    smp_text_str(&t, " (size class ");
    smp_text_u64(&t, s->sizeclass, 0);
    smp_text_str(&t, ", ");
    smp_text_u64(&t, smp_class_info[s->sizeclass].size, 0);
    smp_text_str(&t, "-byte blocks)");
  }
  put_heap(&t, start);
  if (type) {
    smp_text_str(&t, ", type ");
    smp_text_str(&t, type);
  }
  if (detail) {
    smp_text_str(&t, ": ");
    smp_text_str(&t, detail);
    smp_text_str(&t, " at offset ");
    smp_text_u64(&t, offset, 0);
    smp_text_str(&t, " (byte 0x");
    static const char hex[] = "0123456789abcdef";
    char b[2] = {hex[found >> 4 & 15], hex[found & 15]};
    smp_text_put(&t, b, 2);
    smp_text_str(&t, ", expected 0x");
    b[0] = hex[expected >> 4 & 15], b[1] = hex[expected & 15];
    smp_text_put(&t, b, 2);
    smp_text_str(&t, ")");
  }
  smp_text_str(&t, "\n");
  if (report_stacks) {
    const uint64_t *ids = (const uint64_t *)report_stacks - 4; // stacks_of
    // A quarantined block keeps its freeing stack only at the usual offset (stacks_of).
    bool usual = report_stacks - (const char *)start == (ptrdiff_t)header_room;
    size_t dummy;
    unsigned state = header_state(report_stacks, (size_t)(report_stacks - start), SIZE_MAX, &dummy);
    if (ids[0] < SMP_CALLSTACK_SLOTS && (state == STATE_LIVE || usual)) {
      smp_text_str(&t, "  allocated at:\n");
      smp_callstack_print(&t, (uint32_t)ids[0], "    ");
    }
    if (state == STATE_QUARANTINED && usual && ids[1] && ids[1] < SMP_CALLSTACK_SLOTS) {
      smp_text_str(&t, "  freed at:\n");
      smp_callstack_print(&t, (uint32_t)ids[1], "    ");
    }
  }
  smp_text_flush(&t);
  abort();
}

// Before the checks of a hardened block: with leaks, a report prints its stacks.
static void with_stacks(const smp_hardened_t *hb) {
  if (header_room > HEADER) report_stacks = hb->user;
}

// ---- fills and checks ----

#define FREE_JUNK_WORD ((uint64_t)FREE_JUNK << 32 | FREE_JUNK)

// Fills and checks go 64 bytes at a time through 16-byte vectors (GCC's vector extension: SSE2
// on x86-64, NEON on aarch64), then by words; both ends are 8-aligned (see junk_end), so a
// vector may straddle 16 bytes: it is declared with 8-byte alignment.
typedef uint64_t vec2_t __attribute__((vector_size(16), aligned(8), may_alias));
static const vec2_t FREE_JUNK_VEC = {FREE_JUNK_WORD, FREE_JUNK_WORD};

static void fill_free_pattern(char *from, char *to) {
  char *p = from;
  for (; to - p >= 64; p += 64) {
    vec2_t *v = (vec2_t *)p;
    v[0] = FREE_JUNK_VEC, v[1] = FREE_JUNK_VEC, v[2] = FREE_JUNK_VEC, v[3] = FREE_JUNK_VEC;
  }
  for (uint64_t *w = (uint64_t *)p; (char *)w < to; w++) *w = FREE_JUNK_WORD;
}
static unsigned free_pattern_byte(const char *at) {
  return (FREE_JUNK >> 8 * ((uintptr_t)at & 3)) & 0xff; // from a 4-aligned fill start
}
// The first byte in [from, to) (both 8-aligned) that is not the free pattern, or NULL. 64 bytes
// at a time without a branch per word, then the chunk that differs byte by byte.
static const char *free_pattern_broken(const char *from, const char *to) {
  const char *p = from;
  for (; to - p >= 64; p += 64) {
    const vec2_t *v = (const vec2_t *)p;
    vec2_t diff = (v[0] ^ FREE_JUNK_VEC) | (v[1] ^ FREE_JUNK_VEC) | (v[2] ^ FREE_JUNK_VEC) |
                  (v[3] ^ FREE_JUNK_VEC);
    if (diff[0] | diff[1]) break;
  }
  for (const uint64_t *w = (const uint64_t *)p; (const char *)w < to; w++)
    if (*w != FREE_JUNK_WORD)
      for (const char *b = (const char *)w;; b++)
        if ((unsigned char)*b != free_pattern_byte(b)) return b;
  return NULL;
}

#define ALLOC_JUNK_WORD 0xa5a5a5a5a5a5a5a5ull
static const vec2_t ALLOC_JUNK_VEC = {ALLOC_JUNK_WORD, ALLOC_JUNK_WORD};

// free_pattern_broken and the allocation fill in one pass: [from, to) (8-aligned) is checked 64
// bytes at a time and each chunk found whole is filled with 0xa5 at once (it is in L1 then).
// Returns the first byte that is not the pattern (the bytes before it are filled), or NULL.
static const char *free_pattern_swap(char *from, char *to) {
  char *p = from;
  for (; to - p >= 64; p += 64) {
    vec2_t *v = (vec2_t *)p;
    vec2_t diff = (v[0] ^ FREE_JUNK_VEC) | (v[1] ^ FREE_JUNK_VEC) | (v[2] ^ FREE_JUNK_VEC) |
                  (v[3] ^ FREE_JUNK_VEC);
    if (diff[0] | diff[1]) return free_pattern_broken(p, to);
    v[0] = ALLOC_JUNK_VEC, v[1] = ALLOC_JUNK_VEC, v[2] = ALLOC_JUNK_VEC, v[3] = ALLOC_JUNK_VEC;
  }
  for (uint64_t *w = (uint64_t *)p; (char *)w < to; w++) {
    if (*w != FREE_JUNK_WORD) return free_pattern_broken((char *)w, to);
    *w = ALLOC_JUNK_WORD;
  }
  return NULL;
}

// The parts of a freed block the free pattern covers: padding before the header, then from the
// pointer to the trailer (small) or over the whole 8-byte words of the requested bytes (large).
// Fills and checks go by words: both ends are 8-aligned.
static char *junk_end(char *start, size_t bytes, char *user, size_t size, bool small) {
  return small ? (char *)trailer_at(start, bytes) : user + (size & ~(size_t)7);
}

static void check_free_pattern(char *start, size_t bytes, char *user, size_t size, bool small,
                               const char *function, const char *when) {
  const char *bad = free_pattern_broken(start + HEADER, user - HEADER);
  if (bad == NULL) bad = free_pattern_broken(user, junk_end(start, bytes, user, size, small));
  if (bad && bad < user) // the alignment padding: offset from the block's start
    report(function, when, user, start, size, NULL, "its padding written after free, from its start",
           (size_t)(bad - start), (unsigned char)*bad, free_pattern_byte(bad));
  if (bad)
    report(function, when, user, start, size, NULL, "written after free", (size_t)(bad - user),
           (unsigned char)*bad, free_pattern_byte(bad));
}

// The pointer a report names (a typed block's, inside the hardened one), and its bytes.
static const char *shown_of(const smp_hardened_t *hb) { return hb->shown ? hb->shown : hb->user; }
static size_t shown_size(const smp_hardened_t *hb) {
  return hb->size - (size_t)(shown_of(hb) - hb->user);
}

static void check_canary(const smp_hardened_t *hb, const char *function) {
  const char *from = hb->user + hb->size, *to = hb->start + hb->bytes;
  for (const char *p = from; p < to; p++)
    if ((unsigned char)*p != CANARY)
      report(function, "buffer overflow", shown_of(hb), hb->start, shown_size(hb), hb->type,
             "written past its end", (size_t)(p - shown_of(hb)), (unsigned char)*p, CANARY);
}

// ---- allocation ----

void *smp_harden_finish(void *block, size_t size, size_t align, bool zero, bool zeroed,
                        bool record, const char *function) {
  char *start = block, *found;
  size_t bytes;
  bool small;
  if (!smp_alloc_block_around(start, &found, &bytes, &small) || found != start)
    smp_debug_fatal(function, "hardening: a heap handed out a block it does not know", block);
  if (smp_options.junk && small) {
    uintptr_t *trailer = trailer_at(start, bytes);
    if (*trailer == trailer_of(start, bytes)) {
      // Freed here with the pattern, and not touched by the allocator since: the pattern must
      // be whole. The pointer it had is not known; its usual one (16 bytes in) is reported.
      const char *bad = free_pattern_broken(start + HEADER, (const char *)trailer);
      if (bad)
        report(function, "write after free", start + HEADER, start, bytes - HEADER, NULL,
               "written after free", (size_t)(bad - (start + HEADER)), (unsigned char)*bad,
               free_pattern_byte(bad));
      *trailer = 0;
    }
  }
  size_t off = offset_for(align);
  char *user = start + off;
  header_write(user, size, off, STATE_LIVE);
  if (header_room > HEADER && !record) { // prof in fill mode: a block it did not sample
    stacks_of(user)[0] = NOT_SAMPLED;
  } else if (header_room > HEADER) { // leaks, prof
    uint32_t id = smp_callstack_capture();
    stacks_of(user)[0] = id;
    if (smp_prof_on) smp_callstack_note_alloc(id, size ? size : 1); // weighs a byte, as sampled
  }
  if (zero) {
    if (!zeroed) memset(user, 0, size);
  } else if (smp_options.junk) {
    memset(user, ALLOC_JUNK, size);
  }
  if (smp_options.redzone) memset(user + size, CANARY, bytes - off - size);
  if (on_valgrind) VALGRIND_MALLOCLIKE_BLOCK(user, size, 0, zero);
  return user;
}

// ---- fill mode's plain blocks ----

// Blocks of 32 bytes or more end in a trailer; the allocator's words are a free block's first 16.
#define FILL_TRAILER_MIN 32

void smp_harden_fill_free(void *block, size_t bytes) {
  char *b = block;
  if (!smp_options.junk) { // zero_free alone
    memset(b, 0, bytes);
    return;
  }
  if (bytes < FILL_TRAILER_MIN) {
    fill_free_pattern(b, b + bytes);
    return;
  }
  uintptr_t *trailer = trailer_at(b, bytes);
  fill_free_pattern(b, (char *)trailer);
  *trailer = trailer_of(b, bytes);
}

void smp_harden_fill_alloc(void *block, size_t bytes, const char *function) {
  char *b = block;
  if (!smp_options.junk) return; // zero_free alone: cleared when freed
  if (bytes >= FILL_TRAILER_MIN) {
    uintptr_t *trailer = trailer_at(b, bytes);
    if (*trailer == trailer_of(b, bytes)) { // freed with the pattern: it must be whole
      const char *bad = free_pattern_swap(b + HEADER, (char *)trailer); // and filled
      if (bad)
        report(function, "write after free", b, b, bytes, NULL, "written after free",
               (size_t)(bad - b), (unsigned char)*bad, free_pattern_byte(bad));
      ((uint64_t *)b)[0] = ALLOC_JUNK_WORD, ((uint64_t *)b)[1] = ALLOC_JUNK_WORD;
      *trailer = ALLOC_JUNK_WORD; // no stale trailer while the block is live
      return;
    }
  }
  memset(b, ALLOC_JUNK, bytes); // the trailer too
}

// ---- finding ----

bool smp_harden_find(const void *p, smp_hardened_t *out) {
  if (!smp_harden_on || ((uintptr_t)p & (HEADER - 1)) || p == NULL) return false;
  char *start;
  size_t bytes, size;
  bool small;
  if (!smp_alloc_block_around(p, &start, &bytes, &small)) return false;
  size_t off = (size_t)((const char *)p - start);
  if (off < header_room || (off & (off - 1))) return false;
  unsigned state = header_state(p, off, bytes, &size);
  if (state == 0) return false;
  *out = (smp_hardened_t){start, bytes, (char *)p, size, state == STATE_QUARANTINED, small, NULL, NULL};
  return true;
}

bool smp_harden_user_of(char *start, size_t bytes, char **user, size_t *size) {
  for (unsigned k = header_room_log2; ((size_t)1 << k) < bytes && k < 63; k++) {
    char *p = start + ((size_t)1 << k);
    size_t n;
    unsigned state = header_state(p, (size_t)1 << k, bytes, &n);
    if (state == STATE_LIVE) {
      *user = p;
      *size = n;
      return true;
    }
    if (state) return false; // quarantined: freed as far as the program knows
  }
  return false;
}

// ---- free ----

// Give the block back to its heap: the header goes first (no stale header names the block).
static void release(char *start, char *user, bool small) {
  // memcheck: the program's bytes are freed now (every access of ours to them came before).
  if (on_valgrind) VALGRIND_FREELIKE_BLOCK(user, 0);
  // A small block under junk:1 gets the pattern where its header was too (past its first 16
  // bytes, where its reuse check looks: the header of an aligned block).
  if (smp_options.junk && user - start > HEADER && small)
    fill_free_pattern(user - HEADER, user);
  else
    header_clear(user);
  size_t cls = smp_alloc_small_class_of(start);
  if (cls != 0) { // the default heap's small block: free's own hit path
    smp_alloc_mark_freed(start, cls);
    if (!smp_frontend_free_fast(start, (unsigned)cls)) smp_frontend_free_slow(start, (unsigned)cls);
    return;
  }
  smp_alloc_free_block(start, "free");
}

// A block leaves the quarantine: its pattern must be whole (junk), then it goes back.
static void evict(const quarantined_t *q) {
  smp_hardened_t hb;
  if (!smp_harden_find(q->user, &hb) || !hb.quarantined)
    smp_debug_fatal("free", "hardening: a quarantined block lost its header", q->user);
  if (smp_options.junk)
    check_free_pattern(hb.start, hb.bytes, hb.user, hb.size, hb.small, "free",
                       "write after free");
  release(hb.start, hb.user, hb.small);
}

// Pop the oldest block into *out (lock held, count > 0); false if it needs no eviction (its heap
// was destroyed). The caller counts the blocks it popped in flight before it lets the lock go
// (hold_popped), and evict_outside gives them back.
static bool pop_oldest(quarantined_t *out) {
  quarantined_t q = quar.ring[quar.head];
  quar.head = (quar.head + 1) % quar.cap;
  quar.count--;
  quar.bytes -= q.bytes;
  if (q.user == NULL) return false;
  account(&q, -1);
  *out = q;
  return true;
}

// Check and give back blocks popped under the lock, outside it (the lock stays short: pushes
// from every thread wait on it). smp_harden_heap_dying and smp_harden_visit_begin wait for
// inflight to reach 0, so no eviction runs into a heap being destroyed or visited.
static void evict_outside(const quarantined_t *q, unsigned n) {
  for (unsigned i = 0; i < n; i++) evict(&q[i]);
  if (n) atomic_fetch_sub_explicit(&quar.inflight, n, memory_order_release); // after every release
}

// The n blocks just popped are in flight (lock held: one add for the batch).
static void hold_popped(unsigned n) {
  if (n) smp_fetch_add_relaxed(&quar.inflight, n);
}

static void wait_inflight(void) {
  while (smp_load_acquire(&quar.inflight) != 0) sched_yield();
}

#define EVICT_BATCH 16

static void quarantine_push(const smp_hardened_t *hb) {
  quarantined_t in = {hb->user, smp_alloc_heap_of(hb->start), hb->bytes,
                      hb->small ? 0 : smp_pagemap_find(hb->start) ? 1 : 2};
  quarantined_t out[EVICT_BATCH];
  unsigned n = 0;
  smp_lock_acquire(&quar.lock);
  if (quar.ring == NULL) {
    size_t cap = smp_options.quarantine / SMALLEST_BLOCK + 1;
    quar.ring = smp_os_map(cap * sizeof(quarantined_t));
    if (quar.ring == NULL) { // no memory for the ring: the block goes back at once
      smp_lock_release(&quar.lock);
      release(hb->start, hb->user, hb->small);
      return;
    }
    quar.cap = cap;
  }
  if (quar.count == quar.cap && quar.visits) { // full, and nothing may leave now
    smp_lock_release(&quar.lock);
    release(hb->start, hb->user, hb->small);
    return;
  }
  if (quar.count == quar.cap && pop_oldest(&out[n])) n++; // full of small blocks
  quar.ring[(quar.head + quar.count) % quar.cap] = in;
  quar.count++;
  quar.bytes += in.bytes;
  account(&in, 1);
  for (;;) {
    while (n < EVICT_BATCH && quar.count && quar.bytes > smp_options.quarantine && !quar.visits)
      if (pop_oldest(&out[n])) n++;
    bool more = quar.count && quar.bytes > smp_options.quarantine && !quar.visits;
    hold_popped(n);
    smp_lock_release(&quar.lock);
    evict_outside(out, n);
    if (!more) return;
    n = 0;
    smp_lock_acquire(&quar.lock);
  }
}

void smp_harden_check(const smp_hardened_t *hb, const char *function) {
  with_stacks(hb);
  if (hb->quarantined)
    report(function, "double free", shown_of(hb), hb->start, shown_size(hb), hb->type, NULL, 0, 0, 0);
  if (smp_options.redzone) check_canary(hb, function);
  report_stacks = NULL;
}

bool smp_harden_resize(const smp_hardened_t *hb, size_t size, bool zero, const char *function) {
  size_t off = (size_t)(hb->user - hb->start);
  if (hb->quarantined || size == 0 || size > hb->bytes - off - smp_options.redzone ||
      size < (hb->bytes - off) / 2)
    return false; // it does not fit, or it would keep too much room for too little
  smp_harden_check(hb, function); // its canary, before the bytes move
  if (size > hb->size) {
    if (zero)
      memset(hb->user + hb->size, 0, size - hb->size);
    else if (smp_options.junk)
      memset(hb->user + hb->size, ALLOC_JUNK, size - hb->size);
  }
  header_write(hb->user, size, off, STATE_LIVE);
  if (smp_options.redzone) memset(hb->user + size, CANARY, hb->bytes - off - size);
  if (on_valgrind) VALGRIND_RESIZEINPLACE_BLOCK(hb->user, hb->size, size, 0);
  return true;
}

void smp_harden_free(const smp_hardened_t *hb, const char *function) {
  smp_harden_check(hb, function);
  bool small = hb->small;
  if (smp_options.junk) {
    fill_free_pattern(hb->start + HEADER, hb->user - HEADER);
    fill_free_pattern(hb->user, junk_end(hb->start, hb->bytes, hb->user, hb->size, small));
  } else if (smp_options.zero_free) {
    memset(hb->user, 0, hb->size);
  }
  if (small && smp_options.junk) *trailer_at(hb->start, hb->bytes) = trailer_of(hb->start, hb->bytes);
  if (smp_options.quarantine) {
    header_write(hb->user, hb->size, (size_t)(hb->user - hb->start), STATE_QUARANTINED);
    if (header_room > HEADER && hb->user - hb->start == (ptrdiff_t)header_room)
      stacks_of(hb->user)[1] = smp_callstack_capture();
    quarantine_push(hb);
    return;
  }
  release(hb->start, hb->user, hb->small);
}

// ---- heaps, statistics ----

static int clear_header(void *block, size_t bytes, void *arg) {
  (void)arg;
  for (unsigned k = header_room_log2; ((size_t)1 << k) < bytes && k < 63; k++) {
    char *p = (char *)block + ((size_t)1 << k);
    size_t n;
    if (header_state(p, (size_t)1 << k, bytes, &n)) {
      header_clear(p);
      if (on_valgrind) VALGRIND_FREELIKE_BLOCK(p, 0); // gone with its heap: no leak
      break;
    }
  }
  return 0;
}

void smp_harden_visit_begin(void) {
  smp_lock_acquire(&quar.lock);
  quar.visits++;
  smp_lock_release(&quar.lock);
  wait_inflight(); // evictions popped before the visit began finish first
}
void smp_harden_visit_end(void) {
  smp_lock_acquire(&quar.lock);
  quar.visits--;
  smp_lock_release(&quar.lock);
}

void smp_harden_heap_dying(smp_heap_t *h) {
  if (!smp_harden_on) return;
  smp_lock_acquire(&quar.lock);
  for (size_t i = 0; i < quar.count; i++) {
    quarantined_t *q = &quar.ring[(quar.head + i) % quar.cap];
    if (q->user && q->heap == h) {
      account(q, -1);
      quar.bytes -= q->bytes;
      q->bytes = 0;
      q->user = NULL;
    }
  }
  smp_lock_release(&quar.lock);
  wait_inflight(); // a block of h popped before is given back before h dies
}

void smp_harden_heap_gone(smp_heap_t *h) {
  // The heap's memory may go back to its owner (a region) or to another heap: no header of
  // ours may outlive it there.
  if (smp_harden_on) smp_heap_visit_blocks(h, clear_header, NULL);
}

void smp_harden_drain(void) {
  if (!smp_options.quarantine) return;
  for (;;) {
    quarantined_t out[EVICT_BATCH];
    unsigned n = 0;
    smp_lock_acquire(&quar.lock);
    while (n < EVICT_BATCH && quar.count && !quar.visits)
      if (pop_oldest(&out[n])) n++;
    bool more = quar.count && !quar.visits;
    hold_popped(n);
    smp_lock_release(&quar.lock);
    evict_outside(out, n);
    if (!more) return;
  }
}

void smp_harden_at_exit(void) {
  if (!smp_options.quarantine || !smp_options.junk) return;
  smp_lock_acquire(&quar.lock); // held: the process ends here or in the report
  for (size_t i = 0; i < quar.count; i++) {
    const quarantined_t *q = &quar.ring[(quar.head + i) % quar.cap];
    smp_hardened_t hb;
    if (q->user && smp_harden_find(q->user, &hb) && hb.quarantined)
      check_free_pattern(hb.start, hb.bytes, hb.user, hb.size, hb.small, "exit",
                         "write after free");
  }
  smp_lock_release(&quar.lock);
}

// ---- leaks ----

// exp(-x) for x >= 0, to about 1e-7 relative (no libm: the library depends on libc alone).
static double exp_neg(double x) {
  if (x > 700) return 0;
  double k = __builtin_floor(x / 0.6931471805599453); // x = k ln 2 + r, 0 <= r < ln 2
  double r = x - k * 0.6931471805599453, term = 1, sum = 1;
  for (int i = 1; i < 16; i++) sum += (term *= -r / i);
  for (; k >= 1; k--) sum *= 0.5;
  return sum;
}

static int tally_block(void *block, size_t bytes, void *arg) {
  smp_harden_tally_t *t = arg;
  char *user;
  size_t size;
  if (smp_harden_user_of(block, bytes, &user, &size)) { // live (not quarantined)
    uint64_t id = stacks_of(user)[0];
    if (id == NOT_SAMPLED) return 0;
    if (id >= SMP_CALLSTACK_SLOTS) id = 0;
    t->blocks[id]++;
    // For the profile a block weighs at least 1 byte, as the sampler counted it (pprof divides
    // by its probability, 0 at 0 bytes). A block of size bytes is sampled with probability
    // 1 - exp(-size/period); period 0: every block is recorded (hardening on), no division.
    size_t weight = t->estimate && size == 0 ? 1 : size;
    t->bytes[id] += weight;
    if (t->estimate)
      t->estimate[id] += t->period ? weight / (1 - exp_neg((double)weight / (double)t->period)) : weight;
  }
  return 0;
}
// Under the heap's locks: other threads go on freeing while a profile is written.
static void tally_heap(smp_heap_t *h, void *arg) { smp_heap_visit_blocks_held(h, tally_block, arg); }

// A block waiting for an RCU grace period (smp_free_rcu) is freed as far as the program knows:
// its tally comes off again (p may be a typed block's pointer, inside the hardened one).
static void untally_deferred(void *p, void *arg) {
  smp_harden_tally_t *t = arg;
  smp_typed_block_t tb;
  smp_hardened_t hb;
  if (smp_types_find(p, &tb)) p = tb.block;
  if (!smp_harden_find(p, &hb) || hb.quarantined) return;
  uint64_t id = stacks_of(hb.user)[0];
  if (id == NOT_SAMPLED) return;
  if (id >= SMP_CALLSTACK_SLOTS) id = 0;
  if (t->blocks[id]) {
    t->blocks[id]--;
    size_t weight = t->estimate && hb.size == 0 ? 1 : hb.size;
    t->bytes[id] -= t->bytes[id] < weight ? t->bytes[id] : weight;
    if (t->estimate) {
      t->estimate[id] -= t->period ? weight / (1 - exp_neg((double)weight / (double)t->period)) : weight;
      if (t->estimate[id] < 0) t->estimate[id] = 0;
    }
  }
}

void smp_harden_tally_live(smp_harden_tally_t *t) {
  smp_heap_each(tally_heap, t, NULL);
  smp_deferred_visit_t *deferred = smp_load_acquire(&smp_types_deferred_visit);
  if (deferred) deferred(untally_deferred, t);
}

// The ids with blocks in t, largest in bytes first, into order; their number.
uint32_t smp_harden_tally_order(const smp_harden_tally_t *t, uint32_t *order) {
  uint32_t n = 0;
  for (uint32_t id = 0; id < SMP_CALLSTACK_SLOTS; id++)
    if (t->blocks[id]) order[n++] = id;
  // A shell sort: no allocation, and n is at most the table's size.
  for (uint32_t gap = n / 2; gap > 0; gap /= 2)
    for (uint32_t i = gap; i < n; i++)
      for (uint32_t j = i; j >= gap && t->bytes[order[j - gap]] < t->bytes[order[j]]; j -= gap) {
        uint32_t x = order[j];
        order[j] = order[j - gap];
        order[j - gap] = x;
      }
  return n;
}

void smp_harden_report_leaks(void) {
  if (leaks_fd < 0) return; // leaks off
  size_t len = (size_t)SMP_CALLSTACK_SLOTS * (2 * sizeof(uint64_t) + sizeof(uint32_t));
  char *mem = smp_os_map(len);
  if (mem == NULL) return;
  smp_harden_tally_t t = {(uint64_t *)mem, (uint64_t *)mem + SMP_CALLSTACK_SLOTS, NULL, 0};
  uint32_t *order = (uint32_t *)(t.bytes + SMP_CALLSTACK_SLOTS);
  smp_harden_tally_live(&t);
  uint32_t n = smp_harden_tally_order(&t, order);
  uint64_t blocks = 0, bytes = 0;
  for (uint32_t i = 0; i < n; i++) blocks += t.blocks[order[i]], bytes += t.bytes[order[i]];
  int fd = leaks_fd;
  if (fd == 0) fd = open(smp_options.leaks, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd >= 0) {
    smp_text_t out;
    smp_text_init(&out, fd);
    smp_text_str(&out, "smpalloc: leaks: ");
    smp_text_u64(&out, blocks, 0);
    smp_text_str(&out, " blocks, ");
    smp_text_bytes(&out, bytes, 0);
    smp_text_str(&out, " still allocated at exit, from ");
    smp_text_u64(&out, n, 0);
    smp_text_str(&out, " stacks, largest first\n");
    for (uint32_t i = 0; i < n; i++) {
      smp_text_str(&out, "smpalloc: leak: ");
      smp_text_u64(&out, t.bytes[order[i]], 0);
      smp_text_str(&out, " bytes in ");
      smp_text_u64(&out, t.blocks[order[i]], 0);
      smp_text_str(&out, " blocks, allocated at:\n");
      smp_callstack_print(&out, order[i], "    ");
    }
    smp_text_flush(&out);
    if (fd != leaks_fd) close(fd);
  }
  smp_os_unmap(mem, len);
}

