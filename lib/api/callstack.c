// Layer: api. See callstack.h.
#include <dlfcn.h>
#include <limits.h>
#include <link.h>
#include <stdlib.h>
#include <execinfo.h>
#include <string.h>
#include <unistd.h>

#include "atomic.h"
#include "callstack.h"
#include "os.h"

typedef struct stack_slot {
  _Atomic uint64_t hash;  // 0: free; claimed by CAS
  _Atomic uint32_t depth; // 0 until the frames are written (release)
  void *frames[SMP_CALLSTACK_DEPTH];
  _Atomic uint64_t allocs, alloc_bytes; // prof: sampled allocations from here (relaxed)
} stack_slot_t;

static stack_slot_t *_Atomic table; // mapped at the first capture
static _Atomic bool table_failed;
static __thread bool capturing SMP_TLS_IE;

#define PROBES 64

static stack_slot_t *table_get(void) {
  stack_slot_t *t = smp_load_acquire(&table);
  if (t || smp_load_relaxed(&table_failed)) return t;
  stack_slot_t *fresh = smp_os_map(sizeof(stack_slot_t) * SMP_CALLSTACK_SLOTS);
  if (fresh == NULL) {
    smp_store_relaxed(&table_failed, true);
    return NULL;
  }
  stack_slot_t *expected = NULL;
  if (!atomic_compare_exchange_strong_explicit(&table, &expected, fresh, memory_order_acq_rel,
                                               memory_order_acquire)) {
    smp_os_unmap(fresh, sizeof(stack_slot_t) * SMP_CALLSTACK_SLOTS);
    return expected;
  }
  return fresh;
}

static uint64_t hash_of(void *const *frames, unsigned n) {
  uint64_t h = 0x9e3779b97f4a7c15ull ^ n;
  for (unsigned i = 0; i < n; i++) {
    h ^= (uint64_t)(uintptr_t)frames[i];
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
  }
  return h | 1; // never 0, the free slot's
}

uint32_t smp_callstack_capture(void) {
  if (capturing) return 0; // glibc's first backtrace() allocates: see callstack.h
  capturing = true;
  void *frames[SMP_CALLSTACK_DEPTH];
  int got = backtrace(frames, SMP_CALLSTACK_DEPTH);
  capturing = false;
  stack_slot_t *t = table_get();
  if (t == NULL || got <= 0) return 0;
  unsigned n = (unsigned)got;
  uint64_t h = hash_of(frames, n);
  for (unsigned i = 0; i < PROBES; i++) {
    uint32_t id = (uint32_t)((h + i) % (SMP_CALLSTACK_SLOTS - 1)) + 1; // slot 0: no stack
    stack_slot_t *s = &t[id];
    uint64_t seen = smp_load_relaxed(&s->hash);
    if (seen == 0) {
      if (atomic_compare_exchange_strong_explicit(&s->hash, &seen, h, memory_order_relaxed,
                                                  memory_order_relaxed)) {
        memcpy(s->frames, frames, n * sizeof frames[0]);
        smp_store_release(&s->depth, n);
        return id;
      }
    }
    if (seen == h && smp_load_acquire(&s->depth) == n &&
        memcmp(s->frames, frames, n * sizeof frames[0]) == 0)
      return id;
  }
  return 0;
}

// The lowest address the main program is mapped at (dl_iterate_phdr reports it first), as
// dladdr's dli_fbase gives it.
static int main_start(struct dl_phdr_info *info, size_t size, void *arg) {
  (void)size;
  uintptr_t low = UINTPTR_MAX;
  for (unsigned i = 0; i < info->dlpi_phnum; i++)
    if (info->dlpi_phdr[i].p_type == PT_LOAD && info->dlpi_phdr[i].p_vaddr < low)
      low = info->dlpi_phdr[i].p_vaddr;
  *(uintptr_t *)arg = info->dlpi_addr + (low == UINTPTR_MAX ? 0 : low);
  return 1; // the first object only
}

// Where the main program starts (it does not move: looked up once).
static uintptr_t main_base(void) {
  static _Atomic uintptr_t base;
  uintptr_t b = smp_load_relaxed(&base);
  if (b == 0) {
    dl_iterate_phdr(main_start, &b);
    smp_store_relaxed(&base, b);
  }
  return b;
}

// The module's path as addr2line needs it, absolute, in path (PATH_MAX): the main program's may
// be relative or empty, and so may a library's that was loaded by a relative path.
static const char *module_path(const Dl_info *info, char *path) {
  if (info->dli_fname[0] == '/') return info->dli_fname;
  if ((uintptr_t)info->dli_fbase == main_base()) {
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
    if (n > 0) {
      path[n] = 0;
      return path;
    }
  } else if (info->dli_fname[0] && realpath(info->dli_fname, path)) {
    return path;
  }
  return info->dli_fname[0] ? info->dli_fname : "?";
}

// Whether the frame at pc is the allocator's own (left out of reports): in this library's
// module when it is a shared object of its own, else by the names of its entry points.
static bool own_frame(const Dl_info *info, const Dl_info *self) {
  static const char *const entries[] = {"malloc", "calloc", "realloc", "free", "reallocarray",
                                        "memalign", "aligned_alloc", "posix_memalign", "valloc",
                                        "pvalloc", "__libc_malloc", "__libc_calloc",
                                        "__libc_realloc", "_Znwm", "_Znam", "_ZnwmRKSt9nothrow_t",
                                        "_ZnamRKSt9nothrow_t", "_ZnwmSt11align_val_t",
                                        "_ZnamSt11align_val_t"};
  if (self->dli_fbase && (uintptr_t)self->dli_fbase != main_base() && info->dli_fbase == self->dli_fbase)
    return true;
  if (info->dli_sname == NULL) return false;
  if (strncmp(info->dli_sname, "smp_", 4) == 0) return true;
  for (size_t i = 0; i < sizeof entries / sizeof entries[0]; i++)
    if (strcmp(info->dli_sname, entries[i]) == 0) return true;
  return false;
}

unsigned smp_callstack_program_frames(uint32_t id, void **out) {
  stack_slot_t *t = smp_load_acquire(&table);
  unsigned n = t && id && id < SMP_CALLSTACK_SLOTS ? smp_load_acquire(&t[id].depth) : 0;
  if (n == 0) return 0;
  Dl_info self;
  if (!dladdr((void *)smp_callstack_print, &self)) memset(&self, 0, sizeof self);
  // frames[0] is the capture; the allocator's own frames follow, then the program's.
  unsigned i = 1, k = 0;
  for (; i < n; i++) {
    Dl_info info;
    if (!dladdr(t[id].frames[i], &info) || !own_frame(&info, &self)) break;
  }
  for (; i < n; i++) out[k++] = t[id].frames[i];
  return k;
}

void smp_callstack_note_alloc(uint32_t id, size_t size) {
  stack_slot_t *t = smp_load_acquire(&table);
  if (t == NULL || id == 0) return;
  smp_fetch_add_relaxed(&t[id].allocs, 1);
  smp_fetch_add_relaxed(&t[id].alloc_bytes, size);
}

void smp_callstack_allocs(uint32_t id, uint64_t *count, uint64_t *bytes) {
  stack_slot_t *t = smp_load_acquire(&table);
  *count = t && id ? smp_load_relaxed(&t[id].allocs) : 0;
  *bytes = t && id ? smp_load_relaxed(&t[id].alloc_bytes) : 0;
}

void smp_callstack_name(smp_text_t *t, void *pc) {
  Dl_info info;
  if (dladdr(pc, &info) && info.dli_sname) {
    smp_text_str(t, info.dli_sname);
    return;
  }
  if (dladdr(pc, &info) && info.dli_fname) {
    const char *base = strrchr(info.dli_fname, '/');
    smp_text_str(t, base ? base + 1 : info.dli_fname);
    smp_text_str(t, "+");
    smp_text_hex(t, (uintptr_t)pc - (uintptr_t)info.dli_fbase);
    return;
  }
  smp_text_hex(t, (uintptr_t)pc);
}

void smp_callstack_print(smp_text_t *t, uint32_t id, const char *indent) {
  char path[PATH_MAX];
  void *frames[SMP_CALLSTACK_DEPTH];
  unsigned n = smp_callstack_program_frames(id, frames);
  if (n == 0) {
    smp_text_str(t, indent);
    smp_text_str(t, "(no stack: allocated while the unwinder started, or the stack table was full)\n");
    return;
  }
  for (unsigned i = 0; i < n; i++) {
    // A return address: the call lies just before it (what addr2line should be asked about).
    uintptr_t pc = (uintptr_t)frames[i] - 1;
    Dl_info info;
    bool known = dladdr((void *)pc, &info) != 0;
    smp_text_str(t, indent);
    smp_text_str(t, "#");
    smp_text_u64(t, i, 0);
    smp_text_str(t, " ");
    smp_text_hex(t, pc);
    if (known && info.dli_sname) {
      smp_text_str(t, " ");
      smp_text_str(t, info.dli_sname);
      smp_text_str(t, "+");
      smp_text_hex(t, pc - (uintptr_t)info.dli_saddr);
    }
    if (known && info.dli_fname) {
      smp_text_str(t, " (");
      smp_text_str(t, module_path(&info, path));
      smp_text_str(t, "+");
      smp_text_hex(t, pc - (uintptr_t)info.dli_fbase);
      smp_text_str(t, ")");
    }
    smp_text_str(t, "\n");
  }
}
