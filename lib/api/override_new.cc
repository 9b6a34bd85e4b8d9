// Layer: api. The C++ allocation operators. Failure must call std::get_new_handler's handler
// until it gives up, then throw std::bad_alloc (the nothrow forms return null instead).
// Sized deletes are checked against the block (a mismatch is reported, see smp_free_sized);
// aligned forms use the aligned allocator.
// No libstdc++ dependency: a C program that preloads the library would otherwise load
// libstdc++, libm and libgcc_s for nothing (about 1.2 MiB resident, and their symbol lookups at
// start-up). The two libstdc++ functions the slow path needs are weak references, resolved at
// load when the program links libstdc++; for C++ code loaded later (dlopen: a plugin, a Python
// extension, possibly RTLD_LOCAL) the failure path looks them up by name. The file is built
// with -fno-exceptions (no try/catch, so no personality routine) and with unwind tables, so an
// exception thrown by the handler or by std::__throw_bad_alloc passes through these frames.
// The nothrow forms, when a handler is installed, hand the request to libstdc++'s own nothrow
// operator new: it calls our throwing form inside its own try/catch and turns the exception
// into null, as the standard asks.
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <dlfcn.h>
#include <new>

#include "alloc.h"

extern "C" {
std::new_handler smp_std_get_new_handler() __asm__("_ZSt15get_new_handlerv") __attribute__((weak));
[[noreturn]] void smp_std_throw_bad_alloc() __asm__("_ZSt17__throw_bad_allocv")
    __attribute__((weak));
}

namespace {

// libstdc++'s definition of sym: in the global scope (after this library's own, if next: for
// the operators it also defines), else in a libstdc++ that a dlopen(RTLD_LOCAL) brought in
// (RTLD_NOLOAD: only if it is already loaded).
void *cxx_runtime_symbol(const char *sym, bool next) {
  void *f = dlsym(next ? RTLD_NEXT : RTLD_DEFAULT, sym);
  if (f == nullptr) {
    void *lib = dlopen("libstdc++.so.6", RTLD_NOW | RTLD_NOLOAD);
    if (lib != nullptr) {
      f = dlsym(lib, sym);
      dlclose(lib); // drops the reference RTLD_NOLOAD took; the library stays loaded
    }
  }
  return f;
}

std::new_handler current_handler() {
  if (smp_std_get_new_handler) return smp_std_get_new_handler();
  void *f = cxx_runtime_symbol("_ZSt15get_new_handlerv", false);
  return f ? reinterpret_cast<std::new_handler (*)()>(f)() : nullptr;
}

[[noreturn]] void throw_bad_alloc() {
  if (smp_std_throw_bad_alloc) smp_std_throw_bad_alloc();
  if (void *f = cxx_runtime_symbol("_ZSt17__throw_bad_allocv", false))
    reinterpret_cast<void (*)()>(f)(); // throws
  std::fputs("smpalloc: operator new: out of memory and no C++ runtime to throw std::bad_alloc\n",
             stderr);
  std::abort();
}

// Out of memory: call the new handler until it gives up (throws) or memory appears.
SMP_NOINLINE void *new_slow(std::size_t size, std::size_t align) {
  for (;;) {
    void *p = align ? smp_alloc_aligned(align, size) : smp_alloc_malloc(size);
    if (p != nullptr) return p;
    std::new_handler handler = current_handler();
    if (handler == nullptr) throw_bad_alloc();
    handler();
  }
}

// A nothrow form failed: null, unless a handler is installed; then the next definition of the
// same operator (libstdc++'s) runs the handler loop through our throwing form and catches.
typedef void *(*nothrow_fn)(std::size_t, const std::nothrow_t &);
typedef void *(*nothrow_aligned_fn)(std::size_t, std::align_val_t, const std::nothrow_t &);

SMP_NOINLINE void *nothrow_slow(const char *symbol, std::size_t size, std::size_t align) {
  static const std::nothrow_t tag{}; // not std::nothrow: that object lives in libstdc++
  if (current_handler() == nullptr) return nullptr;
  void *next = cxx_runtime_symbol(symbol, true);
  if (next == nullptr) return nullptr;
  if (align == 0) return reinterpret_cast<nothrow_fn>(next)(size, tag);
  return reinterpret_cast<nothrow_aligned_fn>(next)(size, std::align_val_t(align), tag);
}

inline void *new_impl(std::size_t size) {
  void *p = smp_alloc_malloc(size);
  if (SMP_LIKELY(p != nullptr)) return p;
  return new_slow(size, 0);
}

inline void *new_nothrow(const char *symbol, std::size_t size) noexcept {
  void *p = smp_alloc_malloc(size);
  if (SMP_LIKELY(p != nullptr)) return p;
  return nothrow_slow(symbol, size, 0);
}

inline void *new_aligned(std::size_t size, std::align_val_t al) {
  std::size_t align = static_cast<std::size_t>(al);
  void *p = smp_alloc_aligned(align, size);
  if (SMP_LIKELY(p != nullptr)) return p;
  return new_slow(size, align);
}

inline void *new_aligned_nothrow(const char *symbol, std::size_t size,
                                 std::align_val_t al) noexcept {
  std::size_t align = static_cast<std::size_t>(al);
  void *p = smp_alloc_aligned(align, size);
  if (SMP_LIKELY(p != nullptr)) return p;
  return nothrow_slow(symbol, size, align);
}

} // namespace

#define EXPORT SMP_EXPORT

EXPORT SMP_HOT_ENTRY void *operator new(std::size_t size) { return new_impl(size); }
EXPORT void *operator new[](std::size_t size) { return new_impl(size); }
EXPORT void *operator new(std::size_t size, const std::nothrow_t &) noexcept {
  return new_nothrow("_ZnwmRKSt9nothrow_t", size);
}
EXPORT void *operator new[](std::size_t size, const std::nothrow_t &) noexcept {
  return new_nothrow("_ZnamRKSt9nothrow_t", size);
}
EXPORT void *operator new(std::size_t size, std::align_val_t al) { return new_aligned(size, al); }
EXPORT void *operator new[](std::size_t size, std::align_val_t al) { return new_aligned(size, al); }
EXPORT void *operator new(std::size_t size, std::align_val_t al, const std::nothrow_t &) noexcept {
  return new_aligned_nothrow("_ZnwmSt11align_val_tRKSt9nothrow_t", size, al);
}
EXPORT void *operator new[](std::size_t size, std::align_val_t al, const std::nothrow_t &) noexcept {
  return new_aligned_nothrow("_ZnamSt11align_val_tRKSt9nothrow_t", size, al);
}

EXPORT SMP_HOT_ENTRY void operator delete(void *p) noexcept { smp_alloc_free(p); }
EXPORT void operator delete[](void *p) noexcept { smp_alloc_free(p); }
EXPORT void operator delete(void *p, const std::nothrow_t &) noexcept { smp_alloc_free(p); }
EXPORT void operator delete[](void *p, const std::nothrow_t &) noexcept { smp_alloc_free(p); }
EXPORT SMP_HOT_ENTRY void operator delete(void *p, std::size_t size) noexcept { smp_alloc_free_sized(p, size, "operator delete"); }
EXPORT void operator delete[](void *p, std::size_t size) noexcept { smp_alloc_free_sized(p, size, "operator delete[]"); }
EXPORT void operator delete(void *p, std::align_val_t) noexcept { smp_alloc_free(p); }
EXPORT void operator delete[](void *p, std::align_val_t) noexcept { smp_alloc_free(p); }
EXPORT void operator delete(void *p, std::size_t size, std::align_val_t) noexcept { smp_alloc_free_sized(p, size, "operator delete"); }
EXPORT void operator delete[](void *p, std::size_t size, std::align_val_t) noexcept { smp_alloc_free_sized(p, size, "operator delete[]"); }
EXPORT void operator delete(void *p, std::align_val_t, const std::nothrow_t &) noexcept { smp_alloc_free(p); }
EXPORT void operator delete[](void *p, std::align_val_t, const std::nothrow_t &) noexcept { smp_alloc_free(p); }
