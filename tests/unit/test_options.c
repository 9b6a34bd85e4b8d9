// Unit tests of lib/options: parsing, defaults, and one warning per bad item.
#include <criterion/criterion.h>
#include <criterion/redirect.h>

#include "options.h"

static void redirect(void) { cr_redirect_stderr(); }

Test(options, defaults_without_spec) {
  smp_options_parse(NULL);
  cr_assert_eq(smp_options.stats, false);
  cr_assert_eq(smp_options.debug, false);
  cr_assert_eq(smp_options.cache_size, 1024 * 1024);
}

Test(options, values_and_suffixes) {
  smp_options_parse("stats:1,debug:true,cache_size:256k");
  cr_assert(smp_options.stats);
  cr_assert(smp_options.debug);
  cr_assert_eq(smp_options.cache_size, 256 * 1024);
  smp_options_parse("stats:no,cache_size:2m");
  cr_assert_not(smp_options.stats);
  cr_assert_not(smp_options.debug, "each parse starts from the defaults");
  cr_assert_eq(smp_options.cache_size, 2 * 1024 * 1024);
  smp_options_parse("stats");
  cr_assert(smp_options.stats, "a bare boolean name means true");
}

// background takes 0, 1 or auto (the default); anything else warns and keeps auto.
Test(options, background_choices, .init = redirect) {
  smp_options_parse(NULL);
  cr_assert_eq(smp_options.background, SMP_BACKGROUND_AUTO);
  smp_options_parse("background:0");
  cr_assert_eq(smp_options.background, SMP_BACKGROUND_OFF);
  smp_options_parse("background:1");
  cr_assert_eq(smp_options.background, SMP_BACKGROUND_ON);
  smp_options_parse("background:1,background:auto");
  cr_assert_eq(smp_options.background, SMP_BACKGROUND_AUTO);
  smp_options_parse("background:yes");
  cr_assert_eq(smp_options.background, SMP_BACKGROUND_AUTO);
  fflush(stderr);
  cr_assert_stderr_eq_str("smpalloc: warning: SMPALLOC_OPTIONS: bad value ignored: background:yes\n");
}

Test(options, unknown_option_warns_once_and_is_ignored, .init = redirect) {
  smp_options_parse("bogus:1,stats:1");
  cr_assert(smp_options.stats, "the valid option after the bad one still applies");
  fflush(stderr);
  cr_assert_stderr_eq_str("smpalloc: warning: SMPALLOC_OPTIONS: unknown option ignored: bogus:1\n");
}

Test(options, bad_values_warn_and_keep_default, .init = redirect) {
  smp_options_parse("stats:maybe,cache_size:12q,cache_size:99999999999999999999999,cache_size:2g");
  cr_assert_not(smp_options.stats);
  cr_assert_eq(smp_options.cache_size, 1024 * 1024);
  cr_assert_stderr_eq_str(
      "smpalloc: warning: SMPALLOC_OPTIONS: bad value ignored: stats:maybe\n"
      "smpalloc: warning: SMPALLOC_OPTIONS: bad value ignored: cache_size:12q\n"
      "smpalloc: warning: SMPALLOC_OPTIONS: bad value ignored: cache_size:99999999999999999999999\n"
      "smpalloc: warning: SMPALLOC_OPTIONS: bad value ignored: cache_size:2g\n");
}

Test(options, empty_items_are_skipped, .init = redirect) {
  smp_options_parse(",,stats:1,,");
  cr_assert(smp_options.stats);
  cr_assert_stderr_eq_str("");
}
