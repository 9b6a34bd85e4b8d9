// Workload: strings built with realloc. Each thread keeps INFLIGHT strings under construction and
// appends a chunk to a random one at a time (chunks of 1..32 bytes, 1 in 16 of 1..1024), so the
// strings grow interleaved and one cannot always extend in place. Half the strings grow
// geometrically (the capacity doubles when a chunk does not fit), the other half by the chunk:
// one realloc per append, a few bytes at a time. A string that reaches its length (log-uniform
// in 16..max) is checked, shrunk to fit with realloc (the geometric ones), checked again and
// freed, and a new one starts in its place.
// Content: byte i of a string is byte (i + its offset) mod PERIOD of the thread's random
// pattern; PERIOD is prime, so a block that realloc moved or copied wrongly reads differently.
// After each realloc the 16 bytes before the old end are checked (cheap), and the whole string
// when it is finished; a failed realloc is reported.
// Prints reallocs per second and peak RSS.
// Usage: realloc_strings [threads=2] [strings per thread=20000] [max length=65536]
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "footprint.h"
#include "workload.h"

enum { INFLIGHT = 8, PERIOD = 4093, TAIL = 16 };

typedef struct str {
  char *s;
  size_t len, cap, target; // cap: bytes allocated
  size_t offset;           // into the pattern
  int geometric;
} str_t;

typedef struct worker {
  pthread_t tid;
  unsigned id;
  uint64_t seed;
  long strings;              // to finish
  size_t reallocs, bytes;    // owner only, read after join
  unsigned char pattern[2 * PERIOD]; // two periods: any PERIOD bytes from any offset are contiguous
} worker_t;

static size_t max_len;

// 1 if s[from..to) holds the string's content.
static int content_ok(const worker_t *w, const str_t *t, size_t from, size_t to) {
  while (from < to) {
    size_t at = (from + t->offset) % PERIOD, n = to - from < PERIOD ? to - from : PERIOD;
    if (memcmp(t->s + from, w->pattern + at, n) != 0) return 0;
    from += n;
  }
  return 1;
}

static void start(worker_t *w, str_t *t) {
  t->s = NULL;
  t->len = t->cap = 0;
  t->target = footprint_size_log(&w->seed, 16, max_len);
  t->offset = (size_t)(workload_rand(&w->seed) % PERIOD);
  t->geometric = (int)(workload_rand(&w->seed) & 1);
}

// realloc to n bytes; 0 (reported) if it fails or lost the content, and the string is dropped.
static int resize(worker_t *w, str_t *t, size_t n) {
  char *s = realloc(t->s, n);
  w->reallocs++;
  if (!s) {
    workload_fail("realloc_strings: thread %u: realloc(%p, %zu) failed", w->id, (void *)t->s, n);
    return 0;
  }
  t->s = s, t->cap = n;
  size_t keep = t->len < n ? t->len : n;
  if (!content_ok(w, t, keep > TAIL ? keep - TAIL : 0, keep)) {
    workload_fail("realloc_strings: thread %u: realloc to %zu bytes (%p) lost the content before "
                  "byte %zu", w->id, n, (void *)s, keep);
    return 0;
  }
  return 1;
}

static void finish(worker_t *w, str_t *t) {
  if (!content_ok(w, t, 0, t->len)) {
    workload_fail("realloc_strings: thread %u: string %p of %zu bytes corrupted", w->id,
                  (void *)t->s, t->len);
  } else if (t->geometric && t->cap > t->len && resize(w, t, t->len) &&
             !content_ok(w, t, 0, t->len)) {
    workload_fail("realloc_strings: thread %u: string %p corrupted by shrinking to %zu bytes",
                  w->id, (void *)t->s, t->len);
  }
  w->bytes += t->len;
  free(t->s);
}

static void append(worker_t *w, str_t *t) {
  uint64_t r = workload_rand(&w->seed);
  size_t chunk = 1 + (size_t)((r >> 8) % ((r & 15) == 0 ? 1024 : 32));
  if (chunk > t->target - t->len) chunk = t->target - t->len;
  if (t->len + chunk > t->cap) {
    size_t cap = t->len + chunk;
    if (t->geometric && cap < 2 * t->cap) cap = 2 * t->cap;
    if (!resize(w, t, cap)) {
      free(t->s);
      start(w, t);
      return;
    }
  }
  memcpy(t->s + t->len, w->pattern + (t->len + t->offset) % PERIOD, chunk);
  t->len += chunk;
}

static void *run(void *arg) {
  worker_t *w = arg;
  for (size_t i = 0; i < sizeof w->pattern; i++)
    w->pattern[i] = i < PERIOD ? (unsigned char)workload_rand(&w->seed) : w->pattern[i - PERIOD];
  str_t t[INFLIGHT];
  for (unsigned k = 0; k < INFLIGHT; k++) start(w, &t[k]);
  long started = INFLIGHT, done = 0;
  while (done < w->strings) {
    str_t *s = &t[workload_rand(&w->seed) % INFLIGHT];
    if (s->target == 0) continue; // finished, and no more to start
    append(w, s);
    if (s->len < s->target) continue;
    finish(w, s);
    done++;
    if (started < w->strings) started++, start(w, s);
    else s->target = 0;
  }
  return NULL;
}

int main(int argc, char **argv) {
  unsigned threads = argc > 1 ? (unsigned)atoi(argv[1]) : 2;
  long strings = argc > 2 ? atol(argv[2]) : 20000;
  max_len = argc > 3 ? (size_t)atol(argv[3]) : 65536;
  if (threads < 1 || strings < INFLIGHT || max_len <= 16) {
    fprintf(stderr, "usage: realloc_strings [threads] [strings per thread >= %d] "
                    "[max length > 16]\n", INFLIGHT);
    return 2;
  }
  worker_t *w = calloc(threads, sizeof *w);
  if (!w) return 2;
  double t0 = workload_now();
  for (unsigned i = 0; i < threads; i++) {
    w[i].id = i;
    w[i].seed = 0xda942042e4dd58b5ull * (i + 1);
    w[i].strings = strings;
    if (pthread_create(&w[i].tid, NULL, run, &w[i]) != 0) return 2;
  }
  size_t reallocs = 0, bytes = 0;
  for (unsigned i = 0; i < threads; i++) {
    pthread_join(w[i].tid, NULL);
    reallocs += w[i].reallocs, bytes += w[i].bytes;
  }
  double secs = workload_now() - t0;
  long failures = workload_failures();
  printf("realloc_strings threads=%u strings=%ld max=%zu reallocs=%zu built=%zu MiB time=%.3f s "
         "mops=%.2f peak_rss=%ld KiB %s\n",
         threads, strings * threads, max_len, reallocs, bytes >> 20, secs,
         (double)reallocs / secs / 1e6, workload_peak_rss_kib(), failures ? "FAILED" : "ok");
  free(w);
  return failures ? 1 : 0;
}
