// The front end a test program must run on, and the check every test program makes once (C and
// C++; header-only). The rule, written down here only: SMPALLOC_OPTIONS asks for
//   thread  if its last valid frontend: item says thread, or debug is on (debug mode caches
//           nothing, so lib/caches/frontend.c picks the per-thread caches even over frontend:percpu),
//           or the build is a ThreadSanitizer one (which cannot follow rseq restarts);
//   percpu  else if its last valid frontend: item says percpu;
//   either  else (frontend:auto or none: per-CPU where rseq works, per-thread where not).
// Items are read as lib/support/options.c reads them: comma-separated, empty items skipped, a later
// item overriding an earlier one, and an item the library rejects (frontend:bogus, debug:maybe)
// ignored. debug is on after a bare "debug" or debug:1/true/yes, off after debug:0/false/no.
// So tests compose their options after the environment's (ctest ENVIRONMENT_MODIFICATION
// string_append:,<items>) and the environment's frontend: holds unless a test forces its own.
// test_frontend_check reads what runs (smp_stats_get's percpu; the name from the statistics
// report) and prints one line: "<who>: front end <name>, wanted <thread|percpu|either>
// (SMPALLOC_OPTIONS=<value>)", with "FAIL: " after "<who>: " when they disagree. A forced
// front end that cannot run (frontend:percpu without rseq) fails too.
// Define _GNU_SOURCE (memfd_create) before any system header, or include this one first.
#ifndef SMP_TEST_FRONTEND_H
#define SMP_TEST_FRONTEND_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "smpalloc.h"

typedef enum { TEST_FRONTEND_EITHER, TEST_FRONTEND_THREAD, TEST_FRONTEND_PERCPU } test_frontend_t;

#if defined(__SANITIZE_THREAD__)
#define TEST_FRONTEND_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TEST_FRONTEND_TSAN 1
#endif
#endif
#ifndef TEST_FRONTEND_TSAN
#define TEST_FRONTEND_TSAN 0
#endif

// One item of an option string: name, and value (after the first ':'; NULL for a bare name).
typedef struct test_option {
  const char *name, *value;
  size_t name_len, value_len;
} test_option_t;

// The next non-empty item of *p (advanced past it), or false at the end.
static inline bool test_option_next(const char **p, test_option_t *o) {
  for (;;) {
    const char *item = *p;
    if (*item == 0) return false;
    size_t len = strcspn(item, ",");
    *p = item + len + (item[len] == ',');
    if (len == 0) continue;
    const char *colon = (const char *)memchr(item, ':', len);
    o->name = item;
    o->name_len = colon ? (size_t)(colon - item) : len;
    o->value = colon ? colon + 1 : NULL;
    o->value_len = colon ? len - o->name_len - 1 : 0;
    return true;
  }
}

static inline bool test_option_is(const char *s, size_t n, const char *word) {
  return s != NULL && strlen(word) == n && memcmp(s, word, n) == 0;
}

// The value of the last item called name in options, copied into buf (NUL-terminated, cut to
// cap - 1 bytes; "" for a bare name); false if there is none.
static inline bool test_option_last(const char *options, const char *name, char *buf, size_t cap) {
  test_option_t o;
  bool found = false;
  for (const char *p = options ? options : ""; test_option_next(&p, &o);) {
    if (!test_option_is(o.name, o.name_len, name)) continue;
    size_t n = o.value_len < cap - 1 ? o.value_len : cap - 1;
    if (n) memcpy(buf, o.value, n);
    buf[n] = 0;
    found = true;
  }
  return found;
}

// The rule above, for an SMPALLOC_OPTIONS value (NULL: unset).
static inline test_frontend_t test_frontend_wanted(const char *options) {
  test_frontend_t frontend = TEST_FRONTEND_EITHER;
  bool debug = false;
  test_option_t o;
  for (const char *p = options ? options : ""; test_option_next(&p, &o);) {
    if (test_option_is(o.name, o.name_len, "frontend")) {
      if (test_option_is(o.value, o.value_len, "auto")) frontend = TEST_FRONTEND_EITHER;
      else if (test_option_is(o.value, o.value_len, "thread")) frontend = TEST_FRONTEND_THREAD;
      else if (test_option_is(o.value, o.value_len, "percpu")) frontend = TEST_FRONTEND_PERCPU;
    } else if (test_option_is(o.name, o.name_len, "debug")) {
      if (o.value == NULL || test_option_is(o.value, o.value_len, "1") ||
          test_option_is(o.value, o.value_len, "true") || test_option_is(o.value, o.value_len, "yes"))
        debug = true;
      else if (test_option_is(o.value, o.value_len, "0") ||
               test_option_is(o.value, o.value_len, "false") || test_option_is(o.value, o.value_len, "no"))
        debug = false;
    }
  }
  if (frontend == TEST_FRONTEND_THREAD || debug || TEST_FRONTEND_TSAN) return TEST_FRONTEND_THREAD;
  return frontend;
}

static inline const char *test_frontend_word(test_frontend_t f) {
  return f == TEST_FRONTEND_THREAD ? "thread" : f == TEST_FRONTEND_PERCPU ? "percpu" : "either";
}

// Whether the per-CPU front end (percpu) or the per-thread one (!percpu) is what options asks for.
static inline bool test_frontend_agrees(const char *options, bool percpu) {
  test_frontend_t want = test_frontend_wanted(options);
  return want == TEST_FRONTEND_EITHER || (want == TEST_FRONTEND_PERCPU) == percpu;
}

// The text of smpalloc's statistics report (smp_stats_print, the same as malloc_stats), cut to
// cap - 1 bytes and NUL-terminated: the report goes to fd 2, pointed at a memory file for the
// call (no other thread may write to stderr meanwhile). False if it could not be captured.
static inline bool test_report_text(char *text, size_t cap) {
  ssize_t n = -1;
  int fd = memfd_create("test-report", 0), saved = dup(STDERR_FILENO);
  fflush(stderr);
  if (fd >= 0 && saved >= 0 && dup2(fd, STDERR_FILENO) >= 0) {
    smp_stats_print();
    dup2(saved, STDERR_FILENO);
    n = pread(fd, text, cap - 1, 0);
  }
  if (saved >= 0) close(saved);
  if (fd >= 0) close(fd);
  text[n > 0 ? n : 0] = 0;
  return n > 0;
}

// The front end's name as the statistics report gives it.
static inline void test_frontend_name(char *buf, size_t cap, bool percpu) {
  snprintf(buf, cap, "%s", percpu ? "percpu" : "thread"); // if the report cannot be read
  char text[1024];
  if (!test_report_text(text, sizeof text)) return;
  const char *fe = strstr(text, "frontend:");
  if (fe == NULL) return;
  fe += strlen("frontend:");
  fe += strspn(fe, " ");
  snprintf(buf, cap, "%.*s", (int)strcspn(fe, "\n"), fe);
}

// The check: prints the line described at the top on out and returns whether the front end
// running is the one SMPALLOC_OPTIONS (in this process's environment) asks for. Call it once,
// while no other thread writes to stderr. It starts the heap if nothing has yet, and makes no
// allocation of its own (stdio may allocate out's buffer on its first use).
static inline bool test_frontend_check(const char *who, FILE *out) {
  smp_stats_t s;
  memset(&s, 0, sizeof s);
  s.version = SMP_STATS_VERSION;
  s.size = sizeof s;
  const char *options = getenv("SMPALLOC_OPTIONS");
  if (smp_stats_get(&s) != 0) {
    fprintf(out, "%s: FAIL: smp_stats_get failed: no front end to check\n", who);
    fflush(out);
    return false;
  }
  bool ok = test_frontend_agrees(options, s.percpu != 0);
  char name[128];
  test_frontend_name(name, sizeof name, s.percpu != 0);
  fprintf(out, "%s: %sfront end %s, wanted %s (SMPALLOC_OPTIONS%s%s%s)\n", who,
          ok ? "" : "FAIL: ", name, test_frontend_word(test_frontend_wanted(options)),
          options ? "=" : " unset", options ? options : "",
          TEST_FRONTEND_TSAN ? "; ThreadSanitizer build" : "");
  fflush(out);
  return ok;
}

#endif
