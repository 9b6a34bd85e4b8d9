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
      // Off: 0, false, no, and sizes of 0 (with or without a suffix).
      bool off = strncmp(v, "false", 5) == 0 || strncmp(v, "no", 2) == 0;
      if (*v == '0') {
        const char *e = v;
        while (*e == '0') e++;
        off = *e == 0 || *e == ',' || ((*e == 'k' || *e == 'm' || *e == 'g') && (e[1] == 0 || e[1] == ','));
      }
      if (!off) return true;
    }
  }
  return false;
}

#endif
