// The error contract of the replacing build: a pointer the allocator does not own, an interior
// pointer, or a double free it can see is reported as "smpalloc: <function>: <what> 0x<hex>"
// on stderr and the process aborts (SIGABRT) instead of corrupting the heap.
// Each test runs misuse_helper (linked against libsmpalloc) with one scenario, captures its
// stdout (where it prints the pointer it is about to misuse) and stderr, and checks the signal,
// the prefix, the function name and that the reported address is the misused pointer.
// The helper inherits the environment's SMPALLOC_OPTIONS; it and this program check that they
// run on the front end those ask for (tests/test_frontend.h).
#define _GNU_SOURCE
#include "test_frontend.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "api_util.h"

#ifndef MISUSE_HELPER
#error "MISUSE_HELPER must name the helper executable"
#endif

// function: the exact function name expected in the report, or NULL to accept any name
// containing "free" (double frees are reported by whichever path sees them first).
static void expect_abort(const char *scenario, const char *function) {
  static run_result_t r; // large; static keeps it off the test's stack
  char *argv[] = {(char *)MISUSE_HELPER, (char *)scenario, NULL};
  cr_assert(run_program(MISUSE_HELPER, argv, NULL, &r), "cannot start %s", MISUSE_HELPER);
  cr_log_info("%s: stdout=[%s] stderr=[%s]", scenario, r.out, r.err);
  cr_assert(strstr(r.out, ": front end ") != NULL && strstr(r.out, "FAIL") == NULL,
            "%s: the helper's front end check: [%s]", scenario, r.out);
  cr_assert(strstr(r.out, "survived") == NULL,
            "%s: the library accepted the misuse and returned (stderr: %s)", scenario, r.err);
  cr_assert(WIFSIGNALED(r.status), "%s: helper was not killed by a signal (status 0x%x)",
            scenario, r.status);
  cr_assert_eq(WTERMSIG(r.status), SIGABRT, "%s: killed by signal %d, want SIGABRT", scenario,
               WTERMSIG(r.status));

  const char *ptr_line = strstr(r.out, "ptr=");
  cr_assert_not_null(ptr_line, "%s: helper printed no pointer", scenario);
  unsigned long long want = strtoull(ptr_line + 4, NULL, 16); // "%p" prints 0x...

  const char *report = strstr(r.err, "smpalloc: ");
  cr_assert_not_null(report, "%s: no \"smpalloc: \" report on stderr: [%s]", scenario, r.err);
  const char *fn = report + strlen("smpalloc: ");
  const char *colon = strstr(fn, ": ");
  cr_assert_not_null(colon, "%s: report has no function: [%s]", scenario, report);
  char got_fn[64] = {0};
  size_t fn_len = (size_t)(colon - fn);
  cr_assert_lt(fn_len, sizeof got_fn, "%s: function name too long", scenario);
  memcpy(got_fn, fn, fn_len);
  if (function)
    cr_assert_str_eq(got_fn, function, "%s: report names %s, want %s", scenario, got_fn, function);
  else
    cr_assert(strstr(got_fn, "free") != NULL, "%s: report names %s, want a free", scenario, got_fn);

  const char *eol = strchr(report, '\n');
  cr_assert_not_null(eol, "%s: report line not terminated", scenario);
  const char *hex = NULL;
  for (const char *h = strstr(report, " 0x"); h && h < eol; h = strstr(h + 1, " 0x")) hex = h + 1;
  cr_assert_not_null(hex, "%s: report has no 0x address: [%s]", scenario, report);
  unsigned long long got = strtoull(hex, NULL, 16);
  cr_assert_eq(got, want, "%s: report names 0x%llx, the misused pointer is 0x%llx", scenario,
               got, want);
}

Test(misuse, double_free_small) { expect_abort("double_free_small", NULL); }
// Freed, then pushed from the thread cache to the central lists, then freed again. The report
// may come from the free fast path's mark check or from the remote push ("double free or
// corrupted span"); either names free.
Test(misuse, double_free_small_flushed) { expect_abort("double_free_small_flushed", NULL); }
// The block sits in another live thread's cache (per-thread caches) or its CPU's cache.
Test(misuse, double_free_other_thread) { expect_abort("double_free_other_thread", NULL); }
// The block is back on its span's list (caches drained by malloc_trim), not in any cache.
Test(misuse, double_free_in_span) { expect_abort("double_free_in_span", NULL); }
Test(misuse, double_free_large) { expect_abort("double_free_large", NULL); }
Test(misuse, double_free_huge) { expect_abort("double_free_huge", NULL); }
Test(misuse, free_stack_address) { expect_abort("free_stack", "free"); }
// p + 16 of a 64-byte block: 16-byte aligned, inside a small span, not a block start.
Test(misuse, free_interior_small_16) { expect_abort("free_interior_small16", "free"); }
Test(misuse, free_interior_small_8) { expect_abort("free_interior_small8", "free"); }
Test(misuse, free_interior_large) { expect_abort("free_interior_large", "free"); }
Test(misuse, free_interior_large_first_page) { expect_abort("free_interior_large_page", "free"); }
Test(misuse, free_mmap_pointer) { expect_abort("free_mmap", "free"); }
Test(misuse, realloc_freed) { expect_abort("realloc_freed", "realloc"); }
Test(misuse, usable_size_interior) { expect_abort("usable_interior", "malloc_usable_size"); }
Test(misuse, free_pointer_one) { expect_abort("free_one", "free"); }
// The same, after a huge block was freed so that its table slot holds a deleted entry on the
// probe path of address 1 (see misuse_helper.c).
Test(misuse, free_pointer_one_after_huge_free) { expect_abort("free_one_after_huge", "free"); }
// smpalloc.h: "A size that cannot belong to the block is reported and aborts."
Test(misuse, free_sized_mismatch) { expect_abort("free_sized_mismatch", "free_sized"); }

Test(misuse, frontend_is_the_one_asked_for) {
  cr_assert(test_frontend_check("test_misuse", stderr), "see the FAIL line above");
}

// The helper itself works: an unknown scenario is refused with status 64, not a crash.
Test(misuse, helper_sanity) {
  static run_result_t r;
  char *argv[] = {(char *)MISUSE_HELPER, (char *)"no_such_scenario", NULL};
  cr_assert(run_program(MISUSE_HELPER, argv, NULL, &r));
  cr_assert(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 64, "status 0x%x", r.status);
  cr_assert(strstr(r.err, "smpalloc") == NULL, "library complained: %s", r.err);
}
