// Layer: cross-cutting. See debug.h. Messages are assembled in a stack buffer and written with
// one write(2) per line where possible, so concurrent reports do not interleave mid-line.
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "assertion.h"
#include "debug.h"

void smp_text_init(smp_text_t *t, int fd) {
  t->fd = fd;
  t->mem = NULL;
  t->mem_cap = t->total = t->len = 0;
}

void smp_text_init_mem(smp_text_t *t, char *mem, size_t cap) {
  smp_text_init(t, -1);
  t->mem = cap ? mem : NULL;
  t->mem_cap = cap;
  if (t->mem) mem[0] = 0;
}

static void flush_to_mem(smp_text_t *t) {
  size_t kept = t->total < t->mem_cap - 1 ? t->total : t->mem_cap - 1; // bytes in mem now
  size_t room = t->mem_cap - 1 - kept, n = t->len < room ? t->len : room;
  memcpy(t->mem + kept, t->buf, n);
  t->mem[kept + n] = 0;
}

void smp_text_flush(smp_text_t *t) {
  if (t->mem) {
    flush_to_mem(t);
  } else {
    for (size_t off = 0; off < t->len;) {
      ssize_t n = write(t->fd, t->buf + off, t->len - off);
      if (n <= 0) break;
      off += (size_t)n;
    }
  }
  t->total += t->len;
  t->len = 0;
}

// A full buffer bound for a file goes out up to its last newline, the rest staying for the next
// write: each write(2) then ends a line, so text that another writer appends to the same file
// meanwhile (O_APPEND: the stats signal's reports, warnings) falls between lines, never inside
// one. A buffer with no newline goes whole.
static void flush_full(smp_text_t *t) {
  size_t end = t->len;
  while (end > 0 && t->buf[end - 1] != '\n') end--;
  if (t->mem || end == 0) {
    smp_text_flush(t);
    return;
  }
  size_t rest = t->len - end;
  t->len = end;
  smp_text_flush(t);
  memmove(t->buf, t->buf + end, rest);
  t->len = rest;
}

void smp_text_put(smp_text_t *t, const char *s, size_t n) {
  while (n > 0) {
    if (t->len == sizeof(t->buf)) flush_full(t);
    size_t room = sizeof(t->buf) - t->len;
    size_t k = n < room ? n : room;
    memcpy(t->buf + t->len, s, k);
    t->len += k;
    s += k;
    n -= k;
  }
}

void smp_text_str(smp_text_t *t, const char *s) { smp_text_put(t, s, strlen(s)); }

void smp_text_u64(smp_text_t *t, uint64_t v, int width) {
  char tmp[24];
  int i = (int)sizeof(tmp);
  do {
    tmp[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  for (int pad = width - ((int)sizeof(tmp) - i); pad > 0; pad--) smp_text_put(t, " ", 1);
  smp_text_put(t, tmp + i, sizeof(tmp) - (size_t)i);
}

void smp_text_hex(smp_text_t *t, uintptr_t v) {
  char tmp[2 + 2 * sizeof(uintptr_t)];
  int i = (int)sizeof(tmp);
  do {
    tmp[--i] = "0123456789abcdef"[v & 15];
    v >>= 4;
  } while (v);
  tmp[--i] = 'x';
  tmp[--i] = '0';
  smp_text_put(t, tmp + i, sizeof(tmp) - (size_t)i);
}

void smp_text_bytes(smp_text_t *t, uint64_t v, int width) {
  static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  uint64_t scaled = v * 10; // one decimal
  while (scaled >= 10240 && u < 4) {
    scaled /= 1024;
    u++;
  }
  char tmp[32];
  smp_text_t sub;
  smp_text_init(&sub, -1);
  smp_text_u64(&sub, scaled / 10, 0);
  if (u > 0) {
    smp_text_put(&sub, ".", 1);
    char d = (char)('0' + scaled % 10);
    smp_text_put(&sub, &d, 1);
  }
  smp_text_put(&sub, " ", 1);
  smp_text_str(&sub, unit[u]);
  memcpy(tmp, sub.buf, sub.len);
  for (int pad = width - (int)sub.len; pad > 0; pad--) smp_text_put(t, " ", 1);
  smp_text_put(t, tmp, sub.len);
}

void smp_debug_fatal(const char *function, const char *what, const void *ptr) {
  smp_text_t t;
  smp_text_init(&t, STDERR_FILENO);
  smp_text_str(&t, "smpalloc: ");
  smp_text_str(&t, function);
  smp_text_str(&t, ": ");
  smp_text_str(&t, what);
  smp_text_str(&t, " ");
  smp_text_hex(&t, (uintptr_t)ptr);
  smp_text_str(&t, "\n");
  smp_text_flush(&t);
  abort();
}

void smp_debug_warn(const char *what, const char *detail) {
  smp_text_t t;
  smp_text_init(&t, STDERR_FILENO);
  smp_text_str(&t, "smpalloc: warning: ");
  smp_text_str(&t, what);
  if (detail) {
    smp_text_str(&t, ": ");
    smp_text_str(&t, detail);
  }
  smp_text_str(&t, "\n");
  smp_text_flush(&t);
}

void smp_assert_fail(const char *cond, const char *file, int line) {
  smp_text_t t;
  smp_text_init(&t, STDERR_FILENO);
  smp_text_str(&t, "smpalloc: internal assertion failed: ");
  smp_text_str(&t, cond);
  smp_text_str(&t, " (");
  smp_text_str(&t, file);
  smp_text_str(&t, ":");
  smp_text_u64(&t, line > 0 ? (uint64_t)line : 0, 0);
  smp_text_str(&t, ")\n");
  smp_text_flush(&t);
  abort();
}
