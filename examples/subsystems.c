// A server's memory by subsystem: three malloc types (connections, request buffers, a cache)
// and where each one's memory is, as FreeBSD's `vmstat -m` shows a kernel's.
// Each connection is a typed block; each request's buffers come from a heap of their own that is
// destroyed when the request is done; the cache has a limit, so it evicts when an insert fails.
// Run it: build/examples/subsystems [connections]. It prints each type's statistics, then the
// allocator's report (smp_stats_print), whose per-type table is the `vmstat -m` view.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smpalloc.h"

SMP_TYPE_DEFINE(M_CONN, "conn", "client connections");
SMP_TYPE_DEFINE(M_REQBUF, "reqbuf", "request buffers");
SMP_TYPE_DEFINE_FLAGS(M_CACHE, "cache", "cached responses", SMP_TYPE_ZERO_ON_FREE);

struct conn {
  int fd;
  char peer[64];
  struct conn *next;
};

#define CACHE_SLOTS 512
static char *cache[CACHE_SLOTS];

// Insert a response into the cache; when the type's limit refuses it, evict and try again.
static void cache_put(unsigned key, size_t len) {
  unsigned slot = key % CACHE_SLOTS;
  char *v;
  while ((v = smp_malloc_type(len, M_CACHE, 0)) == NULL && errno == ENOMEM) {
    unsigned victim = (key * 2654435761u) % CACHE_SLOTS; // evict something else
    for (unsigned i = 0; i < CACHE_SLOTS && !cache[victim]; i++) victim = (victim + 1) % CACHE_SLOTS;
    if (!cache[victim]) return;
    free(cache[victim]); // plain free: the type is found from the block
    cache[victim] = NULL;
  }
  memset(v, (int)key, len);
  free(cache[slot]);
  cache[slot] = v;
}

static void serve_request(struct conn *c, unsigned n) {
  smp_heap_t *req = smp_heap_create("request", 1 << 20);
  char *in = smp_heap_malloc_type(req, 4096, M_REQBUF, 0);
  char *out = smp_heap_malloc_type(req, 16384, M_REQBUF, SMP_ZERO);
  snprintf(in, 4096, "GET /item/%u from %s", n, c->peer);
  memcpy(out, in, strlen(in) + 1);
  cache_put(n, 200 + (n % 7) * 300);
  smp_heap_destroy(req); // both buffers go with it, and their type's counters know it
}

static int print_type(const smp_type_t *t, const smp_type_stats_t *s, void *arg) {
  (void)arg;
  printf("%-8s %6llu blocks %9llu bytes in use  high water %9llu  requests %7llu  limit %llu\n",
         t->name, (unsigned long long)s->blocks, (unsigned long long)s->in_use,
         (unsigned long long)s->high_water, (unsigned long long)s->requests,
         (unsigned long long)s->limit);
  return 0;
}

int main(int argc, char **argv) {
  unsigned nconn = argc > 1 ? (unsigned)atoi(argv[1]) : 1000;
  smp_type_set_limit(M_CACHE, 256 * 1024);
  struct conn *conns = NULL;
  for (unsigned i = 0; i < nconn; i++) {
    struct conn *c = smp_malloc_type(sizeof *c, M_CONN, SMP_ZERO);
    c->fd = (int)i + 3;
    snprintf(c->peer, sizeof c->peer, "10.0.%u.%u:%u", i / 250, i % 250, 40000 + i);
    c->next = conns;
    conns = c;
    for (unsigned r = 0; r < 3; r++) serve_request(c, i * 3 + r);
  }
  for (unsigned i = 0; i < nconn / 2; i++) { // half the clients leave
    struct conn *c = conns;
    conns = c->next;
    smp_free_type(c, M_CONN);
  }
  smp_type_foreach(print_type, NULL);
  fflush(stdout);
  smp_stats_print();
  while (conns) { // shut down cleanly: nothing is reported at exit
    struct conn *c = conns;
    conns = c->next;
    free(c);
  }
  for (unsigned i = 0; i < CACHE_SLOTS; i++) free(cache[i]);
  return 0;
}
