// Helper for the SMPALLOC_OPTIONS tests (test_malloc_api.c): linked against libsmpalloc, so the
// options are parsed at start-up. It prints the front end it runs on (tests/test_frontend.h,
// exit 5 if it is not the one the options ask for), uses the heap a little (small, large and
// huge blocks), checks the blocks, prints "ok" on stdout and exits 0. All of that goes to
// stdout; anything the library prints goes to stderr, which the test checks.
#include "test_frontend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
  enum { N = 1000 };
  static char *blocks[N];
  if (!test_frontend_check("api_options_helper", stdout)) return 5;
  for (int i = 0; i < N; i++) {
    size_t size = (size_t)(i * 37) % 3000 + 1;
    blocks[i] = malloc(size);
    if (blocks[i] == NULL) return 2;
    memset(blocks[i], i & 0xff, size);
  }
  for (int i = 0; i < N; i++) {
    if ((unsigned char)blocks[i][0] != (i & 0xff)) return 3;
    free(blocks[i]);
  }
  char *large = malloc(200 * 1024), *huge = malloc(3 << 20);
  if (large == NULL || huge == NULL) return 4;
  memset(large, 1, 200 * 1024);
  memset(huge, 2, 3 << 20);
  free(large);
  free(huge);
  printf("ok\n");
  return 0;
}
