// Operation-sequence fuzzer of the smp_ API (libFuzzer entry point; replay.c runs it without
// libFuzzer). Every byte string is a valid program: a sequence of operations (decode()), each
// run synchronously by one of NTHREADS persistent worker threads, so a run is deterministic
// while blocks are allocated on one thread and freed, resized or inspected on another.
// Shadow model: NSLOTS live blocks shared by all threads, each with its requested size, usable
// size, promised alignment, a content seed and a saved head. A block is filled to its usable
// size with a pattern of its seed when allocated; stale ops (OP_STALE) copy over its first
// HEAD_N bytes what was never written, freed blocks (read through the kernel: never a fault)
// or other blocks hold, saved as its head, so free marks and links the allocator left in
// memory reach live blocks. A block is verified whole (head, then pattern) before it is freed
// or resized. A new block must be aligned, have usable >= requested (malloc/calloc: within the
// waste bound of its tier) and overlap no live block; calloc memory reads zero; realloc keeps
// min(old, new) bytes and leaves the block intact on failure; absurd sizes fail with ENOMEM,
// bad alignments with EINVAL (include/smpalloc.h). A mismatch prints "fuzz_ops: ..." and aborts.
// Encoding: op byte = [7:6] variant, [5:4] thread, [3:0] opcode; a slot byte (& 63); operands:
// a size is a kind byte (tier in [2:0], variant in [7:3]) and two bytes little-endian; missing
// bytes read as 0. At most MAX_OPS ops per input; large and huge requests share a per-input
// budget, past which they fold into the small tier, so an input stays fast. All live blocks
// are freed at the end of each input. FUZZ_OPS_TRACE=1 prints each op and its time.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "smpalloc.h"

#define NTHREADS 4
#define NSLOTS 64
#define MAX_OPS 1024
#define KIB ((size_t)1024)
#define MIB (KIB * KIB)
#define SMALL_MAX (64 * KIB)         // largest size class (lib/base/config.h SMP_SMALL_MAX)
#define HUGE_MIN (2 * MIB)           // above this: dedicated mappings (SMP_HUGE_THRESHOLD)
#define ABSURD ((size_t)1 << 48)     // beyond the user address space: must fail with ENOMEM
#define BIG_BUDGET (6 * MIB)         // per input: bytes requested above SMALL_MAX
#define HUGE_BUDGET 2                // per input: requests above HUGE_MIN
#define TRIM_BUDGET 8                // per input: calls of smp_trim
#define HEAD_N 64                    // bytes at a block's start that may hold copied-in bytes
#define NFREED 16                    // recently freed blocks a stale op may read

// The pattern fill/verify loops touch megabytes per input: keep sanitizer and comparison
// tracing out of them (the memory is the allocator's mmap, invisible to ASan anyway).
#if defined(__clang__)
#define NOINSTR __attribute__((no_sanitize("address", "coverage"), noinline))
#else
#define NOINSTR __attribute__((no_sanitize_address, noinline))
#endif

enum opcode {
  OP_MALLOC, OP_MALLOC2, OP_CALLOC, OP_REALLOC, OP_REALLOC2, OP_REALLOC0, OP_ALIGNED, OP_FREE,
  OP_FREE2, OP_FREE_SIZED, OP_USABLE, OP_REFILL, OP_MALLOC_BURST, OP_FREE_BURST, OP_MISC,
  OP_STALE,
};
enum { MISC_TRIM, MISC_RESPAWN, MISC_CHECK_ALL, MISC_FREE_ALL };
enum { STALE_FRESH, STALE_FREED, STALE_CHAIN, STALE_LIVE }; // OP_STALE variants
static const char *const op_names[16] = {
    "malloc", "malloc", "calloc", "realloc", "realloc", "realloc0", "aligned_alloc", "free",
    "free", "free_sized", "usable_size", "refill", "malloc_burst", "free_burst", "misc",
    "stale"};
static const char *const stale_names[4] = {"stale_fresh", "stale_freed", "stale_chain",
                                           "stale_live"};

typedef struct op {
  uint8_t code, variant, thread, slot;
  uint8_t mode;  // calloc factoring, burst count (variant: realloc mode, misc kind)
  size_t size;   // decoded size (before the budget)
  size_t align;  // aligned_alloc
} op_t;

typedef struct slot {
  unsigned char *p; // NULL: empty
  size_t size;      // requested
  size_t usable;    // smp_usable_size at allocation (must not change while live)
  size_t align;     // promised alignment
  uint64_t seed;    // content pattern of bytes [head_len, usable)
  size_t head_len;  // bytes [0, head_len) hold head[], not the pattern (<= HEAD_N)
  unsigned char head[HEAD_N];
} slot_t;

// ---- model state (one input at a time; workers run one at a time, hand-off by semaphores) --

static slot_t slots[NSLOTS];
static op_t ops[MAX_OPS];
static unsigned nops, cur_op;
static struct {
  uintptr_t addr; // an address, never dereferenced: read only through read_safe()
  size_t usable;
} freed[NFREED];        // the last NFREED blocks freed, a ring: freed[(nfreed - 1) % NFREED] last
static unsigned nfreed; // blocks freed in this input
static size_t big_used;
static unsigned huge_used, trim_used;
static uint64_t seed_next;

static const char *op_name(const op_t *o) {
  return o->code == OP_STALE ? stale_names[o->variant] : op_names[o->code];
}

__attribute__((noreturn, format(printf, 1, 2))) static void fail(const char *fmt, ...) {
  const op_t *o = cur_op < nops ? &ops[cur_op] : NULL;
  if (o)
    fprintf(stderr, "fuzz_ops: op #%u %s (thread %u, slot %u, size %zu, align %zu): ", cur_op,
            op_name(o), o->thread, o->slot, o->size, o->align);
  else
    fprintf(stderr, "fuzz_ops: end of input: ");
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  abort();
}

// ---- content pattern: word i of a block with seed s is s + i * K; bytes little-endian -----
// (an addition per word, so fill and check run at memory speed; offsets and seeds differ).

#define PAT_K 0x9e3779b97f4a7c15ull

static inline uint64_t pat_word(uint64_t seed, size_t i) { return seed + (uint64_t)i * PAT_K; }
static inline unsigned char pat_byte(uint64_t seed, size_t off) {
  return (unsigned char)(pat_word(seed, off / 8) >> (8 * (off % 8)));
}

NOINSTR static void fill(unsigned char *p, size_t from, size_t to, uint64_t seed) {
  size_t i = from;
  for (; i < to && i % 8; i++) p[i] = pat_byte(seed, i);
  for (uint64_t w = pat_word(seed, i / 8); i + 8 <= to; i += 8, w += PAT_K) memcpy(p + i, &w, 8);
  for (; i < to; i++) p[i] = pat_byte(seed, i);
}

// Offset of the first byte in [from, to) that differs from the pattern, or SIZE_MAX.
NOINSTR static size_t mismatch(const unsigned char *p, size_t from, size_t to, uint64_t seed) {
  size_t i = from;
  for (; i < to && i % 8; i++)
    if (p[i] != pat_byte(seed, i)) return i;
  uint64_t diff = 0;
  size_t start = i;
  for (uint64_t w = pat_word(seed, i / 8); i + 8 <= to; i += 8, w += PAT_K) {
    uint64_t v;
    memcpy(&v, p + i, 8);
    diff |= v ^ w;
  }
  if (diff)
    for (size_t j = start; j < i; j++)
      if (p[j] != pat_byte(seed, j)) return j;
  for (; i < to; i++)
    if (p[i] != pat_byte(seed, i)) return i;
  return SIZE_MAX;
}

NOINSTR static size_t nonzero(const unsigned char *p, size_t n) {
  uint64_t acc = 0;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, p + i, 8);
    acc |= w;
  }
  for (; i < n; i++) acc |= p[i];
  if (acc == 0) return SIZE_MAX;
  for (i = 0; i < n; i++)
    if (p[i]) return i;
  return SIZE_MAX;
}

// A slot's content: its saved head, then its pattern.
static unsigned char slot_byte(const slot_t *b, size_t off) {
  return off < b->head_len ? b->head[off] : pat_byte(b->seed, off);
}

// Offset of the first byte of p in [0, to) that differs from slot b's content, or SIZE_MAX.
static size_t slot_mismatch(const slot_t *b, const unsigned char *p, size_t to) {
  size_t h = b->head_len < to ? b->head_len : to;
  for (size_t i = 0; i < h; i++)
    if (p[i] != b->head[i]) return i;
  return mismatch(p, h, to, b->seed);
}

__attribute__((noreturn)) static void corrupted(unsigned s, size_t off, const char *when) {
  const slot_t *b = &slots[s];
  fail("%s: slot %u block %p (size %zu, usable %zu, head %zu) corrupted at offset %zu: %#x, "
       "expected %#x",
       when, s, (void *)b->p, b->size, b->usable, b->head_len, off, b->p[off], slot_byte(b, off));
}

static void verify_range(unsigned s, size_t to, const char *when) {
  size_t off = slot_mismatch(&slots[s], slots[s].p, to);
  if (off != SIZE_MAX) corrupted(s, off, when);
}
static void verify(unsigned s, const char *when) { verify_range(s, slots[s].usable, when); }

// A cheaper check of a live block for the whole-heap scans (trim, check): the first and last
// 4 KiB and one word in every 4 KiB between, which sees any page purged or remapped under it.
static void verify_sparse(unsigned s, const char *when) {
  const slot_t *b = &slots[s];
  if (b->usable <= 16 * KIB) {
    verify(s, when);
    return;
  }
  size_t off = slot_mismatch(b, b->p, 4 * KIB); // the head lies in the first 4 KiB
  for (size_t at = 4 * KIB; off == SIZE_MAX && at < b->usable - 4 * KIB; at += 4 * KIB)
    off = mismatch(b->p, at, at + 8, b->seed);
  if (off == SIZE_MAX) off = mismatch(b->p, b->usable - 4 * KIB, b->usable, b->seed);
  if (off != SIZE_MAX) corrupted(s, off, when);
}

// ---- checks of a new block ------------------------------------------------------------

// p was just returned for a request of size bytes with alignment align; it is about to become
// slot s (whose old block, if any, is gone). Returns its usable size.
static size_t check_new(unsigned s, void *p, size_t size, size_t align, const char *what) {
  if (p == NULL) fail("%s(%zu) returned NULL (errno %d), expected a block", what, size, errno);
  if ((uintptr_t)p % align) fail("%s returned %p, not aligned to %zu", what, p, align);
  size_t usable = smp_usable_size(p);
  if (usable < size) fail("%s returned %p with usable size %zu < %zu", what, p, usable, size);
  uintptr_t lo = (uintptr_t)p, hi = lo + usable;
  if (hi < lo) fail("%s returned %p: usable size %zu wraps", what, p, usable);
  for (unsigned i = 0; i < NSLOTS; i++) {
    const slot_t *o = &slots[i];
    if (i == s || o->p == NULL) continue;
    uintptr_t olo = (uintptr_t)o->p, ohi = olo + o->usable;
    if (lo < ohi && olo < hi)
      fail("%s returned [%p, +%zu) overlapping live slot %u [%p, +%zu)", what, p, usable, i,
           (void *)o->p, o->usable);
  }
  return usable;
}

// The waste bound of a fresh malloc/calloc block, from the layout of lib/objects/sizeclass.h and
// lib/heap/large.h: a small block wastes at most max(16, n/8) bytes, a page run less than one
// 8 KiB page, a huge mapping less than one OS page. A larger usable size means a request went
// to the wrong class or tier.
static void check_waste(const void *p, size_t size, size_t usable, const char *what) {
  size_t limit = size <= SMALL_MAX ? (size / 8 > 16 ? size / 8 : 16)
                 : size <= HUGE_MIN ? 8191 : (size_t)sysconf(_SC_PAGESIZE) - 1;
  if (usable - size > limit)
    fail("%s(%zu) = %p has usable size %zu: wastes more than %zu bytes", what, size, p, usable,
         limit);
}

static void check_fail(void *p, int err, int want, size_t size, const char *what) {
  if (p != NULL) fail("%s(%zu) returned %p, expected NULL", what, size, p);
  if (err != want) fail("%s(%zu) set errno %d, expected %d", what, size, err, want);
}

static void set_slot(unsigned s, void *p, size_t size, size_t usable, size_t align) {
  slots[s] = (slot_t){p, size, usable, align, seed_next++ * 0xd1b54a32d192ed03ull + 1, 0, {0}};
  fill(slots[s].p, 0, usable, slots[s].seed);
}

// ---- budget: large and huge requests per input are bounded ---------------------------

static size_t budget(size_t n) {
  if (n <= SMALL_MAX || n >= ABSURD) return n;
  if (n > HUGE_MIN) {
    if (huge_used >= HUGE_BUDGET) n = SMALL_MAX + n % (HUGE_MIN - SMALL_MAX);
    else huge_used++;
  }
  // Folded into the small tier, never to 0: realloc(p, 0) frees, which no op expects from a
  // fold (stale_chain would see NULL).
  if (big_used + n > BIG_BUDGET) return 1 + n % SMALL_MAX;
  big_used += n;
  return n;
}

// ---- operations (run on a worker thread) ----------------------------------------------

static void note_freed(const void *p, size_t usable) {
  freed[nfreed % NFREED].addr = (uintptr_t)p;
  freed[nfreed % NFREED].usable = usable;
  nfreed++;
}

static void do_free(unsigned s, bool sized) {
  slot_t *b = &slots[s];
  if (b->p == NULL) {
    if (sized) smp_free_sized(NULL, 0);
    else smp_free(NULL);
    return;
  }
  verify(s, "before free");
  if (sized) smp_free_sized(b->p, b->size);
  else smp_free(b->p);
  note_freed(b->p, b->usable);
  b->p = NULL;
}

static void do_malloc(unsigned s, size_t size) {
  do_free(s, false);
  size = budget(size);
  errno = 0;
  void *p = smp_malloc(size);
  if (size >= ABSURD) {
    check_fail(p, errno, ENOMEM, size, "malloc");
    return;
  }
  size_t usable = check_new(s, p, size, 16, "malloc");
  check_waste(p, size, usable, "malloc");
  set_slot(s, p, size, usable, 16);
}

static void do_calloc(unsigned s, size_t n, unsigned mode) {
  do_free(s, false);
  n = budget(n);
  size_t count, size;
  bool overflow = false;
  switch (mode % 6) {
  case 0: count = 1, size = n; break;
  case 1: count = n, size = 1; break;
  case 2: count = n / 16, size = 16; break;
  case 3: // overflowing products
    count = (SIZE_MAX >> (n % 8)) / 16 + 1 + (n & 15), size = 16 << (n % 8), overflow = true;
    if (n % 3 == 0) count = (size_t)1 << 32, size = (size_t)1 << (32 + n % 31);
    break;
  case 4: count = 0, size = n; break;
  default: count = n, size = 0; break;
  }
  size_t total = overflow ? SIZE_MAX : count * size;
  errno = 0;
  unsigned char *p = smp_calloc(count, size);
  int err = errno;
  if (overflow || total >= ABSURD) {
    check_fail(p, err, ENOMEM, total, "calloc");
    return;
  }
  size_t usable = check_new(s, p, total, 16, "calloc");
  check_waste(p, total, usable, "calloc");
  size_t off = nonzero(p, total);
  if (off != SIZE_MAX)
    fail("calloc(%zu, %zu) = %p: byte %zu is %#x, not zero", count, size, (void *)p, off,
         p[off]);
  set_slot(s, p, total, usable, 16);
}

static void do_realloc(unsigned s, size_t d, unsigned mode) {
  slot_t *b = &slots[s];
  size_t old = b->p ? b->size : 0, size;
  switch (mode) {
  case 0: size = d; break;
  case 1: size = d >= ABSURD ? d : old + d; break;          // grow
  case 2: size = old - d % (old + 1); break;                 // shrink, maybe to 0
  default: size = old / 2 + d % 64; break;                   // shrink by about half
  }
  size = budget(size);
  if (b->p) verify(s, "before realloc");
  errno = 0;
  unsigned char *p = smp_realloc(b->p, size);
  int err = errno;
  if (b->p && size == 0) { // frees and returns NULL
    if (p != NULL) fail("realloc(%p, 0) returned %p, expected NULL", (void *)b->p, (void *)p);
    note_freed(b->p, b->usable);
    b->p = NULL;
    return;
  }
  if (size >= ABSURD) {
    check_fail(p, err, ENOMEM, size, "realloc");
    if (b->p) verify_sparse(s, "after failed realloc");
    return;
  }
  size_t usable = check_new(s, p, size, 16, "realloc");
  if (b->p) {
    size_t keep = old < size ? old : size;
    size_t off = slot_mismatch(b, p, keep);
    if (off != SIZE_MAX)
      fail("realloc(%p, %zu) from %zu = %p lost byte %zu: %#x, expected %#x", (void *)b->p,
           size, old, (void *)p, off, p[off], slot_byte(b, off));
    if (p != b->p) note_freed(b->p, b->usable);
    // The saved head follows the block as far as realloc keeps bytes.
    b->p = p, b->size = size, b->usable = usable, b->align = 16;
    if (b->head_len > keep) b->head_len = keep;
    fill(p, keep, usable, b->seed);
  } else {
    set_slot(s, p, size, usable, 16);
  }
}

static const size_t bad_aligns[16] = {
    0, 3, 5, 6, 7, 12, 24, 48, 96, 4095, 4097, 65535, 65537, SIZE_MAX, SIZE_MAX >> 1,
    ((size_t)1 << 63) + 1};

static size_t decode_align(unsigned a) {
  if (a < 0xe0) return (size_t)1 << (a % 24);            // 1 .. 8 MiB
  if (a < 0xf0) return bad_aligns[a - 0xe0];             // EINVAL
  if (a < 0xf8) return (size_t)1 << (48 + (a - 0xf0) * 2); // absurd: 2^48 .. 2^62, ENOMEM
  return (size_t)1 << (24 + (a - 0xf8) % 4);             // 16 .. 128 MiB
}

static void do_aligned(unsigned s, size_t size, size_t align) {
  do_free(s, false);
  size = budget(size);
  errno = 0;
  void *p = smp_aligned_alloc(align, size);
  int err = errno;
  if (align == 0 || (align & (align - 1))) {
    check_fail(p, err, EINVAL, size, "aligned_alloc");
    return;
  }
  if (size >= ABSURD || align >= ABSURD) {
    check_fail(p, err, ENOMEM, size, "aligned_alloc");
    return;
  }
  set_slot(s, p, size, check_new(s, p, size, align, "aligned_alloc"), align);
}

static void check_usable(unsigned s) {
  const slot_t *b = &slots[s];
  if (b->p == NULL) {
    if (smp_usable_size(NULL) != 0) fail("usable_size(NULL) != 0");
    return;
  }
  size_t u = smp_usable_size(b->p);
  if (u != b->usable)
    fail("usable size of %p changed from %zu to %zu while live", (void *)b->p, b->usable, u);
}

static void check_all(const char *when) {
  for (unsigned s = 0; s < NSLOTS; s++)
    if (slots[s].p) {
      check_usable(s);
      verify_sparse(s, when);
    }
}

// ---- stale ops: bytes the program never wrote, or that belong to freed blocks ---------
// A valid program may copy into a live block bytes it never wrote (of a new block, or carried
// along by realloc) and a buggy but common one bytes of a freed block; either way a free mark
// or encoded link the allocator left in memory lands at the start of a live block, which the
// allocator must not take for a free one. OP_STALE's variant is the source; the op copies a
// slice of it over the destination slot's first bytes (a new block of the operand's size if
// the slot is empty) and saves the bytes as the slot's head, so the model stays exact. The size
// operand's low bits choose the slice: bits [1:0] its length (16, 24, 40 or 64 bytes: words 0
// and 1 always), bits [5:2] times 16 << bits [9:6] its offset in the source (any multiple of
// 16 << k below 256 << k: where a block of an earlier layout of the pages began), folded into
// the source; bits 10 and up pick the freed block (stale_freed) or the source slot (stale_live).

static int safe_pipe[2] = {-1, -1}; // where process_vm_readv is refused (seccomp)

// Reads up to n bytes at addr, which may be freed, purged or unmapped, without faulting: the
// kernel copies them and answers EFAULT where nothing is mapped. Returns the bytes read.
static size_t read_safe(unsigned char *buf, uintptr_t addr, size_t n) {
  if (safe_pipe[0] < 0) {
    struct iovec local = {buf, n}, remote = {(void *)addr, n};
    ssize_t r = process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
    return r > 0 ? (size_t)r : 0;
  }
  ssize_t r = write(safe_pipe[1], (const void *)addr, n); // n <= PIPE_BUF, empty pipe: no wait
  if (r <= 0) return 0;
  if (read(safe_pipe[0], buf, (size_t)r) != r) fail("read from the safe-read pipe failed");
  return (size_t)r;
}

static void read_safe_init(void) {
  unsigned char probe = 1, out = 0;
  struct iovec local = {&out, 1}, remote = {&probe, 1};
  if (process_vm_readv(getpid(), &local, 1, &remote, 1, 0) == 1 && out == 1) return;
  if (pipe(safe_pipe) != 0) {
    fprintf(stderr, "fuzz_ops: neither process_vm_readv nor a pipe\n");
    abort();
  }
}

static size_t stale_len(size_t operand) {
  static const unsigned char len[4] = {16, 24, 40, 64};
  return len[operand & 3];
}

// Offset of an n-byte slice in a source of usable bytes (n <= usable), 16-aligned.
static size_t stale_off(size_t operand, size_t usable, size_t n) {
  size_t off = ((operand >> 2) & 15) << (4 + ((operand >> 6) & 15));
  if (off + n > usable) off = off % (usable - n + 1) & ~(size_t)15;
  return off;
}

static size_t min_size(size_t a, size_t b) { return a < b ? a : b; }

// The destination's head becomes buf[0, n) (n <= its usable size and HEAD_N).
static void copy_in(unsigned s, const unsigned char *buf, size_t n) {
  slot_t *b = &slots[s];
  memcpy(b->p, buf, n);
  memcpy(b->head, buf, n);
  if (b->head_len < n) b->head_len = n;
}

// The destination slot, made live and checked; false if it stays empty (an absurd size).
static bool stale_dest(unsigned s, size_t size) {
  if (slots[s].p == NULL) do_malloc(s, size);
  else verify_sparse(s, "before stale copy");
  return slots[s].p != NULL;
}

// From a new block, never written: what the allocator and its earlier users left there.
static void stale_fresh(unsigned s, size_t operand) {
  if (!stale_dest(s, operand)) return;
  size_t n = min_size(stale_len(operand), slots[s].usable), size = budget(operand);
  errno = 0;
  unsigned char *src = smp_malloc(size), buf[HEAD_N];
  if (size >= ABSURD) {
    check_fail(src, errno, ENOMEM, size, "malloc");
    return;
  }
  size_t usable = check_new(NSLOTS, src, size, 16, "malloc"); // overlaps no slot
  check_waste(src, size, usable, "malloc");
  n = min_size(n, usable);
  memcpy(buf, src + stale_off(operand, usable, n), n);
  smp_free(src);
  note_freed(src, usable);
  copy_in(s, buf, n);
}

// From a block freed earlier in the input (bits 10 and up: 0 the last freed, 1 the one before),
// which may since be live again, purged or unmapped.
static void stale_freed(unsigned s, size_t operand) {
  if (!stale_dest(s, operand) || nfreed == 0) return;
  unsigned have = nfreed < NFREED ? nfreed : NFREED, k = (unsigned)((operand >> 10) % have);
  uintptr_t src = freed[(nfreed - 1 - k) % NFREED].addr;
  size_t usable = freed[(nfreed - 1 - k) % NFREED].usable;
  size_t n = min_size(min_size(stale_len(operand), slots[s].usable), usable);
  unsigned char buf[HEAD_N];
  n = read_safe(buf, src + stale_off(operand, usable, n), n);
  copy_in(s, buf, n);
}

// A new block of the operand's size, never written, resized 1 to 4 times (operand bits [1:0]):
// to a small size, back, to a tiny one, to half: realloc carries what the allocator left in
// it, checked for its first bytes. Those are written back once (the same values), as a page
// the allocator gave back lazily (purge:free) may read as zero any time until written. The
// block then stays in the slot with them as its head.
static void stale_chain(unsigned s, size_t operand) {
  do_free(s, false);
  size_t old = budget(operand);
  errno = 0;
  unsigned char *p = smp_malloc(old), head[HEAD_N];
  if (old >= ABSURD) {
    check_fail(p, errno, ENOMEM, old, "malloc");
    return;
  }
  size_t usable = check_new(s, p, old, 16, "malloc");
  check_waste(p, old, usable, "malloc");
  size_t len = min_size(HEAD_N, old); // realloc keeps the requested bytes only
  memcpy(head, p, len);
  memcpy(p, head, len);
  const size_t to[4] = {1 + old % 2048, old, 1 + old % 200, old / 2 + 1};
  for (unsigned k = 0; k <= (operand & 3); k++) {
    size_t size2 = budget(to[k]);
    unsigned char *q = smp_realloc(p, size2);
    size_t usable2 = check_new(s, q, size2, 16, "realloc");
    len = min_size(len, size2);
    for (size_t i = 0; i < len; i++)
      if (q[i] != head[i])
        fail("realloc(%p, %zu) from %zu = %p lost unwritten byte %zu: %#x, expected %#x",
             (void *)p, size2, old, (void *)q, i, q[i], head[i]);
    if (q != p) note_freed(p, usable);
    p = q, old = size2, usable = usable2;
  }
  slots[s] = (slot_t){p, old, usable, 16, seed_next++ * 0xd1b54a32d192ed03ull + 3, len, {0}};
  memcpy(slots[s].head, head, len);
  fill(p, len, usable, slots[s].seed);
}

// From another live block's start (the source slot is s + 1 + bits 10 and up): word 0 and 1
// of one block, pattern or a head copied in earlier, become the other's.
static void stale_live(unsigned s, size_t operand) {
  if (!stale_dest(s, operand)) return;
  unsigned from = (unsigned)((s + 1 + (operand >> 10)) % NSLOTS);
  if (slots[from].p == NULL) return;
  unsigned char buf[HEAD_N];
  size_t n = min_size(min_size(stale_len(operand), slots[s].usable), slots[from].usable);
  verify_range(from, n, "stale copy source");
  memcpy(buf, slots[from].p, n);
  copy_in(s, buf, n);
}

static void run_op(const op_t *o) {
  unsigned s = o->slot;
  switch (o->code) {
  case OP_MALLOC:
  case OP_MALLOC2: do_malloc(s, o->size); break;
  case OP_CALLOC: do_calloc(s, o->size, o->mode); break;
  case OP_REALLOC:
  case OP_REALLOC2: do_realloc(s, o->size, o->variant); break;
  case OP_REALLOC0: do_realloc(s, 0, 0); break;
  case OP_ALIGNED: do_aligned(s, o->size, o->align); break;
  case OP_FREE:
  case OP_FREE2: do_free(s, false); break;
  case OP_FREE_SIZED: do_free(s, true); break;
  case OP_USABLE:
    check_usable(s);
    if (slots[s].p) verify_sparse(s, "usable_size");
    break;
  case OP_REFILL:
    if (slots[s].p) {
      verify_sparse(s, "before refill");
      slots[s].seed = seed_next++ * 0xd1b54a32d192ed03ull + 7;
      slots[s].head_len = 0;
      fill(slots[s].p, 0, slots[s].usable, slots[s].seed);
    }
    break;
  case OP_MALLOC_BURST: // many blocks of one size: drives cache refills
    for (unsigned k = 0; k <= o->mode % 32; k++) do_malloc((s + k) % NSLOTS, o->size);
    break;
  case OP_FREE_BURST: // many frees in a row: drives cache flushes to the central lists
    for (unsigned k = 0; k <= o->mode % 32; k++) do_free((s + k) % NSLOTS, o->variant & 1);
    break;
  case OP_MISC:
    switch (o->variant) {
    case MISC_TRIM: {
      if (trim_used++ >= TRIM_BUDGET) break;
      int r = smp_trim();
      if (r != 0 && r != 1) fail("trim returned %d", r);
      check_all("after trim");
      break;
    }
    case MISC_CHECK_ALL: check_all("check"); break;
    case MISC_FREE_ALL:
      for (unsigned k = 0; k < NSLOTS; k++) do_free(k, k & 1);
      break;
    default: break; // MISC_RESPAWN is done by the dispatcher
    }
    break;
  case OP_STALE:
    switch (o->variant) {
    case STALE_FRESH: stale_fresh(s, o->size); break;
    case STALE_FREED: stale_freed(s, o->size); break;
    case STALE_CHAIN: stale_chain(s, o->size); break;
    default: stale_live(s, o->size); break;
    }
    break;
  }
}

// ---- decoding -------------------------------------------------------------------------

typedef struct reader {
  const uint8_t *p;
  size_t n, i;
} reader_t;

static unsigned next8(reader_t *r) { return r->i < r->n ? r->p[r->i++] : 0; }
static unsigned next16(reader_t *r) {
  unsigned lo = next8(r);
  return lo | next8(r) << 8;
}

// The size-class rule of lib/objects/sizeclass.h, restated: 16..128 by 16, then 8 per doubling.
static size_t class_size(unsigned cls) {
  if (cls <= 8) return 16 * cls;
  unsigned k = 7 + (cls - 9) / 8, j = (cls - 9) % 8 + 1;
  return ((size_t)1 << k) + j * ((size_t)1 << (k - 3));
}

static size_t decode_size(reader_t *r) {
  unsigned b = next8(r), v = next16(r), x = b >> 3;
  switch (b & 7) {
  case 0: return v % 129;
  case 1: return v % 1025;
  case 2: return v % (SMALL_MAX + 1);
  case 3: { // a class size, one below or one above
    size_t c = class_size(v % 80 + 1);
    return c - 1 + x % 3;
  }
  case 4: { // page runs: up to 2 MiB, or whole pages of 8 KiB -1/0/+1, or up to 192 KiB
    size_t n = SMALL_MAX + 1 + (size_t)v * 31;
    if ((x & 3) == 1) return (n & ~(size_t)8191) - 1 + (x >> 2) % 3;
    return (x & 3) == 2 ? SMALL_MAX + 1 + (size_t)v * 2 : n;
  }
  case 5: {
    static const size_t edge[32] = {
        0, 1, 15, 16, 17, 128, 129, 1024, 1025, 65535, 65536, 65537, 8192, 8193,
        2 * MIB - 1, 2 * MIB, 2 * MIB + 1, 4 * MIB - 40 * KIB, SIZE_MAX, SIZE_MAX - 1,
        SIZE_MAX - 4095, SIZE_MAX - 8192, SIZE_MAX / 2 + 1, (size_t)1 << 62,
        (size_t)1 << 56, PTRDIFF_MAX, SIZE_MAX - 65536, SIZE_MAX - 2 * MIB, ABSURD,
        2 * MIB - 8192, MIB, 0};
    return x == 31 ? v : edge[x];
  }
  case 6: return HUGE_MIN + 1 + (size_t)v * 96; // huge: up to about 8 MiB
  default: return v % 4097;
  }
}

static void decode(const uint8_t *data, size_t size) {
  reader_t r = {data, size, 0};
  nops = 0;
  while (r.i < r.n && nops < MAX_OPS) {
    unsigned h = next8(&r);
    op_t *o = &ops[nops++];
    *o = (op_t){.code = h & 15, .thread = (h >> 4) & 3, .variant = h >> 6};
    o->slot = next8(&r) % NSLOTS;
    switch (o->code) {
    case OP_MALLOC:
    case OP_MALLOC2:
    case OP_REALLOC:
    case OP_REALLOC2:
    case OP_STALE: o->size = decode_size(&r); break;
    case OP_CALLOC:
    case OP_MALLOC_BURST:
      o->mode = (uint8_t)next8(&r);
      o->size = decode_size(&r);
      break;
    case OP_ALIGNED:
      o->align = decode_align(next8(&r));
      o->size = decode_size(&r);
      break;
    case OP_FREE_BURST: o->mode = (uint8_t)next8(&r); break;
    default: break;
    }
  }
}

// ---- worker threads -------------------------------------------------------------------

typedef struct worker {
  pthread_t tid;
  sem_t go, done;
  unsigned from, to; // ops to run
  bool quit;
  bool running;
} worker_t;

static worker_t workers[NTHREADS];
static bool trace; // FUZZ_OPS_TRACE set: each op and its time to stderr

static void run_traced(unsigned i) {
  const op_t *o = &ops[i];
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  run_op(o);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  fprintf(stderr, "op #%u %s.%u thread %u slot %u size %zu align %zu mode %u: %.1f us\n", i,
          op_name(o), o->variant, o->thread, o->slot, o->size, o->align, o->mode,
          (t1.tv_sec - t0.tv_sec) * 1e6 + (t1.tv_nsec - t0.tv_nsec) / 1e3);
}

static void *worker_main(void *arg) {
  worker_t *w = arg;
  for (;;) {
    while (sem_wait(&w->go) != 0) {
    }
    if (w->quit) break;
    for (unsigned i = w->from; i < w->to; i++) {
      cur_op = i;
      if (trace) run_traced(i);
      else run_op(&ops[i]);
    }
    sem_post(&w->done);
  }
  sem_post(&w->done);
  return NULL;
}

static void worker_start(worker_t *w) {
  w->quit = false;
  if (pthread_create(&w->tid, NULL, worker_main, w) != 0) {
    fprintf(stderr, "fuzz_ops: pthread_create failed\n");
    abort();
  }
  w->running = true;
}

static void workers_init(void) {
  trace = getenv("FUZZ_OPS_TRACE") != NULL;
  read_safe_init();
  for (unsigned t = 0; t < NTHREADS; t++) {
    sem_init(&workers[t].go, 0, 0);
    sem_init(&workers[t].done, 0, 0);
    worker_start(&workers[t]);
  }
}

static void worker_run(unsigned t, unsigned from, unsigned to) {
  worker_t *w = &workers[t];
  w->from = from;
  w->to = to;
  sem_post(&w->go);
  while (sem_wait(&w->done) != 0) {
  }
}

// The thread exits (its cache goes back to the central lists) and a new one takes its place.
static void worker_respawn(unsigned t) {
  worker_t *w = &workers[t];
  w->quit = true;
  sem_post(&w->go);
  pthread_join(w->tid, NULL);
  while (sem_trywait(&w->done) == 0) {
  }
  worker_start(w);
}

static pthread_once_t once = PTHREAD_ONCE_INIT;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  pthread_once(&once, workers_init);
  memset(slots, 0, sizeof slots);
  big_used = 0;
  huge_used = 0;
  trim_used = 0;
  seed_next = 1;
  nfreed = 0;
  decode(data, size);
  // Runs of consecutive ops of one thread go to that worker in one hand-off.
  for (unsigned i = 0; i < nops;) {
    const op_t *o = &ops[i];
    if (o->code == OP_MISC && o->variant == MISC_RESPAWN) {
      worker_respawn(o->thread);
      i++;
      continue;
    }
    unsigned j = i + 1;
    while (j < nops && ops[j].thread == o->thread &&
           !(ops[j].code == OP_MISC && ops[j].variant == MISC_RESPAWN))
      j++;
    worker_run(o->thread, i, j);
    i = j;
  }
  // Free what is left, on this (another) thread, after a last check of every block.
  cur_op = nops;
  for (unsigned s = 0; s < NSLOTS; s++)
    if (slots[s].p) {
      check_usable(s);
      verify(s, "end of input");
      smp_free(slots[s].p);
      slots[s].p = NULL;
    }
  return 0;
}
