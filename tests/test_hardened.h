// Whether SMPALLOC_OPTIONS turns hardening on (junk, zero_free, redzone, quarantine, leaks: see
// lib/api/harden.h), or the profiler, whose sampled blocks are hardened ones. Tests whose checks
// rest on what hardening changes by design (realloc moves a block that outgrows its block;
// pointers lie 16 bytes into their blocks; freed blocks wait in the quarantine) ask this to
// leave those checks out when the suite runs hardened (ci/test.sh).
#ifndef TEST_HARDENED_H
#define TEST_HARDENED_H

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static inline bool test_hardened(void) {
  static const char *const names[] = {"junk:", "zero_free:", "redzone:", "quarantine:", "leaks:",
                                      "prof:"};
  const char *o = getenv("SMPALLOC_OPTIONS");
  if (o == NULL) return false;
  for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++) {
    size_t n = strlen(names[i]);
    for (const char *at = strstr(o, names[i]); at; at = strstr(at + 1, names[i])) {
      if (at != o && at[-1] != ',') continue; // a name's tail ("xjunk:")
      const char *v = at + n;
      size_t len = strcspn(v, ","); // the whole value: leaks and prof take paths ("notes.txt")
      // Off: 0, false, no, and sizes of 0 (with or without a suffix).
      bool off = (len == 5 && strncmp(v, "false", 5) == 0) || (len == 2 && strncmp(v, "no", 2) == 0);
      if (*v == '0') {
        size_t zeros = strspn(v, "0");
        off = zeros == len || (zeros + 1 == len && strchr("kmg", v[zeros]) != NULL);
      }
      if (!off) return true;
    }
  }
  return false;
}

#endif
