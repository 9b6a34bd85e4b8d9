// Layer: api. The C++ allocation operators, written in C++ because failure must throw
// std::bad_alloc after consulting std::get_new_handler (the nothrow forms return null).
// Sized deletes are checked against the block (a mismatch is reported, see smp_free_sized);
// aligned forms use the aligned allocator.
#include <cerrno>
#include <cstddef>
#include <new>

#include "alloc.h"

namespace {

// Out of memory: call the new handler until it gives up (throws) or memory appears.
SMP_NOINLINE void *new_slow(std::size_t size, std::size_t align, bool nothrow) {
  for (;;) {
    void *p = align ? smp_alloc_aligned(align, size) : smp_alloc_malloc(size);
    if (p != nullptr) return p;
    std::new_handler handler = std::get_new_handler();
    if (handler == nullptr) {
      if (nothrow) return nullptr;
      throw std::bad_alloc();
    }
    if (nothrow) {
      try {
        handler();
      } catch (...) {
        return nullptr;
      }
    } else {
      handler();
    }
  }
}

inline void *new_impl(std::size_t size) {
  void *p = smp_alloc_malloc(size);
  if (SMP_LIKELY(p != nullptr)) return p;
  return new_slow(size, 0, false);
}

inline void *new_nothrow(std::size_t size) noexcept {
  void *p = smp_alloc_malloc(size);
  if (SMP_LIKELY(p != nullptr)) return p;
  return new_slow(size, 0, true);
}

inline void *new_aligned(std::size_t size, std::align_val_t al, bool nothrow) {
  std::size_t align = static_cast<std::size_t>(al);
  void *p = smp_alloc_aligned(align, size);
  if (SMP_LIKELY(p != nullptr)) return p;
  return new_slow(size, align, nothrow);
}

} // namespace

#define EXPORT SMP_EXPORT

EXPORT void *operator new(std::size_t size) { return new_impl(size); }
EXPORT void *operator new[](std::size_t size) { return new_impl(size); }
EXPORT void *operator new(std::size_t size, const std::nothrow_t &) noexcept { return new_nothrow(size); }
EXPORT void *operator new[](std::size_t size, const std::nothrow_t &) noexcept { return new_nothrow(size); }
EXPORT void *operator new(std::size_t size, std::align_val_t al) { return new_aligned(size, al, false); }
EXPORT void *operator new[](std::size_t size, std::align_val_t al) { return new_aligned(size, al, false); }
EXPORT void *operator new(std::size_t size, std::align_val_t al, const std::nothrow_t &) noexcept {
  try { return new_aligned(size, al, true); } catch (...) { return nullptr; }
}
EXPORT void *operator new[](std::size_t size, std::align_val_t al, const std::nothrow_t &) noexcept {
  try { return new_aligned(size, al, true); } catch (...) { return nullptr; }
}

EXPORT void operator delete(void *p) noexcept { smp_alloc_free(p); }
EXPORT void operator delete[](void *p) noexcept { smp_alloc_free(p); }
EXPORT void operator delete(void *p, const std::nothrow_t &) noexcept { smp_alloc_free(p); }
EXPORT void operator delete[](void *p, const std::nothrow_t &) noexcept { smp_alloc_free(p); }
EXPORT void operator delete(void *p, std::size_t size) noexcept { smp_alloc_free_sized(p, size, "operator delete"); }
EXPORT void operator delete[](void *p, std::size_t size) noexcept { smp_alloc_free_sized(p, size, "operator delete[]"); }
EXPORT void operator delete(void *p, std::align_val_t) noexcept { smp_alloc_free(p); }
EXPORT void operator delete[](void *p, std::align_val_t) noexcept { smp_alloc_free(p); }
EXPORT void operator delete(void *p, std::size_t size, std::align_val_t) noexcept { smp_alloc_free_sized(p, size, "operator delete"); }
EXPORT void operator delete[](void *p, std::size_t size, std::align_val_t) noexcept { smp_alloc_free_sized(p, size, "operator delete[]"); }
EXPORT void operator delete(void *p, std::align_val_t, const std::nothrow_t &) noexcept { smp_alloc_free(p); }
EXPORT void operator delete[](void *p, std::align_val_t, const std::nothrow_t &) noexcept { smp_alloc_free(p); }
