// Force-included (-include) into every test program of a sanitizer build whose runtime owns the
// standard malloc names (SMP_SANITIZE=address or thread). There lib/api/override.c exports the
// malloc family as smp_test_malloc, smp_test_free, ... (SMP_TEST_NAMES=1); these macros send the
// test's own calls to them, so the test exercises smpalloc's code under the sanitizer while libc,
// Criterion and the sanitizer runtime keep the sanitizer's malloc.
// Rule for test code: never free what libc allocated (strdup, asprintf, getline...), and never
// hand a block of ours to libc to free.
#ifndef SMP_TEST_NAMES_H
#define SMP_TEST_NAMES_H

// The system headers first, so their prototypes keep the real names; with the feature macro
// every test defines, or they would be fixed here without it.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>

#define SMP_TESTING_TEST_NAMES 1
#define malloc smp_test_malloc
#define free smp_test_free
#define calloc smp_test_calloc
#define realloc smp_test_realloc
#define reallocarray smp_test_reallocarray
#define free_sized smp_test_free_sized
#define free_aligned_sized smp_test_free_aligned_sized
#define aligned_alloc smp_test_aligned_alloc
#define posix_memalign smp_test_posix_memalign
#define memalign smp_test_memalign
#define valloc smp_test_valloc
#define pvalloc smp_test_pvalloc
#define malloc_usable_size smp_test_malloc_usable_size
#define malloc_trim smp_test_malloc_trim
#define malloc_stats smp_test_malloc_stats
#define malloc_info smp_test_malloc_info
#define mallinfo2() smp_test_mallinfo2() // function-like: struct mallinfo2 keeps its name
#define mallinfo() smp_test_mallinfo()
#define mallopt smp_test_mallopt
#define __libc_malloc smp_test___libc_malloc
#define __libc_free smp_test___libc_free
#define __libc_calloc smp_test___libc_calloc
#define __libc_realloc smp_test___libc_realloc
#define __libc_memalign smp_test___libc_memalign
#define __libc_valloc smp_test___libc_valloc
#define __libc_pvalloc smp_test___libc_pvalloc

void *smp_test_malloc(size_t size);
void smp_test_free(void *p);
void *smp_test_calloc(size_t count, size_t size);
void *smp_test_realloc(void *p, size_t size);
void *smp_test_reallocarray(void *p, size_t count, size_t size);
void smp_test_free_sized(void *p, size_t size);
void smp_test_free_aligned_sized(void *p, size_t align, size_t size);
void *smp_test_aligned_alloc(size_t align, size_t size);
int smp_test_posix_memalign(void **out, size_t align, size_t size);
void *smp_test_memalign(size_t align, size_t size);
void *smp_test_valloc(size_t size);
void *smp_test_pvalloc(size_t size);
size_t smp_test_malloc_usable_size(void *p);
int smp_test_malloc_trim(size_t pad);
void smp_test_malloc_stats(void);
int smp_test_malloc_info(int options, FILE *fp);
struct mallinfo2 smp_test_mallinfo2(void);
struct mallinfo smp_test_mallinfo(void);
int smp_test_mallopt(int param, int value);
void *smp_test___libc_malloc(size_t size);
void smp_test___libc_free(void *p);
void *smp_test___libc_calloc(size_t count, size_t size);
void *smp_test___libc_realloc(void *p, size_t size);
void *smp_test___libc_memalign(size_t align, size_t size);
void *smp_test___libc_valloc(size_t size);
void *smp_test___libc_pvalloc(size_t size);

#endif
