// Layer: api. See prof.h.
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "smpalloc.h"
#include "atomic.h"
#include "callstack.h"
#include "debug.h"
#include "harden.h"
#include "init.h"
#include "options.h"
#include "os.h"
#include "prof.h"

bool smp_prof_on;
_Atomic bool smp_prof_dump_pending;
static _Atomic unsigned dumps; // numbers the profiles a signal asks for
static _Atomic uint64_t seed_counter;

// Per thread: bytes left before the next sample, and the generator drawing the gaps.
__thread int64_t smp_prof_until_sample SMP_TLS_IE;
static __thread uint64_t rng SMP_TLS_IE;

static const char *prefix(void) {
  return strcmp(smp_options.prof, "1") == 0 ? "smpalloc" : smp_options.prof;
}

static void on_signal(int sig) {
  (void)sig;
  smp_store_relaxed(&smp_prof_dump_pending, true);
}

void smp_prof_init(void) {
  smp_prof_on = smp_options.prof[0] && strcmp(smp_options.prof, "0") != 0;
  if (smp_prof_on && smp_options.prof_signal) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction((int)smp_options.prof_signal, &sa, NULL) != 0)
      smp_debug_warn("prof_signal: the handler could not be installed", NULL);
  }
}

// -ln(u) for u uniform in (0, 1], from 53 random bits: an exponential variate of mean 1.
static double exponential(uint64_t bits) {
  double u = (double)((bits >> 11) + 1) * 0x1.0p-53; // (0, 1]
  // ln(u) = ln(m) + e ln 2 with u = m 2^e, m in [1, 2): a series in (m - 1) / (m + 1).
  int e = 0;
  while (u < 1) u *= 2, e--;
  double z = (u - 1) / (u + 1), z2 = z * z, term = z, sum = 0;
  for (int k = 1; k < 40; k += 2, term *= z2) sum += term / k;
  return -(2 * sum + e * 0.6931471805599453);
}

static uint64_t next_random(void) { // xorshift64*
  if (rng == 0)
    rng = ((uintptr_t)&rng ^ smp_os_now_ms() ^ (uint64_t)getpid() << 40 ^
           smp_fetch_add_relaxed(&seed_counter, 0x9e3779b97f4a7c15ull)) | 1;
  rng ^= rng >> 12;
  rng ^= rng << 25;
  rng ^= rng >> 27;
  return rng * 0x2545f4914f6cdd1dull;
}

static int64_t next_gap(void) {
  double gap = exponential(next_random()) * (double)smp_options.prof_sample;
  return gap < 1 ? 1 : gap > 4e18 ? (int64_t)4e18 : (int64_t)gap;
}

bool smp_prof_sample_slow(size_t size) {
  if (SMP_UNLIKELY(rng == 0)) { // the thread's first request: its first gap, then counted
    smp_prof_until_sample = next_gap();
    smp_prof_until_sample -= size == 0 ? 1 : size > ((size_t)1 << 62) ? (int64_t)1 << 62 : (int64_t)size;
    if (smp_prof_until_sample > 0) return false;
  }
  // Sampled (once, however many gaps the request covers: its probability 1 - exp(-size/R) says
  // so). The gaps are exponential, so memoryless: the next one starts afresh.
  smp_prof_until_sample = next_gap();
  return true;
}

void smp_prof_forked(void) { rng = 0, smp_prof_until_sample = 0; } // the child draws its own samples

// ---- the profile ----

static void maps_to(int fd) {
  int in = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (in < 0) return;
  char buf[4096];
  ssize_t n;
  while ((n = read(in, buf, sizeof buf)) > 0)
    if (write(fd, buf, (size_t)n) != n) break;
  close(in);
}

// Write the profile of live sampled blocks to path (legacy heap profile) and path.folded.
static int dump_to(const char *path) {
  if (!smp_prof_on) return ENOSYS;
  size_t slots = SMP_CALLSTACK_SLOTS;
  size_t len = slots * (2 * sizeof(uint64_t) + sizeof(double) + sizeof(uint32_t));
  char *mem = smp_os_map(len);
  if (mem == NULL) return ENOMEM;
  // With hardening on every block is recorded: the profile is exact, not sampled.
  uint64_t period = smp_harden_all ? 0 : smp_options.prof_sample;
  smp_harden_tally_t t = {(uint64_t *)mem, (uint64_t *)mem + slots,
                          (double *)((uint64_t *)mem + 2 * slots), period};
  uint32_t *order = (uint32_t *)(t.estimate + slots);
  smp_harden_tally_live(&t);
  uint32_t n = smp_harden_tally_order(&t, order);
  uint32_t with_live = n;
  for (uint32_t id = 1; id < slots; id++) { // then the stacks whose blocks were all freed
    uint64_t c, b;
    smp_callstack_allocs(id, &c, &b);
    if (c && t.blocks[id] == 0) order[n++] = id;
  }
  int err = 0;
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    err = errno;
  } else {
    uint64_t live = 0, live_bytes = 0, allocs = 0, alloc_bytes = 0;
    for (uint32_t i = 0; i < n; i++) {
      if (order[i] == 0) continue; // no stack: left out of the heap profile (below)
      uint64_t c, b;
      smp_callstack_allocs(order[i], &c, &b);
      live += t.blocks[order[i]], live_bytes += t.bytes[order[i]], allocs += c, alloc_bytes += b;
    }
    smp_text_t out;
    smp_text_init(&out, fd);
    // "heap_v2/R": pprof divides each stack's figures by the sampling probability at R bytes.
    smp_text_str(&out, "heap profile: ");
    smp_text_u64(&out, live, 0);
    smp_text_str(&out, ": ");
    smp_text_u64(&out, live_bytes, 0);
    smp_text_str(&out, " [");
    smp_text_u64(&out, allocs, 0);
    smp_text_str(&out, ": ");
    smp_text_u64(&out, alloc_bytes, 0);
    if (period) {
      smp_text_str(&out, "] @ heap_v2/");
      smp_text_u64(&out, period, 0);
    } else {
      smp_text_str(&out, "] @ heapprofile"); // exact: pprof does not scale it
    }
    smp_text_str(&out, "\n");
    for (uint32_t i = 0; i < n; i++) {
      uint32_t id = order[i];
      if (id == 0) continue; // no stack (pprof needs a frame): in the totals, and the folded file
      uint64_t c, b;
      smp_callstack_allocs(id, &c, &b);
      void *frames[SMP_CALLSTACK_DEPTH];
      unsigned depth = smp_callstack_program_frames(id, frames);
      smp_text_u64(&out, t.blocks[id], 0);
      smp_text_str(&out, ": ");
      smp_text_u64(&out, t.bytes[id], 0);
      smp_text_str(&out, " [");
      smp_text_u64(&out, c, 0);
      smp_text_str(&out, ": ");
      smp_text_u64(&out, b, 0);
      smp_text_str(&out, "] @");
      for (unsigned k = 0; k < depth; k++) {
        smp_text_str(&out, " ");
        smp_text_hex(&out, (uintptr_t)frames[k]);
      }
      smp_text_str(&out, "\n");
    }
    smp_text_str(&out, "\nMAPPED_LIBRARIES:\n");
    smp_text_flush(&out);
    maps_to(fd);
    close(fd);
  }
  // Folded stacks: "outermost;...;innermost bytes", the bytes an estimate of the live bytes.
  char folded[SMP_OPTIONS_PATH_MAX + 16];
  size_t pl = strlen(path);
  if (err == 0 && pl + 8 < sizeof folded) {
    memcpy(folded, path, pl);
    memcpy(folded + pl, ".folded", 8);
    fd = open(folded, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
      err = errno;
    } else {
      smp_text_t out;
      smp_text_init(&out, fd);
      for (uint32_t i = 0; i < with_live; i++) {
        uint32_t id = order[i];
        void *frames[SMP_CALLSTACK_DEPTH];
        unsigned depth = smp_callstack_program_frames(id, frames);
        if (depth == 0) smp_text_str(&out, "[no stack]");
        for (unsigned k = depth; k-- > 0;) {
          smp_callstack_name(&out, (char *)frames[k] - 1);
          if (k) smp_text_str(&out, ";");
        }
        smp_text_str(&out, " ");
        smp_text_u64(&out, (uint64_t)(t.estimate[id] + 0.5), 0);
        smp_text_str(&out, "\n");
      }
      smp_text_flush(&out);
      close(fd);
    }
  }
  smp_os_unmap(mem, len);
  return err;
}

// "<prefix>.<pid>[.<n>].heap"
static void numbered(char *buf, size_t cap, long n) {
  smp_text_t t;
  smp_text_init_mem(&t, buf, cap);
  smp_text_str(&t, prefix());
  smp_text_str(&t, ".");
  smp_text_u64(&t, (uint64_t)getpid(), 0);
  if (n >= 0) {
    smp_text_str(&t, ".");
    smp_text_u64(&t, (uint64_t)n, 0);
  }
  smp_text_str(&t, ".heap");
  smp_text_flush(&t);
}

void smp_prof_dump_signalled(void) {
  if (!atomic_exchange_explicit(&smp_prof_dump_pending, false, memory_order_relaxed)) return;
  char path[SMP_OPTIONS_PATH_MAX + 64];
  numbered(path, sizeof path, (long)smp_fetch_add_relaxed(&dumps, 1));
  dump_to(path);
}

void smp_prof_at_exit(void) {
  if (!smp_prof_on) return;
  char path[SMP_OPTIONS_PATH_MAX + 64];
  numbered(path, sizeof path, -1);
  dump_to(path);
}

SMP_EXPORT int smp_prof_dump(const char *path) {
  if (path == NULL) return EINVAL;
  smp_init_ensure();
  return dump_to(path);
}
