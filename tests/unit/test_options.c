// Unit tests of lib/options: parsing, defaults, and one warning per bad item.
#include <criterion/criterion.h>
#include <criterion/redirect.h>

#include <signal.h>
#include <stdio.h>
#include <string.h>

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

// stats_signal: a number or a name, with or without SIG, in any case; not a fault signal, KILL
// or STOP (the kernel sends the first for faults, the others cannot be caught).
Test(options, stats_signal_names_and_numbers, .init = redirect) {
  smp_options_parse(NULL);
  cr_assert_eq(smp_options.stats_signal, 0, "off by default");
  const struct {
    const char *spec;
    size_t want;
  } good[] = {{"stats_signal:USR2", SIGUSR2}, {"stats_signal:SIGUSR1", SIGUSR1},
              {"stats_signal:usr2", SIGUSR2}, {"stats_signal:sigwinch", SIGWINCH},
              {"stats_signal:12", 12},         {"stats_signal:0", 0}};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    smp_options_parse(good[i].spec);
    cr_assert_eq(smp_options.stats_signal, good[i].want, "%s", good[i].spec);
  }
  smp_options_parse("stats_signal:34");
  cr_assert_eq(smp_options.stats_signal, SIGRTMIN <= 34 ? 34 : 0, "a real-time signal by number");
  smp_options_parse("stats_signal:SEGV,stats_signal:9,stats_signal:STOP,stats_signal:USR3,"
                    "stats_signal:99,stats_signal");
  cr_assert_eq(smp_options.stats_signal, 0);
  fflush(stderr);
  cr_assert_stderr_eq_str(
      "smpalloc: warning: SMPALLOC_OPTIONS: bad value ignored: stats_signal:SEGV\n"
      "smpalloc: warning: SMPALLOC_OPTIONS: bad value ignored: stats_signal:9\n"
      "smpalloc: warning: SMPALLOC_OPTIONS: bad value ignored: stats_signal:STOP\n"
      "smpalloc: warning: SMPALLOC_OPTIONS: bad value ignored: stats_signal:USR3\n"
      "smpalloc: warning: SMPALLOC_OPTIONS: bad value ignored: stats_signal:99\n"
      "smpalloc: warning: SMPALLOC_OPTIONS: bad value ignored: stats_signal\n");
}

// stats_file: kept whole (colons included) up to the next comma; empty or too long is refused.
Test(options, stats_file_path, .init = redirect) {
  smp_options_parse(NULL);
  cr_assert_str_eq(smp_options.stats_file, "", "stderr by default");
  smp_options_parse("stats_file:/tmp/a:b.txt,stats:1");
  cr_assert_str_eq(smp_options.stats_file, "/tmp/a:b.txt");
  cr_assert(smp_options.stats);
  char spec[SMP_OPTIONS_PATH_MAX + 32] = "stats_file:/";
  memset(spec + strlen(spec), 'x', SMP_OPTIONS_PATH_MAX);
  spec[sizeof spec - 1] = 0;
  smp_options_parse(spec);
  cr_assert_str_eq(smp_options.stats_file, "", "a path too long is refused");
  smp_options_parse("stats_file:");
  cr_assert_str_eq(smp_options.stats_file, "");
  fflush(stderr);
  char want[512]; // the warning quotes at most 63 bytes of the item
  snprintf(want, sizeof want,
           "smpalloc: warning: SMPALLOC_OPTIONS: bad value ignored: %.63s\n"
           "smpalloc: warning: SMPALLOC_OPTIONS: bad value ignored: stats_file:\n", spec);
  cr_assert_stderr_eq_str(want);
}
