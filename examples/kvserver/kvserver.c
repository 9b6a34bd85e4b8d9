// kvserver: a small multi-threaded key-value server speaking enough RESP (the Redis protocol)
// for redis-benchmark and redis-cli, to show smpalloc's malloc types, per-connection heaps and
// RCU-deferred free in a server.
//
//   kvserver --port N --threads T [--max-memory BYTES]
//
// Listens on 127.0.0.1 only. An acceptor thread hands each new connection (its fd, through a
// pipe) to one of T workers in turn; a worker serves its connections with epoll. Commands: PING,
// SET, GET, DEL, INCR, MSET, INFO (smp_stats_json as a bulk string), and CONFIG GET / COMMAND
// (an empty array, which is all redis-benchmark needs).
//
// Data: liburcu's lock-free hash table (cds_lfht, memb flavour). GET looks up inside a read-side
// section; SET swaps in a new node (cds_lfht_add_replace) and DEL removes one, and the old node
// and its value are freed with smp_free_rcu, once no reader can still see them.
//
// Memory: nodes (with their key) are M_KEY blocks, values M_VALUE (both types with pages of
// their own: no per-block header), connections M_CONN; each
// connection's request and response buffers come from a heap of its own ("conn"), destroyed
// with the connection. --max-memory limits M_VALUE (smp_type_set_limit): a SET past it gets
// "-ERR out of memory". Values over MAX_VALUE (1 MiB) are refused as a protocol error.
//
// SIGTERM/SIGINT: stop accepting, close every connection, smp_rcu_barrier, free the table,
// exit 0.
//
// Built with -DKV_PORTABLE (kvserver-portable), the same server runs on any malloc: the section
// "the allocator" below turns each smp_ call into what a program without smpalloc writes:
// malloc/free for the typed blocks (types ignored), malloc/realloc/free for a connection's
// buffers (freed one by one at close), liburcu's call_rcu (an rcu_head in the node, one callback
// per node) for the deferred frees, and INFO a short JSON of the process's RSS. --max-memory
// needs the types' limits, so that build refuses it.
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <urcu.h>
#include <urcu/rculfhash.h>

#ifdef KV_PORTABLE
typedef enum { M_KEY, M_VALUE, M_CONN } kv_type_t; // named for the reader; malloc ignores them
typedef struct kv_no_heap kv_heap_t;                // never made: a NULL placeholder
#define KV_NODE_RCU_HEAD struct rcu_head rh;        // call_rcu's link, in the node
#else
#include "smpalloc.h"
#include "smpalloc_rcu.h"

typedef smp_type_t *kv_type_t;
typedef smp_heap_t kv_heap_t;
#define KV_NODE_RCU_HEAD // smp_free_rcu keeps its own record of a deferred block

// Nodes and values are the server's many small objects: their types keep them in pages of
// their own (SMP_TYPE_OWN_HEAP), so a block costs what malloc would give, not 16 bytes more for
// a header (a 64-byte value would take an 80-byte block, a 4 KiB one a 4.5 KiB block).
SMP_TYPE_DEFINE_FLAGS(M_KEY, "key", "kvserver: table nodes with their keys", SMP_TYPE_OWN_HEAP);
SMP_TYPE_DEFINE_FLAGS(M_VALUE, "value", "kvserver: values", SMP_TYPE_OWN_HEAP);
SMP_TYPE_DEFINE(M_CONN, "conn", "kvserver: connections");
#endif

#define MAX_VALUE (1u << 20)         // largest bulk string (key or value) accepted
#define MAX_ARGS (1u << 16)          // most arguments in one command
#define MAX_INLINE (64u << 10)       // longest inline command line
#define MAX_RBUF ((4u << 20) + 4096) // most buffered request bytes for one command
#define WBUF_HIGH (1u << 20)         // stop executing commands while this much output is queued
#define CONN_HEAP_LIMIT (16u << 20)  // a connection's heap
#define MAX_EVENTS 64

struct node {
  struct cds_lfht_node lfn;
  KV_NODE_RCU_HEAD
  char *val; // M_VALUE block of vlen bytes (at least 1 allocated)
  uint32_t vlen;
  uint32_t klen;
  char key[]; // klen bytes
};

struct conn {
  int fd;
  int want_out;        // EPOLLOUT registered
  kv_heap_t *heap;     // rbuf, wbuf and argv come from here (NULL in KV_PORTABLE)
  char *rbuf, *wbuf;
  size_t rlen, rcap, wlen, wpos, wcap;
  const char **argv;   // into rbuf
  size_t *argl;
  size_t argcap;
  struct conn *prev, *next;
};

struct worker {
  pthread_t tid;
  int epfd;
  int pipefd[2]; // the acceptor writes new fds into [1]
  struct conn *conns;
};

// ---- the allocator: smpalloc's API, or (KV_PORTABLE) the C library's and call_rcu -----------

#ifdef KV_PORTABLE
static inline void *type_malloc(size_t n, kv_type_t t) { (void)t; return malloc(n); }
static inline void *type_zalloc(size_t n, kv_type_t t) { (void)t; return calloc(1, n); }
static inline void type_free(void *p, kv_type_t t) { (void)t; free(p); }
// --max-memory: the limit is smpalloc's (per type); there is none here.
static inline int type_set_limit(kv_type_t t, size_t bytes) {
  (void)t;
  (void)bytes;
  return ENOTSUP;
}

static inline int heap_open(kv_heap_t **h) { *h = NULL; return 0; }
static inline void *heap_malloc(kv_heap_t *h, size_t n) { (void)h; return malloc(n); }
static inline void *heap_realloc(kv_heap_t *h, void *p, size_t n) { (void)h; return realloc(p, n); }
static inline void heap_free(kv_heap_t *h, void *p) { (void)h; free(p); }
// A connection's buffers, one by one (the smpalloc build destroys their heap instead).
static inline void conn_buffers_free(struct conn *c) {
  free(c->rbuf);
  free(c->wbuf);
  free((void *)c->argv);
  free(c->argl);
}

static void node_free_cb(struct rcu_head *rh) {
  struct node *nd = caa_container_of(rh, struct node, rh);
  free(nd->val);
  free(nd);
}
// After a grace period; call_rcu never fails nor waits, so readers may call it too.
static void node_free_rcu(struct node *nd) { call_rcu(&nd->rh, node_free_cb); }
static void node_free_rcu_reader(struct node *nd) { node_free_rcu(nd); }
static inline void deferred_flush(void) {} // call_rcu's own thread runs the callbacks
static inline void deferred_barrier(void) { rcu_barrier(); }

// INFO: the process's size from /proc/self/statm, as JSON; snprintf's contract (the length it
// needs, -1 on error).
static int stats_json(char *buf, size_t cap) {
  char st[128];
  unsigned long long vsz = 0, rss = 0;
  int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  ssize_t n = fd >= 0 ? read(fd, st, sizeof st - 1) : -1;
  if (fd >= 0) close(fd);
  if (n <= 0) return -1;
  st[n] = 0;
  if (sscanf(st, "%llu %llu", &vsz, &rss) != 2) return -1;
  unsigned long long page = (unsigned long long)sysconf(_SC_PAGESIZE);
  return snprintf(buf, cap, "{\"build\":\"portable\",\"rss_bytes\":%llu,\"vm_bytes\":%llu}",
                  rss * page, vsz * page);
}
#else
static inline void *type_malloc(size_t n, kv_type_t t) { return smp_malloc_type(n, t, 0); }
static inline void *type_zalloc(size_t n, kv_type_t t) { return smp_malloc_type(n, t, SMP_ZERO); }
static inline void type_free(void *p, kv_type_t t) { smp_free_type(p, t); }
static inline int type_set_limit(kv_type_t t, size_t bytes) { return smp_type_set_limit(t, bytes); }

static inline int heap_open(kv_heap_t **h) {
  *h = smp_heap_create("conn", CONN_HEAP_LIMIT);
  return *h ? 0 : -1;
}
static inline void *heap_malloc(kv_heap_t *h, size_t n) { return smp_heap_malloc(h, n, 0); }
static inline void *heap_realloc(kv_heap_t *h, void *p, size_t n) {
  return smp_heap_realloc(h, p, n, 0);
}
static inline void heap_free(kv_heap_t *h, void *p) { (void)h; smp_free(p); }
static inline void conn_buffers_free(struct conn *c) {
  smp_heap_destroy(c->heap); // rbuf, wbuf, argv: all at once
}

// After a grace period: readers may still hold nd. Where no batch can be made (ENOMEM),
// smp_free_rcu_mightsleep waits for the readers and frees at once: never called inside a
// read-side section (see callers).
static void node_free_rcu(struct node *nd) {
  smp_free_rcu_mightsleep(nd->val);
  smp_free_rcu_mightsleep(nd);
}
// The same from inside a read-side section, at exit: what smp_free_rcu cannot defer is left.
static void node_free_rcu_reader(struct node *nd) {
  smp_free_rcu(nd->val);
  smp_free_rcu(nd);
}
// smp_free_rcu batches per thread: a worker sends its partly filled batch now and then.
static inline void deferred_flush(void) { smp_rcu_flush(); }
static inline void deferred_barrier(void) { smp_rcu_barrier(); }
static inline int stats_json(char *buf, size_t cap) { return smp_stats_json(buf, cap); }
#endif

static struct cds_lfht *table;
static atomic_int stopping;
static int nworkers;
static struct worker *workers;

static void on_signal(int sig) {
  (void)sig;
  atomic_store(&stopping, 1);
}

// ---- table ---------------------------------------------------------------------------------

static unsigned long hash_key(const char *k, size_t n) {
  uint64_t h = 1469598103934665603ull; // FNV-1a
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)k[i]) * 1099511628211ull;
  return (unsigned long)(h ^ (h >> 29));
}

struct keyref {
  const char *k;
  size_t n;
};

static int match_key(struct cds_lfht_node *lfn, const void *arg) {
  const struct node *nd = caa_container_of(lfn, struct node, lfn);
  const struct keyref *r = arg;
  return nd->klen == r->n && memcmp(nd->key, r->k, r->n) == 0;
}

// A new node holding key and a copy of val; NULL (errno ENOMEM) when the types' limits or
// memory refuse it.
static struct node *node_new(const char *k, size_t kl, const char *v, size_t vl) {
  struct node *nd = type_malloc(sizeof *nd + kl, M_KEY);
  if (!nd) return NULL;
  nd->val = type_malloc(vl ? vl : 1, M_VALUE);
  if (!nd->val) {
    type_free(nd, M_KEY);
    errno = ENOMEM;
    return NULL;
  }
  memcpy(nd->key, k, kl);
  if (vl) memcpy(nd->val, v, vl);
  nd->klen = (uint32_t)kl;
  nd->vlen = (uint32_t)vl;
  cds_lfht_node_init(&nd->lfn);
  return nd;
}

// Insert or replace; 0 or ENOMEM.
static int kv_set(const char *k, size_t kl, const char *v, size_t vl) {
  struct node *nd = node_new(k, kl, v, vl);
  if (!nd) return ENOMEM;
  struct keyref r = {k, kl};
  unsigned long h = hash_key(k, kl);
  rcu_read_lock();
  struct cds_lfht_node *old = cds_lfht_add_replace(table, h, match_key, &r, &nd->lfn);
  rcu_read_unlock();
  if (old) node_free_rcu(caa_container_of(old, struct node, lfn));
  return 0;
}

static int kv_del(const char *k, size_t kl) {
  struct keyref r = {k, kl};
  struct cds_lfht_iter it;
  struct node *gone = NULL;
  rcu_read_lock();
  cds_lfht_lookup(table, hash_key(k, kl), match_key, &r, &it);
  struct cds_lfht_node *lfn = cds_lfht_iter_get_node(&it);
  if (lfn && cds_lfht_del(table, lfn) == 0) gone = caa_container_of(lfn, struct node, lfn);
  rcu_read_unlock();
  if (!gone) return 0;
  node_free_rcu(gone);
  return 1;
}

static int parse_i64(const char *s, size_t n, long long *out) {
  if (n == 0 || n > 20) return -1;
  char tmp[24];
  memcpy(tmp, s, n);
  tmp[n] = 0;
  char *end;
  errno = 0;
  long long v = strtoll(tmp, &end, 10);
  if (errno || *end || end == tmp || tmp[0] == ' ' || tmp[0] == '+') return -1;
  if (n > 1 && (tmp[0] == '0' || (tmp[0] == '-' && tmp[1] == '0'))) return -1;
  *out = v;
  return 0;
}

// INCR: replace the node only if it is still the one read (cds_lfht_replace), else retry.
// 0 with *out, EINVAL (not an integer or overflow) or ENOMEM.
static int kv_incr(const char *k, size_t kl, long long *out) {
  struct keyref r = {k, kl};
  unsigned long h = hash_key(k, kl);
  for (;;) {
    struct cds_lfht_iter it;
    rcu_read_lock();
    cds_lfht_lookup(table, h, match_key, &r, &it);
    struct cds_lfht_node *lfn = cds_lfht_iter_get_node(&it);
    long long v = 0;
    if (lfn) {
      struct node *cur = caa_container_of(lfn, struct node, lfn);
      if (parse_i64(cur->val, cur->vlen, &v) != 0) {
        rcu_read_unlock();
        return EINVAL;
      }
    }
    if (v == LLONG_MAX) {
      rcu_read_unlock();
      return EINVAL;
    }
    v++;
    char num[24];
    int nl = snprintf(num, sizeof num, "%lld", v);
    struct node *nd = node_new(k, kl, num, (size_t)nl);
    if (!nd) {
      rcu_read_unlock();
      return ENOMEM;
    }
    int done;
    struct node *old = NULL;
    if (lfn) {
      done = cds_lfht_replace(table, &it, h, match_key, &r, &nd->lfn) == 0;
      if (done) old = caa_container_of(lfn, struct node, lfn);
    } else {
      done = cds_lfht_add_unique(table, h, match_key, &r, &nd->lfn) == &nd->lfn;
    }
    rcu_read_unlock();
    if (old) node_free_rcu(old);
    if (done) {
      *out = v;
      return 0;
    }
    // Lost a race: nd was never published, so it can go at once.
    type_free(nd->val, M_VALUE);
    type_free(nd, M_KEY);
  }
}

// ---- connections: buffers --------------------------------------------------------------

static int wreserve(struct conn *c, size_t n) {
  if (c->wlen + n <= c->wcap) return 0;
  size_t cap = c->wcap ? c->wcap : 4096;
  while (cap < c->wlen + n) cap *= 2;
  char *p = heap_realloc(c->heap, c->wbuf, cap);
  if (!p) return -1;
  c->wbuf = p;
  c->wcap = cap;
  return 0;
}

static int wadd(struct conn *c, const char *s, size_t n) {
  if (wreserve(c, n)) return -1;
  memcpy(c->wbuf + c->wlen, s, n);
  c->wlen += n;
  return 0;
}

static int wstr(struct conn *c, const char *s) { return wadd(c, s, strlen(s)); }

static int wbulk(struct conn *c, const char *s, size_t n) {
  char hdr[32];
  int hl = snprintf(hdr, sizeof hdr, "$%zu\r\n", n);
  if (wreserve(c, (size_t)hl + n + 2)) return -1;
  wadd(c, hdr, (size_t)hl);
  wadd(c, s, n);
  return wadd(c, "\r\n", 2);
}

static int wint(struct conn *c, long long v) {
  char b[32];
  int n = snprintf(b, sizeof b, ":%lld\r\n", v);
  return wadd(c, b, (size_t)n);
}

// ---- RESP parsing ------------------------------------------------------------------------

enum { P_MORE = 0, P_CMD = 1, P_ERR = -1 };

static int argv_room(struct conn *c, size_t n) {
  if (n <= c->argcap) return 0;
  size_t cap = c->argcap ? c->argcap : 16;
  while (cap < n) cap *= 2;
  const char **a = heap_realloc(c->heap, (void *)c->argv, cap * sizeof *a);
  if (!a) return -1;
  c->argv = a;
  size_t *l = heap_realloc(c->heap, c->argl, cap * sizeof *l);
  if (!l) return -1;
  c->argl = l;
  c->argcap = cap;
  return 0;
}

// A decimal length after a type byte at p, ending with \r\n before end. Returns the position
// after \r\n, NULL if incomplete (*bad 0) or malformed (*bad 1).
static const char *parse_len(const char *p, const char *end, long long *out, int *bad) {
  const char *nl = memchr(p, '\r', (size_t)(end - p));
  *bad = 0;
  if (!nl) {
    if (end - p > 24) *bad = 1;
    return NULL;
  }
  if (nl + 1 >= end) return NULL;
  if (nl[1] != '\n' || nl - p > 20 || nl == p) {
    *bad = 1;
    return NULL;
  }
  long long v = 0;
  const char *q = p;
  int neg = 0;
  if (*q == '-') {
    neg = 1;
    q++;
  }
  if (q == nl) {
    *bad = 1;
    return NULL;
  }
  for (; q < nl; q++) {
    if (*q < '0' || *q > '9' || v > (LLONG_MAX - 9) / 10) {
      *bad = 1;
      return NULL;
    }
    v = v * 10 + (*q - '0');
  }
  *out = neg ? -v : v;
  return nl + 2;
}

// One command from the start of rbuf: P_CMD (argc, argv set, *used bytes), P_MORE, or P_ERR
// (err set; the connection cannot resync).
static int parse_cmd(struct conn *c, size_t *argc, size_t *used, const char **err) {
  const char *p = c->rbuf, *end = c->rbuf + c->rlen;
  if (p == end) return P_MORE;
  if (*p != '*') { // inline: one line, words split by spaces
    const char *nl = memchr(p, '\n', c->rlen);
    if (!nl) {
      if (c->rlen > MAX_INLINE) {
        *err = "-ERR Protocol error: too big inline request\r\n";
        return P_ERR;
      }
      return P_MORE;
    }
    const char *le = nl > p && nl[-1] == '\r' ? nl - 1 : nl;
    size_t n = 0;
    for (const char *q = p; q < le;) {
      while (q < le && (*q == ' ' || *q == '\t')) q++;
      if (q == le) break;
      const char *s = q;
      while (q < le && *q != ' ' && *q != '\t') q++;
      if (argv_room(c, n + 1)) {
        *err = "-ERR out of memory\r\n";
        return P_ERR;
      }
      c->argv[n] = s;
      c->argl[n++] = (size_t)(q - s);
    }
    *argc = n;
    *used = (size_t)(nl + 1 - c->rbuf);
    return P_CMD;
  }
  long long count;
  int bad;
  const char *q = parse_len(p + 1, end, &count, &bad);
  if (!q) {
    if (bad) *err = "-ERR Protocol error: invalid multibulk length\r\n";
    return bad ? P_ERR : P_MORE;
  }
  if (count > (long long)MAX_ARGS) {
    *err = "-ERR Protocol error: invalid multibulk length\r\n";
    return P_ERR;
  }
  if (count <= 0) { // *0 and *-1: nothing to do
    *argc = 0;
    *used = (size_t)(q - c->rbuf);
    return P_CMD;
  }
  if (argv_room(c, (size_t)count)) {
    *err = "-ERR out of memory\r\n";
    return P_ERR;
  }
  for (long long i = 0; i < count; i++) {
    if (q == end) return P_MORE;
    if (*q != '$') {
      *err = "-ERR Protocol error: expected '$'\r\n";
      return P_ERR;
    }
    long long len;
    const char *d = parse_len(q + 1, end, &len, &bad);
    if (!d) {
      if (bad) *err = "-ERR Protocol error: invalid bulk length\r\n";
      return bad ? P_ERR : P_MORE;
    }
    if (len < 0 || len > (long long)MAX_VALUE) {
      *err = "-ERR Protocol error: invalid bulk length (a value is at most 1 MiB)\r\n";
      return P_ERR;
    }
    if (end - d < len + 2) return P_MORE;
    if (d[len] != '\r' || d[len + 1] != '\n') {
      *err = "-ERR Protocol error: bulk string not followed by CRLF\r\n";
      return P_ERR;
    }
    c->argv[i] = d;
    c->argl[i] = (size_t)len;
    q = d + len + 2;
  }
  *argc = (size_t)count;
  *used = (size_t)(q - c->rbuf);
  return P_CMD;
}

// ---- commands ----------------------------------------------------------------------------

static int is(const char *a, size_t n, const char *name) {
  return strlen(name) == n && strncasecmp(a, name, n) == 0;
}

static int arity_err(struct conn *c, const char *cmd) {
  char b[96];
  snprintf(b, sizeof b, "-ERR wrong number of arguments for '%s' command\r\n", cmd);
  return wstr(c, b);
}

static int cmd_info(struct conn *c) {
  for (int tries = 0; tries < 4; tries++) {
    int n = stats_json(NULL, 0);
    if (n < 0) break;
    size_t cap = (size_t)n + 4096;
    char *buf = heap_malloc(c->heap, cap);
    if (!buf) return wstr(c, "-ERR out of memory\r\n");
    int m = stats_json(buf, cap);
    if (m >= 0 && (size_t)m < cap) {
      int r = wbulk(c, buf, (size_t)m);
      heap_free(c->heap, buf);
      return r;
    }
    heap_free(c->heap, buf);
  }
  return wstr(c, "-ERR statistics unavailable\r\n");
}

static int execute(struct conn *c, size_t argc) {
  const char **av = c->argv;
  size_t *al = c->argl;
  if (argc == 0) return 0;
  if (is(av[0], al[0], "PING")) {
    if (argc == 1) return wstr(c, "+PONG\r\n");
    if (argc == 2) return wbulk(c, av[1], al[1]);
    return arity_err(c, "ping");
  }
  if (is(av[0], al[0], "GET")) {
    if (argc != 2) return arity_err(c, "get");
    struct keyref r = {av[1], al[1]};
    struct cds_lfht_iter it;
    rcu_read_lock();
    cds_lfht_lookup(table, hash_key(av[1], al[1]), match_key, &r, &it);
    struct cds_lfht_node *lfn = cds_lfht_iter_get_node(&it);
    int ret;
    if (lfn) {
      struct node *nd = caa_container_of(lfn, struct node, lfn);
      ret = wbulk(c, nd->val, nd->vlen); // copied out inside the read-side section
    } else {
      ret = wstr(c, "$-1\r\n");
    }
    rcu_read_unlock();
    return ret;
  }
  if (is(av[0], al[0], "SET")) {
    if (argc != 3) return arity_err(c, "set");
    if (kv_set(av[1], al[1], av[2], al[2])) return wstr(c, "-ERR out of memory\r\n");
    return wstr(c, "+OK\r\n");
  }
  if (is(av[0], al[0], "MSET")) {
    if (argc < 3 || (argc - 1) % 2) return arity_err(c, "mset");
    for (size_t i = 1; i < argc; i += 2)
      if (kv_set(av[i], al[i], av[i + 1], al[i + 1])) return wstr(c, "-ERR out of memory\r\n");
    return wstr(c, "+OK\r\n");
  }
  if (is(av[0], al[0], "DEL")) {
    if (argc < 2) return arity_err(c, "del");
    long long n = 0;
    for (size_t i = 1; i < argc; i++) n += kv_del(av[i], al[i]);
    return wint(c, n);
  }
  if (is(av[0], al[0], "INCR")) {
    if (argc != 2) return arity_err(c, "incr");
    long long v;
    int e = kv_incr(av[1], al[1], &v);
    if (e == EINVAL) return wstr(c, "-ERR value is not an integer or out of range\r\n");
    if (e) return wstr(c, "-ERR out of memory\r\n");
    return wint(c, v);
  }
  if (is(av[0], al[0], "INFO")) {
    if (argc > 2) return arity_err(c, "info");
    return cmd_info(c);
  }
  if (is(av[0], al[0], "CONFIG")) {
    // redis-benchmark asks for save and appendonly at start (and warns unless it gets a pair);
    // anything else: an empty array, no such setting.
    if (argc == 3 && is(av[1], al[1], "GET") && is(av[2], al[2], "save"))
      return wstr(c, "*2\r\n$4\r\nsave\r\n$0\r\n\r\n");
    if (argc == 3 && is(av[1], al[1], "GET") && is(av[2], al[2], "appendonly"))
      return wstr(c, "*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n");
    return wstr(c, "*0\r\n");
  }
  if (is(av[0], al[0], "COMMAND")) return wstr(c, "*0\r\n");
  char name[65], b[128];
  size_t nl = al[0] > 64 ? 64 : al[0];
  for (size_t i = 0; i < nl; i++) // no control bytes (CR, LF, NUL) in the one-line reply
    name[i] = (unsigned char)av[0][i] < 32 || av[0][i] == 127 ? '?' : av[0][i];
  name[nl] = 0;
  snprintf(b, sizeof b, "-ERR unknown command '%s'\r\n", name);
  return wstr(c, b);
}

// ---- connections: I/O --------------------------------------------------------------------

static void conn_close(struct worker *w, struct conn *c) {
  epoll_ctl(w->epfd, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  if (c->prev) c->prev->next = c->next;
  else w->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  conn_buffers_free(c);
  type_free(c, M_CONN);
}

static struct conn *conn_open(struct worker *w, int fd) {
  struct conn *c = type_zalloc(sizeof *c, M_CONN);
  if (!c) return NULL;
  c->fd = fd;
  if (heap_open(&c->heap) != 0) {
    type_free(c, M_CONN);
    return NULL;
  }
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
  if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
    conn_buffers_free(c);
    type_free(c, M_CONN);
    return NULL;
  }
  c->next = w->conns;
  if (w->conns) w->conns->prev = c;
  w->conns = c;
  return c;
}

// Write what is queued. -1: the connection is gone.
static int conn_flush(struct conn *c) {
  while (c->wpos < c->wlen) {
    ssize_t n = send(c->fd, c->wbuf + c->wpos, c->wlen - c->wpos, MSG_NOSIGNAL);
    if (n > 0) {
      c->wpos += (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    return -1;
  }
  c->wpos = c->wlen = 0;
  return 0;
}

// Run every complete command buffered (while output is not piling up). -1: close.
static int conn_process(struct conn *c) {
  size_t off = 0;
  int ret = 0;
  while (c->wlen - c->wpos < WBUF_HIGH) {
    size_t argc, used;
    const char *err = NULL;
    // parse_cmd reads from rbuf's start: shift the view by off.
    char *save = c->rbuf;
    size_t savelen = c->rlen;
    c->rbuf += off;
    c->rlen -= off;
    int r = parse_cmd(c, &argc, &used, &err);
    c->rbuf = save;
    c->rlen = savelen;
    if (r == P_MORE) break;
    if (r == P_ERR) {
      // Cannot resync inside this stream: say why, then close.
      wstr(c, err);
      ret = -1;
      break;
    }
    if (execute(c, argc)) {
      ret = -1; // the connection's heap refused its output
      break;
    }
    off += used;
  }
  if (off) {
    memmove(c->rbuf, c->rbuf + off, c->rlen - off);
    c->rlen -= off;
  }
  return ret;
}

static int conn_read(struct conn *c) {
  for (;;) {
    if (c->rlen == c->rcap) {
      if (c->rcap >= MAX_RBUF) {
        wstr(c, "-ERR Protocol error: request too big\r\n");
        return -1;
      }
      size_t cap = c->rcap ? c->rcap * 2 : 16384;
      if (cap > MAX_RBUF) cap = MAX_RBUF;
      char *p = heap_realloc(c->heap, c->rbuf, cap);
      if (!p) return -1;
      c->rbuf = p;
      c->rcap = cap;
    }
    ssize_t n = recv(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, 0);
    if (n > 0) {
      c->rlen += (size_t)n;
      if (c->rlen < c->rcap) return 0; // drained for now (level-triggered: more comes back)
      continue;
    }
    if (n == 0) return -1; // peer closed
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    return -1;
  }
}

static void conn_event(struct worker *w, struct conn *c, uint32_t events) {
  int dead = 0;
  // Read only while output is not piling up (a client that sends and never reads).
  if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && c->wlen - c->wpos < WBUF_HIGH)
    dead = conn_read(c) != 0;
  // Even on the way out, answer what is buffered (and send an error said while reading).
  if (conn_process(c)) dead = 1;
  if (conn_flush(c)) dead = 1;
  while (!dead && c->wlen == 0 && c->rlen) { // output drained: run commands still buffered
    size_t before = c->rlen;
    if (conn_process(c) || conn_flush(c)) dead = 1;
    if (c->rlen == before) break; // an incomplete command: wait for more input
  }
  if (dead) {
    conn_close(w, c);
    return;
  }
  int want = c->wlen > c->wpos;
  if (want != c->want_out) {
    struct epoll_event ev = {.events = want ? EPOLLOUT : EPOLLIN, .data.ptr = c};
    epoll_ctl(w->epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = want;
  }
}

static void *worker_main(void *arg) {
  struct worker *w = arg;
  rcu_register_thread();
  struct epoll_event evs[MAX_EVENTS];
  struct timespec last_flush;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &last_flush);
  while (!atomic_load(&stopping)) {
    int n = epoll_wait(w->epfd, evs, MAX_EVENTS, 100);
    // smp_free_rcu batches per thread: send a partly filled batch at least every 100 ms, or
    // a worker that went quiet would keep its old values (counted against --max-memory).
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
    if ((now.tv_sec - last_flush.tv_sec) * 1000 + (now.tv_nsec - last_flush.tv_nsec) / 1000000 >= 100) {
      deferred_flush();
      last_flush = now;
    }
    for (int i = 0; i < n; i++) {
      if (evs[i].data.ptr == NULL) { // new connections from the acceptor
        int fds[64];
        ssize_t r = read(w->pipefd[0], fds, sizeof fds);
        for (ssize_t j = 0; r > 0 && j < r / (ssize_t)sizeof(int); j++) {
          if (!conn_open(w, fds[j])) close(fds[j]);
        }
        continue;
      }
      conn_event(w, evs[i].data.ptr, evs[i].events);
    }
  }
  while (w->conns) conn_close(w, w->conns);
  deferred_flush();
  rcu_unregister_thread();
  return NULL;
}

// ---- main ----------------------------------------------------------------------------------

static void usage(void) {
  fprintf(stderr, "usage: kvserver --port N --threads T [--max-memory BYTES]\n");
  exit(64);
}

int main(int argc, char **argv) {
  long port = -1, threads = 2;
  unsigned long long maxmem = 0;
  for (int i = 1; i < argc; i++) {
    if (i + 1 >= argc) usage();
    char *end;
    if (strcmp(argv[i], "--port") == 0) port = strtol(argv[++i], &end, 10);
    else if (strcmp(argv[i], "--threads") == 0) threads = strtol(argv[++i], &end, 10);
    else if (strcmp(argv[i], "--max-memory") == 0) maxmem = strtoull(argv[++i], &end, 10);
    else usage();
    if (*end) usage();
  }
  if (port < 0 || port > 65535 || threads < 1 || threads > 256) usage();
  int refused = maxmem ? type_set_limit(M_VALUE, (size_t)maxmem) : 0;
  if (refused) {
    fprintf(stderr, "kvserver: --max-memory: %s\n", strerror(refused));
    return 64;
  }

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal; // no SA_RESTART: poll and epoll_wait return EINTR at once
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (lfd < 0) {
    perror("socket");
    return 1;
  }
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(lfd, (struct sockaddr *)&sin, sizeof sin) != 0 || listen(lfd, 128) != 0) {
    int e = errno;
    fprintf(stderr, "kvserver: 127.0.0.1:%ld: %s\n", port, strerror(e));
    return e == EADDRINUSE ? 2 : 1;
  }

  rcu_register_thread();
  table = cds_lfht_new(1024, 1024, 0, CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING, NULL);
  if (!table) {
    fprintf(stderr, "kvserver: cannot make the table\n");
    return 1;
  }
  nworkers = (int)threads;
  workers = calloc((size_t)nworkers, sizeof *workers);
  for (int i = 0; i < nworkers; i++) {
    struct worker *w = &workers[i];
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (w->epfd < 0 || pipe2(w->pipefd, O_CLOEXEC | O_NONBLOCK) != 0) {
      perror("kvserver: epoll/pipe");
      return 1;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->pipefd[0], &ev);
    if (pthread_create(&w->tid, NULL, worker_main, w) != 0) {
      fprintf(stderr, "kvserver: pthread_create failed\n");
      return 1;
    }
  }
  fprintf(stderr, "kvserver: listening on 127.0.0.1:%ld, %d workers\n", port, nworkers);

  // The acceptor: round robin over the workers.
  unsigned next = 0;
  while (!atomic_load(&stopping)) {
    struct pollfd pfd = {.fd = lfd, .events = POLLIN};
    int r = poll(&pfd, 1, 100);
    if (r <= 0) continue;
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) continue;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct worker *w = &workers[next++ % (unsigned)nworkers];
    if (write(w->pipefd[1], &fd, sizeof fd) != (ssize_t)sizeof fd) close(fd);
  }
  close(lfd);
  for (int i = 0; i < nworkers; i++) {
    pthread_join(workers[i].tid, NULL);
    // Any fd still in the pipe was never served.
    int fd;
    while (read(workers[i].pipefd[0], &fd, sizeof fd) == (ssize_t)sizeof fd) close(fd);
    close(workers[i].pipefd[0]);
    close(workers[i].pipefd[1]);
    close(workers[i].epfd);
  }
  free(workers);

  // No reader is left: wait for the deferred frees, then free what the table still holds.
  deferred_barrier();
  struct cds_lfht_iter it;
  struct node *nd;
  unsigned long left = 0;
  rcu_read_lock();
  cds_lfht_for_each_entry(table, &it, nd, lfn) {
    if (cds_lfht_del(table, &nd->lfn) == 0) {
      node_free_rcu_reader(nd);
      left++;
    }
  }
  rcu_read_unlock();
  deferred_barrier();
  if (cds_lfht_destroy(table, NULL) != 0) fprintf(stderr, "kvserver: table not empty\n");
  rcu_unregister_thread();
  fprintf(stderr, "kvserver: stopped, %lu keys freed\n", left);
  return 0;
}
