// Layer: page heap. See decay.h. All state is in smp_pageheap_t, guarded by ph->lock.
// A free span whose pages may be resident (neither zeroed nor purged) is "dirty" and is also on
// the decay list, stamped with the time it joined. The list runs roughly oldest first (a
// re-filed remainder keeps its stamp and is placed by a bounded walk from the young end).
// smp_pageheap_decay purges spans whose stamp is older than decay_ms, from the old end; a
// wholly free chunk is unmapped instead. In a steady workload spans are reused within the decay
// time and nothing is purged, so no page is faulted in twice. Dirty pages are also bounded:
// beyond dirty_pct of the pages in use (default 100%; at least one chunk), a free purges the
// oldest dirty spans down to 3/4 of the bound (at once, or within a budget per background pass
// while a background thread passes: see smp_decay_upkeep_locked), so memory freed in a burst
// (the pages in use fall) goes back before an idle period that no allocator call would end. A
// steady churn keeps its dirty pages under the pages in use; a lower bound would purge pages
// about to be reused (mstress at 12%: 284k page faults against 8k unbounded). Clean pages
// allocated within decay_ms of the bound's last purge raise it (ph->bound_extra, see
// smp_decay_bound_locked). Pages stranded below a growing heap go back when it maps a chunk
// (smp_decay_stranded_locked). Spans go back through the page heap's
// smp_pageheap_purge_span_locked and smp_pageheap_chunk_release_locked (pageheap.c).
#include "assertion.h"
#include "options.h"
#include "pageheap.h"

static smp_event_t pass_wanted; // signalled when a pass should not wait for its period

// File dirty span s on the decay list with stamp t: from the young end, past at most 8 younger
// spans (a remainder re-filed with its old stamp). If the walk ends early, s goes in behind a
// younger span: it is purged late, by at most that span's lead. It is never filed ahead of an
// older span, so the head stays the oldest and a young span can never hold older ones back.
void smp_decay_add_locked(smp_pageheap_t *ph, smp_span_t *s, uint64_t t) {
  smp_span_t *after = ph->dirty_youngest;
  for (int walk = 0; after && after->freed_ms > t && walk < 8; walk++) after = after->dirty_prev;
  s->freed_ms = t;
  s->dirty = 1;
  s->dirty_prev = after;
  s->dirty_next = after ? after->dirty_next : ph->dirty_oldest;
  if (s->dirty_next) s->dirty_next->dirty_prev = s; else ph->dirty_youngest = s;
  if (after) after->dirty_next = s; else ph->dirty_oldest = s;
  SMP_ASSERT(s->dirty_next == NULL || s->dirty_next->freed_ms > t); // not ahead of an older one
  if (ph->dirty_oldest == s) ph->decay_due_ms = t + smp_options.decay_ms;
}

// Take dirty span s off the decay list.
void smp_decay_del_locked(smp_pageheap_t *ph, smp_span_t *s) {
  if (s->dirty_prev) s->dirty_prev->dirty_next = s->dirty_next; else ph->dirty_oldest = s->dirty_next;
  if (s->dirty_next) s->dirty_next->dirty_prev = s->dirty_prev; else ph->dirty_youngest = s->dirty_prev;
  s->dirty = 0;
  s->dirty_next = s->dirty_prev = NULL;
  ph->decay_due_ms = ph->dirty_oldest ? ph->dirty_oldest->freed_ms + smp_options.decay_ms : UINT64_MAX;
}

// Give back the oldest dirty span (there is one): unmap its chunk if the span is all of it,
// else purge it. false if the kernel refused; the span then stays dirty, restamped now, so it
// is tried again a decay later.
static bool purge_oldest_locked(smp_pageheap_t *ph, uint64_t now) {
  smp_span_t *s = ph->dirty_oldest;
  smp_chunk_t *c = smp_span_chunk(s);
  if (!ph->fixed && c->free_pages == SMP_CHUNK_USABLE_PAGES) { // s is the whole chunk: unmap it
    smp_pageheap_chunk_release_locked(ph, c);
    return true;
  }
  if (smp_pageheap_purge_span_locked(ph, s, smp_options.purge == SMP_PURGE_FREE)) return true;
  smp_decay_del_locked(ph, s);
  smp_decay_add_locked(ph, s, now);
  return false;
}

// Purge the dirty spans that came of age by now, oldest first, at most max of them.
static void decay_locked(smp_pageheap_t *ph, uint64_t now, unsigned max) {
  while (ph->dirty_oldest && now >= ph->decay_due_ms && max-- > 0)
    if (!purge_oldest_locked(ph, now)) break;
}

// The most dirty pages kept: dirty_pct of the pages in use, at least one chunk's worth, plus
// ph->bound_extra. A program that frees a burst and allocates it again soon (a batch, a frame, a
// request arena) would otherwise fault every page in again each time; clean pages (purged, or
// a new chunk's) allocated within decay_ms of the bound's last purge grow ph->bound_extra by as
// many, and it halves every quarter of decay_ms without such a miss (checked where decay
// runs), so the allowance follows the program's recent habit and falls back once bursts stop.
size_t smp_decay_bound_locked(smp_pageheap_t *ph) {
  size_t bound = (ph->large_pages + ph->small_pages) * smp_options.dirty_pct / 100;
  size_t cap = ph->usable_pages; // chunks may have been unmapped since it grew
  size_t extra = ph->bound_extra.extra < cap ? ph->bound_extra.extra : cap;
  return (bound > SMP_CHUNK_USABLE_PAGES ? bound : SMP_CHUNK_USABLE_PAGES) + extra;
}

// Purge the oldest dirty spans while there are more dirty pages than the bound, down to 3/4
// of it: at most 64 spans, and pages up to max_pages (the span that reaches it is purged
// whole). Returns the pages purged.
static size_t bound_purge_locked(smp_pageheap_t *ph, uint64_t now, size_t max_pages) {
  size_t purged = 0;
  if (!ph->may_purge || smp_options.dirty_pct == 0 || SMP_LIKELY(ph->dirty_pages <= smp_decay_bound_locked(ph))) return 0;
  size_t target = smp_decay_bound_locked(ph) / 4 * 3;
  for (unsigned n = 64; ph->dirty_oldest && ph->dirty_pages > target && purged < max_pages && n > 0; n--) {
    size_t pages = ph->dirty_oldest->npages;
    if (!purge_oldest_locked(ph, now)) break;
    ph->bound_purged_ms = now;
    purged += pages;
  }
  return purged;
}

// Run decay if dirty spans are due (at most max of them), age ph->bound_extra by the time that
// passed, and enforce the bound (64 spans at most per call: a free adds one span, so the bound
// is restored within a few calls). The slow paths and the background thread both come here.
// decay_ms 0: none of it; only trim gives pages back. Returns whether the bound wants more (it
// stopped at its 64 spans).
static bool decay_maybe_locked(smp_pageheap_t *ph, uint64_t now, unsigned max) {
  if (smp_options.decay_ms == 0 || !ph->may_purge) return false;
  if (SMP_UNLIKELY(now >= ph->decay_due_ms)) decay_locked(ph, now, max);
  smp_pageheap_allowance_age(&ph->bound_extra, now);
  return bound_purge_locked(ph, now, SIZE_MAX) != 0 && ph->dirty_pages > smp_decay_bound_locked(ph) / 4 * 3;
}

// npages clean pages (purged, or a new chunk's: to be faulted in) are allocated at now. Soon
// after the bound gave pages back, that means the bound was too tight for this program; allow
// that many more, up to the heap's size.
void smp_decay_clean_alloc_locked(smp_pageheap_t *ph, uint64_t now, size_t npages) {
  if (ph->bound_purged_ms && now - ph->bound_purged_ms < smp_options.decay_ms)
    smp_pageheap_allowance_add(&ph->bound_extra, now, npages, ph->usable_pages);
}

static uint64_t quarter_decay_ms(void) {
  return smp_options.decay_ms / 4 ? smp_options.decay_ms / 4 : 1;
}

size_t smp_pageheap_allowance_age(smp_pageheap_allowance_t *a, uint64_t now) {
  if (a->extra != 0 && now >= a->halve_ms) {
    uint64_t quarter = quarter_decay_ms(), halvings = (now - a->halve_ms) / quarter + 1;
    a->extra = halvings >= 64 ? 0 : a->extra >> halvings;
    a->halve_ms += halvings * quarter;
  }
  return a->extra;
}

void smp_pageheap_allowance_add(smp_pageheap_allowance_t *a, uint64_t now, size_t n, size_t cap) {
  smp_pageheap_allowance_age(a, now);
  a->halve_ms = now + quarter_decay_ms();
  a->extra = a->extra + n < cap && a->extra + n >= a->extra ? a->extra + n : cap;
}

// While a background thread passes, the program's threads still enforce the dirty bound, but
// give back at most this many pages between two passes; the rest of a burst of frees is the
// thread's (a 512 MiB burst costs about 35 ms of madvise on the project's machine). The frees
// of a steady program are well inside it, so its memory goes back as it is freed, not a
// period later.
#define SLOW_PURGE_PAGES (SMP_PAGEHEAP_SLOW_PURGE >> SMP_PAGE_SHIFT)

// A slow path's share of the upkeep, after each allocation, free or shrink: decay and the
// bound (a few spans at most). If the background thread passed within two periods, decay is
// left to it and the bound is enforced only within ph->slow_purge_left. A thread that stops passing
// (starved, or gone in a fork child) is stood in for by the slow paths two periods later.
void smp_decay_upkeep_locked(smp_pageheap_t *ph, uint64_t now) {
  ph->heap_calls++;
  if (ph->pass_end_ms && now - ph->pass_end_ms <= 2 * (uint64_t)smp_pageheap_pass_ms()) {
    if (ph->slow_purge_left && smp_options.decay_ms) {
      size_t purged = bound_purge_locked(ph, now, ph->slow_purge_left);
      ph->slow_purge_left = purged < ph->slow_purge_left ? ph->slow_purge_left - purged : 0;
    }
    return;
  }
  decay_maybe_locked(ph, now, 8);
}

// Purge the oldest dirty spans freed before freed_before until npages pages went back (the
// span that reaches it whole), at most 64 spans. Returns the pages purged.
static size_t purge_oldest_pages_locked(smp_pageheap_t *ph, uint64_t now, size_t npages, uint64_t freed_before) {
  size_t done = 0;
  for (unsigned n = 64; ph->dirty_oldest && ph->dirty_oldest->freed_ms < freed_before && done < npages && n > 0; n--) {
    size_t pages = ph->dirty_oldest->npages;
    if (!purge_oldest_locked(ph, now)) break;
    done += pages;
  }
  return done;
}

// The heap maps a new chunk: dirty pages that were free already when it mapped the previous one
// (stamped before ph->grew_ms) did not fit any request of a whole chunk's growth (dirty spans are
// taken first). They are stranded, like the single pages a sparse free leaves between live
// small spans when the program now wants runs; up to a chunk's worth of them go back, so
// resident memory does not grow past pages the heap could not use. With a background thread
// passing, it does that at once (signalled), off the program's threads.
void smp_decay_stranded_locked(smp_pageheap_t *ph, uint64_t now, size_t npages) {
  uint64_t before = ph->grew_ms;
  ph->grew_ms = now;
  if (before == 0 || smp_options.decay_ms == 0 || smp_options.dirty_pct == 0 || !ph->may_purge)
    return;
  if (!ph->dirty_oldest || ph->dirty_oldest->freed_ms >= before) return;
  if (ph->pass_end_ms && now - ph->pass_end_ms <= 2 * (uint64_t)smp_pageheap_pass_ms()) {
    ph->stranded_pending += npages;
    ph->stranded_before = before;
    smp_event_signal(&pass_wanted);
    return;
  }
  purge_oldest_pages_locked(ph, now, npages, before);
}

uint64_t smp_pageheap_decay(smp_pageheap_t *ph) {
  // Everything that is due, and the bound, in batches of 64 spans with the lock released in
  // between, so other threads wait for one batch at most.
  for (;;) {
    smp_lock_acquire(&ph->lock);
    uint64_t now = smp_os_now_ms();
    bool more = decay_maybe_locked(ph, now, 64);
    uint64_t due = ph->decay_due_ms;
    smp_lock_release(&ph->lock);
    if ((due > now && !more) || smp_options.decay_ms == 0) return due;
  }
}

unsigned smp_pageheap_pass_ms(void) {
  size_t period = smp_options.decay_ms ? smp_options.decay_ms / 4 : 1000;
  return period < 10 ? 10 : period > 1000 ? 1000 : (unsigned)period;
}

uint64_t smp_pageheap_calls(smp_pageheap_t *ph) {
  smp_lock_acquire(&ph->lock);
  uint64_t n = ph->heap_calls;
  smp_lock_release(&ph->lock);
  return n;
}

bool smp_pageheap_idle_since(smp_pageheap_t *ph, uint64_t calls) {
  smp_lock_acquire(&ph->lock);
  // A period without a call: passes signalled sooner (stranded pages) do not count a short
  // pause of a busy program as idleness. Half a period is the test, since the coarse clock
  // may read a tick short of the period the thread slept.
  bool idle = ph->pass_end_ms != 0 && calls == ph->pass_calls && smp_options.decay_ms != 0 &&
              smp_os_now_ms() - ph->pass_end_ms >= smp_pageheap_pass_ms() / 2;
  smp_lock_release(&ph->lock);
  return idle;
}

void smp_pageheap_want_pass(void) { smp_event_signal(&pass_wanted); }

void smp_pageheap_wait_pass(void) { smp_event_wait(&pass_wanted, smp_pageheap_pass_ms()); }

uint64_t smp_pageheap_background_pass(smp_pageheap_t *ph, bool idle) {
  for (bool more = true; more;) { // stranded pages first: the heap is growing past them
    smp_lock_acquire(&ph->lock);
    size_t done = ph->stranded_pending ? purge_oldest_pages_locked(ph, smp_os_now_ms(), ph->stranded_pending,
                                                               ph->stranded_before) : 0;
    // none went back (no dirty span old enough is left, or the kernel refused): the rest is void
    ph->stranded_pending = done != 0 && done < ph->stranded_pending ? ph->stranded_pending - done : 0;
    more = ph->stranded_pending != 0 && done != 0;
    smp_lock_release(&ph->lock);
  }
  smp_lock_acquire(&ph->lock);
  size_t left = idle ? ph->dirty_pages : 0; // what was dirty when the pass began, no more
  smp_lock_release(&ph->lock);
  // Idle: the dirty spans, oldest first, in batches of 64 with the lock released in between.
  while (left) {
    smp_lock_acquire(&ph->lock);
    uint64_t now = smp_os_now_ms();
    for (unsigned n = 64; left && n > 0; n--) {
      smp_span_t *s = ph->dirty_oldest;
      size_t pages = s ? s->npages : 0;
      if (s == NULL || !purge_oldest_locked(ph, now)) left = 0; // none left, or the kernel refused
      else left = left > pages ? left - pages : 0;
    }
    smp_lock_release(&ph->lock);
  }
  uint64_t due = smp_pageheap_decay(ph);
  smp_lock_acquire(&ph->lock);
  ph->pass_calls = ph->heap_calls;
  ph->pass_end_ms = smp_os_now_ms();
  ph->passes++;
  ph->slow_purge_left = SLOW_PURGE_PAGES;
  smp_lock_release(&ph->lock);
  return due;
}
