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
