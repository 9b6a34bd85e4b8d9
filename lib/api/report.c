// Layer: api. See report.h. Counters are read without stopping other threads, so a report
// taken while they run is a consistent-enough snapshot, not an exact one; every figure is
// exact once the other threads are quiet. Built with SMP_STATS 0 (stats.h), the figures that
// come from statistics counters (small blocks in use, free blocks in spans, purges, mark
// checks, idle scans) are not known: the totals leave them at 0 and the report says so.
// Every reader here takes the locks of what it reads as a gather says (os.h): NULL waits for
// them (smp_stats_get, malloc_stats), a gather gives up a busy one (smp_stats_json, malloc_info,
// the stats signal), and the figures behind it are left out; the report then says how many it
// gave up.
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "smpalloc.h"
#include "background.h"
#include "central.h"
#include "cpucache.h"
#include "debug.h"
#include "doublefree.h"
#include "frontend.h"
#include "heap.h"
#include "large.h"
#include "options.h"
#include "pageheap.h"
#include "report.h"
#include "sizeclass.h"
#include "stats.h"
#include "tcache.h"
#if SMP_HAVE_URCU
#include "smpalloc_rcu.h"
#endif

// Guards ts, cs and transfer (too big for small thread stacks, or a signal handler's). Taken
// before any other allocator lock, and by the fork handler first, so a child never inherits it
// held. Neither malloc nor free ever takes it.
static smp_lock_t report_lock = SMP_LOCK_INIT;
static smp_tcache_stats_t ts;
static smp_cpucache_stats_t cs;

// Blocks of class c held outside the spans (caches + users), and of them cached (in the
// caches, or in the transfer caches between them). The took/gave
// counters are sums of differences read cache by cache while blocks move (taken by one cache,
// given back by another read later), so the total can dip below zero: as a signed value, that
// is 0, not 2^64 - n (which would show as exabytes in use).
// A cache counts the blocks it gives to a transfer cache as given back, so those are added to
// the held ones here (and counted as cached, below): a transfer cache going back to its spans
// then moves no block from "in use" to "free".
static uint32_t transfer[SMP_CLASS_COUNT]; // blocks in the transfer caches
static uint64_t held_of(unsigned c) {
  int64_t held = (int64_t)(ts.cls[c].held + (cs.took[c] - cs.gave[c]) + transfer[c]);
  return held > 0 ? (uint64_t)held : 0;
}
static uint64_t cached_of(unsigned c) { return ts.cls[c].cached + cs.cached[c] + transfer[c]; }

void smp_report_lock(void) { smp_lock_acquire(&report_lock); }
void smp_report_unlock(void) { smp_lock_release(&report_lock); }

// The default heap's totals, and per class into *classes if not NULL (report lock held).
static void totals_locked(smp_report_totals_t *out, smp_heap_classes_t *classes, smp_gather_t *g) {
  smp_tcache_stats(&ts, g);
  if (smp_frontend_is_percpu()) smp_cpucache_stats(&cs, g);
  for (unsigned c = 1; c < SMP_CLASS_COUNT; c++) transfer[c] = smp_central_transfer_count(smp_central_default, c);
  *out = (smp_report_totals_t){0};
  for (unsigned c = 1; c < SMP_CLASS_COUNT; c++) {
    size_t size = smp_class_info[c].size;
    smp_central_class_stats_t ccs;
    smp_central_stats(smp_central_default, c, &ccs, g);
    uint64_t held = SMP_STATS ? held_of(c) : 0, cached = cached_of(c); // held: counted by
                                                                        // statistics only
    if (classes) {
      classes->spans[c] = ccs.spans;
      classes->out[c] = held;
      classes->cached[c] = cached;
    }
    out->cached += cached * size;
    if (!SMP_STATS) continue;
    uint64_t users = held > cached ? held - cached : 0;
    out->small_in_use += users * size;
    out->small_blocks += users;
    uint64_t cap = (uint64_t)ccs.spans * smp_class_info[c].capacity;
    out->central_free += (cap > held ? cap - held : 0) * size;
  }
  smp_pageheap_stats_t ps;
  smp_pageheap_stats(&SMP_HEAP_DEFAULT->pages, &ps, g);
  out->large_in_use = ps.large_bytes;
  out->large_count = ps.large_count;
  out->huge_count = smp_large_count_of(&SMP_HEAP_DEFAULT->pages, &out->huge_in_use, g);
  out->huge_cached_count = smp_large_cached_of(&SMP_HEAP_DEFAULT->pages, &out->huge_cached, g);
  out->mapped = ps.mapped + out->huge_in_use + out->huge_cached;
  out->held = ps.large_bytes + ps.small_bytes + ps.huge_bytes;
  out->pageheap_free = ps.free_bytes;
  out->pageheap_dirty = ps.free_dirty;
  out->pageheap_dirty_bound = ps.dirty_bound;
  out->purged = ps.purged_bytes;
  out->purges = ps.purge_calls;
  out->chunks = ps.chunks;
  out->chunks_unmapped = ps.chunks_unmapped;
  out->passes = ps.passes;
  // Blocks in hardening's quarantine are freed as far as the program knows: apart.
  smp_heap_t *h = SMP_HEAP_DEFAULT;
  size_t *in_use[3] = {&out->small_in_use, &out->large_in_use, &out->huge_in_use};
  size_t *count[3] = {&out->small_blocks, &out->large_count, &out->huge_count};
  for (unsigned k = 0; k < 3; k++) {
    uint64_t bytes = smp_load_relaxed(&h->quarantined_bytes[k]);
    uint64_t blocks = smp_load_relaxed(&h->quarantined_blocks[k]);
    *in_use[k] = *in_use[k] > bytes ? *in_use[k] - bytes : 0;
    *count[k] = *count[k] > blocks ? *count[k] - blocks : 0;
    out->quarantined += bytes;
    out->quarantined_blocks += blocks;
  }
  out->threads = ts.live;
  out->threads_exited = ts.exited;
  out->outbox = cs.outbox;
}

void smp_report_stats_locked(smp_stats_t *out, smp_report_totals_t *totals,
                             smp_heap_classes_t *classes, smp_gather_t *g) {
  smp_report_totals_t scratch, *r = totals ? totals : &scratch;
  totals_locked(r, classes, g);
  smp_stats_t s = {.version = SMP_STATS_VERSION, .size = sizeof s};
  s.in_use = r->small_in_use + r->large_in_use + r->huge_in_use;
  s.cached = r->cached;
  s.free = r->central_free + r->pageheap_free;
  s.dirty = r->pageheap_dirty;
  s.mapped = r->mapped;
  s.resident = smp_pageheap_resident(&SMP_HEAP_DEFAULT->pages, g) +
               smp_large_resident_of(&SMP_HEAP_DEFAULT->pages, g);
  s.purged = r->purged;
  s.purges = r->purges;
  // Chunks, huge blocks and cached huge mappings, the per-CPU regions and their metadata, each
  // thread cache.
  s.mappings = r->chunks + r->huge_count + r->huge_cached_count +
               (smp_frontend_is_percpu() ? 2 : 0) + r->threads;
  s.chunks_unmapped = r->chunks_unmapped;
  s.threads = r->threads;
  s.percpu = smp_frontend_is_percpu();
  s.background = smp_load_acquire(&smp_background_state) == SMP_BG_RUNNING;
  s.cpus = smp_os_cpus_allowed();
  s.cache_slots = smp_frontend_is_percpu() ? smp_cpucache_count() : 0;
  s.held = r->held;
  s.failures = smp_load_relaxed(&SMP_HEAP_DEFAULT->failures);
  s.heaps = smp_heap_count();
  smp_heapapi_reserve_stats(&s.reserve_size, &s.reserve_in_use, g);
  s.huge_cached = r->huge_cached;
  *out = s;
}

void smp_report_stats(smp_stats_t *out) {
  smp_stats_t s;
  smp_lock_acquire(&report_lock);
  smp_report_stats_locked(&s, NULL, NULL, NULL);
  smp_lock_release(&report_lock);
#if SMP_HAVE_URCU
  smp_rcu_stats_t rs = {.version = SMP_RCU_STATS_VERSION, .size = sizeof rs};
  if (smp_rcu_stats_get(&rs) == 0) {
    s.rcu_pending_blocks = rs.pending_blocks;
    s.rcu_pending_bytes = rs.pending_bytes;
    s.rcu_batches = rs.batches;
    s.rcu_freed_blocks = rs.freed_blocks;
    s.rcu_oldest_ms = rs.oldest_ms;
  }
#endif
  uint32_t filled = out->size < sizeof(smp_stats_t) ? out->size : (uint32_t)sizeof(smp_stats_t);
  s.size = filled;
  memcpy(out, &s, filled);
}

void smp_report_totals(smp_report_totals_t *out) {
  smp_lock_acquire(&report_lock);
  totals_locked(out, NULL, NULL);
  smp_lock_release(&report_lock);
}

static void line(smp_text_t *t, const char *label, size_t bytes, const char *rest) {
  smp_text_str(t, label);
  smp_text_bytes(t, bytes, 11);
  smp_text_str(t, rest);
}

// label a mid b end: a line of two counts.
static void counts(smp_text_t *t, const char *label, uint64_t a, const char *mid, uint64_t b,
                   const char *end) {
  smp_text_str(t, label);
  smp_text_u64(t, a, 0);
  smp_text_str(t, mid);
  smp_text_u64(t, b, 0);
  smp_text_str(t, end);
}

// A name the program gave (a heap's, a type's) in a table cell: control characters, which would
// break the table's lines, are shown as '?'. Padded with spaces to width, on the left if right.
static void put_name(smp_text_t *t, const char *name, size_t width, bool right) {
  size_t n = strlen(name);
  for (size_t i = n; right && i < width; i++) smp_text_put(t, " ", 1);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)name[i];
    smp_text_put(t, c < 0x20 || c == 0x7f ? "?" : &name[i], 1);
  }
  for (size_t i = n; !right && i < width; i++) smp_text_put(t, " ", 1);
}

// The heap table: a row per live heap, the default one first (its figures are the report's
// above, passed in), then the others in the registry's order.
typedef struct heap_table {
  smp_text_t *t;
  const smp_stats_t *default_stats;
  smp_gather_t *g;
} heap_table_t;

static void print_heap(smp_heap_t *h, void *arg) {
  heap_table_t *ht = arg;
  smp_text_t *t = ht->t;
  smp_stats_t s = {0};
  if (h->is_default) {
    smp_text_str(t, "  heap                              in use      cached        free        held"
                    "       limit    failures\n");
    s = *ht->default_stats;
  } else {
    smp_heap_stats_fill(h, &s, NULL, ht->g);
  }
  smp_text_str(t, "  ");
  put_name(t, h->name, 30, false);
  smp_text_bytes(t, s.in_use, 12);
  smp_text_bytes(t, s.cached, 12);
  smp_text_bytes(t, s.free, 12);
  smp_text_bytes(t, s.held, 12);
  if (s.limit) smp_text_bytes(t, s.limit, 12); else smp_text_str(t, "        none");
  smp_text_u64(t, s.failures, 12);
  smp_text_str(t, h->is_region ? "  region\n" : "\n");
}

// The malloc types' table, laid out as FreeBSD's vmstat -m: InUse is blocks, MemUse and HighUse
// are KiB rounded up ("K"), Requests counts allocations, Size(s) lists the block sizes of the
// classes the type's blocks came from (and "large" if some were larger). A type whose definition
// was unloaded, and that still has blocks, is marked so. Read without locks (smp_type_foreach).
typedef struct type_table {
  smp_text_t *t;
  bool header_written;
} type_table_t;

static void kib(smp_text_t *t, uint64_t bytes, int width) {
  smp_text_u64(t, (bytes + 1023) / 1024, width - 1);
  smp_text_put(t, "K", 1);
}

static int print_type(const smp_type_t *type, const smp_type_stats_t *s, void *arg) {
  (void)type;
  type_table_t *tt = arg;
  smp_text_t *t = tt->t;
  if (!tt->header_written) {
    smp_text_str(t, "  malloc types:\n                Type    InUse   MemUse  HighUse   Requests  "
                    "Size(s)\n");
    tt->header_written = true;
  }
  smp_text_str(t, "  ");
  put_name(t, s->name, 18, true);
  smp_text_u64(t, s->blocks, 9);
  kib(t, s->in_use, 9);
  kib(t, s->high_water, 9);
  smp_text_u64(t, s->requests, 11);
  smp_text_str(t, "  ");
  const char *comma = "";
  for (unsigned c = 1; c < SMP_CLASS_COUNT; c++) {
    if (!(s->classes[c / 64] >> (c % 64) & 1)) continue;
    smp_text_str(t, comma);
    smp_text_u64(t, smp_class_info[c].size, 0);
    comma = ",";
  }
  if (s->large) {
    smp_text_str(t, comma);
    smp_text_str(t, "large");
  }
  smp_text_str(t, s->loaded ? "\n" : "  (unloaded)\n");
  return 0;
}

void smp_report_print(int fd, smp_gather_t *g) {
  smp_text_t t;
  smp_text_init(&t, fd);
  if (!smp_lock_gather(&report_lock, g)) {
    smp_text_str(&t, "smpalloc " SMP_VERSION_STRING " statistics: skipped (another reader of the "
                     "statistics was busy)\n");
    smp_text_flush(&t);
    return;
  }
  smp_report_totals_t r;
  smp_stats_t stats; // the default heap's row of the heap table
  smp_report_stats_locked(&stats, &r, NULL, g);
  smp_text_str(&t, "smpalloc " SMP_VERSION_STRING " statistics\n  frontend:       ");
  smp_text_str(&t, smp_frontend_name());
  smp_text_str(&t, "\n  cpus:           ");
  smp_text_u64(&t, smp_os_cpus_allowed(), 0);
  smp_text_str(&t, " allowed by the affinity mask");
  if (smp_frontend_is_percpu()) {
    smp_text_str(&t, ", ");
    smp_text_u64(&t, smp_cpucache_count(), 0);
    smp_text_str(&t, " per-CPU caches reserved");
  }
  smp_text_str(&t, "\n");
  if (!SMP_STATS)
    smp_text_str(&t, "  statistics:     compiled out (SMP_STATS=0): small blocks in use, free blocks in "
                     "spans, purges, mark checks and idle scans are not counted\n");
  size_t in_use = r.small_in_use + r.large_in_use + r.huge_in_use;
  line(&t, "  in use:      ", in_use, SMP_STATS ? "\n" : " in large and huge blocks\n");
  if (SMP_STATS) {
    line(&t, "    small:     ", r.small_in_use, " in ");
    smp_text_u64(&t, r.small_blocks, 0);
    smp_text_str(&t, " blocks\n");
  }
  line(&t, "    large:     ", r.large_in_use, " in ");
  smp_text_u64(&t, r.large_count, 0);
  smp_text_str(&t, " page runs\n");
  line(&t, "    huge:      ", r.huge_in_use, " in ");
  smp_text_u64(&t, r.huge_count, 0);
  smp_text_str(&t, " mappings\n");
  if (smp_options.quarantine) {
    line(&t, "  quarantine:  ", r.quarantined, " in ");
    smp_text_u64(&t, r.quarantined_blocks, 0);
    smp_text_str(&t, " freed blocks held back from reuse (hardening)\n");
  }
  if (smp_frontend_is_percpu()) {
    line(&t, "  cached:      ", r.cached, " in per-CPU and transfer caches, and ");
    smp_text_u64(&t, cs.outbox, 0);
    smp_text_str(&t, " blocks of other CPUs in outboxes (counted in use)\n");
  } else {
    line(&t, "  cached:      ", r.cached, " in thread caches\n");
  }
  if (SMP_STATS) line(&t, "  span free:   ", r.central_free, " free blocks in small spans\n");
  line(&t, "  page free:   ", r.pageheap_free, " free page runs, ");
  smp_text_bytes(&t, r.pageheap_dirty, 0);
  smp_text_str(&t, " of them possibly resident");
  if (r.pageheap_dirty_bound) {
    smp_text_str(&t, " (bound ");
    smp_text_bytes(&t, r.pageheap_dirty_bound, 0);
    smp_text_str(&t, ")");
  }
  smp_text_str(&t, "\n");
  line(&t, "  huge cached: ", r.huge_cached, " in ");
  smp_text_u64(&t, r.huge_cached_count, 0);
  smp_text_str(&t, " freed huge mappings kept for reuse (all heaps: ");
  smp_large_stats_t ls;
  smp_large_stats(&ls, g);
  counts(&t, "", ls.reuses, " reused, ", ls.maps, " mapped)\n");
  line(&t, "  mapped:      ", r.mapped, " (chunks, huge blocks and cached huge mappings)\n");
  if (SMP_STATS) {
    line(&t, "  purged:      ", r.purged, " given back to the OS so far, in ");
    smp_text_u64(&t, r.purges, 0);
    smp_text_str(&t, " calls; ");
    smp_text_u64(&t, r.chunks_unmapped, 0);
    smp_text_str(&t, " chunks unmapped\n");
  }
  smp_text_str(&t, "  decay:          ");
  if (smp_options.decay_ms) {
    smp_text_u64(&t, smp_options.decay_ms, 0);
    smp_text_str(&t, smp_options.purge == SMP_PURGE_FREE ? " ms, MADV_FREE" : " ms, MADV_DONTNEED");
  } else {
    smp_text_str(&t, "off (trim only)");
  }
  if (smp_load_acquire(&smp_background_state) == SMP_BG_RUNNING) {
    smp_text_str(&t, ", background thread running (");
    smp_text_u64(&t, r.passes, 0);
    smp_text_str(&t, " passes)");
  }
  smp_text_str(&t, "\n");
  counts(&t, "  threads:        ", ts.live, " with a cache, ", ts.exited, " exited\n");
  smp_doublefree_stats_t ds;
  smp_doublefree_stats(&ds);
  if (SMP_STATS) {
    counts(&t, "  mark checks:    ", ds.suspicions, " blocks freed holding their free mark, ",
           ds.confirmed, " of them found free\n");
  }
  if (smp_frontend_is_percpu()) {
    if (SMP_STATS) {
      counts(&t, "  idle scans:     ", cs.scans_background, " by the background thread, ",
             cs.scans_slow, " by slow paths\n");
    }
    smp_text_str(&t, "  cache        hits      misses    restarts      cached      budget\n");
    smp_cpucache_cache_stats_t v;
    for (unsigned i = 0; smp_cpucache_cache_stats(i, &v, g); i++) {
      if (!v.used || v.hits + v.misses + v.restarts + v.cached_bytes == 0) continue;
      smp_text_u64(&t, i, 7);
      smp_text_u64(&t, v.hits, 12);
      smp_text_u64(&t, v.misses, 12);
      smp_text_u64(&t, v.restarts, 12);
      smp_text_bytes(&t, v.cached_bytes, 12);
      smp_text_bytes(&t, v.budget_bytes, 12);
      smp_text_str(&t, "\n");
    }
  }
  smp_text_str(&t, "  class    size  span-pages  spans   in-use blocks   cached blocks\n");
  for (unsigned c = 1; c < SMP_CLASS_COUNT; c++) {
    smp_central_class_stats_t ccs;
    smp_central_stats(smp_central_default, c, &ccs, g);
    uint64_t held = held_of(c), cached = cached_of(c);
    if (ccs.spans == 0 && held == 0) continue;
    smp_text_u64(&t, c, 7);
    smp_text_u64(&t, smp_class_info[c].size, 8);
    smp_text_u64(&t, smp_class_info[c].pages, 12);
    smp_text_u64(&t, ccs.spans, 7);
    if (SMP_STATS) smp_text_u64(&t, held > cached ? held - cached : 0, 16);
    else smp_text_str(&t, "               -"); // not counted
    smp_text_u64(&t, cached, 16);
    smp_text_str(&t, "\n");
  }
  heap_table_t ht = {&t, &stats, g};
  smp_heap_each(print_heap, &ht, g);
  type_table_t tt = {&t, false};
  smp_type_foreach(print_type, &tt);
#if SMP_HAVE_URCU
  // Not in the stats signal's report: the thread it interrupted may hold the sent list's lock.
  smp_rcu_stats_t rs = {.version = SMP_RCU_STATS_VERSION, .size = sizeof rs};
  if (g == NULL && smp_rcu_stats_get(&rs) == 0 && (rs.batches || rs.pending_blocks)) {
    smp_text_str(&t, "  rcu deferred:   ");
    smp_text_u64(&t, rs.pending_blocks, 0);
    smp_text_str(&t, " blocks (");
    smp_text_bytes(&t, rs.pending_bytes, 0);
    smp_text_str(&t, ") wait for a grace period, the oldest batch for ");
    smp_text_u64(&t, rs.oldest_ms, 0);
    smp_text_str(&t, " ms; ");
    smp_text_u64(&t, rs.batches, 0);
    smp_text_str(&t, " batches sent, ");
    smp_text_u64(&t, rs.freed_blocks, 0);
    smp_text_str(&t, " blocks freed\n");
  }
#endif
  if (g && g->busy) {
    smp_text_str(&t, "  busy:           ");
    smp_text_u64(&t, g->busy, 0);
    smp_text_str(&t, " locks stayed busy: the figures they guard are left out (low)\n");
  }
  smp_lock_release(&report_lock);
  smp_text_flush(&t);
}

// The stats signal (options stats_signal, stats_file): the handler writes the report itself
// rather than wake a thread to write it. It needs no thread made at start-up (which would break
// programs that forbid clone, as background:auto explains), the report is the process as the
// signal found it, and everything it does is safe wherever the signal lands: it allocates
// nothing (the formatter's buffer is on the stack, the per-class tables are the report lock's
// static ones), it waits for no lock (a gather gives up any that stays busy: the thread it
// interrupted may hold one and never release it while the handler runs; the report says how
// many it gave up), and open, write, close and sched_yield are system calls that a handler may
// make. errno is kept for the code it interrupted.
static void stats_signal_handler(int sig) {
  (void)sig;
  int saved = errno;
  int fd = STDERR_FILENO;
  if (smp_options.stats_file[0])
    fd = open(smp_options.stats_file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd >= 0) {
    smp_gather_t g = {0};
    smp_report_print(fd, &g);
    if (fd != STDERR_FILENO) close(fd);
  }
  errno = saved;
}

// Tries left to install the handler, while it could not be (see smp_report_signal_install).
_Atomic unsigned smp_report_signal_pending;

static bool signal_install(void) {
  // The file is opened on each report, not once here: a program may close every descriptor it
  // did not open (daemons do), and a log rotated away is created anew.
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = stats_signal_handler;
  sa.sa_flags = SA_RESTART; // the program's interrupted system calls carry on
  sigemptyset(&sa.sa_mask);
  int saved = errno;
  bool ok = sigaction((int)smp_options.stats_signal, &sa, NULL) == 0;
  errno = saved;
  return ok;
}

void smp_report_signal_install(void) {
  if (smp_options.stats_signal == 0) return;
  // Start-up may come before a runtime that interposes sigaction is ready (the sanitizers'
  // runtimes, which then refuse): the slow paths try again, up to 64 times, then warn.
  if (!signal_install()) smp_store_relaxed(&smp_report_signal_pending, 64);
}

void smp_report_signal_retry(void) {
  unsigned left = smp_load_relaxed(&smp_report_signal_pending);
  if (left == 0 || !atomic_compare_exchange_strong(&smp_report_signal_pending, &left, left - 1))
    return; // another thread is trying
  if (signal_install()) smp_store_relaxed(&smp_report_signal_pending, 0);
  else if (left == 1) smp_debug_warn("stats_signal: the handler could not be installed", NULL);
}
