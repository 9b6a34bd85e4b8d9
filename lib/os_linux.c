// Layer: platform (Linux). mmap-backed memory, futex-backed pthread mutexes, auxv facts.
// Aligned reservations over-map by the alignment and unmap the excess head and tail, so the
// result is one mapping with no guard gaps. MADV_DONTNEED is used for purging because it makes
// the pages read as zero at once, which the page heap relies on for calloc.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "os.h"

extern char **environ;

static size_t os_page; // written once at first use; every writer writes the same value

size_t smp_os_page_size(void) {
  if (SMP_UNLIKELY(os_page == 0)) {
    unsigned long v = getauxval(AT_PAGESZ);
    os_page = v ? (size_t)v : 4096;
  }
  return os_page;
}

void *smp_os_map(size_t size) {
  int saved = errno; // the allocator reports ENOMEM itself; keep mmap's errno out of the way
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  errno = saved;
  return p == MAP_FAILED ? NULL : p;
}

void *smp_os_map_aligned(size_t size, size_t align) {
  if (align <= smp_os_page_size()) return smp_os_map(size);
  if (size + align < size) return NULL;
  // Try the exact size first: the kernel often returns aligned addresses for large requests.
  char *p = smp_os_map(size);
  if (p == NULL) return NULL;
  if (((uintptr_t)p & (align - 1)) == 0) return p;
  smp_os_unmap(p, size);
  p = smp_os_map(size + align);
  if (p == NULL) return NULL;
  char *aligned = (char *)smp_align_up((uintptr_t)p, align);
  size_t head = (size_t)(aligned - p);
  size_t tail = align - head;
  if (head) smp_os_unmap(p, head);
  if (tail) smp_os_unmap(aligned + size, tail);
  return aligned;
}

void smp_os_unmap(void *addr, size_t size) {
  int saved = errno;
  munmap(addr, size);
  errno = saved;
}

bool smp_os_purge(void *addr, size_t size) {
  size_t page = smp_os_page_size();
  uintptr_t lo = smp_align_up((uintptr_t)addr, page);
  uintptr_t hi = smp_align_down((uintptr_t)addr + size, page);
  if (hi <= lo) return true;
  int saved = errno;
  int rc = madvise((void *)lo, hi - lo, MADV_DONTNEED);
  errno = saved;
  return rc == 0;
}

void *smp_os_remap(void *addr, size_t old_size, size_t new_size, bool may_move) {
  int saved = errno;
  void *p = mremap(addr, old_size, new_size, may_move ? MREMAP_MAYMOVE : 0);
  errno = saved;
  return p == MAP_FAILED ? NULL : p;
}

uint64_t smp_os_random_seed(void) {
  uint64_t seed = 0x9e3779b97f4a7c15ull;
  const unsigned char *r = (const unsigned char *)getauxval(AT_RANDOM);
  if (r)
    for (int i = 0; i < 16; i++) seed = (seed ^ r[i]) * 0x100000001b3ull;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  seed ^= (uint64_t)ts.tv_nsec * 0xff51afd7ed558ccdull;
  seed ^= seed >> 33;
  return seed;
}

const char *smp_os_getenv(const char *name) {
  if (environ == NULL) return NULL;
  for (char **e = environ; *e; e++) {
    const char *s = *e, *n = name;
    while (*n && *s == *n) s++, n++;
    if (*n == 0 && *s == '=') return s + 1;
  }
  return NULL;
}

void smp_lock_init(smp_lock_t *lock) { pthread_mutex_init(&lock->mutex, NULL); }
void smp_lock_acquire(smp_lock_t *lock) { pthread_mutex_lock(&lock->mutex); }
void smp_lock_release(smp_lock_t *lock) { pthread_mutex_unlock(&lock->mutex); }
