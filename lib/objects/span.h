// Layer: objects. A small span carved into blocks, and the words a free block carries.
// A free block's word 0 is the link of whichever list holds it (local or remote), stored XOR a
// per-process key so that a stray write (heap overflow) decodes to an address outside the span
// and is caught when the link is followed. Word 1 holds the block's free mark while it is free
// (set by free, cleared by malloc before the block is handed out): its own address XOR a
// per-process odd key, so a mark copied to any other address is not a mark there. A mark is a
// suspicion only: a live block holds its mark when the program put those bytes there (copied
// from where the block once lay free), so a report needs the confirmation of doublefree.c.
// Blocks are never smaller than 16 bytes, so both words exist.
// The local list and the carve cursor belong to the owner (central lock); see remote.h for the
// remote list. Carving is lazy: blocks past the cursor have never been touched.
#ifndef SMP_SPAN_H
#define SMP_SPAN_H

#include <stdbool.h>
#include <stdint.h>

#include "pagemap.h"
#include "sizeclass.h"

extern SMP_HIDDEN uintptr_t smp_block_link_key; // written once at start-up
extern SMP_HIDDEN uintptr_t smp_block_mark_key; // written once at start-up; odd
// Hardening with junk:1 (harden.h): carving clears each block's last word, so that a block of
// this life of the span never holds a trailer written in another. Set once at start-up.
extern SMP_HIDDEN bool smp_span_carve_clears_trailer;

SMP_INLINE void smp_block_set_link(void *b, void *next) {
  ((uintptr_t *)b)[0] = (uintptr_t)next ^ smp_block_link_key;
}
SMP_INLINE void *smp_block_link(const void *b) {
  return (void *)(((const uintptr_t *)b)[0] ^ smp_block_link_key);
}
// The free mark of the block at b: odd, so never 0 and never a block address.
SMP_INLINE uintptr_t smp_block_mark_of(const void *b) {
  return (uintptr_t)b ^ smp_block_mark_key;
}
SMP_INLINE bool smp_block_is_marked(const void *b) {
  return ((const uintptr_t *)b)[1] == smp_block_mark_of(b);
}
SMP_INLINE void smp_block_mark(void *b) { ((uintptr_t *)b)[1] = smp_block_mark_of(b); }
SMP_INLINE void smp_block_unmark(void *b) { ((uintptr_t *)b)[1] = 0; }

// Set the block keys from a random seed (start-up, and tests).
void smp_span_init_keys(uint64_t seed);
// Make a fresh span of class cls ready to hand out blocks (owner).
void smp_span_carve_init(smp_span_t *s, unsigned cls);
// Pop up to n blocks into out from the local list, then the uncarved tail (owner).
// Returns how many; a corrupted link is reported and aborts.
unsigned smp_span_pop(smp_span_t *s, void **out, unsigned n);
SMP_INLINE bool smp_span_local_empty(const smp_span_t *s) {
  return s->free == NULL && s->carve_left == 0;
}
// True if p is the start of a block of small span s.
bool smp_span_is_block(const smp_span_t *s, const void *p);

#endif
