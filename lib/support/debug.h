// Layer: cross-cutting. Fatal reports and a malloc-free text formatter.
// Every message the allocator prints goes through here: errors as
// "smpalloc: <function>: <what> <pointer>" followed by abort(), warnings as one line.
// Formatting uses a fixed buffer on the caller's stack and write(2) (or the caller's memory,
// smp_text_init_mem): no stdio, no malloc, no lock, so it also serves signal handlers.
#ifndef SMP_DEBUG_H
#define SMP_DEBUG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compiler.h"

SMP_NORETURN SMP_COLD void smp_debug_fatal(const char *function, const char *what,
                                           const void *ptr);
SMP_COLD void smp_debug_warn(const char *what, const char *detail);

typedef struct smp_text {
  int fd;         // where smp_text_flush writes, unless mem is set
  char *mem;      // smp_text_init_mem: the caller's memory, mem_cap bytes
  size_t mem_cap;
  size_t total;   // bytes flushed so far (into mem: all of them, also those cut off)
  size_t len;     // bytes used in buf
  char buf[1024]; // flushed when full
} smp_text_t;

void smp_text_init(smp_text_t *t, int fd);
// Text into mem instead of a file: flushes keep at most cap - 1 bytes of it and a NUL after them
// (none if cap is 0), and t->total counts all of it, so a caller can size its buffer.
void smp_text_init_mem(smp_text_t *t, char *mem, size_t cap);
void smp_text_put(smp_text_t *t, const char *s, size_t n);
void smp_text_str(smp_text_t *t, const char *s);
void smp_text_u64(smp_text_t *t, uint64_t v, int width); // right-aligned to width
void smp_text_hex(smp_text_t *t, uintptr_t v);
void smp_text_bytes(smp_text_t *t, uint64_t v, int width); // "12.3 MiB"
void smp_text_flush(smp_text_t *t);

#endif
