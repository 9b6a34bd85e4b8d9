// Shared helpers of the api conformance tests (header-only, every function static).
// Byte patterns that let a test prove a block was not overwritten, values the compiler cannot
// see through (so malloc(SIZE_MAX) is really called and malloc/free pairs are not elided), and
// running a helper program with its stdout and stderr captured.
#ifndef SMP_TEST_API_UTIL_H
#define SMP_TEST_API_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

// An opaque identity: the optimiser must assume the value escapes and may have changed.
static inline void *opaque(void *p) {
  __asm__ volatile("" : "+r"(p) : : "memory");
  return p;
}
static inline size_t hide(size_t n) {
  __asm__ volatile("" : "+r"(n));
  return n;
}

static inline uint8_t pattern_byte(unsigned seed, size_t i) {
  return (uint8_t)((seed * 0x9e37u) ^ (i * 31u) ^ (i >> 9) ^ 0x5a);
}

static inline void pattern_fill(void *p, size_t n, unsigned seed) {
  uint8_t *b = p;
  for (size_t i = 0; i < n; i++) b[i] = pattern_byte(seed, i);
}

// The index of the first byte that differs from the pattern, or n if all match.
static inline size_t pattern_check(const void *p, size_t n, unsigned seed) {
  const uint8_t *b = p;
  for (size_t i = 0; i < n; i++)
    if (b[i] != pattern_byte(seed, i)) return i;
  return n;
}

static inline bool all_zero(const void *p, size_t n) {
  const uint8_t *b = p;
  for (size_t i = 0; i < n; i++)
    if (b[i] != 0) return false;
  return true;
}

static inline bool is_aligned(const void *p, size_t align) { return ((uintptr_t)p & (align - 1)) == 0; }

// Output of a helper run. Buffers are fixed so collecting them needs no allocation.
typedef struct run_result {
  int status; // as from waitpid
  char out[8192];
  char err[65536];
  size_t out_len, err_len;
} run_result_t;

// Run path with argv, the environment envp (NULL: ours), capturing stdout and stderr.
// Returns false if the program could not be started.
static inline bool run_program(const char *path, char *const argv[], char *const envp[],
                               run_result_t *r) {
  int out_pipe[2], err_pipe[2];
  memset(r, 0, sizeof *r);
  if (pipe2(out_pipe, O_CLOEXEC) != 0) return false;
  if (pipe2(err_pipe, O_CLOEXEC) != 0) return false;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out_pipe[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&fa, err_pipe[1], STDERR_FILENO);
  pid_t pid;
  int rc = posix_spawn(&pid, path, &fa, NULL, argv, envp ? envp : environ);
  posix_spawn_file_actions_destroy(&fa);
  close(out_pipe[1]);
  close(err_pipe[1]);
  if (rc != 0) {
    close(out_pipe[0]);
    close(err_pipe[0]);
    return false;
  }
  struct pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  char *bufs[2] = {r->out, r->err};
  size_t caps[2] = {sizeof r->out - 1, sizeof r->err - 1};
  size_t *lens[2] = {&r->out_len, &r->err_len};
  int open_fds = 2;
  while (open_fds > 0) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; i++) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char tmp[4096];
      ssize_t n = read(fds[i].fd, tmp, sizeof tmp);
      if (n <= 0) {
        close(fds[i].fd);
        fds[i].fd = -1;
        open_fds--;
        continue;
      }
      size_t k = (size_t)n;
      if (k > caps[i] - *lens[i]) k = caps[i] - *lens[i]; // keep the head, drop the rest
      memcpy(bufs[i] + *lens[i], tmp, k);
      *lens[i] += k;
    }
  }
  r->out[r->out_len] = 0;
  r->err[r->err_len] = 0;
  while (waitpid(pid, &r->status, 0) < 0 && errno == EINTR) {
  }
  return true;
}

// Number of newline-terminated lines in s that contain needle (all lines if needle is NULL).
// The process's virtual size (VmSize of /proc/self/status), in bytes; 0 if unreadable.
static inline size_t vm_size(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  size_t kb = 0;
  while (f && fgets(line, sizeof line, f))
    if (sscanf(line, "VmSize: %zu kB", &kb) == 1) break;
  if (f) fclose(f);
  return kb * 1024;
}

static inline int count_lines(const char *s, const char *needle) {
  int n = 0;
  while (*s) {
    const char *end = strchr(s, '\n');
    size_t len = end ? (size_t)(end - s) : strlen(s);
    char line[1024];
    if (len >= sizeof line) len = sizeof line - 1;
    memcpy(line, s, len);
    line[len] = 0;
    if (needle == NULL || strstr(line, needle)) n++;
    if (!end) break;
    s = end + 1;
  }
  return n;
}

#endif
