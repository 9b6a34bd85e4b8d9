// Layer: cross-cutting. Fatal reports and a malloc-free text formatter.
// Every message the allocator prints goes through here: errors as
// "smpalloc: <function>: <what> <pointer>" followed by abort(), warnings as one line.
// Formatting uses a fixed buffer on the caller's stack and write(2): no stdio, no malloc.
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
  int fd;         // where smp_text_flush writes
  size_t len;     // bytes used in buf
  char buf[1024]; // flushed when full
} smp_text_t;

void smp_text_init(smp_text_t *t, int fd);
void smp_text_str(smp_text_t *t, const char *s);
void smp_text_u64(smp_text_t *t, uint64_t v, int width); // right-aligned to width
void smp_text_hex(smp_text_t *t, uintptr_t v);
void smp_text_bytes(smp_text_t *t, uint64_t v, int width); // "12.3 MiB"
void smp_text_flush(smp_text_t *t);

#endif
