// Shared helpers of the stress programs: failure reports, a xorshift RNG, time budgets, argument
// parsing, the content pattern of a block, and a reader of the allocator's statistics.
// Pattern: byte i of a block is byte (i % 8) of word w(seed, i / 8), where seed is derived from
// (pointer, size, tag) for ordinary blocks, or from the tag alone where a block moves (realloc).
// Blocks up to STRESS_DENSE_MAX are written and checked whole; larger ones on a sample (first
// and last 4 KiB, and 8 bytes at every multiple of 4096), which still touches every page.
// Failures never allocate: the message is formatted on the stack and written with write(2),
// then the process ends with _exit(1), so a broken heap cannot hide the report.
#ifndef STRESS_COMMON_H
#define STRESS_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "test_frontend.h"

#define STRESS_DENSE_MAX ((size_t)64 * 1024) // blocks up to this are patterned whole
#define STRESS_EDGE ((size_t)4096)           // sampled blocks: dense head and tail
#define STRESS_STRIDE ((size_t)4096)         // sampled blocks: one probe per stride
#define STRESS_PROBE ((size_t)8)             // bytes per probe

static const char *stress_name = "stress"; // set by stress_args_parse

// ---- failure ----------------------------------------------------------------------------

__attribute__((noreturn, format(printf, 1, 2))) static void stress_fail(const char *fmt, ...) {
  char buf[1024];
  int n = snprintf(buf, sizeof buf, "%s: FAIL: ", stress_name);
  va_list ap;
  va_start(ap, fmt);
  n += vsnprintf(buf + n, sizeof buf - (size_t)n - 1, fmt, ap);
  va_end(ap);
  if (n > (int)sizeof buf - 2) n = (int)sizeof buf - 2;
  buf[n++] = '\n';
  ssize_t w = write(STDERR_FILENO, buf, (size_t)n);
  (void)w;
  _exit(1);
}

// ---- random numbers ---------------------------------------------------------------------

static inline uint64_t stress_mix64(uint64_t x) { // splitmix64 finaliser
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

typedef struct stress_rng {
  uint64_t s;
} stress_rng_t;

static inline void stress_rng_seed(stress_rng_t *r, uint64_t seed) {
  r->s = stress_mix64(seed + 0x9e3779b97f4a7c15ull);
  if (r->s == 0) r->s = 1;
}

static inline uint64_t stress_rng_next(stress_rng_t *r) { // xorshift64*
  uint64_t x = r->s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  r->s = x;
  return x * 0x2545f4914f6cdd1dull;
}

// Uniform in [0, n), n > 0 (the modulo bias is irrelevant here).
static inline uint64_t stress_rng_below(stress_rng_t *r, uint64_t n) {
  return stress_rng_next(r) % n;
}

// Uniform in [lo, hi].
static inline uint64_t stress_rng_range(stress_rng_t *r, uint64_t lo, uint64_t hi) {
  return lo + stress_rng_below(r, hi - lo + 1);
}

// True with probability num/den.
static inline bool stress_rng_chance(stress_rng_t *r, unsigned num, unsigned den) {
  return stress_rng_below(r, den) < num;
}

// Log-uniform in [lo, hi] (lo >= 1): a uniform power of two, then uniform inside it.
// A power-of-two hi joins the bucket below, so it is not a bucket of one value.
static inline uint64_t stress_rng_log(stress_rng_t *r, uint64_t lo, uint64_t hi) {
  if (lo >= hi) return lo;
  unsigned a = 63u - (unsigned)__builtin_clzll(lo), b = 63u - (unsigned)__builtin_clzll(hi - 1);
  if (a > b) a = b;
  unsigned k = a + (unsigned)stress_rng_below(r, b - a + 1);
  uint64_t from = (uint64_t)1 << k, to = k == b ? hi : ((uint64_t)1 << (k + 1)) - 1;
  if (from < lo) from = lo;
  return stress_rng_range(r, from, to);
}

// ---- time -------------------------------------------------------------------------------

// From now on the membarrier system call fails with EPERM (a seccomp filter, as a sandbox that
// forbids it would install; it cannot be taken back): the paths that fall back without it.
static inline void stress_block_membarrier(void) {
  struct sock_filter f[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_membarrier, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};
  struct sock_fprog prog = {.len = sizeof f / sizeof f[0], .filter = f};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
      prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
    stress_fail("cannot install the seccomp filter: %s", strerror(errno));
}

static inline double stress_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

// A loop bound: at most max_iters iterations and no later than the deadline (checked every
// 64 iterations, so the clock is not the cost of the loop).
typedef struct stress_budget {
  uint64_t max_iters;
  double deadline;
} stress_budget_t;

static inline stress_budget_t stress_budget(uint64_t max_iters, double seconds) {
  return (stress_budget_t){max_iters, stress_now() + seconds};
}

static inline bool stress_budget_expired(const stress_budget_t *b) {
  return stress_now() >= b->deadline;
}

// for (uint64_t i = 0; stress_continue(&b, i); i++) ...
static inline bool stress_continue(const stress_budget_t *b, uint64_t i) {
  if (i >= b->max_iters) return false;
  return (i & 63) != 0 || stress_now() < b->deadline;
}

// ---- arguments --------------------------------------------------------------------------

typedef struct stress_args {
  unsigned threads; // -t
  uint64_t iters;   // -n: per thread unless a program says otherwise
  double seconds;   // -s: time cap of the main phase
  uint64_t seed;    // -r
  const char *mode; // -m
  unsigned extra;   // -k: program-specific (slots, total threads, rounds...)
  bool verbose;     // -v
} stress_args_t;

// Defaults come in through *a; argv overrides them. Exits 2 on a malformed command line.
static inline void stress_args_parse(stress_args_t *a, const char *name, const char *usage, int argc,
                              char **argv) {
  stress_name = name;
  int c;
  while ((c = getopt(argc, argv, "t:n:s:r:m:k:vh")) != -1) {
    char *end = NULL;
    errno = 0;
    switch (c) {
    case 't': a->threads = (unsigned)strtoul(optarg, &end, 0); break;
    case 'n': a->iters = strtoull(optarg, &end, 0); break;
    case 's': a->seconds = strtod(optarg, &end); break;
    case 'r': a->seed = strtoull(optarg, &end, 0); break;
    case 'm': a->mode = optarg; break;
    case 'k': a->extra = (unsigned)strtoul(optarg, &end, 0); break;
    case 'v': a->verbose = true; break;
    default:
      fprintf(stderr,
              "usage: %s [-t threads] [-n iterations] [-s seconds] [-r seed] [-m mode] "
              "[-k n] [-v]\n%s\n",
              name, usage);
      exit(c == 'h' ? 0 : 2);
    }
    if (end != NULL && (*end != 0 || errno != 0)) {
      fprintf(stderr, "%s: bad value for -%c: %s\n", name, c, optarg);
      exit(2);
    }
  }
  if (optind != argc || a->threads == 0 || a->seconds <= 0) {
    fprintf(stderr, "%s: bad arguments (see -h)\n", name);
    exit(2);
  }
}

// The program must run on smpalloc: malloc has to resolve to libsmpalloc, not libc.
// In a sanitizer build (tests/test_names.h) the program calls smp_test_malloc... by name, and
// the sanitizer's runtime owns malloc, so there is nothing to check.
// And on the front end SMPALLOC_OPTIONS asks for (tests/test_frontend.h), printed on stderr.
static inline void stress_require_smpalloc(void) {
#ifndef SMP_TESTING_TEST_NAMES
  // The object that defines the malloc every caller binds to (libc's own calls included) must
  // be the one that holds smpalloc: libsmpalloc.so, or the program itself when it links
  // libsmpalloc.a.
  void *sym = dlsym(RTLD_DEFAULT, "malloc");
  Dl_info info, ours;
  if (sym == NULL || dladdr(sym, &info) == 0 || dladdr((void *)&smp_version, &ours) == 0 ||
      info.dli_fbase != ours.dli_fbase)
    stress_fail("malloc does not come from smpalloc (resolved in %s)",
                sym && dladdr(sym, &info) && info.dli_fname ? info.dli_fname : "?");
#endif
  if (!test_frontend_check(stress_name, stderr)) _exit(1);
}

// ---- the pattern ------------------------------------------------------------------------

static inline uint64_t stress_seed(const void *p, size_t size, uint64_t tag) {
  return stress_mix64((uint64_t)(uintptr_t)p ^ stress_mix64(size * 0x9e3779b97f4a7c15ull ^ tag));
}

// Word k of the pattern: differs from word to word and from block to block.
static inline uint64_t stress_word(uint64_t seed, size_t k) {
  uint64_t x = seed + (uint64_t)k * 0x9e3779b97f4a7c15ull;
  return x ^ (x >> 31) ^ 0x5555555555555555ull;
}

static inline uint8_t stress_byte(uint64_t seed, size_t i) {
  uint64_t w = stress_word(seed, i / 8);
  unsigned char b[8];
  memcpy(b, &w, 8); // the byte order of a stored word, on any machine
  return b[i % 8];
}

// Write bytes [lo, hi) of the pattern into block p.
static inline void stress_fill_range(void *p, uint64_t seed, size_t lo, size_t hi) {
  unsigned char *c = p;
  size_t i = lo;
  for (; i < hi && (i % 8) != 0; i++) c[i] = stress_byte(seed, i);
  for (; i + 8 <= hi; i += 8) {
    uint64_t w = stress_word(seed, i / 8);
    memcpy(c + i, &w, 8);
  }
  for (; i < hi; i++) c[i] = stress_byte(seed, i);
}

// First offset in [lo, hi) that does not hold the pattern, or SIZE_MAX.
static inline size_t stress_find_bad(const void *p, uint64_t seed, size_t lo, size_t hi) {
  const unsigned char *c = p;
  size_t i = lo;
  for (; i < hi && (i % 8) != 0; i++)
    if (c[i] != stress_byte(seed, i)) return i;
  for (; i + 8 <= hi; i += 8) {
    uint64_t w;
    memcpy(&w, c + i, 8);
    if (w != stress_word(seed, i / 8)) break; // find the byte below
  }
  for (; i < hi; i++)
    if (c[i] != stress_byte(seed, i)) return i;
  return SIZE_MAX;
}

// Apply fn to the ranges of the sample of a block of n bytes that meet [lo, hi).
// The sample of n <= STRESS_DENSE_MAX is [0, n).
typedef bool (*stress_range_fn)(void *ctx, size_t lo, size_t hi);

static inline bool stress_clip_call(stress_range_fn fn, void *ctx, size_t a, size_t b, size_t lo,
                                    size_t hi) {
  if (a < lo) a = lo;
  if (b > hi) b = hi;
  return a < b ? fn(ctx, a, b) : true;
}

static inline bool stress_for_sample(size_t n, size_t lo, size_t hi, stress_range_fn fn, void *ctx) {
  if (hi > n) hi = n;
  if (n <= STRESS_DENSE_MAX) return stress_clip_call(fn, ctx, 0, n, lo, hi);
  if (!stress_clip_call(fn, ctx, 0, STRESS_EDGE, lo, hi)) return false;
  size_t tail = n - STRESS_EDGE;
  size_t first = lo > STRESS_EDGE ? lo / STRESS_STRIDE * STRESS_STRIDE : STRESS_STRIDE;
  for (size_t o = first; o < tail && o < hi; o += STRESS_STRIDE) {
    size_t e = o + STRESS_PROBE < tail ? o + STRESS_PROBE : tail;
    if (!stress_clip_call(fn, ctx, o, e, lo, hi)) return false;
  }
  return stress_clip_call(fn, ctx, tail, n, lo, hi);
}

typedef struct stress_pat_ctx {
  void *p;
  uint64_t seed;
  size_t bad; // first bad offset (check)
} stress_pat_ctx_t;

static inline bool stress_fill_cb(void *ctx, size_t lo, size_t hi) {
  stress_pat_ctx_t *c = ctx;
  stress_fill_range(c->p, c->seed, lo, hi);
  return true;
}

static inline bool stress_check_cb(void *ctx, size_t lo, size_t hi) {
  stress_pat_ctx_t *c = ctx;
  c->bad = stress_find_bad(c->p, c->seed, lo, hi);
  return c->bad == SIZE_MAX;
}

// Pattern the sample of a block of n bytes, restricted to [lo, hi).
static inline void stress_fill_sample(void *p, size_t n, uint64_t seed, size_t lo, size_t hi) {
  stress_pat_ctx_t c = {p, seed, SIZE_MAX};
  stress_for_sample(n, lo, hi, stress_fill_cb, &c);
}

// First offset of the sample of n bytes within [lo, hi) that is wrong, or SIZE_MAX.
static inline size_t stress_check_sample(const void *p, size_t n, uint64_t seed, size_t lo,
                                         size_t hi) {
  stress_pat_ctx_t c = {(void *)p, seed, SIZE_MAX};
  stress_for_sample(n, lo, hi, stress_check_cb, &c);
  return c.bad;
}

__attribute__((noreturn)) static inline void stress_fail_content(const char *where, const void *p,
                                                          size_t size, uint64_t tag,
                                                          uint64_t seed, size_t off) {
  const unsigned char *c = p;
  unsigned got[8], want[8];
  for (size_t i = 0; i < 8; i++) {
    size_t j = off + i < size ? off + i : off;
    got[i] = c[j];
    want[i] = stress_byte(seed, j);
  }
  stress_fail("%s: block %p size %zu tag %#llx corrupted at offset %zu: got "
              "%02x%02x%02x%02x%02x%02x%02x%02x want %02x%02x%02x%02x%02x%02x%02x%02x",
              where, p, size, (unsigned long long)tag, off, got[0], got[1], got[2], got[3], got[4],
              got[5], got[6], got[7], want[0], want[1], want[2], want[3], want[4], want[5],
              want[6], want[7]);
}

// Alignment (16, or align if larger) and usable size of a fresh or live block.
static inline void stress_check_shape(const char *where, const void *p, size_t size, size_t align) {
  if (align < 16) align = 16;
  if ((uintptr_t)p % align != 0)
    stress_fail("%s: block %p size %zu not aligned to %zu", where, p, size, align);
  size_t usable = malloc_usable_size((void *)p);
  if (usable < size)
    stress_fail("%s: block %p size %zu has malloc_usable_size %zu", where, p, size, usable);
}

// A block just allocated: check its shape and write its pattern (seed from p, size, tag).
static inline void stress_block_fill(const char *where, void *p, size_t size, size_t align,
                                     uint64_t tag) {
  if (p == NULL) stress_fail("%s: allocation of %zu bytes (align %zu) returned NULL", where, size, align);
  stress_check_shape(where, p, size, align);
  stress_fill_sample(p, size, stress_seed(p, size, tag), 0, size);
}

// A block about to be freed: check its shape and its pattern.
static inline void stress_block_check(const char *where, const void *p, size_t size, size_t align,
                                      uint64_t tag) {
  stress_check_shape(where, p, size, align);
  uint64_t seed = stress_seed(p, size, tag);
  size_t bad = stress_check_sample(p, size, seed, 0, size);
  if (bad != SIZE_MAX) stress_fail_content(where, p, size, tag, seed, bad);
}

// A calloc'd block reads as zero everywhere (the whole block, not a sample).
static inline void stress_check_zero(const char *where, const void *p, size_t size) {
  const unsigned char *c = p;
  size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    uint64_t w;
    memcpy(&w, c + i, 8);
    if (w != 0) break;
  }
  for (; i < size; i++)
    if (c[i] != 0)
      stress_fail("%s: calloc block %p size %zu not zero at offset %zu (byte %02x)", where, p,
                  size, i, c[i]);
}

static inline void *stress_malloc(const char *where, size_t size, uint64_t tag) {
  void *p = malloc(size);
  stress_block_fill(where, p, size, 16, tag);
  return p;
}

static inline void stress_free(const char *where, void *p, size_t size, uint64_t tag) {
  stress_block_check(where, p, size, 16, tag);
  free(p);
}

// ---- a small bounded queue (mutex + condition variables) --------------------------------

typedef struct stress_item {
  void *p;
  size_t size;
  uint64_t tag;
} stress_item_t;

// A ring of cap items of item_size bytes each: stress_item_t, or a program's own record.
typedef struct stress_queue {
  pthread_mutex_t lock;
  pthread_cond_t not_full, not_empty;
  unsigned char *items; // ring of cap items
  size_t item_size, cap, head, count;
  bool closed; // no more pushes will come
} stress_queue_t;

static inline void stress_queue_init(stress_queue_t *q, size_t cap, size_t item_size) {
  pthread_mutex_init(&q->lock, NULL);
  pthread_cond_init(&q->not_full, NULL);
  pthread_cond_init(&q->not_empty, NULL);
  q->items = malloc(cap * item_size);
  if (q->items == NULL) stress_fail("queue: out of memory");
  q->item_size = item_size;
  q->cap = cap;
  q->head = q->count = 0;
  q->closed = false;
}

static inline void stress_queue_destroy(stress_queue_t *q) {
  free(q->items);
  pthread_mutex_destroy(&q->lock);
  pthread_cond_destroy(&q->not_full);
  pthread_cond_destroy(&q->not_empty);
}

// Push up to n items; blocks while full unless try is set. Returns how many were pushed.
static inline size_t stress_queue_push(stress_queue_t *q, const void *items, size_t n, bool try) {
  const unsigned char *it = items;
  size_t done = 0;
  pthread_mutex_lock(&q->lock);
  while (done < n) {
    while (q->count == q->cap) {
      if (try) goto out;
      pthread_cond_wait(&q->not_full, &q->lock);
    }
    while (done < n && q->count < q->cap) {
      memcpy(q->items + ((q->head + q->count) % q->cap) * q->item_size, it + done * q->item_size,
             q->item_size);
      done++;
      q->count++;
    }
    pthread_cond_broadcast(&q->not_empty);
  }
out:
  pthread_mutex_unlock(&q->lock);
  return done;
}

// Pop up to n items; blocks while empty and open unless try is set. 0 means closed and empty
// (or empty, with try).
static inline size_t stress_queue_pop(stress_queue_t *q, void *items, size_t n, bool try) {
  unsigned char *it = items;
  pthread_mutex_lock(&q->lock);
  while (q->count == 0 && !q->closed && !try) pthread_cond_wait(&q->not_empty, &q->lock);
  size_t got = 0;
  while (got < n && q->count > 0) {
    memcpy(it + got * q->item_size, q->items + q->head * q->item_size, q->item_size);
    got++;
    q->head = (q->head + 1) % q->cap;
    q->count--;
  }
  if (got) pthread_cond_broadcast(&q->not_full);
  pthread_mutex_unlock(&q->lock);
  return got;
}

static inline void stress_queue_close(stress_queue_t *q) {
  pthread_mutex_lock(&q->lock);
  q->closed = true;
  pthread_cond_broadcast(&q->not_empty);
  pthread_mutex_unlock(&q->lock);
}

// ---- threads ----------------------------------------------------------------------------

static inline void stress_thread_start(pthread_t *t, void *(*fn)(void *), void *arg) {
  int rc = pthread_create(t, NULL, fn, arg);
  if (rc != 0) stress_fail("pthread_create: %s", strerror(rc));
}

static inline void stress_thread_join(pthread_t t) {
  int rc = pthread_join(t, NULL);
  if (rc != 0) stress_fail("pthread_join: %s", strerror(rc));
}

// ---- heap statistics --------------------------------------------------------------------

// The figures of malloc_stats() (smpalloc's report) and mallinfo2(), read while quiet.
typedef struct stress_heap {
  size_t in_use;      // mallinfo2 uordblks: bytes held by the program
  size_t free_bytes;  // mallinfo2 fordblks: cached + free in spans + free page runs
  size_t mapped;      // mallinfo2 arena + hblkhd
  size_t cached;      // report "cached:" (thread caches)
  size_t span_free;   // report "span free:"
  size_t live_caches; // report "threads: N with a cache"
  size_t exited;      // report "M exited"
  bool per_thread;    // report "frontend: thread ...": per-thread caches (else per-CPU)
  uint64_t hits, misses, restarts; // report per-CPU cache table, summed over caches
  size_t class_spans[96]; // report class table: spans per class (index = class)
  size_t class_size[96];  // report class table: block size per class
  size_t class_in_use[96]; // report class table: blocks of the class held by the program
  size_t class_cached[96]; // report class table: blocks of the class in thread caches
} stress_heap_t;

// Parse "12.3 MiB" / "512 B" from s; returns bytes (approximate to the report's precision).
static inline size_t stress_parse_bytes(const char *s) {
  char *end;
  double v = strtod(s, &end);
  while (*end == ' ') end++;
  double unit = 1;
  if (strncmp(end, "KiB", 3) == 0) unit = 1024.0;
  else if (strncmp(end, "MiB", 3) == 0) unit = 1024.0 * 1024;
  else if (strncmp(end, "GiB", 3) == 0) unit = 1024.0 * 1024 * 1024;
  else if (strncmp(end, "TiB", 3) == 0) unit = 1024.0 * 1024 * 1024 * 1024;
  return (size_t)(v * unit);
}

static inline const char *stress_after(const char *text, const char *label) {
  const char *p = strstr(text, label);
  if (p == NULL) stress_fail("malloc_stats output has no \"%s\":\n%.600s", label, text);
  return p + strlen(label);
}

static inline void stress_heap_read(stress_heap_t *h) {
  static char text[64 * 1024]; // callers are single-threaded at this point
  memset(h, 0, sizeof *h);
  struct mallinfo2 mi = mallinfo2();
  h->in_use = mi.uordblks;
  h->free_bytes = mi.fordblks;
  h->mapped = mi.arena + mi.hblkhd;
  if (!test_report_text(text, sizeof text)) stress_fail("cannot capture the statistics report");
  h->cached = stress_parse_bytes(stress_after(text, "cached:"));
  h->span_free = stress_parse_bytes(stress_after(text, "span free:"));
  h->live_caches = strtoull(stress_after(text, "threads:"), NULL, 10);
  const char *fe = stress_after(text, "frontend:");
  fe += strspn(fe, " ");
  h->per_thread = strncmp(fe, "thread", 6) == 0;
  const char *pc = strstr(text, "restarts      cached      budget\n");
  if (pc) { // cache hits misses restarts cached-bytes unit budget-bytes unit
    pc = strchr(pc, '\n') + 1;
    unsigned long long idx, hit, miss, rs;
    int used = 0;
    while (sscanf(pc, "%llu %llu %llu %llu %*f %*s %*f %*s%n", &idx, &hit, &miss, &rs, &used) == 4) {
      h->hits += hit, h->misses += miss, h->restarts += rs;
      pc += used;
      while (*pc == '\n' || *pc == ' ') pc++;
    }
  }
  const char *e = stress_after(text, "with a cache,");
  h->exited = strtoull(e, NULL, 10);
  const char *t = strstr(text, "cached blocks\n");
  if (t == NULL) stress_fail("malloc_stats output has no class table:\n%.600s", text);
  t += strlen("cached blocks\n");
  while (*t) { // class size span-pages spans in-use cached
    unsigned long long f[6];
    int used = 0;
    if (sscanf(t, "%llu %llu %llu %llu %llu %llu%n", &f[0], &f[1], &f[2], &f[3], &f[4], &f[5],
               &used) != 6)
      break;
    if (f[0] < 96) {
      h->class_spans[f[0]] = f[3];
      h->class_size[f[0]] = f[1];
      h->class_in_use[f[0]] = f[4];
      h->class_cached[f[0]] = f[5];
    }
    t += used;
    while (*t == '\n' || *t == ' ') t++;
  }
}

static inline void stress_heap_print(const char *label, const stress_heap_t *h) {
  fprintf(stderr,
          "%s: %s: in use %zu, free %zu, mapped %zu, cached %zu, span free %zu, caches %zu live "
          "%zu exited\n",
          stress_name, label, h->in_use, h->free_bytes, h->mapped, h->cached, h->span_free,
          h->live_caches, h->exited);
}

// The summary line every program ends with (the time goes to stderr, for the log).
static inline void stress_ok(uint64_t ops, unsigned threads, double started) {
  printf("%s: %llu ops, %u threads, ok\n", stress_name, (unsigned long long)ops, threads);
  fflush(stdout);
  fprintf(stderr, "%s: %.2f s\n", stress_name, stress_now() - started);
}

#endif
