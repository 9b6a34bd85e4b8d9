// The statistics a server can serve: smp_stats_json (and the report it shares its gathering
// with). The checks that need a quiet process run in api_stats_helper (stats_helper.c), a fresh
// single-threaded process; check_stats.py (ctest api_stats_parse) parses its JSON.
#include "test_frontend.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_util.h"
#include "smpalloc.h"

#ifndef STATS_HELPER
#error "STATS_HELPER must name the helper executable"
#endif

static void run_helper(const char *mode) {
  static run_result_t r;
  char *argv[] = {(char *)STATS_HELPER, (char *)mode, NULL};
  cr_assert(run_program(STATS_HELPER, argv, NULL, &r), "cannot start %s", STATS_HELPER);
  cr_assert(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0, "stats_helper %s: status %d\n%s%s",
            mode, r.status, r.out, r.err);
}

Test(stats_json, frontend_is_the_one_asked_for) {
  cr_assert(test_frontend_check("test_stats", stderr), "see the FAIL line above");
}

// Every smp_stats_t field of the JSON's "totals" is smp_stats_get's, in a quiet process.
Test(stats_json, totals_match_smp_stats_get) { run_helper("totals"); }

// A buffer too small: the whole text's length comes back, the buffer holds its prefix and a NUL,
// and nothing is written past len.
Test(stats_json, buffer_too_small) { run_helper("small"); }

// Here, with other threads of the test runner possibly about: a sound object with every member.
Test(stats_json, members_while_allocating) {
  static char buf[1 << 20];
  void *p = malloc(1000);
  int n = smp_stats_json(buf, sizeof buf);
  free(p);
  cr_assert_gt(n, 0);
  cr_assert_lt((size_t)n, sizeof buf);
  cr_assert_eq(strlen(buf), (size_t)n);
  cr_assert_eq(buf[0], '{');
  cr_assert_eq(buf[n - 1], '}');
  const char *members[] = {"\"version\":1,", "\"smpalloc\":\"", "\"frontend\":\"", "\"totals\":{",
                           "\"heaps\":[{\"name\":\"default\"", "\"caches\":{", "\"decay\":{",
                           "\"options\":{", "\"types\":[", "\"busy\":"};
  for (size_t i = 0; i < sizeof members / sizeof members[0]; i++)
    cr_assert(strstr(buf, members[i]) != NULL, "no %s in %s", members[i], buf);
}

// ---- the text report's tables (smp_stats_print, malloc_stats) ----

SMP_TYPE_DEFINE(M_REPORT_ROW, "report_row", "blocks the type table shows");

// The line of text that starts with prefix, copied into line (cut to cap - 1); false if none.
static bool line_of(const char *text, const char *prefix, char *line, size_t cap) {
  for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
    if (strncmp(p, prefix, strlen(prefix)) != 0) continue;
    size_t n = strcspn(p, "\n");
    if (n >= cap) n = cap - 1;
    memcpy(line, p, n);
    line[n] = 0;
    return true;
  }
  return false;
}

// A type's row, as vmstat -m lays it out: InUse (blocks), MemUse and HighUse (KiB, rounded up),
// Requests, and the sizes of the classes used, "large" for blocks above them.
Test(stats_report, type_table_row) {
  static char text[1 << 20];
  void *p[3];
  for (int i = 0; i < 3; i++) p[i] = smp_malloc_type(100, M_REPORT_ROW, 0); // 116: class 128
  void *big = smp_malloc_type(100000, M_REPORT_ROW, 0);
  smp_free_type(p[2], M_REPORT_ROW);
  smp_type_stats_t st = {.version = SMP_TYPE_STATS_VERSION, .size = sizeof st};
  cr_assert_eq(smp_type_stats_get(M_REPORT_ROW, &st), 0);
  cr_assert(test_report_text(text, sizeof text));
  char line[512];
  cr_assert(strstr(text, "  malloc types:\n                Type    InUse   MemUse  HighUse   "
                        "Requests  Size(s)\n") != NULL,
            "no type table with vmstat -m's header in:\n%s", text);
  cr_assert(line_of(text, "          report_row", line, sizeof line), "no row in:\n%s", text);
  unsigned long in_use, mem, high, requests;
  char sizes[128];
  cr_assert_eq(sscanf(line, " report_row %lu %luK %luK %lu %127s", &in_use, &mem, &high, &requests,
                      sizes), 5, "row: [%s]", line);
  cr_assert_eq(in_use, 3, "row: [%s]", line);
  cr_assert_eq(mem, (st.in_use + 1023) / 1024, "row: [%s], in use %llu bytes", line,
               (unsigned long long)st.in_use);
  cr_assert_eq(high, (st.high_water + 1023) / 1024, "row: [%s]", line);
  cr_assert_eq(requests, 4, "row: [%s]", line);
  cr_assert_str_eq(sizes, "128,large", "row: [%s]", line);
  smp_free_type(p[0], M_REPORT_ROW);
  smp_free_type(p[1], M_REPORT_ROW);
  smp_free_type(big, M_REPORT_ROW);
}

// Bytes of a figure the report prints as "12.3 MiB".
static double bytes_of(double v, const char *unit) {
  const char *units[] = {"B", "KiB", "MiB", "GiB"};
  for (int i = 0; i < 4; i++, v *= 1024)
    if (strcmp(unit, units[i]) == 0) return v;
  return -1;
}

// The heap table: a row per heap, the default one first; a control character in a name shows as
// '?', so it cannot break the table's lines.
Test(stats_report, heap_table_rows) {
  static char text[1 << 20];
  smp_heap_t *h = smp_heap_create("table\nrow", 1 << 20);
  cr_assert_not_null(h);
  void *p = smp_heap_malloc(h, 1000, 0);
  cr_assert(test_report_text(text, sizeof text));
  const char *header = strstr(text, "  heap                              in use      cached        free"
                                    "        held       limit    failures\n");
  cr_assert(header != NULL, "no heap table in:\n%s", text);
  const char *first = strchr(header, '\n') + 1;
  cr_assert(strncmp(first, "  default ", 10) == 0, "the default heap's row is not first:\n%s", header);
  char line[512];
  cr_assert(line_of(first, "  table?row ", line, sizeof line), "no row for the heap:\n%s", header);
  double v[5];
  char u[5][8];
  unsigned long failures;
  cr_assert_eq(sscanf(line, " table?row %lf %7s %lf %7s %lf %7s %lf %7s %lf %7s %lu", &v[0], u[0],
                      &v[1], u[1], &v[2], u[2], &v[3], u[3], &v[4], u[4], &failures), 11,
               "row: [%s]", line);
  cr_assert(bytes_of(v[0], u[0]) >= 1000, "in use: [%s]", line);
  cr_assert(bytes_of(v[3], u[3]) >= 8192, "held: [%s]", line);
  cr_assert(bytes_of(v[4], u[4]) == 1 << 20, "limit: [%s]", line);
  cr_assert_eq(failures, 0);
  smp_free(p);
  smp_heap_destroy(h);
}
