// Helper for test_misuse.c: linked against libsmpalloc, it performs the one misuse named by
// argv[1]. Before the misuse it prints "ptr=<the pointer passed>" on stdout (written at once,
// so the line survives the abort); the test then expects the library to print
// "smpalloc: <function>: <what> 0x<hex>" on stderr and die by SIGABRT.
// If the library lets the misuse pass, the helper prints "survived" and exits 0, which the
// test reports as a failure. First it prints on stdout the front end it runs on, and exits 94
// if that is not the one SMPALLOC_OPTIONS asks for (tests/test_frontend.h).
#define _GNU_SOURCE
#include "test_frontend.h"

#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

void free_sized(void *ptr, size_t size); // C23; glibc 2.36 does not declare it

static void announce(const void *p) {
  char line[64];
  int n = snprintf(line, sizeof line, "ptr=%p\n", p);
  if (write(STDOUT_FILENO, line, (size_t)n) != n) _exit(90);
}

// Keep the compiler from reasoning about (and warning on) the deliberate misuse.
static void *launder(void *p) {
  __asm__ volatile("" : "+r"(p) : : "memory");
  return p;
}

static void *xmalloc(size_t n) {
  void *p = malloc(n);
  if (p == NULL) {
    fprintf(stderr, "helper: malloc(%zu) failed\n", n);
    _exit(91);
  }
  memset(p, 0x33, n);
  return p;
}

// Slot of a huge block's address in the library's huge table of capacity cap (large.c,
// slot_of). Used only to build the free((void *)1) case below deterministically.
static size_t huge_slot(uintptr_t addr, size_t cap) {
  return (size_t)(((addr >> 12) * 0x9e3779b97f4a7c15ull) >> 20) & (cap - 1);
}

// White-box set-up for free((void *)1): the huge table uses key 1 for "deleted", so a deleted
// entry on the probe path of the key 1 (which hashes to slot 0) must not be taken for a live
// block. Get a huge block whose address hashes to slot 0 of the initial 256-entry table by
// leaving exactly one hole of its size at such an address, then free it so that a deleted
// entry sits on that probe path. Returns 1 if the layout was achieved.
static int huge_tombstone_at_slot0(void) {
  const size_t size = 3u << 20; // above the huge threshold (2 MiB), a page multiple
  free(xmalloc(size));          // creates the table before we shape the address space
  const size_t span = (size_t)256 << 20;
  char *r = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (r == MAP_FAILED) return 0;
  char *hole = NULL;
  for (char *a = r + span - size; a >= r; a -= 4096)
    if (huge_slot((uintptr_t)a, 256) == 0) {
      hole = a;
      break;
    }
  if (hole == NULL) return 0;
  munmap(hole, size);
  // Top-down mmap takes the highest hole that fits; blocks that land in other holes stay
  // allocated and plug them (fewer than 64, so the table is not rehashed).
  for (int i = 0; i < 60; i++) {
    void *q = xmalloc(size);
    if (q == hole) {
      free(q);
      return 1;
    }
  }
  return 0;
}

// double_free_other_thread: a thread frees p (p stays in that thread's cache, or its CPU's) and
// waits; main frees p again, so the confirmation must find it in another thread's cache.
static pthread_barrier_t freed, done;
static void *free_and_wait(void *arg) {
  free(arg);
  pthread_barrier_wait(&freed);
  pthread_barrier_wait(&done);
  return NULL;
}

int main(int argc, char **argv) {
  if (!test_frontend_check("api_misuse_helper", stdout)) return 94;
  if (argc != 2) {
    fprintf(stderr, "usage: %s scenario\n", argv[0]);
    return 64;
  }
  const char *s = argv[1];
  if (strcmp(s, "double_free_small") == 0) {
    char *p = xmalloc(64);
    free(p);
    announce(p);
    free(launder(p));
  } else if (strcmp(s, "double_free_small_flushed") == 0) {
    // p is freed first, then enough blocks of its class to push it out of the thread cache
    // to the central lists before the second free.
    enum { N = 1000 };
    static char *others[N];
    char *p = xmalloc(64);
    for (int i = 0; i < N; i++) others[i] = xmalloc(64);
    free(p);
    for (int i = 0; i < N; i++) free(others[i]);
    announce(p);
    free(launder(p));
  } else if (strcmp(s, "double_free_other_thread") == 0) {
    char *p = xmalloc(96);
    pthread_barrier_init(&freed, NULL, 2);
    pthread_barrier_init(&done, NULL, 2);
    pthread_t t;
    if (pthread_create(&t, NULL, free_and_wait, p) != 0) return 94;
    pthread_barrier_wait(&freed);
    announce(p);
    free(launder(p));
    pthread_barrier_wait(&done);
  } else if (strcmp(s, "double_free_in_span") == 0) {
    // p goes back to its span's lists (trim drains the caches; q keeps the span in use), then
    // it is freed again: found on the span's list, not in any cache.
    char *p = xmalloc(3000), *q = xmalloc(3000);
    free(p);
    malloc_trim(0);
    announce(p);
    free(launder(p));
    free(q);
  } else if (strcmp(s, "double_free_large") == 0) {
    char *p = xmalloc(200 * 1024);
    free(p);
    announce(p);
    free(launder(p));
  } else if (strcmp(s, "double_free_huge") == 0) {
    char *p = xmalloc(8u << 20);
    free(p);
    announce(p);
    free(launder(p));
  } else if (strcmp(s, "free_stack") == 0) {
    char local[64];
    memset(local, 0, sizeof local);
    announce(local);
    free(launder(local));
  } else if (strcmp(s, "free_interior_small16") == 0) {
    char *p = xmalloc(64);
    announce(p + 16);
    free(launder(p + 16));
  } else if (strcmp(s, "free_interior_small8") == 0) {
    char *p = xmalloc(64);
    announce(p + 8);
    free(launder(p + 8));
  } else if (strcmp(s, "free_interior_large") == 0) {
    char *p = xmalloc(200 * 1024);
    announce(p + 100 * 1024);
    free(launder(p + 100 * 1024));
  } else if (strcmp(s, "free_interior_large_page") == 0) {
    char *p = xmalloc(200 * 1024);
    announce(p + 16);
    free(launder(p + 16));
  } else if (strcmp(s, "free_mmap") == 0) {
    void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return 92;
    announce(p);
    free(launder(p));
  } else if (strcmp(s, "realloc_freed") == 0) {
    char *p = xmalloc(64);
    free(p);
    announce(p);
    void *q = realloc(launder(p), 128);
    (void)q;
  } else if (strcmp(s, "usable_interior") == 0) {
    char *p = xmalloc(64);
    announce(p + 16);
    size_t n = malloc_usable_size(launder(p + 16));
    printf("usable=%zu\n", n);
  } else if (strcmp(s, "free_one") == 0) {
    announce((void *)1);
    free(launder((void *)1));
  } else if (strcmp(s, "free_one_after_huge") == 0) {
    if (!huge_tombstone_at_slot0())
      fprintf(stderr, "helper: note: could not place a deleted huge entry at slot 0\n");
    announce((void *)1);
    free(launder((void *)1));
  } else if (strcmp(s, "free_sized_mismatch") == 0) {
    char *p = xmalloc(64);
    announce(p);
    free_sized(launder(p), 1000);
  } else {
    fprintf(stderr, "helper: unknown scenario %s\n", s);
    return 64;
  }
  fflush(stdout);
  if (write(STDOUT_FILENO, "survived\n", 9) != 9) return 93;
  return 0;
}
