// Standalone driver: runs LLVMFuzzerTestOneInput over every file named on the command line or
// found (sorted, not recursively) in a directory named there, so the committed corpus runs as a
// regression test with any compiler. Arguments starting with '-' are ignored (libFuzzer flags).
// Exit status 0 if every input ran; an input that finds a bug aborts inside the fuzz target.
// First it prints the front end it runs on, and exits 1 if that is not the one SMPALLOC_OPTIONS
// asks for (tests/test_frontend.h).
#include "test_frontend.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static unsigned long inputs;
static unsigned long long bytes;

static int run_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    perror(path);
    return 1;
  }
  size_t cap = 4096, n = 0;
  uint8_t *buf = malloc(cap);
  for (size_t k; buf && (k = fread(buf + n, 1, cap - n, f)) > 0;) {
    n += k;
    if (n == cap) buf = realloc(buf, cap *= 2);
  }
  int bad = buf == NULL || ferror(f);
  fclose(f);
  if (bad) {
    fprintf(stderr, "replay: cannot read %s\n", path);
    free(buf);
    return 1;
  }
  fprintf(stderr, "replay: %s (%zu bytes)", path, n);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  LLVMFuzzerTestOneInput(buf, n);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  fprintf(stderr, " %.3f ms\n", (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6);
  inputs++;
  bytes += n;
  free(buf);
  return 0;
}

static int by_name(const struct dirent **a, const struct dirent **b) {
  return strcmp((*a)->d_name, (*b)->d_name);
}

static int run_path(const char *path) {
  struct stat st;
  if (stat(path, &st) != 0) {
    perror(path);
    return 1;
  }
  if (!S_ISDIR(st.st_mode)) return run_file(path);
  struct dirent **names;
  int n = scandir(path, &names, NULL, by_name), errors = 0;
  if (n < 0) {
    perror(path);
    return 1;
  }
  for (int i = 0; i < n; i++) {
    char file[4096];
    snprintf(file, sizeof file, "%s/%s", path, names[i]->d_name);
    if (stat(file, &st) == 0 && S_ISREG(st.st_mode)) errors += run_file(file);
    free(names[i]);
  }
  free(names);
  return errors;
}

int main(int argc, char **argv) {
  if (!test_frontend_check("replay", stderr)) return 1;
  int errors = 0;
  for (int i = 1; i < argc; i++)
    if (argv[i][0] != '-') errors += run_path(argv[i]);
  printf("replay: %lu inputs, %llu bytes, %s\n", inputs, bytes, errors ? "ERRORS" : "ok");
  return errors || inputs == 0;
}
