// Layer: api. smp_stats_json: the allocator's statistics as one JSON object (schema in
// papers/design.md, "Statistics"), for a server to serve. Written with the text formatter
// (debug.h) into the caller's buffer: nothing is allocated. The figures come from the lock-free
// gathering (report.h): no lock that malloc or free may hold is waited for, so the call neither
// stalls an allocation nor waits behind one; a lock that stays busy is given up, what it guards
// is left out (those figures read low) and "busy" counts it. The report lock, which only readers
// of the statistics take, is waited for.
#include <limits.h>
#include <stddef.h>

#include "smpalloc.h"
#if SMP_HAVE_URCU
#include "smpalloc_rcu.h"
#endif
#include "assertion.h"
#include "cpucache.h"
#include "debug.h"
#include "frontend.h"
#include "heap.h"
#include "init.h"
#include "options.h"
#include "report.h"
#include "sizeclass.h"

#define JSON_SCHEMA_VERSION 1
#define JSON_MAX_DEPTH 8

// A JSON writer over the formatter: tracks, per nesting level, whether a comma must come
// before the next member.
typedef struct json {
  smp_text_t t;
  unsigned depth;
  uint32_t has_member; // bit d: level d already has a member
} json_t;

static void separate(json_t *j) {
  uint32_t bit = 1u << j->depth;
  if (j->has_member & bit) smp_text_put(&j->t, ",", 1);
  j->has_member |= bit;
}

// "\uXXXX" for a code unit.
static void put_unit(smp_text_t *t, unsigned u) {
  char e[6] = {'\\', 'u', "0123456789abcdef"[u >> 12 & 15], "0123456789abcdef"[u >> 8 & 15],
               "0123456789abcdef"[u >> 4 & 15], "0123456789abcdef"[u & 15]};
  smp_text_put(t, e, sizeof e);
}

// Bytes of the well-formed UTF-8 sequence at s (1 to 4), or 0 if it is not one (a stray or
// missing continuation byte, an overlong form, a surrogate, past U+10FFFF).
static size_t utf8_length(const unsigned char *s) {
  unsigned c = s[0];
  size_t n = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3
           : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
  for (size_t i = 1; i < n; i++)
    if ((s[i] & 0xc0) != 0x80) return 0; // also stops at the NUL
  if (n == 3 && ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] >= 0xa0))) return 0;
  if (n == 4 && ((c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] >= 0x90))) return 0;
  return n;
}

// A JSON string. Names and descriptions are the program's: quotes, backslashes and control
// characters are escaped, and a byte that is not part of well-formed UTF-8 becomes U+FFFD, so
// the text is always valid JSON (RFC 8259 requires UTF-8).
static void put_string(smp_text_t *t, const char *s) {
  smp_text_put(t, "\"", 1);
  for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p;) {
    unsigned c = *p;
    size_t n = utf8_length(p);
    if (c == '"' || c == '\\') {
      char e[2] = {'\\', (char)c};
      smp_text_put(t, e, 2);
    } else if (c < 0x20 || c == 0x7f) {
      put_unit(t, c);
    } else if (n == 0) {
      put_unit(t, 0xfffd);
      n = 1;
    } else {
      smp_text_put(t, (const char *)p, n);
    }
    p += n ? n : 1;
  }
  smp_text_put(t, "\"", 1);
}

static void key(json_t *j, const char *k) {
  separate(j);
  if (k == NULL) return; // an array element
  put_string(&j->t, k);
  smp_text_put(&j->t, ":", 1);
}

static void begin(json_t *j, const char *k, const char *bracket) {
  key(j, k);
  smp_text_str(&j->t, bracket);
  j->depth++;
  SMP_ASSERT(j->depth < JSON_MAX_DEPTH);
  j->has_member &= ~(1u << j->depth);
}

static void end(json_t *j, const char *bracket) {
  j->depth--;
  smp_text_str(&j->t, bracket);
}

static void number(json_t *j, const char *k, uint64_t v) {
  key(j, k);
  smp_text_u64(&j->t, v, 0);
}

static void boolean(json_t *j, const char *k, bool v) {
  key(j, k);
  smp_text_str(&j->t, v ? "true" : "false");
}

static void string(json_t *j, const char *k, const char *v) {
  key(j, k);
  put_string(&j->t, v);
}

// The fields of smp_stats_t, named as in smpalloc.h; per_heap: what smp_heap_stats_get fills
// for one heap (the others are the process's, in "totals" only).
typedef struct stats_field {
  const char *name;
  size_t offset;
  bool wide; // uint64_t, else uint32_t
  bool per_heap;
} stats_field_t;
#define FIELD(f, per_heap) \
  {#f, offsetof(smp_stats_t, f), sizeof(((smp_stats_t *)0)->f) == 8, per_heap}
static const stats_field_t stats_fields[] = {
    FIELD(in_use, true),       FIELD(cached, true),          FIELD(free, true),
    FIELD(dirty, true),        FIELD(mapped, true),          FIELD(resident, true),
    FIELD(purged, true),       FIELD(purges, true),          FIELD(mappings, true),
    FIELD(chunks_unmapped, true), FIELD(threads, false),     FIELD(percpu, false),
    FIELD(background, false),  FIELD(cpus, false),           FIELD(cache_slots, false),
    FIELD(limit, true),        FIELD(held, true),            FIELD(failures, true),
    FIELD(heaps, false),       FIELD(reserve_size, false),   FIELD(reserve_in_use, false),
    FIELD(huge_cached, true),
};
// The version 4 fields (rcu_*) are the "rcu" member's.
_Static_assert(offsetof(smp_stats_t, rcu_pending_blocks) == offsetof(smp_stats_t, huge_cached) + 8,
               "a field added to smp_stats_t needs its row in stats_fields");

static void stats_members(json_t *j, const smp_stats_t *s, bool per_heap_only) {
  for (size_t i = 0; i < SMP_ARRAY_LEN(stats_fields); i++) {
    const stats_field_t *f = &stats_fields[i];
    if (per_heap_only && !f->per_heap) continue;
    const char *p = (const char *)s + f->offset;
    number(j, f->name, f->wide ? *(const uint64_t *)p : *(const uint32_t *)p);
  }
}

typedef struct heaps_arg {
  json_t *j;
  const smp_stats_t *default_stats;
  smp_gather_t *g;
} heaps_arg_t;

static void heap_member(smp_heap_t *h, void *arg) {
  heaps_arg_t *a = arg;
  smp_stats_t s = {0};
  if (h->is_default) s = *a->default_stats;
  else smp_heap_stats_fill(h, &s, NULL, a->g);
  begin(a->j, NULL, "{");
  string(a->j, "name", h->name);
  boolean(a->j, "default", h->is_default);
  boolean(a->j, "region", h->is_region);
  stats_members(a->j, &s, true);
  end(a->j, "}");
}

static void caches_member(json_t *j, const smp_report_totals_t *r, smp_gather_t *g) {
  begin(j, "caches", "{");
  if (!smp_frontend_is_percpu()) {
    string(j, "kind", "thread");
    number(j, "threads", r->threads);
    number(j, "exited", r->threads_exited);
    number(j, "cached", r->cached);
    end(j, "}");
    return;
  }
  string(j, "kind", "percpu");
  number(j, "slots", smp_cpucache_count());
  number(j, "outbox_blocks", r->outbox);
  begin(j, "cpu", "[");
  smp_cpucache_cache_stats_t v;
  for (unsigned i = 0; smp_cpucache_cache_stats(i, &v, g); i++) {
    if (!v.used) continue;
    begin(j, NULL, "{");
    number(j, "index", i);
    number(j, "cached", v.cached_bytes);
    number(j, "budget", v.budget_bytes);
    number(j, "capacity", v.capacity_bytes);
    number(j, "hits", v.hits);
    number(j, "misses", v.misses);
    number(j, "restarts", v.restarts);
    end(j, "}");
  }
  end(j, "]");
  end(j, "}");
}

static void decay_member(json_t *j, const smp_report_totals_t *r, const smp_stats_t *s) {
  begin(j, "decay", "{");
  number(j, "decay_ms", smp_options.decay_ms);
  string(j, "purge", smp_options.purge == SMP_PURGE_FREE ? "free" : "dontneed");
  number(j, "dirty", r->pageheap_dirty);
  number(j, "dirty_bound", r->pageheap_dirty_bound);
  number(j, "purged", r->purged);
  number(j, "purges", r->purges);
  number(j, "passes", r->passes);
  boolean(j, "background", s->background);
  end(j, "}");
}

static void option_member(const smp_option_value_t *v, void *arg) {
  json_t *j = arg;
  if (v->text) string(j, v->name, v->text);
  else if (v->is_bool) boolean(j, v->name, v->number != 0);
  else number(j, v->name, v->number);
}

static int type_member(const smp_type_t *t, const smp_type_stats_t *s, void *arg) {
  (void)t;
  json_t *j = arg;
  begin(j, NULL, "{");
  string(j, "name", s->name);
  string(j, "description", s->description);
  number(j, "in_use", s->in_use);
  number(j, "blocks", s->blocks);
  number(j, "requests", s->requests);
  number(j, "frees", s->frees);
  number(j, "failures", s->failures);
  number(j, "high_water", s->high_water);
  number(j, "limit", s->limit);
  begin(j, "sizes", "[");
  for (unsigned c = 1; c < SMP_CLASS_COUNT; c++)
    if (s->classes[c / 64] >> (c % 64) & 1) number(j, NULL, smp_class_info[c].size);
  end(j, "]");
  number(j, "large", s->large);
  number(j, "flags", s->flags);
  boolean(j, "zero_on_free", s->flags & SMP_TYPE_ZERO_ON_FREE);
  boolean(j, "loaded", s->loaded);
  end(j, "}");
  return 0;
}

SMP_EXPORT int smp_stats_json(char *buf, size_t len) {
  smp_init_ensure();
  json_t j = {.depth = 0, .has_member = 0};
  smp_text_init_mem(&j.t, buf, buf ? len : 0);
  smp_gather_t g = {0};
  smp_stats_t s;
  smp_report_totals_t r;
  smp_report_lock();
  smp_report_stats_locked(&s, &r, NULL, &g);
  begin(&j, NULL, "{");
  number(&j, "version", JSON_SCHEMA_VERSION);
  string(&j, "smpalloc", SMP_VERSION_STRING);
  string(&j, "frontend", smp_frontend_name());
  begin(&j, "totals", "{");
  stats_members(&j, &s, false);
  end(&j, "}");
  begin(&j, "heaps", "[");
  heaps_arg_t ha = {&j, &s, &g};
  smp_heap_each(heap_member, &ha, &g);
  end(&j, "]");
  caches_member(&j, &r, &g);
  decay_member(&j, &r, &s);
  begin(&j, "options", "{");
  smp_options_each(option_member, &j);
  end(&j, "}");
  begin(&j, "types", "[");
  smp_type_foreach(type_member, &j);
  end(&j, "]");
#if SMP_HAVE_URCU
  smp_rcu_stats_t rs = {.version = SMP_RCU_STATS_VERSION, .size = sizeof rs};
  smp_rcu_stats_get(&rs); // its one lock (the sent list's) is never held by malloc
  begin(&j, "rcu", "{");
  number(&j, "pending_blocks", rs.pending_blocks);
  number(&j, "pending_bytes", rs.pending_bytes);
  number(&j, "batches", rs.batches);
  number(&j, "freed_blocks", rs.freed_blocks);
  number(&j, "oldest_ms", rs.oldest_ms);
  end(&j, "}");
#endif
  number(&j, "busy", g.busy); // last: every gathering above may add to it
  end(&j, "}");
  smp_report_unlock();
  smp_text_flush(&j.t);
  return j.t.total < INT_MAX ? (int)j.t.total : INT_MAX;
}
