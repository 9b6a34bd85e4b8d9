// Layer: base. AddressSanitizer builds (SMP_SANITIZE=address, ci/sanitize.sh; a program or
// library compiled with -fsanitize=address that embeds smpalloc): smpalloc tells ASan which
// bytes of its blocks the program may touch, as ASan's own malloc would, so that ASan reports a
// read or write of a freed block, or past the bytes malloc was asked for, inside the slack of
// the size class. Elsewhere every function here is empty and costs nothing.
//
// The rules, which keep the allocator's own accesses clean:
// - A small block given back (smp_asan_freed) is poisoned past its first 16 bytes: those hold
//   the allocator's words (link and mark, span.h), which it reads and writes while the block is
//   free. A use after free of bytes 0..15 is not seen.
// - A block leaves a cache (frontend, heap caches) unpoisoned as a whole, and a span leaves the
//   page heap unpoisoned (its pages may hold blocks of another class poisoned in an earlier life),
//   so that the allocator may write anywhere in what it hands out (headers, fills, zeroing).
// - malloc then poisons the slack past the requested bytes and past the first 16 bytes
//   (smp_asan_handout); realloc and
//   malloc_usable_size unpoison the whole usable size first (the program may use what
//   malloc_usable_size says, and realloc copies it).
// - Memory given back to the OS, or a region given back to its owner, is unpoisoned first: a
//   later mapping at the same address must not inherit the shadow.
// - With hardening or the profiler on (lib/api/harden.h), blocks and slack are not poisoned:
//   hardening's fills and canaries own those bytes (the api layer's callers test it).
#ifndef SMP_ASAN_H
#define SMP_ASAN_H

#include <stddef.h>

#include "compiler.h"

#if defined(__SANITIZE_ADDRESS__)
#define SMP_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SMP_ASAN 1
#endif
#endif
#ifndef SMP_ASAN
#define SMP_ASAN 0
#endif

#if SMP_ASAN
#include <sanitizer/asan_interface.h>
SMP_INLINE void smp_asan_poison(const void *p, size_t n) { __asan_poison_memory_region(p, n); }
SMP_INLINE void smp_asan_unpoison(const void *p, size_t n) { __asan_unpoison_memory_region(p, n); }
#else
SMP_INLINE void smp_asan_poison(const void *p, size_t n) { (void)p, (void)n; }
SMP_INLINE void smp_asan_unpoison(const void *p, size_t n) { (void)p, (void)n; }
#endif

// Block p of usable bytes, unpoisoned, is handed out for size bytes: its slack is poisoned, but
// for the first 16 bytes (the allocator reads the mark in word 1 of a live block too).
SMP_INLINE void smp_asan_handout(void *p, size_t size, size_t usable) {
  size_t from = size < 16 ? 16 : size;
  if (SMP_ASAN && p != NULL && from < usable) smp_asan_poison((char *)p + from, usable - from);
}

// Small block p of usable bytes is given back: poisoned past the allocator's 16 bytes.
SMP_INLINE void smp_asan_freed(void *p, size_t usable) {
  if (SMP_ASAN && usable > 16) smp_asan_poison((char *)p + 16, usable - 16);
}

#endif
