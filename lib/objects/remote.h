// Layer: objects. The remote-free word of a small span: a lock-free MPSC stack plus counts.
// Layout of span->remote (64 bits): [63..48] out = blocks held outside the span (by caches or
// users); [47..4] head of the remote list (blocks are 16-aligned, addresses < 2^48);
// [3..0] flags: DETACHED (the owner ran out of blocks and unlisted the span), ATTN (one pusher
// has taken the duty to attend to the span under the central lock), DEAD (span released).
// Counting invariant: out + (blocks on the local list or not yet carved) + (blocks on the
// remote list) == capacity. Writers: any thread pushes a chain with one CAS (release), which
// prepends it and subtracts its length from out; only the owner (holder of the class's central
// lock) drains the list (CAS to an empty head, acquire) and adds to out when it hands blocks to
// a cache. The owner may also walk the list from a head it loaded with acquire (the double-free
// search, smp_central_holds): pushers only prepend, so every node it reaches stays, with the
// link its pusher wrote, until the owner itself drains. No ABA: a push never reads the old
// head's link, it only links its chain's tail to whatever head it saw and CASes the whole word,
// so a head that left and came back is still a correct successor; the drain takes the whole
// list and never pops one node.
// A pusher sets ATTN iff its push needs the owner's attention (it cleared DETACHED, or out
// reached 0) and ATTN was clear; that pusher then calls the central attend under the lock, which
// clears ATTN first and acts on the word it cleared. So at most one attend per span is pending,
// a span with ATTN set is never released, and a span released with out == 0 has no pushers.
#ifndef SMP_REMOTE_H
#define SMP_REMOTE_H

#include <stdbool.h>
#include <stdint.h>

#include "atomic.h"
#include "pagemap.h"

#define SMP_REMOTE_DETACHED 1u
#define SMP_REMOTE_ATTN 2u
#define SMP_REMOTE_DEAD 4u
#define SMP_REMOTE_FLAGS 15u

SMP_INLINE void *smp_remote_head(uint64_t w) { return (void *)(uintptr_t)(w & 0x0000fffffffffff0ull); }
SMP_INLINE unsigned smp_remote_out(uint64_t w) { return (unsigned)(w >> 48); }
SMP_INLINE unsigned smp_remote_flags(uint64_t w) { return (unsigned)(w & SMP_REMOTE_FLAGS); }
SMP_INLINE uint64_t smp_remote_word(void *head, unsigned out, unsigned flags) {
  return (uint64_t)(uintptr_t)head | ((uint64_t)out << 48) | flags;
}

// Any thread: push the chain head..tail of n blocks (links already written) back to span s.
// Returns true if the caller now holds ATTN and must call the central attend for s.
// A push of more blocks than are out is a double free: reported, never applied.
bool smp_remote_push(smp_span_t *s, void *head, void *tail, unsigned n);

// Owner: take the whole remote list (NULL if empty).
void *smp_remote_drain(smp_span_t *s);

// Owner: account n blocks handed out; if the span has nothing left locally (local_empty) and
// its remote list is empty, mark it DETACHED in the same step. Returns true if detached.
bool smp_remote_hand_out(smp_span_t *s, unsigned n, bool local_empty);

// Owner (under the central lock): clear ATTN and return the word as it was when cleared.
uint64_t smp_remote_take_attn(smp_span_t *s);

// Owner: mark DEAD if out == 0 and ATTN is clear; false if a block is out or attend pending.
bool smp_remote_retire(smp_span_t *s);

#endif
