// nowait_seccomp: SMP_NOWAIT never makes a system call (include/smpalloc.h: "never blocks: no
// waiting for a lock, no system call; NULL with errno EAGAIN when the request would have to").
// Each run is a forked child: it warms the allocator up (blocks of every tier allocated and
// freed in the default heap, in a heap from smp_heap_create and in a region heap), starts -t
// helper threads that keep the allocator's locks busy (large and small malloc/free, smp_trim,
// heaps created and destroyed, statistics, traffic in the two heaps), then starts a tester
// thread that installs a seccomp filter on itself alone (no TSYNC: the helpers are not
// filtered) and makes -n SMP_NOWAIT requests: smp_mallocx, smp_heap_malloc and smp_heap_calloc
// (default heap, the heap, the region heap, a heap never used), smp_reallocx and
// smp_heap_realloc of blocks made before the filter, of 16 B .. 8 MiB, with SMP_ZERO and
// SMP_ALIGN mixed in. Each must give a block (of the heap asked, aligned, zeroed when asked) or
// NULL with errno EAGAIN (or ENOMEM); blocks are not freed (free is not covered by SMP_NOWAIT).
// The filter traps mmap, munmap, madvise, mprotect, pkey_mprotect, mremap, brk, membarrier,
// sched_yield, nanosleep, clock_nanosleep, futex_waitv and futex's waiting operations
// (FUTEX_WAIT, FUTEX_WAIT_BITSET, FUTEX_LOCK_PI, FUTEX_LOCK_PI2, FUTEX_WAIT_REQUEUE_PI, private
// or not; FUTEX_WAKE passes). With -m strict every system call but write and exit is trapped
// (the header's "no system call" to the letter). A trapped call runs a SIGSYS handler that
// records the system call, its arguments, the request being made and the return addresses
// into libsmpalloc found on the stack, then repeats the call with SIGSYS blocked, so the
// kernel kills the child by SIGSYS; the parent prints the record (addr2line, when it is there,
// names the functions). The filter cannot be removed: the child ends by _exit once the tester
// is done, and the parent reads the counts from shared memory.
// Modes: "nowait" (default): two children, the tester a fresh thread that never allocated
// (cold: no cache of its own) and one that warmed its own cache first. "strict": the same with
// the strict filter. "control": the negative control, proving the filter works: a child whose
// thread makes plain malloc calls of huge blocks under the filter must die by SIGSYS, and one
// whose FUTEX_WAKE passes must die by SIGSYS at FUTEX_WAIT_PRIVATE.
// -k MASK leaves out call kinds (bit i: enum call below): ctest runs the allocation calls
// (nowait_seccomp, -k 96) and the realloc forms (nowait_seccomp_realloc, -k 31) apart.
// Not in the AddressSanitizer and ThreadSanitizer builds (tests/stress/CMakeLists.txt says why).
// Exit status: 0 on success, 1 on a failure, 77 when seccomp filters are not available.
#include "stress_common.h"

#include <limits.h>
#include <link.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/futex.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <ucontext.h>

#if defined(__x86_64__)
#define NW_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define NW_AUDIT_ARCH AUDIT_ARCH_AARCH64
#else
#error "nowait_seccomp: x86-64 and aarch64 only"
#endif
#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449
#endif
#ifndef FUTEX_LOCK_PI2
#define FUTEX_LOCK_PI2 13
#endif
#ifndef SECCOMP_RET_KILL_PROCESS
#define SECCOMP_RET_KILL_PROCESS 0x80000000U
#endif

#define KIB ((size_t)1024)
#define MIB (KIB * 1024)
#define EXIT_SKIP 77
#define STACK_WORDS 2048 // words of the trapped thread's stack copied for the parent
#define MAX_BLOCKS 65536 // pointers the tester keeps (not freed)

static stress_args_t args = {.threads = 3, .iters = 20000, .seconds = 30, .seed = 1, .mode = "nowait"};

// ---- what the tester does, in shared memory -----------------------------------------------

enum call {
  C_MALLOCX,        // smp_mallocx(size, f)
  C_HEAP,           // smp_heap_malloc(heap, size, f)
  C_HEAP_CALLOC,    // smp_heap_calloc(heap, 1, size, f)
  C_REGION,         // smp_heap_malloc(region, size, f)
  C_COLD_HEAP,      // smp_heap_malloc(a heap never used, size, f)
  C_REALLOCX,       // smp_reallocx(p, size, f), p made before the filter
  C_HEAP_REALLOC,   // smp_heap_realloc(other heap, p, size, f)
  C_COUNT
};
static const char *const call_names[C_COUNT] = {
    "smp_mallocx",           "smp_heap_malloc(heap)", "smp_heap_calloc(heap)", "smp_heap_malloc(region)",
    "smp_heap_malloc(cold)", "smp_reallocx",          "smp_heap_realloc(move)"};

static const size_t sizes[] = {16,       48,        128,       512,      1024,     4096,
                               16 * KIB, 64 * KIB,  100 * KIB, 256 * KIB, 1 * MIB, 8 * MIB};
#define NSIZES (sizeof sizes / sizeof sizes[0])

typedef struct shared {
  // counts[call][size index][0 ok, 1 EAGAIN, 2 ENOMEM]
  uint64_t counts[C_COUNT][NSIZES][3];
  uint64_t einval_checks;  // SMP_NOWAIT | SMP_NOFAIL gave EINVAL
  uint64_t max_cycles;     // the slowest request (time stamp counter ticks)
  volatile int done;       // the tester finished every request
  volatile int filtered;   // the filter is in place
  // The request being made (set before each call).
  volatile int cur_call;
  volatile size_t cur_size, cur_iter;
  volatile unsigned cur_flags;
  const char *volatile cur_phase; // a string literal (the same address in the parent)
  // A failure other than a trap (set before _exit(2)).
  char failure[512];
  // The trap.
  volatile int trapped;
  volatile int stuck;      // the tester was stopped past the deadline (SIGURG), stack recorded
  volatile pid_t tid;      // the tester thread
  long sys_nr, sys_args[6];
  uintptr_t call_addr, pc;
  size_t nstack;
  uintptr_t stack[STACK_WORDS];
} shared_t;

static shared_t *sh;

// ---- the filter ---------------------------------------------------------------------------

#define LOAD_NR BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr))
#define TRAP_IF(nr) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1), BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP)
#define ALLOW_IF(nr) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1), BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)
// The low word of futex's second argument (little-endian on both architectures).
#define LOAD_FUTEX_OP BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[1]))

static int install_filter(bool strict) {
  struct sock_filter head[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, NW_AUDIT_ARCH, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
      LOAD_NR,
#if defined(__x86_64__)
      BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000u, 0, 1), // x32 numbers
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
#endif
  };
  struct sock_filter strict_body[] = {
      ALLOW_IF(SYS_write), ALLOW_IF(SYS_exit), ALLOW_IF(SYS_exit_group), ALLOW_IF(SYS_rt_sigreturn),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP),
  };
  struct sock_filter body[] = {
      TRAP_IF(SYS_mmap),        TRAP_IF(SYS_munmap),     TRAP_IF(SYS_madvise),
      TRAP_IF(SYS_mprotect),    TRAP_IF(SYS_pkey_mprotect), TRAP_IF(SYS_mremap),
      TRAP_IF(SYS_brk),         TRAP_IF(SYS_membarrier), TRAP_IF(SYS_sched_yield),
      TRAP_IF(SYS_nanosleep),   TRAP_IF(SYS_clock_nanosleep), TRAP_IF(SYS_futex_waitv),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_futex, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      LOAD_FUTEX_OP,
      BPF_STMT(BPF_ALU | BPF_AND | BPF_K, FUTEX_CMD_MASK & 0xff), // without PRIVATE, CLOCK_REALTIME
      TRAP_IF(FUTEX_WAIT),      TRAP_IF(FUTEX_WAIT_BITSET), TRAP_IF(FUTEX_LOCK_PI),
      TRAP_IF(FUTEX_LOCK_PI2),  TRAP_IF(FUTEX_WAIT_REQUEUE_PI),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_filter prog[sizeof head / sizeof head[0] + sizeof body / sizeof body[0] +
                          sizeof strict_body / sizeof strict_body[0]];
  size_t n = 0;
  memcpy(prog, head, sizeof head);
  n += sizeof head / sizeof head[0];
  if (strict) {
    memcpy(prog + n, strict_body, sizeof strict_body);
    n += sizeof strict_body / sizeof strict_body[0];
  } else {
    memcpy(prog + n, body, sizeof body);
    n += sizeof body / sizeof body[0];
  }
  struct sock_fprog fprog = {.len = (unsigned short)n, .filter = prog};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return errno;
  // This thread only (no SECCOMP_FILTER_FLAG_TSYNC): the helpers go on unfiltered.
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog) != 0) return errno;
  return 0;
}

// Whether this kernel lets a process install a filter at all (checked in a throwaway child).
static bool seccomp_available(void) {
  pid_t pid = fork();
  if (pid < 0) stress_fail("fork: %s", strerror(errno));
  if (pid == 0) _exit(install_filter(false) == 0 ? 0 : 3);
  int status;
  if (waitpid(pid, &status, 0) != pid) stress_fail("waitpid: %s", strerror(errno));
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

// ---- the trap -----------------------------------------------------------------------------

static uintptr_t tester_stack_lo, tester_stack_hi; // the filtered thread's stack

static void put(const char *s) {
  ssize_t w = write(STDERR_FILENO, s, strlen(s));
  (void)w;
}

// The registers and stack of the interrupted code, into shared memory.
static void record_context(const ucontext_t *uc) {
  uintptr_t sp;
#if defined(__x86_64__)
  sh->sys_args[0] = uc->uc_mcontext.gregs[REG_RDI];
  sh->sys_args[1] = uc->uc_mcontext.gregs[REG_RSI];
  sh->sys_args[2] = uc->uc_mcontext.gregs[REG_RDX];
  sh->sys_args[3] = uc->uc_mcontext.gregs[REG_R10];
  sh->sys_args[4] = uc->uc_mcontext.gregs[REG_R8];
  sh->sys_args[5] = uc->uc_mcontext.gregs[REG_R9];
  sh->pc = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
  sp = (uintptr_t)uc->uc_mcontext.gregs[REG_RSP];
#else
  for (int i = 0; i < 6; i++) sh->sys_args[i] = (long)uc->uc_mcontext.regs[i];
  sh->pc = (uintptr_t)uc->uc_mcontext.pc;
  sp = (uintptr_t)uc->uc_mcontext.sp;
#endif
  size_t n = 0;
  if (sp >= tester_stack_lo && sp < tester_stack_hi)
    for (uintptr_t a = sp; a + sizeof(uintptr_t) <= tester_stack_hi && n < STACK_WORDS;
         a += sizeof(uintptr_t))
      sh->stack[n++] = *(const uintptr_t *)a;
  sh->nstack = n;
}

static void on_sigsys(int sig, siginfo_t *si, void *ctx) {
  (void)sig;
  sh->sys_nr = si->si_syscall;
  sh->call_addr = (uintptr_t)si->si_call_addr;
  record_context(ctx);
  sh->trapped = 1;
  put("nowait_seccomp: child: a trapped system call; the parent reports it\n");
  // With SIGSYS blocked (this handler runs), a trapped call makes the kernel kill the process by
  // SIGSYS (its default action): the death the parent expects of a trap.
  syscall(SYS_munmap, (void *)0, (size_t)0);
  _exit(111); // not reached
}

// Sent by the parent to a tester that ran past its deadline: where it is stuck.
static void on_sigurg(int sig, siginfo_t *si, void *ctx) {
  (void)sig, (void)si;
  record_context(ctx);
  sh->stuck = 1;
  _exit(4); // exit_group passes both filters
}

static void install_handlers(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_sigsys;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGSYS, &sa, NULL) != 0) stress_fail("sigaction: %s", strerror(errno));
  sa.sa_sigaction = on_sigurg;
  if (sigaction(SIGURG, &sa, NULL) != 0) stress_fail("sigaction: %s", strerror(errno));
}

// ---- the child ----------------------------------------------------------------------------

static smp_heap_t *heap, *heap2, *cold_heap, *region;
static void *region_mem;
static size_t region_len = 64 * MIB;
static _Atomic int stop_helpers;

// Blocks made before the filter, for the realloc calls.
#define NPRE 256
static void *pre[NPRE];
static size_t pre_size[NPRE];
static smp_heap_t *pre_heap[NPRE];

static void warm_one(smp_heap_t *h) {
  static void *keep[512];
  for (size_t s = 0; s < NSIZES; s++) {
    size_t count = sizes[s] <= 4096 ? 512 : sizes[s] <= 256 * KIB ? 16 : 2;
    if (h == region && sizes[s] > 2 * MIB) continue; // none: the region heap gives no huge blocks
    for (size_t i = 0; i < count; i++) {
      keep[i] = smp_heap_malloc(h, sizes[s], 0);
      if (keep[i] == NULL) stress_fail("warm-up: %zu bytes from heap %s failed", sizes[s], smp_heap_name(h));
      memset(keep[i], 1, sizes[s] < 4096 ? sizes[s] : 4096);
    }
    for (size_t i = 0; i < count; i++) free(keep[i]);
  }
}

static void *helper_main(void *arg) {
  unsigned id = (unsigned)(uintptr_t)arg;
  stress_rng_t r;
  stress_rng_seed(&r, args.seed * 7919 + id);
  void *small[256];
  for (uint64_t i = 0; !atomic_load_explicit(&stop_helpers, memory_order_relaxed); i++) {
    switch ((id + i) % 5) {
    case 0: { // page runs and huge blocks: the page heap's lock, mmap/munmap
      size_t n = (size_t)stress_rng_log(&r, 64 * KIB, 4 * MIB);
      void *p = malloc(n);
      if (p) memset(p, 2, n < 8192 ? n : 8192);
      free(p);
      if (i % 16 == 0) smp_trim();
      break;
    }
    case 1: // bursts of small blocks: the central lists' locks
      for (int k = 0; k < 256; k++) small[k] = malloc((size_t)stress_rng_log(&r, 1, 4096));
      for (int k = 255; k >= 0; k--) free(small[k]);
      break;
    case 2: // the heaps the tester uses, and the heaps' own table
      for (int k = 0; k < 64; k++) {
        small[k] = smp_heap_malloc(k % 2 ? heap : region, (size_t)stress_rng_log(&r, 1, 128 * KIB), 0);
      }
      for (int k = 0; k < 64; k++) free(small[k]);
      break;
    case 3: { // heaps created and destroyed; statistics
      smp_heap_t *t = smp_heap_create("helper", 0);
      if (t) {
        for (int k = 0; k < 16; k++) (void)!smp_heap_malloc(t, (size_t)stress_rng_log(&r, 1, 64 * KIB), 0);
        smp_heap_destroy(t);
      }
      smp_stats_t s = {.version = SMP_STATS_VERSION, .size = sizeof s};
      if (i % 8 == 3) smp_stats_get(&s);
      smp_heap_stats_get(heap, &s);
      break;
    }
    default: // trim alone: every cache drained, free runs purged
      smp_trim();
      break;
    }
  }
  return NULL;
}

static inline uint64_t ticks(void) {
#if defined(__x86_64__)
  return __builtin_ia32_rdtsc();
#else
  uint64_t v;
  __asm__ volatile("mrs %0, cntvct_el0" : "=r"(v));
  return v;
#endif
}

__attribute__((noreturn, format(printf, 1, 2))) static void child_fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(sh->failure, sizeof sh->failure, fmt, ap);
  va_end(ap);
  _exit(2);
}

typedef struct tester_arg {
  bool warm, strict;
} tester_arg_t;

static void **kept; // blocks given under the filter (never freed)

static void *tester_main(void *arg) {
  const tester_arg_t *ta = arg;
  stress_rng_t r;
  stress_rng_seed(&r, args.seed * 104729 + ta->warm);
  if (ta->warm) { // this thread's own cache, filled
    void *b[256];
    for (size_t s = 0; s < 6; s++) {
      for (int k = 0; k < 256; k++) b[k] = smp_mallocx(sizes[s], 0);
      for (int k = 0; k < 256; k++) free(b[k]);
      for (int k = 0; k < 256; k++) b[k] = smp_heap_malloc(heap, sizes[s], 0);
      for (int k = 0; k < 256; k++) free(b[k]);
    }
  }
  sh->tid = gettid();
  int rc = install_filter(ta->strict);
  if (rc != 0) child_fail("installing the seccomp filter: %s", strerror(rc));
  sh->filtered = 1;
  // From here on: no allocation of this thread's own, no stdio.
  size_t nkept = 0;
  static const unsigned flag_sets[] = {SMP_NOWAIT, SMP_NOWAIT | SMP_ZERO,
                                       SMP_NOWAIT | SMP_ALIGN(4096),
                                       SMP_NOWAIT | SMP_ZERO | SMP_ALIGN(64)};
  // SMP_NOWAIT | SMP_NOFAIL is EINVAL, found without a system call.
  errno = 0;
  sh->cur_call = C_MALLOCX, sh->cur_size = 64, sh->cur_flags = SMP_NOWAIT | SMP_NOFAIL;
  sh->cur_phase = "the request";
  void *bad = smp_mallocx(64, SMP_NOWAIT | SMP_NOFAIL);
  if (bad != NULL || errno != EINVAL)
    child_fail("smp_mallocx(64, SMP_NOWAIT | SMP_NOFAIL) returned %p, errno %d: wanted NULL, "
               "EINVAL", bad, errno);
  sh->einval_checks++;
  for (size_t it = 0; it < args.iters; it++) {
    int call = (int)stress_rng_below(&r, C_COUNT);
    if (args.extra >> call & 1) continue; // -k: left out
    size_t si = (size_t)stress_rng_below(&r, NSIZES), size = sizes[si];
    unsigned fi = (unsigned)stress_rng_below(&r, 4), flags = flag_sets[fi];
    size_t align = fi == 2 ? 4096 : fi == 3 ? 64 : 16;
    sh->cur_iter = it, sh->cur_call = call, sh->cur_size = size, sh->cur_flags = flags;
    sh->cur_phase = "the request";
    smp_heap_t *want = NULL;
    void *p = NULL, *old = NULL;
    size_t old_size = 0, pi = 0;
    errno = 0;
    uint64_t t0 = ticks();
    switch (call) {
    case C_MALLOCX: p = smp_mallocx(size, flags), want = smp_heap_default(); break;
    case C_HEAP: p = smp_heap_malloc(heap, size, flags), want = heap; break;
    case C_HEAP_CALLOC: p = smp_heap_calloc(heap, 1, size, flags), want = heap; break;
    case C_REGION: p = smp_heap_malloc(region, size, flags), want = region; break;
    case C_COLD_HEAP: p = smp_heap_malloc(cold_heap, size, flags), want = cold_heap; break;
    case C_REALLOCX:
    case C_HEAP_REALLOC:
      pi = (size_t)stress_rng_below(&r, NPRE);
      old = pre[pi], old_size = pre_size[pi];
      want = pre_heap[pi];
      if (call == C_REALLOCX) {
        p = smp_reallocx(old, size, flags);
      } else {
        want = want == heap ? heap2 : heap;
        p = smp_heap_realloc(want, old, size, flags);
      }
      break;
    }
    uint64_t dt = ticks() - t0;
    int e = errno;
    sh->cur_phase = "the checks after the request (smp_heap_of, reading the block)";
    if (dt > sh->max_cycles) sh->max_cycles = dt;
    if (p == NULL) {
      if (e == EAGAIN)
        sh->counts[call][si][1]++;
      else if (e == ENOMEM)
        sh->counts[call][si][2]++;
      else
        child_fail("%s(%zu bytes, flags %#x) returned NULL with errno %d (%s), not EAGAIN or "
                   "ENOMEM",
                   call_names[call], size, flags, e, strerror(e));
      // smp_heap_of is no NOWAIT call: for a huge block it reads the huge table under its lock.
      if (old && ((old_size <= 2 * 1024 * 1024 && smp_heap_of(old) == NULL) ||
                  *(volatile unsigned char *)old != 0x5a))
        child_fail("%s(%p, %zu bytes, flags %#x) failed and changed the block", call_names[call],
                   old, size, flags);
      continue;
    }
    sh->counts[call][si][0]++;
    if ((uintptr_t)p % align)
      child_fail("%s(%zu bytes, flags %#x) returned %p, not aligned to %zu", call_names[call],
                 size, flags, p, align);
    smp_heap_t *got = smp_heap_of(p);
    if (got != want)
      child_fail("%s(%zu bytes, flags %#x) returned %p of heap %p, not %p", call_names[call], size,
                 flags, p, (void *)got, (void *)want);
    const unsigned char *c = p;
    if (old) { // the first byte was 0x5a and survives; past the old size, zeroes if asked
      if (c[0] != 0x5a)
        child_fail("%s(%p -> %p, %zu -> %zu bytes) lost the first byte", call_names[call], old, p,
                   old_size, size);
      pre[pi] = p, pre_size[pi] = size, pre_heap[pi] = want; // the old block is gone
    } else if ((flags & SMP_ZERO) || call == C_HEAP_CALLOC) {
      for (size_t i = 0; i < size; i += size > 64 * KIB ? 4096 : 1)
        if (c[i] != 0)
          child_fail("%s(%zu bytes, flags %#x) returned %p, not zero at offset %zu",
                     call_names[call], size, flags, p, i);
      if (c[size - 1] != 0)
        child_fail("%s(%zu bytes, flags %#x): last byte not zero", call_names[call], size, flags);
    }
    if (old == NULL && nkept < MAX_BLOCKS) kept[nkept++] = p;
  }
  sh->done = 1;
  _exit(0); // the thread cannot exit normally (glibc madvises a finished thread's stack)
}

static void child_main(bool warm, bool strict) {
  struct rlimit no_core = {0, 0};
  setrlimit(RLIMIT_CORE, &no_core);
  // Heaps: one the tester and helpers use, a second for moves, one never used, a region.
  heap = smp_heap_create("nowait", 0);
  heap2 = smp_heap_create("nowait-2", 0);
  cold_heap = smp_heap_create("nowait-cold", 0);
  region_mem = mmap(NULL, region_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (heap == NULL || heap2 == NULL || cold_heap == NULL || region_mem == MAP_FAILED)
    child_fail("setting up the heaps: %s", strerror(errno));
  region = smp_heap_create_in("nowait-region", region_mem, region_len, 0);
  if (region == NULL) child_fail("smp_heap_create_in: %s", strerror(errno));
  warm_one(NULL);
  warm_one(heap);
  warm_one(heap2);
  warm_one(region);
  for (size_t i = 0; i < NPRE; i++) { // blocks to resize under the filter, of every tier
    unsigned k = (unsigned)(i / NSIZES) % 4;
    smp_heap_t *h = k == 0 ? NULL : k == 1 ? heap : k == 2 ? heap2 : region;
    pre_size[i] = sizes[i % NSIZES];
    if (h == region && pre_size[i] > MIB) pre_size[i] = MIB; // the region has room for the rest
    pre[i] = smp_heap_malloc(h, pre_size[i], 0);
    if (pre[i] == NULL) child_fail("pre-made block of %zu bytes: %s", pre_size[i], strerror(errno));
    pre_heap[i] = h ? h : smp_heap_default();
    memset(pre[i], 0x5a, 1);
  }
  kept = malloc(MAX_BLOCKS * sizeof *kept);
  if (kept == NULL) child_fail("out of memory");
  memset(kept, 0, MAX_BLOCKS * sizeof *kept); // its pages are in before the filter
  // The tester's stack is ours, so the trap handler knows its bounds without asking glibc.
  size_t stack_size = 1 * MIB;
  void *stack = mmap(NULL, stack_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (stack == MAP_FAILED) child_fail("mmap: %s", strerror(errno));
  memset(stack, 0, stack_size);
  tester_stack_lo = (uintptr_t)stack;
  tester_stack_hi = tester_stack_lo + stack_size;
  install_handlers();
  pthread_t helpers[64], tester;
  for (unsigned i = 0; i < args.threads; i++)
    stress_thread_start(&helpers[i], helper_main, (void *)(uintptr_t)i);
  usleep(50 * 1000); // the helpers get going
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstack(&attr, stack, stack_size);
  static tester_arg_t ta;
  ta = (tester_arg_t){warm, strict};
  int rc = pthread_create(&tester, &attr, tester_main, &ta);
  if (rc != 0) child_fail("pthread_create: %s", strerror(rc));
  for (;;) pause(); // the tester ends the process
}

// ---- the negative controls ----------------------------------------------------------------

static void *volatile control_sink;

static void *control_main(void *arg) {
  int which = (int)(intptr_t)arg;
  int rc = install_filter(false);
  if (rc != 0) child_fail("installing the seccomp filter: %s", strerror(rc));
  sh->filtered = 1;
  if (which == 0) { // plain malloc of huge blocks: mmap, or the like, must be trapped
    for (size_t n = 8 * MIB; n <= 1024 * MIB; n *= 2) {
      sh->cur_size = n;
      void *p = malloc(n);
      if (p) memset(p, 1, 4096);
      control_sink = p; // escapes: clang would otherwise elide the unused malloc
    }
    sh->done = 1;
    _exit(0);
  }
  // FUTEX_WAKE passes; FUTEX_WAIT_PRIVATE (on a word that does not match: it would return at
  // once) is trapped all the same.
  static int word = 0;
  long w = syscall(SYS_futex, &word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
  if (w < 0) child_fail("FUTEX_WAKE_PRIVATE failed: %s", strerror(errno));
  sh->cur_size = 1;
  syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, 1, NULL, NULL, 0);
  sh->done = 1;
  _exit(0);
}

static void control_child(int which) {
  struct rlimit no_core = {0, 0};
  setrlimit(RLIMIT_CORE, &no_core);
  warm_one(NULL);
  size_t stack_size = 1 * MIB;
  void *stack = mmap(NULL, stack_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (stack == MAP_FAILED) child_fail("mmap: %s", strerror(errno));
  memset(stack, 0, stack_size);
  tester_stack_lo = (uintptr_t)stack;
  tester_stack_hi = tester_stack_lo + stack_size;
  install_handlers();
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstack(&attr, stack, stack_size);
  pthread_t t;
  int rc = pthread_create(&t, &attr, control_main, (void *)(intptr_t)which);
  if (rc != 0) child_fail("pthread_create: %s", strerror(rc));
  for (;;) pause();
}

// ---- the parent ---------------------------------------------------------------------------

static const char *sys_name(long nr) {
  switch (nr) {
  case SYS_mmap: return "mmap";
  case SYS_munmap: return "munmap";
  case SYS_madvise: return "madvise";
  case SYS_mprotect: return "mprotect";
  case SYS_pkey_mprotect: return "pkey_mprotect";
  case SYS_mremap: return "mremap";
  case SYS_brk: return "brk";
  case SYS_membarrier: return "membarrier";
  case SYS_sched_yield: return "sched_yield";
  case SYS_nanosleep: return "nanosleep";
  case SYS_clock_nanosleep: return "clock_nanosleep";
  case SYS_futex: return "futex";
  case SYS_futex_waitv: return "futex_waitv";
  case SYS_getcpu: return "getcpu";
  case SYS_clock_gettime: return "clock_gettime";
  case SYS_rseq: return "rseq";
  case SYS_getpid: return "getpid";
  case SYS_gettid: return "gettid";
  case SYS_mincore: return "mincore";
  default: return "?";
  }
}

// The executable segments of the object that holds smp_mallocx (libsmpalloc).
static uintptr_t text_lo[8], text_hi[8];
static int ntext;

static int find_text(struct dl_phdr_info *info, size_t size, void *arg) {
  (void)size;
  if (info->dlpi_addr != (uintptr_t)arg) return 0;
  for (int i = 0; i < info->dlpi_phnum && ntext < 8; i++)
    if (info->dlpi_phdr[i].p_type == PT_LOAD && (info->dlpi_phdr[i].p_flags & PF_X)) {
      text_lo[ntext] = info->dlpi_addr + info->dlpi_phdr[i].p_vaddr;
      text_hi[ntext] = text_lo[ntext] + info->dlpi_phdr[i].p_memsz;
      ntext++;
    }
  return 1;
}

static bool in_text(uintptr_t a) {
  for (int i = 0; i < ntext; i++)
    if (a >= text_lo[i] && a < text_hi[i]) return true;
  return false;
}

// Print where in libsmpalloc the trap came from: the call site and the return addresses into it
// found on the stack (addr2line names them when it is installed).
static void report_frames(void) {
  Dl_info lib;
  if (dladdr((void *)&smp_mallocx, &lib) == 0 || lib.dli_fname == NULL) return;
  uintptr_t base = (uintptr_t)lib.dli_fbase;
  ntext = 0;
  dl_iterate_phdr(find_text, (void *)base);
  char cmd[8192];
  int n = snprintf(cmd, sizeof cmd, "addr2line -f -i -C -p -e '%s'", lib.dli_fname);
  int found = 0, named = 0;
  uintptr_t cand[40];
  cand[found++] = sh->pc;
  for (size_t i = 0; i < sh->nstack && found < 40; i++) {
    Dl_info d;
    uintptr_t a = sh->stack[i];
    if (a < 4096 || dladdr((void *)a, &d) == 0 || d.dli_fbase != lib.dli_fbase || !in_text(a))
      continue;
    cand[found++] = a;
  }
  fprintf(stderr, "  frames (%s, return addresses found on the stack; the first is the interrupted instruction):\n",
          lib.dli_fname);
  for (int i = 0; i < found; i++) {
    Dl_info d = {0};
    uintptr_t a = cand[i];
    bool ours = dladdr((void *)a, &d) != 0 && d.dli_fbase == lib.dli_fbase;
    fprintf(stderr, "    %#lx %s+%#lx %s\n", (unsigned long)a, ours ? "lib" : (d.dli_fname ? d.dli_fname : "?"),
            (unsigned long)(a - (ours ? base : (uintptr_t)d.dli_fbase)), d.dli_sname ? d.dli_sname : "");
    if (ours && n < (int)sizeof cmd - 32) {
      n += snprintf(cmd + n, sizeof cmd - (size_t)n, " %#lx", (unsigned long)(a - base - (i ? 1 : 0)));
      named++;
    }
  }
  if (named > 0 && access("/usr/bin/addr2line", X_OK) == 0) {
    fprintf(stderr, "  addr2line (a return address minus 1 names its call):\n");
    fflush(stderr);
    snprintf(cmd + n, sizeof cmd - (size_t)n, " | sed 's/^/    /' >&2");
    if (system(cmd) != 0) fprintf(stderr, "    (addr2line failed)\n");
  }
}

static void report_trap(void) {
  long nr = sh->sys_nr;
  fprintf(stderr, "  trapped system call %ld (%s) args %#lx %#lx %#lx %#lx %#lx %#lx at %#lx\n", nr,
          sys_name(nr), sh->sys_args[0], sh->sys_args[1], sh->sys_args[2], sh->sys_args[3],
          sh->sys_args[4], sh->sys_args[5], (unsigned long)sh->call_addr);
  if (nr == SYS_futex)
    fprintf(stderr, "  futex operation %ld (%s)\n", sh->sys_args[1] & 0x7f,
            (sh->sys_args[1] & 0x7f) == FUTEX_WAIT ? "FUTEX_WAIT"
            : (sh->sys_args[1] & 0x7f) == FUTEX_WAIT_BITSET ? "FUTEX_WAIT_BITSET"
            : (sh->sys_args[1] & 0x7f) == FUTEX_WAKE ? "FUTEX_WAKE"
                                                      : "other");
  report_frames();
}

// Run f(arg) in a child with a deadline; returns its wait status (the child is killed when it
// runs past the deadline: that is reported as a hang).
static int run_child(void (*f)(int), int arg, double seconds, bool *hung) {
  memset(sh, 0, sizeof *sh);
  sh->cur_call = -1;
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) stress_fail("fork: %s", strerror(errno));
  if (pid == 0) {
    f(arg);
    _exit(3);
  }
  double deadline = stress_now() + seconds;
  int status = 0;
  *hung = false;
  for (;;) {
    pid_t w = waitpid(pid, &status, WNOHANG);
    if (w == pid) break;
    if (w < 0 && errno != EINTR) stress_fail("waitpid: %s", strerror(errno));
    if (stress_now() > deadline) {
      *hung = true;
      // Ask the tester where it is (its SIGURG handler records the stack and exits), then kill.
      if (sh->tid > 0) syscall(SYS_tgkill, pid, sh->tid, SIGURG);
      for (int i = 0; i < 500 && waitpid(pid, &status, WNOHANG) == 0; i++) usleep(2000);
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      break;
    }
    usleep(2000);
  }
  return status;
}

static void describe_request(void) {
  if (sh->cur_call >= 0 && sh->cur_call < C_COUNT)
    fprintf(stderr, "  in %s, request %zu: %s(%zu bytes, flags %#x)\n",
            sh->cur_phase ? sh->cur_phase : "?", sh->cur_iter, call_names[sh->cur_call],
            sh->cur_size, sh->cur_flags);
}

static void nowait_entry(int how) { child_main(how & 1, how & 2); }

// One tester run; returns the number of requests made.
static uint64_t run_nowait(bool warm, bool strict) {
  const char *who = warm ? "warm thread" : "cold thread";
  bool hung;
  double t0 = stress_now();
  int status = run_child(nowait_entry, (warm ? 1 : 0) | (strict ? 2 : 0), args.seconds, &hung);
  if (hung) {
    fprintf(stderr, "%s: FAIL: %s: the child did not finish in %.0f s (filter %s)\n", stress_name,
            who, args.seconds, sh->filtered ? "in place" : "not yet in place");
    describe_request();
    if (sh->stuck) {
      fprintf(stderr, "  stuck at:\n");
      report_frames();
    }
    exit(1);
  }
  if (WIFSIGNALED(status)) {
    bool sys = WTERMSIG(status) == SIGSYS;
    fprintf(stderr, "%s: FAIL: %s: the child died by signal %d (%s)%s\n", stress_name, who,
            WTERMSIG(status), strsignal(WTERMSIG(status)),
            sh->trapped ? ": an SMP_NOWAIT request made a forbidden system call"
            : sys && sh->filtered
                ? ": a forbidden system call made with every signal blocked (as glibc's "
                  "pthread_create does around a new thread's stack mmap), so no record"
                : "");
    describe_request();
    if (sh->trapped) report_trap();
    exit(1);
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || !sh->done) {
    fprintf(stderr, "%s: FAIL: %s: the child exited with status %d: %s\n", stress_name, who,
            WIFEXITED(status) ? WEXITSTATUS(status) : -1, sh->failure[0] ? sh->failure : "(no message)");
    describe_request();
    exit(1);
  }
  uint64_t ok = 0, again = 0, nomem = 0, small_ok = 0;
  for (int c = 0; c < C_COUNT; c++)
    for (size_t s = 0; s < NSIZES; s++)
      ok += sh->counts[c][s][0], again += sh->counts[c][s][1], nomem += sh->counts[c][s][2];
  fprintf(stderr, "%s: %s%s: %llu SMP_NOWAIT requests in %.2f s (the child's whole life), the "
                  "slowest %llu time-stamp ticks\n",
          stress_name, who, strict ? " (strict filter)" : "", (unsigned long long)(ok + again + nomem),
          stress_now() - t0, (unsigned long long)sh->max_cycles);
  fprintf(stderr, "  %-24s", "ok/EAGAIN/ENOMEM");
  for (size_t s = 0; s < NSIZES; s++)
    fprintf(stderr, " %9zu%s", sizes[s] >= MIB ? sizes[s] / MIB : sizes[s] >= KIB ? sizes[s] / KIB : sizes[s],
            sizes[s] >= MIB ? "M" : sizes[s] >= KIB ? "K" : "B");
  fprintf(stderr, "\n");
  for (int c = 0; c < C_COUNT; c++) {
    fprintf(stderr, "  %-24s", call_names[c]);
    for (size_t s = 0; s < NSIZES; s++) {
      char cell[48];
      snprintf(cell, sizeof cell, "%llu/%llu/%llu", (unsigned long long)sh->counts[c][s][0],
               (unsigned long long)sh->counts[c][s][1], (unsigned long long)sh->counts[c][s][2]);
      fprintf(stderr, " %10s", cell);
      if (c == C_MALLOCX && sizes[s] <= 4096) small_ok += sh->counts[c][s][0];
    }
    fprintf(stderr, "\n");
  }
  printf("%s: %s: %llu succeeded, %llu EAGAIN, %llu ENOMEM\n", stress_name, who,
         (unsigned long long)ok, (unsigned long long)again, (unsigned long long)nomem);
  // A cache hit needs no lock and no system call: a warm thread must get some small blocks.
  if (warm && small_ok == 0 && !(args.extra >> C_MALLOCX & 1)) // unless -k left it out
    stress_fail("%s: no small smp_mallocx request succeeded with SMP_NOWAIT on a thread whose "
                "cache was just filled", who);
  return ok + again + nomem;
}

static void control_entry(int which) { control_child(which); }

static void run_control(void) {
  static const char *const what[] = {"plain malloc of huge blocks",
                                     "FUTEX_WAKE_PRIVATE, then FUTEX_WAIT_PRIVATE"};
  for (int which = 0; which < 2; which++) {
    bool hung;
    int status = run_child(control_entry, which, 60, &hung);
    if (hung) stress_fail("control (%s): the child hung", what[which]);
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS && !sh->trapped) {
      // A trap while every signal is blocked (glibc's pthread_create blocks them around the
      // new thread's stack mmap: the allocator starting a thread of its own) kills at once,
      // without the handler: no record, but the death is the filter's all the same.
      fprintf(stderr, "%s: control (%s): killed by SIGSYS with signals blocked (no record), as "
                      "it must be\n",
              stress_name, what[which]);
      if (which == 1) stress_fail("control: the futex child died before its FUTEX_WAIT");
      continue;
    }
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS) {
      fprintf(stderr, "%s: control (%s): killed by SIGSYS at %s (%ld)%s, as it must be\n",
              stress_name, what[which], sys_name(sh->sys_nr), sh->sys_nr,
              which == 0 ? "" : " after the wake passed");
      if (args.verbose) report_trap();
      if (which == 1 && (sh->sys_nr != SYS_futex || (sh->sys_args[1] & 0x7f) != FUTEX_WAIT))
        stress_fail("control: the futex child was trapped at %s op %ld, not FUTEX_WAIT",
                    sys_name(sh->sys_nr), sh->sys_args[1]);
      continue;
    }
    if (WIFSIGNALED(status))
      stress_fail("control (%s): died by signal %d (%s), not by a trapped system call (SIGSYS)",
                  what[which], WTERMSIG(status), strsignal(WTERMSIG(status)));
    stress_fail("control (%s): the child exited with status %d (%s): the filter did not stop it",
                what[which], WEXITSTATUS(status), sh->failure[0] ? sh->failure : "no message");
  }
}

int main(int argc, char **argv) {
  stress_args_parse(&args, "nowait_seccomp",
                    "  -m nowait|strict|control  (strict: every system call but write and exit\n"
                    "     trapped; control: the filter must stop plain malloc and FUTEX_WAIT)\n"
                    "  -t helper threads  -n SMP_NOWAIT requests per tester  -s deadline per child\n"
                    "  -k mask: leave out calls (bit 0 smp_mallocx, 1 smp_heap_malloc, 2 smp_heap_calloc,\n"
                    "     3 region, 4 a heap never used, 5 smp_reallocx, 6 smp_heap_realloc to another heap)",
                    argc, argv);
  stress_require_smpalloc();
  if (args.threads > 64) stress_fail("at most 64 helper threads");
  if (args.iters > MAX_BLOCKS * 4) stress_fail("at most %d requests", MAX_BLOCKS * 4);
  sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (sh == MAP_FAILED) stress_fail("mmap: %s", strerror(errno));
  if (!seccomp_available()) {
    printf("%s: skipped: this kernel does not let a process install a seccomp filter\n",
           stress_name);
    return EXIT_SKIP;
  }
  double started = stress_now();
  uint64_t ops = 0;
  if (strcmp(args.mode, "control") == 0) {
    run_control();
    ops = 2;
  } else if (strcmp(args.mode, "nowait") == 0 || strcmp(args.mode, "strict") == 0) {
    bool strict = args.mode[0] == 's';
    ops += run_nowait(false, strict);
    ops += run_nowait(true, strict);
  } else {
    stress_fail("unknown mode %s (nowait, strict or control)", args.mode);
  }
  stress_ok(ops, args.threads, started);
  return 0;
}
