// Helper of the statistics-export tests (test_stats.c, check_stats.py): a fresh, single-threaded
// process (no background thread, nothing allocating behind the calls), so the figures of two
// calls in a row agree. It sets up heaps and malloc types whose names need escaping (a quote, a
// backslash, a newline, a control byte, a byte that is not UTF-8, an é), blocks of every tier,
// then by mode:
//   json     prints smp_stats_json's text on stdout (check_stats.py parses it)
//   xml      prints malloc_info(0, stdout) (check_stats.py parses it), after checking that
//            malloc_info(1, stdout) is EINVAL and prints nothing
//   totals   checks that every smp_stats_t field in the JSON's "totals" equals smp_stats_get's
//   small    checks buffers too small: the whole length returned, a NUL-terminated prefix, not a
//            byte written past len
// Exit 0 when the checks hold, 1 with a message on stderr when not (94: the wrong front end).
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smpalloc.h"
#include "test_frontend.h"

SMP_TYPE_DEFINE(M_ODD, "odd \"name\"\\\n\x01\xff", "blocks named oddly, \xc3\xa9");
SMP_TYPE_DEFINE(M_PLAIN, "plain", "plain blocks");

static int fail(const char *what, const char *detail) {
  fprintf(stderr, "stats_helper: FAIL: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
  return 1;
}

static void *keep[16]; // the blocks stay live for the whole run

static void setup(void) {
  smp_heap_t *h = smp_heap_create("req\"uest\\ \x01\xff \xc3\xa9", 1 << 20);
  if (h) keep[0] = smp_heap_malloc(h, 100, 0);
  keep[1] = malloc(48);
  keep[2] = malloc(200 * 1024);      // a page run
  keep[3] = malloc(5 * 1024 * 1024); // a huge block
  keep[4] = smp_malloc_type(16, M_ODD, 0);
  keep[5] = smp_malloc_type(100, M_ODD, 0);
  keep[6] = smp_malloc_type(5000, M_PLAIN, SMP_ZERO);
  keep[7] = smp_malloc_type(100000, M_PLAIN, 0); // larger than the small classes
  free(smp_malloc_type(300, M_PLAIN, 0));
}

// The JSON's "totals" member named name, or -1 if it is missing.
static long long total_of(const char *json, const char *name) {
  const char *totals = strstr(json, "\"totals\":{");
  if (totals == NULL) return -1;
  const char *end = strchr(totals, '}');
  char key[64];
  snprintf(key, sizeof key, "\"%s\":", name);
  const char *at = strstr(totals, key);
  if (at == NULL || at > end) return -1;
  return strtoll(at + strlen(key), NULL, 10);
}

#define FIELD(f) {#f, offsetof(smp_stats_t, f), sizeof(((smp_stats_t *)0)->f)}
static const struct {
  const char *name;
  size_t offset, size;
} fields[] = {FIELD(in_use),     FIELD(cached),       FIELD(free),           FIELD(dirty),
              FIELD(mapped),     FIELD(resident),     FIELD(purged),         FIELD(purges),
              FIELD(mappings),   FIELD(chunks_unmapped), FIELD(threads),     FIELD(percpu),
              FIELD(background), FIELD(cpus),         FIELD(cache_slots),    FIELD(limit),
              FIELD(held),       FIELD(failures),     FIELD(heaps),          FIELD(reserve_size),
              FIELD(reserve_in_use), FIELD(huge_cached)};

static char text[1 << 20]; // static, not the heap's: writing it changes no figure

static int check_totals(void) {
  smp_stats_t before = {.version = SMP_STATS_VERSION, .size = sizeof before};
  smp_stats_t after = before;
  if (smp_stats_get(&before) != 0) return fail("smp_stats_get", NULL);
  int n = smp_stats_json(text, sizeof text);
  if (smp_stats_get(&after) != 0) return fail("smp_stats_get", NULL);
  if (n <= 0 || (size_t)n >= sizeof text) return fail("smp_stats_json's length", NULL);
  if (memcmp(&before, &after, sizeof before) != 0) return fail("the process is not quiet", NULL);
  for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
    const char *p = (const char *)&before + fields[i].offset;
    unsigned long long want = fields[i].size == 8 ? *(const uint64_t *)p : *(const uint32_t *)p;
    long long got = total_of(text, fields[i].name);
    if (got < 0 || (unsigned long long)got != want) {
      char detail[160];
      snprintf(detail, sizeof detail, "totals.%s is %lld, smp_stats_get says %llu", fields[i].name,
               got, want);
      return fail("a total differs", detail);
    }
  }
  if (strstr(text, "\"busy\":0}") == NULL) return fail("busy is not 0 in a quiet process", NULL);
  printf("stats_helper: %zu totals match smp_stats_get\n", sizeof fields / sizeof fields[0]);
  return 0;
}

static char whole[1 << 20], part[1 << 20];

static int check_small(void) {
  int n = smp_stats_json(NULL, 0);
  if (n <= 0) return fail("smp_stats_json(NULL, 0) gave no length", NULL);
  if (smp_stats_json(whole, sizeof whole) != n || strlen(whole) != (size_t)n)
    return fail("the whole text's length is not what the measuring call said", NULL);
  if (smp_stats_json(NULL, 5) != n) return fail("a NULL buffer with len 5 is not measured", NULL);
  size_t lens[] = {1, 2, 7, (size_t)n / 2, (size_t)n - 1, (size_t)n, (size_t)n + 1};
  for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
    size_t len = lens[i];
    memset(part, '#', (size_t)n + 64);
    int got = smp_stats_json(part, len);
    size_t kept = len - 1 < (size_t)n ? len - 1 : (size_t)n;
    char detail[160];
    snprintf(detail, sizeof detail, "len %zu: returned %d (want %d), strlen %zu (want %zu)", len,
             got, n, strlen(part), kept);
    if (got != n || part[kept] != 0 || strlen(part) != kept || memcmp(part, whole, kept) != 0)
      return fail("a cut text", detail);
    for (size_t k = len; k < (size_t)n + 64; k++)
      if (part[k] != '#') return fail("a byte written past len", detail);
  }
  part[0] = '#';
  if (smp_stats_json(part, 0) != n || part[0] != '#') return fail("len 0 wrote something", NULL);
  printf("stats_helper: %d bytes; cut texts are prefixes, NUL-terminated within len\n", n);
  return 0;
}

// Free what setup made (a type with blocks left at exit is reported on stderr).
static int teardown(int status) {
  for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++) free(keep[i]);
  return status;
}

static int run(const char *mode) {
  if (strcmp(mode, "json") == 0) {
    int n = smp_stats_json(text, sizeof text);
    if (n <= 0 || (size_t)n >= sizeof text) return fail("smp_stats_json's length", NULL);
    fputs(text, stdout);
    return 0;
  }
  if (strcmp(mode, "xml") == 0) {
    if (malloc_info(1, stdout) != EINVAL) return fail("malloc_info(1, ...) is not EINVAL", NULL);
    return malloc_info(0, stdout) == 0 ? 0 : fail("malloc_info(0, stdout) failed", NULL);
  }
  if (strcmp(mode, "totals") == 0) return check_totals();
  if (strcmp(mode, "small") == 0) return check_small();
  return fail("unknown mode", mode);
}

int main(int argc, char **argv) {
  if (argc != 2) return fail("usage: stats_helper json|xml|totals|small", NULL);
  if (!test_frontend_check("api_stats_helper", stderr)) return 94;
  setup();
  return teardown(run(argv[1]));
}
