// Layer: cross-cutting. See options.h. One table: name, kind, default, help, where it lives.
#include <signal.h>
#include <string.h>

#include "debug.h"
#include "options.h"

smp_options_t smp_options;

// OPT_SIGNAL: a signal number or name (USR1, SIGUSR1; 0: none). OPT_PATH: text kept whole
// (it cannot hold a comma, the separator), default "".
typedef enum { OPT_BOOL, OPT_SIZE, OPT_CHOICE, OPT_SIGNAL, OPT_PATH } opt_kind_t;

typedef struct opt_entry {
  const char *name;
  opt_kind_t kind;
  size_t def; // default (bools as 0/1)
  size_t min, max;
  size_t offset; // into smp_options_t
  const char *help;
  const char *const *choices; // OPT_CHOICE: names of values 0, 1, ...
} opt_entry_t;

static const char *const frontend_names[] = {"auto", "thread", "percpu", NULL};
static const char *const purge_names[] = {"dontneed", "free", NULL};
static const char *const background_names[] = {"0", "1", "auto", NULL};

static const opt_entry_t opt_table[] = {
    {"stats", OPT_BOOL, 0, 0, 1, offsetof(smp_options_t, stats),
     "print statistics to stderr at exit", NULL},
    {"debug", OPT_BOOL, 0, 0, 1, offsetof(smp_options_t, debug),
     "no caching: every freed block goes straight back to its span", NULL},
    {"cache_size", OPT_SIZE, 1024 * 1024, 0, (size_t)1 << 30,
     offsetof(smp_options_t, cache_size),
     "cache budget in bytes, per thread or per CPU cache (k/m/g suffixes)", NULL},
    {"frontend", OPT_CHOICE, SMP_FRONTEND_AUTO, 0, 2, offsetof(smp_options_t, frontend),
     "auto (per-CPU where rseq works), thread, or percpu", frontend_names},
    {"decay_ms", OPT_SIZE, 1000, 0, 3600 * 1000, offsetof(smp_options_t, decay_ms),
     "free pages unused this long (ms) go back to the OS; 0: only on malloc_trim", NULL},
    {"dirty_pct", OPT_SIZE, 100, 0, 1000, offsetof(smp_options_t, dirty_pct),
     "free pages that may be resident are kept up to this % of the pages in use (at least "
     "one chunk); beyond that the oldest go back at once. 0: no bound, decay_ms alone", NULL},
    {"purge", OPT_CHOICE, SMP_PURGE_DONTNEED, 0, 1, offsetof(smp_options_t, purge),
     "dontneed (pages go back at once and read as zero) or free (MADV_FREE: lazily)",
     purge_names},
    {"background", OPT_CHOICE, SMP_BACKGROUND_AUTO, 0, 2, offsetof(smp_options_t, background),
     "a thread that returns free pages and drains idle caches, even while the program is idle: "
     "0 never, 1 always, auto once the process has a second thread", background_names},
    {"thp", OPT_BOOL, 1, 0, 1, offsetof(smp_options_t, thp),
     "let transparent huge pages back the heap's chunks (0: MADV_NOHUGEPAGE)", NULL},
    {"huge_cache", OPT_SIZE, 16, 0, 64, offsetof(smp_options_t, huge_cache),
     "freed huge blocks (above 2 MiB) whose mappings a heap keeps for reuse, at most (also "
     "bounded by dirty_pct and aged by decay_ms); 0: every huge free unmaps", NULL},
    {"stats_signal", OPT_SIGNAL, 0, 0, 0, offsetof(smp_options_t, stats_signal),
     "a signal (USR2, SIGUSR2, 12, ...) on which the statistics report is written to stats_file, "
     "safely while threads allocate; 0: none", NULL},
    {"stats_file", OPT_PATH, 0, 0, 0, offsetof(smp_options_t, stats_file),
     "the file stats_signal's reports are appended to (created if need be); default stderr", NULL},
    {"rcu_stall", OPT_SIZE, (size_t)256 << 20, 0, (size_t)1 << 40,
     offsetof(smp_options_t, rcu_stall),
     "smp_free_rcu warns (once) when more bytes than this wait for a grace period (a reader "
     "that never leaves its read-side section); 0: never", NULL},
    {"junk", OPT_BOOL, 0, 0, 1, offsetof(smp_options_t, junk),
     "fill allocated blocks with 0xa5 and freed ones with 0xdeadc0de; a small block's free "
     "pattern is checked when it is handed out again (a write after free is reported)", NULL},
    {"zero_free", OPT_BOOL, 0, 0, 1, offsetof(smp_options_t, zero_free),
     "clear freed blocks (no secret outlives its block); junk:1 fills them instead", NULL},
    {"redzone", OPT_SIZE, 0, 0, 4096, offsetof(smp_options_t, redzone),
     "bytes of canary after every block (with the slack up to its end), checked on free and "
     "realloc: an overflow is reported with the first byte written", NULL},
    {"leaks", OPT_PATH, 0, 0, 0, offsetof(smp_options_t, leaks),
     "1: at exit, every block still allocated is reported, grouped by the stack that "
     "allocated it, largest first, to stderr; a path: to that file (turns hardening on)", NULL},
    {"prof", OPT_PATH, 0, 0, 0, offsetof(smp_options_t, prof),
     "1 or a path prefix: the sampling heap profiler; profiles of live memory go to "
     "<prefix>.<pid>.heap (google-pprof) and .heap.folded at exit (prefix smpalloc for 1)", NULL},
    {"prof_sample", OPT_SIZE, 512 * 1024, 1, (size_t)1 << 40, offsetof(smp_options_t, prof_sample),
     "mean bytes between samples (k/m/g): each byte is sampled with probability 1/this", NULL},
    {"prof_signal", OPT_SIGNAL, 0, 0, 0, offsetof(smp_options_t, prof_signal),
     "a signal on which a profile goes to <prefix>.<pid>.<n>.heap (written by the next malloc); "
     "0: none", NULL},
    {"quarantine", OPT_SIZE, 0, 0, (size_t)1 << 36, offsetof(smp_options_t, quarantine),
     "freed blocks wait in a FIFO of this many bytes before reuse (k/m/g): double frees of "
     "them are reported, and with junk:1 so are writes to them", NULL},
};

// Signals a report may be asked with: those a program may catch that the kernel does not send
// for a fault (SEGV, BUS, ILL, FPE, TRAP, SYS) or send to stop or kill it (KILL, STOP).
static const struct {
  const char *name;
  int number;
} signal_names[] = {{"HUP", SIGHUP},   {"INT", SIGINT},     {"QUIT", SIGQUIT}, {"USR1", SIGUSR1},
                    {"USR2", SIGUSR2}, {"PIPE", SIGPIPE},   {"ALRM", SIGALRM}, {"TERM", SIGTERM},
                    {"CHLD", SIGCHLD}, {"CONT", SIGCONT},   {"TSTP", SIGTSTP}, {"TTIN", SIGTTIN},
                    {"TTOU", SIGTTOU}, {"URG", SIGURG},     {"XCPU", SIGXCPU}, {"XFSZ", SIGXFSZ},
                    {"VTALRM", SIGVTALRM}, {"PROF", SIGPROF}, {"WINCH", SIGWINCH}, {"IO", SIGIO},
                    {"PWR", SIGPWR}};

static void opt_set(const opt_entry_t *o, size_t v) {
  char *field = (char *)&smp_options + o->offset;
  if (o->kind == OPT_BOOL)
    *(bool *)field = v != 0;
  else if (o->kind == OPT_PATH)
    field[0] = 0; // the default; a value is copied by opt_set_text
  else
    *(size_t *)field = v;
}

static void opt_set_text(const opt_entry_t *o, const char *s, size_t n) {
  char *field = (char *)&smp_options + o->offset;
  memcpy(field, s, n);
  field[n] = 0;
}

void smp_options_reset(void) {
  for (size_t i = 0; i < SMP_ARRAY_LEN(opt_table); i++) opt_set(&opt_table[i], opt_table[i].def);
}

static bool token_is(const char *s, size_t n, const char *word) {
  return strlen(word) == n && memcmp(s, word, n) == 0;
}

// Parse an unsigned number with an optional k/m/g suffix; false on any malformation/overflow.
static bool parse_size(const char *s, size_t n, size_t *out) {
  size_t v = 0, i = 0;
  if (n == 0) return false;
  for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
    if (v > (SIZE_MAX - 9) / 10) return false;
    v = v * 10 + (size_t)(s[i] - '0');
  }
  if (i == 0) return false;
  if (i < n) {
    unsigned shift;
    switch (s[i]) {
    case 'k': case 'K': shift = 10; break;
    case 'm': case 'M': shift = 20; break;
    case 'g': case 'G': shift = 30; break;
    default: return false;
    }
    if (i + 1 != n || v > (SIZE_MAX >> shift)) return false;
    v <<= shift;
  }
  *out = v;
  return true;
}

// A signal by number or name (any case, with or without "SIG"); 0 is none.
static bool parse_signal(const char *s, size_t n, size_t *out) {
  // 0, and the real-time signals, by number; the others by name or number below.
  if (parse_size(s, n, out) && (*out == 0 || (*out >= (size_t)SIGRTMIN && *out <= (size_t)SIGRTMAX)))
    return true;
  char up[16];
  if (n >= sizeof up) return false;
  for (size_t i = 0; i < n; i++) up[i] = s[i] >= 'a' && s[i] <= 'z' ? (char)(s[i] - 32) : s[i];
  const char *name = up;
  if (n > 3 && memcmp(up, "SIG", 3) == 0) name += 3, n -= 3;
  for (size_t i = 0; i < SMP_ARRAY_LEN(signal_names); i++) {
    size_t number = (size_t)signal_names[i].number;
    if (token_is(name, n, signal_names[i].name) || (parse_size(name, n, out) && *out == number))
      return *out = number, true;
  }
  return false;
}

static bool parse_value(const opt_entry_t *o, const char *s, size_t n, size_t *out) {
  if (o->kind == OPT_BOOL) {
    if (token_is(s, n, "1") || token_is(s, n, "true") || token_is(s, n, "yes")) return *out = 1, true;
    if (token_is(s, n, "0") || token_is(s, n, "false") || token_is(s, n, "no")) return *out = 0, true;
    return false;
  }
  if (o->kind == OPT_CHOICE) {
    for (size_t i = 0; o->choices[i]; i++)
      if (token_is(s, n, o->choices[i])) return *out = i, true;
    return false;
  }
  if (o->kind == OPT_SIGNAL) return parse_signal(s, n, out);
  if (o->kind == OPT_PATH) return n > 0 && n < SMP_OPTIONS_PATH_MAX;
  return parse_size(s, n, out) && *out >= o->min && *out <= o->max;
}

// Copy a token into a NUL-terminated buffer for the warning text.
static const char *clip(char *buf, size_t cap, const char *s, size_t n) {
  if (n >= cap) n = cap - 1;
  memcpy(buf, s, n);
  buf[n] = 0;
  return buf;
}

// Walk the comma-separated items of spec. Each valid item is applied to smp_options when apply
// is set; each bad one is warned about and skipped, or, when apply is not set, ends the walk:
// false, with the reason and the item in why (why_len bytes, NUL-terminated).
static bool options_scan(const char *spec, bool apply, char *why, size_t why_len) {
  const char *p = spec;
  while (*p) {
    const char *item = p;
    while (*p && *p != ',') p++;
    size_t len = (size_t)(p - item);
    if (*p == ',') p++;
    if (len == 0) continue;
    const char *colon = memchr(item, ':', len);
    size_t name_len = colon ? (size_t)(colon - item) : len;
    const opt_entry_t *o = NULL;
    for (size_t i = 0; i < SMP_ARRAY_LEN(opt_table); i++)
      if (token_is(item, name_len, opt_table[i].name)) o = &opt_table[i];
    size_t v = 0;
    // A bare boolean name means true ("stats" == "stats:1").
    bool ok = o != NULL && (colon ? parse_value(o, colon + 1, len - name_len - 1, &v)
                                  : (o->kind == OPT_BOOL && (v = 1, true)));
    if (!ok) {
      const char *reason = o == NULL ? "unknown option" : "bad value";
      char tmp[64];
      if (apply) {
        smp_debug_warn(o == NULL ? "SMPALLOC_OPTIONS: unknown option ignored"
                                 : "SMPALLOC_OPTIONS: bad value ignored",
                       clip(tmp, sizeof tmp, item, len));
        continue;
      }
      if (why != NULL && why_len > 0) {
        size_t r = strlen(reason), n = len < 48 ? len : 48;
        // "<reason> '<item>'", cut to fit.
        char text[128];
        memcpy(text, reason, r);
        text[r] = ' ', text[r + 1] = '\'';
        memcpy(text + r + 2, item, n);
        text[r + 2 + n] = '\'', text[r + 3 + n] = 0;
        clip(why, why_len, text, r + 3 + n);
      }
      return false;
    }
    if (!apply) continue;
    if (o->kind == OPT_PATH) opt_set_text(o, colon + 1, len - name_len - 1);
    else opt_set(o, v);
  }
  return true;
}

void smp_options_parse(const char *spec) {
  smp_options_reset();
  if (spec != NULL) options_scan(spec, true, NULL, 0);
}

bool smp_options_valid(const char *spec, char *why, size_t why_len) {
  if (why != NULL && why_len > 0) why[0] = 0;
  return spec != NULL && options_scan(spec, false, why, why_len);
}

void smp_options_each(void (*fn)(const smp_option_value_t *v, void *arg), void *arg) {
  for (size_t i = 0; i < SMP_ARRAY_LEN(opt_table); i++) {
    const opt_entry_t *o = &opt_table[i];
    const char *field = (const char *)&smp_options + o->offset;
    smp_option_value_t v = {o->name, o->kind == OPT_BOOL, NULL, 0};
    if (o->kind == OPT_BOOL) v.number = *(const bool *)field;
    else if (o->kind == OPT_PATH) v.text = field;
    else v.number = *(const size_t *)field;
    if (o->kind == OPT_CHOICE) v.text = o->choices[v.number];
    fn(&v, arg);
  }
}
