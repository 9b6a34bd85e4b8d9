// Helper for test_heap.c's death tests: linked against libsmpalloc, it performs the one
// scenario named by argv[1], each of which the header (smpalloc.h, "Heaps") says must be
// reported on stderr and abort:
//   free_destroyed_small|large|huge|region, smp_free_destroyed, realloc_destroyed,
//   usable_destroyed   a block of a destroyed heap used by free/smp_free/realloc/smp_usable_size:
//                      "smpalloc: <function>: block of a destroyed heap 0x<block>"
//   destroy_default    smp_heap_destroy(smp_heap_default()): reported, aborts
//   nofail_limit, nofail_region, nofail_realloc, nofail_mallocx
//                      an SMP_NOFAIL request that cannot be met (a limited heap or a region
//                      full, no reserve, the OOM handler declines; the default heap under an
//                      address-space limit): "smpalloc: <function>: out of memory", abort
// Before the misuse it prints "ptr=<the pointer passed>" on stdout (written at once, so the
// line survives the abort), and the OOM handler writes "oom size=<n> heap=<ok|wrong>" per call.
// If the library lets the scenario pass, the helper prints "survived" and exits 0, which the
// test reports as a failure. First it prints on stdout the front end it runs on and exits 94 if
// that is not the one SMPALLOC_OPTIONS asks for (tests/test_frontend.h). Exit 64: unknown
// scenario; 90..93: the set-up itself failed.
#define _GNU_SOURCE
#include "test_frontend.h"

#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>

#include "api_util.h"
#include "smpalloc.h"

#define KiB ((size_t)1024)
#define MiB ((size_t)1024 * 1024)

static void say(const char *s) {
  size_t n = strlen(s);
  if (write(STDOUT_FILENO, s, n) != (ssize_t)n) _exit(90);
}

static void announce(const void *p) {
  char line[64];
  snprintf(line, sizeof line, "ptr=%p\n", p);
  say(line);
}

static void *launder(void *p) {
  __asm__ volatile("" : "+r"(p) : : "memory");
  return p;
}

static void fail_setup(const char *what) {
  fprintf(stderr, "helper: set-up failed: %s (errno %d)\n", what, errno);
  _exit(91);
}

static smp_heap_t *expected_heap;
static int declining_handler(size_t size, smp_heap_t *h, void *arg) {
  (void)arg;
  char line[96];
  snprintf(line, sizeof line, "oom size=%zu heap=%s\n", size,
           h == expected_heap || (expected_heap == smp_heap_default() && h == NULL) ? "ok"
                                                                                    : "wrong");
  say(line);
  return 0;
}

// Fill h with size-byte blocks until one fails (which must be ENOMEM); the blocks stay live.
static void fill_with(smp_heap_t *h, size_t size) {
  for (int i = 0; i < 1 << 17; i++) {
    errno = 0;
    void *p = smp_heap_malloc(h, size, 0);
    if (p == NULL) {
      if (errno != ENOMEM) fail_setup("the full heap did not fail with ENOMEM");
      return;
    }
    memset(p, 0x5a, size);
  }
  fail_setup("the heap never filled");
}

// 1 KiB blocks, then 16-byte ones in whatever pages are left: no request gets new pages.
static void fill(smp_heap_t *h) {
  fill_with(h, 1024);
  fill_with(h, 16);
}

static void *map_anon(size_t len) {
  void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) fail_setup("mmap");
  return m;
}


// A block of size from a new heap (or a region heap), that heap then destroyed.
static void *destroyed_block(size_t size, int region) {
  smp_heap_t *h;
  if (region) {
    char *m = map_anon(2 * MiB);
    h = smp_heap_create_in("doomed-region", m + 100, 2 * MiB - 200, 0);
  } else {
    h = smp_heap_create("doomed", 0);
  }
  if (h == NULL) fail_setup("heap create");
  void *p = smp_heap_malloc(h, size, 0);
  if (p == NULL) fail_setup("smp_heap_malloc");
  memset(p, 0x33, size);
  if (smp_heap_of(p) != h) fail_setup("smp_heap_of");
  smp_heap_destroy(h);
  return p;
}

// A thread that allocates from and frees into its heap until the process ends.
static void *busy_main(void *arg) {
  smp_heap_t *h = arg;
  for (;;) {
    void *p = smp_heap_malloc(h, 64, 0);
    if (p) memset(p, 0x44, 64);
    free(p);
  }
  return NULL;
}

// Fill h, have the OOM handler decline, then ask for an SMP_NOFAIL block: it must abort.
static void nofail_when_full(smp_heap_t *h) {
  if (h == NULL) fail_setup("heap create");
  fill(h);
  expected_heap = h;
  smp_set_oom_handler(declining_handler, NULL);
  say("full\n");
  void *p = smp_heap_malloc(h, 1024, SMP_NOFAIL);
  announce(p);
}

int main(int argc, char **argv) {
  if (!test_frontend_check("api_heap_helper", stdout)) return 94;
  if (argc != 2) {
    fprintf(stderr, "usage: %s scenario\n", argv[0]);
    return 64;
  }
  const char *s = argv[1];
  if (strcmp(s, "destroy_in_use") == 0) {
    // debug:1 (set here, then the helper runs again) reports a heap destroyed while another
    // thread uses it: destroy sees the thread's call, or the thread's next call sees the heap
    // dead (or frees a block of it).
    const char *o = getenv("SMPALLOC_OPTIONS");
    if (o == NULL || strstr(o, "debug:1") == NULL) {
      char opts[512];
      snprintf(opts, sizeof opts, "%s%sdebug:1", o ? o : "", o && *o ? "," : "");
      setenv("SMPALLOC_OPTIONS", opts, 1);
      execv("/proc/self/exe", argv);
      fail_setup("execv");
    }
    smp_heap_t *h = smp_heap_create("busy", 0);
    if (h == NULL) fail_setup("heap create");
    pthread_t t;
    if (pthread_create(&t, NULL, busy_main, h) != 0) fail_setup("pthread_create");
    usleep(20 * 1000);
    smp_heap_destroy(h);
    sleep(2); // the busy thread's next call reports
  } else if (strcmp(s, "free_destroyed_small") == 0) {
    void *p = destroyed_block(64, 0);
    announce(p);
    free(launder(p));
  } else if (strcmp(s, "free_destroyed_large") == 0) {
    void *p = destroyed_block(200 * KiB, 0);
    announce(p);
    free(launder(p));
  } else if (strcmp(s, "free_destroyed_huge") == 0) {
    void *p = destroyed_block(8 * MiB, 0);
    announce(p);
    free(launder(p));
  } else if (strcmp(s, "free_destroyed_region") == 0) {
    void *p = destroyed_block(1000, 1);
    announce(p);
    free(launder(p));
  } else if (strcmp(s, "smp_free_destroyed") == 0) {
    void *p = destroyed_block(64, 0);
    announce(p);
    smp_free(launder(p));
  } else if (strcmp(s, "realloc_destroyed") == 0) {
    void *p = destroyed_block(64, 0);
    announce(p);
    void *q = realloc(launder(p), 128);
    printf("realloc returned %p\n", q);
  } else if (strcmp(s, "usable_destroyed") == 0) {
    void *p = destroyed_block(64, 0);
    announce(p);
    size_t n = smp_usable_size(launder(p));
    printf("usable=%zu\n", n);
  } else if (strcmp(s, "destroy_default") == 0) {
    smp_heap_t *d = smp_heap_default();
    if (d == NULL) fail_setup("smp_heap_default returned NULL");
    announce(d);
    smp_heap_destroy(launder(d));
    void *p = malloc(100); // the default heap must still be there had the call returned
    printf("malloc after destroy: %p\n", p);
    free(p);
  } else if (strcmp(s, "nofail_limit") == 0) {
    nofail_when_full(smp_heap_create("nofail", 1 * MiB));
  } else if (strcmp(s, "nofail_region") == 0) {
    char *m = map_anon(1 * MiB);
    nofail_when_full(smp_heap_create_in("nofail-region", m, 1 * MiB, 0));
  } else if (strcmp(s, "nofail_realloc") == 0) {
    smp_heap_t *h = smp_heap_create("nofail-realloc", 1 * MiB);
    if (h == NULL) fail_setup("smp_heap_create");
    void *q = smp_heap_malloc(h, 1024, 0);
    if (q == NULL) fail_setup("smp_heap_malloc");
    fill(h);
    expected_heap = h;
    smp_set_oom_handler(declining_handler, NULL);
    say("full\n");
    void *p = smp_heap_realloc(h, q, 300 * KiB, SMP_NOFAIL);
    announce(p);
  } else if (strcmp(s, "nofail_mallocx") == 0) {
    // The default heap, with the OS refusing: an address-space limit a little above what is
    // mapped now, and a request far beyond it.
    struct rlimit low;
    if (getrlimit(RLIMIT_AS, &low) != 0) fail_setup("getrlimit");
    low.rlim_cur = vm_size() + 64 * MiB;
    if (setrlimit(RLIMIT_AS, &low) != 0) fail_setup("setrlimit");
    expected_heap = smp_heap_default();
    smp_set_oom_handler(declining_handler, NULL);
    say("full\n");
    void *p = smp_mallocx(1024 * MiB, SMP_NOFAIL);
    announce(p);
  } else {
    fprintf(stderr, "helper: unknown scenario %s\n", s);
    return 64;
  }
  fflush(stdout);
  say("survived\n");
  return 0;
}
