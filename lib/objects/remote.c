// Layer: objects. See remote.h for the word, its invariant and its memory orders.
// Memory orders: push CAS is release (the chain's links, written before, are visible to the
// drainer); drain CAS is acquire (pairs with every push it takes). Owner-side updates of out
// and flags are acq_rel so that a retire/attend decision sees every push that preceded it.
#include "debug.h"
#include "remote.h"
#include "span.h"

bool smp_remote_push(smp_span_t *s, void *head, void *tail, unsigned n) {
  uint64_t w = smp_load_relaxed(&s->remote), nw;
  bool attn;
  do {
    unsigned out = smp_remote_out(w), flags = smp_remote_flags(w);
    if (SMP_UNLIKELY(n > out || (flags & SMP_REMOTE_DEAD)))
      smp_debug_fatal("free", "double free or corrupted span of block", head);
    smp_block_set_link(tail, smp_remote_head(w)); // never dereferences the old head

    out -= n;
    bool need = (flags & SMP_REMOTE_DETACHED) || out == 0;
    attn = need && !(flags & SMP_REMOTE_ATTN);
    flags &= ~SMP_REMOTE_DETACHED;
    if (attn) flags |= SMP_REMOTE_ATTN;
    nw = smp_remote_word(head, out, flags);
  } while (!smp_cas_release(&s->remote, &w, nw));
  return attn;
}

void *smp_remote_drain(smp_span_t *s) {
  uint64_t w = smp_load_relaxed(&s->remote);
  do {
    if (smp_remote_head(w) == NULL) return NULL;
  } while (!smp_cas_acquire(&s->remote, &w, w & ~0x0000fffffffffff0ull));
  return smp_remote_head(w);
}

bool smp_remote_hand_out(smp_span_t *s, unsigned n, bool local_empty) {
  uint64_t w = smp_load_relaxed(&s->remote), nw;
  bool detach;
  do {
    detach = local_empty && smp_remote_head(w) == NULL;
    nw = w + ((uint64_t)n << 48);
    if (detach) nw |= SMP_REMOTE_DETACHED;
  } while (!smp_cas_acq_rel(&s->remote, &w, nw));
  return detach;
}

uint64_t smp_remote_take_attn(smp_span_t *s) {
  uint64_t w = smp_load_relaxed(&s->remote);
  while (!smp_cas_acq_rel(&s->remote, &w, w & ~(uint64_t)SMP_REMOTE_ATTN)) {
  }
  return w;
}

bool smp_remote_retire(smp_span_t *s) {
  uint64_t w = smp_load_relaxed(&s->remote);
  do {
    if (smp_remote_out(w) != 0 || (smp_remote_flags(w) & SMP_REMOTE_ATTN)) return false;
  } while (!smp_cas_acq_rel(&s->remote, &w, smp_remote_word(NULL, 0, SMP_REMOTE_DEAD)));
  return true;
}
