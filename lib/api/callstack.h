// Layer: api. Call stacks of allocations, for the leak report (SMPALLOC_OPTIONS leaks, harden.c).
//
// Capture: glibc's backtrace(), which unwinds with the DWARF call-frame information through
// libgcc's _Unwind_Backtrace. Frame pointers would be cheaper but Debian builds its libraries
// and most programs without them, so a frame-pointer walk stops at the first such frame.
// glibc loads libgcc_s at the first backtrace() (a dlopen, which allocates): that first call
// runs with a per-thread guard set, so the allocations it makes record no stack instead of
// recursing. From then on a capture allocates nothing and takes no lock (glibc 2.35 and later
// find the unwind tables with _dl_find_object, without the loader lock), so it is safe in any
// moment malloc itself is. Its cost is bounded by SMP_CALLSTACK_DEPTH frames.
//
// Known limit: a program that allocates from inside the unwinder itself (gcc 12's libgcc sorts
// the frame tables a program registers with __register_frame, as JITs do, with malloc while it
// holds its object lock) deadlocks when that allocation is captured, since backtrace() takes the
// same lock: with leaks on every allocation is, with prof one in prof_sample bytes.
//
// Stacks are interned in one table of OS memory (no malloc): an id names a distinct stack. A
// slot is claimed by a CAS on its hash, then filled, then published by a release store of its
// depth; a lookup that finds the hash loads the depth with acquire and compares the frames, so
// it never reads a slot half written (a slot claimed but not yet published is passed over: two
// threads may then intern the same stack twice, and a report shows two groups for it).
#ifndef SMP_CALLSTACK_H
#define SMP_CALLSTACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "debug.h"

#define SMP_CALLSTACK_DEPTH 32   // frames kept, the allocator's own included
#define SMP_CALLSTACK_SLOTS 65536 // distinct stacks; past that, a block records none (id 0)

// The calling thread's stack, interned: its id (1 .. SMP_CALLSTACK_SLOTS - 1), or 0 (no
// table memory, the table full, or a capture already running on this thread).
uint32_t smp_callstack_capture(void);
// Stack id's frames past the allocator's own (return addresses, innermost first) into out
// (SMP_CALLSTACK_DEPTH); how many.
unsigned smp_callstack_program_frames(uint32_t id, void **out);
// prof: a sampled allocation of size bytes from stack id; and the totals so far.
void smp_callstack_note_alloc(uint32_t id, size_t size);
void smp_callstack_allocs(uint32_t id, uint64_t *count, uint64_t *bytes);
// The name of the function holding pc (or module+offset, or the address), for folded stacks.
void smp_callstack_name(smp_text_t *t, void *pc);
// Write stack id's frames to t, one per line with indent, the allocator's own left out: address,
// symbol+offset where one is known, and module+offset, which addr2line -e module accepts.
void smp_callstack_print(smp_text_t *t, uint32_t id, const char *indent);

#endif
