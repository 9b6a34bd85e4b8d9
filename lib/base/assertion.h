// Layer: base. SMP_ASSERT(cond): an internal invariant of the allocator, checked when the build
// switch SMP_ASSERTS is 1 (CMake: Debug builds, or -DSMP_ASSERTS=ON) and compiled out
// otherwise. Compiled out, cond is not evaluated but still type-checked (inside sizeof), so an
// assertion cannot rot in release builds, and cond may read anything a lock protects without
// costing a load. Use it for what the code relies on and a comment states (a span's state
// before a transition, a bucket's bitmap bit); misuse by the program (double and invalid
// frees) is not an assertion: those checks stay on and report through debug.h.
// A failure prints "smpalloc: internal assertion failed: <cond> (<file>:<line>)" and aborts,
// through smp_assert_fail, which support/debug.c defines (base includes no other layer, so the
// declaration is here). Not named assert.h: every layer folder is on the include path, where
// that name would shadow the C library's <assert.h>.
#ifndef SMP_ASSERTION_H
#define SMP_ASSERTION_H

#include "compiler.h"
#include "config.h"

SMP_NORETURN SMP_COLD void smp_assert_fail(const char *cond, const char *file, int line);

#if SMP_ASSERTS
#define SMP_ASSERT(cond) (SMP_LIKELY(cond) ? (void)0 : smp_assert_fail(#cond, __FILE__, __LINE__))
#else
#define SMP_ASSERT(cond) ((void)sizeof(!(cond)))
#endif

#endif
