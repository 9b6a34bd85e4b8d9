// Hardening (SMPALLOC_OPTIONS junk, zero_free, redzone, quarantine; lib/api/harden.h): each test
// runs a program of harden_helper.c that commits one defect, with the options on, and checks
// that the process aborts with a report that names the defect, the block and, where there is
// one, the offset written.
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "api_util.h"

static char prof_path[64]; // the prof scenario's profile

static run_result_t *run(const char *scenario, const char *options) {
  static run_result_t r;
  static char env[512];
  const char *outer = getenv("SMPALLOC_OPTIONS"); // ci/test.sh's pass 2 (frontend:thread)
  snprintf(env, sizeof env, "SMPALLOC_OPTIONS=%s%s%s", outer ? outer : "", outer && *outer ? "," : "",
           options);
  char *argv[] = {(char *)HARDEN_HELPER, (char *)scenario, (char *)LEAK_PLUGIN, NULL};
  if (strncmp(scenario, "prof", 4) == 0) argv[2] = (char *)prof_path;
  else if (strcmp(scenario, "leaks") != 0) argv[2] = NULL;
  char *envp[] = {env, NULL};
  cr_assert(run_program(HARDEN_HELPER, argv, envp, &r), "cannot start %s", HARDEN_HELPER);
  cr_log_info("%s (%s): stdout=[%s] stderr=[%s]", scenario, options, r.out, r.err);
  return &r;
}

// The scenario aborts with report (and, if not NULL, detail) on stderr, naming its block.
static void expect(const char *scenario, const char *options, const char *report,
                   const char *detail) {
  run_result_t *r = run(scenario, options);
  cr_assert(strstr(r->out, "survived") == NULL, "%s: not reported (stderr: %s)", scenario, r->err);
  cr_assert(WIFSIGNALED(r->status) && WTERMSIG(r->status) == SIGABRT, "%s: status 0x%x, stderr [%s]",
            scenario, r->status, r->err);
  cr_assert(strstr(r->err, report) != NULL, "%s: want [%s] on stderr: [%s]", scenario, report, r->err);
  if (detail) cr_assert(strstr(r->err, detail) != NULL, "%s: want [%s] on stderr: [%s]", scenario, detail, r->err);
  const char *ptr = strstr(r->out, "ptr=");
  cr_assert_not_null(ptr, "%s: no pointer announced", scenario);
  char want[64];
  snprintf(want, sizeof want, "0x%llx", strtoull(ptr + 4, NULL, 16));
  cr_assert(strstr(r->err, want) != NULL, "%s: report does not name %s: [%s]", scenario, want, r->err);
}

// The scenario exits 0 with nothing from smpalloc on stderr.
static void expect_clean(const char *scenario, const char *options) {
  run_result_t *r = run(scenario, options);
  cr_assert(WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0, "%s: status 0x%x, stdout [%s] stderr [%s]",
            scenario, r->status, r->out, r->err);
  cr_assert(strstr(r->err, "smpalloc") == NULL, "%s: stderr [%s]", scenario, r->err);
}

#define ALL "junk:1,redzone:16,quarantine:1m"

Test(redzone, overflow_by_one_byte) {
  expect("overflow_1", "redzone:16", "smpalloc: free: buffer overflow: block ",
         "of 100 bytes (size class 9, 144-byte blocks), heap \"default\": written past its end at offset 100 (byte 0x78, expected 0xfd)");
}
Test(redzone, overflow_by_100_bytes) {
  expect("overflow_100", "redzone:16", "buffer overflow", "written past its end at offset 100 ");
}
Test(redzone, overflow_into_the_slack_of_a_large_block) {
  expect("overflow_large", "redzone:16", "buffer overflow", "of 300000 bytes, heap \"default\": written past its end at offset 300000 ");
}
Test(redzone, overflow_of_an_aligned_block) {
  expect("overflow_aligned", ALL, "buffer overflow", "written past its end at offset 1003 ");
}
Test(redzone, overflow_found_by_realloc) {
  expect("overflow_realloc", "redzone:16", "smpalloc: realloc: buffer overflow", "at offset 41 ");
}
Test(redzone, overflow_past_a_block_realloc_shrank_in_place) {
  expect("overflow_after_shrink", "redzone:16", "smpalloc: free: buffer overflow: block ",
         "of 70 bytes (size class 9, 144-byte blocks), heap \"default\": written past its end at offset 70 ");
}
Test(redzone, overflow_of_a_heap_block_names_its_heap) {
  expect("overflow_heap", ALL, "buffer overflow", "heap \"guarded\": written past its end at offset 64 ");
}
Test(redzone, overflow_of_a_typed_block) {
  // The report names the program's pointer and the type, the offset from that pointer.
  expect("overflow_typed", ALL, "smpalloc: smp_free_type: buffer overflow: block ",
         "of 64 bytes (size class 7, 112-byte blocks), heap \"default\", type harden: written past "
         "its end at offset 64 (byte 0x01, expected 0xfd)");
}
// junk alone (fill mode, harden.h): the program's block is a plain one, 112 bytes for 100.
Test(junk, write_after_free_found_when_the_block_is_reused) {
  expect("write_after_free", "junk:1", "smpalloc: malloc: write after free: block ",
         "of 112 bytes (size class 7, 112-byte blocks), heap \"default\": written after free at offset 24 (byte 0x41, expected 0xde)");
}
// With a redzone, a hardened block: 100 bytes, a header and 8 of canary in a 128-byte block.
Test(junk, write_after_free_of_a_hardened_block_found_when_it_is_reused) {
  expect("write_after_free", "junk:1,redzone:8", "smpalloc: malloc: write after free: block ",
         "(size class 8, 128-byte blocks), heap \"default\": written after free at offset 24 (byte 0x41, expected 0xde)");
}
Test(junk, write_after_free_found_as_it_leaves_the_quarantine) {
  expect("write_after_free_large", "junk:1,quarantine:1m", "smpalloc: free: write after free: block ",
         "of 200000 bytes, heap \"default\": written after free at offset 5000 (byte 0x41, expected 0xde)");
}
Test(junk, write_after_free_found_at_exit_in_the_quarantine) {
  expect("write_after_free", ALL, "smpalloc: exit: write after free: block ", "at offset 24 (byte 0x41, expected 0xde)");
}
Test(junk, freed_blocks_read_as_the_pattern) { expect_clean("read_after_free", "junk:1"); }
Test(junk, new_blocks_read_as_0xa5_and_calloc_as_zero) { expect_clean("fresh", ALL); }
Test(zero_free, freed_blocks_read_as_zero) { expect_clean("zero_free", "zero_free:1"); }
Test(junk, realloc_of_a_plain_block_keeps_its_bytes_and_fills_the_rest) {
  expect_clean("fill_realloc", "junk:1");
  expect_clean("fill_realloc", "zero_free:1,junk:1");
}
Test(junk, new_plain_blocks_read_as_0xa5_and_calloc_as_zero) { expect_clean("fresh", "junk:1"); }
Test(quarantine, double_free_in_the_quarantine) {
  expect("double_free", "quarantine:1m", "smpalloc: free: double free: block ", "of 100 bytes");
}
Test(quarantine, double_free_after_the_quarantine) {
  expect("double_free_late", "quarantine:1m", "smpalloc: free: double free ", NULL);
}
Test(quarantine, double_free_of_a_typed_block) {
  expect("double_free_typed", ALL, "smpalloc: smp_free_type: double free ", NULL);
}
Test(junk, double_free_without_quarantine) {
  expect("double_free", "junk:1", "smpalloc: free: double free ", NULL);
}
Test(redzone, free_sized_takes_the_size_asked_for) { expect_clean("free_sized_exact", ALL); }
Test(redzone, free_sized_with_a_larger_size) {
  expect("free_sized_long", ALL, "smpalloc: free_sized: size does not match block", NULL);
}
Test(redzone, nowait_realloc_resizes_in_place) { expect_clean("nowait_realloc", ALL); }
Test(quarantine, nowait_realloc_of_a_freed_block) {
  expect("nowait_realloc_freed", "quarantine:1m", "smpalloc: smp_reallocx: double free: block ",
         "of 100 bytes");
}
Test(junk, interior_pointer) {
  expect("interior", ALL, "smpalloc: free: invalid pointer ", NULL);
}

// ---- leaks ----

// The line of HARDEN_HELPER_SOURCE that holds marker.
static unsigned source_line(const char *marker) {
  FILE *f = fopen(HARDEN_HELPER_SOURCE, "r");
  cr_assert_not_null(f, "cannot read %s", HARDEN_HELPER_SOURCE);
  char line[512];
  unsigned n = 0, found = 0;
  while (!found && fgets(line, sizeof line, f)) {
    n++;
    if (strstr(line, marker) && strstr(line, "alloc(")) found = n;
  }
  fclose(f);
  cr_assert(found, "no %s in %s", marker, HARDEN_HELPER_SOURCE);
  return found;
}

// The group "<bytes> bytes in <blocks> blocks" in report: where it starts; its first frame must
// name function and, asked of addr2line, be at the line of marker (if not NULL).
static const char *expect_group(const char *report, const char *group, const char *function,
                                const char *marker) {
  const char *g = strstr(report, group);
  cr_assert_not_null(g, "no group [%s] in [%s]", group, report);
  const char *frame = strstr(g, "#0 ");
  cr_assert_not_null(frame, "group [%s] has no frames", group);
  const char *end = strchr(frame, '\n');
  char first[1024];
  snprintf(first, sizeof first, "%.*s", (int)(end - frame), frame);
  cr_assert(strstr(first, function) != NULL, "group [%s]: first frame [%s], want %s", group, first, function);
  if (marker) {
    // "(module+0xoffset)": what addr2line -e module takes.
    const char *open = strrchr(first, '('), *plus = strrchr(first, '+');
    cr_assert(open && plus && plus > open, "frame [%s] has no module+offset", first);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "addr2line -e '%.*s' %.*s", (int)(plus - open - 1), open + 1,
             (int)(strlen(plus + 1) - 1), plus + 1);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p, "cannot run %s", cmd);
    char where[1024] = "";
    if (fgets(where, sizeof where, p) == NULL) where[0] = 0;
    pclose(p);
    char want[64];
    snprintf(want, sizeof want, "harden_helper.c:%u", source_line(marker));
    cr_assert(strstr(where, want) != NULL, "%s said [%s] for [%s], want %s", cmd, where, first, want);
  }
  return g;
}

static void check_leak_report(const char *report) {
  cr_assert(strstr(report, "smpalloc: leaks: ") != NULL, "no leak report: [%s]", report);
  const char *three = expect_group(report, "leak: 120000 bytes in 3 blocks", "leak_site_three+", "LEAK_THREE");
  const char *plugin = expect_group(report, "leak: 35000 bytes in 7 blocks", "leak_plugin_alloc+", NULL);
  cr_assert(strstr(plugin, "leak_plugin.so+") != NULL, "the plugin's frame names its module: [%s]", plugin);
  const char *one = expect_group(report, "leak: 20000 bytes in 20 blocks", "leak_site_one+", "LEAK_ONE");
  const char *two = expect_group(report, "leak: 3000 bytes in 10 blocks", "leak_site_two+", "LEAK_TWO");
  cr_assert(three < plugin && plugin < one && one < two, "groups not largest first: [%s]", report);
  cr_assert(strstr(report, "in 50 blocks") == NULL, "freed blocks reported: [%s]", report);
}

Test(leaks, every_block_left_is_reported_by_stack_largest_first) {
  run_result_t *r = run("leaks", "leaks:1");
  cr_assert(WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0, "status 0x%x, stderr [%s]", r->status, r->err);
  check_leak_report(r->err);
}

Test(leaks, the_report_goes_to_a_file) {
  char path[] = "/tmp/smp_leaks_XXXXXX";
  int fd = mkstemp(path);
  cr_assert(fd >= 0);
  close(fd);
  char options[128];
  snprintf(options, sizeof options, "leaks:%s,junk:1,redzone:16,quarantine:1m", path);
  run_result_t *r = run("leaks", options);
  cr_assert(WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0, "status 0x%x, stderr [%s]", r->status, r->err);
  cr_assert(strstr(r->err, "smpalloc") == NULL, "stderr: [%s]", r->err);
  static char text[65536];
  FILE *f = fopen(path, "r");
  cr_assert_not_null(f);
  size_t n = fread(text, 1, sizeof text - 1, f);
  text[n] = 0;
  fclose(f);
  unlink(path);
  check_leak_report(text);
}

Test(leaks, a_report_of_a_defect_names_the_stacks) {
  expect("double_free", "leaks:1,quarantine:1m", "double free", "  allocated at:\n    #0 ");
  run_result_t *r = run("double_free", "leaks:1,quarantine:1m");
  cr_assert(strstr(r->err, "  freed at:\n    #0 ") != NULL, "stderr: [%s]", r->err);
  cr_assert(strstr(r->err, " main+") != NULL, "stderr: [%s]", r->err);
}

// ---- the sampling heap profiler ----

static char *slurp(const char *path) {
  static char text[1 << 20];
  FILE *f = fopen(path, "r");
  cr_assert_not_null(f, "cannot read %s", path);
  size_t n = fread(text, 1, sizeof text - 1, f);
  text[n] = 0;
  fclose(f);
  return text;
}

// The bytes of the folded line whose innermost frame is function, or -1.
static double folded_bytes(const char *folded, const char *function) {
  char key[128];
  snprintf(key, sizeof key, ";%s ", function);
  const char *at = strstr(folded, key);
  return at ? strtod(at + strlen(key), NULL) : -1;
}


static void expect_near(double got, double truth, const char *what) {
  cr_assert(got >= truth * 0.9 && got <= truth * 1.1, "%s: estimate %.0f, truth %.0f (more than 10%% off)",
            what, got, truth);
}

// google-pprof --text on the profile: its output, and the flat MB of two functions.
static const char *pprof_text(const char *function1, double *mb1, const char *function2, double *mb2) {
  char cmd[512];
  snprintf(cmd, sizeof cmd, "google-pprof --text %s %s 2>&1", HARDEN_HELPER, prof_path);
  FILE *p = popen(cmd, "r");
  cr_assert_not_null(p);
  static char out[65536], copy[65536];
  size_t n = fread(out, 1, sizeof out - 1, p);
  out[n] = 0;
  int status = pclose(p);
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s: status 0x%x [%s]", cmd, status, out);
  cr_log_info("%s: [%s]", cmd, out);
  memcpy(copy, out, n + 1);
  // "    19.0  79.9%  79.9%     19.0  79.9% prof_site_small" (MB, flat first)
  *mb1 = *mb2 = -1;
  for (char *line = strtok(copy, "\n"); line; line = strtok(NULL, "\n")) {
    double flat;
    if (sscanf(line, "%lf", &flat) != 1) continue;
    if (function1 && strstr(line, function1)) *mb1 = flat;
    if (function2 && strstr(line, function2)) *mb2 = flat;
  }
  return out;
}

// The prof scenario under options: the folded estimates and google-pprof's within 10% of the
// truth; header names the profile's kind.
static void check_profile(const char *options, const char *header) {
  snprintf(prof_path, sizeof prof_path, "/tmp/smp_prof_%d.heap", (int)getpid());
  run_result_t *r = run("prof", options);
  cr_assert(WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0, "status 0x%x, stdout [%s] stderr [%s]",
            r->status, r->out, r->err);
  char folded_path[80];
  snprintf(folded_path, sizeof folded_path, "%s.folded", prof_path);
  const char *folded = slurp(folded_path);
  cr_log_info("folded: [%s]", folded);
  expect_near(folded_bytes(folded, "prof_site_small"), 20e6, "prof_site_small (1000-byte blocks)");
  expect_near(folded_bytes(folded, "prof_site_big"), 5e6, "prof_site_big (100,000-byte blocks)");
  expect_near(folded_bytes(folded, "prof_site_aligned"), 20e6, "prof_site_aligned (1000-byte blocks aligned to 64)");
  cr_assert(folded_bytes(folded, "prof_site_churn") < 0, "freed blocks are not live: [%s]", folded);
  const char *heap = slurp(prof_path);
  cr_assert(strncmp(heap, "heap profile: ", 14) == 0 && strstr(heap, header), "header: [%.200s]", heap);
  cr_assert(strstr(heap, "\nMAPPED_LIBRARIES:\n") != NULL, "no MAPPED_LIBRARIES section");
  // google-pprof (Debian's google-perftools) reads it and scales the samples itself.
  double mb_small, mb_big;
  pprof_text(" prof_site_small", &mb_small, " prof_site_big", &mb_big);
  expect_near(mb_small * 1048576, 20e6, "google-pprof: prof_site_small");
  expect_near(mb_big * 1048576, 5e6, "google-pprof: prof_site_big");
  unlink(prof_path);
  unlink(folded_path);
}

Test(prof, live_bytes_per_stack_are_estimated_within_10_percent, .timeout = 60) {
  check_profile("prof:1,prof_sample:8k", "@ heap_v2/8192\n");
}

// (With junk or zero_free alone, fill mode, the profile is sampled: only a redzone, the
// quarantine or leaks harden every block.)
Test(prof, sampled_in_fill_mode, .timeout = 60) {
  check_profile("prof:1,prof_sample:8k,junk:1", "@ heap_v2/8192\n");
}
Test(prof, with_hardening_every_block_is_recorded_and_not_scaled, .timeout = 60) {
  check_profile("prof:1,redzone:8", "@ heapprofile\n");
}

Test(prof, requests_at_the_edges, .timeout = 30) {
  snprintf(prof_path, sizeof prof_path, "/tmp/smp_prof_%d.heap", (int)getpid());
  run_result_t *r = run("prof_edges", "prof:1,prof_sample:1");
  cr_assert(WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0, "status 0x%x, stdout [%s] stderr [%s]",
            r->status, r->out, r->err);
  double mb, none;
  const char *out = pprof_text(" main", &mb, NULL, &none);
  cr_assert(strstr(out, "Total: ") != NULL, "[%s]", out);
  char folded_path[80];
  snprintf(folded_path, sizeof folded_path, "%s.folded", prof_path);
  const char *folded = slurp(folded_path);
  // The 0-byte blocks are the program's only live ones with a stack (whether its frames are
  // named depends on the build: the sanitizer builds export fewer symbols).
  double bytes = 0;
  for (const char *line = folded; *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : "") {
    const char *space = strchr(line, ' ');
    if (strncmp(line, "[no stack]", 10) != 0 && space) bytes += strtod(space + 1, NULL);
  }
  cr_assert(bytes >= 100 && bytes <= 200, "100 blocks of 0 bytes weigh a byte each: [%s]", folded);
  unlink(prof_path);
  unlink(folded_path);
}
